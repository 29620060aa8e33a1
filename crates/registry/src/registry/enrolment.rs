//! The certificate authority's side of [`Registry`]: one-time enrolment tokens, issuing a
//! provider's certificate from its CSR, and revoking certificates. Each is one transaction
//! with its audit entry and the directory that follows (which lists the current certificate
//! of every provider and every revoked serial).

use rusqlite::Connection;
use serde_json::json;

use super::{Registry, not_found};
use crate::error::{ErrorCode, RegistryError, RegistryResult};
use crate::keys;
use crate::model::{AuditAction, Certificate, DirectoryStatus, EnrolmentToken};
use crate::store::{self, CertificateRecord};
use crate::time::{Millis, now_millis};
use crate::validate;

/// The prefix of an enrolment token (an admin token starts with `pvr_`).
pub const ENROLMENT_TOKEN_PREFIX: &str = "pve_";

fn bad_token() -> RegistryError {
    RegistryError::refused(ErrorCode::InvalidEnrolmentToken, "the enrolment token is unknown, used or expired")
}

/// The actor the audit log records for what a provider did with its enrolment token.
fn provider_actor(provider_id: &str) -> String {
    format!("provider:{provider_id}")
}

impl Registry {
    /// Makes a one-time enrolment token for an active licence. Only its SHA-256 is kept; the
    /// token is in the answer and nowhere else.
    pub async fn create_enrolment_token(&self, actor: &str, provider_id: &str) -> RegistryResult<EnrolmentToken> {
        let token = format!("{ENROLMENT_TOKEN_PREFIX}{}", keys::generate_token()?.trim_start_matches("pvr_"));
        let hash = keys::hash_token(&token);
        let now = now_millis();
        let expires_at = now.saturating_add(self.inner.enrolment_token_ttl_ms);
        let id = provider_id.to_owned();
        let actor = actor.to_owned();
        self.inner
            .store
            .write(move |tx| {
                let licence = store::get_licence(tx, &id)?.ok_or_else(|| not_found(&id))?;
                require_active(licence.directory_status(now), &id)?;
                store::insert_enrolment_token(tx, &hash, &id, now, expires_at)?;
                let after = json!({ "expires_at": expires_at, "token_sha256": hex::encode(hash) });
                store::append_audit_event(tx, now, &actor, AuditAction::EnrolmentToken, &id, None, &after)?;
                Ok(())
            })
            .await?;
        tracing::info!(provider = %provider_id, "enrolment token made");
        Ok(EnrolmentToken { provider_id: provider_id.to_owned(), token, expires_at })
    }

    /// Uses a one-time enrolment token: checks the CSR against the licence (its domain and
    /// provider id), issues the certificate, and lists it in the directory. A `signing_key`
    /// (the provider's Ed25519 request-signing key, base64) is added to the licence's keys in
    /// the same transaction unless it is there already. A refused request (a bad CSR or key, a
    /// licence that is not active) leaves the token unused.
    pub async fn enrol(&self, token: &str, csr_pem: &str, signing_key: Option<&str>) -> RegistryResult<Certificate> {
        let token = token.trim();
        if !token.starts_with(ENROLMENT_TOKEN_PREFIX) {
            return Err(bad_token());
        }
        let signing_key = match signing_key {
            Some(key) => validate::signing_keys(&[key.to_owned()])?.pop(),
            None => None,
        };
        let hash = keys::hash_token(token);
        let csr = csr_pem.to_owned();
        let inner = self.inner.clone();
        let record = self
            .write_and_publish(move |tx, now| {
                let stored = store::get_enrolment_token(tx, &hash)?.ok_or_else(bad_token)?;
                if stored.used_at.is_some() || now >= stored.expires_at {
                    return Err(bad_token());
                }
                let id = stored.provider_id;
                let licence = store::get_licence(tx, &id)?.ok_or_else(|| not_found(&id))?;
                require_active(licence.directory_status(now), &id)?;
                if let Some(key) = signing_key.filter(|k| !licence.signing_keys.contains(k)) {
                    let mut after = licence.clone();
                    after.signing_keys.push(key);
                    after.signing_keys = validate::signing_keys(&after.signing_keys)?;
                    after.updated_at = now;
                    store::replace_licence(tx, &after)?;
                    store::append_audit(
                        tx,
                        now,
                        &provider_actor(&id),
                        AuditAction::Update,
                        &id,
                        Some("signing key registered at enrolment"),
                        Some(&licence),
                        &after,
                    )?;
                }
                if !store::use_enrolment_token(tx, &hash, now)? {
                    return Err(bad_token());
                }
                let record = issue_certificate(&inner, tx, now, &licence, &csr, None)?;
                Ok(record)
            })
            .await?;
        tracing::info!(provider = %record.provider_id, serial = %record.serial, "certificate issued");
        Ok(self.to_certificate(record))
    }

    /// Renews a provider's certificate without a token: the request is signed with one of the
    /// licence's signing keys (see [`renewal_message`]), the licence is active, the provider
    /// holds a certificate that is neither revoked nor expired, and `timestamp` is within five
    /// minutes of now and later than the provider's newest certificate (so a request cannot be
    /// used twice). The old certificate stays valid until it expires.
    pub async fn renew(
        &self,
        provider_id: &str,
        csr_pem: &str,
        timestamp: Millis,
        signature: &str,
    ) -> RegistryResult<Certificate> {
        let signature = keys::decode_signature(signature)
            .map_err(|e| RegistryError::refused(ErrorCode::InvalidSignature, format!("`signature`: {e}")))?;
        let (id, csr) = (provider_id.to_owned(), csr_pem.to_owned());
        let inner = self.inner.clone();
        let record = self
            .write_and_publish(move |tx, now| {
                let licence = store::get_licence(tx, &id)?.ok_or_else(|| not_found(&id))?;
                let message = renewal_message(&id, timestamp, &csr);
                let signed_by_licence = licence.signing_keys.iter().any(|key| {
                    keys::decode_public_key(key).is_ok_and(|key| {
                        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key)
                            .verify(&message, &signature)
                            .is_ok()
                    })
                });
                if !signed_by_licence {
                    return Err(RegistryError::refused(
                        ErrorCode::InvalidSignature,
                        "the renewal is not signed with one of the licence's signing keys",
                    ));
                }
                if now.abs_diff(timestamp) > RENEWAL_CLOCK_SKEW_MS.unsigned_abs() {
                    return Err(RegistryError::refused(
                        ErrorCode::StaleRequest,
                        "the renewal's timestamp is more than 5 minutes from the registry's clock",
                    ));
                }
                require_active(licence.directory_status(now), &id)?;
                let certificates: Vec<_> =
                    store::list_certificates(tx)?.into_iter().filter(|c| c.provider_id == id).collect();
                if certificates.iter().any(|c| c.issued_at >= timestamp) || !store::record_renewal(tx, &id, timestamp)?
                {
                    return Err(RegistryError::refused(
                        ErrorCode::ReplayedRequest,
                        "a certificate was issued, or a renewal signed, since this renewal was signed",
                    ));
                }
                if !certificates.iter().any(|c| c.revoked_at.is_none() && c.not_after > now) {
                    return Err(RegistryError::refused(
                        ErrorCode::InvalidTransition,
                        format!("`{id}` holds no valid certificate to renew: enrol with a token from the regulator"),
                    ));
                }
                let record = issue_certificate(&inner, tx, now, &licence, &csr, Some("renewal"))?;
                Ok(record)
            })
            .await?;
        tracing::info!(provider = %record.provider_id, serial = %record.serial, "certificate renewed");
        Ok(self.to_certificate(record))
    }

    /// Revokes one certificate by its serial (lowercase or uppercase hex).
    pub async fn revoke_certificate(&self, actor: &str, serial: &str, reason: &str) -> RegistryResult<Certificate> {
        let reason = validate::reason(reason)?;
        let serial = serial.trim().to_ascii_lowercase();
        let actor = actor.to_owned();
        let record = self
            .write_and_publish(move |tx, now| {
                let unknown =
                    || RegistryError::refused(ErrorCode::NotFound, format!("no certificate with serial `{serial}`"));
                let before = store::get_certificate(tx, &serial)?.ok_or_else(unknown)?;
                if before.revoked_at.is_some() {
                    return Err(RegistryError::refused(
                        ErrorCode::InvalidTransition,
                        format!("the certificate `{serial}` is already revoked"),
                    ));
                }
                revoke(tx, now, &actor, &before, &reason)?;
                store::get_certificate(tx, &serial)?.ok_or_else(unknown)
            })
            .await?;
        tracing::info!(provider = %record.provider_id, serial = %record.serial, "certificate revoked");
        Ok(self.to_certificate(record))
    }

    /// Every certificate issued to a provider, oldest first.
    pub async fn certificates(&self, provider_id: &str) -> RegistryResult<Vec<Certificate>> {
        let id = provider_id.to_owned();
        let (licence, records) = self
            .inner
            .store
            .read(move |conn| Ok((store::get_licence(conn, &id)?, store::list_certificates(conn)?)))
            .await?;
        if licence.is_none() {
            return Err(not_found(provider_id));
        }
        Ok(records.into_iter().filter(|c| c.provider_id == provider_id).map(|c| self.to_certificate(c)).collect())
    }

    /// The CA's certificate (PEM).
    pub fn ca_certificate_pem(&self) -> &str {
        self.inner.ca.certificate_pem()
    }

    fn to_certificate(&self, record: CertificateRecord) -> Certificate {
        Certificate {
            serial: record.serial,
            provider_id: record.provider_id,
            certificate: record.pem,
            ca_certificate: self.inner.ca.certificate_pem().to_owned(),
            not_before: record.not_before,
            not_after: record.not_after,
            revoked_at: record.revoked_at,
        }
    }
}

/// How far a renewal's timestamp may be from the registry's clock.
const RENEWAL_CLOCK_SKEW_MS: Millis = 5 * 60 * 1000;

/// What a provider signs (Ed25519, with a signing key of its licence) to renew its certificate
/// (`POST /v1/renew`): the purpose, the provider id, the timestamp (Unix milliseconds) and the
/// SHA-256 of the CSR (PEM, as sent), hex, one per line.
pub fn renewal_message(provider_id: &str, timestamp: Millis, csr_pem: &str) -> Vec<u8> {
    use sha2::Digest;
    let csr = hex::encode(sha2::Sha256::digest(csr_pem.as_bytes()));
    format!("peyvand-renewal/1\n{provider_id}\n{timestamp}\n{csr}").into_bytes()
}

/// Inside a transaction: issues a certificate for `licence` from `csr`, stores it and records
/// it in the audit log as the provider's own action.
fn issue_certificate(
    inner: &super::Inner,
    tx: &Connection,
    now: Millis,
    licence: &store::LicenceRecord,
    csr: &str,
    reason: Option<&str>,
) -> RegistryResult<CertificateRecord> {
    let id = &licence.provider_id;
    let issued = inner.ca.issue(csr, id, &licence.domain, now, inner.certificate_validity)?;
    let record = CertificateRecord {
        serial: issued.serial,
        provider_id: id.clone(),
        pem: issued.pem,
        not_before: issued.not_before,
        not_after: issued.not_after,
        issued_at: now,
        revoked_at: None,
        revoke_reason: None,
    };
    store::insert_certificate(tx, &record)?;
    let after = serde_json::to_value(&record)?;
    store::append_audit_event(tx, now, &provider_actor(id), AuditAction::CertificateIssue, id, reason, &after)?;
    Ok(record)
}

fn require_active(status: DirectoryStatus, provider_id: &str) -> RegistryResult<()> {
    if status == DirectoryStatus::Active {
        return Ok(());
    }
    Err(RegistryError::refused(
        ErrorCode::LicenceNotActive,
        format!("the licence of `{provider_id}` is {}: no certificate is issued", status.as_str()),
    ))
}

fn revoke(
    conn: &Connection,
    now: Millis,
    actor: &str,
    certificate: &CertificateRecord,
    reason: &str,
) -> RegistryResult<()> {
    store::revoke_certificate(conn, &certificate.serial, now, reason)?;
    let after = json!({ "serial": certificate.serial, "revoked_at": now, "not_after": certificate.not_after });
    store::append_audit_event(
        conn,
        now,
        actor,
        AuditAction::CertificateRevoke,
        &certificate.provider_id,
        Some(reason),
        &after,
    )?;
    Ok(())
}

/// Inside a transaction: revokes every certificate of the provider that is not revoked yet
/// (its licence was revoked).
pub(super) fn revoke_all(
    conn: &Connection,
    now: Millis,
    actor: &str,
    provider_id: &str,
    reason: &str,
) -> RegistryResult<()> {
    for certificate in store::list_certificates(conn)? {
        if certificate.provider_id == provider_id && certificate.revoked_at.is_none() {
            revoke(conn, now, actor, &certificate, reason)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::{code, request, served, temp_dir};
    use super::*;
    use crate::ca::generate_key_and_csr;
    use crate::model::AuditQuery;
    use crate::registry::{FIRST_ADMIN_LABEL as ADMIN, RegistryConfig};

    #[tokio::test]
    async fn an_enrolment_token_is_single_use_and_lists_the_certificate() {
        let dir = temp_dir("enrol");
        let registry = Registry::open(&dir, RegistryConfig::default()).await.expect("open").registry;
        registry.issue(ADMIN, request("bale", "L-1")).await.expect("issued");
        let before = served(&registry).await.version;
        let token = registry.create_enrolment_token(ADMIN, "bale").await.expect("token");
        assert!(token.token.starts_with(ENROLMENT_TOKEN_PREFIX));
        let (_, wrong) = generate_key_and_csr("bale", "eitaa.ir").expect("csr");
        assert_eq!(code(registry.enrol(&token.token, &wrong, None).await), ErrorCode::CsrNameMismatch);
        assert_eq!(code(registry.enrol(&token.token, "garbage", None).await), ErrorCode::InvalidCsr);
        // The refusals left the token unused.
        let (_, csr) = generate_key_and_csr("bale", "bale.ir").expect("csr");
        let certificate = registry.enrol(&token.token, &csr, None).await.expect("enrolled");
        assert_eq!(certificate.ca_certificate, registry.ca_certificate_pem());
        assert_eq!(code(registry.enrol(&token.token, &csr, None).await), ErrorCode::InvalidEnrolmentToken);
        assert_eq!(code(registry.enrol("pve_unknown", &csr, None).await), ErrorCode::InvalidEnrolmentToken);
        let directory = served(&registry).await;
        assert_eq!(directory.version, before + 1);
        let bale = directory.provider("bale").expect("listed");
        assert_eq!(bale.certificate_serial.as_deref(), Some(certificate.serial.as_str()));
        assert_eq!(bale.certificate.as_deref(), Some(certificate.certificate.as_str()));

        // Renewal: a fresh token, a new certificate that becomes the listed one.
        let again = registry.create_enrolment_token(ADMIN, "bale").await.expect("token");
        let renewed = registry.enrol(&again.token, &csr, None).await.expect("renewed");
        assert_ne!(renewed.serial, certificate.serial);
        let directory = served(&registry).await;
        assert_eq!(directory.provider("bale").and_then(|p| p.certificate_serial.clone()), Some(renewed.serial.clone()));

        // Revoking one certificate lists it and falls back to none once both are gone.
        registry.revoke_certificate(ADMIN, &renewed.serial, "key lost").await.expect("revoked");
        assert_eq!(
            code(registry.revoke_certificate(ADMIN, &renewed.serial, "again").await),
            ErrorCode::InvalidTransition
        );
        let directory = served(&registry).await;
        assert_eq!(directory.revoked_certificates, vec![renewed.serial.clone()]);
        assert_eq!(
            directory.provider("bale").and_then(|p| p.certificate_serial.clone()),
            Some(certificate.serial.clone())
        );

        // Suspending the licence keeps its certificate (the status refuses the provider), and
        // no token is made for it; revoking the licence revokes the rest.
        registry.suspend(ADMIN, "bale", "late report").await.expect("suspended");
        let directory = served(&registry).await;
        assert_eq!(
            directory.provider("bale").and_then(|p| p.certificate_serial.clone()),
            Some(certificate.serial.clone())
        );
        assert_eq!(directory.revoked_certificates, vec![renewed.serial.clone()]);
        assert_eq!(code(registry.create_enrolment_token(ADMIN, "bale").await), ErrorCode::LicenceNotActive);
        registry.revoke(ADMIN, "bale", "licence withdrawn").await.expect("revoked");
        let directory = served(&registry).await;
        assert_eq!(directory.provider("bale").and_then(|p| p.certificate.clone()), None);
        let mut revoked = vec![certificate.serial.clone(), renewed.serial.clone()];
        revoked.sort();
        assert_eq!(directory.revoked_certificates, revoked);
        assert_eq!(code(registry.create_enrolment_token(ADMIN, "nobody").await), ErrorCode::NotFound);

        let actions: Vec<AuditAction> =
            registry.audit(AuditQuery::default()).await.expect("audit").iter().map(|e| e.action).collect();
        assert_eq!(
            actions,
            vec![
                AuditAction::Issue,
                AuditAction::EnrolmentToken,
                AuditAction::CertificateIssue,
                AuditAction::EnrolmentToken,
                AuditAction::CertificateIssue,
                AuditAction::CertificateRevoke,
                AuditAction::Suspend,
                AuditAction::Revoke,
                AuditAction::CertificateRevoke,
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn an_expired_token_is_refused_and_a_suspended_licence_gets_no_certificate() {
        let dir = temp_dir("enrol-expiry");
        let config = RegistryConfig { enrolment_token_ttl: Duration::from_millis(200), ..Default::default() };
        let registry = Registry::open(&dir, config).await.expect("open").registry;
        registry.issue(ADMIN, request("bale", "L-1")).await.expect("issued");
        let (_, csr) = generate_key_and_csr("bale", "bale.ir").expect("csr");
        let token = registry.create_enrolment_token(ADMIN, "bale").await.expect("token");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(code(registry.enrol(&token.token, &csr, None).await), ErrorCode::InvalidEnrolmentToken);

        let token = registry.create_enrolment_token(ADMIN, "bale").await.expect("token");
        registry.suspend(ADMIN, "bale", "late report").await.expect("suspended");
        assert_eq!(code(registry.enrol(&token.token, &csr, None).await), ErrorCode::LicenceNotActive);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_provider_renews_with_its_signing_key_once_per_request() {
        use ring::signature::{Ed25519KeyPair, KeyPair};
        let dir = temp_dir("renew");
        let registry = Registry::open(&dir, RegistryConfig::default()).await.expect("open").registry;
        registry.issue(ADMIN, request("bale", "L-1")).await.expect("issued");
        let rng = ring::rand::SystemRandom::new();
        let key = Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).expect("key").as_ref()).expect("key");
        let other =
            Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).expect("key").as_ref()).expect("key");
        let sign = |key: &Ed25519KeyPair, at: Millis, csr: &str| {
            keys::encode_base64(key.sign(&renewal_message("bale", at, csr)).as_ref())
        };
        let (_, csr) = generate_key_and_csr("bale", "bale.ir").expect("csr");

        // Not before a first enrolment (which registers the key).
        let at = now_millis();
        assert_eq!(code(registry.renew("bale", &csr, at, &sign(&key, at, &csr)).await), ErrorCode::InvalidSignature);
        let token = registry.create_enrolment_token(ADMIN, "bale").await.expect("token");
        let public = keys::encode_base64(key.public_key().as_ref());
        let first = registry.enrol(&token.token, &csr, Some(&public)).await.expect("enrolled");

        // Refused: another key, a signature over something else, a stale or future timestamp,
        // garbage, an unknown provider.
        let at = now_millis();
        assert_eq!(code(registry.renew("bale", &csr, at, &sign(&other, at, &csr)).await), ErrorCode::InvalidSignature);
        assert_eq!(
            code(registry.renew("bale", &csr, at + 1, &sign(&key, at, &csr)).await),
            ErrorCode::InvalidSignature
        );
        let stale = at - 6 * 60 * 1000;
        assert_eq!(code(registry.renew("bale", &csr, stale, &sign(&key, stale, &csr)).await), ErrorCode::StaleRequest);
        let future = at + 6 * 60 * 1000;
        assert_eq!(
            code(registry.renew("bale", &csr, future, &sign(&key, future, &csr)).await),
            ErrorCode::StaleRequest
        );
        assert_eq!(code(registry.renew("bale", &csr, at, "garbage").await), ErrorCode::InvalidSignature);
        assert_eq!(code(registry.renew("nobody", &csr, at, &sign(&key, at, &csr)).await), ErrorCode::NotFound);
        let (_, wrong) = generate_key_and_csr("bale", "eitaa.ir").expect("csr");
        assert_eq!(code(registry.renew("bale", &wrong, at, &sign(&key, at, &wrong)).await), ErrorCode::CsrNameMismatch);

        // Renewed: a new certificate, listed; the same request again is refused (signed "in the
        // future", within the allowed skew, so that only the record of renewals refuses it).
        let (_, fresh) = generate_key_and_csr("bale", "bale.ir").expect("csr");
        let at = now_millis() + 4 * 60 * 1000;
        let signature = sign(&key, at, &fresh);
        let renewed = registry.renew("bale", &fresh, at, &signature).await.expect("renewed");
        assert_ne!(renewed.serial, first.serial);
        let listed = served(&registry).await.provider("bale").and_then(|p| p.certificate_serial.clone());
        assert_eq!(listed, Some(renewed.serial.clone()));
        assert_eq!(code(registry.renew("bale", &fresh, at, &signature).await), ErrorCode::ReplayedRequest);
        let log = registry.audit(AuditQuery::default()).await.expect("audit");
        let last = log.iter().max_by_key(|e| e.id).expect("an event");
        assert_eq!((last.action, last.reason.as_deref()), (AuditAction::CertificateIssue, Some("renewal")));

        // Only while the licence is active and a valid certificate is held.
        registry.suspend(ADMIN, "bale", "late report").await.expect("suspended");
        let at = now_millis() + 4 * 60 * 1000 + 2;
        assert_eq!(
            code(registry.renew("bale", &fresh, at, &sign(&key, at, &fresh)).await),
            ErrorCode::LicenceNotActive
        );
        registry.reinstate(ADMIN, "bale", "reported").await.expect("reinstated");
        for serial in [&first.serial, &renewed.serial] {
            registry.revoke_certificate(ADMIN, serial, "key lost").await.expect("revoked");
        }
        let at = now_millis() + 4 * 60 * 1000 + 3;
        assert_eq!(
            code(registry.renew("bale", &fresh, at, &sign(&key, at, &fresh)).await),
            ErrorCode::InvalidTransition
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
