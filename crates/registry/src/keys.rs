//! Keys and secrets in the data directory: the registry's Ed25519 signing key (PKCS#8, mode
//! 0600), its public half for distribution, and the admin token.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use sha2::{Digest, Sha256};

use crate::error::{RegistryError, RegistryResult};
use crate::model::RegistryKeyInfo;

/// The registry's private signing key, PKCS#8 v2 as `ring` writes it.
pub const SIGNING_KEY_FILE: &str = "registry-key.pk8";
/// The public key, base64, for operators to hand to providers.
pub const PUBLIC_KEY_FILE: &str = "registry-key.pub";
/// The admin token in plain, written once when it is created.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// Base64 with the standard alphabet, padding optional on input.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn decode_fixed<const N: usize>(text: &str, what: &str) -> Result<[u8; N], String> {
    let bytes = LENIENT.decode(text.trim()).map_err(|e| format!("not base64: {e}"))?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| format!("{what} has {} bytes, not {N}", bytes.len()))
}

/// An Ed25519 public key from base64 (padded or not).
pub fn decode_public_key(text: &str) -> Result<[u8; 32], String> {
    decode_fixed(text, "an Ed25519 public key")
}

/// An Ed25519 signature from base64 (padded or not).
pub fn decode_signature(text: &str) -> Result<[u8; 64], String> {
    decode_fixed(text, "an Ed25519 signature")
}

/// Standard padded base64.
pub fn encode_base64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// The first 16 hex digits of a public key's SHA-256.
pub fn key_id(public_key: &[u8]) -> String {
    hex::encode(&Sha256::digest(public_key)[..8])
}

/// The SHA-256 of an admin token: all that is kept of it.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new admin token: `pvr_` and 256 random bits in hex.
pub fn generate_token() -> RegistryResult<String> {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).map_err(|_| RegistryError::Files("no randomness available".into()))?;
    Ok(format!("pvr_{}", hex::encode(bytes)))
}

/// Writes a secret readable by its owner only (mode 0600 on Unix), replacing any old file.
pub fn write_secret(path: &Path, bytes: &[u8]) -> RegistryResult<()> {
    let failed = |e: std::io::Error| RegistryError::Files(format!("cannot write {}: {e}", path.display()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(failed)?;
    // An existing file keeps its old mode when opened; make sure it is private now.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(failed)?;
    }
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(failed)
}

/// The registry's Ed25519 key pair.
pub struct RegistryKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for RegistryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryKey").field("key_id", &self.key_id()).finish()
    }
}

impl RegistryKey {
    /// Loads the key from `dir`, or makes one there at first start. Also (re)writes the public
    /// key file. Says whether the key is new.
    pub fn load_or_create(dir: &Path) -> RegistryResult<(Self, bool)> {
        let path = dir.join(SIGNING_KEY_FILE);
        let (pair, created) = match std::fs::read(&path) {
            Ok(pkcs8) => {
                let pair = Ed25519KeyPair::from_pkcs8(&pkcs8)
                    .map_err(|e| RegistryError::Files(format!("{} is not an Ed25519 key: {e}", path.display())))?;
                (pair, false)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                    .map_err(|_| RegistryError::Files("cannot generate a key pair".into()))?;
                write_secret(&path, pkcs8.as_ref())?;
                let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
                    .map_err(|e| RegistryError::Files(format!("the new key is unusable: {e}")))?;
                (pair, true)
            }
            Err(e) => return Err(RegistryError::Files(format!("cannot read {}: {e}", path.display()))),
        };
        let key = Self { pair };
        let public = dir.join(PUBLIC_KEY_FILE);
        std::fs::write(&public, format!("{}\n", key.public_key_base64()))
            .map_err(|e| RegistryError::Files(format!("cannot write {}: {e}", public.display())))?;
        Ok((key, created))
    }

    /// A key that lives only in memory, for tests.
    pub fn ephemeral() -> RegistryResult<Self> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| RegistryError::Files("cannot generate a key pair".into()))?;
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|e| RegistryError::Files(format!("the new key is unusable: {e}")))?;
        Ok(Self { pair })
    }

    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    pub fn public_key_base64(&self) -> String {
        encode_base64(self.public_key())
    }

    pub fn key_id(&self) -> String {
        key_id(self.public_key())
    }

    pub fn info(&self) -> RegistryKeyInfo {
        RegistryKeyInfo { algorithm: "ed25519".into(), public_key: self.public_key_base64(), key_id: self.key_id() }
    }

    /// The detached signature of `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}

/// Where the admin token file goes in `dir`.
pub fn admin_token_path(dir: &Path) -> PathBuf {
    dir.join(ADMIN_TOKEN_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_and_kept_private() {
        let dir = std::env::temp_dir().join(format!("peyvand-registry-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let (first, created) = RegistryKey::load_or_create(&dir).expect("created");
        assert!(created);
        let (again, created) = RegistryKey::load_or_create(&dir).expect("loaded");
        assert!(!created);
        assert_eq!(first.public_key(), again.public_key());
        let published = std::fs::read_to_string(dir.join(PUBLIC_KEY_FILE)).expect("public key file");
        assert_eq!(decode_public_key(&published).expect("base64"), first.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.join(SIGNING_KEY_FILE)).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = generate_token().expect("token");
        let b = generate_token().expect("token");
        assert_ne!(a, b);
        assert!(a.starts_with("pvr_") && a.len() == 68);
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), hash_token(&b));
    }
}
