//! `peyvand-bench media-across --quick` against a real `peyvand demo`, with small photos: each
//! photo crosses from alborz to damavand, is downloaded twice, and every figure is reported.
//!
//! The demo is the `peyvand` binary beside this package's `peyvand-bench`, which
//! `cargo test --workspace` builds.

use std::process::Command;

mod common;

use common::peyvand;

#[test]
fn photos_cross_from_alborz_to_damavand_and_every_figure_is_reported() {
    let output = Command::new(env!("CARGO_BIN_EXE_peyvand-bench"))
        .arg("--peyvand")
        .arg(peyvand())
        .args(["media-across", "--quick", "--width", "640", "--height", "480"])
        .output()
        .expect("peyvand-bench runs");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "peyvand-bench media-across failed: {log}");
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON object on stdout");
    assert_eq!(result["mode"], "media-across", "{result}");
    assert_eq!(result["photos"], 10, "{result}");
    for part in ["send_to_downloaded", "send_to_visible", "first_download", "second_download"] {
        assert_eq!(result[part]["count"], 10, "{part}: {result}");
        assert!(result[part]["p50_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{part}: {result}");
        assert!(result[part]["max_ms"].as_f64() >= result[part]["p99_ms"].as_f64(), "{part}: {result}");
    }
    let total = result["send_to_downloaded"]["max_ms"].as_f64().expect("max");
    let visible = result["send_to_visible"]["max_ms"].as_f64().expect("max");
    assert!(total >= visible, "the whole path is longer than its first part: {result}");
}
