//! The client API's routes, one module per area.

mod auth;
mod chats;
mod interconnect;
mod me;
mod media;
mod meta;
mod stream_requests;
mod updates;
mod users;

use axum::Router;
use axum::routing::{delete, get, options, post, put};

use crate::AppState;

pub(crate) use auth::*;
pub(crate) use chats::*;
pub(crate) use interconnect::*;
pub(crate) use me::*;
pub(crate) use media::*;
pub(crate) use meta::*;
pub(crate) use updates::*;
pub(crate) use users::*;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/auth/code", post(request_code))
        .route("/v1/auth/sign-in", post(sign_in))
        .route("/v1/auth/sign-out", post(sign_out))
        .route("/v1/me", get(get_me).patch(patch_me).delete(delete_me))
        .route("/v1/me/pin", put(put_pin).delete(delete_pin))
        .route("/v1/me/settings", get(get_settings).patch(patch_settings))
        .route("/v1/devices", get(list_devices).delete(revoke_all_devices))
        .route("/v1/devices/{id}", delete(revoke_device))
        .route("/v1/users/resolve", get(resolve_user))
        .route("/v1/users/search", get(search_users))
        .route("/v1/users/{id}", get(get_user))
        .route("/v1/users/{id}/report", post(report_user))
        .route("/v1/contacts", get(list_contacts))
        .route("/v1/contacts/import", post(import_contacts))
        .route("/v1/contacts/{user_id}", delete(remove_contact))
        .route("/v1/blocks", get(list_blocks))
        .route("/v1/blocks/{user_id}", put(block_user).delete(unblock_user))
        .route("/v1/chats", get(list_chats))
        .route("/v1/chats/direct", post(open_direct))
        .route("/v1/chats/{chat_id}", get(get_chat))
        .route("/v1/chats/{chat_id}/messages", get(history).post(send_message))
        .route("/v1/chats/{chat_id}/messages/{seq}", get(get_message).patch(edit_message).delete(delete_message))
        .route("/v1/chats/{chat_id}/messages/{seq}/reaction", put(set_reaction).delete(remove_reaction))
        .route("/v1/chats/{chat_id}/messages/{seq}/media", get(get_message_media))
        .route("/v1/chats/{chat_id}/messages/{seq}/media/thumbnail", get(get_message_thumbnail))
        .route("/v1/chats/{chat_id}/messages/{seq}/media/links", get(get_media_links))
        .route("/v1/uploads", options(upload_options).post(create_upload))
        .route("/v1/uploads/{id}", axum::routing::head(upload_head).patch(upload_patch).delete(upload_delete))
        .route("/v1/media/{id}", get(get_media_item))
        .route("/v1/media/{id}/{variant}", get(get_media_bytes))
        .route("/v1/files/{chat_id}/{seq}/{variant}", get(get_linked_file))
        .route("/v1/chats/{chat_id}/read", post(mark_read))
        .route("/v1/chats/{chat_id}/delivered", post(mark_delivered))
        .route("/v1/chats/{chat_id}/typing", post(typing))
        .route("/v1/search", get(search))
        .route("/v1/interconnect/lookup", get(interconnect_lookup))
        .route("/v1/state", get(sync_state))
        .route("/v1/updates", get(poll_updates))
        .route("/v1/updates/ws", get(updates_ws))
        .route("/", get(home))
        .route("/v1/openapi.json", get(openapi_json))
        .route("/metrics", get(metrics))
        .route("/healthz", get(health))
        .route("/readyz", get(ready))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}
