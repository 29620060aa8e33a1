//! `peyvand-bench idle` against a real server: the streams are held by several holder
//! processes, and every figure the run reports agrees with what the server counts.
//!
//! The server is the `peyvand` binary beside this package's `peyvand-bench`, which
//! `cargo test --workspace` builds.

use std::process::Command;

mod common;

use common::peyvand;

#[test]
fn idle_streams_are_held_by_several_holders() {
    let output = Command::new(env!("CARGO_BIN_EXE_peyvand-bench"))
        .arg("--peyvand")
        .arg(peyvand())
        .args(["idle", "--connections", "41", "--holders", "3", "--hold", "0", "--connect-concurrency", "8"])
        .output()
        .expect("peyvand-bench runs");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "peyvand-bench idle failed: {log}");
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON object on stdout");
    assert_eq!(result["holders"], 3, "{result}");
    assert_eq!(result["connected"], 41, "{result}");
    assert_eq!(result["still_open_after_hold"], 41, "{result}");
    assert_eq!(result["server_reports_open"], 41, "{result}");
    assert_eq!(result["server_reports_open_after_hold"], 41, "{result}");
    // Each half was shared among the holders (20 and 21 people: runs of 7, 7 and 6 or 7).
    assert_eq!(result["connect"]["first_half"]["attempted"], 20, "{result}");
    assert_eq!(result["connect"]["second_half"]["attempted"], 21, "{result}");
    assert_eq!(result["connect"]["first_half"]["concurrency"], 6, "{result}");
    assert!(result["bench_bytes_per_connection"].as_f64().is_some_and(|b| b > 0.0), "{result}");
}
