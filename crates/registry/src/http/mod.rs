//! The registry's HTTP API (axum): the public directory, the CA certificate and enrolment,
//! and the admin API. Each handler's doc
//! comment starts with its route.

mod admin;
mod extract;
mod public;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::registry::Registry;

pub use extract::Failure;

/// The largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The whole API.
pub fn router(registry: Registry) -> Router {
    Router::new()
        .route("/healthz", get(public::health))
        .route("/v1/directory", get(public::directory))
        .route("/v1/directory.sig", get(public::directory_signature))
        .route("/v1/registry-key", get(public::registry_key))
        .route("/v1/ca.pem", get(public::ca_certificate))
        .route("/v1/enrol", post(public::enrol))
        .route("/v1/renew", post(public::renew))
        .route("/v1/admin/licences", get(admin::list_licences).post(admin::issue_licence))
        .route("/v1/admin/licences/{provider_id}", get(admin::get_licence).patch(admin::update_licence))
        .route("/v1/admin/licences/{provider_id}/suspend", post(admin::suspend_licence))
        .route("/v1/admin/licences/{provider_id}/reinstate", post(admin::reinstate_licence))
        .route("/v1/admin/licences/{provider_id}/revoke", post(admin::revoke_licence))
        .route("/v1/admin/licences/{provider_id}/delist", post(admin::delist_licence))
        .route("/v1/admin/licences/{provider_id}/enrolment-tokens", post(admin::create_enrolment_token))
        .route("/v1/admin/licences/{provider_id}/certificates", get(admin::list_certificates))
        .route("/v1/admin/certificates/{serial}/revoke", post(admin::revoke_certificate))
        .route("/v1/admin/audit", get(admin::audit_log))
        .fallback(public::not_found)
        .method_not_allowed_fallback(public::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(registry)
}

/// Serves `router` on `listener` in plain HTTP until `shutdown` resolves, with `limits` on
/// its connections (and their header deadline).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: peyvand_http::listener::ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // No TLS configuration: a TLS handshake is refused.
    let listener = peyvand_http::listener::DualListener::new(listener, Default::default(), limits)?;
    peyvand_http::serve(listener, router, shutdown).await
}

/// Serves `router` on `listener` in HTTPS only, with `tls`, until `shutdown` resolves.
pub async fn serve_https(
    listener: tokio::net::TcpListener,
    tls: std::sync::Arc<peyvand_http::listener::ServerConfig>,
    router: Router,
    limits: peyvand_http::listener::ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slot = peyvand_http::listener::TlsSlot::default();
    slot.set(Some(tls));
    let listener = peyvand_http::listener::DualListener::tls_only(listener, slot, limits)?;
    peyvand_http::serve(listener, router, shutdown).await
}
