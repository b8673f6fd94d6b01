//! Helpers shared by the end-to-end tests that drive the `dag` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root (`../shared/data` is relative to it).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `dag ARGS` in `dir`.
pub fn dag(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dag"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("dag runs")
}

/// Stdout and stderr together, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
