//! Chats, messages, reactions and receipts.

use async_trait::async_trait;
use peyvand_api::{ChatKind, Content, Event, Message, Reaction, Update};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::accounts::has_contact;
use super::accounts::like_pattern;
use super::updates::push_all;
use super::{SqliteStore, json};
use crate::{
    ChatRecord, ChatStore, ChatView, MemberRecord, NewMessage, Page, Placed, RecipientFacts, SendContext, SendGate,
    SendOutcome, StoreError, StoreResult,
};

pub(super) const MESSAGE_COLUMNS: &str = "m.chat_id, m.seq, m.sender_id, m.client_id, m.content, m.reply_to, \
     m.forwarded_from, m.sent_at, m.edited_at, m.delivery, \
     (SELECT u.remote_address FROM users u WHERE u.id = m.sender_id)";

/// A message read from its row, its content, forward and delivery still JSON:
/// [`finish_message`] parses them and adds the reactions.
pub(super) type RawMessage = (Message, String, Option<String>, Option<String>);

fn message_from_row(row: &Row<'_>) -> rusqlite::Result<RawMessage> {
    message_from_row_at(row, 0)
}

/// Reads the message whose columns start at `at`: those of [`MESSAGE_COLUMNS`], in order.
pub(super) fn message_from_row_at(row: &Row<'_>, at: usize) -> rusqlite::Result<RawMessage> {
    Ok((
        Message {
            chat_id: row.get(at)?,
            seq: row.get(at + 1)?,
            sender_id: row.get(at + 2)?,
            sender_address: row.get(at + 10)?,
            client_id: row.get(at + 3)?,
            content: Content::Deleted,
            reply_to: row.get(at + 5)?,
            forwarded_from: None,
            sent_at: row.get(at + 7)?,
            edited_at: row.get(at + 8)?,
            reactions: Vec::new(),
            delivery: None,
        },
        row.get(at + 4)?,
        row.get(at + 6)?,
        row.get(at + 9)?,
    ))
}

pub(super) fn finish_message(
    conn: &Connection,
    (mut message, content, forwarded, delivery): RawMessage,
) -> StoreResult<Message> {
    message.content = json(&content)?;
    message.forwarded_from = forwarded.as_deref().map(json).transpose()?;
    message.delivery = delivery.as_deref().map(json).transpose()?;
    message.reactions = reactions(conn, message.chat_id, message.seq)?;
    Ok(message)
}

fn reactions(conn: &Connection, chat_id: i64, seq: i64) -> StoreResult<Vec<Reaction>> {
    let mut stmt =
        conn.prepare_cached("SELECT user_id, emoji FROM reactions WHERE chat_id = ?1 AND seq = ?2 ORDER BY user_id")?;
    let rows = stmt.query_map(params![chat_id, seq], |r| Ok(Reaction { user_id: r.get(0)?, emoji: r.get(1)? }))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub(super) fn messages(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> StoreResult<Vec<Message>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let raw = stmt.query_map(params, message_from_row)?.collect::<Result<Vec<_>, _>>()?;
    raw.into_iter().map(|m| finish_message(conn, m)).collect()
}

pub(super) fn message(conn: &Connection, chat_id: i64, seq: i64) -> StoreResult<Option<Message>> {
    let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.chat_id = ?1 AND m.seq = ?2");
    Ok(messages(conn, &sql, params![chat_id, seq])?.pop())
}

fn message_exists(conn: &Connection, chat_id: i64, seq: i64) -> StoreResult<bool> {
    Ok(conn.prepare_cached("SELECT 1 FROM messages WHERE chat_id = ?1 AND seq = ?2")?.exists(params![chat_id, seq])?)
}

fn chat(conn: &Connection, chat_id: i64) -> StoreResult<Option<ChatRecord>> {
    Ok(conn
        .prepare_cached("SELECT id, kind, created_at, updated_at, last_seq FROM chats WHERE id = ?1")?
        .query_row([chat_id], |r| {
            Ok(ChatRecord {
                id: r.get(0)?,
                kind: ChatKind::Direct,
                created_at: r.get(2)?,
                updated_at: r.get(3)?,
                last_seq: r.get(4)?,
            })
        })
        .optional()?)
}

fn members(conn: &Connection, chat_id: i64) -> StoreResult<Vec<MemberRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT m.chat_id, m.user_id, m.read_up_to, m.delivered_up_to, u.remote_address \
         FROM members m LEFT JOIN users u ON u.id = m.user_id WHERE m.chat_id = ?1 ORDER BY m.user_id",
    )?;
    let rows = stmt.query_map([chat_id], |r| {
        Ok(MemberRecord {
            chat_id: r.get(0)?,
            user_id: r.get(1)?,
            read_up_to: r.get(2)?,
            delivered_up_to: r.get(3)?,
            remote_address: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

fn send_context(conn: &Connection, chat_id: i64, sender: i64) -> StoreResult<Option<SendContext>> {
    let members = members(conn, chat_id)?;
    if !members.iter().any(|m| m.user_id == sender) {
        return Ok(None);
    }
    let mut recipients = Vec::with_capacity(members.len().saturating_sub(1));
    let mut blocked = conn.prepare_cached("SELECT 1 FROM blocks WHERE owner_id = ?1 AND target_id = ?2")?;
    for member in members.iter().filter(|m| m.user_id != sender) {
        let (deleted, privacy): (bool, String) = conn
            .prepare_cached("SELECT deleted, privacy FROM users WHERE id = ?1")?
            .query_row([member.user_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
            .unwrap_or((true, String::new()));
        let messages =
            if deleted { Default::default() } else { json::<peyvand_api::PrivacySettings>(&privacy)?.messages };
        recipients.push(RecipientFacts {
            user_id: member.user_id,
            deleted,
            messages,
            has_sender_as_contact: has_contact(conn, member.user_id, sender)?,
            blocked_by_sender: blocked.exists(params![sender, member.user_id])?,
            blocked_sender: blocked.exists(params![member.user_id, sender])?,
        });
    }
    Ok(Some(SendContext { members, recipients }))
}

/// The message stored under a sender's client id: the same send retried, or a conflict.
fn retried(conn: &Connection, new: &NewMessage) -> StoreResult<Option<Message>> {
    let existing = conn
        .prepare_cached("SELECT seq FROM messages WHERE chat_id = ?1 AND sender_id = ?2 AND client_id = ?3")?
        .query_row(params![new.chat_id, new.sender_id, new.client_id], |r| r.get::<_, i64>(0))
        .optional()?;
    let Some(seq) = existing else { return Ok(None) };
    let stored = message(conn, new.chat_id, seq)?.ok_or(StoreError::NotFound)?;
    if !new.is_retry_of(&stored) {
        return Err(StoreError::IdempotencyConflict);
    }
    Ok(Some(stored))
}

/// The `messages` row of `new` at `seq`, with its content and forward already serialised.
pub(super) fn insert_row(
    conn: &Connection,
    new: &NewMessage,
    seq: i64,
    content: &str,
    forwarded: Option<&str>,
) -> StoreResult<()> {
    let delivery = new.delivery.as_ref().map(serde_json::to_string).transpose()?;
    conn.prepare_cached(
        "INSERT INTO messages \
           (chat_id, seq, sender_id, client_id, content, folded, reply_to, forwarded_from, sent_at, delivery) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        new.chat_id,
        seq,
        new.sender_id,
        new.client_id,
        content,
        new.folded,
        new.reply_to,
        forwarded,
        new.sent_at,
        delivery
    ])?;
    Ok(())
}

/// The address of a person on another messenger (a stand-in); `None` for people here.
pub(super) fn remote_address_of(conn: &Connection, user_id: i64) -> StoreResult<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT remote_address FROM users WHERE id = ?1")?
        .query_row([user_id], |r| r.get(0))
        .optional()?
        .flatten())
}

/// Stores a new message (its client id unused) and its updates, in the caller's transaction;
/// `sender_address` is the sender's on another messenger, if they are on one.
fn insert_message(
    conn: &Connection,
    new: &NewMessage,
    sender_address: Option<String>,
    notify: &[i64],
) -> StoreResult<(Message, Vec<(i64, Update)>)> {
    let content = serde_json::to_string(&new.content)?;
    let forwarded = new.forwarded_from.as_ref().map(serde_json::to_string).transpose()?;
    // Two statements rather than `RETURNING`, as in `updates::push_stored`.
    conn.prepare_cached("UPDATE chats SET last_seq = last_seq + 1, updated_at = ?2 WHERE id = ?1")?
        .execute(params![new.chat_id, new.sent_at])?;
    let seq: i64 =
        conn.prepare_cached("SELECT last_seq FROM chats WHERE id = ?1")?.query_row([new.chat_id], |r| r.get(0))?;
    insert_row(conn, new, seq, &content, forwarded.as_deref())?;
    // The sender has read everything up to their own message.
    conn.prepare_cached(
        "UPDATE members SET read_up_to = ?3, delivered_up_to = ?3 WHERE chat_id = ?1 AND user_id = ?2",
    )?
    .execute(params![new.chat_id, new.sender_id, seq])?;
    let message = Message { sender_address, ..new.stored(seq) };
    let updates = push_all(conn, notify, &Event::MessageNew { message: message.clone() }, new.sent_at)?;
    Ok((message, updates))
}

fn unread(conn: &Connection, chat_id: i64, user_id: i64, after: i64) -> StoreResult<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT COUNT(*) FROM messages m WHERE m.chat_id = ?1 AND m.seq > ?2 AND m.sender_id <> ?3 AND m.deleted = 0 \
             AND NOT EXISTS (SELECT 1 FROM hidden h WHERE h.user_id = ?3 AND h.chat_id = m.chat_id AND h.seq = m.seq)",
        )?
        .query_row(params![chat_id, after, user_id], |r| r.get(0))?)
}

fn chat_view(conn: &Connection, user_id: i64, chat_id: i64) -> StoreResult<Option<ChatView>> {
    let Some(chat) = chat(conn, chat_id)? else { return Ok(None) };
    let (mine, others): (Vec<_>, Vec<_>) = members(conn, chat_id)?.into_iter().partition(|m| m.user_id == user_id);
    let Some(me) = mine.into_iter().next() else { return Ok(None) };
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.chat_id = ?1 \
         AND NOT EXISTS (SELECT 1 FROM hidden h WHERE h.user_id = ?2 AND h.chat_id = m.chat_id AND h.seq = m.seq) \
         ORDER BY m.seq DESC LIMIT 1"
    );
    let last_message = messages(conn, &sql, params![chat_id, user_id])?.pop();
    let unread = unread(conn, chat_id, user_id, me.read_up_to)?;
    Ok(Some(ChatView { chat, me, others, last_message, unread }))
}

/// The key that makes a direct chat of two people unique, whoever opened it.
pub(super) fn direct_key(a: i64, b: i64) -> String {
    format!("{}:{}", a.min(b), a.max(b))
}

pub(super) fn find_direct(conn: &Connection, a: i64, b: i64) -> StoreResult<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT id FROM chats WHERE direct_key = ?1")?
        .query_row([direct_key(a, b)], |r| r.get(0))
        .optional()?)
}

/// A send in one step on the writer: membership, a retry, `reply_to`, the gate, the append.
fn local_send(conn: &Connection, new: NewMessage, gate: SendGate) -> StoreResult<SendOutcome> {
    let Some(context) = send_context(conn, new.chat_id, new.sender_id)? else {
        return Ok(SendOutcome::NotMember);
    };
    if context.members.iter().any(|m| m.remote_address.is_some()) {
        return Ok(SendOutcome::Remote { context, new });
    }
    if let Some(stored) = retried(conn, &new)? {
        return Ok(SendOutcome::Stored { message: stored, created: false, updates: Vec::new() });
    }
    if let Some(reply_to) = new.reply_to
        && !message_exists(conn, new.chat_id, reply_to)?
    {
        return Ok(SendOutcome::NoSuchReply);
    }
    if !gate(&context) {
        return Ok(SendOutcome::Refused(context));
    }
    let notify: Vec<i64> = context.members.iter().map(|m| m.user_id).collect();
    // A chat with a member on another messenger went back to the caller: the sender is here.
    let (message, updates) = insert_message(conn, &new, None, &notify)?;
    Ok(SendOutcome::Stored { message, created: true, updates })
}

#[async_trait]
impl ChatStore for SqliteStore {
    async fn direct_chat(&self, a: i64, b: i64) -> StoreResult<Option<i64>> {
        self.read(move |conn| find_direct(conn, a, b)).await
    }

    async fn open_direct_chat(&self, a: i64, b: i64, now: i64) -> StoreResult<(i64, bool)> {
        self.write(move |conn| {
            if let Some(id) = find_direct(conn, a, b)? {
                return Ok((id, false));
            }
            conn.prepare_cached(
                "INSERT INTO chats (kind, direct_key, created_at, updated_at) VALUES ('direct', ?1, ?2, ?2)",
            )?
            .execute(params![direct_key(a, b), now])?;
            let id = conn.last_insert_rowid();
            let mut stmt = conn.prepare_cached("INSERT OR IGNORE INTO members (chat_id, user_id) VALUES (?1, ?2)")?;
            for user in [a, b] {
                stmt.execute(params![id, user])?;
            }
            Ok((id, true))
        })
        .await
    }

    async fn members(&self, chat_id: i64) -> StoreResult<Vec<MemberRecord>> {
        self.read(move |conn| members(conn, chat_id)).await
    }

    async fn send_context(&self, chat_id: i64, sender: i64) -> StoreResult<Option<SendContext>> {
        self.read(move |conn| send_context(conn, chat_id, sender)).await
    }

    async fn chat_peers(&self, user_id: i64, limit: u32) -> StoreResult<Vec<i64>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT DISTINCT other.user_id FROM members me JOIN members other ON other.chat_id = me.chat_id \
                 WHERE me.user_id = ?1 AND other.user_id <> ?1 LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![user_id, limit], |r| r.get::<_, i64>(0))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn chats_of(&self, user_id: i64, limit: u32) -> StoreResult<Vec<ChatView>> {
        self.read(move |conn| {
            let ids = conn
                .prepare_cached(
                    "SELECT c.id FROM chats c JOIN members me ON me.chat_id = c.id AND me.user_id = ?1 \
                     ORDER BY c.updated_at DESC, c.id DESC LIMIT ?2",
                )?
                .query_map(params![user_id, limit], |r| r.get::<_, i64>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            let mut views = Vec::with_capacity(ids.len());
            for id in ids {
                views.extend(chat_view(conn, user_id, id)?);
            }
            Ok(views)
        })
        .await
    }

    async fn chat_view(&self, user_id: i64, chat_id: i64) -> StoreResult<Option<ChatView>> {
        self.read(move |conn| chat_view(conn, user_id, chat_id)).await
    }

    async fn append_message(
        &self,
        new: NewMessage,
        notify: Vec<i64>,
    ) -> StoreResult<(Message, bool, Vec<(i64, Update)>)> {
        self.write(move |conn| {
            if let Some(stored) = retried(conn, &new)? {
                return Ok((stored, false, Vec::new()));
            }
            let sender_address = remote_address_of(conn, new.sender_id)?;
            let (message, updates) = insert_message(conn, &new, sender_address, &notify)?;
            Ok((message, true, updates))
        })
        .await
    }

    async fn send_message(&self, new: NewMessage, gate: SendGate) -> StoreResult<SendOutcome> {
        self.send_message_placed(new, gate, Box::new(|| {})).await
    }

    /// One write job for the whole send: the checks read the writer's warm cache inside the
    /// same transaction as the append, instead of a read on the pool before it. The job makes
    /// every check before its first write, so it needs no savepoint of its own. The writer runs
    /// its jobs one at a time in the order they were queued, so the send's place is fixed once
    /// its job has run: `placed` is called then, before the batch's commit.
    async fn send_message_placed(&self, new: NewMessage, gate: SendGate, placed: Placed) -> StoreResult<SendOutcome> {
        // Every check comes before the first write.
        self.write_checked_first(move |conn| {
            let outcome = local_send(conn, new, gate)?;
            if !matches!(outcome, SendOutcome::Remote { .. }) {
                placed();
            }
            Ok(outcome)
        })
        .await
    }

    async fn message_by_client_id(
        &self,
        chat_id: i64,
        sender_id: i64,
        client_id: &str,
    ) -> StoreResult<Option<Message>> {
        let client_id = client_id.to_owned();
        self.read(move |conn| {
            let sql = format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.chat_id = ?1 AND m.sender_id = ?2 AND m.client_id = ?3"
            );
            Ok(messages(conn, &sql, params![chat_id, sender_id, client_id])?.pop())
        })
        .await
    }

    async fn message(&self, chat_id: i64, seq: i64) -> StoreResult<Option<Message>> {
        self.read(move |conn| message(conn, chat_id, seq)).await
    }

    async fn history(&self, viewer: i64, chat_id: i64, page: Page) -> StoreResult<Vec<Message>> {
        self.read(move |conn| {
            let hidden = "NOT EXISTS (SELECT 1 FROM hidden h WHERE h.user_id = ?2 AND h.chat_id = m.chat_id AND h.seq = m.seq)";
            let mut list = match page {
                Page::Before { seq, limit } => {
                    let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.chat_id = ?1 AND m.seq < ?3 AND {hidden} ORDER BY m.seq DESC LIMIT ?4");
                    let mut list = messages(conn, &sql, params![chat_id, viewer, seq, limit])?;
                    list.reverse();
                    list
                }
                Page::After { seq, limit } => {
                    let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.chat_id = ?1 AND m.seq > ?3 AND {hidden} ORDER BY m.seq ASC LIMIT ?4");
                    messages(conn, &sql, params![chat_id, viewer, seq, limit])?
                }
            };
            list.shrink_to_fit();
            Ok(list)
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
        self.write(move |conn| {
            let raw = serde_json::to_string(&content)?;
            let changed = conn.execute(
                "UPDATE messages SET content = ?3, folded = ?4, edited_at = ?5 WHERE chat_id = ?1 AND seq = ?2 AND deleted = 0",
                params![chat_id, seq, raw, folded, now],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound);
            }
            let message = message(conn, chat_id, seq)?.ok_or(StoreError::NotFound)?;
            let updates = push_all(conn, &notify, &Event::MessageEdited { message: message.clone() }, now)?;
            Ok((message, updates))
        })
        .await
    }

    async fn delete_message(
        &self,
        chat_id: i64,
        seq: i64,
        now: i64,
        notify: Vec<i64>,
    ) -> StoreResult<Vec<(i64, Update)>> {
        self.write(move |conn| {
            let raw = serde_json::to_string(&Content::Deleted)?;
            let changed = conn.execute(
                "UPDATE messages SET content = ?3, folded = '', deleted = 1 WHERE chat_id = ?1 AND seq = ?2 AND deleted = 0",
                params![chat_id, seq, raw],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound);
            }
            conn.execute("DELETE FROM reactions WHERE chat_id = ?1 AND seq = ?2", params![chat_id, seq])?;
            push_all(conn, &notify, &Event::MessagesDeleted { chat_id, seqs: vec![seq], for_everyone: true }, now)
        })
        .await
    }

    async fn hide_message(&self, user_id: i64, chat_id: i64, seq: i64, now: i64) -> StoreResult<Vec<(i64, Update)>> {
        self.write(move |conn| {
            if message(conn, chat_id, seq)?.is_none() {
                return Err(StoreError::NotFound);
            }
            conn.execute(
                "INSERT OR IGNORE INTO hidden (user_id, chat_id, seq) VALUES (?1, ?2, ?3)",
                params![user_id, chat_id, seq],
            )?;
            push_all(conn, &[user_id], &Event::MessagesDeleted { chat_id, seqs: vec![seq], for_everyone: false }, now)
        })
        .await
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
        self.write(move |conn| {
            let alive = conn
                .prepare_cached("SELECT 1 FROM messages WHERE chat_id = ?1 AND seq = ?2 AND deleted = 0")?
                .exists(params![chat_id, seq])?;
            if !alive {
                return Err(StoreError::NotFound);
            }
            match &emoji {
                Some(e) => conn.execute(
                    "INSERT OR REPLACE INTO reactions (chat_id, seq, user_id, emoji) VALUES (?1, ?2, ?3, ?4)",
                    params![chat_id, seq, user_id, e],
                )?,
                None => conn.execute(
                    "DELETE FROM reactions WHERE chat_id = ?1 AND seq = ?2 AND user_id = ?3",
                    params![chat_id, seq, user_id],
                )?,
            };
            let list = reactions(conn, chat_id, seq)?;
            let updates =
                push_all(conn, &notify, &Event::ReactionsChanged { chat_id, seq, reactions: list.clone() }, now)?;
            Ok((list, updates))
        })
        .await
    }

    async fn mark_read(
        &self,
        chat_id: i64,
        user_id: i64,
        up_to: i64,
        now: i64,
        notify: Vec<i64>,
    ) -> StoreResult<Vec<(i64, Update)>> {
        self.write(move |conn| {
            let up_to = clamp_to_last_seq(conn, chat_id, up_to)?;
            let changed = conn.execute(
                "UPDATE members SET read_up_to = ?3, delivered_up_to = MAX(delivered_up_to, ?3) WHERE chat_id = ?1 AND user_id = ?2 AND read_up_to < ?3",
                params![chat_id, user_id, up_to],
            )?;
            if changed == 0 {
                return Ok(Vec::new());
            }
            let left = unread(conn, chat_id, user_id, up_to)?;
            let mut updates = push_all(conn, &[user_id], &Event::ReadByMe { chat_id, up_to, unread: left }, now)?;
            updates.extend(push_all(conn, &notify, &Event::Read { chat_id, user_id, up_to }, now)?);
            Ok(updates)
        })
        .await
    }

    async fn mark_delivered(
        &self,
        chat_id: i64,
        user_id: i64,
        up_to: i64,
        now: i64,
        notify: Vec<i64>,
    ) -> StoreResult<Vec<(i64, Update)>> {
        self.write(move |conn| {
            let up_to = clamp_to_last_seq(conn, chat_id, up_to)?;
            let changed = conn.execute(
                "UPDATE members SET delivered_up_to = ?3 WHERE chat_id = ?1 AND user_id = ?2 AND delivered_up_to < ?3",
                params![chat_id, user_id, up_to],
            )?;
            if changed == 0 {
                return Ok(Vec::new());
            }
            push_all(conn, &notify, &Event::Delivered { chat_id, user_id, up_to }, now)
        })
        .await
    }

    async fn search_messages(&self, viewer: i64, folded_query: &str, limit: u32) -> StoreResult<Vec<Message>> {
        // SQLite's LIKE stops at a NUL, so `%\0%` would match every message.
        if folded_query.is_empty() || folded_query.contains('\0') {
            return Ok(Vec::new());
        }
        let pattern = like_pattern(folded_query);
        self.read(move |conn| {
            let sql = format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN members me ON me.chat_id = m.chat_id AND me.user_id = ?1 \
                 WHERE m.deleted = 0 AND m.folded LIKE ?2 ESCAPE '\\' \
                 AND NOT EXISTS (SELECT 1 FROM hidden h WHERE h.user_id = ?1 AND h.chat_id = m.chat_id AND h.seq = m.seq) \
                 ORDER BY m.sent_at DESC LIMIT ?3"
            );
            messages(conn, &sql, params![viewer, pattern, limit])
        })
        .await
    }
}

/// Receipts may not point past the end of the chat.
fn clamp_to_last_seq(conn: &Connection, chat_id: i64, up_to: i64) -> StoreResult<i64> {
    let last: i64 = conn
        .prepare_cached("SELECT last_seq FROM chats WHERE id = ?1")?
        .query_row([chat_id], |r| r.get(0))
        .optional()?
        .ok_or(StoreError::NotFound)?;
    Ok(up_to.clamp(0, last))
}
