//! The `enrolment_tokens` table (the SHA-256 of each one-time token, its licence, expiry and
//! use) and the `certificates` table (every certificate the CA issued, and its revocation).

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::error::RegistryResult;
use crate::time::Millis;

/// A stored enrolment token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EnrolmentTokenRecord {
    pub provider_id: String,
    pub expires_at: Millis,
    pub used_at: Option<Millis>,
}

pub(crate) fn insert_enrolment_token(
    conn: &Connection,
    hash: &[u8; 32],
    provider_id: &str,
    created_at: Millis,
    expires_at: Millis,
) -> RegistryResult<()> {
    conn.execute(
        "INSERT INTO enrolment_tokens (token_hash, provider_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
        params![hash.as_slice(), provider_id, created_at, expires_at],
    )?;
    Ok(())
}

pub(crate) fn get_enrolment_token(conn: &Connection, hash: &[u8; 32]) -> RegistryResult<Option<EnrolmentTokenRecord>> {
    Ok(conn
        .prepare_cached("SELECT provider_id, expires_at, used_at FROM enrolment_tokens WHERE token_hash = ?1")?
        .query_row(params![hash.as_slice()], |row| {
            Ok(EnrolmentTokenRecord { provider_id: row.get(0)?, expires_at: row.get(1)?, used_at: row.get(2)? })
        })
        .optional()?)
}

/// Marks a token used; returns whether it was still unused (a second use changes nothing).
pub(crate) fn use_enrolment_token(conn: &Connection, hash: &[u8; 32], at: Millis) -> RegistryResult<bool> {
    let changed = conn.execute(
        "UPDATE enrolment_tokens SET used_at = ?2 WHERE token_hash = ?1 AND used_at IS NULL",
        params![hash.as_slice(), at],
    )?;
    Ok(changed == 1)
}

/// A certificate the CA issued, as stored; also what the audit log records of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CertificateRecord {
    pub serial: String,
    pub provider_id: String,
    pub pem: String,
    pub not_before: Millis,
    pub not_after: Millis,
    pub issued_at: Millis,
    pub revoked_at: Option<Millis>,
    pub revoke_reason: Option<String>,
}

const COLUMNS: &str = "serial, provider_id, pem, not_before, not_after, issued_at, revoked_at, revoke_reason";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<CertificateRecord> {
    Ok(CertificateRecord {
        serial: row.get(0)?,
        provider_id: row.get(1)?,
        pem: row.get(2)?,
        not_before: row.get(3)?,
        not_after: row.get(4)?,
        issued_at: row.get(5)?,
        revoked_at: row.get(6)?,
        revoke_reason: row.get(7)?,
    })
}

pub(crate) fn insert_certificate(conn: &Connection, record: &CertificateRecord) -> RegistryResult<()> {
    conn.execute(
        &format!("INSERT INTO certificates ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
        params![
            record.serial,
            record.provider_id,
            record.pem,
            record.not_before,
            record.not_after,
            record.issued_at,
            record.revoked_at,
            record.revoke_reason
        ],
    )?;
    Ok(())
}

pub(crate) fn get_certificate(conn: &Connection, serial: &str) -> RegistryResult<Option<CertificateRecord>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM certificates WHERE serial = ?1"))?
        .query_row(params![serial], from_row)
        .optional()?)
}

/// Every certificate, by provider and then oldest first.
pub(crate) fn list_certificates(conn: &Connection) -> RegistryResult<Vec<CertificateRecord>> {
    let mut statement =
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM certificates ORDER BY provider_id, issued_at, serial"))?;
    let rows = statement.query_map([], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Records a renewal signed at `signed_at` (Unix ms, the provider's clock) unless one signed
/// at that time or later was recorded: whether it was, so that a signed request renews once.
pub(crate) fn record_renewal(conn: &Connection, provider_id: &str, signed_at: Millis) -> RegistryResult<bool> {
    let changed = conn.execute(
        "INSERT INTO renewals (provider_id, signed_at) VALUES (?1, ?2) \
         ON CONFLICT (provider_id) DO UPDATE SET signed_at = excluded.signed_at WHERE signed_at < excluded.signed_at",
        params![provider_id, signed_at],
    )?;
    Ok(changed == 1)
}

/// Marks a certificate revoked.
pub(crate) fn revoke_certificate(conn: &Connection, serial: &str, at: Millis, reason: &str) -> RegistryResult<()> {
    conn.execute(
        "UPDATE certificates SET revoked_at = ?2, revoke_reason = ?3 WHERE serial = ?1 AND revoked_at IS NULL",
        params![serial, at, reason],
    )?;
    Ok(())
}
