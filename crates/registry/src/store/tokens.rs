//! The `admin_tokens` table: the SHA-256 of each admin token and its label (the actor that
//! the audit log names).

use rusqlite::{Connection, params};

use crate::error::RegistryResult;
use crate::time::Millis;

pub(crate) fn insert(conn: &Connection, hash: &[u8; 32], label: &str, at: Millis) -> RegistryResult<()> {
    conn.execute(
        "INSERT INTO admin_tokens (token_hash, label, created_at) VALUES (?1, ?2, ?3)",
        params![hash.as_slice(), label, at],
    )?;
    Ok(())
}

/// Every token's hash and label.
pub(crate) fn all(conn: &Connection) -> RegistryResult<Vec<(Vec<u8>, String)>> {
    let mut statement = conn.prepare("SELECT token_hash, label FROM admin_tokens")?;
    let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
