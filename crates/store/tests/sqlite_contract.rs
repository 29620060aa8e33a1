//! The store contract against the embedded SQLite backend, plus what only it does.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use peyvand_store::sqlite::SqliteStore;
use peyvand_store::{AccountStore, Store, StoreError};

/// All of this test process's databases live under one folder; each test removes its own.
fn root() -> PathBuf {
    std::env::temp_dir().join(format!("peyvand-store-tests-{}", std::process::id()))
}

fn fresh_dir() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = root().join(N.fetch_add(1, Ordering::Relaxed).to_string());
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        // Succeeds only for the last test to finish, when the folder is empty.
        let _ = std::fs::remove_dir(root());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_the_store_contract() {
    let dir = fresh_dir();
    let _cleanup = RemoveOnDrop(dir.clone());
    let n = AtomicU32::new(0);
    peyvand_store::contract::run_all(|| async {
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.join(n.fetch_add(1, Ordering::Relaxed).to_string())).expect("open"));
        store
    })
    .await;
}

#[tokio::test]
async fn data_survives_reopening() {
    let dir = fresh_dir();
    let _cleanup = RemoveOnDrop(dir.clone());
    let id = {
        let store = SqliteStore::open(&dir).expect("open");
        store.user_by_phone_or_create("+989120000001", 1).await.expect("create").0.id
    };
    let store = SqliteStore::open(&dir).expect("reopen");
    assert_eq!(store.user_by_phone("+989120000001").await.expect("get").map(|u| u.id), Some(id));
}

#[tokio::test]
async fn a_schema_newer_than_the_binary_is_refused() {
    let dir = fresh_dir();
    let _cleanup = RemoveOnDrop(dir.clone());
    drop(SqliteStore::open(&dir).expect("open"));
    let conn = rusqlite::Connection::open(dir.join("peyvand.db")).expect("raw");
    conn.pragma_update(None, "user_version", 999).expect("bump");
    drop(conn);
    let err = SqliteStore::open(&dir).expect_err("refused");
    assert!(matches!(err, StoreError::Unavailable(ref m) if m.contains("newer")), "{err}");
}
