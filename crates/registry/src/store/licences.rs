//! The `licences` table.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, RegistryError, RegistryResult};
use crate::model::{DirectoryStatus, Licence, LicenceStatus};
use crate::time::Millis;

/// A licence as stored; also what the audit log records before and after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LicenceRecord {
    pub provider_id: String,
    pub name: String,
    pub domain: String,
    pub endpoint: String,
    pub contact: String,
    pub licence_number: String,
    pub valid_from: Millis,
    pub valid_until: Millis,
    pub status: LicenceStatus,
    pub signing_keys: Vec<String>,
    pub capabilities: Vec<String>,
    pub issued_at: Millis,
    pub updated_at: Millis,
    /// When the (revoked) licence was taken out of the directory.
    pub delisted_at: Option<Millis>,
}

impl LicenceRecord {
    pub(crate) fn directory_status(&self, now: Millis) -> DirectoryStatus {
        DirectoryStatus::of(self.status, self.valid_from, self.valid_until, now)
    }

    /// The licence as the admin API shows it at `now`.
    pub(crate) fn to_licence(&self, now: Millis) -> Licence {
        Licence {
            provider_id: self.provider_id.clone(),
            name: self.name.clone(),
            domain: self.domain.clone(),
            endpoint: self.endpoint.clone(),
            contact: self.contact.clone(),
            licence_number: self.licence_number.clone(),
            valid_from: self.valid_from,
            valid_until: self.valid_until,
            status: self.status,
            directory_status: self.directory_status(now),
            signing_keys: self.signing_keys.clone(),
            capabilities: self.capabilities.clone(),
            issued_at: self.issued_at,
            updated_at: self.updated_at,
            delisted_at: self.delisted_at,
        }
    }
}

const COLUMNS: &str = "provider_id, name, domain, endpoint, contact, licence_number, valid_from, valid_until, \
                       status, signing_keys, capabilities, issued_at, updated_at, delisted_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<(LicenceRecord, String, String)> {
    let status: String = row.get(8)?;
    let status = LicenceStatus::parse(&status).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(8, rusqlite::types::Type::Text, format!("status `{status}`").into())
    })?;
    let record = LicenceRecord {
        provider_id: row.get(0)?,
        name: row.get(1)?,
        domain: row.get(2)?,
        endpoint: row.get(3)?,
        contact: row.get(4)?,
        licence_number: row.get(5)?,
        valid_from: row.get(6)?,
        valid_until: row.get(7)?,
        status,
        signing_keys: Vec::new(),
        capabilities: Vec::new(),
        issued_at: row.get(11)?,
        updated_at: row.get(12)?,
        delisted_at: row.get(13)?,
    };
    Ok((record, row.get(9)?, row.get(10)?))
}

fn finish((mut record, keys, capabilities): (LicenceRecord, String, String)) -> RegistryResult<LicenceRecord> {
    record.signing_keys = serde_json::from_str(&keys)?;
    record.capabilities = serde_json::from_str(&capabilities)?;
    Ok(record)
}

pub(crate) fn get(conn: &Connection, provider_id: &str) -> RegistryResult<Option<LicenceRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM licences WHERE provider_id = ?1");
    conn.prepare_cached(&sql)?.query_row([provider_id], from_row).optional()?.map(finish).transpose()
}

/// Every licence, by provider id.
pub(crate) fn list(conn: &Connection) -> RegistryResult<Vec<LicenceRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM licences ORDER BY provider_id");
    let mut statement = conn.prepare_cached(&sql)?;
    let rows = statement.query_map([], from_row)?;
    rows.map(|row| finish(row?)).collect()
}

/// Why a new licence would clash with a stored one, if it would.
pub(crate) fn find_conflict(conn: &Connection, record: &LicenceRecord) -> RegistryResult<Option<RegistryError>> {
    let taken = |sql: &str, value: &str| -> RegistryResult<bool> {
        Ok(conn.prepare_cached(sql)?.query_row([value], |_| Ok(())).optional()?.is_some())
    };
    Ok(if taken("SELECT 1 FROM licences WHERE provider_id = ?1", &record.provider_id)? {
        Some(RegistryError::refused(
            ErrorCode::ProviderExists,
            format!("provider `{}` already has a licence", record.provider_id),
        ))
    } else if taken("SELECT 1 FROM licences WHERE licence_number = ?1", &record.licence_number)? {
        Some(RegistryError::refused(
            ErrorCode::LicenceNumberTaken,
            format!("licence number `{}` is already issued", record.licence_number),
        ))
    } else if taken("SELECT 1 FROM licences WHERE domain = ?1", &record.domain)? {
        Some(RegistryError::refused(
            ErrorCode::DomainTaken,
            format!("domain `{}` belongs to another provider", record.domain),
        ))
    } else {
        None
    })
}

pub(crate) fn insert(conn: &Connection, record: &LicenceRecord) -> RegistryResult<()> {
    let sql = format!(
        "INSERT INTO licences ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
    );
    conn.prepare_cached(&sql)?.execute(params![
        record.provider_id,
        record.name,
        record.domain,
        record.endpoint,
        record.contact,
        record.licence_number,
        record.valid_from,
        record.valid_until,
        record.status.as_str(),
        serde_json::to_string(&record.signing_keys)?,
        serde_json::to_string(&record.capabilities)?,
        record.issued_at,
        record.updated_at,
        record.delisted_at,
    ])?;
    Ok(())
}

/// Stores the changeable fields of an existing licence.
pub(crate) fn replace(conn: &Connection, record: &LicenceRecord) -> RegistryResult<()> {
    let changed = conn
        .prepare_cached(
            "UPDATE licences SET name = ?2, endpoint = ?3, contact = ?4, valid_until = ?5, status = ?6, \
             signing_keys = ?7, capabilities = ?8, updated_at = ?9, delisted_at = ?10 WHERE provider_id = ?1",
        )?
        .execute(params![
            record.provider_id,
            record.name,
            record.endpoint,
            record.contact,
            record.valid_until,
            record.status.as_str(),
            serde_json::to_string(&record.signing_keys)?,
            serde_json::to_string(&record.capabilities)?,
            record.updated_at,
            record.delisted_at,
        ])?;
    if changed != 1 {
        return Err(RegistryError::Storage(format!("licence `{}` vanished during a change", record.provider_id)));
    }
    Ok(())
}
