//! Chats, messages, reactions and receipts.

use std::collections::HashMap;

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use peyvand_api::{Audience, ChatKind, Content, Event, Message, PrivacySettings, Reaction, Update};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::updates::{lock_streams, push, push_all};
use super::{Attempt, PgStore, big, json, like_pattern, once, retry};
use crate::{
    ChatRecord, ChatStore, ChatView, MemberRecord, NewMessage, Page, RecipientFacts, SendContext, StoreError,
    StoreResult,
};

/// A message's columns over `messages m`, its reactions included, so that a list of messages
/// is one query.
pub(super) const MESSAGE_COLUMNS: &str = "m.chat_id, m.seq, m.sender_id, m.client_id, m.content, m.reply_to, \
     m.forwarded_from, m.sent_at, m.edited_at, \
     ARRAY(SELECT r.user_id FROM reactions r WHERE r.chat_id = m.chat_id AND r.seq = m.seq ORDER BY r.user_id) \
       AS reactors, \
     ARRAY(SELECT r.emoji FROM reactions r WHERE r.chat_id = m.chat_id AND r.seq = m.seq ORDER BY r.user_id) \
       AS emojis, \
     m.delivery, \
     (SELECT u.remote_address FROM users u WHERE u.id = m.sender_id)";

/// Whether the viewer `$2` has not hidden the message `m`.
const NOT_HIDDEN: &str =
    "NOT EXISTS (SELECT 1 FROM hidden h WHERE h.chat_id = m.chat_id AND h.user_id = $2 AND h.seq = m.seq)";

/// Reads the message whose columns start at `at`: those of [`MESSAGE_COLUMNS`], in order.
pub(super) fn message_from_row(row: &Row, at: usize) -> Attempt<Message> {
    let forwarded: Option<&str> = row.try_get(at + 6)?;
    let reactors: Vec<i64> = row.try_get(at + 9)?;
    let emojis: Vec<String> = row.try_get(at + 10)?;
    let delivery: Option<&str> = row.try_get(at + 11)?;
    Ok(Message {
        chat_id: row.try_get(at)?,
        seq: row.try_get(at + 1)?,
        sender_id: row.try_get(at + 2)?,
        sender_address: row.try_get(at + 12)?,
        client_id: row.try_get(at + 3)?,
        content: json(row.try_get(at + 4)?)?,
        reply_to: row.try_get(at + 5)?,
        forwarded_from: forwarded.map(json).transpose()?,
        sent_at: row.try_get(at + 7)?,
        edited_at: row.try_get(at + 8)?,
        reactions: reactors.into_iter().zip(emojis).map(|(user_id, emoji)| Reaction { user_id, emoji }).collect(),
        delivery: delivery.map(json).transpose()?,
    })
}

pub(super) async fn messages(
    db: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Attempt<Vec<Message>> {
    let statement = db.prepare_cached(sql).await?;
    db.query(&statement, params).await?.iter().map(|row| message_from_row(row, 0)).collect()
}

async fn message(db: &impl GenericClient, chat_id: i64, seq: i64) -> Attempt<Option<Message>> {
    let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.chat_id = $1 AND m.seq = $2");
    Ok(messages(db, &sql, &[&chat_id, &seq]).await?.pop())
}

async fn message_by_client_id(
    db: &impl GenericClient,
    chat_id: i64,
    sender_id: i64,
    client_id: &str,
) -> Attempt<Option<Message>> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.chat_id = $1 AND m.sender_id = $2 AND m.client_id = $3"
    );
    Ok(messages(db, &sql, &[&chat_id, &sender_id, &client_id]).await?.pop())
}

fn member_from_row(row: &Row) -> Attempt<MemberRecord> {
    Ok(MemberRecord {
        chat_id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        read_up_to: row.try_get(2)?,
        delivered_up_to: row.try_get(3)?,
        remote_address: row.try_get(4)?,
    })
}

async fn members(db: &impl GenericClient, chat_id: i64) -> Attempt<Vec<MemberRecord>> {
    let statement = db
        .prepare_cached(
            "SELECT m.chat_id, m.user_id, m.read_up_to, m.delivered_up_to, u.remote_address \
             FROM members m LEFT JOIN users u ON u.id = m.user_id WHERE m.chat_id = $1 ORDER BY m.user_id",
        )
        .await?;
    db.query(&statement, &[&chat_id]).await?.iter().map(member_from_row).collect()
}

fn kind(raw: &str) -> Attempt<ChatKind> {
    match raw {
        "direct" => Ok(ChatKind::Direct),
        other => Err(StoreError::Backend(format!("unknown chat kind {other:?}")).into()),
    }
}

/// The chats of `$1` as [`ChatView`]s without their other members, followed by `tail` (which
/// narrows, orders and limits them): the chat, the viewer's membership (with their remote
/// address), the unread count and the newest message the viewer has not hidden, in one query.
fn views_sql(tail: &str) -> String {
    format!(
        "SELECT c.id, c.kind, c.created_at, c.updated_at, c.last_seq, me.read_up_to, me.delivered_up_to, \
           (SELECT remote_address FROM users WHERE id = $1), \
           (SELECT count(*) FROM messages m WHERE m.chat_id = c.id AND m.seq > me.read_up_to \
              AND m.sender_id <> $1 AND NOT m.deleted \
              AND NOT EXISTS (SELECT 1 FROM hidden h WHERE h.chat_id = m.chat_id AND h.user_id = $1 AND h.seq = m.seq)), \
           last.* \
         FROM members me JOIN chats c ON c.id = me.chat_id \
         LEFT JOIN LATERAL ( \
           SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.chat_id = c.id \
             AND NOT EXISTS (SELECT 1 FROM hidden h WHERE h.chat_id = m.chat_id AND h.user_id = $1 AND h.seq = m.seq) \
           ORDER BY m.seq DESC LIMIT 1 \
         ) last ON true \
         WHERE me.user_id = $1 {tail}"
    )
}

/// Runs a [`views_sql`] query and adds each chat's other members with one more query.
async fn views(db: &impl GenericClient, user_id: i64, sql: &str, param: &(dyn ToSql + Sync)) -> Attempt<Vec<ChatView>> {
    let statement = db.prepare_cached(sql).await?;
    let rows = db.query(&statement, &[&user_id, param]).await?;
    let mut views = Vec::with_capacity(rows.len());
    for row in &rows {
        let chat = ChatRecord {
            id: row.try_get(0)?,
            kind: kind(row.try_get(1)?)?,
            created_at: row.try_get(2)?,
            updated_at: row.try_get(3)?,
            last_seq: row.try_get(4)?,
        };
        let me = MemberRecord {
            chat_id: chat.id,
            user_id,
            read_up_to: row.try_get(5)?,
            delivered_up_to: row.try_get(6)?,
            remote_address: row.try_get(7)?,
        };
        // The lateral join gives NULLs when the viewer sees no message in the chat.
        let has_message = row.try_get::<_, Option<i64>>(9)?.is_some();
        let last_message = if has_message { Some(message_from_row(row, 9)?) } else { None };
        views.push(ChatView { chat, me, others: Vec::new(), last_message, unread: row.try_get(8)? });
    }
    if views.is_empty() {
        return Ok(views);
    }
    let ids: Vec<i64> = views.iter().map(|v| v.chat.id).collect();
    let statement = db
        .prepare_cached(
            "SELECT m.chat_id, m.user_id, m.read_up_to, m.delivered_up_to, u.remote_address \
             FROM members m LEFT JOIN users u ON u.id = m.user_id \
             WHERE m.chat_id = ANY($1) AND m.user_id <> $2 ORDER BY m.chat_id, m.user_id",
        )
        .await?;
    let mut others: HashMap<i64, Vec<MemberRecord>> = HashMap::new();
    for row in db.query(&statement, &[&ids, &user_id]).await? {
        let member = member_from_row(&row)?;
        others.entry(member.chat_id).or_default().push(member);
    }
    for view in &mut views {
        view.others = others.remove(&view.chat.id).unwrap_or_default();
    }
    Ok(views)
}

/// The key that makes a direct chat of two people unique, whoever opened it.
pub(super) fn direct_key(a: i64, b: i64) -> String {
    format!("{}:{}", a.min(b), a.max(b))
}

pub(super) async fn find_direct(db: &impl GenericClient, key: &str) -> Attempt<Option<i64>> {
    let statement = db.prepare_cached("SELECT id FROM chats WHERE direct_key = $1").await?;
    Ok(db.query_opt(&statement, &[&key]).await?.map(|row| row.try_get(0)).transpose()?)
}

/// Finds the direct chat of two people or creates it with both as members. The unique key
/// decides a race between two first messages: the loser's insert does nothing, and it reads
/// the winner's chat.
async fn open_direct_chat(store: &PgStore, a: i64, b: i64, now: i64) -> Attempt<(i64, bool)> {
    let client = store.client().await?;
    let key = direct_key(a, b);
    if let Some(id) = find_direct(&client, &key).await? {
        return Ok((id, false));
    }
    // One statement creates the chat and its members, so neither exists without the other.
    let statement = client
        .prepare_cached(
            "WITH c AS ( \
                 INSERT INTO chats (kind, direct_key, created_at, updated_at) VALUES ('direct', $1, $2, $2) \
                 ON CONFLICT (direct_key) DO NOTHING RETURNING id \
             ), m AS ( \
                 INSERT INTO members (chat_id, user_id) SELECT c.id, u FROM c, unnest($3::bigint[]) u \
                 ON CONFLICT DO NOTHING \
             ) SELECT id FROM c",
        )
        .await?;
    if let Some(row) = client.query_opt(&statement, &[&key, &now, &vec![a, b]]).await? {
        return Ok((row.try_get(0)?, true));
    }
    // Chats are never deleted, so the winner's chat is there to read.
    let id = find_direct(&client, &key).await?.ok_or(StoreError::NotFound)?;
    Ok((id, false))
}

async fn send_context(store: &PgStore, chat_id: i64, sender: i64) -> Attempt<Option<SendContext>> {
    let client = store.client().await?;
    // Every member with the facts about them, in one query; a member whose account row is
    // missing counts as deleted, as in the embedded backend.
    let statement = client
        .prepare_cached(
            "SELECT m.chat_id, m.user_id, m.read_up_to, m.delivered_up_to, u.remote_address, \
               COALESCE(u.deleted, true), u.privacy, \
               EXISTS (SELECT 1 FROM contacts c WHERE c.owner_id = m.user_id \
                         AND c.phone = (SELECT COALESCE(phone, split_part(remote_address, '@', 1)) \
                                        FROM users WHERE id = $2)), \
               EXISTS (SELECT 1 FROM blocks b WHERE b.owner_id = $2 AND b.target_id = m.user_id), \
               EXISTS (SELECT 1 FROM blocks b WHERE b.owner_id = m.user_id AND b.target_id = $2) \
             FROM members m LEFT JOIN users u ON u.id = m.user_id \
             WHERE m.chat_id = $1 ORDER BY m.user_id",
        )
        .await?;
    let rows = client.query(&statement, &[&chat_id, &sender]).await?;
    let mut members = Vec::with_capacity(rows.len());
    let mut recipients = Vec::with_capacity(rows.len().saturating_sub(1));
    for row in &rows {
        let member = member_from_row(row)?;
        if member.user_id != sender {
            let deleted: bool = row.try_get(5)?;
            let privacy: Option<&str> = row.try_get(6)?;
            let messages = match privacy {
                Some(raw) if !deleted => json::<PrivacySettings>(raw)?.messages,
                _ => Audience::default(),
            };
            recipients.push(RecipientFacts {
                user_id: member.user_id,
                deleted,
                messages,
                has_sender_as_contact: row.try_get(7)?,
                blocked_by_sender: row.try_get(8)?,
                blocked_sender: row.try_get(9)?,
            });
        }
        members.push(member);
    }
    if !members.iter().any(|m| m.user_id == sender) {
        return Ok(None);
    }
    Ok(Some(SendContext { members, recipients }))
}

/// Stores a message, or finds the one already stored under its client id.
///
/// The message an earlier send with the same client id stored, if it is the same message;
/// `IdempotencyConflict` if the client id was used for another.
pub(super) async fn earlier_send(
    db: &impl GenericClient,
    new: &NewMessage,
) -> Attempt<(Message, bool, Vec<(i64, Update)>)> {
    let stored =
        message_by_client_id(db, new.chat_id, new.sender_id, &new.client_id).await?.ok_or(StoreError::NotFound)?;
    if !new.is_retry_of(&stored) {
        return Err(StoreError::IdempotencyConflict.into());
    }
    Ok((stored, false, Vec::new()))
}

/// The chat's row is locked first (by taking the next seq), so sends to one chat run one at a
/// time from there on; a send whose client id is already taken then finds the stored message
/// committed, its insert does nothing, and its transaction is rolled back, seq and all.
pub(super) async fn append_message(
    store: &PgStore,
    new: &NewMessage,
    notify: &[i64],
) -> Attempt<(Message, bool, Vec<(i64, Update)>)> {
    let content = serde_json::to_string(&new.content)?;
    let forwarded = new.forwarded_from.as_ref().map(serde_json::to_string).transpose()?;
    let delivery = new.delivery.as_ref().map(serde_json::to_string).transpose()?;
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    let statement = tx
        .prepare_cached(
            "WITH chat AS ( \
                 UPDATE chats SET last_seq = last_seq + 1, updated_at = $8 WHERE id = $1 RETURNING last_seq \
             ), message AS ( \
                 INSERT INTO messages \
                   (chat_id, seq, sender_id, client_id, content, folded, reply_to, forwarded_from, sent_at, delivery) \
                 SELECT $1, last_seq, $2, $3, $4, $5, $6, $7, $8, $9 FROM chat \
                 ON CONFLICT (chat_id, sender_id, client_id) DO NOTHING RETURNING seq \
             ), sender AS ( \
                 UPDATE members SET read_up_to = message.seq, delivered_up_to = message.seq FROM message \
                 WHERE chat_id = $1 AND user_id = $2 \
             ) SELECT (SELECT last_seq FROM chat), (SELECT seq FROM message)",
        )
        .await?;
    let row = tx
        .query_one(
            &statement,
            &[
                &new.chat_id,
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
    let (chat_seq, seq): (Option<i64>, Option<i64>) = (row.try_get(0)?, row.try_get(1)?);
    if chat_seq.is_none() {
        return Err(StoreError::NotFound.into());
    }
    let Some(seq) = seq else {
        tx.rollback().await?;
        return earlier_send(&client, new).await;
    };
    let message = Message { sender_address: remote_address_of(&tx, new.sender_id).await?, ..new.stored(seq) };
    let updates = push_all(&tx, notify, Event::MessageNew { message: message.clone() }, new.sent_at).await?;
    tx.commit().await?;
    Ok((message, true, updates))
}

/// The address of a person on another messenger (a stand-in); `None` for people here.
pub(super) async fn remote_address_of(db: &impl GenericClient, user_id: i64) -> Attempt<Option<String>> {
    let statement = db.prepare_cached("SELECT remote_address FROM users WHERE id = $1").await?;
    Ok(db.query_opt(&statement, &[&user_id]).await?.map(|row| row.try_get(0)).transpose()?.flatten())
}

async fn edit_message(
    store: &PgStore,
    chat_id: i64,
    seq: i64,
    content: &Content,
    folded: &str,
    now: i64,
    notify: &[i64],
) -> Attempt<(Message, Vec<(i64, Update)>)> {
    let raw = serde_json::to_string(content)?;
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    let statement = tx
        .prepare_cached(
            "UPDATE messages SET content = $3, folded = $4, edited_at = $5 \
             WHERE chat_id = $1 AND seq = $2 AND NOT deleted",
        )
        .await?;
    if tx.execute(&statement, &[&chat_id, &seq, &raw, &folded, &now]).await? == 0 {
        return Err(StoreError::NotFound.into());
    }
    // Read in a statement of its own, after the row lock above: its reactions are then those
    // of every reaction committed before this edit.
    let message = message(&tx, chat_id, seq).await?.ok_or(StoreError::NotFound)?;
    let updates = push_all(&tx, notify, Event::MessageEdited { message: message.clone() }, now).await?;
    tx.commit().await?;
    Ok((message, updates))
}

async fn delete_message(
    store: &PgStore,
    chat_id: i64,
    seq: i64,
    now: i64,
    notify: &[i64],
) -> Attempt<Vec<(i64, Update)>> {
    let raw = serde_json::to_string(&Content::Deleted)?;
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    let statement = tx
        .prepare_cached(
            "UPDATE messages SET content = $3, folded = '', deleted = true WHERE chat_id = $1 AND seq = $2 AND NOT deleted",
        )
        .await?;
    if tx.execute(&statement, &[&chat_id, &seq, &raw]).await? == 0 {
        return Err(StoreError::NotFound.into());
    }
    // A statement of its own, after the row lock above, so that it also removes a reaction
    // that committed while this transaction waited for the message.
    let statement = tx.prepare_cached("DELETE FROM reactions WHERE chat_id = $1 AND seq = $2").await?;
    tx.execute(&statement, &[&chat_id, &seq]).await?;
    let updates =
        push_all(&tx, notify, Event::MessagesDeleted { chat_id, seqs: vec![seq], for_everyone: true }, now).await?;
    tx.commit().await?;
    Ok(updates)
}

async fn hide_message(store: &PgStore, user_id: i64, chat_id: i64, seq: i64, now: i64) -> Attempt<Vec<(i64, Update)>> {
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    let statement = tx
        .prepare_cached(
            "WITH m AS (SELECT 1 FROM messages WHERE chat_id = $1 AND seq = $3), \
             h AS (INSERT INTO hidden (chat_id, user_id, seq) SELECT $1, $2, $3 FROM m ON CONFLICT DO NOTHING) \
             SELECT EXISTS (SELECT 1 FROM m)",
        )
        .await?;
    let exists: bool = tx.query_one(&statement, &[&chat_id, &user_id, &seq]).await?.try_get(0)?;
    if !exists {
        return Err(StoreError::NotFound.into());
    }
    let updates =
        push_all(&tx, &[user_id], Event::MessagesDeleted { chat_id, seqs: vec![seq], for_everyone: false }, now)
            .await?;
    tx.commit().await?;
    Ok(updates)
}

async fn set_reaction(
    store: &PgStore,
    chat_id: i64,
    seq: i64,
    user_id: i64,
    emoji: Option<&str>,
    now: i64,
    notify: &[i64],
) -> Attempt<(Vec<Reaction>, Vec<(i64, Update)>)> {
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    // The message's row lock puts one message's reaction changes (and its deletion) in one
    // order, so each change's list includes every change before it, and the last update a
    // person gets carries the whole list.
    let statement =
        tx.prepare_cached("SELECT 1 FROM messages WHERE chat_id = $1 AND seq = $2 AND NOT deleted FOR UPDATE").await?;
    if tx.query_opt(&statement, &[&chat_id, &seq]).await?.is_none() {
        return Err(StoreError::NotFound.into());
    }
    match emoji {
        Some(emoji) => {
            let statement = tx
                .prepare_cached(
                    "INSERT INTO reactions (chat_id, seq, user_id, emoji) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (chat_id, seq, user_id) DO UPDATE SET emoji = excluded.emoji",
                )
                .await?;
            tx.execute(&statement, &[&chat_id, &seq, &user_id, &emoji]).await?;
        }
        None => {
            let statement =
                tx.prepare_cached("DELETE FROM reactions WHERE chat_id = $1 AND seq = $2 AND user_id = $3").await?;
            tx.execute(&statement, &[&chat_id, &seq, &user_id]).await?;
        }
    }
    let statement = tx
        .prepare_cached("SELECT user_id, emoji FROM reactions WHERE chat_id = $1 AND seq = $2 ORDER BY user_id")
        .await?;
    let list = tx
        .query(&statement, &[&chat_id, &seq])
        .await?
        .iter()
        .map(|row| Ok(Reaction { user_id: row.try_get(0)?, emoji: row.try_get(1)? }))
        .collect::<Attempt<Vec<_>>>()?;
    let updates = push_all(&tx, notify, Event::ReactionsChanged { chat_id, seq, reactions: list.clone() }, now).await?;
    tx.commit().await?;
    Ok((list, updates))
}

/// Raises a read mark; see [`ChatStore::mark_read`].
async fn mark_read(
    store: &PgStore,
    chat_id: i64,
    user_id: i64,
    up_to: i64,
    now: i64,
    notify: &[i64],
) -> Attempt<Vec<(i64, Update)>> {
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    // The mark may not pass the end of the chat, and never goes back.
    let statement = tx
        .prepare_cached(
            "WITH c AS (SELECT LEAST(GREATEST($3::bigint, 0), last_seq) AS up_to FROM chats WHERE id = $1), \
             r AS ( \
                 UPDATE members m SET read_up_to = c.up_to, delivered_up_to = GREATEST(m.delivered_up_to, c.up_to) \
                 FROM c WHERE m.chat_id = $1 AND m.user_id = $2 AND m.read_up_to < c.up_to RETURNING m.read_up_to \
             ) SELECT c.up_to, EXISTS (SELECT 1 FROM r) FROM c",
        )
        .await?;
    let row = tx.query_opt(&statement, &[&chat_id, &user_id, &up_to]).await?.ok_or(StoreError::NotFound)?;
    let (up_to, raised): (i64, bool) = (row.try_get(0)?, row.try_get(1)?);
    if !raised {
        tx.rollback().await?;
        return Ok(Vec::new());
    }
    // The unread count is read only once no other write can put an update before ours in
    // the reader's stream: a message committed until then is counted, and one committed
    // later is announced after this update.
    let mut everyone = Vec::with_capacity(notify.len() + 1);
    everyone.push(user_id);
    everyone.extend_from_slice(notify);
    lock_streams(&tx, &everyone).await?;
    let statement = tx
        .prepare_cached(
            "SELECT count(*) FROM messages m WHERE m.chat_id = $1 AND m.seq > $3 AND m.sender_id <> $2 \
             AND NOT m.deleted AND NOT EXISTS \
             (SELECT 1 FROM hidden h WHERE h.chat_id = m.chat_id AND h.user_id = $2 AND h.seq = m.seq)",
        )
        .await?;
    let unread: i64 = tx.query_one(&statement, &[&chat_id, &user_id, &up_to]).await?.try_get(0)?;
    let entries: Vec<(i64, usize)> =
        std::iter::once((user_id, 0)).chain(notify.iter().map(|&other| (other, 1))).collect();
    let events = [Event::ReadByMe { chat_id, up_to, unread }, Event::Read { chat_id, user_id, up_to }];
    let updates = push(&tx, &entries, &events, now).await?;
    tx.commit().await?;
    Ok(updates)
}

async fn mark_delivered(
    store: &PgStore,
    chat_id: i64,
    user_id: i64,
    up_to: i64,
    now: i64,
    notify: &[i64],
) -> Attempt<Vec<(i64, Update)>> {
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    let statement = tx
        .prepare_cached(
            "WITH c AS (SELECT LEAST(GREATEST($3::bigint, 0), last_seq) AS up_to FROM chats WHERE id = $1), \
             r AS ( \
                 UPDATE members m SET delivered_up_to = c.up_to \
                 FROM c WHERE m.chat_id = $1 AND m.user_id = $2 AND m.delivered_up_to < c.up_to RETURNING 1 \
             ) SELECT c.up_to, EXISTS (SELECT 1 FROM r) FROM c",
        )
        .await?;
    let row = tx.query_opt(&statement, &[&chat_id, &user_id, &up_to]).await?.ok_or(StoreError::NotFound)?;
    let (up_to, raised): (i64, bool) = (row.try_get(0)?, row.try_get(1)?);
    if !raised {
        tx.rollback().await?;
        return Ok(Vec::new());
    }
    let updates = push_all(&tx, notify, Event::Delivered { chat_id, user_id, up_to }, now).await?;
    tx.commit().await?;
    Ok(updates)
}

#[async_trait]
impl ChatStore for PgStore {
    async fn direct_chat(&self, a: i64, b: i64) -> StoreResult<Option<i64>> {
        once(async { find_direct(&self.client().await?, &direct_key(a, b)).await }).await
    }

    async fn open_direct_chat(&self, a: i64, b: i64, now: i64) -> StoreResult<(i64, bool)> {
        retry(|| open_direct_chat(self, a, b, now)).await
    }

    async fn members(&self, chat_id: i64) -> StoreResult<Vec<MemberRecord>> {
        once(async { members(&self.client().await?, chat_id).await }).await
    }

    async fn send_context(&self, chat_id: i64, sender: i64) -> StoreResult<Option<SendContext>> {
        once(send_context(self, chat_id, sender)).await
    }

    async fn chat_peers(&self, user_id: i64, limit: u32) -> StoreResult<Vec<i64>> {
        once(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "SELECT DISTINCT other.user_id FROM members me JOIN members other ON other.chat_id = me.chat_id \
                     WHERE me.user_id = $1 AND other.user_id <> $1 ORDER BY other.user_id LIMIT $2",
                )
                .await?;
            let rows = client.query(&statement, &[&user_id, &big(limit)]).await?;
            Ok(rows.iter().map(|row| row.try_get(0)).collect::<Result<Vec<i64>, _>>()?)
        })
        .await
    }

    async fn chats_of(&self, user_id: i64, limit: u32) -> StoreResult<Vec<ChatView>> {
        let sql = views_sql("ORDER BY c.updated_at DESC, c.id DESC LIMIT $2");
        once(async { views(&self.client().await?, user_id, &sql, &big(limit)).await }).await
    }

    async fn chat_view(&self, user_id: i64, chat_id: i64) -> StoreResult<Option<ChatView>> {
        let sql = views_sql("AND c.id = $2");
        once(async { Ok(views(&self.client().await?, user_id, &sql, &chat_id).await?.pop()) }).await
    }

    async fn append_message(
        &self,
        new: NewMessage,
        notify: Vec<i64>,
    ) -> StoreResult<(Message, bool, Vec<(i64, Update)>)> {
        let Some(queue) = &self.batches else { return retry(|| append_message(self, &new, &notify)).await };
        let (reply, answer) = tokio::sync::oneshot::channel();
        queue
            .send(super::batch::Job { new, notify, reply })
            .await
            .map_err(|_| StoreError::Unavailable("the send batcher has stopped".into()))?;
        answer.await.map_err(|_| StoreError::Unavailable("the send batcher has stopped".into()))?
    }

    async fn message(&self, chat_id: i64, seq: i64) -> StoreResult<Option<Message>> {
        once(async { message(&self.client().await?, chat_id, seq).await }).await
    }

    async fn message_by_client_id(
        &self,
        chat_id: i64,
        sender_id: i64,
        client_id: &str,
    ) -> StoreResult<Option<Message>> {
        once(async { message_by_client_id(&self.client().await?, chat_id, sender_id, client_id).await }).await
    }

    async fn history(&self, viewer: i64, chat_id: i64, page: Page) -> StoreResult<Vec<Message>> {
        once(async {
            let client = self.client().await?;
            match page {
                Page::Before { seq, limit } => {
                    let sql = format!(
                        "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.chat_id = $1 AND m.seq < $3 AND {NOT_HIDDEN} \
                         ORDER BY m.seq DESC LIMIT $4"
                    );
                    let mut list = messages(&client, &sql, &[&chat_id, &viewer, &seq, &big(limit)]).await?;
                    list.reverse();
                    Ok(list)
                }
                Page::After { seq, limit } => {
                    let sql = format!(
                        "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.chat_id = $1 AND m.seq > $3 AND {NOT_HIDDEN} \
                         ORDER BY m.seq ASC LIMIT $4"
                    );
                    messages(&client, &sql, &[&chat_id, &viewer, &seq, &big(limit)]).await
                }
            }
        })
        .await
    }

    async fn edit_message(
        &self,
        chat_id: i64,
        seq: i64,
        content: Content,
        folded: String,
        now: i64,
        notify: Vec<i64>,
    ) -> StoreResult<(Message, Vec<(i64, Update)>)> {
        retry(|| edit_message(self, chat_id, seq, &content, &folded, now, &notify)).await
    }

    async fn delete_message(
        &self,
        chat_id: i64,
        seq: i64,
        now: i64,
        notify: Vec<i64>,
    ) -> StoreResult<Vec<(i64, Update)>> {
        retry(|| delete_message(self, chat_id, seq, now, &notify)).await
    }

    async fn hide_message(&self, user_id: i64, chat_id: i64, seq: i64, now: i64) -> StoreResult<Vec<(i64, Update)>> {
        retry(|| hide_message(self, user_id, chat_id, seq, now)).await
    }

    async fn set_reaction(
        &self,
        chat_id: i64,
        seq: i64,
        user_id: i64,
        emoji: Option<String>,
        now: i64,
        notify: Vec<i64>,
    ) -> StoreResult<(Vec<Reaction>, Vec<(i64, Update)>)> {
        retry(|| set_reaction(self, chat_id, seq, user_id, emoji.as_deref(), now, &notify)).await
    }

    async fn mark_read(
        &self,
        chat_id: i64,
        user_id: i64,
        up_to: i64,
        now: i64,
        notify: Vec<i64>,
    ) -> StoreResult<Vec<(i64, Update)>> {
        retry(|| mark_read(self, chat_id, user_id, up_to, now, &notify)).await
    }

    async fn mark_delivered(
        &self,
        chat_id: i64,
        user_id: i64,
        up_to: i64,
        now: i64,
        notify: Vec<i64>,
    ) -> StoreResult<Vec<(i64, Update)>> {
        retry(|| mark_delivered(self, chat_id, user_id, up_to, now, &notify)).await
    }

    async fn search_messages(&self, viewer: i64, folded_query: &str, limit: u32) -> StoreResult<Vec<Message>> {
        // PostgreSQL text cannot hold NUL, so no stored message contains one.
        if folded_query.is_empty() || folded_query.contains('\0') {
            return Ok(Vec::new());
        }
        let pattern = like_pattern(folded_query);
        // `$2` is the viewer in NOT_HIDDEN.
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN members me ON me.chat_id = m.chat_id AND me.user_id = $2 \
             WHERE m.deleted = false AND m.folded LIKE $1 ESCAPE '\\' AND {NOT_HIDDEN} \
             ORDER BY m.sent_at DESC, m.chat_id DESC, m.seq DESC LIMIT $3"
        );
        once(async { messages(&self.client().await?, &sql, &[&pattern, &viewer, &big(limit)]).await }).await
    }
}
