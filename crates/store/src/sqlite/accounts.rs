//! Accounts, sign-in codes, sessions, contacts, blocks and rate-limit counters.

use async_trait::async_trait;
use peyvand_api::PrivacySettings;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{SqliteStore, json};
use crate::{AccountStore, CodeRecord, LimitStore, ProfileChange, SessionRecord, StoreError, StoreResult, UserRecord};

pub(super) const USER_COLUMNS: &str =
    "id, phone, display_name, username, bio, pin_hash, privacy, created_at, last_seen, deleted, remote_address";

pub(super) fn user_from_row(row: &Row<'_>) -> rusqlite::Result<(UserRecord, String)> {
    let privacy: String = row.get(6)?;
    Ok((
        UserRecord {
            id: row.get(0)?,
            phone: row.get(1)?,
            display_name: row.get(2)?,
            username: row.get(3)?,
            bio: row.get(4)?,
            pin_hash: row.get(5)?,
            privacy: PrivacySettings::default(),
            created_at: row.get(7)?,
            last_seen: row.get(8)?,
            deleted: row.get(9)?,
            remote_address: row.get(10)?,
        },
        privacy,
    ))
}

fn finish_user((mut user, privacy): (UserRecord, String)) -> StoreResult<UserRecord> {
    user.privacy = json(&privacy)?;
    Ok(user)
}

pub(super) fn query_user(
    conn: &Connection,
    clause: &str,
    param: &dyn rusqlite::ToSql,
) -> StoreResult<Option<UserRecord>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE {clause}");
    conn.prepare_cached(&sql)?.query_row([param], user_from_row).optional()?.map(finish_user).transpose()
}

fn query_users(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> StoreResult<Vec<UserRecord>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, user_from_row)?;
    rows.map(|r| finish_user(r?)).collect()
}

fn code_from_row(row: &Row<'_>) -> rusqlite::Result<CodeRecord> {
    Ok(CodeRecord { phone: row.get(0)?, code_hash: row.get(1)?, expires_at: row.get(2)?, attempts: row.get(3)? })
}

fn session_from_row(row: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        id: row.get(0)?,
        user_id: row.get(1)?,
        name: row.get(2)?,
        created_at: row.get(3)?,
        last_active: row.get(4)?,
    })
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn user_by_phone_or_create(&self, phone: &str, now: i64) -> StoreResult<(UserRecord, bool)> {
        let phone = phone.to_owned();
        self.write(move |conn| {
            if let Some(user) = query_user(conn, "phone = ?1", &phone)? {
                return Ok((user, false));
            }
            let privacy = serde_json::to_string(&PrivacySettings::default())?;
            conn.prepare_cached("INSERT INTO users (phone, privacy, created_at) VALUES (?1, ?2, ?3)")?
                .execute(params![phone, privacy, now])?;
            let id = conn.last_insert_rowid();
            let user = query_user(conn, "id = ?1", &id)?.ok_or(StoreError::NotFound)?;
            Ok((user, true))
        })
        .await
    }

    async fn user_by_phone(&self, phone: &str) -> StoreResult<Option<UserRecord>> {
        let phone = phone.to_owned();
        self.read(move |conn| query_user(conn, "phone = ?1", &phone)).await
    }

    async fn user(&self, id: i64) -> StoreResult<Option<UserRecord>> {
        self.read(move |conn| query_user(conn, "id = ?1", &id)).await
    }

    async fn user_by_username(&self, folded_username: &str) -> StoreResult<Option<UserRecord>> {
        let folded = folded_username.to_owned();
        self.read(move |conn| query_user(conn, "username_folded = ?1", &folded)).await
    }

    async fn search_users(&self, folded_query: &str, limit: u32) -> StoreResult<Vec<UserRecord>> {
        // SQLite's LIKE stops at a NUL, so `%\0%` would match every name.
        if folded_query.is_empty() || folded_query.contains('\0') {
            return Ok(Vec::new());
        }
        let pattern = like_pattern(folded_query);
        self.read(move |conn| {
            let sql = format!(
                "SELECT {USER_COLUMNS} FROM users WHERE deleted = 0 AND remote_address IS NULL AND (name_folded LIKE ?1 ESCAPE '\\' OR username_folded LIKE ?1 ESCAPE '\\') ORDER BY id LIMIT ?2"
            );
            query_users(conn, &sql, params![pattern, limit])
        })
        .await
    }

    async fn update_profile(&self, id: i64, change: ProfileChange) -> StoreResult<UserRecord> {
        self.write(move |conn| {
            if let Some((name, folded)) = &change.display_name {
                conn.execute(
                    "UPDATE users SET display_name = ?1, name_folded = ?2 WHERE id = ?3",
                    params![name, folded, id],
                )?;
            }
            if let Some(username) = &change.username {
                let (name, folded) = match username {
                    Some((n, f)) => (Some(n.as_str()), Some(f.as_str())),
                    None => (None, None),
                };
                conn.execute(
                    "UPDATE users SET username = ?1, username_folded = ?2 WHERE id = ?3",
                    params![name, folded, id],
                )
                .map_err(|e| if is_unique_violation(&e) { StoreError::UsernameTaken } else { e.into() })?;
            }
            if let Some(bio) = &change.bio {
                conn.execute("UPDATE users SET bio = ?1 WHERE id = ?2", params![bio, id])?;
            }
            query_user(conn, "id = ?1 AND deleted = 0", &id)?.ok_or(StoreError::NotFound)
        })
        .await
    }

    async fn set_privacy(&self, id: i64, privacy: PrivacySettings) -> StoreResult<()> {
        let raw = serde_json::to_string(&privacy)?;
        self.write(move |conn| {
            conn.execute("UPDATE users SET privacy = ?1 WHERE id = ?2", params![raw, id])?;
            Ok(())
        })
        .await
    }

    async fn set_pin_hash(&self, id: i64, pin_hash: Option<String>) -> StoreResult<()> {
        self.write(move |conn| {
            conn.execute("UPDATE users SET pin_hash = ?1 WHERE id = ?2", params![pin_hash, id])?;
            Ok(())
        })
        .await
    }

    async fn set_last_seen(&self, id: i64, at: i64) -> StoreResult<()> {
        self.write(move |conn| {
            conn.prepare_cached("UPDATE users SET last_seen = ?1 WHERE id = ?2 AND deleted = 0")?
                .execute(params![at, id])?;
            Ok(())
        })
        .await
    }

    async fn delete_user(&self, id: i64) -> StoreResult<()> {
        self.write(move |conn| {
            conn.execute(
                "UPDATE users SET phone = NULL, display_name = '', name_folded = '', username = NULL, \
                 username_folded = NULL, bio = '', pin_hash = NULL, last_seen = NULL, deleted = 1, \
                 remote_address = NULL WHERE id = ?1",
                [id],
            )?;
            for sql in [
                "DELETE FROM sessions WHERE user_id = ?1",
                "DELETE FROM contacts WHERE owner_id = ?1",
                "DELETE FROM blocks WHERE owner_id = ?1 OR target_id = ?1",
                "DELETE FROM hidden WHERE user_id = ?1",
                "DELETE FROM reactions WHERE user_id = ?1",
                "DELETE FROM updates WHERE user_id = ?1",
                "DELETE FROM presence WHERE user_id = ?1",
                // Their media items go (the blobs of messages they sent stay with the
                // messages); their uploads expire now, so the sweeper removes their bytes.
                "DELETE FROM media_items WHERE owner = ?1",
                "UPDATE uploads SET expires_at = 0 WHERE owner = ?1",
            ] {
                conn.execute(sql, [id])?;
            }
            Ok(())
        })
        .await
    }

    async fn put_code(&self, code: CodeRecord) -> StoreResult<()> {
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO codes (phone, code_hash, expires_at, attempts) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![code.phone, code.code_hash, code.expires_at, code.attempts])?;
            Ok(())
        })
        .await
    }

    async fn code(&self, phone: &str) -> StoreResult<Option<CodeRecord>> {
        let phone = phone.to_owned();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT phone, code_hash, expires_at, attempts FROM codes WHERE phone = ?1")?
                .query_row([phone], code_from_row)
                .optional()?)
        })
        .await
    }

    async fn attempt_code(&self, phone: &str, max_attempts: u32) -> StoreResult<Option<CodeRecord>> {
        let phone = phone.to_owned();
        self.write(move |conn| {
            Ok(conn
                .prepare_cached(
                    "UPDATE codes SET attempts = attempts + 1 WHERE phone = ?1 AND attempts < ?2 \
                     RETURNING phone, code_hash, expires_at, attempts",
                )?
                .query_row(params![phone, max_attempts], code_from_row)
                .optional()?)
        })
        .await
    }

    async fn take_code(&self, phone: &str) -> StoreResult<bool> {
        let phone = phone.to_owned();
        self.write(move |conn| Ok(conn.prepare_cached("DELETE FROM codes WHERE phone = ?1")?.execute([phone])? > 0))
            .await
    }

    async fn create_session(
        &self,
        user_id: i64,
        name: &str,
        token_hash: &[u8],
        now: i64,
    ) -> StoreResult<SessionRecord> {
        let (name, token_hash) = (name.to_owned(), token_hash.to_vec());
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO sessions (user_id, name, token_hash, created_at, last_active) VALUES (?1, ?2, ?3, ?4, ?4)",
            )?
            .execute(params![user_id, name, token_hash, now])?;
            Ok(SessionRecord { id: conn.last_insert_rowid(), user_id, name, created_at: now, last_active: now })
        })
        .await
    }

    async fn session_by_token(&self, token_hash: &[u8]) -> StoreResult<Option<SessionRecord>> {
        let token_hash = token_hash.to_vec();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT id, user_id, name, created_at, last_active FROM sessions WHERE token_hash = ?1",
                )?
                .query_row([token_hash], session_from_row)
                .optional()?)
        })
        .await
    }

    async fn touch_session(&self, id: i64, now: i64) -> StoreResult<()> {
        self.write(move |conn| {
            conn.prepare_cached("UPDATE sessions SET last_active = ?1 WHERE id = ?2")?.execute(params![now, id])?;
            Ok(())
        })
        .await
    }

    async fn sessions(&self, user_id: i64) -> StoreResult<Vec<SessionRecord>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, user_id, name, created_at, last_active FROM sessions WHERE user_id = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map([user_id], session_from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn revoke_session(&self, user_id: i64, session_id: i64) -> StoreResult<bool> {
        self.write(move |conn| {
            Ok(conn.execute("DELETE FROM sessions WHERE id = ?1 AND user_id = ?2", params![session_id, user_id])? > 0)
        })
        .await
    }

    async fn revoke_all_sessions(&self, user_id: i64) -> StoreResult<()> {
        self.write(move |conn| {
            conn.execute("DELETE FROM sessions WHERE user_id = ?1", [user_id])?;
            Ok(())
        })
        .await
    }

    async fn add_contacts(&self, owner: i64, phones: &[String]) -> StoreResult<()> {
        let phones = phones.to_vec();
        self.write(move |conn| {
            let mut stmt = conn.prepare_cached("INSERT OR IGNORE INTO contacts (owner_id, phone) VALUES (?1, ?2)")?;
            for phone in &phones {
                stmt.execute(params![owner, phone])?;
            }
            Ok(())
        })
        .await
    }

    async fn remove_contact(&self, owner: i64, phone: &str) -> StoreResult<()> {
        let phone = phone.to_owned();
        self.write(move |conn| {
            conn.execute("DELETE FROM contacts WHERE owner_id = ?1 AND phone = ?2", params![owner, phone])?;
            Ok(())
        })
        .await
    }

    async fn contacts(&self, owner: i64) -> StoreResult<Vec<UserRecord>> {
        self.read(move |conn| {
            let sql = format!(
                "SELECT {} FROM users u JOIN contacts c ON c.phone = u.phone WHERE c.owner_id = ?1 AND u.deleted = 0 ORDER BY u.id",
                prefixed_user_columns()
            );
            query_users(conn, &sql, [owner])
        })
        .await
    }

    async fn has_contact(&self, owner: i64, other: i64) -> StoreResult<bool> {
        self.read(move |conn| has_contact(conn, owner, other)).await
    }

    async fn has_contact_phone(&self, owner: i64, phone: &str) -> StoreResult<bool> {
        let phone = phone.to_owned();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT 1 FROM contacts WHERE owner_id = ?1 AND phone = ?2")?
                .exists(params![owner, phone])?)
        })
        .await
    }

    async fn set_blocked(&self, owner: i64, target: i64, blocked: bool) -> StoreResult<()> {
        self.write(move |conn| {
            let sql = if blocked {
                "INSERT OR IGNORE INTO blocks (owner_id, target_id) VALUES (?1, ?2)"
            } else {
                "DELETE FROM blocks WHERE owner_id = ?1 AND target_id = ?2"
            };
            conn.execute(sql, params![owner, target])?;
            Ok(())
        })
        .await
    }

    async fn is_blocked(&self, owner: i64, target: i64) -> StoreResult<bool> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT 1 FROM blocks WHERE owner_id = ?1 AND target_id = ?2")?
                .exists(params![owner, target])?)
        })
        .await
    }

    async fn blocked(&self, owner: i64) -> StoreResult<Vec<UserRecord>> {
        self.read(move |conn| {
            let sql = format!(
                "SELECT {} FROM users u JOIN blocks b ON b.target_id = u.id WHERE b.owner_id = ?1 ORDER BY u.id",
                prefixed_user_columns()
            );
            query_users(conn, &sql, [owner])
        })
        .await
    }
}

fn prefixed_user_columns() -> String {
    USER_COLUMNS.split(", ").map(|c| format!("u.{c}")).collect::<Vec<_>>().join(", ")
}

pub(super) fn has_contact(conn: &Connection, owner: i64, other: i64) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM users u JOIN contacts c ON c.owner_id = ?1 AND c.phone = \
             COALESCE(u.phone, substr(u.remote_address, 1, instr(u.remote_address, '@') - 1)) WHERE u.id = ?2",
        )?
        .exists(params![owner, other])?)
}

/// A LIKE pattern matching `text` anywhere, with LIKE's wildcards escaped.
pub(super) fn like_pattern(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

#[async_trait]
impl LimitStore for SqliteStore {
    async fn hit(&self, key: &str, window_ms: i64, limit: u32, cost: u32, now: i64) -> StoreResult<Result<u32, i64>> {
        let key = key.to_owned();
        let window_start = now - now.rem_euclid(window_ms.max(1));
        self.write(move |conn| {
            let count: u32 = conn
                .prepare_cached(
                    "INSERT INTO limits (key, window_start, count) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (key) DO UPDATE SET \
                       count = CASE WHEN window_start = excluded.window_start THEN count + ?3 ELSE ?3 END, \
                       window_start = excluded.window_start \
                     RETURNING count",
                )?
                .query_row(params![key, window_start, cost], |r| r.get(0))?;
            if count > limit { Ok(Err(window_start + window_ms - now)) } else { Ok(Ok(count)) }
        })
        .await
    }
}
