//! The update stream: catch-up from the store and live push from the bus are one mechanism,
//! keyed by the cursor, so a client that resumes from its cursor misses nothing and sees
//! nothing twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use peyvand_api::{ApiError, SyncState, Update};
use peyvand_bus::{Received, Subscription};

use crate::{Service, Session, now_millis, store_error};

const PAGE: u32 = 500;
/// How long a feed holds updates that came ahead of a missing cursor, waiting for it on the
/// bus, before it reads the store instead. The updates of one commit are published by as many
/// tasks as it had jobs, so a person's two updates of one commit (their own send and a message
/// to them) often arrive swapped; the missing one is then a few microseconds away, and reading
/// the store for it cost a reader's whole page cache.
const REORDER_WAIT: Duration = Duration::from_millis(50);
/// The most updates a feed holds that way; past that it reads the store at once.
const REORDER_MAX: usize = 64;

impl Service {
    /// `GET /v1/state`
    pub async fn sync_state(&self, session: Session) -> Result<SyncState, ApiError> {
        Ok(SyncState { cursor: self.store.cursor(session.user_id).await.map_err(store_error)?, now: now_millis() })
    }

    /// Updates after `after`; `resync_required` for a cursor this server cannot resume from.
    async fn read_after(&self, user_id: i64, after: i64) -> Result<Vec<Update>, ApiError> {
        self.store.updates_after(user_id, after, PAGE).await.map_err(store_error)
    }

    /// A live feed's store read to catch up, in its turn: at most `catch_up_reads` run at
    /// once on this node, the others wait first come first served. Requests (a stream's
    /// first page when it opens, a long poll) do not wait for a turn.
    async fn catch_up_read(&self, user_id: i64, after: i64) -> Result<Vec<Update>, ApiError> {
        let _turn = {
            let _waiting = Waiting::count(&self.metrics.catch_ups_waiting);
            // The semaphore is never closed; if it were, reading anyway is the safe side.
            self.catch_up.acquire().await.ok()
        };
        self.metrics.catch_up_reads.fetch_add(1, Ordering::Relaxed);
        self.read_after(user_id, after).await
    }

    /// `GET /v1/updates`: the next page of updates, waiting up to `timeout` for one when
    /// there is none yet (long poll).
    pub async fn poll_updates(
        &self,
        session: Session,
        after: i64,
        timeout: Duration,
    ) -> Result<(Vec<Update>, i64), ApiError> {
        let user_id = session.user_id;
        let updates = self.read_after(user_id, after).await?;
        if !updates.is_empty() || timeout.is_zero() {
            return Ok(page(updates, after));
        }
        // Subscribe before looking again, so nothing published in between is missed.
        let mut subscription = self.bus.subscribe(user_id).await;
        let updates = self.read_after(user_id, after).await?;
        if !updates.is_empty() {
            return Ok(page(updates, after));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, subscription.recv()).await {
                Err(_) | Ok(None) => return Ok((Vec::new(), after)),
                Ok(Some(Received::Update(update))) if update.cursor.is_none() => {
                    return Ok((vec![update.as_ref().clone()], after));
                }
                Ok(Some(_)) => {
                    let updates = self.read_after(user_id, after).await?;
                    if !updates.is_empty() {
                        return Ok(page(updates, after));
                    }
                }
            }
        }
    }

    /// Opens a live feed for a device, resuming after `after`.
    pub async fn open_feed(&self, session: Session, after: i64) -> Result<UpdateFeed, ApiError> {
        let subscription = self.bus.subscribe(session.user_id).await;
        // Fails early with resync_required for a cursor this server cannot resume from.
        let backlog = self.read_after(session.user_id, after).await?;
        self.stream_opened(session.user_id).await;
        Ok(UpdateFeed {
            service: self.clone(),
            user_id: session.user_id,
            subscription,
            last: after,
            backlog: Some(backlog),
            behind: true,
            early: BTreeMap::new(),
            gap_since: None,
            open: true,
        })
    }
}

/// Counts one waiter in a gauge for as long as it lives, however its wait ends (a feed's
/// future may be dropped while it waits).
struct Waiting<'a>(&'a AtomicU64);

impl<'a> Waiting<'a> {
    fn count(gauge: &'a AtomicU64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Self(gauge)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn page(updates: Vec<Update>, after: i64) -> (Vec<Update>, i64) {
    let cursor = updates.iter().filter_map(|u| u.cursor).max().unwrap_or(after);
    (updates, cursor)
}

/// One device's live stream of updates. Call [`UpdateFeed::close`] when the device goes.
#[derive(Debug)]
pub struct UpdateFeed {
    service: Service,
    user_id: i64,
    subscription: Subscription,
    last: i64,
    /// The first page, read when the feed opened (to refuse a bad cursor at once).
    backlog: Option<Vec<Update>>,
    /// The feed may be behind the store: read it before trusting the bus again.
    behind: bool,
    /// Durable updates that came on the bus ahead of a missing cursor, by cursor.
    early: BTreeMap<i64, Arc<Update>>,
    /// When the current wait for a missing cursor began (afresh after each partial fill).
    gap_since: Option<tokio::time::Instant>,
    open: bool,
}

impl UpdateFeed {
    /// The cursor of the last durable update this feed has handed out.
    pub fn cursor(&self) -> i64 {
        self.last
    }

    /// Whether the feed has handed out everything the store had when it last looked; from
    /// then on updates come live from the bus.
    pub fn caught_up(&self) -> bool {
        !self.behind
    }

    fn accept(&mut self, updates: Vec<Update>) -> Vec<Update> {
        let last = &mut self.last;
        updates
            .into_iter()
            .filter(|u| match u.cursor {
                Some(c) if c <= *last => false,
                Some(c) => {
                    *last = c;
                    true
                }
                None => true,
            })
            .collect()
    }

    /// The next updates, in cursor order, each durable one exactly once; `None` when the bus
    /// has shut down. It may return an empty list: when it finds it must read the store (it
    /// reads at the next call), and while catching up, when the read that caught it up had
    /// nothing new. Check [`UpdateFeed::caught_up`] after each call.
    pub async fn next(&mut self) -> Result<Option<Vec<Update>>, ApiError> {
        loop {
            if self.behind {
                // The store has everything held back too; `accept` skips what was handed out.
                self.early.clear();
                self.gap_since = None;
                let fresh = match self.backlog.take() {
                    Some(first_page) => first_page,
                    None => self.service.catch_up_read(self.user_id, self.last).await?,
                };
                // A short page is the end of the store. Anything committed after the read is
                // published after it too, and the subscription (opened before the first read)
                // will bring it; what the read already had is skipped by cursor.
                if fresh.len() < PAGE as usize {
                    self.behind = false;
                }
                let accepted = self.accept(fresh);
                if !accepted.is_empty() || !self.behind {
                    return Ok(Some(accepted));
                }
                continue;
            }
            let received = match self.gap_since {
                None => self.subscription.recv().await,
                Some(since) => match tokio::time::timeout_at(since + REORDER_WAIT, self.subscription.recv()).await {
                    Ok(received) => received,
                    // The missing update did not come: it was lost, or is on its way through a
                    // slower path. The store has it.
                    Err(_) => {
                        self.behind = true;
                        return Ok(Some(Vec::new()));
                    }
                },
            };
            // Turning behind returns at once (nothing yet): the store read happens at the next
            // call, so that a caller that only polls for what is ready never starts one.
            match received {
                None => return Ok(None),
                Some(Received::Lagged) => {
                    self.behind = true;
                    return Ok(Some(Vec::new()));
                }
                Some(Received::Update(update)) => match update.cursor {
                    None => return Ok(Some(vec![Arc::unwrap_or_clone(update)])),
                    Some(c) if c <= self.last => {}
                    Some(c) if self.last.checked_add(1) == Some(c) => {
                        self.last = c;
                        return Ok(Some(self.in_order(update)));
                    }
                    // A gap: something was committed that this feed has not seen yet. It is
                    // most likely on its way; if it does not come soon, the store has it.
                    Some(c) => {
                        if self.early.len() >= REORDER_MAX {
                            self.behind = true;
                            return Ok(Some(Vec::new()));
                        } else {
                            self.early.insert(c, update);
                            self.gap_since.get_or_insert_with(tokio::time::Instant::now);
                        }
                    }
                },
            }
        }
    }

    /// `next`, the update that fills the gap, and the held updates that follow it without one.
    fn in_order(&mut self, next: Arc<Update>) -> Vec<Update> {
        let mut out = vec![Arc::unwrap_or_clone(next)];
        while let Some(entry) = self.early.first_entry() {
            match *entry.key() {
                c if c <= self.last => {
                    entry.remove();
                }
                c if c == self.last + 1 => {
                    self.last = c;
                    out.push(Arc::unwrap_or_clone(entry.remove()));
                }
                _ => break,
            }
        }
        // A later gap waits afresh.
        self.gap_since = if self.early.is_empty() { None } else { Some(tokio::time::Instant::now()) };
        out
    }

    /// Asks the store whether it has updates this feed has not handed out although the feed
    /// believes it is caught up, and if so makes the next [`UpdateFeed::next`] read them. For
    /// a periodic check: an update can miss the bus without a sign (its publication never
    /// happened because the request was cancelled after the commit, or NATS dropped it), and
    /// the feed would otherwise see it only at the person's next update.
    pub async fn recheck(&mut self) {
        if self.behind {
            return;
        }
        match self.service.store.cursor(self.user_id).await {
            Ok(newest) if newest > self.last => self.behind = true,
            Ok(_) => {}
            Err(e) => tracing::debug!(user_id = self.user_id, error = %e, "could not recheck a feed"),
        }
    }

    /// Marks the device as gone (presence, last seen).
    pub async fn close(mut self) {
        self.open = false;
        self.service.stream_closed(self.user_id).await;
    }
}

impl Drop for UpdateFeed {
    fn drop(&mut self) {
        if self.open {
            let service = self.service.clone();
            let user_id = self.user_id;
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move { service.stream_closed(user_id).await });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;
    use peyvand_api::{Event, Update};
    use peyvand_bus::{Bus, BusHealth, LocalFanout, Subscription};
    use peyvand_store::sqlite::SqliteStore;
    use peyvand_store::{AccountStore, ChatStore, Store, UpdateStore};

    use crate::{ConsoleCodeSender, Service, ServiceConfig, Session};

    /// A bus whose publications are all lost; a test delivers on its fanout by hand.
    #[derive(Debug, Default, Clone)]
    struct LosingBus(Arc<LocalFanout>);

    #[async_trait]
    impl Bus for LosingBus {
        async fn publish(&self, _user_id: i64, _update: Arc<Update>) {}

        async fn subscribe(&self, user_id: i64) -> Subscription {
            self.0.subscribe(user_id)
        }

        fn health(&self) -> BusHealth {
            BusHealth {
                kind: "losing",
                connected: true,
                reconnects: 0,
                publish_errors: 0,
                invalid_messages: 0,
                dropped_for_slow_streams: 0,
            }
        }
    }

    #[tokio::test]
    async fn a_recheck_finds_what_the_bus_lost() {
        let (dir, store, _bus, service, a, b, chat) = two_people("recheck").await;
        let mut feed = caught_up_feed(&service, b).await;

        // Stored, announced on a bus that loses it: the feed cannot know until it rechecks.
        store.append_message(text_message(chat, a, "lost", 2), vec![a, b]).await.expect("send");
        let quiet = tokio::time::timeout(std::time::Duration::from_millis(100), feed.next()).await;
        assert!(quiet.is_err(), "nothing arrives on its own");
        feed.recheck().await;
        let got = next_within(&mut feed, 10).await;
        assert!(matches!(&got[..], [Update { event: Event::MessageNew { message }, .. }] if message.seq == 1));
        feed.close().await;
        drop(service);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A service on a fresh store with two people in a direct chat, on a bus the test drives.
    async fn two_people(name: &str) -> (std::path::PathBuf, Arc<SqliteStore>, LosingBus, Service, i64, i64, i64) {
        let dir = std::env::temp_dir().join(format!("peyvand-service-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Arc::new(SqliteStore::open(&dir).expect("open"));
        let a = store.user_by_phone_or_create("+989120000001", 1).await.expect("user").0.id;
        let b = store.user_by_phone_or_create("+989120000002", 1).await.expect("user").0.id;
        let (chat, _) = store.open_direct_chat(a, b, 1).await.expect("chat");
        let bus = LosingBus::default();
        let shared: Arc<dyn Store> = store.clone();
        let service = Service::new(
            shared,
            Arc::new(bus.clone()),
            Arc::new(ConsoleCodeSender::default()),
            ServiceConfig::default(),
        );
        (dir, store, bus, service, a, b, chat)
    }

    fn text_message(chat_id: i64, sender_id: i64, client_id: &str, sent_at: i64) -> peyvand_store::NewMessage {
        peyvand_store::NewMessage {
            chat_id,
            sender_id,
            client_id: client_id.into(),
            content: peyvand_api::Content::Text { text: format!("پیام {client_id}") },
            folded: format!("پیام {client_id}"),
            reply_to: None,
            forwarded_from: None,
            sent_at,
            delivery: None,
        }
    }

    async fn next_within(feed: &mut crate::UpdateFeed, seconds: u64) -> Vec<Update> {
        tokio::time::timeout(std::time::Duration::from_secs(seconds), feed.next())
            .await
            .expect("in time")
            .expect("next")
            .expect("open")
    }

    async fn caught_up_feed(service: &Service, user_id: i64) -> crate::UpdateFeed {
        let mut feed = service.open_feed(Session { user_id, device_id: 1 }, 0).await.expect("feed");
        while !feed.caught_up() {
            feed.next().await.expect("next").expect("open");
        }
        feed
    }

    #[tokio::test]
    async fn updates_that_arrive_swapped_are_handed_out_in_order_from_the_bus() {
        let (dir, store, bus, service, a, b, chat) = two_people("swapped").await;
        let mut feed = caught_up_feed(&service, b).await;
        // Stored on a bus that loses them, then delivered by hand, the second first.
        let (_, _, first) = store.append_message(text_message(chat, a, "one", 2), vec![b]).await.expect("send");
        let (_, _, second) = store.append_message(text_message(chat, a, "two", 3), vec![b]).await.expect("send");
        // Gone from the store: only the bus can bring them now, so a store read would lose them.
        store.prune_updates(i64::MAX, 0).await.expect("prune");
        bus.0.deliver(b, Arc::new(second[0].1.clone()));
        bus.0.deliver(b, Arc::new(first[0].1.clone()));
        let got = next_within(&mut feed, 10).await;
        let cursors: Vec<_> = got.iter().map(|u| u.cursor).collect();
        assert_eq!(cursors, vec![Some(1), Some(2)], "both, in order, at once");
        assert_eq!(feed.cursor(), 2);
        feed.close().await;
        drop(service);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_gap_the_bus_does_not_fill_is_read_from_the_store() {
        let (dir, store, bus, service, a, b, chat) = two_people("gap").await;
        let mut feed = caught_up_feed(&service, b).await;
        store.append_message(text_message(chat, a, "one", 2), vec![b]).await.expect("send");
        let (_, _, second) = store.append_message(text_message(chat, a, "two", 3), vec![b]).await.expect("send");
        // Only the second is announced: the first was lost on the bus.
        bus.0.deliver(b, Arc::new(second[0].1.clone()));
        let started = tokio::time::Instant::now();
        let mut got = Vec::new();
        while got.len() < 2 {
            got.extend(next_within(&mut feed, 10).await);
        }
        assert!(started.elapsed() >= super::REORDER_WAIT, "it waited for the bus first");
        let cursors: Vec<_> = got.iter().map(|u| u.cursor).collect();
        assert_eq!(cursors, vec![Some(1), Some(2)]);
        assert!(feed.caught_up());
        feed.close().await;
        drop(service);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// When every stream of a node must catch up at once (the cluster link came back), they
    /// read the store `catch_up_reads` at a time, the others waiting their turn, and every
    /// one gets what it missed.
    #[tokio::test]
    async fn streams_catch_up_in_turns() {
        use std::sync::atomic::Ordering;

        const FEEDS: u64 = 10;
        let (dir, store, bus, _, a, b, chat) = two_people("turns").await;
        let shared: Arc<dyn Store> = store.clone();
        let config = ServiceConfig { catch_up_reads: 2, ..ServiceConfig::default() };
        let service = Service::new(shared, Arc::new(bus.clone()), Arc::new(ConsoleCodeSender::default()), config);
        let mut feeds = Vec::new();
        for _ in 0..FEEDS {
            feeds.push(caught_up_feed(&service, b).await);
        }
        let counters = service.counters();
        assert_eq!(counters.catch_up_reads.load(Ordering::Relaxed), 0, "opening a stream is not a catch-up");
        // Stored, announced on a bus that loses it; then the link "comes back".
        store.append_message(text_message(chat, a, "missed", 2), vec![b]).await.expect("send");
        let turns = service.catch_up.clone().acquire_many_owned(2).await.expect("take every turn");
        bus.0.resync_all();
        let mut tasks = Vec::new();
        for mut feed in feeds {
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                while got.is_empty() {
                    got = feed.next().await.expect("next").expect("open");
                }
                (feed, got)
            }));
        }
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while counters.catch_ups_waiting.load(Ordering::Relaxed) < FEEDS {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("every stream waits for a turn");
        assert_eq!(counters.catch_up_reads.load(Ordering::Relaxed), 0, "no read without a turn");
        drop(turns);
        for task in tasks {
            let (feed, got) =
                tokio::time::timeout(std::time::Duration::from_secs(10), task).await.expect("in time").expect("task");
            assert_eq!(got.iter().map(|u| u.cursor).collect::<Vec<_>>(), vec![Some(1)]);
            assert!(feed.caught_up());
            feed.close().await;
        }
        assert_eq!(counters.catch_up_reads.load(Ordering::Relaxed), FEEDS);
        assert_eq!(counters.catch_ups_waiting.load(Ordering::Relaxed), 0);
        drop(service);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
