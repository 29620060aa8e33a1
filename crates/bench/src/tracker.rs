//! What happened to each scheduled message: acknowledged by the server, delivered to the
//! recipient's stream, how late. Messages are known by their index in the schedule, carried in
//! the client id as `b<index>`, so no map of send times is needed: the due time is computed.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::latency::{Recorder, Summary};
use crate::schedule::Schedule;

/// One flag per message, settable from any task.
#[derive(Debug)]
pub struct Flags {
    words: Vec<AtomicU64>,
}

impl Flags {
    pub fn new(len: u64) -> Self {
        Self { words: (0..len.div_ceil(64)).map(|_| AtomicU64::new(0)).collect() }
    }

    /// Sets flag `i`; true if it was not set before.
    pub fn set(&self, i: u64) -> bool {
        let Some(word) = self.words.get((i / 64) as usize) else { return false };
        let bit = 1u64 << (i % 64);
        word.fetch_or(bit, Ordering::Relaxed) & bit == 0
    }

    pub fn get(&self, i: u64) -> bool {
        self.words.get((i / 64) as usize).is_some_and(|w| w.load(Ordering::Relaxed) & (1u64 << (i % 64)) != 0)
    }
}

/// The client id of the `i`th message of the schedule. Zero-padded, so that ids sort in the
/// order they are sent, as the client library's time-ordered ids do.
pub fn client_id(i: u64) -> String {
    format!("b{i:010}")
}

fn index_of(client_id: &str) -> Option<u64> {
    client_id.strip_prefix('b')?.parse().ok()
}

#[derive(Debug)]
pub struct Tracker {
    pub schedule: Schedule,
    pub start: Instant,
    /// Messages before this index are the warm-up: counted, but left out of the latencies.
    measured_from: u64,
    acked: Flags,
    delivered: Flags,
    pub completed: AtomicU64,
    pub acked_count: AtomicU64,
    pub delivered_count: AtomicU64,
    duplicates: AtomicU64,
    strangers: AtomicU64,
    last_ack_nanos: AtomicU64,
    last_delivery_nanos: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    ack_latency: Recorder,
    delivery_latency: Recorder,
    delivered_per_second: Vec<AtomicU64>,
}

/// The tracker's figures once the run is over.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub scheduled: u64,
    pub acked: u64,
    pub errors: BTreeMap<String, u64>,
    /// Sends with no answer by the end (still queued or in flight: the server fell behind).
    pub unanswered: u64,
    pub delivered: u64,
    /// Acknowledged but never seen on the recipient's stream.
    pub missing: u64,
    /// Seen on the stream although the send failed (e.g. timed out after storing).
    pub delivered_unacked: u64,
    pub duplicates: u64,
    pub acked_per_second: f64,
    pub delivered_per_second: f64,
    pub ack_latency: Summary,
    pub delivery_latency: Summary,
    /// Deliveries in each second after the start, to show whether the rate held.
    pub timeline: Vec<u64>,
}

fn nanos_since(start: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(start).as_nanos()).unwrap_or(u64::MAX)
}

impl Tracker {
    pub fn new(schedule: Schedule, start: Instant, warmup: Duration, seconds_to_track: u64) -> anyhow::Result<Self> {
        let total = schedule.total();
        Ok(Self {
            schedule,
            start,
            measured_from: schedule.first_at_or_after(warmup),
            acked: Flags::new(total),
            delivered: Flags::new(total),
            completed: AtomicU64::new(0),
            acked_count: AtomicU64::new(0),
            delivered_count: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            strangers: AtomicU64::new(0),
            last_ack_nanos: AtomicU64::new(0),
            last_delivery_nanos: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
            ack_latency: Recorder::new()?,
            delivery_latency: Recorder::new()?,
            delivered_per_second: (0..seconds_to_track.max(1)).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    /// The time message `i` was due: latencies count from here.
    pub fn due(&self, i: u64) -> Instant {
        self.start + self.schedule.due_at(i)
    }

    pub fn acked(&self, i: u64, now: Instant) {
        self.completed.fetch_add(1, Ordering::Relaxed);
        if self.acked.set(i) {
            self.acked_count.fetch_add(1, Ordering::Relaxed);
        }
        self.last_ack_nanos.fetch_max(nanos_since(self.start, now), Ordering::Relaxed);
        if i >= self.measured_from {
            self.ack_latency.record(now.saturating_duration_since(self.due(i)));
        }
    }

    pub fn failed(&self, why: String) {
        self.completed.fetch_add(1, Ordering::Relaxed);
        *self.errors.lock().unwrap_or_else(|p| p.into_inner()).entry(why).or_insert(0) += 1;
    }

    /// A message with `client_id` reached its recipient's stream at `now`.
    pub fn delivered(&self, client_id: &str, now: Instant) {
        let Some(i) = index_of(client_id).filter(|i| *i < self.schedule.total()) else {
            self.strangers.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if !self.delivered.set(i) {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.delivered_count.fetch_add(1, Ordering::Relaxed);
        let since_start = nanos_since(self.start, now);
        self.last_delivery_nanos.fetch_max(since_start, Ordering::Relaxed);
        let second = ((since_start / 1_000_000_000) as usize).min(self.delivered_per_second.len() - 1);
        self.delivered_per_second[second].fetch_add(1, Ordering::Relaxed);
        if i >= self.measured_from {
            self.delivery_latency.record(now.saturating_duration_since(self.due(i)));
        }
    }

    pub fn outcome(&self) -> Outcome {
        let total = self.schedule.total();
        let (mut missing, mut delivered_unacked) = (0, 0);
        for i in 0..total {
            match (self.acked.get(i), self.delivered.get(i)) {
                (true, false) => missing += 1,
                (false, true) => delivered_unacked += 1,
                _ => {}
            }
        }
        let rate = |count: u64, last: &AtomicU64| count as f64 / (last.load(Ordering::Relaxed) as f64 / 1e9).max(1e-9);
        let acked = self.acked_count.load(Ordering::Relaxed);
        let delivered = self.delivered_count.load(Ordering::Relaxed);
        let mut timeline: Vec<u64> = self.delivered_per_second.iter().map(|n| n.load(Ordering::Relaxed)).collect();
        while timeline.last() == Some(&0) {
            timeline.pop();
        }
        Outcome {
            scheduled: total,
            acked,
            errors: self.errors.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            unanswered: total.saturating_sub(self.completed.load(Ordering::Relaxed)),
            delivered,
            missing,
            delivered_unacked,
            duplicates: self.duplicates.load(Ordering::Relaxed),
            acked_per_second: rate(acked, &self.last_ack_nanos),
            delivered_per_second: rate(delivered, &self.last_delivery_nanos),
            ack_latency: self.ack_latency.summary(),
            delivery_latency: self.delivery_latency.summary(),
            timeline,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_report_the_first_set_only() {
        let flags = Flags::new(130);
        assert!(flags.set(0));
        assert!(flags.set(129));
        assert!(!flags.set(129));
        assert!(flags.get(129) && !flags.get(128));
        assert!(!flags.set(1000), "out of range is ignored");
    }

    #[test]
    fn outcome_counts_missing_duplicates_and_strangers() {
        let schedule = Schedule::new(1000, Duration::from_millis(4));
        let start = Instant::now();
        let tracker = Tracker::new(schedule, start, Duration::ZERO, 10).expect("tracker");
        let later = start + Duration::from_millis(10);
        tracker.acked(0, later);
        tracker.acked(1, later);
        tracker.failed("503".into());
        tracker.delivered(&client_id(0), later);
        tracker.delivered(&client_id(0), later);
        tracker.delivered(&client_id(3), later);
        tracker.delivered("someone-else", later);
        let o = tracker.outcome();
        assert_eq!((o.scheduled, o.acked, o.delivered, o.unanswered), (4, 2, 2, 1));
        assert_eq!((o.missing, o.delivered_unacked, o.duplicates), (1, 1, 1));
        assert_eq!(o.errors.get("503"), Some(&1));
        assert_eq!(o.timeline, vec![2]);
        // Message 0 was due at the start and arrived 10 ms later.
        assert!((o.delivery_latency.max_ms - 10.0).abs() < 0.1, "{:?}", o.delivery_latency);
    }
}
