//! The `directory` table: the one directory currently served, exactly as signed, so that a
//! restart serves the same bytes and counts versions on from there.

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::RegistryResult;
use crate::time::Millis;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredDirectory {
    pub version: u64,
    pub issued_at: Millis,
    pub expires_at: Millis,
    /// The SHA-256 of the providers' entries, to tell whether they changed.
    pub providers_hash: Vec<u8>,
    pub body: Vec<u8>,
    pub signature: Vec<u8>,
}

pub(crate) fn load(conn: &Connection) -> RegistryResult<Option<StoredDirectory>> {
    Ok(conn
        .prepare_cached(
            "SELECT version, issued_at, expires_at, providers_hash, body, signature FROM directory WHERE id = 1",
        )?
        .query_row([], |row| {
            Ok(StoredDirectory {
                version: row.get::<_, i64>(0)?.try_into().unwrap_or_default(),
                issued_at: row.get(1)?,
                expires_at: row.get(2)?,
                providers_hash: row.get(3)?,
                body: row.get(4)?,
                signature: row.get(5)?,
            })
        })
        .optional()?)
}

pub(crate) fn save(conn: &Connection, directory: &StoredDirectory) -> RegistryResult<()> {
    conn.prepare_cached(
        "INSERT INTO directory (id, version, issued_at, expires_at, providers_hash, body, signature) \
         VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (id) DO UPDATE SET version = excluded.version, issued_at = excluded.issued_at, \
         expires_at = excluded.expires_at, providers_hash = excluded.providers_hash, body = excluded.body, \
         signature = excluded.signature",
    )?
    .execute(params![
        i64::try_from(directory.version).unwrap_or(i64::MAX),
        directory.issued_at,
        directory.expires_at,
        directory.providers_hash,
        directory.body,
        directory.signature,
    ])?;
    Ok(())
}
