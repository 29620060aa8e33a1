//! Prometheus metrics at `/metrics`, in the text exposition format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::AppState;

/// Who may read `/metrics`: see [`MetricsAccess::new`].
#[derive(Clone, Default)]
pub struct MetricsAccess {
    /// The bearer token, when one is configured.
    token: Option<std::sync::Arc<str>>,
}

impl std::fmt::Debug for MetricsAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsAccess").field("token", &self.token.as_ref().map(|_| "<set>")).finish()
    }
}

impl MetricsAccess {
    /// Without a token, `/metrics` is served only on the operator's address (to anyone who
    /// reaches it); with one, on the client port and the operator's address, to requests
    /// that carry it as `Authorization: Bearer`.
    pub fn new(token: Option<String>) -> Self {
        Self { token: token.map(Into::into) }
    }

    /// Whether a request for `/metrics` may have them: `not_found` on the client port without a
    /// token configured, `unauthorized` without the right token.
    pub(crate) fn check(&self, headers: &axum::http::HeaderMap, operator: bool) -> Result<(), peyvand_api::ApiError> {
        use peyvand_api::{ApiError, ErrorCode};
        let Some(token) = &self.token else {
            return if operator { Ok(()) } else { Err(ApiError::new(ErrorCode::NotFound, "no such endpoint")) };
        };
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .unwrap_or_default();
        if constant_time_eq(given.as_bytes(), token.as_bytes()) {
            Ok(())
        } else {
            Err(ApiError::new(ErrorCode::Unauthorized, "the metrics need the operator's bearer token"))
        }
    }
}

/// Compares without stopping at the first difference, so that the time taken says nothing of
/// how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Upper bounds of the request-duration histogram, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// HTTP-level counters; the service's own counters are read at scrape time.
#[derive(Debug, Default)]
pub struct Metrics {
    responses_by_class: [AtomicU64; 5],
    duration_buckets: [AtomicU64; BUCKETS.len()],
    duration_count: AtomicU64,
    duration_micros_sum: AtomicU64,
    pub websockets_open: AtomicU64,
    pub websocket_frames_sent: AtomicU64,
    pub websocket_frames_received: AtomicU64,
    pub websocket_write_timeouts: AtomicU64,
}

/// Middleware: counts every response by status class and times it.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    // Only pay for copying the request line when it will be logged.
    let line =
        tracing::enabled!(tracing::Level::DEBUG).then(|| (request.method().clone(), request.uri().path().to_owned()));
    let response = next.run(request).await;
    if let Some((method, path)) = line {
        tracing::debug!(%method, %path, status = response.status().as_u16(), micros = started.elapsed().as_micros() as u64, "request");
    }
    let metrics = &state.metrics;
    let class = (response.status().as_u16() / 100).clamp(1, 5) as usize - 1;
    metrics.responses_by_class[class].fetch_add(1, Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    for (bucket, bound) in metrics.duration_buckets.iter().zip(BUCKETS) {
        if secs <= bound {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
    }
    metrics.duration_count.fetch_add(1, Ordering::Relaxed);
    metrics.duration_micros_sum.fetch_add((secs * 1e6) as u64, Ordering::Relaxed);
    response
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
}

/// Renders every metric.
pub fn render(state: &AppState) -> String {
    let m = &state.metrics;
    let c = state.service.counters();
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut out = String::with_capacity(2048);
    let _ = writeln!(
        out,
        "# HELP peyvand_http_responses_total HTTP responses by status class.\n# TYPE peyvand_http_responses_total counter"
    );
    for (i, n) in m.responses_by_class.iter().enumerate() {
        let _ = writeln!(out, "peyvand_http_responses_total{{class=\"{}xx\"}} {}", i + 1, load(n));
    }
    let _ = writeln!(
        out,
        "# HELP peyvand_http_request_duration_seconds Time to answer HTTP requests.\n# TYPE peyvand_http_request_duration_seconds histogram"
    );
    for (bucket, bound) in m.duration_buckets.iter().zip(BUCKETS) {
        let _ = writeln!(out, "peyvand_http_request_duration_seconds_bucket{{le=\"{bound}\"}} {}", load(bucket));
    }
    let count = load(&m.duration_count);
    let _ = writeln!(out, "peyvand_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "peyvand_http_request_duration_seconds_sum {}", load(&m.duration_micros_sum) as f64 / 1e6);
    let _ = writeln!(out, "peyvand_http_request_duration_seconds_count {count}");
    gauge(&mut out, "peyvand_websockets_open", "Open WebSocket update streams.", load(&m.websockets_open));
    counter(
        &mut out,
        "peyvand_websocket_frames_sent_total",
        "Frames sent on update streams.",
        load(&m.websocket_frames_sent),
    );
    counter(
        &mut out,
        "peyvand_websocket_frames_received_total",
        "Client frames (requests) received on update streams.",
        load(&m.websocket_frames_received),
    );
    counter(
        &mut out,
        "peyvand_websocket_write_timeouts_total",
        "Update streams closed because their client took no frame for the write timeout.",
        load(&m.websocket_write_timeouts),
    );
    counter(
        &mut out,
        "peyvand_streams_refused_total",
        "Update streams refused with too_many_streams (an account's or a device's cap).",
        load(&state.streams.refused),
    );
    let conns = &state.connections;
    gauge(&mut out, "peyvand_connections_open", "Client connections open on the listener.", load(&conns.open));
    counter(&mut out, "peyvand_connections_accepted_total", "Connections accepted.", load(&conns.accepted));
    let _ = writeln!(
        out,
        "# HELP peyvand_connections_refused_total Connections closed as soon as accepted, by the cap they met.\n# TYPE peyvand_connections_refused_total counter"
    );
    for (reason, n) in [
        ("overall", &conns.refused_overall),
        ("per_address", &conns.refused_per_address),
        ("descriptors", &conns.refused_descriptors),
    ] {
        let _ = writeln!(out, "peyvand_connections_refused_total{{reason=\"{reason}\"}} {}", load(n));
    }
    counter(
        &mut out,
        "peyvand_connections_timed_out_total",
        "Connections closed because their handshake or request headers did not arrive in time.",
        load(&conns.timed_out),
    );
    gauge(
        &mut out,
        "peyvand_users_online",
        "People with at least one open update stream on this node.",
        state.service.presences().online_count() as u64,
    );
    let bus = state.service.bus_health();
    gauge(&mut out, "peyvand_bus_connected", "1 when the link to the other nodes is up.", u64::from(bus.connected));
    counter(&mut out, "peyvand_bus_reconnects_total", "Times the cluster link came back.", bus.reconnects);
    counter(&mut out, "peyvand_bus_publish_errors_total", "Updates that could not be published.", bus.publish_errors);
    counter(
        &mut out,
        "peyvand_bus_invalid_messages_total",
        "Invalid messages from other nodes, ignored.",
        bus.invalid_messages,
    );
    counter(
        &mut out,
        "peyvand_bus_dropped_for_slow_streams_total",
        "Updates dropped for update streams that fell behind (they read the store; typing and presence are lost to them).",
        bus.dropped_for_slow_streams,
    );
    counter(&mut out, "peyvand_codes_sent_total", "Sign-in codes sent.", load(&c.codes_sent));
    counter(&mut out, "peyvand_sign_ins_total", "Successful sign-ins.", load(&c.sign_ins));
    counter(&mut out, "peyvand_sign_ups_total", "Accounts created.", load(&c.sign_ups));
    counter(&mut out, "peyvand_messages_sent_total", "Messages stored.", load(&c.messages_sent));
    counter(
        &mut out,
        "peyvand_updates_published_total",
        "Durable updates published to the bus.",
        load(&c.updates_published),
    );
    counter(
        &mut out,
        "peyvand_stream_catch_up_reads_total",
        "Store reads update streams made to catch up (after a gap or a lost cluster link).",
        load(&c.catch_up_reads),
    );
    gauge(
        &mut out,
        "peyvand_stream_catch_ups_waiting",
        "Update streams waiting for their turn to read the store (see catch_up_reads).",
        load(&c.catch_ups_waiting),
    );
    for (name, help, counts) in [
        ("peyvand_media_uploaded_bytes_total", "Media bytes received in uploads, by declared kind.", &c.media.uploaded),
        ("peyvand_media_downloaded_bytes_total", "Media bytes served to clients, by kind.", &c.media.downloaded),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (kind, n) in peyvand_api::MediaKind::ALL.iter().zip(counts) {
            let _ = writeln!(out, "{name}{{kind=\"{}\"}} {}", kind.as_str(), load(n));
        }
    }
    out
}
