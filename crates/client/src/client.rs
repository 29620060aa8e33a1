//! The client itself: the base URL, the session token, and the plumbing every endpoint uses.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, Url};
use serde::de::DeserializeOwned;

use crate::ClientError;

/// How long an ordinary request may take; long polls add their own wait to it.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to one Peyvand server, optionally signed in.
///
/// Cloning is cheap and shares the connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

impl Client {
    /// A client for the server at `base_url` (e.g. `http://127.0.0.1:8080`), not signed in.
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        let invalid = |reason: &str| ClientError::InvalidUrl { url: base_url.to_owned(), reason: reason.to_owned() };
        let mut base = Url::parse(base_url.trim()).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if base.host_str().is_none() {
            return Err(invalid("there is no host"));
        }
        base.set_query(None);
        base.set_fragment(None);
        // Endpoint paths are joined onto the base, which only keeps a path prefix (a server
        // behind `/peyvand/`) when it ends with a slash.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http =
            reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT).build().map_err(ClientError::Transport)?;
        Ok(Self { http, base, token: None })
    }

    /// The same client, signed in with a session token.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Signs in or out with a session token.
    pub fn set_token(&mut self, token: Option<String>) {
        self.token = token;
    }

    /// The session token in use.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The server's base URL, always ending with `/`.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The URL of an endpoint; `path` has no leading slash (`v1/me`).
    pub(crate) fn url(&self, path: &str) -> Result<Url, ClientError> {
        self.base
            .join(path)
            .map_err(|e| ClientError::InvalidUrl { url: format!("{}{path}", self.base), reason: e.to_string() })
    }

    /// A request to an endpoint, with the session token when there is one.
    pub(crate) fn request(&self, method: Method, path: &str) -> Result<RequestBuilder, ClientError> {
        let mut builder = self.http.request(method, self.url(path)?).timeout(REQUEST_TIMEOUT);
        if let Some(token) = &self.token {
            builder = builder.bearer_auth(token);
        }
        Ok(builder)
    }

    /// Sends a request and decodes its JSON answer, with the HTTP status it came with.
    pub(crate) async fn fetch<T: DeserializeOwned>(builder: RequestBuilder) -> Result<(u16, T), ClientError> {
        let (status, body) = Self::exchange(builder).await?;
        let value = serde_json::from_slice(&body).map_err(|e| ClientError::Decode(e.to_string()))?;
        Ok((status, value))
    }

    /// Sends a request and decodes its JSON answer.
    pub(crate) async fn json<T: DeserializeOwned>(builder: RequestBuilder) -> Result<T, ClientError> {
        Self::fetch(builder).await.map(|(_, value)| value)
    }

    /// Sends a request whose answer has no body (204).
    pub(crate) async fn empty(builder: RequestBuilder) -> Result<(), ClientError> {
        Self::exchange(builder).await.map(|_| ())
    }

    async fn exchange(builder: RequestBuilder) -> Result<(u16, Vec<u8>), ClientError> {
        let response: Response = builder.send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        if !status.is_success() {
            return Err(ClientError::from_answer(status.as_u16(), &body));
        }
        Ok((status.as_u16(), body.to_vec()))
    }
}

/// A fresh client id for [`crate::Client::send`]: 32 hex digits, so retries of one send share
/// it and different sends never collide. The first 12 are the milliseconds since 1970 and the
/// other 20 random (80 bits), so ids made later sort later: the server's index of client ids
/// then takes each new one on its newest pages instead of on a page of its own.
pub fn new_client_id() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64 & 0xffff_ffff_ffff);
    format!("{millis:012x}{:020x}", rand::random::<u128>() >> 48)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_32_hex_digits_that_sort_by_time() {
        let first = new_client_id();
        let mut later = new_client_id();
        // Ids of the same millisecond differ only in their random part; wait for the next one.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while later[..12] == first[..12] {
            assert!(std::time::Instant::now() < deadline, "the clock did not move");
            std::thread::yield_now();
            later = new_client_id();
        }
        for id in [&first, &later] {
            assert_eq!(id.len(), 32, "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{id}");
        }
        assert!(first < later, "{first} then {later}");
        assert_ne!(new_client_id()[12..], new_client_id()[12..], "the random part repeats");
    }

    #[test]
    fn joins_paths_under_a_prefix() {
        let client = Client::new("http://example.test:8080/peyvand").expect("valid url");
        assert_eq!(client.url("v1/me").expect("joins").as_str(), "http://example.test:8080/peyvand/v1/me");
        let client = Client::new("http://127.0.0.1:8080/").expect("valid url");
        assert_eq!(client.url("v1/chats/3").expect("joins").as_str(), "http://127.0.0.1:8080/v1/chats/3");
    }

    #[test]
    fn refuses_other_schemes() {
        assert!(matches!(Client::new("ftp://example.test"), Err(ClientError::InvalidUrl { .. })));
        assert!(matches!(Client::new("not a url"), Err(ClientError::InvalidUrl { .. })));
    }

    #[test]
    fn client_ids_differ() {
        let (a, b) = (new_client_id(), new_client_id());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
