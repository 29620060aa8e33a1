//! [`Registry`]: the regulator's service. Every change to a licence is one transaction that
//! stores the licence, appends its audit entry, and signs the directory it leads to, so the
//! directory's version moves with the licences and never skips or repeats after a restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rusqlite::Connection;

use crate::ca::{CertificateAuthority, DEFAULT_CERTIFICATE_VALIDITY};
use crate::directory::{self, listing_at, listing_hash};
use crate::error::{ErrorCode, RegistryError, RegistryResult};
use crate::keys::{self, RegistryKey};
use crate::model::{
    AuditAction, AuditEntry, AuditQuery, IssueLicence, Licence, LicenceStatus, RegistryKeyInfo, UpdateLicence,
};
use crate::store::{self, LicenceRecord, RegistryStore, StoredDirectory};
use crate::time::{Millis, now_millis};
use crate::validate;

mod enrolment;

pub use enrolment::renewal_message;

/// The label of the admin token made at first start: the actor its changes are recorded as.
pub const FIRST_ADMIN_LABEL: &str = "admin";
/// The shortest directory lifetime accepted.
pub const MIN_DIRECTORY_TTL: Duration = Duration::from_secs(60);
/// The shortest certificate validity accepted.
pub const MIN_CERTIFICATE_VALIDITY: Duration = Duration::from_secs(3600);
/// How long an enrolment token can be used unless configured otherwise.
pub const DEFAULT_ENROLMENT_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// How often [`Registry::keep_directory_fresh`] looks whether the directory is due.
const FRESHNESS_CHECK: Duration = Duration::from_secs(30);

/// How the registry behaves.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// How long a directory is valid after it is issued. It is re-issued (same version) when
    /// half of it has passed, so providers that refresh more often than that always hold a
    /// current one.
    pub directory_ttl: Duration,
    /// How long a provider's TLS certificate is valid from its issue.
    pub certificate_validity: Duration,
    /// How long an enrolment token can be used after it is made.
    pub enrolment_token_ttl: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            directory_ttl: Duration::from_secs(24 * 3600),
            certificate_validity: DEFAULT_CERTIFICATE_VALIDITY,
            enrolment_token_ttl: DEFAULT_ENROLMENT_TOKEN_TTL,
        }
    }
}

/// The directory being served, and when it is next due to change by time alone.
#[derive(Debug, Clone)]
pub struct Published {
    pub version: u64,
    pub issued_at: Millis,
    pub expires_at: Millis,
    /// The document, exactly as signed.
    pub body: Arc<[u8]>,
    /// The Ed25519 signature over `body`.
    pub signature: Arc<[u8]>,
    next_change_at: Millis,
}

impl Published {
    fn new(stored: StoredDirectory, next_change_at: Millis) -> Self {
        Self {
            version: stored.version,
            issued_at: stored.issued_at,
            expires_at: stored.expires_at,
            body: stored.body.into(),
            signature: stored.signature.into(),
            next_change_at,
        }
    }
}

/// What [`Registry::open`] found or made in the data directory.
#[derive(Debug)]
pub struct Opened {
    pub registry: Registry,
    /// The file the new admin token was written to, when one was made at this start.
    pub new_admin_token: Option<PathBuf>,
    /// Whether the signing key was made at this start.
    pub new_signing_key: bool,
    /// Whether the certificate authority's key and certificate were made at this start.
    pub new_ca: bool,
}

/// The regulator's registry. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Registry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: RegistryStore,
    key: RegistryKey,
    ca: CertificateAuthority,
    ttl_ms: Millis,
    certificate_validity: Duration,
    enrolment_token_ttl_ms: Millis,
    /// The SHA-256 of each admin token and its label.
    tokens: HashMap<[u8; 32], String>,
    current: RwLock<Arc<Published>>,
}

fn not_found(provider_id: &str) -> RegistryError {
    RegistryError::refused(ErrorCode::NotFound, format!("no licence for provider `{provider_id}`"))
}

impl Registry {
    /// Opens the registry in `dir`, creating the directory, the database, the signing key and
    /// the first admin token as needed, and makes sure a current directory is signed.
    pub async fn open(dir: &Path, config: RegistryConfig) -> RegistryResult<Opened> {
        if config.directory_ttl < MIN_DIRECTORY_TTL {
            return Err(RegistryError::refused(
                ErrorCode::BadRequest,
                format!("the directory's lifetime must be at least {} s", MIN_DIRECTORY_TTL.as_secs()),
            ));
        }
        if config.certificate_validity < MIN_CERTIFICATE_VALIDITY {
            return Err(RegistryError::refused(
                ErrorCode::BadRequest,
                format!("certificates must be valid for at least {} s", MIN_CERTIFICATE_VALIDITY.as_secs()),
            ));
        }
        create_private_dir(dir)?;
        let (key, new_signing_key) = RegistryKey::load_or_create(dir)?;
        let (ca, new_ca) = CertificateAuthority::load_or_create(dir, now_millis())?;
        let store = RegistryStore::open(dir)?;
        let mut new_admin_token = None;
        let mut stored_tokens = store.read(store::all_tokens).await?;
        if stored_tokens.is_empty() {
            // The file first: if we stop before the hash is stored, the next start makes a new one.
            let token = keys::generate_token()?;
            let path = keys::admin_token_path(dir);
            keys::write_secret(&path, format!("{token}\n").as_bytes())?;
            let hash = keys::hash_token(&token);
            store.write(move |tx| store::insert_token(tx, &hash, FIRST_ADMIN_LABEL, now_millis())).await?;
            stored_tokens = vec![(hash.to_vec(), FIRST_ADMIN_LABEL.to_owned())];
            new_admin_token = Some(path);
        }
        let tokens = stored_tokens
            .into_iter()
            .filter_map(|(hash, label)| Some((<[u8; 32]>::try_from(hash.as_slice()).ok()?, label)))
            .collect();
        let ttl_ms = i64::try_from(config.directory_ttl.as_millis()).unwrap_or(i64::MAX);
        let unsigned = Published {
            version: 0,
            issued_at: 0,
            expires_at: 0,
            body: Arc::from(Vec::new()),
            signature: Arc::from(Vec::new()),
            next_change_at: 0,
        };
        let enrolment_token_ttl_ms = i64::try_from(config.enrolment_token_ttl.as_millis()).unwrap_or(i64::MAX);
        let registry = Self {
            inner: Arc::new(Inner {
                store,
                key,
                ca,
                ttl_ms,
                certificate_validity: config.certificate_validity,
                enrolment_token_ttl_ms,
                tokens,
                current: RwLock::new(Arc::new(unsigned)),
            }),
        };
        registry.refresh_directory().await?;
        Ok(Opened { registry, new_admin_token, new_signing_key, new_ca })
    }

    /// The label of the admin token `token`, if it is one.
    pub fn authenticate(&self, token: &str) -> Option<&str> {
        self.inner.tokens.get(&keys::hash_token(token)).map(String::as_str)
    }

    /// The registry's public key.
    pub fn key_info(&self) -> RegistryKeyInfo {
        self.inner.key.info()
    }

    /// Every licence, by provider id.
    pub async fn licences(&self) -> RegistryResult<Vec<Licence>> {
        let records = self.inner.store.read(store::list_licences).await?;
        let now = now_millis();
        Ok(records.iter().map(|r| r.to_licence(now)).collect())
    }

    /// One licence.
    pub async fn licence(&self, provider_id: &str) -> RegistryResult<Licence> {
        let id = provider_id.to_owned();
        let record = self.inner.store.read(move |conn| store::get_licence(conn, &id)).await?;
        record.map(|r| r.to_licence(now_millis())).ok_or_else(|| not_found(provider_id))
    }

    /// Issues a licence to a new provider, active from `valid_from` (default now).
    pub async fn issue(&self, actor: &str, request: IssueLicence) -> RegistryResult<Licence> {
        let now = now_millis();
        let valid_from = request.valid_from.unwrap_or(now);
        validate::validity(valid_from, request.valid_until)?;
        if request.valid_until <= now {
            return Err(RegistryError::refused(ErrorCode::InvalidValidity, "valid_until has already passed"));
        }
        let record = LicenceRecord {
            provider_id: validate::provider_id(&request.provider_id)?,
            name: validate::name(&request.name)?,
            domain: validate::domain(&request.domain)?,
            endpoint: validate::endpoint(&request.endpoint)?,
            contact: validate::contact(&request.contact)?,
            licence_number: validate::licence_number(&request.licence_number)?,
            valid_from,
            valid_until: request.valid_until,
            status: LicenceStatus::Active,
            signing_keys: validate::signing_keys(&request.signing_keys)?,
            capabilities: validate::capabilities(&request.capabilities)?,
            issued_at: now,
            updated_at: now,
            delisted_at: None,
        };
        let reason = validate::optional_reason(request.reason.as_deref())?;
        let actor_label = actor.to_owned();
        let licence = self
            .write_and_publish(move |tx, _| {
                if let Some(conflict) = store::find_conflict(tx, &record)? {
                    return Err(conflict);
                }
                store::insert_licence(tx, &record)?;
                store::append_audit(
                    tx,
                    now,
                    &actor_label,
                    AuditAction::Issue,
                    &record.provider_id,
                    reason.as_deref(),
                    None,
                    &record,
                )?;
                Ok(record.to_licence(now))
            })
            .await?;
        tracing::info!(provider = %licence.provider_id, actor, "licence issued");
        Ok(licence)
    }

    /// Changes a licence's name, endpoint, contact, end of validity, signing keys or
    /// capabilities. A revoked licence does not change.
    pub async fn update(&self, actor: &str, provider_id: &str, request: UpdateLicence) -> RegistryResult<Licence> {
        let nothing = request.name.is_none()
            && request.endpoint.is_none()
            && request.contact.is_none()
            && request.valid_until.is_none()
            && request.signing_keys.is_none()
            && request.capabilities.is_none();
        if nothing {
            return Err(RegistryError::refused(ErrorCode::BadRequest, "the request changes nothing"));
        }
        let name = request.name.as_deref().map(validate::name).transpose()?;
        let endpoint = request.endpoint.as_deref().map(validate::endpoint).transpose()?;
        let contact = request.contact.as_deref().map(validate::contact).transpose()?;
        let signing_keys = request.signing_keys.as_deref().map(validate::signing_keys).transpose()?;
        let capabilities = request.capabilities.as_deref().map(validate::capabilities).transpose()?;
        let valid_until = request.valid_until;
        let reason = validate::optional_reason(request.reason.as_deref())?;
        self.change(actor, provider_id, AuditAction::Update, reason, move |record| {
            if record.status == LicenceStatus::Revoked {
                return Err(RegistryError::refused(
                    ErrorCode::InvalidTransition,
                    format!("the licence of `{}` is revoked and can no longer change", record.provider_id),
                ));
            }
            if let Some(valid_until) = valid_until {
                validate::validity(record.valid_from, valid_until)?;
                record.valid_until = valid_until;
            }
            set(&mut record.name, name);
            set(&mut record.endpoint, endpoint);
            set(&mut record.contact, contact);
            set(&mut record.signing_keys, signing_keys);
            set(&mut record.capabilities, capabilities);
            Ok(())
        })
        .await
    }

    /// Suspends an active licence: the directory lists the provider as suspended.
    pub async fn suspend(&self, actor: &str, provider_id: &str, reason: &str) -> RegistryResult<Licence> {
        self.transition(actor, provider_id, reason, AuditAction::Suspend, LicenceStatus::Suspended).await
    }

    /// Reinstates a suspended licence.
    pub async fn reinstate(&self, actor: &str, provider_id: &str, reason: &str) -> RegistryResult<Licence> {
        self.transition(actor, provider_id, reason, AuditAction::Reinstate, LicenceStatus::Active).await
    }

    /// Revokes an active or suspended licence, for good.
    pub async fn revoke(&self, actor: &str, provider_id: &str, reason: &str) -> RegistryResult<Licence> {
        self.transition(actor, provider_id, reason, AuditAction::Revoke, LicenceStatus::Revoked).await
    }

    /// Takes a revoked licence out of the directory, with its revoked certificates' serials:
    /// peers then know the provider no more than one never licensed (which they refuse just
    /// the same). The licence stays in the registry, and its id, number and domain stay taken.
    pub async fn delist(&self, actor: &str, provider_id: &str, reason: &str) -> RegistryResult<Licence> {
        let reason = validate::reason(reason)?;
        self.change(actor, provider_id, AuditAction::Delist, Some(reason), |record| {
            if record.status != LicenceStatus::Revoked || record.delisted_at.is_some() {
                let state = if record.delisted_at.is_some() { "delisted already" } else { record.status.as_str() };
                return Err(RegistryError::refused(
                    ErrorCode::InvalidTransition,
                    format!("only a revoked licence can be delisted; `{}`'s is {state}", record.provider_id),
                ));
            }
            // The moment is the change's own (set below).
            record.delisted_at = Some(0);
            Ok(())
        })
        .await
    }

    async fn transition(
        &self,
        actor: &str,
        provider_id: &str,
        reason: &str,
        action: AuditAction,
        to: LicenceStatus,
    ) -> RegistryResult<Licence> {
        let reason = validate::reason(reason)?;
        self.change(actor, provider_id, action, Some(reason), move |record| {
            let allowed = match to {
                LicenceStatus::Suspended => record.status == LicenceStatus::Active,
                LicenceStatus::Active => record.status == LicenceStatus::Suspended,
                LicenceStatus::Revoked => record.status != LicenceStatus::Revoked,
            };
            if !allowed {
                return Err(RegistryError::refused(
                    ErrorCode::InvalidTransition,
                    format!(
                        "cannot {} the licence of `{}`: it is {}",
                        action.as_str(),
                        record.provider_id,
                        record.status.as_str()
                    ),
                ));
            }
            record.status = to;
            Ok(())
        })
        .await
    }

    /// Applies `apply` to a stored licence in one transaction with its audit entry and the
    /// directory that follows.
    async fn change<F>(
        &self,
        actor: &str,
        provider_id: &str,
        action: AuditAction,
        reason: Option<String>,
        apply: F,
    ) -> RegistryResult<Licence>
    where
        F: FnOnce(&mut LicenceRecord) -> RegistryResult<()> + Send + 'static,
    {
        let id = provider_id.to_owned();
        let actor_label = actor.to_owned();
        let licence = self
            .write_and_publish(move |tx, now| {
                let before = store::get_licence(tx, &id)?.ok_or_else(|| not_found(&id))?;
                let mut after = before.clone();
                apply(&mut after)?;
                after.updated_at = now;
                if after.delisted_at.is_some() && before.delisted_at.is_none() {
                    after.delisted_at = Some(now);
                }
                store::replace_licence(tx, &after)?;
                store::append_audit(tx, now, &actor_label, action, &id, reason.as_deref(), Some(&before), &after)?;
                // A suspension keeps the certificates: the directory's status already refuses the
                // provider everywhere, and a reinstated provider works again without enrolling.
                if after.status == LicenceStatus::Revoked {
                    let why = format!("licence {}: {}", after.status.as_str(), reason.as_deref().unwrap_or("-"));
                    enrolment::revoke_all(tx, now, &actor_label, &id, &why)?;
                }
                Ok(after.to_licence(now))
            })
            .await?;
        tracing::info!(provider = %provider_id, actor, action = action.as_str(), status = licence.status.as_str(), "licence changed");
        Ok(licence)
    }

    /// Audit entries, oldest first.
    pub async fn audit(&self, query: AuditQuery) -> RegistryResult<Vec<AuditEntry>> {
        self.inner.store.read(move |conn| store::list_audit(conn, &query)).await
    }

    /// The directory to serve now: re-signed first when it is due (half its lifetime gone, or
    /// a licence's validity starting or ending since it was signed).
    pub async fn directory(&self) -> RegistryResult<Arc<Published>> {
        let current = self.current();
        if now_millis() < current.next_change_at {
            return Ok(current);
        }
        self.refresh_directory().await
    }

    /// Signs a new directory if one is due; returns the current one.
    pub async fn refresh_directory(&self) -> RegistryResult<Arc<Published>> {
        let inner = self.inner.clone();
        let published = self.inner.store.write(move |tx| inner.publish(tx, now_millis())).await?;
        self.install(published);
        Ok(self.current())
    }

    /// Runs forever, re-signing the directory whenever it is due, so that it stays current
    /// even when nobody asks for it.
    pub async fn keep_directory_fresh(self) {
        let mut every = tokio::time::interval(FRESHNESS_CHECK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if let Err(e) = self.directory().await {
                tracing::warn!(error = %e, "could not re-sign the directory");
            }
        }
    }

    fn current(&self) -> Arc<Published> {
        match self.inner.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Runs `change` in one write transaction (with the time of that transaction) together
    /// with the directory that follows it, and serves that directory once committed.
    async fn write_and_publish<T, F>(&self, change: F) -> RegistryResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, Millis) -> RegistryResult<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        let (value, published) = self
            .inner
            .store
            .write(move |tx| {
                let now = now_millis();
                let value = change(tx, now)?;
                Ok((value, inner.publish(tx, now)?))
            })
            .await?;
        self.install(published);
        Ok(value)
    }

    /// Serves `published` unless a newer one is already served (two changes may commit in
    /// one order and get here in the other).
    fn install(&self, published: Published) {
        let mut current = match self.inner.current.write() {
            Ok(current) => current,
            Err(poisoned) => poisoned.into_inner(),
        };
        let newer = (published.version, published.issued_at) >= (current.version, current.issued_at);
        if newer {
            *current = Arc::new(published);
        }
    }
}

impl Inner {
    /// Inside a transaction: signs and stores a new directory when the providers' entries
    /// changed (next version) or the stored one is past half its lifetime (same version);
    /// returns the directory to serve.
    fn publish(&self, conn: &Connection, now: Millis) -> RegistryResult<Published> {
        let records = store::list_licences(conn)?;
        let certificates = store::list_certificates(conn)?;
        let listing = listing_at(&records, &certificates, self.ca.certificate_pem(), now);
        let hash = listing_hash(&listing);
        let stored = store::load_directory(conn)?;
        let refresh_at = |s: &StoredDirectory| s.issued_at.saturating_add(self.ttl_ms / 2);
        let next_transition = directory::next_transition(&records, now).unwrap_or(Millis::MAX);
        let current = match stored {
            Some(s)
                if s.providers_hash == hash
                    && now < refresh_at(&s)
                    && s.expires_at - s.issued_at == self.ttl_ms
                    && s.issued_at <= now =>
            {
                s
            }
            previous => {
                let version = match &previous {
                    None => 1,
                    Some(s) if s.providers_hash == hash => s.version,
                    Some(s) => s.version + 1,
                };
                let signed = directory::issue(&self.key, version, listing, now, self.ttl_ms);
                store::save_directory(conn, &signed)?;
                if previous.as_ref().is_none_or(|p| p.version != version) {
                    tracing::info!(version, "directory signed");
                }
                signed
            }
        };
        let next_change_at = refresh_at(&current).min(next_transition);
        Ok(Published::new(current, next_change_at))
    }
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *field = value;
    }
}

/// Creates the data directory, readable by its owner only when it is new (it holds the
/// signing key and the admin token).
fn create_private_dir(dir: &Path) -> RegistryResult<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| RegistryError::Files(format!("cannot create {}: {e}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::verify_directory;
    use crate::model::DirectoryStatus;

    const DAY: Millis = 86_400_000;

    pub(super) fn temp_dir(label: &str) -> PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("peyvand-registry-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    pub(super) fn request(id: &str, number: &str) -> IssueLicence {
        IssueLicence {
            provider_id: id.into(),
            name: "پیام‌رسان نمونه".into(),
            domain: format!("{id}.ir"),
            endpoint: format!("https://ic.{id}.ir"),
            contact: "ops@example.ir".into(),
            licence_number: number.into(),
            valid_from: None,
            valid_until: now_millis() + 365 * DAY,
            signing_keys: Vec::new(),
            capabilities: vec!["messages".into()],
            reason: None,
        }
    }

    pub(super) fn code<T: std::fmt::Debug>(result: RegistryResult<T>) -> ErrorCode {
        result.expect_err("refused").code()
    }

    pub(super) async fn served(registry: &Registry) -> crate::directory::Directory {
        let published = registry.directory().await.expect("directory");
        verify_directory(&published.body, &published.signature, registry.inner.key.public_key()).expect("verifies")
    }

    /// Only a revoked licence is delisted, once; the directory then lists neither it nor its
    /// certificates' serials, as before it was issued, and the licence and its id stay.
    #[tokio::test]
    async fn a_revoked_licence_is_delisted_and_the_directory_is_as_before() {
        let dir = temp_dir("delist");
        let registry = Registry::open(&dir, RegistryConfig::default()).await.expect("open").registry;
        registry.issue("admin", request("bale", "L-1")).await.expect("issued");
        let before = served(&registry).await;
        registry.issue("admin", request("eitaa", "L-2")).await.expect("issued");
        assert_eq!(code(registry.delist("admin", "eitaa", "not revoked").await), ErrorCode::InvalidTransition);
        registry.revoke("admin", "eitaa", "test over").await.expect("revoked");
        assert!(served(&registry).await.provider("eitaa").is_some(), "a revoked licence is listed as revoked");
        assert_eq!(code(registry.delist("admin", "eitaa", " ").await), ErrorCode::InvalidReason);
        let delisted = registry.delist("admin", "eitaa", "test over").await.expect("delisted");
        assert!(delisted.delisted_at.is_some());
        assert_eq!(code(registry.delist("admin", "eitaa", "again").await), ErrorCode::InvalidTransition);
        let after = served(&registry).await;
        assert_eq!((&after.providers, &after.revoked_certificates), (&before.providers, &before.revoked_certificates));
        assert!(after.version > before.version);
        assert_eq!(registry.licence("eitaa").await.expect("kept").delisted_at, delisted.delisted_at);
        assert_eq!(code(registry.issue("admin", request("eitaa", "L-3")).await), ErrorCode::ProviderExists);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn licences_move_only_along_allowed_transitions() {
        let dir = temp_dir("transitions");
        let registry = Registry::open(&dir, RegistryConfig::default()).await.expect("open").registry;
        registry.issue("admin", request("bale", "L-1")).await.expect("issued");
        assert_eq!(code(registry.reinstate("admin", "bale", "why").await), ErrorCode::InvalidTransition);
        assert_eq!(code(registry.suspend("admin", "bale", " ").await), ErrorCode::InvalidReason);
        let suspended = registry.suspend("admin", "bale", "late report").await.expect("suspended");
        assert_eq!(suspended.status, LicenceStatus::Suspended);
        assert_eq!(code(registry.suspend("admin", "bale", "again").await), ErrorCode::InvalidTransition);
        registry.reinstate("admin", "bale", "report received").await.expect("reinstated");
        registry.revoke("admin", "bale", "licence terms broken").await.expect("revoked");
        for result in [
            registry.reinstate("admin", "bale", "x").await,
            registry.suspend("admin", "bale", "x").await,
            registry.revoke("admin", "bale", "x").await,
            registry.update("admin", "bale", UpdateLicence { name: Some("x".into()), ..Default::default() }).await,
        ] {
            assert_eq!(code(result), ErrorCode::InvalidTransition);
        }
        assert_eq!(code(registry.suspend("admin", "nobody", "x").await), ErrorCode::NotFound);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn clashes_and_bad_input_are_refused_with_their_codes() {
        let dir = temp_dir("clashes");
        let registry = Registry::open(&dir, RegistryConfig::default()).await.expect("open").registry;
        registry.issue("admin", request("bale", "L-1")).await.expect("issued");
        assert_eq!(code(registry.issue("admin", request("bale", "L-2")).await), ErrorCode::ProviderExists);
        assert_eq!(code(registry.issue("admin", request("eitaa", "L-1")).await), ErrorCode::LicenceNumberTaken);
        let mut same_domain = request("eitaa", "L-2");
        same_domain.domain = "bale.ir".into();
        assert_eq!(code(registry.issue("admin", same_domain).await), ErrorCode::DomainTaken);
        let mut ended = request("eitaa", "L-2");
        ended.valid_until = now_millis() - 1;
        assert_eq!(code(registry.issue("admin", ended).await), ErrorCode::InvalidValidity);
        let mut plain = request("eitaa", "L-2");
        plain.endpoint = "http://ic.eitaa.ir".into();
        assert_eq!(code(registry.issue("admin", plain).await), ErrorCode::InvalidEndpoint);
        let shorten = UpdateLicence { valid_until: Some(0), ..Default::default() };
        assert_eq!(code(registry.update("admin", "bale", shorten).await), ErrorCode::InvalidValidity);
        let bad_key = UpdateLicence { signing_keys: Some(vec!["AAAA".into()]), ..Default::default() };
        assert_eq!(code(registry.update("admin", "bale", bad_key).await), ErrorCode::InvalidSigningKey);
        assert_eq!(code(registry.update("admin", "bale", UpdateLicence::default()).await), ErrorCode::BadRequest);
        // Nothing refused reached the audit log.
        assert_eq!(registry.audit(AuditQuery::default()).await.expect("audit").len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn every_change_is_audited_and_moves_the_directory_version() {
        let dir = temp_dir("audit");
        let registry = Registry::open(&dir, RegistryConfig::default()).await.expect("open").registry;
        assert_eq!(served(&registry).await.version, 1);
        registry.issue("admin", request("bale", "L-1")).await.expect("issued");
        assert_eq!(served(&registry).await.version, 2);
        let key = crate::keys::encode_base64(&[9; 32]);
        let update = UpdateLicence {
            signing_keys: Some(vec![key.clone()]),
            capabilities: Some(vec!["discovery".into(), "messages".into()]),
            ..Default::default()
        };
        registry.update("operator", "bale", update).await.expect("updated");
        let directory = served(&registry).await;
        assert_eq!(directory.version, 3);
        let bale = directory.provider("bale").expect("listed");
        assert_eq!(bale.signing_keys, vec![key]);
        assert_eq!(bale.capabilities, vec!["discovery", "messages"]);
        registry.suspend("admin", "bale", "late report").await.expect("suspended");
        let directory = served(&registry).await;
        assert_eq!(directory.version, 4);
        assert_eq!(directory.provider("bale").map(|p| p.status), Some(DirectoryStatus::Suspended));
        // Asking again changes nothing.
        assert_eq!(served(&registry).await.version, 4);

        let entries = registry.audit(AuditQuery::default()).await.expect("audit");
        let actions: Vec<(AuditAction, &str)> = entries.iter().map(|e| (e.action, e.actor.as_str())).collect();
        assert_eq!(
            actions,
            vec![(AuditAction::Issue, "admin"), (AuditAction::Update, "operator"), (AuditAction::Suspend, "admin")]
        );
        let suspend = &entries[2];
        assert_eq!(suspend.reason.as_deref(), Some("late report"));
        assert_eq!(suspend.before.as_ref().and_then(|b| b["status"].as_str()), Some("active"));
        assert_eq!(suspend.after["status"].as_str(), Some("suspended"));
        assert!(entries[0].before.is_none() && entries.windows(2).all(|w| w[0].id < w[1].id && w[0].at <= w[1].at));
        let after_first = AuditQuery { after: Some(entries[0].id), limit: Some(1), ..Default::default() };
        assert_eq!(registry.audit(after_first).await.expect("page"), vec![entries[1].clone()]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn the_audit_log_cannot_be_rewritten() {
        let dir = temp_dir("append-only");
        let registry = Registry::open(&dir, RegistryConfig::default()).await.expect("open").registry;
        registry.issue("admin", request("bale", "L-1")).await.expect("issued");
        let tried = registry
            .inner
            .store
            .write(|tx| {
                tx.execute("UPDATE audit SET actor = 'nobody'", [])?;
                Ok(())
            })
            .await;
        assert!(tried.is_err());
        let tried = registry
            .inner
            .store
            .write(|tx| {
                tx.execute("DELETE FROM audit", [])?;
                Ok(())
            })
            .await;
        assert!(tried.is_err());
        assert_eq!(registry.audit(AuditQuery::default()).await.expect("audit")[0].actor, "admin");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_licence_that_runs_out_shows_as_expired_in_a_new_version() {
        let dir = temp_dir("expiry");
        let registry = Registry::open(&dir, RegistryConfig::default()).await.expect("open").registry;
        let mut short = request("bale", "L-1");
        short.valid_until = now_millis() + 300;
        registry.issue("admin", short).await.expect("issued");
        let before = served(&registry).await;
        assert_eq!(before.provider("bale").map(|p| p.status), Some(DirectoryStatus::Active));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let directory = served(&registry).await;
            if directory.provider("bale").map(|p| p.status) == Some(DirectoryStatus::Expired) {
                assert_eq!(directory.version, before.version + 1);
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the licence never showed as expired");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn everything_survives_a_reopen() {
        let dir = temp_dir("reopen");
        let opened = Registry::open(&dir, RegistryConfig::default()).await.expect("open");
        let token_file = opened.new_admin_token.clone().expect("a token at first start");
        assert!(opened.new_signing_key);
        let token = std::fs::read_to_string(&token_file).expect("token file");
        assert_eq!(opened.registry.authenticate(token.trim()), Some(FIRST_ADMIN_LABEL));
        assert_eq!(opened.registry.authenticate("pvr_wrong"), None);
        opened.registry.issue("admin", request("bale", "L-1")).await.expect("issued");
        let first = served(&opened.registry).await;
        let public_key = opened.registry.key_info().public_key;
        drop(opened);

        let again = Registry::open(&dir, RegistryConfig::default()).await.expect("reopen");
        assert!(again.new_admin_token.is_none() && !again.new_signing_key);
        assert_eq!(again.registry.key_info().public_key, public_key);
        assert_eq!(again.registry.authenticate(token.trim()), Some(FIRST_ADMIN_LABEL));
        assert_eq!(served(&again.registry).await, first);
        assert_eq!(again.registry.licences().await.expect("list").len(), 1);
        assert_eq!(again.registry.audit(AuditQuery::default()).await.expect("audit").len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_new_lifetime_re_signs_the_same_version() {
        let dir = temp_dir("ttl");
        let registry = Registry::open(&dir, RegistryConfig::default()).await.expect("open").registry;
        let first = served(&registry).await;
        drop(registry);
        let config = RegistryConfig { directory_ttl: Duration::from_secs(3600), ..Default::default() };
        let registry = Registry::open(&dir, config).await.expect("reopen").registry;
        let second = served(&registry).await;
        assert_eq!(second.version, first.version);
        assert_eq!(second.expires_at - second.issued_at, 3_600_000);
        let too_short = RegistryConfig { directory_ttl: Duration::from_secs(1), ..Default::default() };
        assert_eq!(code(Registry::open(&dir, too_short).await), ErrorCode::BadRequest);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
