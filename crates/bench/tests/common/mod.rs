//! What the bench's integration tests share.

use std::path::PathBuf;

/// The server: the `peyvand` binary beside this package's `peyvand-bench`, which
/// `cargo test --workspace` builds.
pub fn peyvand() -> PathBuf {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_peyvand-bench"));
    let server = bench.with_file_name("peyvand");
    assert!(
        server.exists(),
        "{} is missing: run the tests with `cargo test --workspace`, which builds it",
        server.display()
    );
    server
}
