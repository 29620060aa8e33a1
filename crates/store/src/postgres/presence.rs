//! Who is online on which node, and the health check.
//!
//! A person's presence changes are put in one order by their stream's row: each change locks
//! it before touching `presence`, so of two nodes adding the person at once, exactly one sees
//! itself as the first, and a reap cannot announce someone offline while a node is adding them.

use std::collections::HashSet;

use async_trait::async_trait;
use deadpool_postgres::GenericClient;

use super::updates::lock_streams;
use super::{Attempt, PgStore, once, retry};
use crate::{PresenceStore, StoreHealth, StoreResult};

async fn nodes_of(tx: &impl GenericClient, user_id: i64) -> Attempt<i64> {
    let statement = tx.prepare_cached("SELECT count(*) FROM presence WHERE user_id = $1").await?;
    Ok(tx.query_one(&statement, &[&user_id]).await?.try_get(0)?)
}

async fn set_node_presence(store: &PgStore, user_id: i64, node_id: i64, online: bool, now: i64) -> Attempt<bool> {
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    if online {
        // A node that records presence is alive, even before its first heartbeat. Registered
        // before the stream is locked: a reap deletes nodes first and locks streams after.
        let statement =
            tx.prepare_cached("INSERT INTO nodes (id, heartbeat_at) VALUES ($1, $2) ON CONFLICT DO NOTHING").await?;
        tx.execute(&statement, &[&node_id, &now]).await?;
    }
    lock_streams(&tx, &[user_id]).await?;
    let changed = if online {
        let statement =
            tx.prepare_cached("INSERT INTO presence (user_id, node_id) VALUES ($1, $2) ON CONFLICT DO NOTHING").await?;
        tx.execute(&statement, &[&user_id, &node_id]).await? == 1 && nodes_of(&tx, user_id).await? == 1
    } else {
        let statement = tx.prepare_cached("DELETE FROM presence WHERE user_id = $1 AND node_id = $2").await?;
        tx.execute(&statement, &[&user_id, &node_id]).await? == 1 && nodes_of(&tx, user_id).await? == 0
    };
    tx.commit().await?;
    Ok(changed)
}

async fn reap_nodes(store: &PgStore, before: i64) -> Attempt<Vec<i64>> {
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    let statement = tx.prepare_cached("DELETE FROM nodes WHERE heartbeat_at < $1 RETURNING id").await?;
    let dead =
        tx.query(&statement, &[&before]).await?.iter().map(|row| row.try_get(0)).collect::<Result<Vec<i64>, _>>()?;
    if dead.is_empty() {
        tx.rollback().await?;
        return Ok(Vec::new());
    }
    let statement =
        tx.prepare_cached("SELECT DISTINCT user_id FROM presence WHERE node_id = ANY($1) ORDER BY user_id").await?;
    let users =
        tx.query(&statement, &[&dead]).await?.iter().map(|row| row.try_get(0)).collect::<Result<Vec<i64>, _>>()?;
    lock_streams(&tx, &users).await?;
    // Only the people locked above: presence added meanwhile by a node coming back is theirs.
    let statement = tx.prepare_cached("DELETE FROM presence WHERE node_id = ANY($1) AND user_id = ANY($2)").await?;
    tx.execute(&statement, &[&dead, &users]).await?;
    let statement = tx
        .prepare_cached(
            "SELECT u FROM unnest($1::bigint[]) u \
             WHERE NOT EXISTS (SELECT 1 FROM presence p WHERE p.user_id = u) ORDER BY u",
        )
        .await?;
    let offline =
        tx.query(&statement, &[&users]).await?.iter().map(|row| row.try_get(0)).collect::<Result<Vec<i64>, _>>()?;
    tx.commit().await?;
    Ok(offline)
}

#[async_trait]
impl PresenceStore for PgStore {
    async fn set_node_presence(&self, user_id: i64, node_id: i64, online: bool, now: i64) -> StoreResult<bool> {
        retry(|| set_node_presence(self, user_id, node_id, online, now)).await
    }

    async fn online(&self, user_ids: &[i64]) -> StoreResult<Vec<i64>> {
        let present: HashSet<i64> = once(async {
            let client = self.client().await?;
            let statement =
                client.prepare_cached("SELECT DISTINCT user_id FROM presence WHERE user_id = ANY($1)").await?;
            let rows = client.query(&statement, &[&user_ids]).await?;
            Ok(rows.iter().map(|row| row.try_get(0)).collect::<Result<HashSet<i64>, _>>()?)
        })
        .await?;
        // In the order asked, as the embedded backend answers.
        Ok(user_ids.iter().copied().filter(|id| present.contains(id)).collect())
    }

    async fn node_heartbeat(&self, node_id: i64, now: i64) -> StoreResult<bool> {
        retry(|| async {
            let client = self.client().await?;
            // `xmax = 0` holds for a row this statement inserted, not for one it updated.
            let statement = client
                .prepare_cached(
                    "INSERT INTO nodes (id, heartbeat_at) VALUES ($1, $2) \
                     ON CONFLICT (id) DO UPDATE SET heartbeat_at = GREATEST(nodes.heartbeat_at, excluded.heartbeat_at) \
                     RETURNING (xmax = 0)",
                )
                .await?;
            Ok(client.query_one(&statement, &[&node_id, &now]).await?.try_get(0)?)
        })
        .await
    }

    async fn reap_nodes(&self, before: i64) -> StoreResult<Vec<i64>> {
        retry(|| reap_nodes(self, before)).await
    }
}

#[async_trait]
impl StoreHealth for PgStore {
    async fn ping(&self) -> StoreResult<()> {
        PgStore::ping(self).await
    }
}
