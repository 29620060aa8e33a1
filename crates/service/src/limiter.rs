//! A per-node, in-memory limit on how fast one account sends: it sits on the hot path, where
//! a shared counter would cost a write per message.

use std::collections::HashMap;
use std::sync::Mutex;

use peyvand_api::ApiError;

use crate::{Service, now_millis, rate_limited};

const WINDOW_MS: i64 = 60_000;
/// Past this many tracked accounts, counters of finished windows are dropped.
const TIDY_AT: usize = 100_000;

#[derive(Debug, Default)]
pub(crate) struct SendLimiter {
    windows: Mutex<HashMap<i64, (i64, u32)>>,
}

impl SendLimiter {
    fn hit(&self, user_id: i64, limit: u32, now: i64) -> Result<(), i64> {
        let window = now - now.rem_euclid(WINDOW_MS);
        let mut map = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > TIDY_AT {
            map.retain(|_, (start, _)| *start == window);
        }
        let entry = map.entry(user_id).or_insert((window, 0));
        if entry.0 != window {
            *entry = (window, 0);
        }
        entry.1 += 1;
        if entry.1 > limit { Err(window + WINDOW_MS - now) } else { Ok(()) }
    }

    /// Counts one send of `user_id` against `per_minute`.
    pub(crate) fn send(&self, user_id: i64, per_minute: u32) -> Result<(), ApiError> {
        self.hit(user_id, per_minute, now_millis()).map_err(|retry| rate_limited(retry, "messages"))
    }
}

impl Service {
    pub(crate) fn limit_messages(&self, user_id: i64) -> Result<(), ApiError> {
        self.send_limiter.send(user_id, self.config.limits.messages_per_minute)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_holds_within_a_window_and_resets_after() {
        let limiter = SendLimiter::default();
        for _ in 0..3 {
            assert!(limiter.hit(1, 3, 1_000).is_ok());
        }
        assert_eq!(limiter.hit(1, 3, 1_000), Err(59_000));
        assert!(limiter.hit(2, 3, 1_000).is_ok());
        assert!(limiter.hit(1, 3, 61_000).is_ok());
    }
}
