//! Chats and messages.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use peyvand_api::{
    Chat, ChatList, DeleteQuery, EditMessage, ErrorBody, HistoryQuery, Message, MessageList, OpenDirect, Receipt,
    SearchQuery, SearchResults, SendMessage, SetReaction,
};

use crate::AppState;
use crate::extract::{ApiResult, Authed, Json, Path, Query, no_content};

/// `GET /v1/chats`: my chats, newest activity first, with last message and unread count.
#[utoipa::path(get, path = "/v1/chats", tag = "chats", security(("bearer" = [])), responses((status = 200, body = ChatList)))]
pub async fn list_chats(State(s): State<AppState>, Authed(session): Authed) -> ApiResult<Json<ChatList>> {
    Ok(Json(ChatList { chats: s.service.chats(session).await? }))
}

/// `POST /v1/chats/direct`: opens (or returns) the direct chat with a person: by user id, or by
/// address (`PHONE@PROVIDER-ID`) for someone on another messenger, whose provider is asked
/// whether they accept it (`not_found` when not).
#[utoipa::path(post, path = "/v1/chats/direct", tag = "chats", security(("bearer" = [])), request_body = OpenDirect,
    responses((status = 200, body = Chat), (status = 400, description = "bad_request", body = ErrorBody),
               (status = 403, description = "blocked, privacy_restricted, peer_not_active", body = ErrorBody),
               (status = 404, description = "not_found, interconnect_disabled, unknown_provider", body = ErrorBody),
               (status = 409, description = "room_conflict, peer_not_capable", body = ErrorBody),
               (status = 502, description = "peer_unavailable, peer_protocol", body = ErrorBody), (status = 429, description = "rate_limited: new chats with strangers", body = ErrorBody)))]
pub async fn open_direct(
    State(s): State<AppState>,
    Authed(session): Authed,
    Json(body): Json<OpenDirect>,
) -> ApiResult<Json<Chat>> {
    match body {
        OpenDirect { user_id: Some(user_id), address: None } => {
            Ok(Json(s.service.open_direct(session, user_id).await?))
        }
        OpenDirect { user_id: None, address: Some(address) } => {
            Ok(Json(s.service.open_remote(session, &address).await?))
        }
        _ => {
            Err(peyvand_api::ApiError::new(peyvand_api::ErrorCode::BadRequest, "give either user_id or address").into())
        }
    }
}

/// `GET /v1/chats/{chat_id}`: one chat.
#[utoipa::path(get, path = "/v1/chats/{chat_id}", tag = "chats", security(("bearer" = [])), params(("chat_id" = i64, Path)),
    responses((status = 200, body = Chat), (status = 404, body = ErrorBody)))]
pub async fn get_chat(
    State(s): State<AppState>,
    Authed(session): Authed,
    Path(chat_id): Path<i64>,
) -> ApiResult<Json<Chat>> {
    Ok(Json(s.service.chat(session, chat_id).await?))
}

/// `GET /v1/chats/{chat_id}/messages`: a page of history, backwards or forwards.
#[utoipa::path(get, path = "/v1/chats/{chat_id}/messages", tag = "chats", security(("bearer" = [])), params(("chat_id" = i64, Path), HistoryQuery),
    responses((status = 200, body = MessageList), (status = 404, body = ErrorBody)))]
pub async fn history(
    State(s): State<AppState>,
    Authed(session): Authed,
    Path(chat_id): Path<i64>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Json<MessageList>> {
    Ok(Json(MessageList { messages: s.service.history(session, chat_id, q.before, q.after, q.limit).await? }))
}

/// `POST /v1/chats/{chat_id}/messages`: sends a message (or forwards one); answered once
/// the message is durably stored. 201 when new, 200 when the client id was seen before. A
/// media message gives the id of a finished upload in `media`, and its caption as text
/// `content`.
#[utoipa::path(post, path = "/v1/chats/{chat_id}/messages", tag = "chats", security(("bearer" = [])), params(("chat_id" = i64, Path)), request_body = SendMessage,
    responses((status = 201, body = Message), (status = 200, description = "a retry: the message stored the first time", body = Message),
               (status = 400, description = "invalid_content, bad_request", body = ErrorBody),
               (status = 403, description = "blocked, privacy_restricted", body = ErrorBody),
               (status = 409, description = "idempotency_conflict; peer_not_capable; forged_event: in a chat hosted on another messenger, the host answered with another message than was sent", body = ErrorBody),
               (status = 410, description = "upload_gone: the media item expired or is too old to send", body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn send_message(
    State(s): State<AppState>,
    Authed(session): Authed,
    Path(chat_id): Path<i64>,
    Json(body): Json<SendMessage>,
) -> ApiResult<Response> {
    let (message, created) = s.service.send(session, chat_id, body).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(message)).into_response())
}

/// `GET /v1/chats/{chat_id}/messages/{seq}`: one message.
#[utoipa::path(get, path = "/v1/chats/{chat_id}/messages/{seq}", tag = "chats", security(("bearer" = [])), params(("chat_id" = i64, Path), ("seq" = i64, Path)),
    responses((status = 200, body = Message), (status = 404, body = ErrorBody)))]
pub async fn get_message(
    State(s): State<AppState>,
    Authed(session): Authed,
    Path((chat_id, seq)): Path<(i64, i64)>,
) -> ApiResult<Json<Message>> {
    Ok(Json(s.service.message(session, chat_id, seq).await?))
}

/// `PATCH /v1/chats/{chat_id}/messages/{seq}`: edits my message; it is marked edited.
#[utoipa::path(patch, path = "/v1/chats/{chat_id}/messages/{seq}", tag = "chats", security(("bearer" = [])), params(("chat_id" = i64, Path), ("seq" = i64, Path)), request_body = EditMessage,
    responses((status = 200, body = Message), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
               (status = 409, description = "forged_event: in a chat hosted on another messenger, the host answered with another change than was asked", body = ErrorBody)))]
pub async fn edit_message(
    State(s): State<AppState>,
    Authed(session): Authed,
    Path((chat_id, seq)): Path<(i64, i64)>,
    Json(body): Json<EditMessage>,
) -> ApiResult<Json<Message>> {
    Ok(Json(s.service.edit(session, chat_id, seq, body.content).await?))
}

/// `DELETE /v1/chats/{chat_id}/messages/{seq}?for_everyone=`: deletes for me, or for everyone.
#[utoipa::path(delete, path = "/v1/chats/{chat_id}/messages/{seq}", tag = "chats", security(("bearer" = [])), params(("chat_id" = i64, Path), ("seq" = i64, Path), DeleteQuery),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
               (status = 409, description = "forged_event: in a chat hosted on another messenger, the host answered with another change than was asked", body = ErrorBody)))]
pub async fn delete_message(
    State(s): State<AppState>,
    Authed(session): Authed,
    Path((chat_id, seq)): Path<(i64, i64)>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<StatusCode> {
    s.service.delete(session, chat_id, seq, q.for_everyone).await?;
    Ok(no_content())
}

async fn react(
    s: AppState,
    session: peyvand_service::Session,
    chat_id: i64,
    seq: i64,
    emoji: Option<String>,
) -> ApiResult<Json<Message>> {
    let reactions = s.service.react(session, chat_id, seq, emoji).await?;
    let mut message = s.service.message(session, chat_id, seq).await?;
    // In a room hosted on another messenger the copy here catches up a moment later.
    message.reactions = reactions;
    Ok(Json(message))
}

/// `PUT /v1/chats/{chat_id}/messages/{seq}/reaction`: sets my reaction.
#[utoipa::path(put, path = "/v1/chats/{chat_id}/messages/{seq}/reaction", tag = "chats", security(("bearer" = [])), params(("chat_id" = i64, Path), ("seq" = i64, Path)), request_body = SetReaction,
    responses((status = 200, body = Message), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
               (status = 409, description = "forged_event: in a chat hosted on another messenger, the host answered with another change than was asked", body = ErrorBody)))]
pub async fn set_reaction(
    State(s): State<AppState>,
    Authed(session): Authed,
    Path((chat_id, seq)): Path<(i64, i64)>,
    Json(body): Json<SetReaction>,
) -> ApiResult<Json<Message>> {
    react(s, session, chat_id, seq, Some(body.emoji)).await
}

/// `DELETE /v1/chats/{chat_id}/messages/{seq}/reaction`: removes my reaction.
#[utoipa::path(delete, path = "/v1/chats/{chat_id}/messages/{seq}/reaction", tag = "chats", security(("bearer" = [])), params(("chat_id" = i64, Path), ("seq" = i64, Path)),
    responses((status = 200, body = Message), (status = 404, body = ErrorBody),
               (status = 409, description = "forged_event: in a chat hosted on another messenger, the host answered with another change than was asked", body = ErrorBody)))]
pub async fn remove_reaction(
    State(s): State<AppState>,
    Authed(session): Authed,
    Path((chat_id, seq)): Path<(i64, i64)>,
) -> ApiResult<Json<Message>> {
    react(s, session, chat_id, seq, None).await
}

/// `POST /v1/chats/{chat_id}/read`: I have read up to a message.
#[utoipa::path(post, path = "/v1/chats/{chat_id}/read", tag = "chats", security(("bearer" = [])), params(("chat_id" = i64, Path)), request_body = Receipt,
    responses((status = 204), (status = 404, body = ErrorBody),
               (status = 409, description = "forged_event: in a chat hosted on another messenger, the host answered with another change than was asked", body = ErrorBody)))]
pub async fn mark_read(
    State(s): State<AppState>,
    Authed(session): Authed,
    Path(chat_id): Path<i64>,
    Json(body): Json<Receipt>,
) -> ApiResult<StatusCode> {
    s.service.mark_read(session, chat_id, body.up_to).await?;
    Ok(no_content())
}

/// `POST /v1/chats/{chat_id}/delivered`: my device has received up to a message.
#[utoipa::path(post, path = "/v1/chats/{chat_id}/delivered", tag = "chats", security(("bearer" = [])), params(("chat_id" = i64, Path)), request_body = Receipt,
    responses((status = 204), (status = 404, body = ErrorBody),
               (status = 409, description = "forged_event: in a chat hosted on another messenger, the host answered with another change than was asked", body = ErrorBody)))]
pub async fn mark_delivered(
    State(s): State<AppState>,
    Authed(session): Authed,
    Path(chat_id): Path<i64>,
    Json(body): Json<Receipt>,
) -> ApiResult<StatusCode> {
    s.service.mark_delivered(session, chat_id, body.up_to).await?;
    Ok(no_content())
}

/// `POST /v1/chats/{chat_id}/typing`: I am typing (ephemeral).
#[utoipa::path(post, path = "/v1/chats/{chat_id}/typing", tag = "chats", security(("bearer" = [])), params(("chat_id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn typing(
    State(s): State<AppState>,
    Authed(session): Authed,
    Path(chat_id): Path<i64>,
) -> ApiResult<StatusCode> {
    s.service.typing(session, chat_id).await?;
    Ok(no_content())
}

/// `GET /v1/search?q=`: searches my chats and messages, Persian-normalised.
///
/// Invisible characters (controls such as NUL, zero-width and direction characters, Hangul
/// fillers) are dropped from the query first; a query left empty is refused with
/// `bad_request`.
#[utoipa::path(get, path = "/v1/search", tag = "chats", security(("bearer" = [])), params(SearchQuery),
    responses((status = 200, body = SearchResults), (status = 400, body = ErrorBody)))]
pub async fn search(
    State(s): State<AppState>,
    Authed(session): Authed,
    Query(q): Query<SearchQuery>,
) -> ApiResult<Json<SearchResults>> {
    Ok(Json(s.service.search(session, &q.q, q.limit).await?))
}
