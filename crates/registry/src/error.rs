//! Errors: the registry's stable codes on the wire (`{"error": {"code", "message"}}`, as in
//! the client API) and the library's typed error.

// The registry's codes are part of the project's one catalogue of stable codes, with the
// client API's: one error body and one set of names for every HTTP API Peyvand serves.
pub use peyvand_api::{ApiError, ErrorBody, ErrorCode};

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
