//! Extractors whose failures are API errors with stable codes, not axum's plain text.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use peyvand_api::{ApiError, ErrorCode};
use std::net::IpAddr;

use peyvand_service::Session;

use crate::AppState;

pub use peyvand_http::{Failure, Json, Path, Query};

/// The signed-in session of a request, from `Authorization: Bearer <token>`.
#[derive(Debug, Clone, Copy)]
pub struct Authed(pub Session);

pub(crate) fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).unwrap_or_default();
        Ok(Self(state.service.authenticate(token).await?))
    }
}

/// The client's address, for per-address limits.
#[derive(Debug, Clone)]
pub struct ClientAddress(pub String);

/// The address a request comes from: the socket's peer, or, when the peer is a trusted
/// proxy, the nearest address in `X-Forwarded-For` that is not itself a trusted proxy.
pub(crate) fn client_address(peer: Option<IpAddr>, forwarded_for: Option<&str>, trusted: &[IpAddr]) -> Option<IpAddr> {
    let mut address = peer?;
    if let Some(chain) = forwarded_for {
        // Read from the right: each trusted proxy appended the address it saw.
        for hop in chain.rsplit(',') {
            if !trusted.contains(&address) {
                break;
            }
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => address = ip,
                Err(_) => break,
            }
        }
    }
    Some(address)
}

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<peyvand_http::listener::ConnInfo>>()
            .map(|info| info.0.remote.ip());
        let forwarded = parts.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
        let address = client_address(peer, forwarded, &state.trusted_proxies);
        Ok(Self(address.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())))
    }
}

/// 204 No Content.
pub fn no_content() -> StatusCode {
    StatusCode::NO_CONTENT
}

pub type ApiResult<T> = Result<T, Failure>;

/// Middleware: a request that declares a body larger than [`crate::MAX_BODY_BYTES`] is refused
/// at once, without reading it. (Bodies without a declared length are cut off by the body
/// limit as they are read.) An upload's bytes (`PATCH /v1/uploads/{id}`) are streamed to
/// storage and bounded by the upload's own length instead.
pub async fn refuse_declared_oversize(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if request.method() == axum::http::Method::PATCH && request.uri().path().starts_with("/v1/uploads/") {
        return next.run(request).await;
    }
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > crate::MAX_BODY_BYTES as u64) {
        let limit = crate::MAX_BODY_BYTES / 1024;
        return Failure(ApiError::new(ErrorCode::PayloadTooLarge, format!("the body is larger than {limit} KiB")))
            .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let trusted = [ip("10.0.0.1"), ip("10.0.0.2")];
        // A direct client: its header is ignored.
        assert_eq!(client_address(Some(ip("5.6.7.8")), Some("1.2.3.4"), &trusted), Some(ip("5.6.7.8")));
        // Through one trusted proxy.
        assert_eq!(client_address(Some(ip("10.0.0.1")), Some("1.2.3.4"), &trusted), Some(ip("1.2.3.4")));
        // Through two; what the client itself put first is not believed.
        let chain = "6.6.6.6, 1.2.3.4, 10.0.0.2";
        assert_eq!(client_address(Some(ip("10.0.0.1")), Some(chain), &trusted), Some(ip("1.2.3.4")));
        // A trusted proxy without the header, or with garbage, counts as itself.
        assert_eq!(client_address(Some(ip("10.0.0.1")), None, &trusted), Some(ip("10.0.0.1")));
        assert_eq!(client_address(Some(ip("10.0.0.1")), Some("nonsense"), &trusted), Some(ip("10.0.0.1")));
        assert_eq!(client_address(None, Some("1.2.3.4"), &trusted), None);
    }
}
