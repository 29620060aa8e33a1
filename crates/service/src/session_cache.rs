//! A short-lived cache of token → session, so that a busy client's every request does not cost
//! a storage read. Revocations on this node take effect at once; on other nodes within
//! [`TTL`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::Session;

pub(crate) const TTL: Duration = Duration::from_secs(5);
/// Past this many entries, expired ones are dropped.
const TIDY_AT: usize = 200_000;

#[derive(Debug, Default)]
pub(crate) struct SessionCache {
    entries: Mutex<HashMap<Vec<u8>, (Session, Instant)>>,
}

impl SessionCache {
    pub(crate) fn get(&self, token_hash: &[u8]) -> Option<Session> {
        let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        map.get(token_hash).filter(|(_, at)| at.elapsed() < TTL).map(|(s, _)| *s)
    }

    pub(crate) fn put(&self, token_hash: Vec<u8>, session: Session) {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= TIDY_AT {
            map.retain(|_, (_, at)| at.elapsed() < TTL);
        }
        map.insert(token_hash, (session, Instant::now()));
    }

    /// Forgets the sessions that `revoked` says are gone.
    pub(crate) fn forget(&self, revoked: impl Fn(&Session) -> bool) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, (s, _)| !revoked(s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_sessions_are_found_until_forgotten() {
        let cache = SessionCache::default();
        let a = Session { user_id: 1, device_id: 10 };
        let b = Session { user_id: 1, device_id: 11 };
        cache.put(b"a".to_vec(), a);
        cache.put(b"b".to_vec(), b);
        assert_eq!(cache.get(b"a"), Some(a));
        assert_eq!(cache.get(b"c"), None);
        cache.forget(|s| s.device_id == 10);
        assert_eq!(cache.get(b"a"), None);
        assert_eq!(cache.get(b"b"), Some(b));
        cache.forget(|s| s.user_id == 1);
        assert_eq!(cache.get(b"b"), None);
    }
}
