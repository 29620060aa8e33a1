//! The nonces seen recently, to refuse a request sent twice. A nonce is remembered for twice
//! the allowed clock skew: a request signed earlier than that is refused as stale anyway.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::signing::MAX_SKEW_MS;

/// How many nonces are kept before the expired ones are swept.
const SWEEP_ABOVE: usize = 100_000;

#[derive(Debug, Default)]
pub struct NonceCache {
    seen: Mutex<HashMap<(String, String), i64>>,
}

impl NonceCache {
    /// Records the nonce of `provider`; `false` if it was already seen (a replay).
    pub fn first_use(&self, provider: &str, nonce: &str, now: i64) -> bool {
        let Ok(mut seen) = self.seen.lock() else {
            return false;
        };
        if seen.len() > SWEEP_ABOVE {
            seen.retain(|_, expires| *expires > now);
        }
        let key = (provider.to_owned(), nonce.to_owned());
        match seen.get(&key) {
            Some(expires) if *expires > now => false,
            _ => {
                seen.insert(key, now + 2 * MAX_SKEW_MS);
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
        assert!(cache.first_use("alborz", "n1", 0));
        assert!(!cache.first_use("alborz", "n1", 1000));
        assert!(cache.first_use("damavand", "n1", 1000), "nonces are per sender");
        assert!(cache.first_use("alborz", "n1", 2 * MAX_SKEW_MS + 1), "forgotten once stale");
    }
}
