//! The registry's schema and its versioned migrations.

use rusqlite::Connection;

use crate::error::{RegistryError, RegistryResult};

/// Each migration runs once, in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE licences (
    provider_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    domain TEXT NOT NULL UNIQUE,
    endpoint TEXT NOT NULL,
    contact TEXT NOT NULL,
    licence_number TEXT NOT NULL UNIQUE,
    valid_from INTEGER NOT NULL,
    valid_until INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'revoked')),
    signing_keys TEXT NOT NULL,
    capabilities TEXT NOT NULL,
    issued_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    provider_id TEXT NOT NULL,
    reason TEXT,
    before TEXT,
    after TEXT NOT NULL
);
CREATE INDEX audit_provider ON audit (provider_id, id);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TABLE admin_tokens (
    token_hash BLOB PRIMARY KEY,
    label TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE directory (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    providers_hash BLOB NOT NULL,
    body BLOB NOT NULL,
    signature BLOB NOT NULL
);
"#,
    r#"
CREATE TABLE enrolment_tokens (
    token_hash BLOB PRIMARY KEY,
    provider_id TEXT NOT NULL REFERENCES licences (provider_id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
) WITHOUT ROWID;
CREATE TABLE certificates (
    serial TEXT PRIMARY KEY,
    provider_id TEXT NOT NULL REFERENCES licences (provider_id),
    pem TEXT NOT NULL,
    not_before INTEGER NOT NULL,
    not_after INTEGER NOT NULL,
    issued_at INTEGER NOT NULL,
    revoked_at INTEGER,
    revoke_reason TEXT
) WITHOUT ROWID;
CREATE INDEX certificates_provider ON certificates (provider_id, issued_at);
"#,
    r#"
CREATE TABLE renewals (
    provider_id TEXT PRIMARY KEY REFERENCES licences (provider_id),
    signed_at INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    // A revoked licence can be taken out of the directory (with its revoked certificates):
    // its record stays, and its id, number and domain stay taken.
    r#"
ALTER TABLE licences ADD COLUMN delisted_at INTEGER;
"#,
];

/// Brings the database to the newest schema; refuses one newer than this binary knows.
pub(super) fn migrate(conn: &mut Connection) -> RegistryResult<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(RegistryError::Storage(format!(
            "the registry's schema is version {version}, newer than this binary's {known}: upgrade peyvand"
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
