//! The OpenAPI document, metrics, health, and JSON errors for unknown routes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use peyvand_api::{ApiError, ErrorCode};

use crate::AppState;
use crate::extract::Failure;

/// `GET /`: a small page for a person who opens the server's address in a browser, saying
/// what this server is and where its API is described. Everything is inline: no asset is
/// loaded from anywhere.
pub async fn home(State(s): State<AppState>) -> impl IntoResponse {
    let provider = s.interconnect.as_ref().map(|i| html_escape(i.provider_id()));
    let identity = match &provider {
        Some(id) => format!(
            "<p>پیام‌رسان <bdi>{id}</bdi>، عضو اتصال بین پیام‌رسان‌ها.</p>\n<p lang=\"en\" dir=\"ltr\">Messenger <bdi>{id}</bdi>, connected to other messengers.</p>"
        ),
        None => "<p>پیام‌رسان مستقل.</p>\n<p lang=\"en\" dir=\"ltr\">A stand-alone messenger.</p>".to_owned(),
    };
    let version = env!("CARGO_PKG_VERSION");
    let page = format!(
        r#"<!doctype html>
<html lang="fa" dir="rtl">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>پیوند · Peyvand</title>
<style>
  :root {{ color-scheme: light dark; font-family: system-ui, sans-serif; line-height: 1.7; }}
  body {{ max-inline-size: 40rem; margin: 3rem auto; padding-inline: 1.25rem; }}
  h1 {{ margin-block-end: 0.25rem; }}
  code, a {{ unicode-bidi: isolate; }}
  ul {{ padding-inline-start: 1.25rem; }}
</style>
</head>
<body>
<h1>پیوند <span lang="en">Peyvand</span></h1>
<p>این نشانیِ یک سرور پیام‌رسان پیوند است (نسخهٔ <bdi>{version}</bdi>). برنامهٔ وب هنوز اینجا نیست؛ از رابط برنامه‌نویسی یا خط فرمان <code>peyvand</code> استفاده کنید.</p>
<p lang="en" dir="ltr">This is a Peyvand messenger server (version {version}). The web client does not live here yet: use the client API or the <code>peyvand</code> command line.</p>
{identity}
<ul>
<li><a href="/v1/openapi.json">/v1/openapi.json</a> — توصیف رابط برنامه‌نویسی (OpenAPI 3) · <span lang="en">the API description</span></li>
<li><a href="/healthz">/healthz</a> — وضعیت سرور · <span lang="en">health</span></li>
</ul>
</body>
</html>
"#
    );
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (axum::http::header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'unsafe-inline'"),
            (axum::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        page,
    )
}

/// Escapes text for HTML (the provider id is checked elsewhere; this keeps the page safe
/// whatever it holds).
fn html_escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '&' => "&amp;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

/// `GET /v1/openapi.json`: this API's OpenAPI 3 document.
pub async fn openapi_json() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], crate::openapi::document_json())
}

/// `GET /metrics`: Prometheus metrics, for operators: on the client port only when a token is
/// configured (and then only with it; `not_found` otherwise, as if there were no such route),
/// and on the operator's address when one is (with the token too, when there is one).
pub async fn metrics(State(s): State<AppState>, headers: axum::http::HeaderMap) -> Result<impl IntoResponse, Failure> {
    s.metrics_access.check(&headers, false)?;
    Ok(metrics_page(&s).await)
}

/// `GET /metrics` on the operator's address.
pub async fn operator_metrics(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<impl IntoResponse, Failure> {
    s.metrics_access.check(&headers, true)?;
    Ok(metrics_page(&s).await)
}

async fn metrics_page(s: &AppState) -> impl IntoResponse + use<> {
    let mut text = crate::metrics::render(s);
    if let Some(interconnect) = &s.interconnect {
        text.push_str(&interconnect.metrics().await);
    }
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// `GET /healthz`: the process is up (liveness). Says also whether the storage, the
/// cluster link and the media storage work, but answers 200 either way: a node riding out an outage must not be
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
        "media": match &r.media {
            None => serde_json::Value::Null,
            Some(Ok(())) => serde_json::json!({ "ok": true }),
            Some(Err(e)) => serde_json::json!({ "ok": false, "error": e }),
        },
    })
}

pub async fn not_found() -> Failure {
    Failure(ApiError::new(ErrorCode::NotFound, "no such endpoint"))
}

pub async fn method_not_allowed() -> Failure {
    Failure(ApiError::new(ErrorCode::MethodNotAllowed, "this endpoint does not take that method"))
}
