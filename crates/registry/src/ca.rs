//! The registry's certificate authority for mutual TLS between providers: an ECDSA P-256 key
//! and a self-signed CA certificate in the data directory, made at first start, and the
//! issuance of one provider's certificate from its certificate signing request (CSR).
//!
//! A provider's certificate names the provider twice: its domain as a DNS name (what TLS
//! checks) and `urn:peyvand:provider:<id>` as a URI (what the interconnect maps to a directory
//! entry); the subject's common name is the provider id. It is valid for both client and
//! server authentication, is not a CA, and lives [`DEFAULT_CERTIFICATE_VALIDITY`] by default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::{ErrorCode, RegistryError, RegistryResult};
use crate::keys::write_secret;
use crate::time::Millis;

/// The CA's private key (PKCS#8 PEM), mode 0600.
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// The CA's self-signed certificate (PEM): the trust anchor providers install.
pub const CA_CERT_FILE: &str = "ca-cert.pem";
/// How long a provider's certificate is valid unless configured otherwise.
pub const DEFAULT_CERTIFICATE_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);
/// How long the CA's own certificate is valid.
const CA_VALIDITY: Duration = Duration::from_secs(20 * 365 * 24 * 3600);
/// How far back a new certificate's `notBefore` is set, for peers whose clocks lag a little.
const BACKDATE_MS: Millis = 5 * 60 * 1000;
/// The subject of the CA's certificate.
const CA_COMMON_NAME: &str = "Peyvand registry CA";

/// The URI that names a provider in its certificate.
pub fn provider_uri(provider_id: &str) -> String {
    format!("urn:peyvand:provider:{provider_id}")
}

/// A certificate the CA issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// The serial number: 128 random bits, 32 lowercase hex digits.
    pub serial: String,
    pub pem: String,
    pub not_before: Millis,
    pub not_after: Millis,
}

/// The certificate authority: its key and certificate.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority").finish_non_exhaustive()
    }
}

fn ca_error(what: &str, e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Files(format!("{what}: {e}"))
}

fn to_time(at: Millis) -> RegistryResult<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(at.div_euclid(1000)).map_err(|e| ca_error("a time out of range", e))
}

fn millis(d: Duration) -> Millis {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A random positive 128-bit serial number.
fn random_serial() -> RegistryResult<Vec<u8>> {
    let mut bytes = vec![0u8; 16];
    SystemRandom::new().fill(&mut bytes).map_err(|_| RegistryError::Files("no randomness available".into()))?;
    // Positive and exactly 16 bytes long in DER: the top bit clear, the top byte not zero.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(bytes)
}

impl CertificateAuthority {
    /// Loads the CA from `dir`, or makes a new key and self-signed certificate there. Returns
    /// whether it was made now.
    pub fn load_or_create(dir: &Path, now: Millis) -> RegistryResult<(Self, bool)> {
        let key_path = dir.join(CA_KEY_FILE);
        let cert_path = dir.join(CA_CERT_FILE);
        if key_path.exists() {
            let read = |p: &PathBuf| {
                std::fs::read_to_string(p).map_err(|e| ca_error(&format!("cannot read {}", p.display()), e))
            };
            let key = KeyPair::from_pem(&read(&key_path)?).map_err(|e| ca_error("the CA key is not valid", e))?;
            let cert_pem = read(&cert_path)?;
            let issuer =
                Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| ca_error("the CA certificate is not valid", e))?;
            return Ok((Self { issuer, cert_pem }, false));
        }
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| ca_error("cannot make the CA key", e))?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, CA_COMMON_NAME);
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.not_before = to_time(now - BACKDATE_MS)?;
        params.not_after = to_time(now.saturating_add(millis(CA_VALIDITY)))?;
        params.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
        let cert = params.self_signed(&key).map_err(|e| ca_error("cannot sign the CA certificate", e))?;
        let cert_pem = cert.pem();
        // The key first: a certificate without its key would be useless at the next start.
        write_secret(&key_path, key.serialize_pem().as_bytes())?;
        std::fs::write(&cert_path, &cert_pem)
            .map_err(|e| ca_error(&format!("cannot write {}", cert_path.display()), e))?;
        Ok((Self { issuer: Issuer::new(params, key), cert_pem }, true))
    }

    /// The CA's certificate (PEM).
    pub fn certificate_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Checks `csr_pem` for the provider `provider_id` of `domain` and issues its certificate,
    /// valid from a few minutes before `now` for `validity`.
    pub fn issue(
        &self,
        csr_pem: &str,
        provider_id: &str,
        domain: &str,
        now: Millis,
        validity: Duration,
    ) -> RegistryResult<IssuedCertificate> {
        let csr = check_csr(csr_pem, provider_id, domain)?;
        let serial = random_serial()?;
        let not_before = now - BACKDATE_MS;
        let not_after = now.saturating_add(millis(validity));
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, provider_id);
        params.distinguished_name = name;
        params.subject_alt_names = vec![
            SanType::DnsName(domain.try_into().map_err(|e| ca_error("the domain is not IA5", e))?),
            SanType::URI(provider_uri(provider_id).try_into().map_err(|e| ca_error("the URI is not IA5", e))?),
        ];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = to_time(not_before)?;
        params.not_after = to_time(not_after)?;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let request = CertificateSigningRequestParams { params, public_key: csr.public_key };
        let cert = request.signed_by(&self.issuer).map_err(|e| ca_error("cannot sign the certificate", e))?;
        Ok(IssuedCertificate {
            serial: hex::encode(serial),
            pem: cert.pem(),
            not_before: not_before.div_euclid(1000) * 1000,
            not_after: not_after.div_euclid(1000) * 1000,
        })
    }
}

fn dn_text(value: &DnValue) -> Option<&str> {
    match value {
        DnValue::Utf8String(s) => Some(s),
        DnValue::PrintableString(s) => Some(s.as_str()),
        DnValue::Ia5String(s) => Some(s.as_str()),
        _ => None,
    }
}

/// Parses a CSR, verifies its signature, and checks that it asks only for the provider's own
/// names: DNS SAN `domain` (required), URI SAN [`provider_uri`], and no subject but an
/// optional common name equal to the provider id. Requested extensions other than these are
/// ignored: the CA decides what the certificate says.
pub fn check_csr(csr_pem: &str, provider_id: &str, domain: &str) -> RegistryResult<CertificateSigningRequestParams> {
    let csr = CertificateSigningRequestParams::from_pem(csr_pem.trim()).map_err(|e| {
        RegistryError::refused(ErrorCode::InvalidCsr, format!("not a valid PEM certificate signing request: {e}"))
    })?;
    let mismatch = |what: String| RegistryError::refused(ErrorCode::CsrNameMismatch, what);
    for (kind, value) in csr.params.distinguished_name.iter() {
        match (kind, dn_text(value)) {
            (DnType::CommonName, Some(cn)) if cn == provider_id => {}
            (DnType::CommonName, cn) => {
                return Err(mismatch(format!(
                    "the request's common name is `{}`, not the provider id `{provider_id}`",
                    cn.unwrap_or("?")
                )));
            }
            _ => return Err(mismatch("the request's subject may hold only the common name".into())),
        }
    }
    let uri = provider_uri(provider_id);
    let mut has_domain = false;
    for san in &csr.params.subject_alt_names {
        match san {
            SanType::DnsName(name) if name.as_str().eq_ignore_ascii_case(domain) => has_domain = true,
            SanType::URI(value) if value.as_str() == uri => {}
            other => {
                return Err(mismatch(format!(
                    "the request names {other:?}; only `{domain}` and `{uri}` may be asked for"
                )));
            }
        }
    }
    if !has_domain {
        return Err(mismatch(format!("the request must name the provider's domain `{domain}`")));
    }
    Ok(csr)
}

/// What a provider makes for enrolment: a new ECDSA P-256 key (PKCS#8 PEM) and a CSR (PEM)
/// that names its domain and id.
pub fn generate_key_and_csr(provider_id: &str, domain: &str) -> RegistryResult<(String, String)> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| ca_error("cannot make a key", e))?;
    let csr = csr_for(&key, provider_id, domain)?;
    Ok((key.serialize_pem(), csr))
}

/// A CSR (PEM) for `key` that names `domain` and the provider id.
pub fn csr_for(key: &KeyPair, provider_id: &str, domain: &str) -> RegistryResult<String> {
    let mut params = CertificateParams::new(vec![domain.to_owned()])
        .map_err(|e| RegistryError::refused(ErrorCode::InvalidDomain, format!("`{domain}`: {e}")))?;
    params
        .subject_alt_names
        .push(SanType::URI(provider_uri(provider_id).try_into().map_err(|e| ca_error("the URI is not IA5", e))?));
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, provider_id);
    params.distinguished_name = name;
    let csr = params.serialize_request(key).map_err(|e| ca_error("cannot make the request", e))?;
    csr.pem().map_err(|e| ca_error("cannot encode the request", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::{CertificateDer, UnixTime, pem::PemObject as _};

    const NOW: Millis = 1_774_000_000_000;

    fn temp_dir(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("peyvand-ca-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    fn code<T: std::fmt::Debug>(result: RegistryResult<T>) -> ErrorCode {
        result.expect_err("refused").code()
    }

    #[test]
    fn the_ca_is_made_once_with_a_private_key() {
        let dir = temp_dir("files");
        let (ca, made) = CertificateAuthority::load_or_create(&dir, NOW).expect("made");
        assert!(made);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.join(CA_KEY_FILE)).expect("key").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (again, made) = CertificateAuthority::load_or_create(&dir, NOW).expect("loaded");
        assert!(!made);
        assert_eq!(again.certificate_pem(), ca.certificate_pem());
        // A certificate issued after the reload still chains to the same CA.
        let (_, csr) = generate_key_and_csr("bale", "bale.ir").expect("csr");
        let issued = again.issue(&csr, "bale", "bale.ir", now_for_tests(), DEFAULT_CERTIFICATE_VALIDITY).expect("ok");
        verify_chain(ca.certificate_pem(), &issued.pem, "bale.ir").expect("chains");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn now_for_tests() -> Millis {
        crate::time::now_millis()
    }

    fn verify_chain(ca_pem: &str, leaf_pem: &str, domain: &str) -> Result<(), webpki::Error> {
        let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("CA PEM");
        let leaf_der = CertificateDer::from_pem_slice(leaf_pem.as_bytes()).expect("leaf PEM");
        let anchor = webpki::anchor_from_trusted_cert(&ca_der).expect("anchor");
        let leaf = webpki::EndEntityCert::try_from(&leaf_der)?;
        let now = UnixTime::since_unix_epoch(Duration::from_millis(now_for_tests() as u64));
        for usage in [webpki::KeyUsage::server_auth(), webpki::KeyUsage::client_auth()] {
            leaf.verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                std::slice::from_ref(&anchor),
                &[],
                now,
                usage,
                None,
                None,
            )?;
        }
        let name = rustls_pki_types::ServerName::try_from(domain).expect("name");
        leaf.verify_is_valid_for_subject_name(&name)
    }

    #[test]
    fn an_issued_certificate_chains_to_the_ca_for_client_and_server_auth() {
        let dir = temp_dir("chain");
        let (ca, _) = CertificateAuthority::load_or_create(&dir, now_for_tests()).expect("made");
        let (_, csr) = generate_key_and_csr("bale", "bale.ir").expect("csr");
        let issued = ca.issue(&csr, "bale", "bale.ir", now_for_tests(), Duration::from_secs(3600)).expect("issued");
        verify_chain(ca.certificate_pem(), &issued.pem, "bale.ir").expect("chains");
        assert!(verify_chain(ca.certificate_pem(), &issued.pem, "eitaa.ir").is_err());
        assert_eq!(issued.serial.len(), 32);
        assert!(issued.not_after - issued.not_before >= 3_600_000);
        // Another CA's certificate does not vouch for it.
        let other_dir = temp_dir("chain-other");
        let (other, _) = CertificateAuthority::load_or_create(&other_dir, now_for_tests()).expect("made");
        assert!(verify_chain(other.certificate_pem(), &issued.pem, "bale.ir").is_err());
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&other_dir);
    }

    #[test]
    fn requests_for_other_names_or_garbage_are_refused() {
        let dir = temp_dir("csr");
        let (ca, _) = CertificateAuthority::load_or_create(&dir, NOW).expect("made");
        let issue = |csr: &str| ca.issue(csr, "bale", "bale.ir", NOW, DEFAULT_CERTIFICATE_VALIDITY);
        let (_, other_domain) = generate_key_and_csr("bale", "eitaa.ir").expect("csr");
        assert_eq!(code(issue(&other_domain)), ErrorCode::CsrNameMismatch);
        let (_, other_provider) = generate_key_and_csr("eitaa", "bale.ir").expect("csr");
        assert_eq!(code(issue(&other_provider)), ErrorCode::CsrNameMismatch);
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let extra = CertificateParams::new(vec!["bale.ir".to_owned(), "www.google.com".to_owned()])
            .expect("params")
            .serialize_request(&key)
            .expect("csr")
            .pem()
            .expect("pem");
        assert_eq!(code(issue(&extra)), ErrorCode::CsrNameMismatch);
        assert_eq!(code(issue("not a csr")), ErrorCode::InvalidCsr);
        let (_, good) = generate_key_and_csr("bale", "bale.ir").expect("csr");
        let broken = good.replacen("MII", "MIJ", 1);
        assert_eq!(code(issue(&broken)), ErrorCode::InvalidCsr);
        // A request whose signature does not match its key.
        let mut der = pem_body(&good);
        let last = der.len() - 1;
        der[last] ^= 1;
        let tampered = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            crate::keys::encode_base64(&der)
        );
        assert_eq!(code(issue(&tampered)), ErrorCode::InvalidCsr);
        assert!(issue(&good).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn pem_body(text: &str) -> Vec<u8> {
        let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, body).expect("base64")
    }
}
