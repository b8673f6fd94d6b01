//! The task definitions shipped with dag (`nodes/tasks/builtin/*.toml`).

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::spec::TaskSet;

/// Directory of the built-in definitions in the source tree.
pub const BUILTIN_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/builtin");

const FILES: &[(&str, &str)] = &[
    (
        "advanced_ai_risk",
        include_str!("../builtin/advanced_ai_risk.toml"),
    ),
    ("gsm8k", include_str!("../builtin/gsm8k.toml")),
    ("mmlu", include_str!("../builtin/mmlu.toml")),
    ("nq_open", include_str!("../builtin/nq_open.toml")),
];

/// Names of the built-in definition files.
pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    FILES.iter().map(|(name, _)| *name)
}

/// Path of a built-in definition file in the source tree.
pub fn builtin_file(name: &str) -> Option<PathBuf> {
    FILES
        .iter()
        .any(|(n, _)| *n == name)
        .then(|| Path::new(BUILTIN_DIR).join(format!("{name}.toml")))
}

/// Load a built-in definition file (compiled into the binary). Relative data paths in it are
/// resolved against `data_dir`, the directory holding the data sets (`../shared/data` in this
/// project: `anthropic-advanced-ai-risk/`, `gsm8k/`, ...).
pub fn load_builtin(name: &str, data_dir: &Path) -> Option<Result<TaskSet>> {
    FILES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| TaskSet::from_toml_str(text, data_dir))
}
