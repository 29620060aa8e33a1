//! Other people: profiles, lookup, contacts and blocks.

use axum::extract::State;
use axum::http::StatusCode;
use peyvand_api::{ContactsImport, ContactsImported, ErrorBody, ReportUser, ResolveQuery, UserList, UserProfile};

use crate::AppState;
use crate::extract::{ApiResult, Authed, Json, Path, Query, no_content};

/// `GET /v1/users/{id}`: a person as my view of them allows.
#[utoipa::path(get, path = "/v1/users/{id}", tag = "users", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = UserProfile), (status = 404, body = ErrorBody)))]
pub async fn get_user(
    State(s): State<AppState>,
    Authed(session): Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<UserProfile>> {
    Ok(Json(s.service.user_profile(session, id).await?))
}

/// `GET /v1/users/resolve?q=`: finds a person by `@username` or phone number.
#[utoipa::path(get, path = "/v1/users/resolve", tag = "users", security(("bearer" = [])), params(ResolveQuery),
    responses((status = 200, body = UserProfile), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn resolve_user(
    State(s): State<AppState>,
    Authed(session): Authed,
    Query(q): Query<ResolveQuery>,
) -> ApiResult<Json<UserProfile>> {
    Ok(Json(s.service.resolve(session, &q.q).await?))
}

/// `GET /v1/users/search?q=`: people by name or username.
///
/// The query is folded for Persian, and invisible characters (controls such as NUL,
/// zero-width and direction characters, Hangul fillers) are dropped first; a query left empty
/// is refused with `bad_request`, and one of a single character finds nobody.
#[utoipa::path(get, path = "/v1/users/search", tag = "users", security(("bearer" = [])), params(ResolveQuery),
    responses((status = 200, body = UserList), (status = 400, body = ErrorBody)))]
pub async fn search_users(
    State(s): State<AppState>,
    Authed(session): Authed,
    Query(q): Query<ResolveQuery>,
) -> ApiResult<Json<UserList>> {
    Ok(Json(UserList { users: s.service.search_users(session, &q.q).await? }))
}

/// `POST /v1/contacts/import`: uploads phone numbers; says who is here.
#[utoipa::path(post, path = "/v1/contacts/import", tag = "contacts", security(("bearer" = [])), request_body = ContactsImport,
    responses((status = 200, body = ContactsImported), (status = 429, body = ErrorBody)))]
pub async fn import_contacts(
    State(s): State<AppState>,
    Authed(session): Authed,
    Json(body): Json<ContactsImport>,
) -> ApiResult<Json<ContactsImported>> {
    Ok(Json(ContactsImported { contacts: s.service.import_contacts(session, &body.phones).await? }))
}

/// `GET /v1/contacts`: my contacts who are on this messenger.
#[utoipa::path(get, path = "/v1/contacts", tag = "contacts", security(("bearer" = [])), responses((status = 200, body = UserList)))]
pub async fn list_contacts(State(s): State<AppState>, Authed(session): Authed) -> ApiResult<Json<UserList>> {
    Ok(Json(UserList { users: s.service.contacts(session).await? }))
}

/// `DELETE /v1/contacts/{user_id}`: removes a person from my contacts.
#[utoipa::path(delete, path = "/v1/contacts/{user_id}", tag = "contacts", security(("bearer" = [])), params(("user_id" = i64, Path)), responses((status = 204)))]
pub async fn remove_contact(
    State(s): State<AppState>,
    Authed(session): Authed,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    s.service.remove_contact(session, id).await?;
    Ok(no_content())
}

/// `GET /v1/blocks`: the people I blocked.
#[utoipa::path(get, path = "/v1/blocks", tag = "contacts", security(("bearer" = [])), responses((status = 200, body = UserList)))]
pub async fn list_blocks(State(s): State<AppState>, Authed(session): Authed) -> ApiResult<Json<UserList>> {
    Ok(Json(UserList { users: s.service.blocked(session).await? }))
}

/// `PUT /v1/blocks/{user_id}`: blocks a person.
#[utoipa::path(put, path = "/v1/blocks/{user_id}", tag = "contacts", security(("bearer" = [])), params(("user_id" = i64, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn block_user(
    State(s): State<AppState>,
    Authed(session): Authed,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    s.service.set_blocked(session, id, true).await?;
    Ok(no_content())
}

/// `DELETE /v1/blocks/{user_id}`: unblocks a person.
#[utoipa::path(delete, path = "/v1/blocks/{user_id}", tag = "contacts", security(("bearer" = [])), params(("user_id" = i64, Path)), responses((status = 204)))]
pub async fn unblock_user(
    State(s): State<AppState>,
    Authed(session): Authed,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    s.service.set_blocked(session, id, false).await?;
    Ok(no_content())
}

/// `POST /v1/users/{id}/report`: reports a person for abuse, to this messenger's operator and,
/// for a person on another messenger, to their provider too.
#[utoipa::path(post, path = "/v1/users/{id}/report", tag = "users", security(("bearer" = [])), params(("id" = i64, Path)),
    request_body = ReportUser,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 429, description = "rate_limited: reports per day", body = ErrorBody),
              (status = 502, description = "peer_unavailable: the person's provider did not take it", body = ErrorBody)))]
pub async fn report_user(
    State(s): State<AppState>,
    Authed(session): Authed,
    Path(id): Path<i64>,
    Json(body): Json<ReportUser>,
) -> ApiResult<StatusCode> {
    s.service.report(session, id, &body.reason).await?;
    Ok(no_content())
}
