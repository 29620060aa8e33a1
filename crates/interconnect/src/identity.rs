//! This provider's keys, kept in its data directory (`<data>/interconnect/`): the Ed25519 key
//! that signs its requests (made on first start) and the TLS key and certificate that the
//! registry's CA issued it (obtained by enrolment with a one-time token).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use peyvand_registry::RegistryClient;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};

use crate::Error;

const SIGNING_KEY: &str = "signing.pk8";
/// The certificate and its key in one file, so that they are replaced together.
const TLS: &str = "tls.pem";

/// See the module's documentation.
#[derive(Debug)]
pub struct Identity {
    pub provider_id: String,
    signing: Ed25519KeyPair,
    /// The signing key's public half, base64: what the directory lists.
    pub signing_public: String,
    dir: PathBuf,
}

impl Identity {
    /// Loads the keys from `dir`, making the signing key if there is none yet.
    pub fn load_or_create(dir: &Path, provider_id: &str) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Files(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join(SIGNING_KEY);
        let pkcs8 = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let made = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                    .map_err(|_| Error::Files("no randomness for a signing key".into()))?;
                write_secret(&path, made.as_ref())?;
                made.as_ref().to_vec()
            }
            Err(e) => return Err(Error::Files(format!("cannot read {}: {e}", path.display()))),
        };
        let signing = Ed25519KeyPair::from_pkcs8(&pkcs8)
            .map_err(|_| Error::Files(format!("{} is not an Ed25519 PKCS#8 key", path.display())))?;
        let signing_public = STANDARD.encode(signing.public_key().as_ref());
        Ok(Self { provider_id: provider_id.to_owned(), signing, signing_public, dir: dir.to_owned() })
    }

    pub fn signing_key(&self) -> &Ed25519KeyPair {
        &self.signing
    }

    /// The TLS certificate and key (PEM) from the last enrolment, if any.
    pub fn tls(&self) -> Result<Option<(String, String)>, Error> {
        match std::fs::read_to_string(self.dir.join(TLS)) {
            // PEM readers take the sections they look for: the certificate, then the key.
            Ok(text) => Ok(Some((text.clone(), text))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Files(format!("cannot read {TLS}: {e}"))),
        }
    }

    /// Enrols with the registry: a new TLS key and a CSR naming `domain` and this provider,
    /// exchanged for a certificate with the one-time `token`; the signing key is registered
    /// with the licence at the same time. Keeps the key and certificate, and returns them.
    pub async fn enrol(&self, registry: &RegistryClient, token: &str, domain: &str) -> Result<(String, String), Error> {
        let (key, csr) = peyvand_registry::ca::generate_key_and_csr(&self.provider_id, domain)
            .map_err(|e| Error::Enrolment(e.to_string()))?;
        let certificate = registry
            .enrol(token, &csr, Some(&self.signing_public))
            .await
            .map_err(|e| Error::Enrolment(e.to_string()))?;
        write_secret(&self.dir.join(TLS), format!("{}{key}", certificate.certificate).as_bytes())?;
        Ok((certificate.certificate, key))
    }
}

impl Identity {
    /// Renews the certificate without a token: a new TLS key and CSR, the request signed with
    /// this provider's signing key (which its licence lists). Keeps the new key and
    /// certificate, and returns them.
    pub async fn renew(&self, registry: &RegistryClient, domain: &str) -> Result<(String, String), Error> {
        let (key, csr) = peyvand_registry::ca::generate_key_and_csr(&self.provider_id, domain)
            .map_err(|e| Error::Enrolment(e.to_string()))?;
        let now = peyvand_service::now_millis();
        let certificate = registry
            .renew(&self.provider_id, &csr, now, |message| self.signing.sign(message).as_ref().to_vec())
            .await
            .map_err(|e| Error::Enrolment(e.to_string()))?;
        // Kept only if it is this provider's and current: a bad answer must not replace a
        // certificate that works.
        match crate::tls::pem_certificate_facts(&certificate.certificate) {
            Some(facts) if facts.provider_id == self.provider_id && facts.not_after > now => {}
            _ => {
                return Err(Error::Enrolment(
                    "the registry's answer is not a current certificate for this provider".into(),
                ));
            }
        }
        write_secret(&self.dir.join(TLS), format!("{}{key}", certificate.certificate).as_bytes())?;
        Ok((certificate.certificate, key))
    }
}

/// Writes a file readable by its owner only, replacing any old one at once.
fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let partial = path.with_extension("partial");
    let failed = |e: std::io::Error| Error::Files(format!("cannot write {}: {e}", path.display()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)
        .map_err(failed)?;
    file.write_all(bytes).map_err(failed)?;
    file.sync_all().map_err(failed)?;
    std::fs::rename(&partial, path).map_err(failed)
}
