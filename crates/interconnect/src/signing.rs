//! Request signatures: every request between providers carries an Ed25519 signature by the
//! sender over its canonical form, which binds the method, the path and query, the sender,
//! the receiver, the moment of signing, a one-time nonce and the body's SHA-256.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{ED25519, Ed25519KeyPair, UnparsedPublicKey};
use sha2::{Digest, Sha256};

/// The first line of the canonical form: the signature scheme and its version.
pub const SCHEME: &str = "peyvand-request/1";
/// How far the signed timestamp may be from the receiver's clock, either way.
pub const MAX_SKEW_MS: i64 = 5 * 60 * 1000;

/// What a signature covers.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    pub method: &'a str,
    /// The path and query exactly as sent (`/interconnect/v1/lookup`).
    pub path_and_query: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub timestamp: i64,
    pub nonce: &'a str,
    pub body: &'a [u8],
}

impl Signed<'_> {
    /// The bytes that are signed: one field a line, the body as its lowercase hex SHA-256.
    pub fn canonical(&self) -> Vec<u8> {
        format!(
            "{SCHEME}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
            self.method.to_ascii_uppercase(),
            self.path_and_query,
            self.from,
            self.to,
            self.timestamp,
            self.nonce,
            hex::encode(Sha256::digest(self.body))
        )
        .into_bytes()
    }

    /// The signature, base64.
    pub fn sign(&self, key: &Ed25519KeyPair) -> String {
        STANDARD.encode(key.sign(&self.canonical()).as_ref())
    }

    /// Whether `signature` (base64) verifies with one of `keys` (base64 Ed25519 public keys).
    pub fn verify(&self, signature: &str, keys: &[String]) -> bool {
        verify_bytes(&self.canonical(), signature, keys)
    }
}

/// An Ed25519 signature (base64) of `message`.
pub fn sign_bytes(key: &Ed25519KeyPair, message: &[u8]) -> String {
    STANDARD.encode(key.sign(message).as_ref())
}

/// Whether `signature` (base64) of `message` verifies with one of `keys` (base64 Ed25519
/// public keys).
pub fn verify_bytes(message: &[u8], signature: &str, keys: &[String]) -> bool {
    let Ok(signature) = STANDARD.decode(signature.trim()) else {
        return false;
    };
    keys.iter()
        .filter_map(|k| STANDARD.decode(k).ok())
        .any(|key| key.len() == 32 && UnparsedPublicKey::new(&ED25519, key).verify(message, &signature).is_ok())
}

/// 16 random bytes in lowercase hex.
pub fn new_nonce() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Whether a nonce has the required form (so nobody fills the replay cache with huge ones).
pub fn valid_nonce(nonce: &str) -> bool {
    nonce.len() == 32 && nonce.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::KeyPair;

    fn new_key() -> Ed25519KeyPair {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("key");
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key")
    }

    #[test]
    fn signatures_bind_every_field() {
        let key = new_key();
        let public = vec![STANDARD.encode(key.public_key().as_ref())];
        let nonce = new_nonce();
        let request = Signed {
            method: "POST",
            path_and_query: "/interconnect/v1/lookup",
            from: "alborz",
            to: "damavand",
            timestamp: 1_700_000_000_000,
            nonce: &nonce,
            body: b"{}",
        };
        let signature = request.sign(&key);
        assert!(request.verify(&signature, &public));
        assert!(!Signed { to: "sahand", ..request }.verify(&signature, &public), "another receiver");
        assert!(!Signed { body: b"{ }", ..request }.verify(&signature, &public), "another body");
        assert!(!Signed { timestamp: 1_700_000_000_001, ..request }.verify(&signature, &public), "another time");
        assert!(!Signed { path_and_query: "/interconnect/v1/provider", ..request }.verify(&signature, &public));
        let stranger = vec![STANDARD.encode(new_key().public_key().as_ref())];
        assert!(!request.verify(&signature, &stranger), "another key");
        assert!(!request.verify("not base64!", &public));
    }

    #[test]
    fn nonces_are_checked_for_form() {
        assert!(valid_nonce(&new_nonce()));
        assert_ne!(new_nonce(), new_nonce());
        assert!(!valid_nonce("abc"));
        assert!(!valid_nonce(&"G".repeat(32)));
    }
}
