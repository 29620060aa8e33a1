//! [`serve`]: HTTP/1.1 on a [`DualListener`], with the listener's header deadline, until a
//! shutdown signal; then it stops accepting, lets the requests in progress finish, and closes
//! idle connections.
//!
//! `axum::serve` takes no configuration, and without a timer hyper reads a request's headers
//! for as long as the client cares to send them: one byte a second holds a connection (and a
//! file descriptor) for ever. Here every connection gets the header deadline.

use std::convert::Infallible;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::watch;
use tower_service::Service;

use crate::listener::DualListener;

/// How long a stopping server waits for the requests in progress.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` until `shutdown` resolves, then waits for the requests in
/// progress (at most 30 s). Handlers can read the connection's [`ConnInfo`](crate::listener::ConnInfo) with
/// `ConnectInfo<ConnInfo>`. A WebSocket (or any upgraded connection) is its handler's from the
/// upgrade on: this does not wait for it.
pub async fn serve(
    mut listener: DualListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let header_read_timeout = listener.limits().header_read_timeout;
    let stats = listener.stats();
    // Dropped at shutdown: each connection then finishes what it is answering and closes.
    let (stop, stopping) = watch::channel(());
    // Held by every connection; `closed()` resolves once all are done.
    let (done, running) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let (conn, info) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let router = router.clone();
        let mut stopping = stopping.clone();
        let running = running.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            let remote = info.remote;
            let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(info.clone()));
                let mut router = router.clone();
                async move { Ok::<_, Infallible>(router.call(request).await.unwrap_or_else(|never| match never {})) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
            let mut connection = pin!(builder.serve_connection(TokioIo::new(conn), service).with_upgrades());
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = stopping.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                if e.is_timeout() {
                    stats.timed_out.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%remote, "connection closed: its request headers did not arrive in time");
                } else {
                    tracing::debug!(%remote, error = %e, "connection ended with an error");
                }
            }
            drop(running);
        });
    }
    // No more connections: the acceptor stops with the listener.
    drop(listener);
    drop(stopping);
    drop(stop);
    drop(running);
    if tokio::time::timeout(SHUTDOWN_GRACE, done.closed()).await.is_err() {
        tracing::warn!("some requests were still running {SHUTDOWN_GRACE:?} after the shutdown began");
    }
    Ok(())
}
