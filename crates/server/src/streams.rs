//! The update streams open on this server: how many each account and device holds (capped,
//! so that one token cannot take every file descriptor), and the shutdown that tells each of
//! them the server is going away.
//!
//! The counts are this process's: in a cluster an account may hold the cap on each node,
//! which still keeps any one node's descriptors from being taken by one account.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use peyvand_api::{ApiError, ErrorCode};
use peyvand_service::Session;
use tokio::sync::watch;

/// The default of [`StreamLimits::per_account`].
pub const DEFAULT_STREAMS_PER_ACCOUNT: usize = 32;
/// The default of [`StreamLimits::per_device`].
pub const DEFAULT_STREAMS_PER_DEVICE: usize = 8;

/// Update streams (WebSockets and long polls) open at once on this server, at most.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    /// Per account, all its devices together.
    pub per_account: usize,
    /// Per device (session).
    pub per_device: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self { per_account: DEFAULT_STREAMS_PER_ACCOUNT, per_device: DEFAULT_STREAMS_PER_DEVICE }
    }
}

#[derive(Debug, Default)]
struct Account {
    total: usize,
    devices: HashMap<i64, usize>,
}

/// The streams open, by account and device.
#[derive(Debug)]
pub(crate) struct Streams {
    limits: StreamLimits,
    open: Mutex<HashMap<i64, Account>>,
    /// Streams refused because a cap was reached.
    pub refused: AtomicU64,
}

impl Streams {
    pub(crate) fn new(limits: StreamLimits) -> Self {
        Self { limits, open: Mutex::new(HashMap::new()), refused: AtomicU64::new(0) }
    }

    /// A place for one more stream of `session`, or `too_many_streams`.
    pub(crate) fn open(self: &Arc<Self>, session: Session) -> Result<StreamPermit, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let account = open.entry(session.user_id).or_default();
        let on_device = account.devices.get(&session.device_id).copied().unwrap_or(0);
        let refusal = if account.total >= self.limits.per_account {
            Some(format!(
                "this account has {} update streams open on this server, the most it may; close one first",
                self.limits.per_account
            ))
        } else if on_device >= self.limits.per_device {
            Some(format!(
                "this device has {} update streams open on this server, the most it may; close one first",
                self.limits.per_device
            ))
        } else {
            None
        };
        if let Some(message) = refusal {
            if account.total == 0 {
                open.remove(&session.user_id);
            }
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::new(ErrorCode::TooManyStreams, message));
        }
        account.total += 1;
        *account.devices.entry(session.device_id).or_insert(0) += 1;
        Ok(StreamPermit { streams: self.clone(), session })
    }
}

/// One open stream's place, given back when it is dropped.
#[derive(Debug)]
pub(crate) struct StreamPermit {
    streams: Arc<Streams>,
    session: Session,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(account) = open.get_mut(&self.session.user_id) else { return };
        account.total = account.total.saturating_sub(1);
        if let Some(n) = account.devices.get_mut(&self.session.device_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                account.devices.remove(&self.session.device_id);
            }
        }
        if account.total == 0 {
            open.remove(&self.session.user_id);
        }
    }
}

/// The server's shutdown as its streams see it: [`GoingAway::begin`] tells every WebSocket
/// to finish its client's requests and close with 1001 (going away), and every long poll to
/// answer at once; [`GoingAway::streams_closed`] waits for the WebSockets to be done.
#[derive(Debug, Clone)]
pub struct GoingAway(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    flag: watch::Sender<bool>,
    /// Every WebSocket holds a clone of this receiver; taken at shutdown, after which
    /// `alive.closed()` resolves once they are all gone.
    template: Mutex<Option<watch::Receiver<()>>>,
    alive: watch::Sender<()>,
}

impl Default for GoingAway {
    fn default() -> Self {
        let (alive, template) = watch::channel(());
        Self(Arc::new(Inner { flag: watch::channel(false).0, template: Mutex::new(Some(template)), alive }))
    }
}

/// Resolves once `flag` (from [`GoingAway::watch`]) is set; cancel-safe.
pub(crate) async fn until_set(flag: &mut watch::Receiver<bool>) {
    if flag.wait_for(|going| *going).await.is_err() {
        // The sender is gone only with the server itself.
        std::future::pending::<()>().await;
    }
}

/// What a WebSocket holds while it runs.
#[derive(Debug)]
pub(crate) struct Alive {
    _held: Option<watch::Receiver<()>>,
}

impl GoingAway {
    /// Tells every stream the server is going away.
    pub fn begin(&self) {
        self.0.flag.send_replace(true);
    }

    pub(crate) fn begun(&self) -> bool {
        *self.0.flag.borrow()
    }

    /// The flag, to wait on (`true` once [`GoingAway::begin`] was called).
    pub(crate) fn watch(&self) -> watch::Receiver<bool> {
        self.0.flag.subscribe()
    }

    /// Resolves once [`GoingAway::begin`] was called.
    pub(crate) async fn wait(&self) {
        let mut flag = self.0.flag.subscribe();
        let _ = flag.wait_for(|going| *going).await;
    }

    /// Marks a WebSocket as running, until the returned value is dropped.
    pub(crate) fn alive(&self) -> Alive {
        let template = self.0.template.lock().unwrap_or_else(PoisonError::into_inner);
        Alive { _held: template.clone() }
    }

    /// After [`GoingAway::begin`] and once no new stream can open: waits until every
    /// WebSocket has closed, or `limit` has passed; whether they all did.
    pub async fn streams_closed(&self, limit: Duration) -> bool {
        drop(self.0.template.lock().unwrap_or_else(PoisonError::into_inner).take());
        tokio::time::timeout(limit, self.0.alive.closed()).await.is_ok()
    }
}
