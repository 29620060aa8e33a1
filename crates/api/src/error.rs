//! Errors on the wire: `{"error": {"code": "...", "message": "..."}}` with a stable code.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every error code of Peyvand's APIs: the client API, the registry's, and the interconnect
/// between providers. The code is stable; the message is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request body or query is not valid JSON or misses a field.
    BadRequest,
    /// The request body is larger than the server accepts.
    PayloadTooLarge,
    /// The endpoint exists but not with this HTTP method.
    MethodNotAllowed,
    InvalidPhone,
    InvalidCode,
    CodeExpired,
    TooManyAttempts,
    RateLimited,
    /// The account (or the device) already has as many update streams (WebSockets and long
    /// polls) open on this server as it may: close one first.
    TooManyStreams,
    PinRequired,
    InvalidPin,
    /// No valid session token was given.
    Unauthorized,
    /// The user may not do this (privacy settings, a block, not a member).
    Forbidden,
    Blocked,
    PrivacyRestricted,
    NotFound,
    UsernameTaken,
    InvalidUsername,
    InvalidProfile,
    InvalidContent,
    /// A send reused a client id for different content.
    IdempotencyConflict,
    /// The update cursor is older than what the server keeps: fetch state again.
    ResyncRequired,
    /// The server could not store the request; retrying with the same client id is safe.
    Unavailable,
    Internal,
    // The registry's admin API (`peyvand registry`): a licence's fields and changes.
    InvalidProviderId,
    InvalidName,
    InvalidDomain,
    InvalidEndpoint,
    InvalidContact,
    InvalidLicenceNumber,
    InvalidValidity,
    InvalidSigningKey,
    InvalidCapability,
    InvalidReason,
    /// A licence for this provider id already exists (revoked ones included: ids are never reused).
    ProviderExists,
    LicenceNumberTaken,
    DomainTaken,
    /// The licence's status does not allow this change (reinstate only a suspended licence;
    /// nothing changes a revoked one).
    InvalidTransition,
    // The registry's certificate authority: enrolment of providers for mutual TLS.
    /// The enrolment token is unknown, already used or expired.
    InvalidEnrolmentToken,
    /// The certificate signing request is not a valid PEM CSR with a good signature.
    InvalidCsr,
    /// The CSR asks for names that are not the provider's (its domain, its id).
    CsrNameMismatch,
    /// The licence is not active (suspended, revoked, expired or not yet valid): no certificate.
    LicenceNotActive,
    // The interconnect: requests between providers, and the client API's cross-provider calls.
    /// This server is not connected to other messengers (no interconnect configured).
    InterconnectDisabled,
    /// No provider with this id is in the registry's directory.
    UnknownProvider,
    /// The peer's TLS certificate is not one the registry's CA issued to a listed provider.
    PeerNotListed,
    /// The provider's licence is not active in the current directory (suspended, revoked,
    /// expired, not yet valid), or it has no current certificate: nothing is exchanged with it.
    PeerNotActive,
    /// The request's provider signature is missing, malformed, or does not verify against the
    /// provider's signing keys in the directory.
    InvalidSignature,
    /// The request's signed timestamp is too far from the receiver's clock.
    StaleRequest,
    /// The request's nonce was already seen: a replay.
    ReplayedRequest,
    /// The peer provider could not be reached or did not answer in time; retry later.
    PeerUnavailable,
    /// The peer answered with something that is not the protocol.
    PeerProtocol,
    /// The two people already share a cross-messenger room hosted elsewhere or another copy.
    RoomConflict,
    /// The other provider does not offer this (its directory entry lacks the capability, such
    /// as `chat` for direct chats).
    PeerNotCapable,
    /// A room event attributed to someone it does not come from: one of the receiver's own
    /// people, when the receiver did not submit it (delivery.md, DELIVERY-18), or a person of a
    /// provider whose origin signature it does not carry (DELIVERY-21).
    ForgedEvent,
    /// A message for a seq the receiver's copy already holds with another message
    /// (DELIVERY-20): the copies of the room disagree.
    SeqConflict,
    /// A version of a signed form (an event's origin signature) that the receiver does not
    /// know (DELIVERY-21).
    UnsupportedVersion,
    // Media: uploads (tus), media items, downloads.
    /// The file's bytes are not of the declared kind, or of a type the kind does not allow
    /// (an HTML or SVG file sent as a photo, say).
    MediaTypeMismatch,
    /// The file is not a valid file of its type: truncated, corrupt, or unreadable.
    MediaInvalid,
    /// The file is larger than allowed: in bytes, or, for a photo, in width, height or pixels.
    MediaTooLarge,
    /// The upload is not at the offset the request gives (tus `Upload-Offset`): ask for the
    /// upload's offset (`HEAD`) and go on from there.
    UploadOffsetMismatch,
    /// The chunk's `Upload-Checksum` does not match its bytes; the chunk was not kept.
    ChecksumMismatch,
    /// The upload has expired (or was finished or cancelled): start a new one.
    UploadGone,
    /// The media item is not available: its bytes are gone, or the provider that holds them
    /// could not give them or gave bytes that do not match the message.
    MediaUnavailable,
}

impl ErrorCode {
    /// The HTTP status that goes with the code.
    pub fn http_status(self) -> u16 {
        match self {
            Self::BadRequest
            | Self::InvalidPhone
            | Self::InvalidUsername
            | Self::InvalidProfile
            | Self::InvalidContent
            | Self::InvalidProviderId
            | Self::InvalidName
            | Self::InvalidDomain
            | Self::InvalidEndpoint
            | Self::InvalidContact
            | Self::InvalidLicenceNumber
            | Self::InvalidValidity
            | Self::InvalidSigningKey
            | Self::InvalidCapability
            | Self::InvalidReason
            | Self::InvalidCsr
            | Self::CsrNameMismatch
            | Self::UnsupportedVersion => 400,
            Self::MediaTypeMismatch => 415,
            Self::MediaInvalid => 422,
            Self::MediaTooLarge => 413,
            Self::UploadOffsetMismatch => 409,
            // tus 1.0's checksum extension answers a mismatch with 460.
            Self::ChecksumMismatch => 460,
            Self::UploadGone => 410,
            Self::MediaUnavailable => 404,
            Self::InvalidSignature | Self::StaleRequest => 401,
            Self::PeerNotListed | Self::PeerNotActive => 403,
            Self::InterconnectDisabled | Self::UnknownProvider => 404,
            Self::ReplayedRequest => 409,
            Self::PeerUnavailable | Self::PeerProtocol => 502,
            Self::InvalidCode | Self::CodeExpired | Self::InvalidPin | Self::PinRequired => 401,
            Self::Unauthorized => 401,
            Self::Forbidden | Self::Blocked | Self::PrivacyRestricted | Self::InvalidEnrolmentToken => 403,
            Self::NotFound => 404,
            Self::UsernameTaken
            | Self::IdempotencyConflict
            | Self::ProviderExists
            | Self::LicenceNumberTaken
            | Self::DomainTaken
            | Self::InvalidTransition
            | Self::LicenceNotActive
            | Self::RoomConflict
            | Self::PeerNotCapable
            | Self::ForgedEvent
            | Self::SeqConflict => 409,
            Self::ResyncRequired => 410,
            Self::PayloadTooLarge => 413,
            Self::MethodNotAllowed => 405,
            Self::TooManyAttempts | Self::RateLimited | Self::TooManyStreams => 429,
            Self::Unavailable => 503,
            Self::Internal => 500,
        }
    }

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::PayloadTooLarge => "payload_too_large",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::InvalidPhone => "invalid_phone",
            Self::InvalidCode => "invalid_code",
            Self::CodeExpired => "code_expired",
            Self::TooManyAttempts => "too_many_attempts",
            Self::RateLimited => "rate_limited",
            Self::TooManyStreams => "too_many_streams",
            Self::PinRequired => "pin_required",
            Self::InvalidPin => "invalid_pin",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::Blocked => "blocked",
            Self::PrivacyRestricted => "privacy_restricted",
            Self::NotFound => "not_found",
            Self::UsernameTaken => "username_taken",
            Self::InvalidUsername => "invalid_username",
            Self::InvalidProfile => "invalid_profile",
            Self::InvalidContent => "invalid_content",
            Self::IdempotencyConflict => "idempotency_conflict",
            Self::ResyncRequired => "resync_required",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
            Self::InvalidProviderId => "invalid_provider_id",
            Self::InvalidName => "invalid_name",
            Self::InvalidDomain => "invalid_domain",
            Self::InvalidEndpoint => "invalid_endpoint",
            Self::InvalidContact => "invalid_contact",
            Self::InvalidLicenceNumber => "invalid_licence_number",
            Self::InvalidValidity => "invalid_validity",
            Self::InvalidSigningKey => "invalid_signing_key",
            Self::InvalidCapability => "invalid_capability",
            Self::InvalidReason => "invalid_reason",
            Self::ProviderExists => "provider_exists",
            Self::LicenceNumberTaken => "licence_number_taken",
            Self::DomainTaken => "domain_taken",
            Self::InvalidTransition => "invalid_transition",
            Self::InvalidEnrolmentToken => "invalid_enrolment_token",
            Self::InvalidCsr => "invalid_csr",
            Self::CsrNameMismatch => "csr_name_mismatch",
            Self::LicenceNotActive => "licence_not_active",
            Self::InterconnectDisabled => "interconnect_disabled",
            Self::UnknownProvider => "unknown_provider",
            Self::PeerNotListed => "peer_not_listed",
            Self::PeerNotActive => "peer_not_active",
            Self::InvalidSignature => "invalid_signature",
            Self::StaleRequest => "stale_request",
            Self::ReplayedRequest => "replayed_request",
            Self::PeerUnavailable => "peer_unavailable",
            Self::PeerProtocol => "peer_protocol",
            Self::RoomConflict => "room_conflict",
            Self::PeerNotCapable => "peer_not_capable",
            Self::ForgedEvent => "forged_event",
            Self::SeqConflict => "seq_conflict",
            Self::UnsupportedVersion => "unsupported_version",
            Self::MediaTypeMismatch => "media_type_mismatch",
            Self::MediaInvalid => "media_invalid",
            Self::MediaTooLarge => "media_too_large",
            Self::UploadOffsetMismatch => "upload_offset_mismatch",
            Self::ChecksumMismatch => "checksum_mismatch",
            Self::UploadGone => "upload_gone",
            Self::MediaUnavailable => "media_unavailable",
        }
    }
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ApiError,
}

/// An error: a stable code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds to wait before trying again, for `rate_limited` and `too_many_attempts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), retry_after: None }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde() {
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::ResyncRequired,
            ErrorCode::IdempotencyConflict,
            ErrorCode::InvalidLicenceNumber,
            ErrorCode::InvalidTransition,
            ErrorCode::InvalidEnrolmentToken,
            ErrorCode::CsrNameMismatch,
            ErrorCode::PeerNotActive,
            ErrorCode::ReplayedRequest,
            ErrorCode::RoomConflict,
            ErrorCode::PeerNotCapable,
            ErrorCode::ForgedEvent,
            ErrorCode::SeqConflict,
            ErrorCode::UnsupportedVersion,
            ErrorCode::TooManyStreams,
            ErrorCode::MediaTypeMismatch,
            ErrorCode::MediaInvalid,
            ErrorCode::MediaTooLarge,
            ErrorCode::UploadOffsetMismatch,
            ErrorCode::ChecksumMismatch,
            ErrorCode::UploadGone,
            ErrorCode::MediaUnavailable,
        ] {
            let json = serde_json::to_value(code).expect("serialises");
            assert_eq!(json.as_str(), Some(code.as_str()));
        }
    }
}
