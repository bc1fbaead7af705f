//! Helpers for running the binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `ccgate` binary cargo built for these tests.
pub fn ccgate() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ccgate"));
    // Never pick up a developer's ./ccgate.toml.
    cmd.current_dir(std::env::temp_dir());
    cmd
}

/// Runs `ccgate ARGS` and returns its output.
pub fn run(args: &[&str]) -> Output {
    ccgate().args(args).output().expect("ccgate runs")
}

/// The crate's golden data folder.
pub fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/ccmail/tests/data")
        .join(rel)
}

/// Standard output and error as text.
pub fn texts(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts the process ended by itself, without a panic or a signal.
pub fn assert_no_crash(out: &Output) {
    let (_, stderr) = texts(out);
    assert!(out.status.code().is_some(), "killed by a signal: {out:?}");
    assert_ne!(out.status.code(), Some(101), "panicked: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
