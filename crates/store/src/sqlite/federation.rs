//! Stand-ins for people on other messengers, followed rooms, the queues towards peer
//! providers, received transactions and abuse reports.

use async_trait::async_trait;
use peyvand_api::{Delivery, Event, Message, PrivacySettings, Update};
use rusqlite::{Connection, OptionalExtension, params};

use super::accounts::query_user;
use super::chats::{MESSAGE_COLUMNS, direct_key, find_direct, insert_row, message, messages, remote_address_of};
use super::updates::{push, push_all};
use super::{SqliteStore, json};
use crate::records::delivery_changes;
use crate::{
    DeliveryChange, FederationStore, NewMessage, OutboundRecord, QueueDepth, ReportRecord, RoomLink, StoreError,
    StoreResult, UserRecord,
};

fn chat_by_room(conn: &Connection, link: &RoomLink) -> StoreResult<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT id FROM chats WHERE hub = ?1 AND hub_chat = ?2")?
        .query_row(params![link.hub, link.hub_chat], |r| r.get(0))
        .optional()?)
}

/// A count from SQLite, which has no unsigned integers.
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[async_trait]
impl FederationStore for SqliteStore {
    async fn remote_user(&self, address: &str, display_name: &str, now: i64) -> StoreResult<UserRecord> {
        let (address, name) = (address.to_owned(), display_name.to_owned());
        let folded = peyvand_core::text::fold_for_search(&name);
        let privacy = serde_json::to_string(&PrivacySettings::default())?;
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO users (remote_address, display_name, name_folded, privacy, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (remote_address) DO UPDATE SET \
                   display_name = CASE WHEN excluded.display_name = '' THEN display_name ELSE excluded.display_name END, \
                   name_folded = CASE WHEN excluded.display_name = '' THEN name_folded ELSE excluded.name_folded END",
            )?
            .execute(params![address, name, folded, privacy, now])?;
            query_user(conn, "remote_address = ?1", &address)?.ok_or(StoreError::NotFound)
        })
        .await
    }

    async fn remote_user_by_address(&self, address: &str) -> StoreResult<Option<UserRecord>> {
        let address = address.to_owned();
        self.read(move |conn| query_user(conn, "remote_address = ?1", &address)).await
    }

    async fn follow_room(&self, local_user: i64, remote_user: i64, link: &RoomLink, now: i64) -> StoreResult<i64> {
        let link = link.clone();
        self.write(move |conn| {
            if let Some(id) = chat_by_room(conn, &link)? {
                return Ok(id);
            }
            if let Some(id) = find_direct(conn, local_user, remote_user)? {
                return Err(StoreError::Conflict(format!(
                    "users {local_user} and {remote_user} already share chat {id}, which does not follow room {} of {}",
                    link.hub_chat, link.hub
                )));
            }
            conn.prepare_cached(
                "INSERT INTO chats (kind, direct_key, created_at, updated_at, hub, hub_chat) \
                 VALUES ('direct', ?1, ?2, ?2, ?3, ?4)",
            )?
            .execute(params![direct_key(local_user, remote_user), now, link.hub, link.hub_chat])?;
            let id = conn.last_insert_rowid();
            let mut stmt = conn.prepare_cached("INSERT OR IGNORE INTO members (chat_id, user_id) VALUES (?1, ?2)")?;
            for user in [local_user, remote_user] {
                stmt.execute(params![id, user])?;
            }
            Ok(id)
        })
        .await
    }

    async fn room_link(&self, chat_id: i64) -> StoreResult<Option<RoomLink>> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT hub, hub_chat FROM chats WHERE id = ?1 AND hub IS NOT NULL")?
                .query_row([chat_id], |r| Ok(RoomLink { hub: r.get(0)?, hub_chat: r.get(1)? }))
                .optional()?)
        })
        .await
    }

    async fn chat_by_room(&self, link: &RoomLink) -> StoreResult<Option<i64>> {
        let link = link.clone();
        self.read(move |conn| chat_by_room(conn, &link)).await
    }

    async fn put_message_at(
        &self,
        new: NewMessage,
        seq: i64,
        notify: Vec<i64>,
    ) -> StoreResult<(Message, bool, Vec<(i64, Update)>)> {
        self.write(move |conn| {
            if !conn.prepare_cached("SELECT 1 FROM chats WHERE id = ?1")?.exists([new.chat_id])? {
                return Err(StoreError::NotFound);
            }
            if let Some(stored) = message(conn, new.chat_id, seq)? {
                return Ok((stored, false, Vec::new()));
            }
            let sql = format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.chat_id = ?1 AND m.sender_id = ?2 AND m.client_id = ?3"
            );
            if let Some(stored) = messages(conn, &sql, params![new.chat_id, new.sender_id, new.client_id])?.pop() {
                return Ok((stored, false, Vec::new()));
            }
            let content = serde_json::to_string(&new.content)?;
            let forwarded = new.forwarded_from.as_ref().map(serde_json::to_string).transpose()?;
            insert_row(conn, &new, seq, &content, forwarded.as_deref())?;
            conn.prepare_cached(
                "UPDATE chats SET last_seq = MAX(last_seq, ?2), updated_at = MAX(updated_at, ?3) WHERE id = ?1",
            )?
            .execute(params![new.chat_id, seq, new.sent_at])?;
            // As with a send here, the sender has read up to their own message; marks never go back.
            conn.prepare_cached(
                "UPDATE members SET read_up_to = MAX(read_up_to, ?3), delivered_up_to = MAX(delivered_up_to, ?3) \
                 WHERE chat_id = ?1 AND user_id = ?2",
            )?
            .execute(params![new.chat_id, new.sender_id, seq])?;
            let message = Message { sender_address: remote_address_of(conn, new.sender_id)?, ..new.stored(seq) };
            let updates = push_all(conn, &notify, &Event::MessageNew { message: message.clone() }, new.sent_at)?;
            Ok((message, true, updates))
        })
        .await
    }

    async fn enqueue_outbound(&self, peer: &str, body: &str, now: i64) -> StoreResult<i64> {
        let (peer, body) = (peer.to_owned(), body.to_owned());
        self.write(move |conn| {
            conn.prepare_cached("INSERT INTO outbound (peer, body, created_at) VALUES (?1, ?2, ?3)")?
                .execute(params![peer, body, now])?;
            Ok(conn.last_insert_rowid())
        })
        .await
    }

    async fn outbound(&self, peer: &str, limit: u32) -> StoreResult<Vec<OutboundRecord>> {
        let peer = peer.to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, peer, body, created_at FROM outbound WHERE peer = ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![peer, limit], |r| {
                Ok(OutboundRecord { id: r.get(0)?, peer: r.get(1)?, body: r.get(2)?, created_at: r.get(3)? })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn remove_outbound(&self, peer: &str, ids: &[i64]) -> StoreResult<()> {
        let (peer, ids) = (peer.to_owned(), ids.to_vec());
        self.write(move |conn| {
            let mut stmt = conn.prepare_cached("DELETE FROM outbound WHERE peer = ?1 AND id = ?2")?;
            for id in ids {
                stmt.execute(params![peer, id])?;
            }
            Ok(())
        })
        .await
    }

    async fn expire_outbound(&self, before: i64) -> StoreResult<Vec<(String, u64)>> {
        self.write(move |conn| {
            let expired = conn
                .prepare_cached(
                    "SELECT peer, COUNT(*) FROM outbound WHERE created_at < ?1 GROUP BY peer ORDER BY peer",
                )?
                .query_map([before], |r| Ok((r.get::<_, String>(0)?, count(r.get(1)?))))?
                .collect::<Result<Vec<_>, _>>()?;
            conn.prepare_cached("DELETE FROM outbound WHERE created_at < ?1")?.execute([before])?;
            Ok(expired)
        })
        .await
    }

    async fn queue_depths(&self) -> StoreResult<Vec<QueueDepth>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT peer, COUNT(*), MIN(created_at) FROM outbound GROUP BY peer ORDER BY peer")?;
            let rows = stmt.query_map([], |r| {
                Ok(QueueDepth { peer: r.get(0)?, events: count(r.get(1)?), oldest_at: r.get(2)? })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn set_delivery(&self, changes: Vec<DeliveryChange>, now: i64) -> StoreResult<Vec<(i64, Update)>> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        self.write(move |conn| {
            let mut updates = Vec::new();
            for DeliveryChange { chat_id, seq, delivery } in changes {
                let stored: Option<(i64, Option<String>)> = conn
                    .prepare_cached("SELECT sender_id, delivery FROM messages WHERE chat_id = ?1 AND seq = ?2")?
                    .query_row(params![chat_id, seq], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                let Some((sender, Some(current))) = stored else { continue };
                let current: Delivery = json(&current)?;
                if !delivery_changes(&current, &delivery) {
                    continue;
                }
                conn.prepare_cached("UPDATE messages SET delivery = ?3 WHERE chat_id = ?1 AND seq = ?2")?
                    .execute(params![chat_id, seq, serde_json::to_string(&delivery)?])?;
                let update = push(conn, sender, Event::MessageDelivery { chat_id, seq, delivery }, now)?;
                if update.cursor.is_some() {
                    updates.push((sender, update));
                }
            }
            Ok(updates)
        })
        .await
    }

    async fn inbound_seen(&self, peer: &str, txn: &str) -> StoreResult<bool> {
        let (peer, txn) = (peer.to_owned(), txn.to_owned());
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT 1 FROM inbound_txns WHERE peer = ?1 AND txn = ?2")?
                .exists(params![peer, txn])?)
        })
        .await
    }

    async fn lease_delivery(&self, peer: &str, holder: &str, now: i64, until: i64) -> StoreResult<bool> {
        let (peer, holder) = (peer.to_owned(), holder.to_owned());
        self.write(move |conn| {
            Ok(conn
                .prepare_cached(
                    "INSERT INTO delivery_leases AS l (peer, holder, until) VALUES (?1, ?2, ?4) \
                     ON CONFLICT (peer) DO UPDATE SET holder = excluded.holder, until = excluded.until \
                     WHERE l.holder = excluded.holder OR l.until <= ?3 RETURNING holder",
                )?
                .exists(params![peer, holder, now, until])?)
        })
        .await
    }

    async fn record_inbound(&self, peer: &str, txn: &str, now: i64) -> StoreResult<()> {
        let (peer, txn) = (peer.to_owned(), txn.to_owned());
        self.write(move |conn| {
            conn.prepare_cached("INSERT OR IGNORE INTO inbound_txns (peer, txn, at) VALUES (?1, ?2, ?3)")?
                .execute(params![peer, txn, now])?;
            Ok(())
        })
        .await
    }

    async fn prune_inbound(&self, before: i64) -> StoreResult<u64> {
        self.write(move |conn| {
            Ok(conn.prepare_cached("DELETE FROM inbound_txns WHERE at < ?1")?.execute([before])? as u64)
        })
        .await
    }

    async fn first_use_of_nonce(&self, peer: &str, nonce: &str, stale_after: i64, now: i64) -> StoreResult<bool> {
        let (peer, nonce) = (peer.to_owned(), nonce.to_owned());
        self.write(move |conn| {
            Ok(conn
                .prepare_cached(
                    "INSERT INTO seen_nonces AS n (peer, nonce, stale_after) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (peer, nonce) DO UPDATE SET stale_after = excluded.stale_after \
                     WHERE n.stale_after < ?4 RETURNING 1",
                )?
                .exists(params![peer, nonce, stale_after, now])?)
        })
        .await
    }

    async fn prune_nonces(&self, before: i64) -> StoreResult<u64> {
        self.write(move |conn| {
            Ok(conn.prepare_cached("DELETE FROM seen_nonces WHERE stale_after < ?1")?.execute([before])? as u64)
        })
        .await
    }

    async fn record_submission(&self, digest: &str, now: i64) -> StoreResult<()> {
        let digest = digest.to_owned();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO submissions (digest, at) VALUES (?1, ?2) ON CONFLICT (digest) DO UPDATE SET at = excluded.at",
            )?
            .execute(params![digest, now])?;
            Ok(())
        })
        .await
    }

    async fn was_submitted(&self, digest: &str) -> StoreResult<bool> {
        let digest = digest.to_owned();
        self.read(move |conn| {
            Ok(conn.prepare_cached("SELECT 1 FROM submissions WHERE digest = ?1")?.exists([digest])?)
        })
        .await
    }

    async fn prune_submissions(&self, before: i64) -> StoreResult<u64> {
        self.write(move |conn| {
            Ok(conn.prepare_cached("DELETE FROM submissions WHERE at < ?1")?.execute([before])? as u64)
        })
        .await
    }

    async fn add_report(&self, report: ReportRecord) -> StoreResult<i64> {
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO reports (reporter, reported, reason, from_provider, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![report.reporter, report.reported, report.reason, report.from_provider, report.created_at])?;
            Ok(conn.last_insert_rowid())
        })
        .await
    }

    async fn reports(&self, limit: u32) -> StoreResult<Vec<ReportRecord>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, reporter, reported, reason, from_provider, created_at FROM reports ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit], |r| {
                Ok(ReportRecord {
                    id: r.get(0)?,
                    reporter: r.get(1)?,
                    reported: r.get(2)?,
                    reason: r.get(3)?,
                    from_provider: r.get(4)?,
                    created_at: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
}
