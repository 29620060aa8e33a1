//! What every HTTP API of Peyvand (the messenger's client API, the registry's admin API)
//! shares: errors as JSON with a stable code (`{"error": {"code", "message"}}`), and
//! extractors whose failures are such errors instead of axum's plain text; and the listener
//! that serves plain HTTP and mutual-TLS HTTPS on one port, with caps on connections
//! ([`listener`]), and [`serve`], which serves a router there with a header deadline.

pub mod listener;
pub mod range;
mod serve;

pub use serve::serve;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use peyvand_api::{ApiError, ErrorBody, ErrorCode};

/// An API error as an HTTP response: the code's status, the JSON body, `Retry-After` when the
/// error says when to retry, and `WWW-Authenticate: Bearer` on `unauthorized`.
#[derive(Debug)]
pub struct Failure(pub ApiError);

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after = self.0.retry_after;
        let unauthorized = self.0.code == ErrorCode::Unauthorized;
        let mut response = (status, axum::Json(ErrorBody { error: self.0 })).into_response();
        if let Some(value) = retry_after.and_then(|secs| HeaderValue::from_str(&secs.to_string()).ok()) {
            response.headers_mut().insert(RETRY_AFTER, value);
        }
        if unauthorized {
            response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<JsonRejection> for Failure {
    fn from(r: JsonRejection) -> Self {
        let code = if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ErrorCode::PayloadTooLarge
        } else {
            ErrorCode::BadRequest
        };
        Self(ApiError::new(code, r.body_text()))
    }
}

impl From<QueryRejection> for Failure {
    fn from(r: QueryRejection) -> Self {
        Self(ApiError::new(ErrorCode::BadRequest, r.body_text()))
    }
}

impl From<PathRejection> for Failure {
    fn from(r: PathRejection) -> Self {
        Self(ApiError::new(ErrorCode::BadRequest, r.body_text()))
    }
}

/// A JSON body.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(Failure))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A query string.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Failure))]
pub struct Query<T>(pub T);

/// Path parameters.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(Failure))]
pub struct Path<T>(pub T);
