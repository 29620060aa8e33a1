//! The registry's embedded storage: one SQLite database in the data directory, in WAL mode
//! with `synchronous = FULL`. The registry changes rarely, so one connection behind a mutex
//! serves every request; each change is one `BEGIN IMMEDIATE` transaction that also writes
//! its audit entry and the directory it leads to.

mod audit;
mod certificates;
mod licences;
mod published;
mod schema;
mod tokens;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::error::{RegistryError, RegistryResult};

pub(crate) use audit::{append as append_audit, append_event as append_audit_event, list as list_audit};
pub(crate) use certificates::{
    CertificateRecord, get_certificate, insert_certificate, list_certificates, record_renewal,
};
pub(crate) use certificates::{get_enrolment_token, insert_enrolment_token, revoke_certificate, use_enrolment_token};
pub(crate) use licences::{LicenceRecord, find_conflict, get as get_licence, insert as insert_licence};
pub(crate) use licences::{list as list_licences, replace as replace_licence};
pub(crate) use published::{StoredDirectory, load as load_directory, save as save_directory};
pub(crate) use tokens::{all as all_tokens, insert as insert_token};

/// The database's file name in the data directory.
pub const DATABASE_FILE: &str = "registry.db";

/// The embedded store. Cheap to clone.
#[derive(Clone)]
pub(crate) struct RegistryStore {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for RegistryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryStore").field("path", &self.path).finish()
    }
}

impl RegistryStore {
    /// Opens (creating if needed) `dir/registry.db` and brings its schema up to date.
    pub(crate) fn open(dir: &Path) -> RegistryResult<Self> {
        let path = dir.join(DATABASE_FILE);
        let mut conn = Connection::open(&path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        schema::migrate(&mut conn)?;
        Ok(Self { path, conn: Arc::new(Mutex::new(conn)) })
    }

    /// Runs `f` in one immediate transaction on the blocking pool; commits when it succeeds.
    pub(crate) async fn write<T, F>(&self, f: F) -> RegistryResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> RegistryResult<T> + Send + 'static,
    {
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let result = f(&tx)?;
            tx.commit()?;
            Ok(result)
        })
        .await
    }

    /// Runs `f` on the connection on the blocking pool.
    pub(crate) async fn read<T, F>(&self, f: F) -> RegistryResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> RegistryResult<T> + Send + 'static,
    {
        self.with_conn(move |conn| f(conn)).await
    }

    async fn with_conn<T, F>(&self, f: F) -> RegistryResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> RegistryResult<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().map_err(|_| RegistryError::Storage("the connection is poisoned".into()))?;
            f(&mut conn)
        })
        .await
        .map_err(|e| RegistryError::Storage(format!("storage task failed: {e}")))?
    }
}
