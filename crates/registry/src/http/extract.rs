//! Extractors whose failures are JSON errors with stable codes, and the admin's bearer token.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorBody, ErrorCode, RegistryError};
use crate::registry::Registry;

/// An API error as an HTTP response.
#[derive(Debug)]
pub struct Failure(pub ApiError);

impl From<RegistryError> for Failure {
    fn from(e: RegistryError) -> Self {
        if !matches!(e, RegistryError::Refused(_)) {
            tracing::error!(error = %e, "request failed");
        }
        Self(e.to_api())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let unauthorized = self.0.code == ErrorCode::Unauthorized;
        let mut response = (status, axum::Json(ErrorBody { error: self.0 })).into_response();
        if unauthorized {
            response.headers_mut().insert(WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
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

/// A request made with an admin token (`Authorization: Bearer <token>`); holds the token's
/// label, the actor the audit log records.
#[derive(Debug, Clone)]
pub struct Admin(pub String);

impl FromRequestParts<Registry> for Admin {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, registry: &Registry) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim);
        let Some(token) = token else {
            return Err(Failure(ApiError::new(ErrorCode::Unauthorized, "an admin token is required")));
        };
        match registry.authenticate(token) {
            Some(label) => Ok(Self(label.to_owned())),
            None => Err(Failure(ApiError::new(ErrorCode::Unauthorized, "the admin token is not valid"))),
        }
    }
}

pub type ApiResult<T> = Result<T, Failure>;
