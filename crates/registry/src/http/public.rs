//! What anyone may read or do: the signed directory, the registry's key, the CA certificate,
//! enrolment with a one-time token, renewal signed with the provider's key, health.

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

use crate::directory::SIGNATURE_HEADER;
use crate::error::{ApiError, ErrorCode};
use crate::http::extract::{ApiResult, Failure, Json};
use crate::keys::encode_base64;
use crate::model::{Certificate, EnrolRequest, RegistryKeyInfo, RenewRequest};
use crate::registry::Registry;

/// `GET /v1/directory`: the signed directory, exactly as signed; the signature (base64) is
/// in the `Peyvand-Signature` header.
pub async fn directory(State(registry): State<Registry>) -> ApiResult<Response> {
    let published = registry.directory().await?;
    let signature = encode_base64(&published.signature);
    Ok((
        [
            (CONTENT_TYPE, "application/json".to_owned()),
            (CACHE_CONTROL, "no-cache".to_owned()),
            (axum::http::HeaderName::from_static(SIGNATURE_HEADER), signature),
        ],
        published.body.to_vec(),
    )
        .into_response())
}

/// `GET /v1/directory.sig`: the signature (base64) of the directory served now. A directory
/// may change between two requests; the header of `GET /v1/directory` never mismatches.
pub async fn directory_signature(State(registry): State<Registry>) -> ApiResult<Response> {
    let published = registry.directory().await?;
    let signature = format!("{}\n", encode_base64(&published.signature));
    Ok(([(CONTENT_TYPE, "text/plain; charset=utf-8"), (CACHE_CONTROL, "no-cache")], signature).into_response())
}

/// `GET /v1/registry-key`: the Ed25519 public key the directory is signed with.
pub async fn registry_key(State(registry): State<Registry>) -> Json<RegistryKeyInfo> {
    Json(registry.key_info())
}

/// `GET /v1/ca.pem`: the certificate of the registry's CA (PEM), the trust anchor for mutual
/// TLS between providers.
pub async fn ca_certificate(State(registry): State<Registry>) -> Response {
    ([(CONTENT_TYPE, "application/x-pem-file")], registry.ca_certificate_pem().to_owned()).into_response()
}

/// `POST /v1/enrol`: a one-time enrolment token and a CSR (PEM) in, the provider's certificate
/// (201) out. A provider renews with `POST /v1/renew` (no token), or with a fresh token here.
pub async fn enrol(
    State(registry): State<Registry>,
    Json(request): Json<EnrolRequest>,
) -> ApiResult<(axum::http::StatusCode, Json<Certificate>)> {
    Ok((
        axum::http::StatusCode::CREATED,
        Json(registry.enrol(&request.token, &request.csr, request.signing_key.as_deref()).await?),
    ))
}

/// `POST /v1/renew`: a provider that holds a valid certificate gets a new one (201) for a CSR,
/// signed with one of its licence's signing keys; no token.
pub async fn renew(
    State(registry): State<Registry>,
    Json(request): Json<RenewRequest>,
) -> ApiResult<(axum::http::StatusCode, Json<Certificate>)> {
    let certificate = registry.renew(&request.provider_id, &request.csr, request.timestamp, &request.signature).await?;
    Ok((axum::http::StatusCode::CREATED, Json(certificate)))
}

/// `GET /healthz`: the process is up; also says which directory it serves.
pub async fn health(State(registry): State<Registry>) -> ApiResult<Json<serde_json::Value>> {
    let published = registry.directory().await?;
    Ok(Json(serde_json::json!({
        "status": "ok",
        "directory_version": published.version,
        "directory_expires_at": published.expires_at,
    })))
}

pub async fn not_found() -> Failure {
    Failure(ApiError::new(ErrorCode::NotFound, "no such endpoint"))
}

pub async fn method_not_allowed() -> Failure {
    Failure(ApiError::new(ErrorCode::MethodNotAllowed, "this endpoint does not take that method"))
}
