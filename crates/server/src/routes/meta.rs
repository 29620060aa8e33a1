//! The OpenAPI document, metrics, health, and JSON errors for unknown routes.

use axum::extract::State;
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
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], crate::metrics::render(&s))
}

/// `GET /healthz`: the node is up.
pub async fn health() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

pub async fn not_found() -> Failure {
    Failure(ApiError::new(ErrorCode::NotFound, "no such endpoint"))
}

pub async fn method_not_allowed() -> Failure {
    Failure(ApiError::new(ErrorCode::MethodNotAllowed, "this endpoint does not take that method"))
}
