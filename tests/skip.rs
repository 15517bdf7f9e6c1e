//! How an integration test says it did not run: one function shared by the crates' test
//! suites (`#[path = "../../../tests/skip.rs"] mod skip;`), so that every skip is seen.
//!
//! [`report`] writes `SKIPPED: <what>: <why>` straight to the process's stderr (the test
//! harness captures `eprintln!` of a passing test, so a skip printed that way looks like a pass)
//! and appends the same line to the file named by `KUMO_SKIP_LOG`, which `scripts/test.sh` sets
//! and summarizes in its last lines.

use std::io::Write as _;

/// Reports that `what` did not run, and why.
pub(crate) fn report(what: &str, why: &str) {
    let line = format!("SKIPPED: {what}: {why}");
    let _ = writeln!(std::io::stderr(), "{line}");
    let log = std::env::var_os("KUMO_SKIP_LOG").and_then(|path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok()
    });
    if let Some(mut f) = log {
        let _ = writeln!(f, "{line}");
    }
}
