//! Mutual TLS 1.3 between providers, with certificates issued by the registry's CA.
//!
//! The server side accepts any client whose certificate chains to the CA; which provider it
//! is (the certificate's `urn:peyvand:provider:<id>` name) and whether that provider may be
//! talked to is then decided per request against the current directory, so that the refusal
//! is an HTTP error with a code rather than a bare TLS alert. The client side checks the
//! server's certificate against the CA, the provider's domain and id as the directory lists
//! them, and the directory's revoked serials.

use std::sync::Arc;

use peyvand_registry::ca::provider_uri;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use x509_parser::extensions::GeneralName;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the registry's CA certificate is missing or not valid PEM")]
    BadCa,
    #[error("this provider's certificate or key is not valid PEM")]
    BadIdentity,
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("TLS verifier: {0}")]
    Verifier(String),
}

/// What a provider's certificate says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFacts {
    /// From the certificate's `urn:peyvand:provider:<id>` name.
    pub provider_id: String,
    /// Lowercase hex, as the directory lists serials.
    pub serial: String,
    /// Milliseconds since the Unix epoch.
    pub not_after: i64,
}

/// Reads the provider id, serial and expiry from a DER certificate.
pub fn certificate_facts(der: &[u8]) -> Option<CertificateFacts> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    let names = certificate.subject_alternative_name().ok()??;
    let provider_id = names.value.general_names.iter().find_map(|name| match name {
        GeneralName::URI(uri) => uri.strip_prefix("urn:peyvand:provider:").map(str::to_owned),
        _ => None,
    })?;
    let not_after = certificate.validity().not_after.timestamp().saturating_mul(1000);
    Some(CertificateFacts { provider_id, serial: hex::encode(certificate.raw_serial()), not_after })
}

/// The facts of the first certificate in a PEM text.
pub fn pem_certificate_facts(pem: &str) -> Option<CertificateFacts> {
    let der = CertificateDer::pem_slice_iter(pem.as_bytes()).next()?.ok()?;
    certificate_facts(&der)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca_pem: &str) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(der.map_err(|_| TlsError::BadCa)?).map_err(|_| TlsError::BadCa)?;
    }
    if roots.is_empty() {
        return Err(TlsError::BadCa);
    }
    Ok(Arc::new(roots))
}

/// This provider's certificate chain (its certificate, then the CA's) and key.
#[derive(Debug)]
pub struct TlsIdentity {
    chain: Vec<CertificateDer<'static>>,
    key_pem: String,
    /// Tells identities apart (a renewal makes a new one), for what is built from one.
    pub generation: u64,
}

impl TlsIdentity {
    pub fn new(certificate_pem: &str, key_pem: &str, ca_pem: &str) -> Result<Self, TlsError> {
        let mut chain = Vec::new();
        for pem in [certificate_pem, ca_pem] {
            let der = CertificateDer::pem_slice_iter(pem.as_bytes()).next().ok_or(TlsError::BadIdentity)?;
            chain.push(der.map_err(|_| TlsError::BadIdentity)?);
        }
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|_| TlsError::BadIdentity)?;
        static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let generation = GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Self { chain, key_pem: key_pem.to_owned(), generation })
    }

    /// What this provider's own certificate says.
    pub fn facts(&self) -> Option<CertificateFacts> {
        certificate_facts(&self.chain[0])
    }

    fn key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(|_| TlsError::BadIdentity)
    }
}

/// The server side: TLS 1.3 only, a client certificate from the CA required.
pub fn server_config(identity: &TlsIdentity, ca_pem: &str) -> Result<Arc<ServerConfig>, TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca_pem)?, provider())
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain.clone(), identity.key()?)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The client side towards one peer: TLS 1.3 only, this provider's certificate offered (none
/// only for the conformance kit, which checks that peers refuse that), the peer's checked by
/// [`PeerVerifier`].
pub fn client_config(
    identity: Option<&TlsIdentity>,
    ca_pem: &str,
    peer_id: &str,
    peer_domain: &str,
    revoked: Vec<String>,
) -> Result<ClientConfig, TlsError> {
    let inner = WebPkiServerVerifier::builder_with_provider(roots(ca_pem)?, provider())
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let domain = ServerName::try_from(peer_domain.to_owned()).map_err(|e| TlsError::Verifier(e.to_string()))?;
    let verifier = PeerVerifier { inner, domain, provider_uri: provider_uri(peer_id), revoked };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match identity {
        Some(identity) => builder.with_client_auth_cert(identity.chain.clone(), identity.key()?)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Checks a peer's server certificate: it chains to the CA and names the peer's domain (as
/// the directory lists it, whatever address the endpoint URL uses), it carries the peer's
/// provider URI, and its serial is not revoked.
#[derive(Debug)]
struct PeerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    domain: ServerName<'static>,
    provider_uri: String,
    revoked: Vec<String>,
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(end_entity, intermediates, &self.domain, ocsp_response, now)?;
        let facts = certificate_facts(end_entity)
            .ok_or_else(|| rustls::Error::General("the peer's certificate names no provider".into()))?;
        if provider_uri(&facts.provider_id) != self.provider_uri {
            return Err(rustls::Error::General(format!(
                "the certificate is provider `{}`'s, not the one called",
                facts.provider_id
            )));
        }
        if self.revoked.contains(&facts.serial) {
            return Err(rustls::Error::General(format!("the peer's certificate {} is revoked", facts.serial)));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
