//! Stand-ins for people on other messengers, followed rooms, the queues towards peer
//! providers, received transactions and abuse reports.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use peyvand_api::{Delivery, Event, Message, PrivacySettings, Update};
use tokio_postgres::Row;

use super::accounts::{USER_COLUMNS, query_user, query_users};
use super::chats::{MESSAGE_COLUMNS, direct_key, find_direct, messages, remote_address_of};
use super::updates::{lock_streams, push_all};
use super::{Attempt, PgStore, big, json, once, retry};
use crate::records::delivery_changes;
use crate::{
    DeliveryChange, FederationStore, NewMessage, OutboundRecord, QueueDepth, ReportRecord, RoomLink, StoreError,
    StoreResult, UserRecord,
};

/// A count from PostgreSQL, whose `count(*)` is a `bigint`.
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn report_from_row(row: &Row) -> Attempt<ReportRecord> {
    Ok(ReportRecord {
        id: row.try_get(0)?,
        reporter: row.try_get(1)?,
        reported: row.try_get(2)?,
        reason: row.try_get(3)?,
        from_provider: row.try_get(4)?,
        created_at: row.try_get(5)?,
    })
}

/// Finds or creates a stand-in, with its (never used, but present like every account's)
/// update stream. The upsert decides a race between two first sightings of one address: the
/// loser waits for the winner's row and updates it, so both return the same account.
async fn remote_user(store: &PgStore, address: &str, name: &str, folded: &str, now: i64) -> Attempt<UserRecord> {
    let client = store.client().await?;
    let privacy = serde_json::to_string(&PrivacySettings::default())?;
    let sql = format!(
        "WITH u AS ( \
             INSERT INTO users (remote_address, display_name, name_folded, privacy, created_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (remote_address) DO UPDATE SET \
               display_name = CASE WHEN excluded.display_name = '' THEN users.display_name \
                                   ELSE excluded.display_name END, \
               name_folded = CASE WHEN excluded.display_name = '' THEN users.name_folded \
                                  ELSE excluded.name_folded END \
             RETURNING * \
         ), stream AS (INSERT INTO streams (user_id) SELECT id FROM u ON CONFLICT DO NOTHING) \
         SELECT {USER_COLUMNS} FROM u"
    );
    query_users(&client, &sql, &[&address, &name, &folded, &privacy, &now])
        .await?
        .pop()
        .ok_or(StoreError::NotFound.into())
}

async fn chat_by_room(db: &impl GenericClient, link: &RoomLink) -> Attempt<Option<i64>> {
    let statement = db.prepare_cached("SELECT id FROM chats WHERE hub = $1 AND hub_chat = $2").await?;
    Ok(db.query_opt(&statement, &[&link.hub, &link.hub_chat]).await?.map(|row| row.try_get(0)).transpose()?)
}

/// Finds the chat following a room, or creates it as the direct chat of the two people. One
/// statement creates the chat and its members, and its insert does nothing when either unique
/// key (the room's link, the pair's direct key) is taken, waiting for a racing insert to commit
/// first; the statements after it then tell which key was taken.
async fn follow_room(store: &PgStore, local: i64, remote: i64, link: &RoomLink, now: i64) -> Attempt<i64> {
    let client = store.client().await?;
    if let Some(id) = chat_by_room(&client, link).await? {
        return Ok(id);
    }
    let key = direct_key(local, remote);
    let statement = client
        .prepare_cached(
            "WITH c AS ( \
                 INSERT INTO chats (kind, direct_key, created_at, updated_at, hub, hub_chat) \
                 VALUES ('direct', $1, $2, $2, $3, $4) \
                 ON CONFLICT DO NOTHING RETURNING id \
             ), m AS ( \
                 INSERT INTO members (chat_id, user_id) SELECT c.id, u FROM c, unnest($5::bigint[]) u \
                 ON CONFLICT DO NOTHING \
             ) SELECT id FROM c",
        )
        .await?;
    if let Some(row) =
        client.query_opt(&statement, &[&key, &now, &link.hub, &link.hub_chat, &vec![local, remote]]).await?
    {
        return Ok(row.try_get(0)?);
    }
    // Chats are never deleted, so whichever chat took a key is there to read.
    if let Some(id) = chat_by_room(&client, link).await? {
        return Ok(id);
    }
    match find_direct(&client, &key).await? {
        Some(id) => Err(StoreError::Conflict(format!(
            "users {local} and {remote} already share chat {id}, which does not follow room {} of {}",
            link.hub_chat, link.hub
        ))
        .into()),
        None => {
            Err(StoreError::Backend("a followed room's chat kept changing while it was being created".into()).into())
        }
    }
}

/// Stores a message at the seq its hub gave it. The chat's row is locked first, as every send
/// does, so the checks for a message already at that seq or under that client id see every
/// message committed before; then the sender's member row and the streams, in the order of
/// every other write (see [`super::batch`]). Only raises the chat's last seq, so a message
/// arriving out of order does not move it back.
async fn put_message_at(
    store: &PgStore,
    new: &NewMessage,
    seq: i64,
    notify: &[i64],
) -> Attempt<(Message, bool, Vec<(i64, Update)>)> {
    let content = serde_json::to_string(&new.content)?;
    let forwarded = new.forwarded_from.as_ref().map(serde_json::to_string).transpose()?;
    let delivery = new.delivery.as_ref().map(serde_json::to_string).transpose()?;
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    let lock = tx.prepare_cached("SELECT 1 FROM chats WHERE id = $1 FOR UPDATE").await?;
    if tx.query_opt(&lock, &[&new.chat_id]).await?.is_none() {
        return Err(StoreError::NotFound.into());
    }
    // A statement of its own, after the lock, so that it sees what the lock waited for.
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.chat_id = $1 \
         AND (m.seq = $2 OR (m.sender_id = $3 AND m.client_id = $4)) ORDER BY m.seq = $2 DESC LIMIT 1"
    );
    if let Some(stored) = messages(&tx, &sql, &[&new.chat_id, &seq, &new.sender_id, &new.client_id]).await?.pop() {
        tx.rollback().await?;
        return Ok((stored, false, Vec::new()));
    }
    let statement = tx
        .prepare_cached(
            "WITH message AS ( \
                 INSERT INTO messages \
                   (chat_id, seq, sender_id, client_id, content, folded, reply_to, forwarded_from, sent_at, delivery) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ), chat AS ( \
                 UPDATE chats SET last_seq = GREATEST(last_seq, $2), updated_at = GREATEST(updated_at, $9) WHERE id = $1 \
             ), sender AS ( \
                 UPDATE members SET read_up_to = GREATEST(read_up_to, $2), delivered_up_to = GREATEST(delivered_up_to, $2) \
                 WHERE chat_id = $1 AND user_id = $3 \
             ) SELECT 1",
        )
        .await?;
    tx.execute(
        &statement,
        &[
            &new.chat_id,
            &seq,
            &new.sender_id,
            &new.client_id,
            &content,
            &new.folded,
            &new.reply_to,
            &forwarded,
            &new.sent_at,
            &delivery,
        ],
    )
    .await?;
    let message = Message { sender_address: remote_address_of(&tx, new.sender_id).await?, ..new.stored(seq) };
    let updates = push_all(&tx, notify, Event::MessageNew { message: message.clone() }, new.sent_at).await?;
    tx.commit().await?;
    Ok((message, true, updates))
}

/// Locks the chats, then the messages, then the senders' streams (the order of every other
/// write's locks), and applies the changes that change something.
async fn set_delivery(store: &PgStore, changes: &[DeliveryChange], now: i64) -> Attempt<Vec<(i64, Update)>> {
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    let mut chats: Vec<i64> = changes.iter().map(|c| c.chat_id).collect();
    chats.sort_unstable();
    chats.dedup();
    let lock = tx.prepare_cached("SELECT id FROM chats WHERE id = ANY($1) ORDER BY id FOR UPDATE").await?;
    tx.query(&lock, &[&chats]).await?;
    let read = tx
        .prepare_cached(
            "SELECT sender_id, delivery FROM messages WHERE chat_id = $1 AND seq = $2 AND delivery IS NOT NULL \
             FOR UPDATE",
        )
        .await?;
    let mut applied = Vec::new();
    for change in changes {
        let Some(row) = tx.query_opt(&read, &[&change.chat_id, &change.seq]).await? else { continue };
        let sender: i64 = row.try_get(0)?;
        let current: Delivery = json(row.try_get(1)?)?;
        // A change in this list may follow another of the same message.
        let current = applied
            .iter()
            .rev()
            .find(|(_, c): &&(i64, &DeliveryChange)| c.chat_id == change.chat_id && c.seq == change.seq)
            .map_or(current, |(_, c)| c.delivery.clone());
        if delivery_changes(&current, &change.delivery) {
            applied.push((sender, change));
        }
    }
    if applied.is_empty() {
        tx.rollback().await?;
        return Ok(Vec::new());
    }
    let mut senders: Vec<i64> = applied.iter().map(|(sender, _)| *sender).collect();
    senders.sort_unstable();
    senders.dedup();
    lock_streams(&tx, &senders).await?;
    let write = tx.prepare_cached("UPDATE messages SET delivery = $3 WHERE chat_id = $1 AND seq = $2").await?;
    let mut updates = Vec::with_capacity(applied.len());
    for (sender, change) in applied {
        let raw = serde_json::to_string(&change.delivery)?;
        tx.execute(&write, &[&change.chat_id, &change.seq, &raw]).await?;
        let event =
            Event::MessageDelivery { chat_id: change.chat_id, seq: change.seq, delivery: change.delivery.clone() };
        updates.extend(push_all(&tx, &[sender], event, now).await?);
    }
    tx.commit().await?;
    Ok(updates)
}

#[async_trait]
impl FederationStore for PgStore {
    async fn remote_user(&self, address: &str, display_name: &str, now: i64) -> StoreResult<UserRecord> {
        let folded = peyvand_core::text::fold_for_search(display_name);
        retry(|| remote_user(self, address, display_name, &folded, now)).await
    }

    async fn remote_user_by_address(&self, address: &str) -> StoreResult<Option<UserRecord>> {
        once(async { query_user(&self.client().await?, "u.remote_address = $1", &address).await }).await
    }

    async fn follow_room(&self, local_user: i64, remote_user: i64, link: &RoomLink, now: i64) -> StoreResult<i64> {
        retry(|| follow_room(self, local_user, remote_user, link, now)).await
    }

    async fn room_link(&self, chat_id: i64) -> StoreResult<Option<RoomLink>> {
        once(async {
            let client = self.client().await?;
            let statement =
                client.prepare_cached("SELECT hub, hub_chat FROM chats WHERE id = $1 AND hub IS NOT NULL").await?;
            let Some(row) = client.query_opt(&statement, &[&chat_id]).await? else { return Ok(None) };
            Ok(Some(RoomLink { hub: row.try_get(0)?, hub_chat: row.try_get(1)? }))
        })
        .await
    }

    async fn chat_by_room(&self, link: &RoomLink) -> StoreResult<Option<i64>> {
        once(async { chat_by_room(&self.client().await?, link).await }).await
    }

    async fn put_message_at(
        &self,
        new: NewMessage,
        seq: i64,
        notify: Vec<i64>,
    ) -> StoreResult<(Message, bool, Vec<(i64, Update)>)> {
        retry(|| put_message_at(self, &new, seq, &notify)).await
    }

    async fn set_delivery(&self, changes: Vec<DeliveryChange>, now: i64) -> StoreResult<Vec<(i64, Update)>> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        retry(|| set_delivery(self, &changes, now)).await
    }

    async fn enqueue_outbound(&self, peer: &str, body: &str, now: i64) -> StoreResult<i64> {
        retry(|| async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached("INSERT INTO outbound (peer, body, created_at) VALUES ($1, $2, $3) RETURNING id")
                .await?;
            Ok(client.query_one(&statement, &[&peer, &body, &now]).await?.try_get(0)?)
        })
        .await
    }

    async fn outbound(&self, peer: &str, limit: u32) -> StoreResult<Vec<OutboundRecord>> {
        once(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached("SELECT id, peer, body, created_at FROM outbound WHERE peer = $1 ORDER BY id LIMIT $2")
                .await?;
            let rows = client.query(&statement, &[&peer, &big(limit)]).await?;
            rows.iter()
                .map(|r| {
                    Ok(OutboundRecord {
                        id: r.try_get(0)?,
                        peer: r.try_get(1)?,
                        body: r.try_get(2)?,
                        created_at: r.try_get(3)?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn remove_outbound(&self, peer: &str, ids: &[i64]) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        retry(|| async {
            let client = self.client().await?;
            let statement = client.prepare_cached("DELETE FROM outbound WHERE peer = $1 AND id = ANY($2)").await?;
            client.execute(&statement, &[&peer, &ids]).await?;
            Ok(())
        })
        .await
    }

    async fn expire_outbound(&self, before: i64) -> StoreResult<Vec<(String, u64)>> {
        retry(|| async {
            let client = self.client().await?;
            // Ordered bytewise, as the embedded backend orders text.
            let statement = client
                .prepare_cached(
                    "WITH gone AS (DELETE FROM outbound WHERE created_at < $1 RETURNING peer) \
                     SELECT peer, count(*) FROM gone GROUP BY peer ORDER BY peer COLLATE \"C\"",
                )
                .await?;
            let rows = client.query(&statement, &[&before]).await?;
            rows.iter().map(|r| Ok((r.try_get(0)?, count(r.try_get(1)?)))).collect()
        })
        .await
    }

    async fn queue_depths(&self) -> StoreResult<Vec<QueueDepth>> {
        once(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "SELECT peer, count(*), min(created_at) FROM outbound GROUP BY peer ORDER BY peer COLLATE \"C\"",
                )
                .await?;
            let rows = client.query(&statement, &[]).await?;
            rows.iter()
                .map(|r| Ok(QueueDepth { peer: r.try_get(0)?, events: count(r.try_get(1)?), oldest_at: r.try_get(2)? }))
                .collect()
        })
        .await
    }

    async fn lease_delivery(&self, peer: &str, holder: &str, now: i64, until: i64) -> StoreResult<bool> {
        // Renewing is idempotent, so a retry after a lost answer is safe.
        retry(|| async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "INSERT INTO delivery_leases AS l (peer, holder, until) VALUES ($1, $2, $4) \
                     ON CONFLICT (peer) DO UPDATE SET holder = excluded.holder, until = excluded.until \
                     WHERE l.holder = excluded.holder OR l.until <= $3 RETURNING holder",
                )
                .await?;
            Ok(client.query_opt(&statement, &[&peer, &holder, &now, &until]).await?.is_some())
        })
        .await
    }

    async fn inbound_seen(&self, peer: &str, txn: &str) -> StoreResult<bool> {
        once(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM inbound_txns WHERE peer = $1 AND txn = $2)")
                .await?;
            Ok(client.query_one(&statement, &[&peer, &txn]).await?.try_get(0)?)
        })
        .await
    }

    async fn record_inbound(&self, peer: &str, txn: &str, now: i64) -> StoreResult<()> {
        retry(|| async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached("INSERT INTO inbound_txns (peer, txn, at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .await?;
            client.execute(&statement, &[&peer, &txn, &now]).await?;
            Ok(())
        })
        .await
    }

    async fn prune_inbound(&self, before: i64) -> StoreResult<u64> {
        retry(|| async {
            let client = self.client().await?;
            let statement = client.prepare_cached("DELETE FROM inbound_txns WHERE at < $1").await?;
            Ok(client.execute(&statement, &[&before]).await?)
        })
        .await
    }

    async fn first_use_of_nonce(&self, peer: &str, nonce: &str, stale_after: i64, now: i64) -> StoreResult<bool> {
        // Once: a retry after a lost answer would find the nonce and call its first use a replay.
        once(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "INSERT INTO seen_nonces AS n (peer, nonce, stale_after) VALUES ($1, $2, $3) \
                     ON CONFLICT (peer, nonce) DO UPDATE SET stale_after = excluded.stale_after \
                     WHERE n.stale_after < $4 RETURNING 1",
                )
                .await?;
            Ok(client.query_opt(&statement, &[&peer, &nonce, &stale_after, &now]).await?.is_some())
        })
        .await
    }

    async fn prune_nonces(&self, before: i64) -> StoreResult<u64> {
        retry(|| async {
            let client = self.client().await?;
            let statement = client.prepare_cached("DELETE FROM seen_nonces WHERE stale_after < $1").await?;
            Ok(client.execute(&statement, &[&before]).await?)
        })
        .await
    }

    async fn record_submission(&self, digest: &str, now: i64) -> StoreResult<()> {
        retry(|| async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "INSERT INTO submissions (digest, at) VALUES ($1, $2) \
                     ON CONFLICT (digest) DO UPDATE SET at = excluded.at",
                )
                .await?;
            client.execute(&statement, &[&digest, &now]).await?;
            Ok(())
        })
        .await
    }

    async fn was_submitted(&self, digest: &str) -> StoreResult<bool> {
        once(async {
            let client = self.client().await?;
            let statement =
                client.prepare_cached("SELECT EXISTS (SELECT 1 FROM submissions WHERE digest = $1)").await?;
            Ok(client.query_one(&statement, &[&digest]).await?.try_get(0)?)
        })
        .await
    }

    async fn prune_submissions(&self, before: i64) -> StoreResult<u64> {
        retry(|| async {
            let client = self.client().await?;
            let statement = client.prepare_cached("DELETE FROM submissions WHERE at < $1").await?;
            Ok(client.execute(&statement, &[&before]).await?)
        })
        .await
    }

    async fn add_report(&self, report: ReportRecord) -> StoreResult<i64> {
        retry(|| async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "INSERT INTO reports (reporter, reported, reason, from_provider, created_at) \
                     VALUES ($1, $2, $3, $4, $5) RETURNING id",
                )
                .await?;
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
                [&report.reporter, &report.reported, &report.reason, &report.from_provider, &report.created_at];
            Ok(client.query_one(&statement, &params).await?.try_get(0)?)
        })
        .await
    }

    async fn reports(&self, limit: u32) -> StoreResult<Vec<ReportRecord>> {
        once(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "SELECT id, reporter, reported, reason, from_provider, created_at FROM reports \
                     ORDER BY id DESC LIMIT $1",
                )
                .await?;
            client.query(&statement, &[&big(limit)]).await?.iter().map(report_from_row).collect()
        })
        .await
    }
}
