//! The nonces seen recently, to refuse a request sent twice. A nonce is remembered until its
//! request's timestamp is more than the allowed skew in the past: from then on the request is
//! refused as stale anyway.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::signing::MAX_SKEW_MS;

/// How often, at most, the expired nonces are swept out.
const SWEEP_EVERY_MS: i64 = 1000;

#[derive(Debug, Default)]
pub struct NonceCache {
    inner: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    /// (sender, nonce) -> the last moment its request is not stale.
    nonces: HashMap<(String, String), i64>,
    last_sweep: i64,
}

impl NonceCache {
    /// Records the nonce of `provider` for a request signed at `timestamp` (already checked to
    /// be within the skew of `now`); `false` if it was already seen (a replay).
    pub fn first_use(&self, provider: &str, nonce: &str, timestamp: i64, now: i64) -> bool {
        let Ok(mut seen) = self.inner.lock() else {
            return false;
        };
        if now - seen.last_sweep >= SWEEP_EVERY_MS {
            seen.nonces.retain(|_, stale_after| *stale_after >= now);
            seen.last_sweep = now;
        }
        let key = (provider.to_owned(), nonce.to_owned());
        match seen.nonces.get(&key) {
            Some(stale_after) if *stale_after >= now => false,
            _ => {
                seen.nonces.insert(key, timestamp + MAX_SKEW_MS);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_good_once_per_provider() {
        let cache = NonceCache::default();
        // Signed 5 minutes ahead of the receiver's clock: still refused when replayed just
        // before it turns stale, 10 minutes later.
        assert!(cache.first_use("alborz", "n1", MAX_SKEW_MS, 0));
        assert!(!cache.first_use("alborz", "n1", MAX_SKEW_MS, 1000));
        assert!(!cache.first_use("alborz", "n1", MAX_SKEW_MS, 2 * MAX_SKEW_MS));
        assert!(cache.first_use("damavand", "n1", MAX_SKEW_MS, 1000), "nonces are per sender");
        assert!(cache.first_use("alborz", "n1", MAX_SKEW_MS, 2 * MAX_SKEW_MS + 1), "forgotten once stale");
    }
}
