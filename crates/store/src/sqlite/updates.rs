//! Each person's update stream.

use async_trait::async_trait;
use peyvand_api::{Event, Update};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::chats::{MESSAGE_COLUMNS, finish_message, message_from_row_at};
use super::{SqliteStore, json};
use crate::{StoreError, StoreResult, UpdateStore};

/// What an update's row holds: a new message by reference to its row in `messages`, which
/// the message's every recipient shares, or any other event as JSON.
enum Stored {
    Message { chat_id: i64, seq: i64 },
    Json(String),
}

impl Stored {
    /// Serialises the event once, for all the streams it goes to; a new message not at all.
    fn of(event: &Event) -> StoreResult<Stored> {
        Ok(match event {
            Event::MessageNew { message } => Stored::Message { chat_id: message.chat_id, seq: message.seq },
            other => Stored::Json(serde_json::to_string(other)?),
        })
    }
}

/// Appends an update to a user's stream inside the caller's transaction. Returns the new
/// cursor, or `None` for a deleted account (which has no stream).
fn push_stored(conn: &Connection, user_id: i64, stored: &Stored, now: i64) -> StoreResult<Option<i64>> {
    // Not `RETURNING`: SQLite gathers returned rows in an ephemeral table, a page cache of its
    // own opened and dropped by every statement, which showed in the writer's profile.
    let bumped = conn
        .prepare_cached("UPDATE users SET update_cursor = update_cursor + 1 WHERE id = ?1 AND deleted = 0")?
        .execute([user_id])?;
    if bumped == 0 {
        return Ok(None);
    }
    let cursor: i64 =
        conn.prepare_cached("SELECT update_cursor FROM users WHERE id = ?1")?.query_row([user_id], |r| r.get(0))?;
    match stored {
        Stored::Message { chat_id, seq } => conn
            .prepare_cached("INSERT INTO updates (user_id, cursor, at, chat_id, seq) VALUES (?1, ?2, ?3, ?4, ?5)")?
            .execute(params![user_id, cursor, now, chat_id, seq])?,
        Stored::Json(raw) => conn
            .prepare_cached("INSERT INTO updates (user_id, cursor, at, event) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![user_id, cursor, now, raw])?,
    };
    Ok(Some(cursor))
}

/// Appends one update to a user's stream inside the caller's transaction.
pub(super) fn push(conn: &Connection, user_id: i64, event: Event, now: i64) -> StoreResult<Update> {
    let cursor = push_stored(conn, user_id, &Stored::of(&event)?, now)?;
    Ok(Update { cursor, at: now, event })
}

/// Appends the same event to several users' streams, returning what to publish. This runs on
/// the writer thread, for every message.
pub(super) fn push_all(conn: &Connection, users: &[i64], event: &Event, now: i64) -> StoreResult<Vec<(i64, Update)>> {
    let stored = Stored::of(event)?;
    let mut out = Vec::with_capacity(users.len());
    for &user in users {
        if let Some(cursor) = push_stored(conn, user, &stored, now)? {
            out.push((user, Update { cursor: Some(cursor), at: now, event: event.clone() }));
        }
    }
    Ok(out)
}

/// Reads one row of [`updates_after`]'s query: a new message from its `messages` columns as
/// they are now, anything else from its JSON.
fn update_from_row(conn: &Connection, row: &Row<'_>) -> StoreResult<Update> {
    let (cursor, at): (i64, i64) = (row.get(0)?, row.get(1)?);
    let event = match row.get::<_, Option<String>>(2)? {
        Some(raw) => json(&raw)?,
        None => {
            if row.get::<_, Option<i64>>(3)?.is_none() {
                return Err(StoreError::Backend(format!("update {cursor} refers to a message that is not stored")));
            }
            Event::MessageNew { message: finish_message(conn, message_from_row_at(row, 3)?)? }
        }
    };
    Ok(Update { cursor: Some(cursor), at, event })
}

#[async_trait]
impl UpdateStore for SqliteStore {
    async fn updates_after(&self, user_id: i64, after: i64, limit: u32) -> StoreResult<Vec<Update>> {
        self.read(move |conn| {
            let (pruned, newest): (i64, i64) = conn
                .prepare_cached("SELECT pruned_through, update_cursor FROM users WHERE id = ?1")?
                .query_row([user_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?
                .unwrap_or((0, 0));
            if after < pruned {
                return Err(StoreError::CursorTooOld { oldest_kept: pruned });
            }
            if after > newest {
                return Err(StoreError::CursorAhead { newest });
            }
            let sql = format!(
                "SELECT u.cursor, u.at, u.event, {MESSAGE_COLUMNS} FROM updates u \
                 LEFT JOIN messages m ON u.event IS NULL AND m.chat_id = u.chat_id AND m.seq = u.seq \
                 WHERE u.user_id = ?1 AND u.cursor > ?2 ORDER BY u.cursor LIMIT ?3"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut rows = stmt.query(params![user_id, after, limit])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(update_from_row(conn, row)?);
            }
            Ok(out)
        })
        .await
    }

    async fn cursor(&self, user_id: i64) -> StoreResult<i64> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT update_cursor FROM users WHERE id = ?1")?
                .query_row([user_id], |r| r.get(0))
                .optional()?
                .unwrap_or(0))
        })
        .await
    }

    async fn prune_updates(&self, before: i64, keep_last: i64) -> StoreResult<u64> {
        self.write(move |conn| {
            let deleted = conn.execute(
                "DELETE FROM updates WHERE at < ?1 AND cursor <= (SELECT update_cursor FROM users WHERE users.id = updates.user_id) - ?2",
                params![before, keep_last],
            )?;
            conn.execute(
                "UPDATE users SET pruned_through = COALESCE((SELECT MIN(cursor) - 1 FROM updates WHERE updates.user_id = users.id), update_cursor) \
                 WHERE pruned_through < update_cursor",
                [],
            )?;
            Ok(deleted as u64)
        })
        .await
    }

    async fn append_update(&self, user_id: i64, event: Event, now: i64) -> StoreResult<Update> {
        self.write(move |conn| push(conn, user_id, event, now)).await
    }
}
