//! Where the store is: `--store`/`DAG_STORE`, else `.dag/` at the project root (the
//! nearest ancestor of the graph, or of the working directory, that has `.dag` or
//! `.git`), like `.git` itself.

use std::path::{Path, PathBuf};

/// The store root for a command.
pub fn store_root(explicit: Option<&Path>, graph: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    let start = match graph {
        Some(g) => std::path::absolute(g)
            .ok()
            .and_then(|g| g.parent().map(Path::to_path_buf)),
        None => std::env::current_dir().ok(),
    }
    .unwrap_or_else(|| PathBuf::from("."));
    for dir in start.ancestors() {
        if dir.join(".dag").is_dir() || dir.join(".git").exists() {
            return dir.join(".dag");
        }
    }
    start.join(".dag")
}
