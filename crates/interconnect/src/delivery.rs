//! Delivery to peers: the durable queue's workers, one per peer with events waiting.
//!
//! Room events are queued in the store (they survive restarts) by the messenger; a worker
//! sends them, oldest first, in transactions of at most [`MAX_BATCH_BYTES`], and removes them
//! once the peer has answered. A failure (the peer down, refusing, or no longer active in the
//! directory) is retried after a delay that doubles up to `retry_max_secs`. A message the
//! peer has not taken within `delivery_deadline_secs` is given up: taken off the queue and
//! marked `failed` for its sender; other events are dropped when older than
//! `event_expiry_days`.
//!
//! The sender of each message sees where it stands (`Message.delivery`): `pending` with the
//! reason of the last failed attempt, then `delivered` once the peer has answered the
//! transaction that carried it, or `failed` when the peer refused it or the deadline passed.
//!
//! In a cluster every node has workers for the peers it has events for, but a worker sends only
//! while its node holds the peer's delivery lease (in the store: renewed before each
//! transaction and through a retry's wait, given up when the queue is empty), so a peer gets
//! its events from one node at a time, in queue order. A worker starts a call only if the call
//! ends before its lease does; a node that dies holding a lease is replaced once it lapses (or
//! at once, when it is the same node starting again: a node is known by the id kept in its data
//! directory). See `docs/protocol/delivery.md`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use peyvand_api::{ApiError, Delivery as MessageDelivery, ErrorCode};
use peyvand_service::DeliveryChange;
use peyvand_service::Federation;
use peyvand_service::federation::wire::{Envelope, ORIGIN_VERSION, Origin, RoomEvent, Transaction, TransactionAnswer};
use reqwest::Method;
use tokio::sync::Notify;

use crate::Interconnect;

/// The largest transaction body sent, well within a receiver's request limit.
pub const MAX_BATCH_BYTES: usize = 48 * 1024;
/// What an origin added to a queued event adds to its size, at most.
const ORIGIN_BYTES: usize = 200;
/// The most events read from the queue for one transaction.
const MAX_BATCH_EVENTS: u32 = 200;
/// How often an idle worker looks at the queue again (events queued by another node).
const IDLE_POLL: Duration = Duration::from_secs(5);
/// The first retry delay.
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// How often every node looks for peers with queued events and no worker here (after a
/// restart, or when the node that was delivering to them died).
const SWEEP: Duration = Duration::from_secs(30);
/// How often undelivered events past their expiry are dropped.
const EXPIRY_EVERY: Duration = Duration::from_secs(3600);
/// What a lease keeps beyond the end of the longest call: for the store's writes around it
/// and for the nodes' clocks to differ a little.
const LEASE_MARGIN: Duration = Duration::from_secs(10);
/// The file in the data directory that names the node (as the holder of leases).
const NODE_ID_FILE: &str = "node-id";

/// What happened with one peer, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerStats {
    pub delivered: u64,
    /// Events the peer refused for good (not sent again).
    pub refused: u64,
    /// Events dropped after `event_expiry_days`.
    pub expired: u64,
    /// Failed attempts.
    pub errors: u64,
    pub last_success: Option<i64>,
    pub last_error: Option<String>,
    /// Messages given up past `delivery_deadline_secs`.
    pub given_up: u64,
    /// The last attempt's failure, while events wait and no attempt has succeeded since.
    pub problem: Option<ApiError>,
}

#[derive(Debug, Default)]
struct PeerQueue {
    wake: Notify,
    stats: Mutex<PeerStats>,
}

/// The workers and their figures.
#[derive(Debug)]
pub struct Delivery {
    /// Makes this process's transaction ids unique (queue ids restart with a new store).
    epoch: String,
    /// This node as the holder of delivery leases: a random id made on the node's first start
    /// and kept in its data directory, so that a node restarting takes its leases back at once.
    holder: String,
    queues: Mutex<HashMap<String, Arc<PeerQueue>>>,
    /// What each peer sent that was refused as forged or conflicting.
    inbound: Mutex<HashMap<String, InboundStats>>,
}

/// Events a peer sent that were refused and reported, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboundStats {
    /// `forged_event`: attributed to someone they do not come from.
    pub forged: u64,
    /// `seq_conflict`: another message at a seq the copy holds.
    pub seq_conflicts: u64,
}

impl Delivery {
    /// The delivery of the node whose data directory is `data`.
    pub fn new(data: &std::path::Path) -> Result<Self, crate::Error> {
        Ok(Self {
            epoch: hex::encode(rand::random::<[u8; 8]>()),
            holder: node_id(data)?,
            queues: Mutex::new(HashMap::new()),
            inbound: Mutex::new(HashMap::new()),
        })
    }

    /// Each peer's figures, by peer.
    pub fn stats(&self) -> Vec<(String, PeerStats)> {
        let queues = self.queues.lock().map(|q| q.clone()).unwrap_or_default();
        let mut out: Vec<_> = queues
            .into_iter()
            .map(|(peer, queue)| (peer, queue.stats.lock().map(|s| s.clone()).unwrap_or_default()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Counts an event of `peer` refused as forged or conflicting.
    pub fn count_refusal(&self, peer: &str, code: ErrorCode) {
        let Ok(mut inbound) = self.inbound.lock() else { return };
        let stats = inbound.entry(peer.to_owned()).or_default();
        match code {
            ErrorCode::ForgedEvent => stats.forged += 1,
            ErrorCode::SeqConflict => stats.seq_conflicts += 1,
            _ => {}
        }
    }

    /// Each peer's refused events, by peer.
    pub fn inbound_stats(&self) -> Vec<(String, InboundStats)> {
        let mut out: Vec<_> = self.inbound.lock().map(|i| i.clone()).unwrap_or_default().into_iter().collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Why delivery to `peer` waits, if its last attempt failed.
    pub fn problem(&self, peer: &str) -> Option<ApiError> {
        let queue = self.queues.lock().ok()?.get(peer).cloned()?;
        queue.stats.lock().ok()?.problem.clone()
    }

    fn update(&self, peer: &str, change: impl FnOnce(&mut PeerStats)) {
        if let Some(queue) = self.queues.lock().ok().and_then(|q| q.get(peer).cloned())
            && let Ok(mut stats) = queue.stats.lock()
        {
            change(&mut stats);
        }
    }
}

impl Interconnect {
    /// Wakes the worker for `peer`, starting it if there is none.
    pub(crate) fn wake(&self, peer: &str) {
        let delivery = &self.inner.delivery;
        let (queue, new) = {
            let Ok(mut queues) = delivery.queues.lock() else { return };
            match queues.get(peer) {
                Some(queue) => (queue.clone(), false),
                None => {
                    let queue = Arc::new(PeerQueue::default());
                    queues.insert(peer.to_owned(), queue.clone());
                    (queue, true)
                }
            }
        };
        if new {
            tokio::spawn(self.clone().deliver_to(peer.to_owned(), queue.clone()));
        }
        queue.wake.notify_one();
    }

    /// Starts workers for the peers with events waiting (left from before, or queued by a node
    /// that has since died), forgets the nonces of requests gone stale, and once an hour drops
    /// events past their expiry. Runs until the process ends.
    pub async fn keep_delivering(self) {
        let expiry_ms = self.inner.config.event_expiry_days as i64 * 24 * 3_600_000;
        let mut every = tokio::time::interval(SWEEP);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut expired_at: Option<Instant> = None;
        loop {
            every.tick().await;
            if expired_at.is_none_or(|at| at.elapsed() >= EXPIRY_EVERY) {
                expired_at = Some(Instant::now());
                match self.service().expire_outbound(expiry_ms).await {
                    Ok(expired) => {
                        for (peer, count) in expired {
                            tracing::warn!(%peer, events = count, "dropped undelivered events past their expiry");
                            self.wake(&peer);
                            self.inner.delivery.update(&peer, |s| s.expired += count);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot expire old events"),
                }
            }
            if let Err(e) = crate::replay::prune(self.service(), peyvand_service::now_millis()).await {
                tracing::warn!(error = %e, "cannot forget stale nonces");
            }
            match self.service().queue_depths().await {
                Ok(depths) => depths.iter().for_each(|d| self.wake(&d.peer)),
                Err(e) => tracing::warn!(error = %e, "cannot read the delivery queues"),
            }
        }
    }

    /// The worker for one peer.
    async fn deliver_to(self, peer: String, queue: Arc<PeerQueue>) {
        let cap = Duration::from_secs(self.inner.config.retry_max_secs.max(1));
        let mut failures: u32 = 0;
        let mut lease = Lease::default();
        loop {
            match self.deliver_batch(&peer, &mut lease).await {
                Ok(0) => {
                    failures = 0;
                    let _ = tokio::time::timeout(IDLE_POLL, queue.wake.notified()).await;
                }
                Ok(_) => failures = 0,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let delay = retry_delay(failures, cap);
                    let retry_in_ms = delay.as_millis() as u64;
                    // Said once when a peer stops taking events, then quietly at each retry.
                    if failures == 1 {
                        tracing::warn!(%peer, code = %e.code, error = %e.message, retry_in_ms, "delivery failed");
                    } else {
                        tracing::info!(%peer, code = %e.code, error = %e.message, retry_in_ms, "delivery failed again");
                    }
                    self.inner.delivery.update(&peer, |s| {
                        s.errors += 1;
                        s.last_error = Some(format!("{}: {}", e.code, e.message));
                        s.problem = Some(e.clone());
                    });
                    // The lease is kept through the wait, so that the other nodes do not retry
                    // the peer meanwhile (one node's backoff is the cluster's).
                    if lease.held() {
                        let _ = self.renew(&peer, &mut lease, delay).await;
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Takes or renews the peer's lease for a call that may start after `wait`; whether this
    /// node holds it now.
    async fn renew(&self, peer: &str, lease: &mut Lease, wait: Duration) -> Result<bool, ApiError> {
        let length = self.lease_length() + wait;
        let now = peyvand_service::now_millis();
        let asked = Instant::now();
        let held = self
            .service()
            .lease_delivery(peer, &self.inner.delivery.holder, now, now + length.as_millis() as i64)
            .await?;
        lease.ends = held.then(|| asked + length);
        Ok(held)
    }

    /// Sends the oldest events waiting for `peer` in one transaction, if this node holds or can
    /// take the peer's delivery lease; how many were sent. A worker with nothing left to send
    /// gives the lease up, so that the node that queues the next event sends it at once.
    async fn deliver_batch(&self, peer: &str, lease: &mut Lease) -> Result<usize, ApiError> {
        let service = self.service();
        if service.outbound(peer, 1).await?.is_empty() {
            // Nothing waits, so nothing waits for a reason: the next message is not said to
            // wait for an old one.
            self.inner.delivery.update(peer, |s| s.problem = None);
            if lease.ends.take().is_some() {
                let now = peyvand_service::now_millis();
                service.lease_delivery(peer, &self.inner.delivery.holder, now, now).await?;
            }
            return Ok(0);
        }
        if !self.renew(peer, lease, Duration::ZERO).await? {
            return Ok(0);
        }
        // Read under the lease: what another holder sent before is gone from the queue.
        let records = service.outbound(peer, MAX_BATCH_EVENTS).await?;
        if records.is_empty() {
            return Ok(0);
        }
        let mut ids = Vec::new();
        let mut events = Vec::new();
        let mut size = 0;
        // Messages past the delivery deadline are given up, not sent.
        let deadline = peyvand_service::now_millis()
            - i64::try_from(self.inner.config.delivery_deadline_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let (mut given_up, mut given_up_ids) = (Vec::new(), Vec::new());
        for record in &records {
            match serde_json::from_str::<Envelope>(&record.body) {
                Ok(event) if record.created_at < deadline && message_of(&event).is_some() => {
                    given_up.extend(message_of(&event));
                    given_up_ids.push(record.id);
                    continue;
                }
                Ok(mut event) => {
                    if !events.is_empty() && size + record.body.len() + ORIGIN_BYTES > MAX_BATCH_BYTES {
                        break;
                    }
                    size += record.body.len() + ORIGIN_BYTES + 1;
                    // This provider's own people's events are signed as they leave; a
                    // follower's carry the follower's signature from its submission.
                    if event.origin.is_none() {
                        let form = peyvand_service::federation::wire::event_form(&event.room, &event.event);
                        event.origin = Some(Origin {
                            v: ORIGIN_VERSION,
                            provider: self.provider_id().to_owned(),
                            signature: crate::signing::sign_bytes(self.inner.identity.signing_key(), &form),
                        });
                    }
                    events.push(event);
                }
                Err(e) => tracing::error!(%peer, id = record.id, error = %e, "dropped an unreadable queued event"),
            }
            ids.push(record.id);
        }
        if !given_up.is_empty() {
            self.give_up(peer, &given_up).await?;
            service.outbound_delivered(peer, &given_up_ids).await?;
        }
        if events.is_empty() {
            service.outbound_delivered(peer, &ids).await?;
            return Ok(ids.len() + given_up_ids.len());
        }
        let messages: Vec<Option<(i64, i64)>> = events.iter().map(message_of).collect();
        match self.send_batch(peer, lease, &ids, events).await {
            Ok(Some(refused)) => {
                let changes = messages
                    .iter()
                    .enumerate()
                    .filter_map(|(index, message)| {
                        let (chat_id, seq) = (*message)?;
                        let delivery = match refused.iter().find(|r| r.0 == index) {
                            Some((_, refusal)) => MessageDelivery::failed(refusal),
                            None => MessageDelivery::delivered(),
                        };
                        Some(DeliveryChange { chat_id, seq, delivery })
                    })
                    .collect();
                self.delivery_changed(peer, changes).await;
                Ok(ids.len())
            }
            Ok(None) => Ok(given_up_ids.len()),
            Err(e) => {
                // Their senders see why they wait.
                let pending = MessageDelivery::pending(Some(&e));
                let changes = messages
                    .iter()
                    .flatten()
                    .map(|&(chat_id, seq)| DeliveryChange { chat_id, seq, delivery: pending.clone() })
                    .collect();
                self.delivery_changed(peer, changes).await;
                Err(e)
            }
        }
    }

    /// Gives up messages past the delivery deadline: failed for their senders, with the reason
    /// the peer did not take them (what the directory says when it does not list the peer as
    /// active, else the last attempt's failure as this node knows it, else that it did not
    /// answer). They are removed from the queue by the caller.
    async fn give_up(&self, peer: &str, messages: &[(i64, i64)]) -> Result<(), ApiError> {
        let deadline = self.inner.config.delivery_deadline_secs;
        let why = Federation::delivery_problem(self, peer)
            .unwrap_or_else(|| ApiError::new(ErrorCode::PeerUnavailable, format!("`{peer}` did not take the message")));
        let reason = ApiError::new(why.code, format!("{} (given up after {deadline} s)", why.message));
        tracing::warn!(%peer, messages = messages.len(), code = %why.code, "gave up messages past the delivery deadline");
        let changes = messages
            .iter()
            .map(|&(chat_id, seq)| DeliveryChange { chat_id, seq, delivery: MessageDelivery::failed(&reason) })
            .collect();
        // Stored before the events leave the queue: a failure here leaves them to the next try.
        self.service().delivery_changed(changes).await?;
        self.inner.delivery.update(peer, |s| s.given_up += messages.len() as u64);
        Ok(())
    }

    /// Tells the senders of messages where they stand; a failure to store it is logged (the
    /// events are delivered or will be retried either way).
    async fn delivery_changed(&self, peer: &str, changes: Vec<DeliveryChange>) {
        if changes.is_empty() {
            return;
        }
        if let Err(e) = self.service().delivery_changed(changes).await {
            tracing::warn!(%peer, error = %e, "cannot record where messages to the peer stand");
        }
    }

    /// Sends one transaction of `events` (the queue's `ids`) and removes them from the queue
    /// once the peer answers: the events it refused for good, by index (`None` when the lease
    /// would end before the call could, and nothing was sent).
    async fn send_batch(
        &self,
        peer: &str,
        lease: &mut Lease,
        ids: &[i64],
        events: Vec<Envelope>,
    ) -> Result<Option<Vec<(usize, ApiError)>>, ApiError> {
        let service = self.service();
        let (first, last) = (ids[0], ids[ids.len() - 1]);
        let transaction = Transaction { id: format!("{}-{first}-{last}", self.inner.delivery.epoch), events };
        let directory = self
            .directory()
            .ok_or_else(|| ApiError::new(ErrorCode::Unavailable, "no current directory from the registry"))?;
        let tls = self.tls_identity();
        let sender = crate::peers::Sender { directory: &directory, me: &self.inner.identity, tls: &tls };
        // Only a call that ends before the lease does: a node slowed down past its lease (a
        // pause, a slow store) must not send once another node may have taken over.
        let call = Duration::from_secs(self.inner.config.request_timeout_secs);
        if lease.ends.is_none_or(|ends| Instant::now() + call + LEASE_MARGIN > ends) {
            lease.ends = None;
            return Ok(None);
        }
        let path = "/interconnect/v1/transactions";
        let answer: TransactionAnswer =
            self.inner.peers.call(&sender, peer, Method::POST, path, Some(&transaction)).await?;
        service.outbound_delivered(peer, ids).await?;
        let refused = answer.refused.len() as u64;
        for refusal in &answer.refused {
            tracing::warn!(%peer, index = refusal.index, code = %refusal.code, message = %refusal.message, "the peer refused an event");
        }
        let delivered = transaction.events.len() as u64 - refused.min(transaction.events.len() as u64);
        self.inner.delivery.update(peer, |s| {
            s.delivered += delivered;
            s.refused += refused;
            s.last_success = Some(peyvand_service::now_millis());
            s.problem = None;
        });
        let refusals = answer
            .refused
            .into_iter()
            .map(|r| (r.index, ApiError::new(r.code, format!("`{peer}` refused it: {}", r.message))))
            .collect();
        Ok(Some(refusals))
    }

    /// How long a delivery lease lasts: twice the call's timeout and [`LEASE_MARGIN`], so that
    /// a call started within the first call-timeout still ends a margin before it.
    fn lease_length(&self) -> Duration {
        Duration::from_secs(2 * self.inner.config.request_timeout_secs) + LEASE_MARGIN
    }

    /// The interconnect's metrics, in Prometheus' text format.
    pub async fn metrics(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let depths = self.service().queue_depths().await.unwrap_or_default();
        let stats = self.inner.delivery.stats();
        let inbound = self.inner.delivery.inbound_stats();
        let mut peers: Vec<&str> = depths
            .iter()
            .map(|d| d.peer.as_str())
            .chain(stats.iter().map(|s| s.0.as_str()))
            .chain(inbound.iter().map(|s| s.0.as_str()))
            .collect();
        peers.sort();
        peers.dedup();
        let series = |out: &mut String, name: &str, kind: &str, help: &str, value: &dyn Fn(&str) -> Option<String>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for peer in &peers {
                if let Some(v) = value(peer) {
                    let _ = writeln!(out, "{name}{{peer=\"{peer}\"}} {v}");
                }
            }
        };
        let depth = |peer: &str| depths.iter().find(|d| d.peer == peer);
        let stat = |peer: &str| stats.iter().find(|s| s.0 == peer).map(|s| s.1.clone()).unwrap_or_default();
        series(&mut out, "peyvand_interconnect_queue_events", "gauge", "Events waiting for the peer.", &|p| {
            Some(depth(p).map_or(0, |d| d.events).to_string())
        });
        series(
            &mut out,
            "peyvand_interconnect_queue_oldest_seconds",
            "gauge",
            "Age of the oldest event waiting for the peer.",
            &|p| {
                let now = peyvand_service::now_millis();
                Some(depth(p).map_or(0, |d| (now - d.oldest_at).max(0) / 1000).to_string())
            },
        );
        series(&mut out, "peyvand_interconnect_delivered_total", "counter", "Events the peer accepted.", &|p| {
            Some(stat(p).delivered.to_string())
        });
        series(&mut out, "peyvand_interconnect_refused_total", "counter", "Events the peer refused for good.", &|p| {
            Some(stat(p).refused.to_string())
        });
        series(&mut out, "peyvand_interconnect_expired_total", "counter", "Events dropped past their expiry.", &|p| {
            Some(stat(p).expired.to_string())
        });
        series(&mut out, "peyvand_interconnect_errors_total", "counter", "Failed delivery attempts.", &|p| {
            Some(stat(p).errors.to_string())
        });
        let refusals = |peer: &str| inbound.iter().find(|s| s.0 == peer).map(|s| s.1.clone()).unwrap_or_default();
        series(
            &mut out,
            "peyvand_interconnect_forged_events_total",
            "counter",
            "Events from the peer refused as forged (forged_event) and reported.",
            &|p| Some(refusals(p).forged.to_string()),
        );
        series(
            &mut out,
            "peyvand_interconnect_seq_conflicts_total",
            "counter",
            "Messages from the peer refused for a seq the copy holds with another message (seq_conflict), reported.",
            &|p| Some(refusals(p).seq_conflicts.to_string()),
        );
        series(
            &mut out,
            "peyvand_interconnect_given_up_total",
            "counter",
            "Messages given up past the delivery deadline (failed for their senders).",
            &|p| Some(stat(p).given_up.to_string()),
        );
        series(
            &mut out,
            "peyvand_interconnect_last_success_seconds",
            "gauge",
            "When the peer last accepted a transaction (Unix time).",
            &|p| stat(p).last_success.map(|t| (t / 1000).to_string()),
        );
        for (name, help, received) in [
            ("peyvand_interconnect_media_received_bytes_total", "Media bytes fetched from the peer.", true),
            ("peyvand_interconnect_media_sent_bytes_total", "Media bytes the peer fetched from here.", false),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (peer, r, s) in self.media_traffic() {
                let _ = writeln!(out, "{name}{{peer=\"{peer}\"}} {}", if received { r } else { s });
            }
        }
        // This node's view of the registry and its own certificate.
        if let Some(directory) = self.directory() {
            let _ = writeln!(
                out,
                "# HELP peyvand_interconnect_directory_version The registry directory's version this node uses.\n\
                 # TYPE peyvand_interconnect_directory_version gauge\npeyvand_interconnect_directory_version {}",
                directory.version
            );
        }
        if let Some(facts) = self.tls_identity().facts() {
            let _ = writeln!(
                out,
                "# HELP peyvand_interconnect_certificate_expiry_seconds When this node's certificate expires (Unix time).\n\
                 # TYPE peyvand_interconnect_certificate_expiry_seconds gauge\n\
                 peyvand_interconnect_certificate_expiry_seconds {}",
                facts.not_after / 1000
            );
        }
        out
    }
}

/// The message (its chat here and seq) that an event of a room hosted here carries, if it is one.
fn message_of(envelope: &Envelope) -> Option<(i64, i64)> {
    match envelope.event {
        RoomEvent::Message { seq, .. } => Some((envelope.room.id, seq)),
        _ => None,
    }
}

/// A worker's lease on its peer: when it ends, by this process's clock, if the node holds it.
#[derive(Debug, Default)]
struct Lease {
    ends: Option<Instant>,
}

impl Lease {
    fn held(&self) -> bool {
        self.ends.is_some_and(|ends| Instant::now() < ends)
    }
}

/// This node's id from `data/node-id`, made on the first start. A data directory belongs to one
/// node: copying a whole one to make another node would give both the same id (copy only its
/// `interconnect` folder, docs/DEPLOYMENT.md).
fn node_id(data: &std::path::Path) -> Result<String, crate::Error> {
    let path = data.join(NODE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(crate::Error::Files(format!("cannot read {}: {e}", path.display()))),
    }
    let id = hex::encode(rand::random::<[u8; 16]>());
    std::fs::write(&path, format!("{id}\n"))
        .map_err(|e| crate::Error::Files(format!("cannot write {}: {e}", path.display())))?;
    Ok(id)
}

/// The delay before retry number `failures` (from 1): doubling from [`FIRST_RETRY`] up to
/// `cap`, less up to a fifth at random so that providers coming back are not hit all at once.
fn retry_delay(failures: u32, cap: Duration) -> Duration {
    let full = FIRST_RETRY.saturating_mul(1u32 << failures.saturating_sub(1).min(20)).min(cap);
    let jitter = full.mul_f64(rand::random::<f64>() * 0.2);
    full - jitter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_up_to_the_cap() {
        let cap = Duration::from_secs(300);
        let within = |d: Duration, full: Duration| d <= full && d >= full.mul_f64(0.8);
        assert!(within(retry_delay(1, cap), Duration::from_millis(500)));
        assert!(within(retry_delay(2, cap), Duration::from_secs(1)));
        assert!(within(retry_delay(5, cap), Duration::from_secs(8)));
        assert!(within(retry_delay(30, cap), cap));
        assert!(within(retry_delay(u32::MAX, Duration::from_secs(2)), Duration::from_secs(2)));
    }
}
