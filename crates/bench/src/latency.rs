//! Latency recording and the percentiles the report shows.

use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Values are microseconds; a minute is far beyond any latency this bench tolerates.
const HIGHEST_MICROS: u64 = 60_000_000;

/// A histogram shared by the tasks that record into it. Recording takes a lock, which is cheap
/// next to the JSON parsing and socket work around each record.
#[derive(Debug)]
pub struct Recorder {
    histogram: Mutex<Histogram<u64>>,
}

impl Recorder {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self { histogram: Mutex::new(Histogram::new_with_bounds(1, HIGHEST_MICROS, 3)?) })
    }

    pub fn record(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).clamp(1, HIGHEST_MICROS);
        let mut histogram = self.histogram.lock().unwrap_or_else(|p| p.into_inner());
        // Clamped into the bounds above, so this cannot fail.
        let _ = histogram.record(micros);
    }

    pub fn summary(&self) -> Summary {
        Summary::of(&self.histogram.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

impl Summary {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self { count: 0, mean_ms: 0.0, p50_ms: 0.0, p90_ms: 0.0, p99_ms: 0.0, p999_ms: 0.0, max_ms: 0.0 };
        }
        Self {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }

    /// One line for people: `p50 1.2 ms, p99 8.0 ms, p99.9 30.1 ms, max 41.0 ms`.
    pub fn line(&self) -> String {
        format!(
            "p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms ({} samples)",
            self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms, self.count
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let recorder = Recorder::new().expect("bounds are valid");
        // 1..=1000 ms, one sample each.
        for ms in 1..=1000u64 {
            recorder.record(Duration::from_millis(ms));
        }
        let s = recorder.summary();
        assert_eq!(s.count, 1000);
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.002 + 0.001;
        assert!(close(s.p50_ms, 500.0), "p50 {}", s.p50_ms);
        assert!(close(s.p99_ms, 990.0), "p99 {}", s.p99_ms);
        assert!(close(s.p999_ms, 999.0), "p99.9 {}", s.p999_ms);
        assert!(close(s.max_ms, 1000.0), "max {}", s.max_ms);
        assert!(close(s.mean_ms, 500.5), "mean {}", s.mean_ms);
    }

    #[test]
    fn out_of_range_values_are_clamped_and_empty_is_zero() {
        let recorder = Recorder::new().expect("bounds are valid");
        assert_eq!(recorder.summary().count, 0);
        recorder.record(Duration::ZERO);
        recorder.record(Duration::from_secs(3600));
        let s = recorder.summary();
        assert_eq!(s.count, 2);
        assert!(s.max_ms <= 60_000.0 * 1.001);
    }
}
