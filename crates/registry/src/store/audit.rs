//! The append-only `audit` table (triggers refuse updates and deletes).

use rusqlite::{Connection, params};

use crate::error::{RegistryError, RegistryResult};
use crate::model::{AuditAction, AuditEntry, AuditQuery};
use crate::time::Millis;

use super::LicenceRecord;

pub(crate) const DEFAULT_LIMIT: u32 = 100;
pub(crate) const MAX_LIMIT: u32 = 1000;

/// Records one change; returns the entry's id.
#[allow(clippy::too_many_arguments)]
pub(crate) fn append(
    conn: &Connection,
    at: Millis,
    actor: &str,
    action: AuditAction,
    provider_id: &str,
    reason: Option<&str>,
    before: Option<&LicenceRecord>,
    after: &LicenceRecord,
) -> RegistryResult<i64> {
    let before = before.map(serde_json::to_string).transpose()?;
    conn.prepare_cached(
        "INSERT INTO audit (at, actor, action, provider_id, reason, before, after) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![at, actor, action.as_str(), provider_id, reason, before, serde_json::to_string(after)?])?;
    Ok(conn.last_insert_rowid())
}

/// Records an event that is not a change to the licence itself (an enrolment token made, a
/// certificate issued or revoked): `after` says what it made or changed.
pub(crate) fn append_event(
    conn: &Connection,
    at: Millis,
    actor: &str,
    action: AuditAction,
    provider_id: &str,
    reason: Option<&str>,
    after: &serde_json::Value,
) -> RegistryResult<i64> {
    conn.prepare_cached(
        "INSERT INTO audit (at, actor, action, provider_id, reason, before, after) VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6)",
    )?
    .execute(params![at, actor, action.as_str(), provider_id, reason, serde_json::to_string(after)?])?;
    Ok(conn.last_insert_rowid())
}

/// Entries after `query.after`, oldest first, of one provider or all.
pub(crate) fn list(conn: &Connection, query: &AuditQuery) -> RegistryResult<Vec<AuditEntry>> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let mut statement = conn.prepare_cached(
        "SELECT id, at, actor, action, provider_id, reason, before, after FROM audit \
         WHERE id > ?1 AND (?2 IS NULL OR provider_id = ?2) ORDER BY id LIMIT ?3",
    )?;
    let rows = statement.query_map(params![query.after.unwrap_or(0), query.provider_id, limit], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, String>(4)?,
            row.get::<_, Option<String>>(5)?,
            row.get::<_, Option<String>>(6)?,
            row.get::<_, String>(7)?,
        ))
    })?;
    rows.map(|row| {
        let (id, at, actor, action, provider_id, reason, before, after) = row?;
        let action = AuditAction::parse(&action)
            .ok_or_else(|| RegistryError::Storage(format!("audit entry {id} has an unknown action `{action}`")))?;
        Ok(AuditEntry {
            id,
            at,
            actor,
            action,
            provider_id,
            reason,
            before: before.map(|b| serde_json::from_str(&b)).transpose()?,
            after: serde_json::from_str(&after)?,
        })
    })
    .collect()
}
