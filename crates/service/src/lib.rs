//! The messenger's behaviour: accounts, sign-in, profiles, contacts, privacy, chats and the
//! update stream. Front ends call [`Service`]; it talks to storage only through
//! [`peyvand_store::Store`] and to other nodes only through [`peyvand_bus::Bus`].
//!
//! Every method returns the API's own error type, [`ApiError`], with a stable code.

mod auth;
mod chats;
mod codes;
mod config;
mod contacts;
pub mod federation;
mod interconnect;
mod limiter;
pub mod media;
mod presence;
mod profile;
mod session_cache;
mod stream;

use std::sync::Arc;

use peyvand_api::{ApiError, ErrorCode};
use peyvand_bus::Bus;
use peyvand_store::{Store, StoreError};

pub use auth::Session;
pub use codes::{CodeSender, ConsoleCodeSender, HttpCodeSender};
pub use config::{Limits, MediaConfig, ServiceConfig};
pub use federation::Federation;
pub use interconnect::Reachable;
pub use peyvand_bus::BusHealth;
pub use peyvand_store::DeliveryChange;
pub use presence::Presences;
pub use stream::UpdateFeed;

/// The messenger's behaviour. Cheap to clone; share one per node.
#[derive(Clone, Debug)]
pub struct Service {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    codes: Arc<dyn CodeSender>,
    config: Arc<ServiceConfig>,
    presences: Arc<Presences>,
    metrics: Arc<Counters>,
    send_limiter: Arc<limiter::SendLimiter>,
    session_cache: Arc<session_cache::SessionCache>,
    /// The transport to other messengers, once the interconnect is set up.
    federation: Arc<std::sync::OnceLock<Arc<dyn Federation>>>,
    node_id: i64,
    /// Turns for live update streams' catch-up reads (`catch_up_reads` of them).
    catch_up: Arc<tokio::sync::Semaphore>,
    /// Where media bytes are kept; without it, media is refused as unavailable.
    blobs: Option<peyvand_media::storage::BlobStore>,
    /// The key that signs media links, read from the store on first use.
    link_key: Arc<tokio::sync::OnceCell<Arc<Vec<u8>>>>,
}

/// What [`Service::readiness`] found.
#[derive(Debug, Clone)]
pub struct Readiness {
    pub store: Result<(), String>,
    pub bus: peyvand_bus::BusHealth,
    /// Whether the media storage answers (absent when this server keeps no media).
    pub media: Option<Result<(), String>>,
}

impl Readiness {
    /// Whether the node can serve requests: its storage answers. A node whose link to the
    /// others is down still can (what it misses reaches its clients from the store once the
    /// link is back); and since every node shares the bus, refusing then would take the whole
    /// cluster out of a load balancer at once.
    pub fn ready(&self) -> bool {
        self.store.is_ok()
    }

    /// Whether everything works: storage, the link to the other nodes, and the media storage.
    /// (Without the media storage a node still serves everything but files: it stays ready.)
    pub fn healthy(&self) -> bool {
        self.store.is_ok() && self.bus.connected && self.media.as_ref().is_none_or(Result::is_ok)
    }
}

/// Counters the front end exposes as metrics.
#[derive(Debug, Default)]
pub struct Counters {
    pub codes_sent: std::sync::atomic::AtomicU64,
    pub sign_ins: std::sync::atomic::AtomicU64,
    pub sign_ups: std::sync::atomic::AtomicU64,
    pub messages_sent: std::sync::atomic::AtomicU64,
    pub updates_published: std::sync::atomic::AtomicU64,
    /// Store reads live update streams made to catch up.
    pub catch_up_reads: std::sync::atomic::AtomicU64,
    /// Live update streams waiting for their turn to read the store (a gauge).
    pub catch_ups_waiting: std::sync::atomic::AtomicU64,
    /// Media bytes uploaded and downloaded, per kind.
    pub media: media::MediaCounters,
}

impl Service {
    pub fn new(store: Arc<dyn Store>, bus: Arc<dyn Bus>, codes: Arc<dyn CodeSender>, config: ServiceConfig) -> Self {
        let catch_up = Arc::new(tokio::sync::Semaphore::new(config.catch_up_reads.max(1) as usize));
        Self {
            store,
            bus,
            codes,
            config: Arc::new(config),
            presences: Arc::new(Presences::default()),
            metrics: Arc::new(Counters::default()),
            send_limiter: Arc::default(),
            session_cache: Arc::default(),
            federation: Arc::default(),
            // Positive, so it reads well in logs and metrics.
            node_id: rand::random::<i64>() & i64::MAX,
            catch_up,
            blobs: None,
            link_key: Arc::default(),
        }
    }

    /// The service with media kept in `blobs`.
    pub fn with_blobs(mut self, blobs: peyvand_media::storage::BlobStore) -> Self {
        self.blobs = Some(blobs);
        self
    }

    /// Where media is kept, if anywhere.
    pub fn blob_store(&self) -> Option<&peyvand_media::storage::BlobStore> {
        self.blobs.as_ref()
    }

    pub fn counters(&self) -> &Counters {
        &self.metrics
    }

    pub fn bus_health(&self) -> peyvand_bus::BusHealth {
        self.bus.health()
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// Whether this node's storage answers and its link to the other nodes is up, for the
    /// health and readiness checks.
    pub async fn readiness(&self) -> Readiness {
        let store = match tokio::time::timeout(std::time::Duration::from_secs(2), self.store.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: the storage does not answer");
                Err("the storage does not answer".to_owned())
            }
            Err(_) => Err("the storage did not answer within 2 s".to_owned()),
        };
        let media = match &self.blobs {
            None => None,
            Some(blobs) => Some(blobs.ping().await.map_err(|e| {
                tracing::warn!(error = %e, "readiness: the media storage does not answer");
                "the media storage does not answer".to_owned()
            })),
        };
        Readiness { store, bus: self.bus.health(), media }
    }

    /// Drops updates older than the configured retention; run periodically.
    pub async fn prune_updates(&self) -> Result<u64, ApiError> {
        let before = now_millis() - self.config.update_retention_secs as i64 * 1000;
        self.store.prune_updates(before, self.config.update_retention_min).await.map_err(store_error)
    }
}

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::new(ErrorCode::NotFound, "not found"),
        StoreError::UsernameTaken => ApiError::new(ErrorCode::UsernameTaken, "this username is taken"),
        StoreError::IdempotencyConflict => {
            ApiError::new(ErrorCode::IdempotencyConflict, "this client id was already used for a different message")
        }
        StoreError::CursorAhead { newest } => ApiError::new(
            ErrorCode::ResyncRequired,
            format!("the cursor is ahead of this account's stream ({newest}): fetch your chats again"),
        ),
        StoreError::CursorTooOld { oldest_kept } => ApiError::new(
            ErrorCode::ResyncRequired,
            format!("updates before cursor {oldest_kept} are no longer kept: fetch your chats again"),
        ),
        StoreError::Conflict(why) => ApiError::new(ErrorCode::RoomConflict, why),
        StoreError::Unavailable(why) => {
            tracing::warn!(%why, "storage unavailable");
            ApiError::new(ErrorCode::Unavailable, "storage is unavailable; retry later")
        }
        StoreError::Backend(why) => {
            tracing::error!(%why, "storage failed");
            ApiError::new(ErrorCode::Internal, "internal error")
        }
    }
}

fn err(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError::new(code, message)
}

fn rate_limited(retry_after_ms: i64, what: &str) -> ApiError {
    let mut e = err(ErrorCode::RateLimited, format!("too many {what}; try again later"));
    e.retry_after = Some((retry_after_ms.max(0) as u64).div_ceil(1000).max(1));
    e
}
