//! Per-person broadcast channels on one node.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use peyvand_api::Update;
use tokio::sync::{broadcast, mpsc};

const SHARDS: usize = 64;
/// Small on purpose: an idle connection must cost little memory, and a receiver that falls
/// this far behind catches up from the store instead.
const CHANNEL_CAPACITY: usize = 16;

/// What travels in a person's channel: an update, or `None` for "you may have missed some".
type Item = Option<Arc<Update>>;
type Shard = Mutex<HashMap<i64, broadcast::Sender<Item>>>;

/// The subscribers of one node, by person.
#[derive(Debug)]
pub struct LocalFanout {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    shards: Vec<Shard>,
    /// Told the id of each person whose last subscriber on this node went away.
    idle: Option<mpsc::UnboundedSender<i64>>,
    /// Updates dropped for subscribers that fell `CHANNEL_CAPACITY` behind.
    dropped: AtomicU64,
    /// When a drop was last logged (Unix seconds), so that a flood logs once in a while.
    last_logged: AtomicU64,
}

/// How often at most drops are logged (each is counted).
const DROP_LOG_EVERY: Duration = Duration::from_secs(10);

impl Default for LocalFanout {
    fn default() -> Self {
        Self::with_idle_hook(None)
    }
}

impl Shared {
    fn lock(&self, user_id: i64) -> MutexGuard<'_, HashMap<i64, broadcast::Sender<Item>>> {
        let shard = &self.shards[user_id.rem_euclid(SHARDS as i64) as usize];
        // A panic while holding the lock leaves a map that is still consistent: keep using it.
        shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl LocalFanout {
    /// A fanout that sends `idle` the id of each person whose last local subscriber left, so
    /// that a cluster bus can stop listening for them.
    pub fn with_idle_hook(idle: Option<mpsc::UnboundedSender<i64>>) -> Self {
        Self {
            shared: Arc::new(Shared {
                shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
                idle,
                dropped: AtomicU64::new(0),
                last_logged: AtomicU64::new(0),
            }),
        }
    }

    /// Updates dropped so far for subscribers that fell behind.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Hands the update to the person's subscribers on this node; nobody listening is fine.
    pub fn deliver(&self, user_id: i64, update: Arc<Update>) {
        if let Some(sender) = self.shared.lock(user_id).get(&user_id) {
            let _ = sender.send(Some(update));
        }
    }

    /// Tells the person's subscribers on this node that updates may have been missed.
    pub fn resync(&self, user_id: i64) {
        if let Some(sender) = self.shared.lock(user_id).get(&user_id) {
            let _ = sender.send(None);
        }
    }

    /// Tells every subscriber on this node that updates may have been missed (the cluster
    /// link was down), so each reads the store before trusting live updates again.
    pub fn resync_all(&self) {
        for shard in &self.shared.shards {
            let shard = shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for sender in shard.values() {
                let _ = sender.send(None);
            }
        }
    }

    pub fn subscribe(&self, user_id: i64) -> Subscription {
        let receiver = self
            .shared
            .lock(user_id)
            .entry(user_id)
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe();
        Subscription { user_id, receiver, shared: self.shared.clone() }
    }

    /// The people with at least one subscriber on this node.
    pub fn subscribed_people(&self) -> Vec<i64> {
        let mut out = Vec::new();
        for shard in &self.shared.shards {
            let shard = shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            out.extend(shard.iter().filter(|(_, s)| s.receiver_count() > 0).map(|(id, _)| *id));
        }
        out
    }

    /// Whether anyone on this node listens for the person.
    pub fn has_subscribers(&self, user_id: i64) -> bool {
        self.shared.lock(user_id).get(&user_id).is_some_and(|s| s.receiver_count() > 0)
    }
}

/// What a subscriber receives.
#[derive(Debug)]
pub enum Received {
    Update(Arc<Update>),
    /// Some updates were dropped (this subscriber fell behind, or the cluster link was down):
    /// read the store.
    Lagged,
}

/// One subscriber's receiving end; dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    user_id: i64,
    receiver: broadcast::Receiver<Item>,
    shared: Arc<Shared>,
}

impl Subscription {
    /// The next update, `Lagged` after a gap, or `None` if the bus shut down.
    pub async fn recv(&mut self) -> Option<Received> {
        match self.receiver.recv().await {
            Ok(Some(update)) => Some(Received::Update(update)),
            Ok(None) => Some(Received::Lagged),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                // Counted and logged: durable updates are read from the store next, ephemeral
                // ones (typing, presence) are lost to this subscriber.
                let shared = &self.shared;
                shared.dropped.fetch_add(n, Ordering::Relaxed);
                let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                let last = shared.last_logged.load(Ordering::Relaxed);
                if now.saturating_sub(last) >= DROP_LOG_EVERY.as_secs()
                    && shared.last_logged.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
                {
                    tracing::warn!(
                        user_id = self.user_id,
                        dropped = n,
                        "a slow update stream fell behind: it reads the store; typing and presence it missed are lost to it (peyvand_bus_dropped_for_slow_streams_total)"
                    );
                }
                Some(Received::Lagged)
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut shard = self.shared.lock(self.user_id);
        // This receiver still counts until it is dropped after this body, hence `<= 1`.
        if shard.get(&self.user_id).is_some_and(|s| s.receiver_count() <= 1) {
            shard.remove(&self.user_id);
            if let Some(idle) = &self.shared.idle {
                let _ = idle.send(self.user_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use peyvand_api::{Event, Update};

    fn typing(chat_id: i64) -> Arc<Update> {
        Arc::new(Update { cursor: None, at: 0, event: Event::Typing { chat_id, user_id: 1 } })
    }

    #[tokio::test]
    async fn every_subscriber_of_a_person_receives_and_others_do_not() {
        let fanout = LocalFanout::default();
        let mut a1 = fanout.subscribe(1);
        let mut a2 = fanout.subscribe(1);
        let mut b = fanout.subscribe(2);
        fanout.deliver(1, typing(7));
        for sub in [&mut a1, &mut a2] {
            assert!(
                matches!(sub.recv().await, Some(Received::Update(u)) if u.event == Event::Typing { chat_id: 7, user_id: 1 })
            );
        }
        fanout.deliver(2, typing(8));
        assert!(
            matches!(b.recv().await, Some(Received::Update(u)) if u.event == Event::Typing { chat_id: 8, user_id: 1 })
        );
    }

    #[tokio::test]
    async fn dropping_the_last_subscription_frees_the_channel_and_lag_is_reported() {
        let fanout = LocalFanout::default();
        let mut sub = fanout.subscribe(5);
        assert!(fanout.has_subscribers(5));
        for i in 0..(CHANNEL_CAPACITY as i64 + 3) {
            fanout.deliver(5, typing(i));
        }
        assert!(matches!(sub.recv().await, Some(Received::Lagged)));
        assert_eq!(fanout.dropped(), 3, "the updates the slow subscriber lost are counted");
        drop(sub);
        assert!(!fanout.has_subscribers(5));
        assert!(fanout.shared.lock(5).get(&5).is_none());
    }

    #[tokio::test]
    async fn resync_reaches_everyone_and_the_idle_hook_hears_the_last_leave() {
        let (tx, mut idle) = mpsc::unbounded_channel();
        let fanout = LocalFanout::with_idle_hook(Some(tx));
        let mut a1 = fanout.subscribe(1);
        let a2 = fanout.subscribe(1);
        let mut b = fanout.subscribe(2);
        assert_eq!(fanout.subscribed_people().len(), 2);
        fanout.resync_all();
        assert!(matches!(a1.recv().await, Some(Received::Lagged)));
        assert!(matches!(b.recv().await, Some(Received::Lagged)));
        drop(a1);
        assert!(idle.try_recv().is_err(), "person 1 still has a subscriber");
        drop(a2);
        assert_eq!(idle.try_recv().ok(), Some(1));
        assert_eq!(fanout.subscribed_people(), vec![2]);
    }
}
