//! Accounts, sign-in codes, sessions, contacts, blocks and rate-limit counters.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use peyvand_api::PrivacySettings;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{Attempt, Failure, PgStore, big, is_unique_violation, json, like_pattern, once, retry};
use crate::{AccountStore, CodeRecord, LimitStore, ProfileChange, SessionRecord, StoreError, StoreResult, UserRecord};

pub(super) const USER_COLUMNS: &str = "u.id, u.phone, u.display_name, u.username, u.bio, u.pin_hash, u.privacy, \
     u.created_at, u.last_seen, u.deleted, u.remote_address";
const CODE_COLUMNS: &str = "phone, code_hash, expires_at, attempts";
const SESSION_COLUMNS: &str = "id, user_id, name, created_at, last_active";

fn user_from_row(row: &Row) -> Attempt<UserRecord> {
    Ok(UserRecord {
        id: row.try_get(0)?,
        phone: row.try_get(1)?,
        display_name: row.try_get(2)?,
        username: row.try_get(3)?,
        bio: row.try_get(4)?,
        pin_hash: row.try_get(5)?,
        privacy: json(row.try_get(6)?)?,
        created_at: row.try_get(7)?,
        last_seen: row.try_get(8)?,
        deleted: row.try_get(9)?,
        remote_address: row.try_get(10)?,
    })
}

fn code_from_row(row: &Row) -> Attempt<CodeRecord> {
    let attempts: i64 = row.try_get(3)?;
    Ok(CodeRecord {
        phone: row.try_get(0)?,
        code_hash: row.try_get(1)?,
        expires_at: row.try_get(2)?,
        attempts: u32::try_from(attempts)
            .map_err(|_| StoreError::Backend(format!("a code has {attempts} attempts, out of range")))?,
    })
}

fn session_from_row(row: &Row) -> Attempt<SessionRecord> {
    Ok(SessionRecord {
        id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        name: row.try_get(2)?,
        created_at: row.try_get(3)?,
        last_active: row.try_get(4)?,
    })
}

/// The users a query over `users u` returns, in its order.
pub(super) async fn query_users(
    db: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Attempt<Vec<UserRecord>> {
    let statement = db.prepare_cached(sql).await?;
    db.query(&statement, params).await?.iter().map(user_from_row).collect()
}

/// The user a `WHERE` clause over `users u` selects, if any.
pub(super) async fn query_user(
    db: &impl GenericClient,
    clause: &str,
    param: &(dyn ToSql + Sync),
) -> Attempt<Option<UserRecord>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users u WHERE {clause}");
    Ok(query_users(db, &sql, &[param]).await?.pop())
}

async fn execute(db: &impl GenericClient, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Attempt<u64> {
    let statement = db.prepare_cached(sql).await?;
    Ok(db.execute(&statement, params).await?)
}

/// Finds the account of a phone number, or creates it. The unique phone number decides a race
/// between two first sign-ins: the loser's insert does nothing, and it reads the winner's
/// account.
async fn user_by_phone_or_create(store: &PgStore, phone: &str, now: i64) -> Attempt<(UserRecord, bool)> {
    let client = store.client().await?;
    let privacy = serde_json::to_string(&PrivacySettings::default())?;
    // One statement creates the account and its stream, so neither exists without the other.
    let create = format!(
        "WITH u AS ( \
             INSERT INTO users (phone, privacy, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (phone) DO NOTHING RETURNING * \
         ), stream AS (INSERT INTO streams (user_id) SELECT id FROM u) \
         SELECT {USER_COLUMNS} FROM u"
    );
    // A second round is needed only if the account that won the race was deleted before it
    // could be read, which frees the number again.
    for _ in 0..3 {
        if let Some(user) = query_user(&client, "u.phone = $1", &phone).await? {
            return Ok((user, false));
        }
        if let Some(user) = query_users(&client, &create, &[&phone, &privacy, &now]).await?.pop() {
            return Ok((user, true));
        }
    }
    Err(StoreError::Backend("an account kept changing while it was being created".into()).into())
}

async fn update_profile(store: &PgStore, id: i64, change: &ProfileChange) -> Attempt<UserRecord> {
    let client = store.client().await?;
    let (name, name_folded) = match &change.display_name {
        Some((name, folded)) => (Some(name.as_str()), Some(folded.as_str())),
        None => (None, None),
    };
    let (username, username_folded) = match &change.username {
        Some(Some((name, folded))) => (Some(name.as_str()), Some(folded.as_str())),
        _ => (None, None),
    };
    // One statement, so a taken username leaves the other fields unchanged too. A deleted
    // account is not changed at all.
    let sql = format!(
        "UPDATE users u SET \
             display_name = CASE WHEN $2 THEN $3 ELSE display_name END, \
             name_folded = CASE WHEN $2 THEN $4 ELSE name_folded END, \
             username = CASE WHEN $5 THEN $6 ELSE username END, \
             username_folded = CASE WHEN $5 THEN $7 ELSE username_folded END, \
             bio = COALESCE($8, bio) \
         WHERE id = $1 AND NOT deleted RETURNING {USER_COLUMNS}"
    );
    let params: [&(dyn ToSql + Sync); 8] = [
        &id,
        &change.display_name.is_some(),
        &name,
        &name_folded,
        &change.username.is_some(),
        &username,
        &username_folded,
        &change.bio,
    ];
    match query_users(&client, &sql, &params).await {
        Ok(mut users) => users.pop().ok_or(StoreError::NotFound.into()),
        Err(Failure::Db(e)) if is_unique_violation(&e) => Err(StoreError::UsernameTaken.into()),
        Err(e) => Err(e),
    }
}

/// Erases a person (see ARCHITECTURE.md for what stays) in one transaction.
async fn delete_user(store: &PgStore, id: i64) -> Attempt<()> {
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    // Rows under a chat's messages first, then the stream: the lock order of every write
    // (a reaction locks its message and reaction rows before the streams it appends to).
    for sql in ["DELETE FROM hidden WHERE user_id = $1", "DELETE FROM reactions WHERE user_id = $1"] {
        execute(&tx, sql, &[&id]).await?;
    }
    // The stream is closed before it is emptied: a write that appends to it waits for this
    // transaction and then finds it closed, so no update lands after the stream is emptied.
    execute(&tx, "UPDATE streams SET closed = true, pruned_through = cursor WHERE user_id = $1", &[&id]).await?;
    execute(
        &tx,
        "UPDATE users SET phone = NULL, display_name = '', name_folded = '', username = NULL, \
         username_folded = NULL, bio = '', pin_hash = NULL, last_seen = NULL, deleted = true, \
         remote_address = NULL WHERE id = $1",
        &[&id],
    )
    .await?;
    for sql in [
        "DELETE FROM updates WHERE user_id = $1",
        "DELETE FROM sessions WHERE user_id = $1",
        "DELETE FROM contacts WHERE owner_id = $1",
        "DELETE FROM blocks WHERE owner_id = $1 OR target_id = $1",
        "DELETE FROM presence WHERE user_id = $1",
        // Their media items go (the blobs of messages they sent stay with the messages);
        // their uploads expire now, so the sweeper removes their bytes.
        "DELETE FROM media_items WHERE owner = $1",
        "UPDATE uploads SET expires_at = 0 WHERE owner = $1",
    ] {
        execute(&tx, sql, &[&id]).await?;
    }
    tx.commit().await?;
    Ok(())
}

#[async_trait]
impl AccountStore for PgStore {
    async fn user_by_phone_or_create(&self, phone: &str, now: i64) -> StoreResult<(UserRecord, bool)> {
        retry(|| user_by_phone_or_create(self, phone, now)).await
    }

    async fn user_by_phone(&self, phone: &str) -> StoreResult<Option<UserRecord>> {
        once(async { query_user(&self.client().await?, "u.phone = $1", &phone).await }).await
    }

    async fn user(&self, id: i64) -> StoreResult<Option<UserRecord>> {
        once(async { query_user(&self.client().await?, "u.id = $1", &id).await }).await
    }

    async fn user_by_username(&self, folded_username: &str) -> StoreResult<Option<UserRecord>> {
        once(async { query_user(&self.client().await?, "u.username_folded = $1", &folded_username).await }).await
    }

    async fn search_users(&self, folded_query: &str, limit: u32) -> StoreResult<Vec<UserRecord>> {
        // PostgreSQL text cannot hold NUL, so no stored name contains one.
        if folded_query.is_empty() || folded_query.contains('\0') {
            return Ok(Vec::new());
        }
        let pattern = like_pattern(folded_query);
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE NOT u.deleted AND u.remote_address IS NULL \
             AND (u.name_folded LIKE $1 ESCAPE '\\' OR u.username_folded LIKE $1 ESCAPE '\\') ORDER BY u.id LIMIT $2"
        );
        once(async { query_users(&self.client().await?, &sql, &[&pattern, &big(limit)]).await }).await
    }

    async fn update_profile(&self, id: i64, change: ProfileChange) -> StoreResult<UserRecord> {
        retry(|| update_profile(self, id, &change)).await
    }

    async fn set_privacy(&self, id: i64, privacy: PrivacySettings) -> StoreResult<()> {
        let raw = serde_json::to_string(&privacy)?;
        retry(|| async {
            execute(&self.client().await?, "UPDATE users SET privacy = $2 WHERE id = $1", &[&id, &raw]).await?;
            Ok(())
        })
        .await
    }

    async fn set_pin_hash(&self, id: i64, pin_hash: Option<String>) -> StoreResult<()> {
        retry(|| async {
            execute(&self.client().await?, "UPDATE users SET pin_hash = $2 WHERE id = $1", &[&id, &pin_hash]).await?;
            Ok(())
        })
        .await
    }

    async fn set_last_seen(&self, id: i64, at: i64) -> StoreResult<()> {
        retry(|| async {
            let sql = "UPDATE users SET last_seen = $2 WHERE id = $1 AND NOT deleted";
            execute(&self.client().await?, sql, &[&id, &at]).await?;
            Ok(())
        })
        .await
    }

    async fn delete_user(&self, id: i64) -> StoreResult<()> {
        retry(|| delete_user(self, id)).await
    }

    async fn put_code(&self, code: CodeRecord) -> StoreResult<()> {
        retry(|| async {
            execute(
                &self.client().await?,
                "INSERT INTO codes (phone, code_hash, expires_at, attempts) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (phone) DO UPDATE SET code_hash = excluded.code_hash, \
                 expires_at = excluded.expires_at, attempts = excluded.attempts",
                &[&code.phone, &code.code_hash, &code.expires_at, &i64::from(code.attempts)],
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn code(&self, phone: &str) -> StoreResult<Option<CodeRecord>> {
        once(async {
            let client = self.client().await?;
            let statement =
                client.prepare_cached(&format!("SELECT {CODE_COLUMNS} FROM codes WHERE phone = $1")).await?;
            client.query_opt(&statement, &[&phone]).await?.as_ref().map(code_from_row).transpose()
        })
        .await
    }

    async fn attempt_code(&self, phone: &str, max_attempts: u32) -> StoreResult<Option<CodeRecord>> {
        retry(|| async {
            let client = self.client().await?;
            // Counting and checking in one statement: the row lock orders parallel guesses.
            let statement = client
                .prepare_cached(&format!(
                    "UPDATE codes SET attempts = attempts + 1 WHERE phone = $1 AND attempts < $2 RETURNING {CODE_COLUMNS}"
                ))
                .await?;
            client.query_opt(&statement, &[&phone, &big(max_attempts)]).await?.as_ref().map(code_from_row).transpose()
        })
        .await
    }

    async fn take_code(&self, phone: &str) -> StoreResult<bool> {
        retry(|| async {
            Ok(execute(&self.client().await?, "DELETE FROM codes WHERE phone = $1", &[&phone]).await? > 0)
        })
        .await
    }

    async fn create_session(
        &self,
        user_id: i64,
        name: &str,
        token_hash: &[u8],
        now: i64,
    ) -> StoreResult<SessionRecord> {
        retry(|| async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(&format!(
                    "INSERT INTO sessions (user_id, name, token_hash, created_at, last_active) \
                     VALUES ($1, $2, $3, $4, $4) RETURNING {SESSION_COLUMNS}"
                ))
                .await?;
            session_from_row(&client.query_one(&statement, &[&user_id, &name, &token_hash, &now]).await?)
        })
        .await
    }

    async fn session_by_token(&self, token_hash: &[u8]) -> StoreResult<Option<SessionRecord>> {
        once(async {
            let client = self.client().await?;
            let statement =
                client.prepare_cached(&format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE token_hash = $1")).await?;
            client.query_opt(&statement, &[&token_hash]).await?.as_ref().map(session_from_row).transpose()
        })
        .await
    }

    async fn touch_session(&self, id: i64, now: i64) -> StoreResult<()> {
        retry(|| async {
            execute(&self.client().await?, "UPDATE sessions SET last_active = $2 WHERE id = $1", &[&id, &now]).await?;
            Ok(())
        })
        .await
    }

    async fn sessions(&self, user_id: i64) -> StoreResult<Vec<SessionRecord>> {
        once(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(&format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = $1 ORDER BY id"))
                .await?;
            client.query(&statement, &[&user_id]).await?.iter().map(session_from_row).collect()
        })
        .await
    }

    async fn revoke_session(&self, user_id: i64, session_id: i64) -> StoreResult<bool> {
        retry(|| async {
            let sql = "DELETE FROM sessions WHERE user_id = $1 AND id = $2";
            Ok(execute(&self.client().await?, sql, &[&user_id, &session_id]).await? > 0)
        })
        .await
    }

    async fn revoke_all_sessions(&self, user_id: i64) -> StoreResult<()> {
        retry(|| async {
            execute(&self.client().await?, "DELETE FROM sessions WHERE user_id = $1", &[&user_id]).await?;
            Ok(())
        })
        .await
    }

    async fn add_contacts(&self, owner: i64, phones: &[String]) -> StoreResult<()> {
        retry(|| async {
            execute(
                &self.client().await?,
                "INSERT INTO contacts (owner_id, phone) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING",
                &[&owner, &phones],
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn remove_contact(&self, owner: i64, phone: &str) -> StoreResult<()> {
        retry(|| async {
            let sql = "DELETE FROM contacts WHERE owner_id = $1 AND phone = $2";
            execute(&self.client().await?, sql, &[&owner, &phone]).await?;
            Ok(())
        })
        .await
    }

    async fn contacts(&self, owner: i64) -> StoreResult<Vec<UserRecord>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users u JOIN contacts c ON c.phone = u.phone \
             WHERE c.owner_id = $1 AND NOT u.deleted ORDER BY u.id"
        );
        once(async { query_users(&self.client().await?, &sql, &[&owner]).await }).await
    }

    async fn has_contact(&self, owner: i64, other: i64) -> StoreResult<bool> {
        once(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM users u JOIN contacts c ON c.owner_id = $1 \
                     AND c.phone = COALESCE(u.phone, split_part(u.remote_address, '@', 1)) WHERE u.id = $2)",
                )
                .await?;
            Ok(client.query_one(&statement, &[&owner, &other]).await?.try_get(0)?)
        })
        .await
    }

    async fn has_contact_phone(&self, owner: i64, phone: &str) -> StoreResult<bool> {
        once(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM contacts WHERE owner_id = $1 AND phone = $2)")
                .await?;
            Ok(client.query_one(&statement, &[&owner, &phone]).await?.try_get(0)?)
        })
        .await
    }

    async fn set_blocked(&self, owner: i64, target: i64, blocked: bool) -> StoreResult<()> {
        let sql = if blocked {
            "INSERT INTO blocks (owner_id, target_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM blocks WHERE owner_id = $1 AND target_id = $2"
        };
        retry(|| async {
            execute(&self.client().await?, sql, &[&owner, &target]).await?;
            Ok(())
        })
        .await
    }

    async fn is_blocked(&self, owner: i64, target: i64) -> StoreResult<bool> {
        once(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM blocks WHERE owner_id = $1 AND target_id = $2)")
                .await?;
            Ok(client.query_one(&statement, &[&owner, &target]).await?.try_get(0)?)
        })
        .await
    }

    async fn blocked(&self, owner: i64) -> StoreResult<Vec<UserRecord>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users u JOIN blocks b ON b.target_id = u.id WHERE b.owner_id = $1 ORDER BY u.id"
        );
        once(async { query_users(&self.client().await?, &sql, &[&owner]).await }).await
    }
}

#[async_trait]
impl LimitStore for PgStore {
    async fn hit(&self, key: &str, window_ms: i64, limit: u32, cost: u32, now: i64) -> StoreResult<Result<u32, i64>> {
        let window_start = now - now.rem_euclid(window_ms.max(1));
        retry(|| async {
            let client = self.client().await?;
            // One statement: the row lock of the upsert makes concurrent hits add up.
            let statement = client
                .prepare_cached(
                    "INSERT INTO limits (key, window_start, count) VALUES ($1, $2, $3) \
                     ON CONFLICT (key) DO UPDATE SET \
                       count = CASE WHEN limits.window_start = excluded.window_start \
                                    THEN limits.count + excluded.count ELSE excluded.count END, \
                       window_start = excluded.window_start \
                     RETURNING count",
                )
                .await?;
            let count: i64 = client.query_one(&statement, &[&key, &window_start, &big(cost)]).await?.try_get(0)?;
            if count > big(limit) {
                Ok(Err(window_start + window_ms - now))
            } else {
                Ok(Ok(u32::try_from(count).unwrap_or(u32::MAX)))
            }
        })
        .await
    }
}
