//! The registry's wire types: licences, the admin API's requests, audit entries.

use serde::{Deserialize, Serialize};

use crate::time::Millis;

/// A licence's status as the regulator set it. `Revoked` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LicenceStatus {
    Active,
    Suspended,
    Revoked,
}

impl LicenceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Revoked => "revoked",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(Self::Active),
            "suspended" => Some(Self::Suspended),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

/// A provider's standing as the directory shows it: the stored status, with the licence's
/// validity period applied at the moment the directory is issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectoryStatus {
    Active,
    Suspended,
    Revoked,
    /// `valid_until` has passed.
    Expired,
    /// `valid_from` has not come yet.
    NotYetValid,
}

impl DirectoryStatus {
    /// Revoked wins over everything, then a suspension, then the validity period.
    pub fn of(status: LicenceStatus, valid_from: Millis, valid_until: Millis, now: Millis) -> Self {
        match status {
            LicenceStatus::Revoked => Self::Revoked,
            LicenceStatus::Suspended => Self::Suspended,
            LicenceStatus::Active if now >= valid_until => Self::Expired,
            LicenceStatus::Active if now < valid_from => Self::NotYetValid,
            LicenceStatus::Active => Self::Active,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
        }
    }
}

/// A provider's licence, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Licence {
    /// The provider's id: a lowercase DNS label (`rubika`, `bale`).
    pub provider_id: String,
    /// The provider's name for people (Persian is fine).
    pub name: String,
    /// The provider's domain (`bale.ir`).
    pub domain: String,
    /// Where other providers reach its interconnect API.
    pub endpoint: String,
    /// How the regulator reaches the operator (email, phone, address).
    pub contact: String,
    pub licence_number: String,
    pub valid_from: Millis,
    pub valid_until: Millis,
    pub status: LicenceStatus,
    /// `status` with the validity period applied now: what the directory says.
    pub directory_status: DirectoryStatus,
    /// The provider's Ed25519 public signing keys, base64 (standard, padded) of 32 bytes.
    pub signing_keys: Vec<String>,
    /// What the provider's interconnect supports (`messages`, `discovery`, ...).
    pub capabilities: Vec<String>,
    pub issued_at: Millis,
    pub updated_at: Millis,
    /// When the licence, revoked, was taken out of the directory (`delist`); absent while
    /// the directory lists it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delisted_at: Option<Millis>,
}

/// `POST /v1/admin/licences`: a new licence.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueLicence {
    pub provider_id: String,
    pub name: String,
    pub domain: String,
    pub endpoint: String,
    pub contact: String,
    pub licence_number: String,
    /// Defaults to now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<Millis>,
    pub valid_until: Millis,
    #[serde(default)]
    pub signing_keys: Vec<String>,
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Why, for the audit log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `PATCH /v1/admin/licences/{id}`: changes the given fields only. The provider id, domain and
/// licence number never change.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateLicence {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    /// A renewal (or a shortening) of the licence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<Millis>,
    /// Replaces every signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_keys: Option<Vec<String>>,
    /// Replaces every capability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
    /// Why, for the audit log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The body of suspend, reinstate and revoke.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusChange {
    /// Why, for the audit log; required.
    pub reason: String,
}

/// `GET /v1/admin/licences`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LicenceList {
    pub licences: Vec<Licence>,
}

/// What an audit entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    Issue,
    Update,
    Suspend,
    Reinstate,
    Revoke,
    /// A one-time enrolment token was made for the licence (the token itself is not recorded).
    EnrolmentToken,
    /// The CA issued a certificate to the provider.
    CertificateIssue,
    /// A certificate was revoked: by hand, or because its licence was revoked.
    CertificateRevoke,
    /// A revoked licence was taken out of the directory.
    Delist,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Issue => "issue",
            Self::Update => "update",
            Self::Suspend => "suspend",
            Self::Reinstate => "reinstate",
            Self::Revoke => "revoke",
            Self::EnrolmentToken => "enrolment_token",
            Self::CertificateIssue => "certificate_issue",
            Self::CertificateRevoke => "certificate_revoke",
            Self::Delist => "delist",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "issue" => Some(Self::Issue),
            "update" => Some(Self::Update),
            "suspend" => Some(Self::Suspend),
            "reinstate" => Some(Self::Reinstate),
            "revoke" => Some(Self::Revoke),
            "enrolment_token" => Some(Self::EnrolmentToken),
            "certificate_issue" => Some(Self::CertificateIssue),
            "certificate_revoke" => Some(Self::CertificateRevoke),
            "delist" => Some(Self::Delist),
            _ => None,
        }
    }
}

/// One change to one licence: who, when, what, and the licence before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Strictly increasing.
    pub id: i64,
    pub at: Millis,
    /// The label of the admin token that made the change (`admin`).
    pub actor: String,
    pub action: AuditAction,
    pub provider_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The stored licence before the change; absent for `issue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<serde_json::Value>,
    pub after: serde_json::Value,
}

/// `GET /v1/admin/audit`: entries after `after` (an entry id), oldest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<i64>,
    /// At most this many; 100 by default, 1000 at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `GET /v1/admin/audit`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditLog {
    pub entries: Vec<AuditEntry>,
}

/// `GET /v1/registry-key`: the key the directory is signed with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryKeyInfo {
    /// Always `ed25519`.
    pub algorithm: String,
    /// Base64 (standard, padded) of the 32-byte public key.
    pub public_key: String,
    /// The first 16 hex digits of the key's SHA-256, for people comparing keys.
    pub key_id: String,
}

/// `POST /v1/admin/licences/{id}/enrolment-tokens`: a one-time token for the provider to get
/// a certificate with. Shown only here, once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolmentToken {
    pub provider_id: String,
    pub token: String,
    pub expires_at: Millis,
}

/// `POST /v1/enrol`: a one-time enrolment token and a PEM certificate signing request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolRequest {
    pub token: String,
    pub csr: String,
    /// The provider's Ed25519 request-signing public key (base64 of 32 bytes), added to its
    /// licence's signing keys if it is not there already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
}

/// `POST /v1/renew`: a new certificate for a provider that holds a valid one, signed with one of
/// its licence's signing keys instead of a token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    pub provider_id: String,
    /// A PEM certificate signing request, as for enrolment.
    pub csr: String,
    /// When the provider signed the request (Unix milliseconds).
    pub timestamp: i64,
    /// Ed25519 signature (base64) of `registry::renewal_message(provider_id, timestamp, csr)`.
    pub signature: String,
}

/// A certificate the registry's CA issued, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    /// Lowercase hex.
    pub serial: String,
    pub provider_id: String,
    /// The certificate (PEM).
    pub certificate: String,
    /// The CA's certificate (PEM): the chain is `certificate` then this.
    pub ca_certificate: String,
    pub not_before: Millis,
    pub not_after: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Millis>,
}

/// `GET /v1/admin/licences/{id}/certificates`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertificateList {
    pub certificates: Vec<Certificate>,
}
