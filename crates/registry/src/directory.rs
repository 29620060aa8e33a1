//! The directory: a signed, versioned, expiring JSON document listing every licensed
//! provider, and [`verify_directory`], which providers use to check one.
//!
//! The signature is a detached Ed25519 signature over the exact bytes served. The document
//! names its own format (`peyvand-directory/1`), so a signature made by the registry's key over
//! some other kind of document can never pass for a directory.

use ring::signature::{ED25519, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::DirectoryStatus;
use crate::store::{CertificateRecord, LicenceRecord, StoredDirectory};
use crate::time::{Millis, now_millis};

/// The value of the document's `format` field.
pub const FORMAT: &str = "peyvand-directory/1";
/// The response header that carries the signature (base64) with the document.
pub const SIGNATURE_HEADER: &str = "peyvand-signature";
/// How far a verifier's clock may lag the registry's before a new document looks issued in
/// the future.
pub const CLOCK_SKEW_MS: Millis = 5 * 60 * 1000;

/// The directory document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directory {
    /// Always [`FORMAT`].
    pub format: String,
    /// Increases by one whenever a provider's entry changes (a licence issued, changed,
    /// suspended, reinstated, revoked, or reaching the end or start of its validity). A
    /// re-issue that only moves `issued_at` and `expires_at` keeps it.
    pub version: u64,
    pub issued_at: Millis,
    /// Verifiers refuse the document from this moment on.
    pub expires_at: Millis,
    /// Every provider that ever had a licence, by id.
    pub providers: Vec<DirectoryProvider>,
    /// The serials (lowercase hex) of every certificate the registry's CA revoked, sorted.
    /// A peer presenting one of them is refused even though it chains to the CA.
    #[serde(default)]
    pub revoked_certificates: Vec<String>,
    /// The registry CA's certificate (PEM): providers trust exactly the certificates it issued,
    /// and learn it here, under the directory's signature, rather than over an unsigned fetch.
    #[serde(default)]
    pub ca_certificate: String,
}

/// One provider in the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryProvider {
    pub id: String,
    pub name: String,
    pub domain: String,
    pub endpoint: String,
    /// Only `active` providers may be talked to.
    pub status: DirectoryStatus,
    pub licence_number: String,
    pub valid_from: Millis,
    pub valid_until: Millis,
    /// Ed25519 public keys (base64) that the provider signs its requests with.
    pub signing_keys: Vec<String>,
    pub capabilities: Vec<String>,
    /// The provider's current TLS certificate (PEM), issued by the registry's CA: the newest
    /// one not revoked. Absent before the provider enrolled, and once its certificates are
    /// revoked (a revocation of the licence revokes them; a suspension keeps them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// That certificate's serial (lowercase hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_serial: Option<String>,
}

impl Directory {
    /// The provider with this id.
    pub fn provider(&self, id: &str) -> Option<&DirectoryProvider> {
        self.providers.iter().find(|p| p.id == id)
    }
}

impl DirectoryProvider {
    fn from_record(record: &LicenceRecord, certificate: Option<&CertificateRecord>, now: Millis) -> Self {
        Self {
            id: record.provider_id.clone(),
            name: record.name.clone(),
            domain: record.domain.clone(),
            endpoint: record.endpoint.clone(),
            status: record.directory_status(now),
            licence_number: record.licence_number.clone(),
            valid_from: record.valid_from,
            valid_until: record.valid_until,
            signing_keys: record.signing_keys.clone(),
            capabilities: record.capabilities.clone(),
            certificate: certificate.map(|c| c.pem.clone()),
            certificate_serial: certificate.map(|c| c.serial.clone()),
        }
    }
}

/// Why a directory was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the registry's public key is not a 32-byte Ed25519 key")]
    BadKey,
    #[error("the directory's signature does not verify against the registry's key")]
    BadSignature,
    #[error("the directory is not valid JSON of the expected shape: {0}")]
    Malformed(String),
    #[error("the document's format is `{0}`, not `{FORMAT}`")]
    UnknownFormat(String),
    #[error("the directory expired at {}", crate::time::format_millis(*.0))]
    Expired(Millis),
    #[error("the directory says it was issued at {}, in the future", crate::time::format_millis(*.0))]
    IssuedInFuture(Millis),
}

/// Checks a directory as served: the signature over exactly `bytes` with the registry's
/// Ed25519 public key (32 bytes), the format, and that it is current (not expired, not issued
/// in the future beyond [`CLOCK_SKEW_MS`]).
pub fn verify_directory(bytes: &[u8], signature: &[u8], registry_public_key: &[u8]) -> Result<Directory, VerifyError> {
    verify_directory_at(bytes, signature, registry_public_key, now_millis())
}

/// [`verify_directory`] at a given time.
pub fn verify_directory_at(
    bytes: &[u8],
    signature: &[u8],
    registry_public_key: &[u8],
    now: Millis,
) -> Result<Directory, VerifyError> {
    if registry_public_key.len() != 32 {
        return Err(VerifyError::BadKey);
    }
    UnparsedPublicKey::new(&ED25519, registry_public_key)
        .verify(bytes, signature)
        .map_err(|_| VerifyError::BadSignature)?;
    let directory: Directory = serde_json::from_slice(bytes).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    if directory.format != FORMAT {
        return Err(VerifyError::UnknownFormat(directory.format));
    }
    if now >= directory.expires_at {
        return Err(VerifyError::Expired(directory.expires_at));
    }
    if directory.issued_at > now.saturating_add(CLOCK_SKEW_MS) {
        return Err(VerifyError::IssuedInFuture(directory.issued_at));
    }
    Ok(directory)
}

/// What the directory lists, apart from its version and times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Listing {
    pub providers: Vec<DirectoryProvider>,
    pub revoked_certificates: Vec<String>,
    pub ca_certificate: String,
}

/// The providers' entries and the revoked serials as they stand at `now`.
pub(crate) fn listing_at(
    records: &[LicenceRecord],
    certificates: &[CertificateRecord],
    ca_certificate: &str,
    now: Millis,
) -> Listing {
    let current = |provider_id: &str| {
        certificates
            .iter()
            .filter(|c| c.provider_id == provider_id && c.revoked_at.is_none())
            .max_by_key(|c| (c.issued_at, c.not_after))
    };
    // A delisted licence is left out, and so are its certificates (all revoked with it): a
    // certificate naming a provider the directory does not list is refused anyway.
    let delisted = |provider_id: &str| records.iter().any(|r| r.provider_id == provider_id && r.delisted_at.is_some());
    let mut providers: Vec<DirectoryProvider> = records
        .iter()
        .filter(|r| r.delisted_at.is_none())
        .map(|r| DirectoryProvider::from_record(r, current(&r.provider_id), now))
        .collect();
    providers.sort_by(|a, b| a.id.cmp(&b.id));
    let mut revoked_certificates: Vec<String> = certificates
        .iter()
        .filter(|c| c.revoked_at.is_some() && !delisted(&c.provider_id))
        .map(|c| c.serial.clone())
        .collect();
    revoked_certificates.sort();
    Listing { providers, revoked_certificates, ca_certificate: ca_certificate.to_owned() }
}

/// A digest of the listing, to tell whether it changed.
pub(crate) fn listing_hash(listing: &Listing) -> Vec<u8> {
    // Serialising our own plain structs cannot fail; an empty hash would only cause a new version.
    let bytes = serde_json::to_vec(listing).unwrap_or_default();
    Sha256::digest(bytes).to_vec()
}

/// The first moment after `now` at which some entry changes by time alone: a licence's
/// validity starting or ending.
pub(crate) fn next_transition(records: &[LicenceRecord], now: Millis) -> Option<Millis> {
    records.iter().flat_map(|r| [r.valid_from, r.valid_until]).filter(|at| *at > now).min()
}

/// Signs a new directory.
pub(crate) fn issue(
    key: &crate::keys::RegistryKey,
    version: u64,
    listing: Listing,
    now: Millis,
    ttl_ms: Millis,
) -> StoredDirectory {
    let providers_hash = listing_hash(&listing);
    let directory = Directory {
        format: FORMAT.to_owned(),
        version,
        issued_at: now,
        expires_at: now.saturating_add(ttl_ms),
        providers: listing.providers,
        revoked_certificates: listing.revoked_certificates,
        ca_certificate: listing.ca_certificate,
    };
    let body = serde_json::to_vec_pretty(&directory).unwrap_or_default();
    let signature = key.sign(&body);
    StoredDirectory {
        version,
        issued_at: directory.issued_at,
        expires_at: directory.expires_at,
        providers_hash,
        body,
        signature,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::RegistryKey;
    use crate::model::LicenceStatus;

    const HOUR: Millis = 3_600_000;

    fn record(id: &str, status: LicenceStatus, valid_from: Millis, valid_until: Millis) -> LicenceRecord {
        LicenceRecord {
            provider_id: id.into(),
            name: "پیام‌رسان".into(),
            domain: format!("{id}.ir"),
            endpoint: format!("https://ic.{id}.ir/"),
            contact: "ops@example.ir".into(),
            licence_number: format!("L-{id}"),
            valid_from,
            valid_until,
            status,
            signing_keys: vec![crate::keys::encode_base64(&[1; 32])],
            capabilities: vec!["messages".into()],
            issued_at: valid_from,
            updated_at: valid_from,
            delisted_at: None,
        }
    }

    fn signed(now: Millis) -> (RegistryKey, StoredDirectory) {
        let key = RegistryKey::ephemeral().expect("key");
        let records = [record("bale", LicenceStatus::Active, 0, 100 * HOUR)];
        let stored = issue(&key, 3, listing_at(&records, &[], "", now), now, 24 * HOUR);
        (key, stored)
    }

    #[test]
    fn a_signed_directory_verifies() {
        let now = 10 * HOUR;
        let (key, stored) = signed(now);
        let directory = verify_directory_at(&stored.body, &stored.signature, key.public_key(), now).expect("verifies");
        assert_eq!(directory.version, 3);
        assert_eq!(directory.format, FORMAT);
        assert_eq!(directory.expires_at, now + 24 * HOUR);
        assert_eq!(directory.provider("bale").map(|p| p.status), Some(DirectoryStatus::Active));
    }

    #[test]
    fn a_tampered_directory_is_refused() {
        let now = 10 * HOUR;
        let (key, stored) = signed(now);
        let text = String::from_utf8(stored.body.clone()).expect("utf-8");
        let tampered = text.replace("https://ic.bale.ir/", "https://evil.example/");
        assert_ne!(tampered, text);
        assert_eq!(
            verify_directory_at(tampered.as_bytes(), &stored.signature, key.public_key(), now),
            Err(VerifyError::BadSignature)
        );
        let mut flipped = stored.signature.clone();
        flipped[0] ^= 1;
        assert_eq!(verify_directory_at(&stored.body, &flipped, key.public_key(), now), Err(VerifyError::BadSignature));
        let other = RegistryKey::ephemeral().expect("key");
        assert_eq!(
            verify_directory_at(&stored.body, &stored.signature, other.public_key(), now),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(verify_directory_at(&stored.body, &stored.signature, &[0; 31], now), Err(VerifyError::BadKey));
    }

    #[test]
    fn an_expired_or_future_directory_is_refused() {
        let now = 10 * HOUR;
        let (key, stored) = signed(now);
        let at_expiry = now + 24 * HOUR;
        assert_eq!(
            verify_directory_at(&stored.body, &stored.signature, key.public_key(), at_expiry),
            Err(VerifyError::Expired(at_expiry))
        );
        assert!(verify_directory_at(&stored.body, &stored.signature, key.public_key(), at_expiry - 1).is_ok());
        assert_eq!(
            verify_directory_at(&stored.body, &stored.signature, key.public_key(), now - CLOCK_SKEW_MS - 1),
            Err(VerifyError::IssuedInFuture(now))
        );
    }

    #[test]
    fn other_documents_signed_by_the_registry_are_not_directories() {
        let key = RegistryKey::ephemeral().expect("key");
        let body = br#"{"format":"peyvand-statistics/1","version":1,"issued_at":0,"expires_at":9,"providers":[]}"#;
        let signature = key.sign(body);
        assert_eq!(
            verify_directory_at(body, &signature, key.public_key(), 1),
            Err(VerifyError::UnknownFormat("peyvand-statistics/1".into()))
        );
        let junk = b"not json";
        assert!(matches!(
            verify_directory_at(junk, &key.sign(junk), key.public_key(), 1),
            Err(VerifyError::Malformed(_))
        ));
    }

    fn certificate(serial: &str, provider_id: &str, issued_at: Millis, revoked: bool) -> CertificateRecord {
        CertificateRecord {
            serial: serial.into(),
            provider_id: provider_id.into(),
            pem: format!("PEM {serial}"),
            not_before: issued_at,
            not_after: issued_at + 90 * 24 * HOUR,
            issued_at,
            revoked_at: revoked.then_some(issued_at + 1),
            revoke_reason: revoked.then(|| "compromised".to_owned()),
        }
    }

    #[test]
    fn the_newest_unrevoked_certificate_is_listed_and_revoked_serials_too() {
        let records = [
            record("bale", LicenceStatus::Active, 0, 100 * HOUR),
            record("eitaa", LicenceStatus::Active, 0, 100 * HOUR),
        ];
        let certificates = [
            certificate("0a", "bale", HOUR, false),
            certificate("0c", "bale", 3 * HOUR, true),
            certificate("0b", "bale", 2 * HOUR, false),
            certificate("01", "eitaa", HOUR, true),
        ];
        let listing = listing_at(&records, &certificates, "", 4 * HOUR);
        let bale = &listing.providers[0];
        assert_eq!(bale.certificate_serial.as_deref(), Some("0b"));
        assert_eq!(bale.certificate.as_deref(), Some("PEM 0b"));
        assert_eq!(listing.providers[1].certificate, None);
        assert_eq!(listing.revoked_certificates, vec!["01".to_owned(), "0c".to_owned()]);
        let key = RegistryKey::ephemeral().expect("key");
        let stored = issue(&key, 1, listing, 4 * HOUR, HOUR);
        let directory = verify_directory_at(&stored.body, &stored.signature, key.public_key(), 4 * HOUR).expect("ok");
        assert_eq!(directory.revoked_certificates, vec!["01".to_owned(), "0c".to_owned()]);
    }

    #[test]
    fn statuses_follow_the_validity_period() {
        let records = [
            record("active", LicenceStatus::Active, 0, 10 * HOUR),
            record("ended", LicenceStatus::Active, 0, 5 * HOUR),
            record("later", LicenceStatus::Active, 7 * HOUR, 10 * HOUR),
            record("paused", LicenceStatus::Suspended, 0, 5 * HOUR),
            record("gone", LicenceStatus::Revoked, 0, 10 * HOUR),
        ];
        let now = 6 * HOUR;
        let statuses: Vec<(String, DirectoryStatus)> =
            listing_at(&records, &[], "", now).providers.into_iter().map(|p| (p.id, p.status)).collect();
        assert_eq!(
            statuses,
            vec![
                ("active".into(), DirectoryStatus::Active),
                ("ended".into(), DirectoryStatus::Expired),
                ("gone".into(), DirectoryStatus::Revoked),
                ("later".into(), DirectoryStatus::NotYetValid),
                ("paused".into(), DirectoryStatus::Suspended),
            ]
        );
        assert_eq!(next_transition(&records, now), Some(7 * HOUR));
        assert_ne!(
            listing_hash(&listing_at(&records, &[], "", now)),
            listing_hash(&listing_at(&records, &[], "", 8 * HOUR))
        );
    }
}
