//! Delivery to peers: the durable queue's workers, one per peer with events waiting.
//!
//! Room events are queued in the store (they survive restarts) by the messenger; a worker
//! sends them, oldest first, in transactions of at most [`MAX_BATCH_BYTES`], and removes them
//! once the peer has answered. A failure (the peer down, refusing, or no longer active in the
//! directory) is retried after a delay that doubles up to `retry_max_secs`, indefinitely: the
//! events are dropped only when older than `event_expiry_days`.
//!
//! In a cluster every node has workers for the peers it has events for, but a worker sends only
//! while its process holds the peer's delivery lease (in the store, renewed before each
//! transaction, given up when the queue is empty), so a peer gets its events from one node at a
//! time, in queue order. A lease outlives the longest call, and a node that dies holding one is
//! replaced once it lapses (or at once, when it is the same node starting again). See
//! `docs/protocol/delivery.md`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peyvand_api::{ApiError, ErrorCode};
use peyvand_service::federation::wire::{Envelope, Transaction, TransactionAnswer};
use reqwest::Method;
use tokio::sync::Notify;

use crate::Interconnect;

/// The largest transaction body sent, well within a receiver's request limit.
pub const MAX_BATCH_BYTES: usize = 48 * 1024;
/// The most events read from the queue for one transaction.
const MAX_BATCH_EVENTS: u32 = 200;
/// How often an idle worker looks at the queue again (events queued by another node).
const IDLE_POLL: Duration = Duration::from_secs(5);
/// The first retry delay.
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// How often every node looks for peers with queued events and no worker here (after a
/// restart, or when the node that was delivering to them died).
const SWEEP: Duration = Duration::from_secs(30);
/// Expiry runs once in this many sweeps (hourly).
const SWEEPS_PER_EXPIRY: u32 = 120;

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
    /// This node as the holder of delivery leases: its host and data directory, the same
    /// after a restart, so that a node restarting takes its leases back at once.
    holder: String,
    queues: Mutex<HashMap<String, Arc<PeerQueue>>>,
}

impl Delivery {
    /// The delivery of the node whose data directory is `data`.
    pub fn new(data: &std::path::Path) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let data = std::fs::canonicalize(data).unwrap_or_else(|_| data.to_owned());
        Self {
            epoch: hex::encode(rand::random::<[u8; 8]>()),
            holder: format!("{}:{}", host.trim(), data.display()),
            queues: Mutex::new(HashMap::new()),
        }
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
    /// that has since died), and once an hour drops events past their expiry. Runs until the
    /// process ends.
    pub async fn keep_delivering(self) {
        let expiry_ms = self.inner.config.event_expiry_days as i64 * 24 * 3_600_000;
        let mut every = tokio::time::interval(SWEEP);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for sweep in 0u32.. {
            every.tick().await;
            if sweep % SWEEPS_PER_EXPIRY == 0 {
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
        let mut holding = false;
        loop {
            match self.deliver_batch(&peer, &mut holding).await {
                Ok(0) => {
                    failures = 0;
                    let _ = tokio::time::timeout(IDLE_POLL, queue.wake.notified()).await;
                }
                Ok(_) => failures = 0,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let delay = retry_delay(failures, cap);
                    tracing::info!(%peer, code = %e.code, error = %e.message, retry_in_ms = delay.as_millis() as u64, "delivery failed");
                    self.inner.delivery.update(&peer, |s| {
                        s.errors += 1;
                        s.last_error = Some(format!("{}: {}", e.code, e.message));
                    });
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Sends the oldest events waiting for `peer` in one transaction, if this process holds or
    /// can take the peer's delivery lease; how many were sent. `holding` says whether it took
    /// the lease last time: a worker with nothing left to send gives the lease up, so that the
    /// node that queues the next event sends it at once.
    async fn deliver_batch(&self, peer: &str, holding: &mut bool) -> Result<usize, ApiError> {
        let service = self.service();
        let holder = &self.inner.delivery.holder;
        if service.outbound(peer, 1).await?.is_empty() {
            if std::mem::take(holding) {
                let now = peyvand_service::now_millis();
                service.lease_delivery(peer, holder, now, now).await?;
            }
            return Ok(0);
        }
        let now = peyvand_service::now_millis();
        *holding = service.lease_delivery(peer, holder, now, now + self.lease_ms()).await?;
        if !*holding {
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
        for record in &records {
            match serde_json::from_str::<Envelope>(&record.body) {
                Ok(event) => {
                    if !events.is_empty() && size + record.body.len() > MAX_BATCH_BYTES {
                        break;
                    }
                    size += record.body.len() + 1;
                    events.push(event);
                }
                Err(e) => tracing::error!(%peer, id = record.id, error = %e, "dropped an unreadable queued event"),
            }
            ids.push(record.id);
        }
        if events.is_empty() {
            service.outbound_delivered(peer, &ids).await?;
            return Ok(ids.len());
        }
        let (first, last) = (ids[0], ids[ids.len() - 1]);
        let transaction = Transaction { id: format!("{}-{first}-{last}", self.inner.delivery.epoch), events };
        let directory = self
            .directory()
            .ok_or_else(|| ApiError::new(ErrorCode::Unavailable, "no current directory from the registry"))?;
        let tls = self.tls_identity();
        let sender = crate::peers::Sender { directory: &directory, me: &self.inner.identity, tls: &tls };
        let path = "/interconnect/v1/transactions";
        let answer: TransactionAnswer =
            self.inner.peers.call(&sender, peer, Method::POST, path, Some(&transaction)).await?;
        service.outbound_delivered(peer, &ids).await?;
        let refused = answer.refused.len() as u64;
        for refusal in &answer.refused {
            tracing::warn!(%peer, index = refusal.index, code = %refusal.code, message = %refusal.message, "the peer refused an event");
        }
        let delivered = transaction.events.len() as u64 - refused.min(transaction.events.len() as u64);
        self.inner.delivery.update(peer, |s| {
            s.delivered += delivered;
            s.refused += refused;
            s.last_success = Some(peyvand_service::now_millis());
        });
        Ok(ids.len())
    }

    /// How long a delivery lease lasts: more than a transaction can take (the call's timeout),
    /// with room for the store's writes around it.
    fn lease_ms(&self) -> i64 {
        (2 * self.inner.config.request_timeout_secs as i64 + 10) * 1000
    }

    /// The interconnect's metrics, in Prometheus' text format.
    pub async fn metrics(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let depths = self.service().queue_depths().await.unwrap_or_default();
        let stats = self.inner.delivery.stats();
        let mut peers: Vec<&str> =
            depths.iter().map(|d| d.peer.as_str()).chain(stats.iter().map(|s| s.0.as_str())).collect();
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
        series(
            &mut out,
            "peyvand_interconnect_last_success_seconds",
            "gauge",
            "When the peer last accepted a transaction (Unix time).",
            &|p| stat(p).last_success.map(|t| (t / 1000).to_string()),
        );
        out
    }
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
