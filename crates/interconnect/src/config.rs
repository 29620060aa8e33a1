//! The `[interconnect]` section of the server's configuration.

use serde::Deserialize;

/// See the module's documentation. An empty `provider_id` leaves the interconnect off.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InterconnectConfig {
    /// This provider's id in the registry's directory (its licence).
    pub provider_id: String,
    /// The registry's URL (`http://registry.example:8090`).
    pub registry: String,
    /// The registry's Ed25519 public key, base64 (`peyvand registry key` prints it): the only
    /// thing trusted without checking, so it is configured, never fetched.
    pub registry_key: String,
    /// A CA certificate (PEM file) to trust for the registry's HTTPS, besides the system's.
    pub registry_ca_file: Option<std::path::PathBuf>,
    /// A one-time enrolment token from the regulator, used at start when this provider has no
    /// certificate yet (or its certificate was revoked or expires within 30 days).
    pub enrolment_token: Option<String>,
    /// How often the directory is fetched again; a suspension reaches this provider within it.
    pub directory_refresh_secs: u64,
    /// How long a call to another provider may take.
    pub request_timeout_secs: u64,
    /// The longest wait between two attempts to deliver to a peer that does not answer (the
    /// wait doubles from half a second up to this).
    pub retry_max_secs: u64,
    /// A message a peer has not taken within this many seconds is given up: taken off the
    /// queue and marked `failed` for its sender, with the last attempt's reason. At most
    /// `event_expiry_days`.
    pub delivery_deadline_secs: u64,
    /// Other events (edits, reactions, receipts) a peer has not taken within this many days are
    /// dropped.
    pub event_expiry_days: u64,
    /// The certificate is renewed (signed with this provider's key, no token) when it expires
    /// within this many days.
    pub certificate_renew_days: u64,
    pub limits: InterconnectLimits,
}

impl Default for InterconnectConfig {
    fn default() -> Self {
        Self {
            provider_id: String::new(),
            registry: String::new(),
            registry_key: String::new(),
            registry_ca_file: None,
            enrolment_token: None,
            directory_refresh_secs: 60,
            request_timeout_secs: 10,
            retry_max_secs: 300,
            delivery_deadline_secs: 86_400,
            event_expiry_days: 30,
            certificate_renew_days: 30,
            limits: InterconnectLimits::default(),
        }
    }
}

impl InterconnectConfig {
    pub fn enabled(&self) -> bool {
        !self.provider_id.trim().is_empty()
    }

    /// `certificate_renew_days` in milliseconds.
    pub fn renew_before_ms(&self) -> i64 {
        i64::try_from(self.certificate_renew_days).unwrap_or(i64::MAX / 86_400_000).saturating_mul(86_400_000)
    }
}

/// Rate limits of the interconnect, shared by the nodes of a cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InterconnectLimits {
    /// Cross-messenger lookups one person here may make (each asks every peer).
    pub lookups_per_user_per_hour: u32,
    /// Lookups one peer may ask of this provider.
    pub lookups_per_peer_per_minute: u32,
    /// Lookups one peer may ask on behalf of one of its users.
    pub lookups_per_remote_user_per_hour: u32,
    /// Requests of every other kind (transactions, actions, invitations, typing, reports) one
    /// peer may make.
    pub requests_per_peer_per_minute: u32,
    /// Actions in rooms hosted here (messages, edits, reactions, receipts) by one person on
    /// another messenger.
    pub actions_per_remote_user_per_minute: u32,
    /// New rooms one person on another messenger may invite people here to.
    pub invitations_per_remote_user_per_hour: u32,
    /// Abuse reports one peer may send.
    pub reports_per_peer_per_hour: u32,
    /// Media files (or thumbnails) one peer may fetch from this provider.
    pub media_fetches_per_peer_per_minute: u32,
    /// Media bytes one peer may fetch from this provider, in MiB.
    pub media_mib_per_peer_per_hour: u32,
}

impl Default for InterconnectLimits {
    fn default() -> Self {
        Self {
            lookups_per_user_per_hour: 60,
            lookups_per_peer_per_minute: 600,
            lookups_per_remote_user_per_hour: 60,
            requests_per_peer_per_minute: 6000,
            actions_per_remote_user_per_minute: 120,
            invitations_per_remote_user_per_hour: 30,
            reports_per_peer_per_hour: 100,
            media_fetches_per_peer_per_minute: 1200,
            media_mib_per_peer_per_hour: 50 * 1024,
        }
    }
}
