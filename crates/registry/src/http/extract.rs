//! Extractors whose failures are JSON errors with stable codes, and the admin's bearer token.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::error::{ApiError, ErrorCode, RegistryError};
use crate::registry::Registry;

pub use peyvand_http::{Failure, Json, Path, Query};

impl From<RegistryError> for Failure {
    fn from(e: RegistryError) -> Self {
        if !matches!(e, RegistryError::Refused(_)) {
            tracing::error!(error = %e, "request failed");
        }
        Self(e.to_api())
    }
}

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
