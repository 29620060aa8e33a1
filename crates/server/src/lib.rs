//! The messenger server's HTTP and WebSocket front end.
//!
//! Handlers live in [`routes`], one module per area; each handler's doc comment starts with
//! its route. Handlers only translate HTTP to calls on [`peyvand_service::Service`] and back.
//! The OpenAPI document is generated from the handlers' annotations ([`openapi`]).

mod extract;
mod metrics;
pub mod openapi;
mod routes;
mod streams;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use peyvand_http::listener::{ConnectionStats, DualListener};
use peyvand_interconnect::Interconnect;
use peyvand_service::Service;

pub use metrics::{Metrics, MetricsAccess};
pub use streams::{DEFAULT_STREAMS_PER_ACCOUNT, DEFAULT_STREAMS_PER_DEVICE, GoingAway, StreamLimits};

/// The largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How the front end treats its clients, beyond what the service decides.
#[derive(Clone, Debug)]
pub struct FrontEnd {
    /// Proxies (load balancers) whose `X-Forwarded-For` names the real client, for
    /// per-address limits.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// How long a frame may wait for an update stream's client to take it. A client that
    /// stops reading is then disconnected: it resumes from its cursor when it comes back.
    pub stream_write_timeout: Duration,
    /// The listener's connection counters, for `/metrics`.
    pub connections: Arc<ConnectionStats>,
    /// Update streams each account and device may hold open on this server.
    pub stream_limits: StreamLimits,
    /// Tells the streams when the server stops; the same handle goes to [`serve`].
    pub going_away: GoingAway,
    /// Who may read `/metrics`, and where.
    pub metrics_access: MetricsAccess,
}

/// The default of [`FrontEnd::stream_write_timeout`].
pub const DEFAULT_STREAM_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// What every handler receives.
#[derive(Clone, Debug)]
pub struct AppState {
    pub service: Service,
    pub metrics: Arc<Metrics>,
    /// Proxies (load balancers) whose `X-Forwarded-For` names the real client.
    pub trusted_proxies: Arc<Vec<std::net::IpAddr>>,
    /// See [`FrontEnd::stream_write_timeout`].
    pub stream_write_timeout: Duration,
    /// The link to other messengers, when configured.
    pub interconnect: Option<Interconnect>,
    /// The listener's connection counters.
    pub connections: Arc<ConnectionStats>,
    /// The update streams open, by account and device.
    pub(crate) streams: Arc<streams::Streams>,
    pub going_away: GoingAway,
    pub metrics_access: MetricsAccess,
}

/// The routers of one server, sharing their state.
#[derive(Debug)]
pub struct Routers {
    /// The client API (and the interconnect's routes): the public port.
    pub client: Router,
    /// `GET /metrics` alone, for an operator's address apart from clients.
    pub operator: Router,
}

/// The whole client API, and the interconnect's endpoints for other providers when there is
/// one; and the operator's router. Requests from `front_end.trusted_proxies` are counted
/// against the address their `X-Forwarded-For` names; everyone else's against their own.
pub fn router(service: Service, front_end: FrontEnd, interconnect: Option<Interconnect>) -> Routers {
    let peers = interconnect.as_ref().map(Interconnect::router);
    let state = AppState {
        service,
        metrics: Arc::new(Metrics::default()),
        trusted_proxies: Arc::new(front_end.trusted_proxies),
        stream_write_timeout: front_end.stream_write_timeout,
        interconnect,
        connections: front_end.connections,
        streams: Arc::new(streams::Streams::new(front_end.stream_limits)),
        going_away: front_end.going_away,
        metrics_access: front_end.metrics_access,
    };
    let operator = Router::new()
        .route("/metrics", axum::routing::get(routes::operator_metrics))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .with_state(state.clone());
    let client_api = routes::router();
    let client_api = match peers {
        Some(peers) => client_api.merge(peers.with_state(())),
        None => client_api,
    };
    let client = client_api
        .layer(axum::middleware::from_fn(extract::refuse_declared_oversize))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state);
    Routers { client, operator }
}

/// How long a stopping server waits for its WebSockets to answer their clients' requests and
/// say goodbye.
const STREAMS_CLOSE_WAIT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` resolves. Plain HTTP always; HTTPS with
/// mutual TLS too once the listener has a TLS configuration (the interconnect's).
///
/// Then, as the server stops: no connection is accepted, requests in progress finish (long
/// polls answer at once with what they have), and every WebSocket answers the requests it
/// began and closes with 1001 (going away), through `going_away`, the handle the router was
/// given in its [`FrontEnd`].
pub async fn serve(
    listener: DualListener,
    router: Router,
    going_away: GoingAway,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let signal = going_away.clone();
    let shutdown = async move {
        shutdown.await;
        signal.begin();
    };
    peyvand_http::serve(listener, router, shutdown).await?;
    if !going_away.streams_closed(STREAMS_CLOSE_WAIT).await {
        tracing::warn!("some update streams did not close in time");
    }
    Ok(())
}
