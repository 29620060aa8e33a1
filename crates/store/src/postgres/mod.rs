//! The PostgreSQL backend, for a cluster of nodes that share one database.
//!
//! Unlike the embedded backend, whose single writer runs one job at a time, PostgreSQL runs
//! many transactions at once, so every write here says how it stays correct beside the
//! others. The rules, at READ COMMITTED (which every connection sets for itself):
//!
//! - A chat's messages are ordered by its row in `chats`: a send increments `last_seq` with an
//!   `UPDATE ... RETURNING`, which holds the row until commit, so the next send to the chat
//!   waits, sees the committed message, and takes the next seq.
//! - A person's update cursors are ordered the same way by their row in `streams`. A write
//!   that appends to several streams locks those rows in ascending user id, in one statement,
//!   and only after every other row it locks, so two writes never wait on each other in a
//!   cycle. Should PostgreSQL still report a deadlock or a serialization failure, the whole
//!   transaction runs again ([`retry`]).
//! - Because a stream row is held until commit, the cursors of a person's updates become
//!   visible in order: a reader never sees cursor `n + 1` without `n`.
//! - A write is acknowledged after `COMMIT` returns, which with the default
//!   `synchronous_commit = on` means the commit record has been flushed.

mod accounts;
mod batch;
mod chats;
mod federation;
mod media;
mod presence;
mod schema;
mod updates;

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;

use crate::{StoreError, StoreResult};

/// How long a request waits for a free connection, or for a new one to be made, before the
/// store answers `Unavailable`: during an outage requests fail in seconds instead of piling up.
const POOL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a TCP connection attempt may take, unless the URL sets `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long sent data may stay unacknowledged before the connection counts as dead, unless
/// the URL sets `tcp_user_timeout`. Without it a query on a connection whose server vanished
/// from the network would wait for the kernel's retransmissions, about a quarter of an hour.
/// The server's kernel acknowledges however busy PostgreSQL is, so this does not cut off slow
/// queries.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);
/// How many times a transaction runs when PostgreSQL aborts it for a deadlock or a
/// serialization failure.
const ATTEMPTS: u32 = 5;

/// Settings beyond what the URL says.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// The most connections this node keeps open.
    pub pool_size: usize,
}

impl Default for PgOptions {
    /// Twice this machine's cores. More connections than PostgreSQL has cores to run them
    /// only queue up inside it, on row locks and the WAL flush, where waiting costs CPU: on
    /// two cores, 16 connections carried fewer messages per second than 4 (docs/BENCHMARKS.md).
    fn default() -> Self {
        Self { pool_size: 2 * std::thread::available_parallelism().map_or(2, usize::from) }
    }
}

/// The PostgreSQL store. Cheap to clone: clones share the connection pool.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// Where the database is, for messages: host, port and database, never the password.
    target: String,
    /// Where sends queue for group commit ([`batch`]); `None` in the batch workers' own
    /// handle, which stores directly (and so does not keep the queue open).
    batches: Option<tokio::sync::mpsc::Sender<batch::Job>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.target)
            .field("pool_size", &self.pool.status().max_size)
            .finish()
    }
}

impl PgStore {
    /// Connects to the database at a `postgres://` URL with the default options; see
    /// [`PgStore::connect_with`].
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::connect_with(url, PgOptions::default()).await
    }

    /// Connects to the database at a `postgres://` URL (any parameter libpq knows that
    /// tokio-postgres supports, such as `options=-c%20search_path%3Dname` to use a schema),
    /// checks that it answers, and brings its schema up to date.
    pub async fn connect_with(url: &str, options: PgOptions) -> StoreResult<Self> {
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("the PostgreSQL URL is invalid: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("peyvand");
        }
        let target = describe(&config);
        // `Fast` recycling checks only `is_closed`, which is enough: a connection whose server
        // went away is closed by its connection task as soon as the socket reports it, and
        // one that fails a query for that reason is closed too, so the pool replaces broken
        // connections on its own once PostgreSQL is back.
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .wait_timeout(Some(POOL_TIMEOUT))
            .create_timeout(Some(POOL_TIMEOUT))
            .recycle_timeout(Some(POOL_TIMEOUT))
            .runtime(Runtime::Tokio1)
            // Everything here is reasoned at READ COMMITTED (a fresh snapshot per statement,
            // waiting on row locks rather than failing), whatever the server's default.
            // Every statement is a prepared key lookup or key-ordered write whose best plan does
            // not depend on its parameters, so plan each once: left to choose, PostgreSQL kept
            // re-planning the multi-CTE writes at every execution, which cost more CPU than
            // running them (the message rate went up 1.8x). A cached plan is rebuilt whenever
            // (auto)analyze updates a table's statistics, so it follows the tables' growth.
            .post_create(Hook::async_fn(|client, _| {
                Box::pin(async move {
                    client
                        .batch_execute(
                            "SET default_transaction_isolation TO 'read committed'; \
                             SET plan_cache_mode TO force_generic_plan",
                        )
                        .await
                        .map_err(HookError::Backend)
                })
            }))
            .build()
            .map_err(|e| StoreError::Backend(format!("cannot build the connection pool: {e}")))?;
        let mut store = Self { pool, target, batches: None };
        // Migrating takes the first connection, so an unreachable database is reported here.
        store.migrate().await?;
        // Half the pool stores batches of sends; the rest serves reads and other writes.
        store.batches = Some(batch::start(store.clone(), options.pool_size / 2));
        Ok(store)
    }

    /// Brings the schema up to date; [`PgStore::connect_with`] does this already. Safe to run
    /// from several nodes at once.
    pub async fn migrate(&self) -> StoreResult<()> {
        let mut client = self.client().await?;
        Ok(schema::migrate(&mut client).await?)
    }

    /// A trivial round trip, for readiness checks.
    pub async fn ping(&self) -> StoreResult<()> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await.map_err(StoreError::from)?;
        Ok(())
    }

    /// A connection from the pool; `Unavailable` when none can be had in time.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Client, Failure> {
        self.pool.get().await.map_err(|e| {
            let why = match e {
                PoolError::Timeout(_) => "timed out waiting for a connection".to_owned(),
                PoolError::Backend(e) | PoolError::PostCreateHook(HookError::Backend(e)) => e.to_string(),
                other => other.to_string(),
            };
            Failure::Store(StoreError::Unavailable(format!("cannot connect to PostgreSQL at {}: {why}", self.target)))
        })
    }
}

/// Host, port and database of a configuration, for messages (never the password).
fn describe(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            // libpq's rule: one port for all hosts, or one per host; 5432 when none is given.
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect();
    let hosts = if hosts.is_empty() { "localhost:5432".to_owned() } else { hosts.join(",") };
    format!("{hosts}/{}", config.get_dbname().unwrap_or("(default database)"))
}

/// How one attempt at a store operation can fail: with a PostgreSQL error, kept whole so that
/// [`retry`] can read its SQLSTATE, or with an answer of the store's own.
#[derive(Debug)]
pub(crate) enum Failure {
    Db(tokio_postgres::Error),
    Store(StoreError),
}

/// The result of one attempt.
pub(crate) type Attempt<T> = Result<T, Failure>;

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Db(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

impl From<serde_json::Error> for Failure {
    fn from(e: serde_json::Error) -> Self {
        Failure::Store(e.into())
    }
}

impl From<Failure> for StoreError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Db(e) => e.into(),
            Failure::Store(e) => e,
        }
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        let message = match e.as_db_error() {
            // The server's own words are more useful than tokio-postgres's "db error".
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => e.to_string(),
        };
        if is_unavailable(&e) { StoreError::Unavailable(message) } else { StoreError::Backend(message) }
    }
}

/// Whether an error means that the database cannot be reached or cannot work right now, as
/// opposed to a statement that failed.
fn is_unavailable(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        Some(code) => {
            // 08: connection exceptions; 53: insufficient resources (disk full, out of memory,
            // too many connections); 57P01-57P03: shut down, crashed or still starting; 25006:
            // a read-only server, as after a fail-over to a standby; 40001 and 40P01 when
            // [`retry`] gave up: the database is too busy for this transaction now.
            matches!(code.code().get(..2), Some("08" | "53"))
                || [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                    SqlState::READ_ONLY_SQL_TRANSACTION,
                    SqlState::T_R_SERIALIZATION_FAILURE,
                    SqlState::T_R_DEADLOCK_DETECTED,
                ]
                .contains(code)
        }
        // Without a server error: a closed connection, or an I/O error on its socket.
        None => {
            e.is_closed()
                || std::error::Error::source(e).is_some_and(|source| source.downcast_ref::<std::io::Error>().is_some())
        }
    }
}

/// Whether PostgreSQL aborted a transaction that may succeed if run again.
pub(crate) fn is_retryable(e: &tokio_postgres::Error) -> bool {
    e.code()
        .is_some_and(|code| *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED)
}

/// Whether an error is a unique violation, which the callers turn into a domain error.
pub(crate) fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// Runs `attempt` (one write: a whole transaction, or a single statement) until it succeeds,
/// fails for a reason other than a deadlock or serialization failure, or has run [`ATTEMPTS`]
/// times. Such an abort undoes the whole attempt, so running it again is safe.
pub(crate) async fn retry<T, F, Fut>(mut attempt: F) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Attempt<T>>,
{
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(Failure::Db(e)) if is_retryable(&e) && tries < ATTEMPTS => {
                tracing::debug!(error = %e, tries, "transaction aborted by PostgreSQL, running it again");
                // A short, growing pause lets the transaction that won finish first.
                tokio::time::sleep(Duration::from_millis(2 << tries)).await;
                tries += 1;
            }
            other => return other.map_err(StoreError::from),
        }
    }
}

/// Runs a read, which PostgreSQL never aborts for a deadlock or serialization failure at
/// READ COMMITTED, and turns its failure into the store's error.
pub(crate) async fn once<T>(attempt: impl Future<Output = Attempt<T>>) -> StoreResult<T> {
    attempt.await.map_err(StoreError::from)
}

/// Parses JSON stored in a text column.
pub(crate) fn json<T: serde::de::DeserializeOwned>(raw: &str) -> Attempt<T> {
    Ok(serde_json::from_str(raw)?)
}

/// A LIKE pattern matching `text` anywhere, with LIKE's wildcards escaped.
pub(crate) fn like_pattern(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

/// A count or limit from the traits, as the `bigint` PostgreSQL compares it with.
pub(crate) fn big(n: u32) -> i64 {
    i64::from(n)
}
