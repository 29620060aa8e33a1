//! The embedded backend: SQLite in WAL mode with `synchronous = FULL`.
//!
//! All writes go to one writer thread, which runs every job waiting in its queue inside one
//! transaction (each job in its own savepoint, so a failing job undoes only itself, except the
//! jobs that check everything before their first write) and answers the jobs only after the
//! commit has reached the disk: group commit. Reads run on a
//! small pool of read connections, which WAL lets proceed beside the writer. The writer thread
//! may be given a higher scheduling priority than the rest ([`SqliteOptions::writer_nice`]).

mod accounts;
mod chats;
mod federation;
mod media;
mod presence;
mod priority;
mod schema;
mod updates;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::{StoreError, StoreResult};

/// Write jobs waiting for the writer thread, at most. Past that a write waits for a place
/// (back-pressure on the request that makes it) instead of the queue growing without end;
/// far more than one group commit takes, so a busy writer always has its next batch.
const WRITE_QUEUE: usize = 16_384;
/// The most jobs one transaction takes before it commits.
const MAX_BATCH: usize = 1024;
const READERS: usize = 4;
/// WAL pages between checkpoints (SQLite's default is 1000). A checkpoint copies the newest
/// version of every page written since the last one; the hot pages (each person's newest
/// updates, each chat's newest messages) are written by nearly every commit, so a longer
/// interval copies each of them once for many commits instead of once or twice per commit.
/// At 20,000 messages/s a send writes ~4 pages, so this (a WAL of 128 MiB) is a checkpoint
/// every ~0.4 s; a quarter of it made the checkpoints' copying what limited the writer.
const WAL_CHECKPOINT_PAGES: i64 = 32768;
/// The writer's page cache. A batch dirties a few thousand pages; when they do not fit, SQLite
/// writes some to the WAL before the commit, writes them again when the batch touches them
/// again, and reads the WAL back at the commit to redo its checksums. The readers keep the
/// default of `open_connection`.
const WRITER_CACHE_KIB: i64 = 65_536;

type Reply = Box<dyn FnOnce(StoreResult<()>) + Send>;
/// A write job. Given `None` it must not touch the database (its transaction or savepoint
/// could not be opened) and only returns its reply; given the connection it runs and says
/// whether it succeeded.
type Job = Box<dyn FnOnce(Option<&Connection>) -> (bool, Reply) + Send>;

/// A job in the writer's queue.
struct Queued {
    job: Job,
    /// Run inside a savepoint of its own, so that its failure undoes only its own writes.
    savepoint: bool,
}

/// The nice values a thread may have.
pub const NICE_RANGE: std::ops::RangeInclusive<i32> = -20..=19;

/// How the embedded store runs.
#[derive(Debug, Clone, Default)]
pub struct SqliteOptions {
    /// The writer thread's nice value, -20 (most favoured) to 19; 0 leaves it as started.
    /// Every write waits for that one thread, so a negative value keeps it running when the
    /// machine's cores are contended (see `priority`). Needs `CAP_SYS_NICE` or a matching
    /// `RLIMIT_NICE`; without, the store opens anyway and [`SqliteStore::writer_nice`] says why.
    pub writer_nice: i32,
}

/// The embedded store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: mpsc::Sender<Queued>,
    readers: Mutex<Vec<Connection>>,
    /// The writer thread's nice value as the kernel reports it, or why it could not be set.
    writer_nice: Result<i32, String>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.inner.path).finish()
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound,
            rusqlite::Error::SqliteFailure(code, _)
                if matches!(
                    code.code,
                    rusqlite::ErrorCode::DiskFull | rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::DatabaseBusy
                ) =>
            {
                StoreError::Unavailable(e.to_string())
            }
            other => StoreError::Backend(other.to_string()),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Backend(format!("stored JSON is invalid: {e}"))
    }
}

fn open_connection(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    conn.pragma_update(None, "cache_size", -16_000)?;
    // Each job's savepoint journal would otherwise spill to temporary files: two thirds of the
    // writer's disk writes. They only undo a savepoint inside a live transaction; crash
    // recovery uses the WAL, so durability is unchanged.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `dir/peyvand.db` and migrates it.
    pub fn open(dir: &Path) -> StoreResult<Self> {
        Self::open_with(dir, &SqliteOptions::default())
    }

    /// [`SqliteStore::open`] with options.
    pub fn open_with(dir: &Path, options: &SqliteOptions) -> StoreResult<Self> {
        if !NICE_RANGE.contains(&options.writer_nice) {
            let (low, high) = NICE_RANGE.into_inner();
            return Err(StoreError::Backend(format!(
                "writer_nice must be {low} to {high}, not {}",
                options.writer_nice
            )));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join("peyvand.db");
        let mut writer_conn = open_connection(&path)?;
        writer_conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)?;
        writer_conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        schema::migrate(&mut writer_conn)?;
        let readers = (0..READERS).map(|_| open_connection(&path)).collect::<StoreResult<Vec<_>>>()?;
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let (started, nice) = std::sync::mpsc::sync_channel(1);
        let wanted = options.writer_nice;
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                let _ = started.send(priority::set_current_thread_nice(wanted));
                writer_loop(writer_conn, rx);
            })
            .map_err(|e| StoreError::Backend(format!("cannot start the writer thread: {e}")))?;
        let writer_nice = nice.recv().map_err(|_| StoreError::Backend("the writer thread ended at start".into()))?;
        if wanted != 0 {
            match &writer_nice {
                Ok(nice) => tracing::info!(nice, "the storage writer's nice value is set"),
                Err(why) => tracing::info!(%why, "the storage writer runs at the priority it was started with"),
            }
        }
        Ok(Self { inner: Arc::new(Inner { path, writer: tx, readers: Mutex::new(readers), writer_nice }) })
    }

    /// The writer thread's nice value as the kernel reports it, or why the one asked for in
    /// [`SqliteOptions::writer_nice`] could not be set.
    pub fn writer_nice(&self) -> Result<i32, &str> {
        self.inner.writer_nice.as_ref().copied().map_err(String::as_str)
    }

    /// Runs `f` in the next group-committed transaction and returns its result once durable.
    /// A failure undoes what `f` wrote and nothing else.
    pub(crate) async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.enqueue(f, true).await
    }

    /// [`SqliteStore::write`] without the savepoint around `f` (two statements and a copy of
    /// every page `f` touches first), for a job on the hot path that makes all its checks
    /// before its first write. Should `f` fail after writing anyway (only a failing disk or a
    /// bug does that), the whole batch is rolled back and every job in it is told so.
    pub(crate) async fn write_checked_first<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.enqueue(f, false).await
    }

    async fn enqueue<T, F>(&self, f: F, savepoint: bool) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = match conn {
                Some(conn) => f(conn),
                None => Err(StoreError::Unavailable("could not open a transaction".into())),
            };
            let ok = result.is_ok();
            let reply: Reply = Box::new(move |committed| {
                let _ = tx.send(committed.and(result));
            });
            (ok, reply)
        });
        let queued = Queued { job, savepoint };
        // Waits while the queue is full: back-pressure on the requests, nothing dropped.
        self.inner.writer.send(queued).await.map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
        rx.await.map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?
    }

    /// Runs `f` on a read connection on the blocking pool.
    pub(crate) async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = inner.readers.lock().map_err(|_| StoreError::Backend("reader pool poisoned".into()))?.pop();
            let conn = match conn {
                Some(c) => c,
                None => open_connection(&inner.path)?,
            };
            let result = f(&conn);
            if let Ok(mut pool) = inner.readers.lock()
                && pool.len() < READERS * 4
            {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Backend(format!("read task failed: {e}")))?
    }
}

fn writer_loop(conn: Connection, mut rx: mpsc::Receiver<Queued>) {
    let mut replies: Vec<Reply> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let (_, reply) = (first.job)(None);
            reply(Err(StoreError::from(e)));
            continue;
        }
        // Set when a failed job's writes could not be undone: then the whole batch must go.
        let mut poisoned = false;
        let mut next = Some(first);
        while let Some(Queued { job, savepoint }) = next.take() {
            if !savepoint {
                let before = conn.total_changes();
                match run_job(&conn, job) {
                    Some((ok, reply)) => {
                        poisoned |= !ok && conn.total_changes() != before;
                        replies.push(reply);
                    }
                    None => poisoned = true,
                }
            } else if let Err(e) = run_cached(&conn, "SAVEPOINT job") {
                let (_, reply) = job(None);
                reply(Err(StoreError::from(e)));
            } else {
                match run_job(&conn, job) {
                    Some((ok, reply)) => {
                        let released = if ok {
                            run_cached(&conn, "RELEASE job")
                        } else {
                            run_cached(&conn, "ROLLBACK TO job").and_then(|()| run_cached(&conn, "RELEASE job"))
                        };
                        poisoned |= released.is_err();
                        replies.push(reply);
                    }
                    None => poisoned = true,
                }
            }
            // An I/O, memory or disk-full error ends SQLite's transaction by itself, even in a
            // statement that only reads: what follows would run outside the batch.
            poisoned |= conn.is_autocommit();
            if replies.len() < MAX_BATCH && !poisoned {
                next = rx.try_recv().ok();
            }
        }
        let committed = if poisoned {
            tracing::error!(
                jobs = replies.len(),
                "a write failed and could not be undone alone; the batch is rolled back"
            );
            Err(StoreError::Unavailable("a write could not be undone; the batch was rolled back".into()))
        } else {
            conn.execute_batch("COMMIT").map_err(StoreError::from)
        };
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for reply in replies.drain(..) {
            reply(match &committed {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Unavailable(e.to_string())),
            });
        }
    }
}

/// Runs a job, catching a panic (the job's code, or a gate the service handed it) so that it
/// cannot end the writer: `None` then, and the job's caller is told the writer dropped it.
fn run_job(conn: &Connection, job: Job) -> Option<(bool, Reply)> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(Some(conn)))) {
        Ok(done) => Some(done),
        Err(_) => {
            tracing::error!("a write job panicked; its batch is rolled back");
            None
        }
    }
}

/// Runs a statement without parameters from the statement cache: the writer runs a savepoint
/// per job, and parsing those statements anew each time showed up in its profile.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Parses JSON stored in a column.
pub(crate) fn json<T: serde::de::DeserializeOwned>(raw: &str) -> StoreResult<T> {
    Ok(serde_json::from_str(raw)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(conn: &Connection, key: &str) -> StoreResult<i64> {
        Ok(conn.query_row("SELECT COUNT(*) FROM limits WHERE key = ?1", [key], |r| r.get(0))?)
    }

    fn insert(conn: &Connection, key: &str) -> StoreResult<()> {
        conn.execute("INSERT INTO limits (key, window_start, count) VALUES (?1, 0, 1)", [key])?;
        Ok(())
    }

    /// Holds the writer inside a batch until the returned sender is dropped, so that the jobs
    /// queued meanwhile all join that batch.
    fn hold_writer(store: &SqliteStore) -> (std::sync::mpsc::Sender<()>, tokio::task::JoinHandle<StoreResult<()>>) {
        let (release, held) = std::sync::mpsc::channel::<()>();
        let store = store.clone();
        let holder = tokio::spawn(async move {
            store
                .write(move |_| {
                    let _ = held.recv();
                    Ok(())
                })
                .await
        });
        (release, holder)
    }

    type Pending<T> = std::pin::Pin<Box<dyn Future<Output = StoreResult<T>> + Send>>;

    fn guarded(store: &SqliteStore, f: impl FnOnce(&Connection) -> StoreResult<()> + Send + 'static) -> Pending<()> {
        let store = store.clone();
        Box::pin(async move { store.write(f).await })
    }

    fn unguarded(store: &SqliteStore, f: impl FnOnce(&Connection) -> StoreResult<()> + Send + 'static) -> Pending<()> {
        let store = store.clone();
        Box::pin(async move { store.write_checked_first(f).await })
    }

    async fn counts(store: &SqliteStore, keys: &[&'static str]) -> Vec<i64> {
        let keys = keys.to_vec();
        store
            .read(move |conn| keys.iter().map(|key| count(conn, key)).collect::<StoreResult<Vec<_>>>())
            .await
            .expect("read")
    }

    /// Queues `jobs` behind a held writer, releases it and returns their results.
    async fn in_one_batch<T: Send + 'static>(
        store: &SqliteStore,
        jobs: Vec<Pending<T>>,
    ) -> (StoreResult<()>, Vec<StoreResult<T>>) {
        let (release, holder) = hold_writer(store);
        tokio::task::yield_now().await;
        let handles: Vec<_> = jobs.into_iter().map(tokio::spawn).collect();
        // Each spawned job queues itself when first polled, which this yield lets happen.
        tokio::task::yield_now().await;
        drop(release);
        let held = holder.await.expect("holder");
        let mut results = Vec::new();
        for handle in handles {
            results.push(handle.await.expect("job"));
        }
        (held, results)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_full_write_queue_holds_writers_back_and_drops_none() {
        let dir = std::env::temp_dir().join(format!("peyvand-writer-queue-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = SqliteStore::open(&dir).expect("open");
        let (release, holder) = hold_writer(&store);
        tokio::task::yield_now().await;
        let jobs = WRITE_QUEUE + 100;
        let handles: Vec<_> = (0..jobs)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { store.write_checked_first(move |_| Ok(i)).await })
            })
            .collect();
        // Every job gets its turn to queue itself, until the queue is full.
        let mut turns = 0;
        while store.inner.writer.capacity() > 0 {
            assert!(turns < 1_000_000, "the queue never filled");
            tokio::task::yield_now().await;
            turns += 1;
        }
        for _ in 0..1000 {
            tokio::task::yield_now().await;
        }
        // It stays full and the rest wait for a place, instead of it growing.
        assert_eq!(store.inner.writer.capacity(), 0);
        assert!(handles.iter().all(|h| !h.is_finished()), "nothing is written while the writer is held");
        drop(release);
        holder.await.expect("holder").expect("held job");
        for (i, handle) in handles.into_iter().enumerate() {
            assert_eq!(handle.await.expect("job").expect("written"), i);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_job_without_savepoint_that_fails_after_writing_rolls_its_batch_back() {
        let dir = std::env::temp_dir().join(format!("peyvand-writer-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = SqliteStore::open(&dir).expect("open");

        // Failing before any write: its own error, and the batch around it commits.
        let (held, results) = in_one_batch(
            &store,
            vec![
                unguarded(&store, |_| Err(StoreError::Conflict("refused".into()))),
                guarded(&store, |conn| insert(conn, "beside")),
            ],
        )
        .await;
        held.expect("the batch commits");
        assert!(matches!(results[0], Err(StoreError::Conflict(_))), "{:?}", results[0]);
        results[1].as_ref().expect("the job beside an early failure commits");
        assert_eq!(counts(&store, &["beside"]).await, vec![1]);

        // Failing after a write: the whole batch goes, and every job in it is told; the writer
        // takes no more jobs into it, so the next one runs in a batch of its own.
        let (held, results) = in_one_batch(
            &store,
            vec![
                guarded(&store, |conn| insert(conn, "before")),
                unguarded(&store, |conn| {
                    insert(conn, "late")?;
                    Err(StoreError::Conflict("after writing".into()))
                }),
                guarded(&store, |conn| insert(conn, "after")),
            ],
        )
        .await;
        assert!(matches!(held, Err(StoreError::Unavailable(_))), "{held:?}");
        assert!(results[..2].iter().all(|r| matches!(r, Err(StoreError::Unavailable(_)))), "{results:?}");
        results[2].as_ref().expect("the job after the lost batch commits");
        assert_eq!(counts(&store, &["before", "late", "after"]).await, vec![0, 0, 1]);

        // A transaction SQLite ended by itself (as an I/O error does, even in a read), and a
        // panicking job: the batch goes too, and the writer carries on.
        for bad in 0..2 {
            let (held, results) = in_one_batch(
                &store,
                vec![
                    guarded(&store, |conn| insert(conn, "before")),
                    unguarded(&store, move |conn| {
                        if bad == 0 {
                            conn.execute_batch("ROLLBACK")?;
                            return Err(StoreError::Backend("the transaction ended".into()));
                        }
                        panic!("a bug in a job");
                    }),
                    guarded(&store, move |conn| insert(conn, ["after-0", "after-1"][bad])),
                ],
            )
            .await;
            assert!(matches!(held, Err(StoreError::Unavailable(_))), "{held:?}");
            assert!(results[..2].iter().all(|r| matches!(r, Err(StoreError::Unavailable(_)))), "{results:?}");
            // Not run outside the lost batch (and then told it failed): in a batch of its own.
            results[2].as_ref().expect("the job after the lost batch commits");
            assert_eq!(counts(&store, &["before", ["after-0", "after-1"][bad]]).await, vec![0, 1]);
        }

        // A job with a savepoint undoes only itself.
        let guarded = store
            .write(|conn| {
                insert(conn, "guarded")?;
                Err::<(), _>(StoreError::Conflict("after writing".into()))
            })
            .await;
        assert!(matches!(guarded, Err(StoreError::Conflict(_))), "{guarded:?}");
        store.write_checked_first(|conn| insert(conn, "last")).await.expect("the writer still works");
        assert_eq!(counts(&store, &["guarded", "last"]).await, vec![0, 1]);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
    /// The nice values of this process's threads called `sqlite-writer`, from `/proc`.
    #[cfg(target_os = "linux")]
    fn writer_thread_nices() -> Vec<i32> {
        let mut out = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task").flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
            if &stat[open + 1..close] == "sqlite-writer" {
                // After the name, the state is field 3 and the nice value field 19.
                let nice = stat[close + 1..].split_whitespace().nth(16).expect("nice field");
                out.push(nice.parse().expect("a number"));
            }
        }
        out
    }

    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "current_thread")]
    async fn the_writer_thread_runs_at_the_nice_value_asked_for() {
        let dir = std::env::temp_dir().join(format!("peyvand-writer-nice-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for refused in [-21, 20] {
            let opened = SqliteStore::open_with(&dir, &SqliteOptions { writer_nice: refused });
            assert!(matches!(opened, Err(StoreError::Backend(ref e)) if e.contains("-20 to 19")), "{refused}");
        }
        // Lowering a thread's own priority needs no privilege, so this runs for any user. 13 is
        // a value no other store of this test process asks for.
        let store = SqliteStore::open_with(&dir, &SqliteOptions { writer_nice: 13 }).expect("open");
        assert_eq!(store.writer_nice(), Ok(13));
        assert!(writer_thread_nices().contains(&13), "{:?}", writer_thread_nices());
        store.write(|conn| insert(conn, "niced")).await.expect("the writer works");
        assert_eq!(counts(&store, &["niced"]).await, vec![1]);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
