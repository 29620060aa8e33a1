//! The interconnect: how a Peyvand server talks to the servers of other licensed messengers
//! (`docs/protocol/` is the specification).
//!
//! - [`directory`]: the registry's signed directory, verified and refreshed; it decides which
//!   providers may be talked to, in both directions.
//! - [`identity`] and [`tls`]: this provider's signing key and CA-issued certificate; mutual
//!   TLS 1.3 on both sides.
//! - [`signing`] and [`replay`]: every request signed over its canonical form, timestamped and
//!   carrying a one-time nonce.
//! - [`inbound`]: the endpoints other providers call; [`peers`]: calling them.
//! - [`conformance`]: the conformance kit, which checks any provider against the protocol.
//! - [`Interconnect`] ties these to the messenger ([`peyvand_service::Service`]) and offers the
//!   client API's cross-messenger calls (lookup).

pub mod config;
pub mod conformance;
pub mod delivery;
pub mod directory;
pub mod identity;
pub mod inbound;
pub mod peers;
pub mod protocol;
pub mod replay;
pub mod signing;
pub mod tls;

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::future::join_all;
use peyvand_api::{ApiError, ErrorCode, ProviderFailure, Reachable, ReachableList};
use peyvand_http::listener::TlsSlot;
use peyvand_registry::model::DirectoryStatus;
use peyvand_registry::{Directory, RegistryClient};
use peyvand_service::federation::wire;
use peyvand_service::{Federation, Service, Session};
use reqwest::Method;

pub use config::{InterconnectConfig, InterconnectLimits};

use crate::directory::DirectoryCache;
use crate::identity::Identity;
use crate::peers::{Peers, Sender};
use crate::protocol::{LookupRequest, LookupResponse};
use crate::tls::{TlsIdentity, pem_certificate_facts, server_config};

/// What this implementation's interconnect offers, as listed in `GET /interconnect/v1/provider`.
pub const CAPABILITIES: &[&str] = &["discovery", "chat"];
const HOUR_MS: i64 = 3_600_000;
/// How long after a renewal (or a failed attempt) the certificate is not renewed again.
const RENEWAL_PAUSE: Duration = Duration::from_secs(3600);
/// The pause when even a new certificate is due at once (`certificate_renew_days` is not
/// shorter than what the registry issues), so that it is renewed daily, not hourly.
const RENEWAL_PAUSE_WHEN_ALWAYS_DUE: Duration = Duration::from_secs(24 * 3600);

/// Why the interconnect could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("interconnect configuration: {0}")]
    Config(String),
    #[error("interconnect files: {0}")]
    Files(String),
    #[error("the registry's directory: {0}")]
    Directory(String),
    #[error("enrolment with the registry failed: {0}")]
    Enrolment(String),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// See the crate's documentation. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Interconnect {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: InterconnectConfig,
    identity: Identity,
    tls_identity: RwLock<Arc<TlsIdentity>>,
    directory: DirectoryCache,
    /// Where the server's listener takes its TLS configuration from.
    tls_slot: TlsSlot,
    peers: Peers,
    delivery: delivery::Delivery,
    service: Service,
    registry: RegistryClient,
    /// When the certificate may be renewed again (after a renewal or a failed attempt).
    renewal_paused_until: std::sync::Mutex<Option<std::time::Instant>>,
    /// Media bytes received from and sent to each peer, by peer: (received, sent).
    media_traffic: std::sync::Mutex<std::collections::BTreeMap<String, (u64, u64)>>,
}

impl Interconnect {
    /// Loads or makes this provider's keys under `data/interconnect`, fetches the directory
    /// (or uses the copy kept from before when the registry does not answer), enrols with the
    /// registry when there is no usable certificate and a token is configured, and installs the
    /// TLS configuration in `tls_slot`.
    pub async fn start(
        config: InterconnectConfig,
        data: &Path,
        service: Service,
        tls_slot: TlsSlot,
    ) -> Result<Self, Error> {
        let provider_id = config.provider_id.trim().to_owned();
        if config.directory_refresh_secs == 0
            || config.request_timeout_secs == 0
            || config.retry_max_secs == 0
            || config.delivery_deadline_secs == 0
            || config.event_expiry_days == 0
            || config.certificate_renew_days == 0
        {
            return Err(Error::Config(
                "`directory_refresh_secs`, `request_timeout_secs`, `retry_max_secs`, `delivery_deadline_secs`, \
                 `event_expiry_days` and `certificate_renew_days` must be positive"
                    .into(),
            ));
        }
        // Past the expiry, queued events are dropped without a word: a message must fail first.
        if config.delivery_deadline_secs > config.event_expiry_days.saturating_mul(86_400) {
            return Err(Error::Config("`delivery_deadline_secs` must be at most `event_expiry_days`".into()));
        }
        let mut registry =
            RegistryClient::new(&config.registry, None).map_err(|e| Error::Config(format!("`registry`: {e}")))?;
        if let Some(path) = &config.registry_ca_file {
            registry = registry.trusting_file(path).map_err(|e| Error::Config(format!("`registry_ca_file`: {e}")))?;
        }
        let dir = data.join("interconnect");
        let identity = Identity::load_or_create(&dir, &provider_id)?;
        let directory = DirectoryCache::new(registry.clone(), &config.registry_key, dir)?;
        let current = match directory.refresh().await {
            Ok(current) => current,
            Err(e) => match directory.current() {
                Some(saved) => {
                    tracing::warn!(error = %e, version = saved.version, "the registry does not answer: using the saved directory");
                    saved
                }
                None => return Err(e),
            },
        };
        let me = current.provider(&provider_id).ok_or_else(|| {
            Error::Config(format!("provider `{provider_id}` is not in the registry's directory: is it licensed?"))
        })?;
        let token = config.enrolment_token.as_deref().map(str::trim).filter(|t| !t.is_empty());
        // A signing key the licence does not list (the key file was lost and made anew, or a
        // node got another node's certificate but not its key) would have every request
        // refused: enrol again, which registers it, or refuse to start.
        let key_listed = me.signing_keys.contains(&identity.signing_public);
        let kept = identity.tls()?.filter(|_| key_listed || token.is_none());
        if !key_listed && token.is_none() {
            return Err(Error::Enrolment(
                "this provider's signing key (interconnect/signing.pk8) is not in its licence: configure a new \
                 `enrolment_token` to register it, or restore the key file"
                    .into(),
            ));
        }
        let renew_before = config.renew_before_ms();
        let (certificate, key) = match (kept, token) {
            (Some(kept), token) if certificate_state(&kept.0, &current, renew_before) != CertificateState::Unusable => {
                match (certificate_state(&kept.0, &current, renew_before), token) {
                    (CertificateState::ExpiresSoon, Some(token)) => {
                        match identity.enrol(&registry, token, &me.domain).await {
                            Ok(renewed) => {
                                tracing::info!(provider = %provider_id, "certificate renewed");
                                renewed
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot renew the certificate, which expires soon");
                                kept
                            }
                        }
                    }
                    // Renewed in the background, signed with this provider's key.
                    (CertificateState::ExpiresSoon, None) => kept,
                    _ => kept,
                }
            }
            (_, Some(token)) => {
                let enrolled = identity.enrol(&registry, token, &me.domain).await?;
                tracing::info!(provider = %provider_id, "enrolled with the registry: certificate issued");
                enrolled
            }
            (Some(_), None) => {
                return Err(Error::Enrolment(
                    "this provider's certificate is revoked or expired: configure a new `enrolment_token`".into(),
                ));
            }
            (None, None) => {
                return Err(Error::Enrolment(
                    "this provider has no certificate yet: configure the `enrolment_token` the regulator issued".into(),
                ));
            }
        };
        let tls_identity = TlsIdentity::new(&certificate, &key, &current.ca_certificate)?;
        tls_slot.set(Some(server_config(&tls_identity, &current.ca_certificate)?));
        let peers = Peers::new(Duration::from_secs(config.request_timeout_secs));
        let inner = Inner {
            config,
            identity,
            tls_identity: RwLock::new(Arc::new(tls_identity)),
            directory,
            tls_slot,
            peers,
            delivery: delivery::Delivery::new(data)?,
            service: service.clone(),
            registry,
            renewal_paused_until: std::sync::Mutex::new(None),
            media_traffic: std::sync::Mutex::default(),
        };
        let interconnect = Self { inner: Arc::new(inner) };
        service.set_federation(Arc::new(interconnect.clone()));
        Ok(interconnect)
    }

    pub fn provider_id(&self) -> &str {
        &self.inner.identity.provider_id
    }

    pub fn config(&self) -> &InterconnectConfig {
        &self.inner.config
    }

    pub fn service(&self) -> &Service {
        &self.inner.service
    }

    /// The current directory, if it has not expired.
    pub fn directory(&self) -> Option<Arc<Directory>> {
        self.inner.directory.current()
    }

    /// This provider's TLS identity of the moment.
    pub(crate) fn tls_identity(&self) -> Arc<TlsIdentity> {
        match self.inner.tls_identity.read() {
            Ok(identity) => identity.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Calls a peer as this provider, with the directory of the moment.
    pub(crate) async fn call_peer<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        peer: &str,
        path: &str,
        body: &Req,
    ) -> Result<Resp, ApiError> {
        let directory = self.directory().ok_or_else(|| {
            ApiError::new(ErrorCode::Unavailable, "no current directory from the registry; retry later")
        })?;
        let tls = self.tls_identity();
        let sender = Sender { directory: &directory, me: &self.inner.identity, tls: &tls };
        self.inner.peers.call(&sender, peer, Method::POST, path, Some(body)).await
    }

    /// Counts media bytes received from (`true`) or sent to a peer.
    fn count_media(&self, peer: &str, received: bool, bytes: u64) {
        if let Ok(mut traffic) = self.inner.media_traffic.lock() {
            let entry = traffic.entry(peer.to_owned()).or_default();
            if received {
                entry.0 += bytes;
            } else {
                entry.1 += bytes;
            }
        }
    }

    /// Media bytes received from and sent to each peer, by peer.
    pub fn media_traffic(&self) -> Vec<(String, u64, u64)> {
        self.inner
            .media_traffic
            .lock()
            .map(|t| t.iter().map(|(peer, (received, sent))| (peer.clone(), *received, *sent)).collect())
            .unwrap_or_default()
    }

    /// The endpoints other providers call (mount on the server's router).
    pub fn router(&self) -> axum::Router {
        inbound::router(self.clone())
    }

    /// Fetches the directory now (as the periodic refresh does).
    pub async fn refresh_directory(&self) -> Result<(), Error> {
        self.inner.directory.refresh().await.map(|_| ())
    }

    /// Refreshes the directory every `directory_refresh_secs`, renews the certificate when it
    /// is due, and refreshes the TLS configuration (the CA could change). Runs until the
    /// process ends.
    pub async fn keep_directory_fresh(self) {
        let mut every = tokio::time::interval(Duration::from_secs(self.inner.config.directory_refresh_secs));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            every.tick().await;
            match self.inner.directory.refresh().await {
                Ok(directory) => {
                    tracing::debug!(version = directory.version, "directory refreshed");
                    self.renew_if_due(&directory).await;
                    let identity = self.inner.tls_identity.read().ok().map(|i| i.clone());
                    if let Some(identity) = identity {
                        match server_config(&identity, &directory.ca_certificate) {
                            Ok(config) => self.inner.tls_slot.set(Some(config)),
                            Err(e) => tracing::error!(error = %e, "the directory's CA certificate is unusable"),
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot refresh the directory"),
            }
        }
    }

    /// Renews this provider's certificate when it expires within `certificate_renew_days`
    /// (at most once per [`RENEWAL_PAUSE`], whether it worked or not), and puts the new one to
    /// use for calls and for the listener at once. The old one stays valid until it expires,
    /// so connections made with it are not disturbed.
    async fn renew_if_due(&self, directory: &Directory) {
        let identity = self.tls_identity();
        let renew_before = self.inner.config.renew_before_ms();
        match state_of(identity.facts(), directory, renew_before) {
            CertificateState::Good => return,
            CertificateState::Unusable => {
                // Only a new enrolment helps; say so at every refresh until it happens.
                tracing::error!(
                    "this provider's certificate is revoked or expired: peers refuse it; configure a new \
                     `enrolment_token` and restart"
                );
                return;
            }
            CertificateState::ExpiresSoon => {}
        }
        let now = std::time::Instant::now();
        {
            let Ok(mut paused) = self.inner.renewal_paused_until.lock() else { return };
            if paused.is_some_and(|until| now < until) {
                return;
            }
            *paused = Some(now + RENEWAL_PAUSE);
        }
        let Some(me) = directory.provider(self.provider_id()) else { return };
        let renewed = match self.inner.identity.renew(&self.inner.registry, &me.domain).await {
            Ok((certificate, key)) => TlsIdentity::new(&certificate, &key, &directory.ca_certificate)
                .map_err(|e| Error::Enrolment(format!("the renewed certificate: {e}"))),
            Err(e) => Err(e),
        };
        let renewed = match renewed {
            Ok(renewed) => Arc::new(renewed),
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the certificate; trying again in an hour");
                return;
            }
        };
        let serial = renewed.facts().map(|f| f.serial).unwrap_or_default();
        if let Ok(mut current) = self.inner.tls_identity.write() {
            *current = renewed.clone();
        }
        match server_config(&renewed, &directory.ca_certificate) {
            Ok(config) => self.inner.tls_slot.set(Some(config)),
            Err(e) => tracing::error!(error = %e, "the renewed certificate is unusable for the listener"),
        }
        tracing::info!(provider = %self.provider_id(), %serial, "certificate renewed");
        if state_of(renewed.facts(), directory, renew_before) == CertificateState::ExpiresSoon {
            tracing::warn!(
                days = self.inner.config.certificate_renew_days,
                "`certificate_renew_days` is not shorter than the certificates the registry issues: renewing once a day"
            );
            if let Ok(mut paused) = self.inner.renewal_paused_until.lock() {
                *paused = Some(now + RENEWAL_PAUSE_WHEN_ALWAYS_DUE);
            }
        }
    }

    /// `GET /v1/interconnect/lookup?phone=`: where a phone number can be reached: here (within
    /// the person's phone-discovery setting) and on every active peer that answers (within the
    /// person's "connect to other messengers" setting there). Peers that cannot be asked are
    /// listed with the reason. Counts against the person's hourly lookup limit.
    pub async fn lookup(&self, session: Session, raw_phone: &str) -> Result<ReachableList, ApiError> {
        let service = &self.inner.service;
        let phone = peyvand_core::phone::PhoneNumber::parse(raw_phone)
            .map_err(|e| ApiError::new(ErrorCode::InvalidPhone, e.to_string()))?;
        service
            .rate_limit(
                format!("ic:lookups:{}", session.user_id),
                HOUR_MS,
                self.inner.config.limits.lookups_per_user_per_hour,
                "lookups on other messengers",
            )
            .await?;
        let directory = self.directory().ok_or_else(|| {
            ApiError::new(ErrorCode::Unavailable, "no current directory from the registry; retry later")
        })?;
        let requester_phone = service.phone_of(session).await?;
        let mut reachable = Vec::new();
        let me = self.provider_id();
        let mut unreachable = Vec::new();
        let my_name = directory.provider(me).map_or_else(|| me.to_owned(), |p| p.name.clone());
        match service.resolve(session, phone.as_str()).await {
            Ok(profile) => reachable.push(Reachable {
                provider_id: me.to_owned(),
                provider_name: my_name,
                address: protocol::address(phone.as_str(), me),
                display_name: profile.display_name,
                local: true,
                user_id: Some(profile.id),
            }),
            Err(e) if e.code == ErrorCode::NotFound => {}
            Err(e) => {
                unreachable.push(ProviderFailure { provider_id: me.to_owned(), code: e.code, message: e.message })
            }
        }
        let request = LookupRequest { phone: phone.as_str().to_owned(), requester_phone };
        let tls = self.tls_identity();
        let asks = directory.providers.iter().filter(|p| {
            p.id != me && p.status == DirectoryStatus::Active && p.capabilities.iter().any(|c| c == "discovery")
        });
        let sender = Sender { directory: &directory, me: &self.inner.identity, tls: &tls };
        let answers = join_all(asks.map(|peer| {
            let request = &request;
            let sender = &sender;
            async move {
                let path = "/interconnect/v1/lookup";
                let answer: Result<LookupResponse, ApiError> =
                    self.inner.peers.call(sender, &peer.id, Method::POST, path, Some(request)).await;
                (peer, answer)
            }
        }))
        .await;
        let expected_address = |peer: &str| protocol::address(phone.as_str(), peer);
        for (peer, answer) in answers {
            match answer {
                Ok(LookupResponse { found: true, user: Some(user) }) if user.address == expected_address(&peer.id) => {
                    reachable.push(Reachable {
                        provider_id: peer.id.clone(),
                        provider_name: peer.name.clone(),
                        address: user.address,
                        display_name: user.display_name,
                        local: false,
                        user_id: None,
                    });
                }
                Ok(LookupResponse { found: true, user }) => unreachable.push(ProviderFailure {
                    provider_id: peer.id.clone(),
                    code: ErrorCode::PeerProtocol,
                    message: format!(
                        "`{}` answered with another person's address ({:?})",
                        peer.id,
                        user.map(|u| u.address)
                    ),
                }),
                Ok(_) => {}
                Err(error) => unreachable.push(ProviderFailure {
                    provider_id: peer.id.clone(),
                    code: error.code,
                    message: error.message,
                }),
            }
        }
        Ok(ReachableList { phone: phone.as_str().to_owned(), reachable, unreachable })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CertificateState {
    Good,
    /// Within `certificate_renew_days` of its end.
    ExpiresSoon,
    /// Revoked, expired, or not a certificate.
    Unusable,
}

fn certificate_state(certificate_pem: &str, directory: &Directory, renew_before_ms: i64) -> CertificateState {
    state_of(pem_certificate_facts(certificate_pem), directory, renew_before_ms)
}

fn state_of(facts: Option<tls::CertificateFacts>, directory: &Directory, renew_before_ms: i64) -> CertificateState {
    let now = peyvand_service::now_millis();
    match facts {
        Some(facts) if directory.revoked_certificates.contains(&facts.serial) || facts.not_after <= now => {
            CertificateState::Unusable
        }
        Some(facts) if facts.not_after - now <= renew_before_ms => CertificateState::ExpiresSoon,
        Some(_) => CertificateState::Good,
        None => CertificateState::Unusable,
    }
}

#[async_trait::async_trait]
impl Federation for Interconnect {
    fn provider_id(&self) -> &str {
        &self.inner.identity.provider_id
    }

    fn provider_name(&self, provider_id: &str) -> Option<String> {
        self.directory()?.provider(provider_id).map(|p| p.name.clone())
    }

    fn chat_peer(&self, peer: &str) -> Result<(), ApiError> {
        let directory = self
            .directory()
            .ok_or_else(|| ApiError::new(ErrorCode::Unavailable, "no current directory from the registry"))?;
        if let Some(listed) = directory.provider(peer)
            && !listed.capabilities.iter().any(|c| c == "chat")
        {
            return Err(ApiError::new(
                ErrorCode::PeerNotCapable,
                format!("`{peer}` does not take chats from other messengers (no `chat` capability in the directory)"),
            ));
        }
        peers::active_peer(&directory, peer).map(|_| ())
    }

    async fn invite(&self, peer: &str, invitation: &wire::Invitation) -> Result<wire::InvitationAnswer, ApiError> {
        self.call_peer(peer, "/interconnect/v1/invite", invitation).await
    }

    async fn submit(&self, hub: &str, submission: &wire::Submission) -> Result<wire::RoomEvent, ApiError> {
        let answer: wire::SubmissionAnswer = self.call_peer(hub, "/interconnect/v1/submit", submission).await?;
        Ok(answer.event)
    }

    async fn typing(&self, peer: &str, typing: &wire::Typing) {
        let (this, peer, typing) = (self.clone(), peer.to_owned(), typing.clone());
        // Ephemeral: nobody waits for it, and it is not retried.
        tokio::spawn(async move {
            let answer: Result<serde_json::Value, ApiError> =
                this.call_peer(&peer, "/interconnect/v1/typing", &typing).await;
            if let Err(e) = answer {
                tracing::debug!(%peer, error = %e, "typing not passed on");
            }
        });
    }

    async fn report(&self, peer: &str, report: &wire::Report) -> Result<(), ApiError> {
        let _: serde_json::Value = self.call_peer(peer, "/interconnect/v1/reports", report).await?;
        Ok(())
    }

    fn queued(&self, peer: &str) {
        self.wake(peer);
    }

    fn refused_from(&self, peer: &str, code: ErrorCode) {
        self.inner.delivery.count_refusal(peer, code);
    }

    fn sign_origin(&self, form: &[u8]) -> String {
        signing::sign_bytes(self.inner.identity.signing_key(), form)
    }

    fn verify_origin(&self, provider: &str, form: &[u8], signature: &str) -> bool {
        let Some(directory) = self.directory() else { return false };
        directory.provider(provider).is_some_and(|p| signing::verify_bytes(form, signature, &p.signing_keys))
    }

    fn delivery_problem(&self, peer: &str) -> Option<ApiError> {
        let Some(directory) = self.directory() else {
            return Some(ApiError::new(ErrorCode::Unavailable, "no current directory from the registry"));
        };
        if let Err(e) = peers::active_peer(&directory, peer) {
            return Some(e);
        }
        self.inner.delivery.problem(peer)
    }

    async fn fetch_media(
        &self,
        holder: &str,
        request: &wire::MediaRequest,
        max: u64,
    ) -> Result<peyvand_service::federation::MediaBytes, ApiError> {
        /// How long a media fetch may wait for its next bytes.
        const READ_IDLE: std::time::Duration = std::time::Duration::from_secs(30);
        let directory = self.directory().ok_or_else(|| {
            ApiError::new(ErrorCode::Unavailable, "no current directory from the registry; retry later")
        })?;
        let tls = self.tls_identity();
        let sender = Sender { directory: &directory, me: &self.inner.identity, tls: &tls };
        let query = media_query(request);
        let path = format!("/interconnect/v1/media?{query}");
        let response = self.inner.peers.get_bytes(&sender, holder, &path).await?;
        if response.content_length().is_some_and(|n| n > max) {
            return Err(ApiError::new(
                ErrorCode::MediaUnavailable,
                format!("`{holder}` offers more bytes than the message says"),
            ));
        }
        let (this, holder) = (self.clone(), holder.to_owned());
        let stream = futures_util::stream::unfold(Some(response), move |response| {
            let (this, holder) = (this.clone(), holder.clone());
            async move {
                let mut response = response?;
                match tokio::time::timeout(READ_IDLE, response.chunk()).await {
                    Ok(Ok(Some(chunk))) => {
                        this.count_media(&holder, true, chunk.len() as u64);
                        Some((Ok(chunk), Some(response)))
                    }
                    Ok(Ok(None)) => None,
                    Ok(Err(e)) => {
                        Some((Err(ApiError::new(ErrorCode::PeerUnavailable, format!("`{holder}`: {e}"))), None))
                    }
                    Err(_) => Some((
                        Err(ApiError::new(ErrorCode::PeerUnavailable, format!("`{holder}` stopped sending the file"))),
                        None,
                    )),
                }
            }
        });
        Ok(Box::pin(stream))
    }

    fn media_served(&self, peer: &str, bytes: u64) {
        self.count_media(peer, false, bytes);
    }
}

/// A media request as a query string (its values are ids and digits, and the hub's id).
fn media_query(request: &wire::MediaRequest) -> String {
    let hub: String = url_escape(&request.hub);
    format!("hub={hub}&room={}&seq={}&variant={}", request.room, request.seq, url_escape(&request.variant))
}

fn url_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
