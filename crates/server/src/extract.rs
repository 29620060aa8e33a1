//! Extractors whose failures are API errors with stable codes, not axum's plain text.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use peyvand_api::{ApiError, ErrorBody, ErrorCode};
use std::net::IpAddr;

use peyvand_service::Session;

use crate::AppState;

/// An API error as an HTTP response.
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
        let mut response = (status, axum::Json(ErrorBody { error: self.0 })).into_response();
        if let Some(value) = retry_after.and_then(|secs| secs.to_string().parse().ok()) {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, value);
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
        let peer = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|info| info.0.ip());
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
/// limit as they are read.)
pub async fn refuse_declared_oversize(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
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
