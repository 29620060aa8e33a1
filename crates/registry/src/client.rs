//! [`RegistryClient`]: the registry's API from Rust, for the `peyvand registry` commands and
//! (later) for providers fetching the directory.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::directory::{Directory, SIGNATURE_HEADER, VerifyError, verify_directory};
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::keys::decode_signature;
use crate::model::{
    AuditLog, AuditQuery, Certificate, CertificateList, EnrolRequest, EnrolmentToken, IssueLicence, Licence,
    LicenceList, RegistryKeyInfo, RenewRequest, StatusChange, UpdateLicence,
};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP client every `RegistryClient` uses: the system's CAs and `extra_roots`.
fn http_client(extra_roots: Vec<reqwest::Certificate>) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT).timeout(REQUEST_TIMEOUT);
    for root in extra_roots {
        builder = builder.add_root_certificate(root);
    }
    Ok(builder.build()?)
}

/// What can go wrong talking to the registry.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid registry URL `{url}`: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot reach the registry: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("the registry's CA certificate: {0}")]
    InvalidCa(String),
    /// The registry refused the request with a stable code.
    #[error("{0}")]
    Api(ApiError),
    /// An answer that is not the registry's: a proxy's error page, say.
    #[error("unexpected answer from the registry: HTTP {status}: {body}")]
    Http { status: u16, body: String },
    #[error("the directory came without a valid `{SIGNATURE_HEADER}` header")]
    MissingSignature,
    #[error(transparent)]
    Verify(#[from] VerifyError),
}

impl ClientError {
    /// The registry's error code, when it answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Api(e) => Some(e.code),
            _ => None,
        }
    }
}

/// The directory as served: the exact bytes and their detached signature.
#[derive(Debug, Clone)]
pub struct SignedDirectory {
    pub body: Vec<u8>,
    pub signature: Vec<u8>,
}

impl SignedDirectory {
    /// Checks it with [`verify_directory`].
    pub fn verify(&self, registry_public_key: &[u8]) -> Result<Directory, VerifyError> {
        verify_directory(&self.body, &self.signature, registry_public_key)
    }
}

/// A connection to one registry, with an admin token or without (for the public endpoints).
#[derive(Debug, Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

impl RegistryClient {
    /// A client for the registry at `base_url` (e.g. `http://127.0.0.1:8090`).
    pub fn new(base_url: &str, token: Option<String>) -> Result<Self, ClientError> {
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
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        Ok(Self { http: http_client(Vec::new())?, base, token })
    }

    /// Also trusts the certificate authority in `ca_pem` for the registry's HTTPS (besides the
    /// system's), for a registry whose certificate a private CA issued.
    pub fn trusting(mut self, ca_pem: &str) -> Result<Self, ClientError> {
        let certificates = reqwest::Certificate::from_pem_bundle(ca_pem.as_bytes())
            .map_err(|e| ClientError::InvalidCa(format!("not PEM certificates: {e}")))?;
        if certificates.is_empty() {
            return Err(ClientError::InvalidCa("no certificate in it".into()));
        }
        self.http = http_client(certificates)?;
        Ok(self)
    }

    /// [`Self::trusting`] the CA certificate in the PEM file at `path`.
    pub fn trusting_file(self, path: &std::path::Path) -> Result<Self, ClientError> {
        let pem = std::fs::read_to_string(path)
            .map_err(|e| ClientError::InvalidCa(format!("cannot read {}: {e}", path.display())))?;
        self.trusting(&pem)
    }

    /// The registry's base URL, ending with `/`.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    fn request(&self, method: Method, path: &str) -> Result<RequestBuilder, ClientError> {
        let url = self
            .base
            .join(path)
            .map_err(|e| ClientError::InvalidUrl { url: format!("{}{path}", self.base), reason: e.to_string() })?;
        let mut builder = self.http.request(method, url);
        if let Some(token) = &self.token {
            builder = builder.bearer_auth(token);
        }
        Ok(builder)
    }

    async fn send<T: DeserializeOwned>(&self, builder: RequestBuilder) -> Result<T, ClientError> {
        let response = check(builder.send().await?).await?;
        Ok(response.json().await?)
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(self.request(Method::GET, path)?).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, ClientError> {
        self.send(self.request(Method::POST, path)?.json(body)).await
    }

    /// `GET /v1/admin/licences`.
    pub async fn licences(&self) -> Result<Vec<Licence>, ClientError> {
        Ok(self.get::<LicenceList>("v1/admin/licences").await?.licences)
    }

    /// `GET /v1/admin/licences/{provider_id}`.
    pub async fn licence(&self, provider_id: &str) -> Result<Licence, ClientError> {
        self.get(&format!("v1/admin/licences/{}", segment(provider_id))).await
    }

    /// `POST /v1/admin/licences`.
    pub async fn issue(&self, request: &IssueLicence) -> Result<Licence, ClientError> {
        self.post("v1/admin/licences", request).await
    }

    /// `PATCH /v1/admin/licences/{provider_id}`.
    pub async fn update(&self, provider_id: &str, request: &UpdateLicence) -> Result<Licence, ClientError> {
        let path = format!("v1/admin/licences/{}", segment(provider_id));
        self.send(self.request(Method::PATCH, &path)?.json(request)).await
    }

    /// `POST /v1/admin/licences/{provider_id}/suspend`.
    pub async fn suspend(&self, provider_id: &str, reason: &str) -> Result<Licence, ClientError> {
        self.status_change(provider_id, "suspend", reason).await
    }

    /// `POST /v1/admin/licences/{provider_id}/reinstate`.
    pub async fn reinstate(&self, provider_id: &str, reason: &str) -> Result<Licence, ClientError> {
        self.status_change(provider_id, "reinstate", reason).await
    }

    /// `POST /v1/admin/licences/{provider_id}/revoke`.
    pub async fn revoke(&self, provider_id: &str, reason: &str) -> Result<Licence, ClientError> {
        self.status_change(provider_id, "revoke", reason).await
    }

    /// `POST /v1/admin/licences/{provider_id}/delist`: a revoked licence leaves the directory.
    pub async fn delist(&self, provider_id: &str, reason: &str) -> Result<Licence, ClientError> {
        self.status_change(provider_id, "delist", reason).await
    }

    async fn status_change(&self, provider_id: &str, action: &str, reason: &str) -> Result<Licence, ClientError> {
        let path = format!("v1/admin/licences/{}/{action}", segment(provider_id));
        self.post(&path, &StatusChange { reason: reason.to_owned() }).await
    }

    /// `POST /v1/admin/licences/{provider_id}/enrolment-tokens`.
    pub async fn create_enrolment_token(&self, provider_id: &str) -> Result<EnrolmentToken, ClientError> {
        let path = format!("v1/admin/licences/{}/enrolment-tokens", segment(provider_id));
        self.send(self.request(Method::POST, &path)?).await
    }

    /// `GET /v1/admin/licences/{provider_id}/certificates`.
    pub async fn certificates(&self, provider_id: &str) -> Result<Vec<Certificate>, ClientError> {
        let path = format!("v1/admin/licences/{}/certificates", segment(provider_id));
        Ok(self.get::<CertificateList>(&path).await?.certificates)
    }

    /// `POST /v1/admin/certificates/{serial}/revoke`.
    pub async fn revoke_certificate(&self, serial: &str, reason: &str) -> Result<Certificate, ClientError> {
        let path = format!("v1/admin/certificates/{}/revoke", segment(serial));
        self.post(&path, &StatusChange { reason: reason.to_owned() }).await
    }

    /// `POST /v1/enrol`: needs no admin token, only the one-time enrolment token.
    /// With `signing_key`, the provider's request-signing key joins its licence's keys.
    pub async fn enrol(
        &self,
        token: &str,
        csr_pem: &str,
        signing_key: Option<&str>,
    ) -> Result<Certificate, ClientError> {
        let request = EnrolRequest {
            token: token.to_owned(),
            csr: csr_pem.to_owned(),
            signing_key: signing_key.map(str::to_owned),
        };
        self.post("v1/enrol", &request).await
    }

    /// `POST /v1/renew`: a new certificate for `csr_pem`, for a provider that holds a valid one;
    /// `sign` signs [`crate::renewal_message`] with one of its licence's keys.
    pub async fn renew(
        &self,
        provider_id: &str,
        csr_pem: &str,
        timestamp: i64,
        sign: impl FnOnce(&[u8]) -> Vec<u8>,
    ) -> Result<Certificate, ClientError> {
        let message = crate::renewal_message(provider_id, timestamp, csr_pem);
        let request = RenewRequest {
            provider_id: provider_id.to_owned(),
            csr: csr_pem.to_owned(),
            timestamp,
            signature: crate::keys::encode_base64(&sign(&message)),
        };
        self.post("v1/renew", &request).await
    }

    /// `GET /v1/ca.pem`: the CA's certificate (PEM).
    pub async fn ca_certificate(&self) -> Result<String, ClientError> {
        Ok(check(self.request(Method::GET, "v1/ca.pem")?.send().await?).await?.text().await?)
    }

    /// `GET /v1/admin/audit`.
    pub async fn audit(&self, query: &AuditQuery) -> Result<AuditLog, ClientError> {
        self.send(self.request(Method::GET, "v1/admin/audit")?.query(query)).await
    }

    /// `GET /v1/registry-key`.
    pub async fn registry_key(&self) -> Result<RegistryKeyInfo, ClientError> {
        self.get("v1/registry-key").await
    }

    /// `GET /v1/directory`: the document and the signature from its header, not yet verified.
    pub async fn directory(&self) -> Result<SignedDirectory, ClientError> {
        let response = check(self.request(Method::GET, "v1/directory")?.send().await?).await?;
        let signature = response
            .headers()
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| decode_signature(v).ok())
            .ok_or(ClientError::MissingSignature)?;
        let body = response.bytes().await?.to_vec();
        Ok(SignedDirectory { body, signature: signature.to_vec() })
    }
}

/// A path segment with anything but unreserved characters percent-encoded.
fn segment(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The response if it succeeded; the registry's error otherwise.
async fn check(response: reqwest::Response) -> Result<reqwest::Response, ClientError> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    match serde_json::from_str::<ErrorBody>(&body) {
        Ok(parsed) => Err(ClientError::Api(parsed.error)),
        Err(_) => Err(ClientError::Http { status, body: body.chars().take(200).collect() }),
    }
}
