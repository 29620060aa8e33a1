//! Progress lines on standard error for the long phases (tens of thousands of sign-ups or
//! connections), at most one per tenth of the work.

use std::io::Write;
use std::time::Instant;

#[derive(Debug)]
pub struct Progress {
    what: &'static str,
    total: usize,
    done: usize,
    next_report: usize,
    started: Instant,
}

impl Progress {
    pub fn new(what: &'static str, total: usize) -> Self {
        Self { what, total, done: 0, next_report: (total / 10).max(1), started: Instant::now() }
    }

    pub fn step(&mut self) {
        self.done += 1;
        if self.done >= self.next_report || self.done == self.total {
            self.next_report = self.done + (self.total / 10).max(1);
            let rate = self.done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            say(&format!("  {} {}/{} ({rate:.0}/s)", self.what, self.done, self.total));
        }
    }
}

/// A line for people on standard error (standard output is kept for the JSON result), in one
/// write, so that the lines of idle's holders, which share it, do not interleave.
pub fn say(line: &str) {
    let _ = std::io::stderr().lock().write_all(format!("{line}\n").as_bytes());
}
