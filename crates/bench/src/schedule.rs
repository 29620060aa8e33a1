//! The open-loop send schedule: message `i` is due `i / rate` seconds after the start, whatever
//! the server does. Latency is measured from this due time, not from when the request actually
//! left, so a server that stalls the generator cannot hide the wait (coordinated omission).

use std::time::Duration;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// A fixed-rate schedule of `total` messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    rate: u64,
    total: u64,
}

impl Schedule {
    /// `rate` messages per second for `duration`; a zero rate is treated as one per second.
    pub fn new(rate: u64, duration: Duration) -> Self {
        let rate = rate.max(1);
        let total = (duration.as_nanos() * u128::from(rate) / NANOS_PER_SEC) as u64;
        Self { rate, total }
    }

    pub fn rate(&self) -> u64 {
        self.rate
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// When message `i` is due, counted from the start.
    pub fn due_at(&self, i: u64) -> Duration {
        let nanos = u128::from(i) * NANOS_PER_SEC / u128::from(self.rate);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// How many messages are due once `elapsed` has passed since the start (message 0 is due
    /// at once). The sender fires everything up to this count at each tick, so a late tick
    /// catches up instead of lowering the rate.
    pub fn due_by(&self, elapsed: Duration) -> u64 {
        let due = elapsed.as_nanos() * u128::from(self.rate) / NANOS_PER_SEC + 1;
        u64::try_from(due).unwrap_or(u64::MAX).min(self.total)
    }

    /// The first message due at or after `elapsed` (used to leave a warm-up out of the figures).
    pub fn first_at_or_after(&self, elapsed: Duration) -> u64 {
        let first = (elapsed.as_nanos() * u128::from(self.rate)).div_ceil(NANOS_PER_SEC);
        u64::try_from(first).unwrap_or(u64::MAX).min(self.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_is_rate_times_duration() {
        assert_eq!(Schedule::new(10_000, Duration::from_secs(20)).total(), 200_000);
        assert_eq!(Schedule::new(3, Duration::from_millis(500)).total(), 1);
        assert_eq!(Schedule::new(0, Duration::from_secs(2)).total(), 2);
    }

    #[test]
    fn each_message_is_due_exactly_at_its_slot() {
        let s = Schedule::new(1000, Duration::from_secs(1));
        assert_eq!(s.due_at(0), Duration::ZERO);
        assert_eq!(s.due_at(1), Duration::from_millis(1));
        assert_eq!(s.due_at(999), Duration::from_millis(999));
        for i in [0, 1, 7, 500, 998] {
            assert_eq!(s.due_by(s.due_at(i)), i + 1, "message {i} is due at its own time");
            assert_eq!(s.due_by(s.due_at(i + 1) - Duration::from_nanos(1)), i + 1, "and message {} not before", i + 1);
        }
    }

    #[test]
    fn a_late_tick_catches_up_and_the_end_is_capped() {
        let s = Schedule::new(20_000, Duration::from_secs(1));
        // A tick 5 ms late still releases all 100 messages of those 5 ms.
        assert_eq!(s.due_by(Duration::from_millis(5)), 101);
        assert_eq!(s.due_by(Duration::from_secs(3)), 20_000);
    }

    #[test]
    fn warm_up_boundary() {
        let s = Schedule::new(1000, Duration::from_secs(5));
        assert_eq!(s.first_at_or_after(Duration::ZERO), 0);
        assert_eq!(s.first_at_or_after(Duration::from_secs(1)), 1000);
        assert_eq!(s.first_at_or_after(Duration::from_micros(1500)), 2);
        assert_eq!(s.first_at_or_after(Duration::from_secs(9)), 5000);
    }

    #[test]
    fn fractional_rates_per_millisecond_average_out() {
        // 1500/s is 1.5 per millisecond: ticks alternate 1 and 2 sends, never drift.
        let s = Schedule::new(1500, Duration::from_secs(10));
        let per_tick: Vec<u64> =
            (1..=4).map(|ms| s.due_by(Duration::from_millis(ms)) - s.due_by(Duration::from_millis(ms - 1))).collect();
        assert_eq!(per_tick.iter().sum::<u64>(), 6);
        assert!(per_tick.iter().all(|n| (1..=2).contains(n)));
    }
}
