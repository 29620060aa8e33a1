//! The OpenAPI document, metrics, health, and JSON errors for unknown routes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use peyvand_api::{ApiError, ErrorCode};

use crate::AppState;
use crate::extract::Failure;

/// `GET /v1/openapi.json`: this API's OpenAPI 3 document.
pub async fn openapi_json() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], crate::openapi::document_json())
}

/// `GET /metrics`: Prometheus metrics.
pub async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let mut text = crate::metrics::render(&s);
    if let Some(interconnect) = &s.interconnect {
        text.push_str(&interconnect.metrics().await);
    }
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// `GET /healthz`: the process is up (liveness). Says also whether the storage and the
/// cluster link work, but answers 200 either way: a node riding out an outage must not be
/// restarted for it.
pub async fn health(State(s): State<AppState>) -> impl IntoResponse {
    axum::Json(readiness_json(&s.service.readiness().await))
}

/// `GET /readyz`: 200 when this node can serve requests (its storage answers; `degraded` when
/// the link to the other nodes is down), 503 otherwise, so that a load balancer sends clients
/// elsewhere meanwhile.
pub async fn ready(State(s): State<AppState>) -> impl IntoResponse {
    let readiness = s.service.readiness().await;
    let status = if readiness.ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(readiness_json(&readiness)))
}

fn readiness_json(r: &peyvand_service::Readiness) -> serde_json::Value {
    serde_json::json!({
        "status": if r.healthy() { "ok" } else if r.ready() { "degraded" } else { "unavailable" },
        "storage": match &r.store { Ok(()) => serde_json::json!({ "ok": true }), Err(e) => serde_json::json!({ "ok": false, "error": e }) },
        "bus": {
            "kind": r.bus.kind,
            "ok": r.bus.connected,
            "reconnects": r.bus.reconnects,
        },
    })
}

pub async fn not_found() -> Failure {
    Failure(ApiError::new(ErrorCode::NotFound, "no such endpoint"))
}

pub async fn method_not_allowed() -> Failure {
    Failure(ApiError::new(ErrorCode::MethodNotAllowed, "this endpoint does not take that method"))
}
