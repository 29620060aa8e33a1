//! What can go wrong talking to a server.

use std::time::Duration;

use peyvand_api::{ApiError, ErrorCode};

/// An error from a [`crate::Client`] call.
///
/// [`ClientError::Api`] means the server understood the request and refused it with a stable
/// code; every other variant means the exchange itself failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error body.
    #[error("{error}")]
    Api { status: u16, error: ApiError },
    /// The server answered with an error status but no error body (a proxy, or a wrong URL).
    #[error("the server answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    /// The server could not be reached or the connection broke. Shown as one line with the
    /// root cause (`connection refused`), not the chain of wrappers around it, which repeat.
    #[error("could not reach the server{}: {}", at_url(.0), root_cause(.0))]
    Transport(reqwest::Error),
    /// The WebSocket could not be opened or broke.
    #[error("update stream: {}", root_cause(.0.as_ref()))]
    WebSocket(Box<tokio_tungstenite::tungstenite::Error>),
    /// The server did not answer in time.
    #[error("the server did not answer within {0:?}")]
    Timeout(Duration),
    /// The server closed the update stream.
    #[error("the server closed the update stream")]
    Closed,
    /// The server's answer was not what the API promises.
    #[error("the server sent an unexpected answer: {0}")]
    Decode(String),
    /// The session token has characters that cannot go in a header.
    #[error("the session token is not a valid header value")]
    InvalidToken,
    /// The base URL cannot be used.
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// A local file (being uploaded, or a download's destination) could not be read or written.
    #[error("local file: {0}")]
    LocalFile(std::io::Error),
}

impl ClientError {
    /// The server's error, when it answered with one.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            Self::Api { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The server's error code, when it answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        self.api_error().map(|e| e.code)
    }

    /// The HTTP status, when the server answered at all.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } | Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// How long the server asked us to wait, for rate limits.
    pub fn retry_after(&self) -> Option<Duration> {
        self.api_error().and_then(|e| e.retry_after).map(Duration::from_secs)
    }

    /// Whether trying the same request again later may succeed: the network failed, or the
    /// server said it was overloaded or unavailable. Sends are safe to retry because they
    /// carry a client id.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Api { error, .. } => matches!(
                error.code,
                ErrorCode::Unavailable | ErrorCode::Internal | ErrorCode::RateLimited | ErrorCode::TooManyAttempts
            ),
            Self::Status { status, .. } => *status >= 500 || *status == 429,
            Self::Transport(_) | Self::WebSocket(_) | Self::Timeout(_) | Self::Closed => true,
            Self::Decode(_) | Self::InvalidToken | Self::InvalidUrl { .. } | Self::LocalFile(_) => false,
        }
    }

    /// Builds the error for a non-success answer from its status and body.
    pub(crate) fn from_answer(status: u16, body: &[u8]) -> Self {
        match serde_json::from_slice::<peyvand_api::ErrorBody>(body) {
            Ok(parsed) => Self::Api { status, error: parsed.error },
            Err(_) => {
                // A body that is not ours is kept short: it is only there to help a person.
                let text = String::from_utf8_lossy(body);
                let body: String = text.chars().take(200).collect();
                Self::Status { status, body }
            }
        }
    }
}

/// The innermost error of a chain (`Connection refused (os error 111)`), which says what
/// happened; the layers above it (request, connect, TCP) each repeat it.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    if let Some(io) = cause.downcast_ref::<std::io::Error>() {
        return match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
            std::io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
            std::io::ErrorKind::TimedOut => "timed out".to_owned(),
            _ => io.to_string(),
        };
    }
    cause.to_string()
}

/// ` at http://host:port` for the request's server, without path or query.
fn at_url(error: &reqwest::Error) -> String {
    error.url().map(|url| format!(" at {}", url.origin().ascii_serialization())).unwrap_or_default()
}

impl From<reqwest::Error> for ClientError {
    fn from(error: reqwest::Error) -> Self {
        if error.is_decode() { Self::Decode(error.to_string()) } else { Self::Transport(error) }
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for ClientError {
    fn from(error: tokio_tungstenite::tungstenite::Error) -> Self {
        use tokio_tungstenite::tungstenite::Error as WsError;
        match error {
            // A refused handshake carries the server's answer: keep its error code.
            WsError::Http(response) => {
                let status = response.status().as_u16();
                Self::from_answer(status, response.body().as_deref().unwrap_or_default())
            }
            other => Self::WebSocket(Box::new(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_api_error() {
        let body = br#"{"error":{"code":"rate_limited","message":"slow down","retry_after":7}}"#;
        let error = ClientError::from_answer(429, body);
        assert_eq!(error.code(), Some(ErrorCode::RateLimited));
        assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(error.status(), Some(429));
        assert!(error.is_retryable());
        assert_eq!(error.to_string(), "rate_limited: slow down");
    }

    #[test]
    fn a_foreign_body_is_a_status_error() {
        let error = ClientError::from_answer(502, b"<html>bad gateway</html>");
        assert!(matches!(error, ClientError::Status { status: 502, .. }));
        assert_eq!(error.code(), None);
        assert!(error.is_retryable());
    }
}
