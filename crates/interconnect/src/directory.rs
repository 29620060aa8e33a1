//! The provider's copy of the registry's directory: fetched, verified against the registry's
//! pinned key, refreshed periodically, and kept on disk so that a restart while the registry
//! is unreachable still knows the peers (for as long as that copy has not expired).

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use peyvand_registry::{Directory, RegistryClient, verify_directory};

use crate::Error;

const SAVED_BODY: &str = "directory.json";
const SAVED_SIGNATURE: &str = "directory.sig";

/// See the module's documentation.
#[derive(Debug)]
pub struct DirectoryCache {
    registry: RegistryClient,
    registry_key: Vec<u8>,
    dir: PathBuf,
    current: RwLock<Option<Arc<Directory>>>,
}

impl DirectoryCache {
    /// `registry_key` is the registry's Ed25519 public key, base64: the one trust anchor.
    pub fn new(registry: RegistryClient, registry_key: &str, dir: PathBuf) -> Result<Self, Error> {
        let registry_key = STANDARD.decode(registry_key.trim()).ok().filter(|k| k.len() == 32).ok_or_else(|| {
            Error::Config("`registry_key` must be the registry's Ed25519 public key in base64".into())
        })?;
        let cache = Self { registry, registry_key, dir, current: RwLock::new(None) };
        cache.load_saved();
        Ok(cache)
    }

    /// The current directory; `None` when there is none or it expired (then no peer is talked
    /// to, in either direction).
    pub fn current(&self) -> Option<Arc<Directory>> {
        let directory = self.current.read().ok()?.clone()?;
        (peyvand_service::now_millis() < directory.expires_at).then_some(directory)
    }

    /// Fetches and verifies the registry's directory and makes it current. An older version
    /// than the current one is refused (a replayed old directory could un-suspend a provider).
    pub async fn refresh(&self) -> Result<Arc<Directory>, Error> {
        let signed = self.registry.directory().await.map_err(|e| Error::Directory(e.to_string()))?;
        let directory = Arc::new(
            verify_directory(&signed.body, &signed.signature, &self.registry_key)
                .map_err(|e| Error::Directory(e.to_string()))?,
        );
        if directory.ca_certificate.trim().is_empty() {
            return Err(Error::Directory("the directory names no CA certificate: kept the one held".into()));
        }
        {
            // Compared and replaced under one lock, so two refreshes cannot install an older one.
            let mut current = self.current.write().map_err(|_| Error::Directory("poisoned lock".into()))?;
            if let Some(held) = current.as_ref()
                && directory.version < held.version
            {
                return Err(Error::Directory(format!(
                    "the registry served version {} after version {}: kept the newer",
                    directory.version, held.version
                )));
            }
            *current = Some(directory.clone());
            self.save(&signed.body, &signed.signature);
        }
        Ok(directory)
    }

    /// Keeps the pair; each file is replaced at once (a crash leaves the old or the new file).
    /// A mismatched pair (a crash between the two) fails verification and is ignored.
    fn save(&self, body: &[u8], signature: &[u8]) {
        let replace = |name: &str, bytes: &[u8]| {
            let partial = self.dir.join(format!("{name}.partial"));
            std::fs::write(&partial, bytes).and_then(|()| std::fs::rename(&partial, self.dir.join(name)))
        };
        let written =
            replace(SAVED_BODY, body).and_then(|()| replace(SAVED_SIGNATURE, STANDARD.encode(signature).as_bytes()));
        if let Err(e) = written {
            tracing::warn!(error = %e, "cannot keep a copy of the directory");
        }
    }

    fn load_saved(&self) {
        let Ok(body) = std::fs::read(self.dir.join(SAVED_BODY)) else { return };
        let Some(signature) =
            std::fs::read_to_string(self.dir.join(SAVED_SIGNATURE)).ok().and_then(|s| STANDARD.decode(s.trim()).ok())
        else {
            return;
        };
        match verify_directory(&body, &signature, &self.registry_key) {
            Ok(directory) => {
                if let Ok(mut current) = self.current.write() {
                    *current = Some(Arc::new(directory));
                }
            }
            Err(e) => tracing::info!(error = %e, "the saved directory is no longer usable"),
        }
    }
}
