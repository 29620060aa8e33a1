//! `peyvand-bench media` against a real server, with every part small: each part runs, moves
//! the bytes it says it moved, and reports its figures.
//!
//! The server is the `peyvand` binary beside this package's `peyvand-bench`, which
//! `cargo test --workspace` builds.

use std::process::Command;

mod common;

use common::peyvand;

#[test]
fn every_part_of_the_media_run_reports_its_figures() {
    let output = Command::new(env!("CARGO_BIN_EXE_peyvand-bench"))
        .arg("--peyvand")
        .arg(peyvand())
        .args(["media", "--large-mb", "20", "--files", "2", "--file-mb", "3", "--downloads", "4", "--video-mb", "1"])
        .args(["--photos", "1", "--photo-concurrency", "1"])
        .output()
        .expect("peyvand-bench runs");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "peyvand-bench media failed: {log}");
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON object on stdout");
    assert_eq!(result["large_upload"]["bytes"], 20_000_000, "{result}");
    assert!(result["large_upload"]["server_rss_peak_sampled"].as_u64().is_some_and(|b| b > 0), "{result}");
    assert_eq!(result["uploads"]["files"], 2, "{result}");
    assert_eq!(result["downloads"]["bytes_each"], 3_000_000, "{result}");
    assert_eq!(result["concurrent_downloads"]["downloads"], 4, "{result}");
    assert_eq!(result["concurrent_downloads"]["bytes_each"], 1_000_000, "{result}");
    assert_eq!(result["photos"]["photos"], 1, "{result}");
    for part in ["uploads", "downloads", "concurrent_downloads"] {
        assert!(result[part]["mb_per_second"].as_f64().is_some_and(|r| r > 0.0), "{part}: {result}");
    }
    assert!(result["photos"]["per_second"].as_f64().is_some_and(|r| r > 0.0), "{result}");
}
