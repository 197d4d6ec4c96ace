//! Helpers for the end-to-end tests: run the built `ivr` binary from the
//! repository root, as a user would.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// The `ivr` binary cargo built beside this test executable.
pub fn ivr_path() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target directory");
    let bin = dir.join(format!("ivr{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.exists(), "{} is missing: build it with `cargo build -p ivr-cli` (cargo test --workspace does)", bin.display());
    bin
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
        .output()
        .expect("run ivr")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
