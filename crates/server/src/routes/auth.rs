//! Sign-in.

use axum::extract::State;
use axum::http::StatusCode;
use peyvand_api::{CodeRequest, CodeSent, ErrorBody, SignInRequest, SignedIn};

use crate::AppState;
use crate::extract::{ApiResult, Authed, ClientAddress, Json, no_content};

/// `POST /v1/auth/code`: sends a one-time sign-in code to a phone number.
#[utoipa::path(post, path = "/v1/auth/code", tag = "auth", request_body = CodeRequest,
    responses((status = 200, body = CodeSent), (status = 400, description = "invalid_phone", body = ErrorBody),
               (status = 429, description = "rate_limited", body = ErrorBody)))]
pub async fn request_code(
    State(s): State<AppState>,
    ClientAddress(addr): ClientAddress,
    Json(body): Json<CodeRequest>,
) -> ApiResult<Json<CodeSent>> {
    Ok(Json(s.service.request_code(&body.phone, &addr).await?))
}

/// `POST /v1/auth/sign-in`: exchanges the code (and PIN, if set) for a device session.
#[utoipa::path(post, path = "/v1/auth/sign-in", tag = "auth", request_body = SignInRequest,
    responses((status = 200, body = SignedIn),
               (status = 401, description = "invalid_code, code_expired, pin_required, invalid_pin", body = ErrorBody),
               (status = 429, description = "too_many_attempts, rate_limited", body = ErrorBody)))]
pub async fn sign_in(
    State(s): State<AppState>,
    ClientAddress(addr): ClientAddress,
    Json(body): Json<SignInRequest>,
) -> ApiResult<Json<SignedIn>> {
    Ok(Json(s.service.sign_in(&body, &addr).await?))
}

/// `POST /v1/auth/sign-out`: revokes this device's session.
#[utoipa::path(post, path = "/v1/auth/sign-out", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn sign_out(State(s): State<AppState>, Authed(session): Authed) -> ApiResult<StatusCode> {
    s.service.sign_out(session).await?;
    Ok(no_content())
}
