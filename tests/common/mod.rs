//! Helpers for the end-to-end tests: run the built `ivr` binary from the
//! repository root, as a user would.

#![allow(dead_code)]

pub mod server;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Waits for an event a test can observe — a record line, an answer, a
/// state — by asking `check` until it gives a value, and fails naming `what`
/// after `within`: a test waits on what happens, never on a guess at how long
/// it takes.
pub fn wait_for<T>(what: &str, within: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Calls `step(i)` for i = 0, 1, … one every `every` until it returns false:
/// real-time media (a caller's RTP goes at 20 ms a packet) and deliberately
/// slow or steady senders (a drip, a flood).
pub fn paced(every: Duration, mut step: impl FnMut(usize) -> bool) {
    let start = Instant::now();
    for i in 0.. {
        if !step(i) {
            return;
        }
        let next = start + every * (i as u32 + 1);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

/// The `ivr` binary cargo built beside this test executable. `cargo test` does
/// not build another package's binary, so `.ci/run` builds it first; a missing
/// or stale binary fails loudly rather than testing old code.
pub fn ivr_path() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target directory");
    let bin = dir.join(format!("ivr{}", std::env::consts::EXE_SUFFIX));
    let hint = "build it first: `cargo build -p ivr-cli` (bash .ci/run does)";
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).unwrap_or_else(|_| panic!("{} is missing: {hint}", bin.display()));
    let newest = ["crates", "grammar"].iter().filter_map(|d| newest_source(&root().join(d))).max();
    if let Some(newest) = newest {
        assert!(newest <= built, "{} is older than the sources: {hint}", bin.display());
    }
    bin
}

fn newest_source(dir: &std::path::Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let t = if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "tests") {
                continue;
            }
            newest_source(&path)
        } else if path.file_name().is_some_and(|n| n == "tests.rs") {
            continue; // unit tests are not in the binary
        } else if path.extension().is_some_and(|e| e == "rs" || e == "pest" || e == "toml") {
            entry.metadata().and_then(|m| m.modified()).ok()
        } else {
            None
        };
        newest = newest.max(t);
    }
    newest
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `ivr ARGS` in the repository root.
pub fn ivr(args: &[&str]) -> Output {
    Command::new(ivr_path())
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        // The checks that look ahead (a calendar running out) see one fixed day.
        .env("IVR_TODAY", "2026-01-05")
        .output()
        .expect("run ivr")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
