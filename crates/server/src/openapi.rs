//! The OpenAPI 3 document, generated from the handlers' annotations and the wire types.

use std::sync::OnceLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "Peyvand client API", description = "The client API of a Peyvand messenger server. Errors are `{\"error\": {\"code\", \"message\"}}` with a stable code."),
    paths(
        routes::request_code, routes::sign_in, routes::sign_out,
        routes::get_me, routes::patch_me, routes::delete_me, routes::put_pin, routes::delete_pin,
        routes::get_settings, routes::patch_settings, routes::list_devices, routes::revoke_device, routes::revoke_all_devices,
        routes::get_user, routes::report_user, routes::resolve_user, routes::search_users,
        routes::import_contacts, routes::list_contacts, routes::remove_contact,
        routes::list_blocks, routes::block_user, routes::unblock_user,
        routes::list_chats, routes::open_direct, routes::get_chat, routes::history, routes::send_message,
        routes::get_message, routes::edit_message, routes::delete_message, routes::set_reaction, routes::remove_reaction,
        routes::mark_read, routes::mark_delivered, routes::typing, routes::search,
        routes::sync_state, routes::poll_updates, routes::updates_ws, routes::interconnect_lookup,
    ),
    components(schemas(peyvand_api::ErrorCode, peyvand_api::Update, peyvand_api::Event, peyvand_api::StreamFrame, peyvand_api::ClientFrame)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as JSON, built once.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| document().to_json().unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")))
}
