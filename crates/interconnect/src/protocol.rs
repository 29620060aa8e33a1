//! The interconnect's wire format (`docs/protocol/`): the headers that authenticate a request
//! and the bodies of each endpoint. Every body is JSON.

use serde::{Deserialize, Serialize};

/// The protocol's name and major version, sent by `GET /interconnect/v1/provider`.
pub const PROTOCOL: &str = "peyvand-interconnect/1";
/// Where the interconnect's endpoints live on a provider's endpoint URL.
pub const PREFIX: &str = "/interconnect/v1";

/// The sending provider's id.
pub const HEADER_PROVIDER: &str = "peyvand-provider";
/// The receiving provider's id: a request signed for one provider is worthless at another.
pub const HEADER_TARGET: &str = "peyvand-target";
/// When the request was signed, in milliseconds since the Unix epoch.
pub const HEADER_TIMESTAMP: &str = "peyvand-timestamp";
/// 16 random bytes in lowercase hex, never reused: the receiver refuses a nonce it has seen.
pub const HEADER_NONCE: &str = "peyvand-nonce";
/// The Ed25519 signature (base64, standard, padded) of the request's canonical form.
pub const HEADER_SIGNATURE: &str = "peyvand-signature";

/// `GET /interconnect/v1/provider`: who answers, and what it speaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderInfo {
    pub provider_id: String,
    pub protocol: String,
    pub capabilities: Vec<String>,
}

/// `POST /interconnect/v1/lookup`: is a phone number reachable on the receiving provider?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupRequest {
    /// E.164, `+989121234567`.
    pub phone: String,
    /// The number (E.164) of the person asking, so that a target who allows only their
    /// contacts can be honoured.
    pub requester_phone: String,
}

/// The answer to a lookup. A number with no account and a number whose owner did not opt in
/// (or does not allow the requester) get the same answer, `found: false`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupResponse {
    pub found: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<RemoteUser>,
}

/// A person on another provider, as that provider shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteUser {
    /// `PHONE@PROVIDER-ID`, the person's address across messengers.
    pub address: String,
    pub display_name: String,
}

/// A person's address across messengers: `+989121234567@bale`.
pub fn address(phone: &str, provider_id: &str) -> String {
    format!("{phone}@{provider_id}")
}
