//! Calling other providers: mutual TLS with this provider's certificate, every request signed,
//! and only to providers that the current directory lists as active.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use peyvand_api::{ApiError, ErrorBody, ErrorCode};
use peyvand_registry::model::DirectoryStatus;
use peyvand_registry::{Directory, DirectoryProvider};
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::identity::Identity;
use crate::protocol::{HEADER_NONCE, HEADER_PROVIDER, HEADER_SIGNATURE, HEADER_TARGET, HEADER_TIMESTAMP};
use crate::signing::{Signed, new_nonce};
use crate::tls::{TlsIdentity, client_config};

/// The largest answer read from a peer.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Who calls, with what: this provider's keys and the directory of the moment.
#[derive(Debug, Clone, Copy)]
pub struct Sender<'a> {
    pub directory: &'a Directory,
    pub me: &'a Identity,
    pub tls: &'a TlsIdentity,
}

/// HTTP clients to the peers, one per peer and per directory version (a new directory may
/// bring a new certificate, domain or revocation).
#[derive(Debug)]
pub struct Peers {
    timeout: Duration,
    /// By peer: the client, and the directory version and identity generation it was built for.
    clients: Mutex<HashMap<String, (u64, u64, reqwest::Client)>>,
}

/// Whether a provider in `directory` may be talked to now, with the error saying why not.
pub fn active_peer<'d>(directory: &'d Directory, provider_id: &str) -> Result<&'d DirectoryProvider, ApiError> {
    let provider = directory.provider(provider_id).ok_or_else(|| {
        ApiError::new(ErrorCode::UnknownProvider, format!("no provider `{provider_id}` in the registry's directory"))
    })?;
    if provider.status != DirectoryStatus::Active {
        return Err(ApiError::new(
            ErrorCode::PeerNotActive,
            format!("the licence of `{provider_id}` is {} in the registry's directory", provider.status.as_str()),
        ));
    }
    if provider.certificate.is_none() {
        return Err(ApiError::new(ErrorCode::PeerNotActive, format!("`{provider_id}` has no current certificate")));
    }
    Ok(provider)
}

fn unavailable(provider_id: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::PeerUnavailable, format!("cannot reach `{provider_id}`: {why}"))
}

impl Peers {
    pub fn new(timeout: Duration) -> Self {
        Self { timeout, clients: Mutex::new(HashMap::new()) }
    }

    fn client(
        &self,
        directory: &Directory,
        peer: &DirectoryProvider,
        identity: &TlsIdentity,
    ) -> Result<reqwest::Client, ApiError> {
        if let Ok(clients) = self.clients.lock()
            && let Some((version, generation, client)) = clients.get(&peer.id)
            && *version == directory.version
            && *generation == identity.generation
        {
            return Ok(client.clone());
        }
        let tls = client_config(
            Some(identity),
            &directory.ca_certificate,
            &peer.id,
            &peer.domain,
            directory.revoked_certificates.clone(),
        )
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("TLS towards `{}`: {e}", peer.id)))?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .build()
            .map_err(|e| ApiError::new(ErrorCode::Internal, format!("HTTP client towards `{}`: {e}", peer.id)))?;
        if let Ok(mut clients) = self.clients.lock() {
            // A call still holding an older identity does not replace a newer one's client.
            let older = clients.get(&peer.id).is_some_and(|(_, generation, _)| *generation > identity.generation);
            if !older {
                clients.insert(peer.id.clone(), (directory.version, identity.generation, client.clone()));
            }
        }
        Ok(client)
    }

    /// A request to `path` (under the peer's endpoint) on an active peer, signed by `me`.
    fn signed_request(
        &self,
        sender: &Sender<'_>,
        peer_id: &str,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<reqwest::RequestBuilder, ApiError> {
        let Sender { directory, me, tls } = *sender;
        let peer = active_peer(directory, peer_id)?;
        let client = self.client(directory, peer, tls)?;
        let (target, path_and_query) = request_target(&peer.endpoint, path)
            .map_err(|e| ApiError::new(ErrorCode::PeerProtocol, format!("`{peer_id}`'s endpoint: {e}")))?;
        let nonce = new_nonce();
        let timestamp = peyvand_service::now_millis();
        let signed = Signed {
            method: method.as_str(),
            path_and_query: &path_and_query,
            from: &me.provider_id,
            to: peer_id,
            timestamp,
            nonce: &nonce,
            body: &body,
        };
        let mut request = client
            .request(method.clone(), target)
            .header(HEADER_PROVIDER, &me.provider_id)
            .header(HEADER_TARGET, peer_id)
            .header(HEADER_TIMESTAMP, timestamp.to_string())
            .header(HEADER_NONCE, &nonce)
            .header(HEADER_SIGNATURE, signed.sign(me.signing_key()));
        if !body.is_empty() {
            request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
        }
        Ok(request)
    }

    /// `GET path` on an active peer, signed by `me`, answered with bytes rather than JSON: the
    /// answer as it comes, once its status is a success, with no deadline on the whole body
    /// (a file takes as long as it takes; the caller bounds each read). The peer's refusals
    /// come back with the peer's code.
    pub async fn get_bytes(
        &self,
        sender: &Sender<'_>,
        peer_id: &str,
        path: &str,
    ) -> Result<reqwest::Response, ApiError> {
        let request = self.signed_request(sender, peer_id, Method::GET, path, Vec::new())?;
        let response = request
            .timeout(Duration::from_secs(24 * 3600))
            .send()
            .await
            .map_err(|e| unavailable(peer_id, error_chain(&e)))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let bytes = response.bytes().await.unwrap_or_default();
        match serde_json::from_slice::<ErrorBody>(&bytes[..bytes.len().min(MAX_ANSWER_BYTES)]) {
            Ok(ErrorBody { error }) => {
                Err(ApiError { message: format!("`{peer_id}` refused: {}", error.message), ..error })
            }
            Err(_) => Err(ApiError::new(ErrorCode::PeerProtocol, format!("`{peer_id}` answered HTTP {status}"))),
        }
    }

    /// Calls `path` (under the peer's endpoint) on an active peer, signed by `me`, and reads
    /// its JSON answer. The peer's own refusals come back with the peer's code.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        sender: &Sender<'_>,
        peer_id: &str,
        method: Method,
        path: &str,
        body: Option<&Req>,
    ) -> Result<Resp, ApiError> {
        let body = match body {
            Some(body) => serde_json::to_vec(body).map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?,
            None => Vec::new(),
        };
        let request = self.signed_request(sender, peer_id, method, path, body)?;
        let mut response = request.send().await.map_err(|e| unavailable(peer_id, error_chain(&e)))?;
        let status = response.status();
        let too_much = || ApiError::new(ErrorCode::PeerProtocol, format!("`{peer_id}` answered with too much"));
        if response.content_length().is_some_and(|n| n > MAX_ANSWER_BYTES as u64) {
            return Err(too_much());
        }
        // Read no more than the limit, whatever the peer sends.
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| unavailable(peer_id, error_chain(&e)))? {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(too_much());
            }
            bytes.extend_from_slice(&chunk);
        }
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::new(ErrorCode::PeerProtocol, format!("`{peer_id}` answered with an unexpected body: {e}"))
            });
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(ErrorBody { error }) => {
                Err(ApiError { message: format!("`{peer_id}` refused: {}", error.message), ..error })
            }
            Err(_) => Err(ApiError::new(ErrorCode::PeerProtocol, format!("`{peer_id}` answered HTTP {status}"))),
        }
    }
}

/// The URL of `path` on a provider's `endpoint`, and the path and query the provider receives
/// (and the signature covers): the endpoint's own path, if any, followed by `path`.
pub fn request_target(endpoint: &str, path: &str) -> Result<(reqwest::Url, String), String> {
    let url = reqwest::Url::parse(&format!("{}{path}", endpoint.trim_end_matches('/'))).map_err(|e| e.to_string())?;
    let path_and_query = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    Ok((url, path_and_query))
}

/// An error with its causes, which is where TLS failures say what went wrong.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
