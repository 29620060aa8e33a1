//! The store contract against the embedded SQLite backend, plus what only it does.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use peyvand_store::sqlite::SqliteStore;
use peyvand_store::{AccountStore, Store, StoreError};

fn fresh_dir() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!("peyvand-store-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_the_store_contract() {
    peyvand_store::contract::run_all(|| async {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&fresh_dir()).expect("open"));
        store
    })
    .await;
}

#[tokio::test]
async fn data_survives_reopening() {
    let dir = fresh_dir();
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
    drop(SqliteStore::open(&dir).expect("open"));
    let conn = rusqlite::Connection::open(dir.join("peyvand.db")).expect("raw");
    conn.pragma_update(None, "user_version", 999).expect("bump");
    drop(conn);
    let err = SqliteStore::open(&dir).expect_err("refused");
    assert!(matches!(err, StoreError::Unavailable(ref m) if m.contains("newer")), "{err}");
}
