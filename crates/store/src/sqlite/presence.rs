//! Who is online on which node, and the health check.

use async_trait::async_trait;
use rusqlite::{Connection, params};

use super::SqliteStore;
use crate::{PresenceStore, StoreHealth, StoreResult};

fn nodes_of(conn: &Connection, user_id: i64) -> StoreResult<i64> {
    Ok(conn.prepare_cached("SELECT count(*) FROM presence WHERE user_id = ?1")?.query_row([user_id], |r| r.get(0))?)
}

#[async_trait]
impl PresenceStore for SqliteStore {
    async fn set_node_presence(&self, user_id: i64, node_id: i64, online: bool, now: i64) -> StoreResult<bool> {
        self.write(move |conn| {
            if online {
                // A node that records presence is alive, even before its first heartbeat.
                conn.prepare_cached("INSERT OR IGNORE INTO nodes (id, heartbeat_at) VALUES (?1, ?2)")?
                    .execute(params![node_id, now])?;
                let added = conn
                    .prepare_cached("INSERT OR IGNORE INTO presence (user_id, node_id) VALUES (?1, ?2)")?
                    .execute(params![user_id, node_id])?;
                Ok(added == 1 && nodes_of(conn, user_id)? == 1)
            } else {
                let removed = conn
                    .prepare_cached("DELETE FROM presence WHERE user_id = ?1 AND node_id = ?2")?
                    .execute(params![user_id, node_id])?;
                Ok(removed == 1 && nodes_of(conn, user_id)? == 0)
            }
        })
        .await
    }

    async fn online(&self, user_ids: &[i64]) -> StoreResult<Vec<i64>> {
        let ids = user_ids.to_vec();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM presence WHERE user_id = ?1)")?;
            let mut out = Vec::new();
            for id in ids {
                if stmt.query_row([id], |r| r.get::<_, bool>(0))? {
                    out.push(id);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn node_heartbeat(&self, node_id: i64, now: i64) -> StoreResult<bool> {
        self.write(move |conn| {
            let registered = conn
                .prepare_cached("INSERT OR IGNORE INTO nodes (id, heartbeat_at) VALUES (?1, ?2)")?
                .execute(params![node_id, now])?
                == 1;
            if !registered {
                conn.prepare_cached("UPDATE nodes SET heartbeat_at = max(heartbeat_at, ?2) WHERE id = ?1")?
                    .execute(params![node_id, now])?;
            }
            Ok(registered)
        })
        .await
    }

    async fn reap_nodes(&self, before: i64) -> StoreResult<Vec<i64>> {
        self.write(move |conn| {
            let dead: Vec<i64> = conn
                .prepare_cached("SELECT id FROM nodes WHERE heartbeat_at < ?1")?
                .query_map([before], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let mut offline = Vec::new();
            for node in dead {
                let users: Vec<i64> = conn
                    .prepare_cached("DELETE FROM presence WHERE node_id = ?1 RETURNING user_id")?
                    .query_map([node], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                conn.prepare_cached("DELETE FROM nodes WHERE id = ?1")?.execute([node])?;
                for user in users {
                    if nodes_of(conn, user)? == 0 {
                        offline.push(user);
                    }
                }
            }
            offline.sort_unstable();
            offline.dedup();
            Ok(offline)
        })
        .await
    }
}

#[async_trait]
impl StoreHealth for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        self.read(|conn| Ok(conn.prepare_cached("SELECT 1")?.query_row([], |_| Ok(()))?)).await
    }
}
