//! Each person's update stream.

use async_trait::async_trait;
use peyvand_api::{Event, Update};
use rusqlite::{Connection, OptionalExtension, params};

use super::{SqliteStore, json};
use crate::{StoreError, StoreResult, UpdateStore};

/// Appends an event, already serialised as `raw`, to a user's stream inside the caller's
/// transaction. Returns the new cursor, or `None` for a deleted account (which has no stream).
fn push_raw(conn: &Connection, user_id: i64, raw: &str, now: i64) -> StoreResult<Option<i64>> {
    let cursor: Option<i64> = conn
        .prepare_cached(
            "UPDATE users SET update_cursor = update_cursor + 1 WHERE id = ?1 AND deleted = 0 RETURNING update_cursor",
        )?
        .query_row([user_id], |r| r.get(0))
        .optional()?;
    if let Some(cursor) = cursor {
        conn.prepare_cached("INSERT INTO updates (user_id, cursor, at, event) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![user_id, cursor, now, raw])?;
    }
    Ok(cursor)
}

/// Appends one update to a user's stream inside the caller's transaction.
pub(super) fn push(conn: &Connection, user_id: i64, event: Event, now: i64) -> StoreResult<Update> {
    let cursor = push_raw(conn, user_id, &serde_json::to_string(&event)?, now)?;
    Ok(Update { cursor, at: now, event })
}

/// Appends the same event to several users' streams, returning what to publish. The event is
/// serialised once: this runs on the writer thread, for every message.
pub(super) fn push_all(conn: &Connection, users: &[i64], event: &Event, now: i64) -> StoreResult<Vec<(i64, Update)>> {
    let raw = serde_json::to_string(event)?;
    let mut out = Vec::with_capacity(users.len());
    for &user in users {
        if let Some(cursor) = push_raw(conn, user, &raw, now)? {
            out.push((user, Update { cursor: Some(cursor), at: now, event: event.clone() }));
        }
    }
    Ok(out)
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
            let mut stmt = conn.prepare_cached(
                "SELECT cursor, at, event FROM updates WHERE user_id = ?1 AND cursor > ?2 ORDER BY cursor LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![user_id, after, limit], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?))
            })?;
            rows.map(|row| {
                let (cursor, at, raw) = row?;
                Ok(Update { cursor: Some(cursor), at, event: json(&raw)? })
            })
            .collect()
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
