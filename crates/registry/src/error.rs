//! Errors: the registry's stable codes on the wire (`{"error": {"code", "message"}}`, as in
//! the client API) and the library's typed error.

use serde::{Deserialize, Serialize};

/// Every error code the registry's API can return. The code is stable; the message is for
/// people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request body or query is not valid JSON or misses a field.
    BadRequest,
    PayloadTooLarge,
    MethodNotAllowed,
    /// No valid admin token was given.
    Unauthorized,
    NotFound,
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
    /// The storage could not take the change; nothing was changed.
    Unavailable,
    Internal,
}

impl ErrorCode {
    /// The HTTP status that goes with the code.
    pub fn http_status(self) -> u16 {
        match self {
            Self::BadRequest
            | Self::InvalidProviderId
            | Self::InvalidName
            | Self::InvalidDomain
            | Self::InvalidEndpoint
            | Self::InvalidContact
            | Self::InvalidLicenceNumber
            | Self::InvalidValidity
            | Self::InvalidSigningKey
            | Self::InvalidCapability
            | Self::InvalidReason => 400,
            Self::Unauthorized => 401,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::ProviderExists | Self::LicenceNumberTaken | Self::DomainTaken | Self::InvalidTransition => 409,
            Self::PayloadTooLarge => 413,
            Self::Internal => 500,
            Self::Unavailable => 503,
        }
    }

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::PayloadTooLarge => "payload_too_large",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Unauthorized => "unauthorized",
            Self::NotFound => "not_found",
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
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ApiError,
}

/// An error on the wire: a stable code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

/// What can go wrong in the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The request was refused: invalid input, an unknown licence, a forbidden transition.
    #[error("{0}")]
    Refused(ApiError),
    /// The storage failed; the change, if any, was not made.
    #[error("storage: {0}")]
    Storage(String),
    /// The data directory or a key file could not be read or written.
    #[error("{0}")]
    Files(String),
}

impl RegistryError {
    /// A refusal with a stable code.
    pub fn refused(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Refused(ApiError::new(code, message))
    }

    /// The code this error has on the wire.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Refused(e) => e.code,
            Self::Storage(_) => ErrorCode::Unavailable,
            Self::Files(_) => ErrorCode::Internal,
        }
    }

    /// The error as the API shows it. Storage and file details stay in the logs.
    pub fn to_api(&self) -> ApiError {
        match self {
            Self::Refused(e) => e.clone(),
            Self::Storage(_) => {
                ApiError::new(ErrorCode::Unavailable, "the registry's storage failed; nothing was changed")
            }
            Self::Files(_) => ApiError::new(ErrorCode::Internal, "internal error"),
        }
    }
}

impl From<rusqlite::Error> for RegistryError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Storage(e.to_string())
    }
}

impl From<serde_json::Error> for RegistryError {
    fn from(e: serde_json::Error) -> Self {
        Self::Storage(format!("stored JSON is invalid: {e}"))
    }
}

pub type RegistryResult<T> = Result<T, RegistryError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde() {
        for code in [ErrorCode::InvalidProviderId, ErrorCode::LicenceNumberTaken, ErrorCode::InvalidTransition] {
            let json = serde_json::to_value(code).expect("serialises");
            assert_eq!(json.as_str(), Some(code.as_str()));
        }
    }
}
