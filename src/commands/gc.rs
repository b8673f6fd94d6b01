//! `dag gc`: what no pin and no recent run reaches, removed.

use super::*;

/// `dag gc`.
pub(super) fn gc(explicit: Option<&Path>, a: &crate::cli::GcArgs, json: bool) -> Result<Exit> {
    let store = open(explicit, None)?;
    let r = store.gc(&dag_store::GcOptions {
        keep_runs: a.keep_runs,
        dry_run: a.dry_run,
        crash: dag_store::CrashAfter::never(),
    })?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        let verb = if a.dry_run { "would remove" } else { "removed" };
        outln!(
            "{verb} {} artifact(s), {} blob(s), {} bytes; {} cache entr(ies) dropped; kept {} artifact(s)",
            r.artifacts_removed,
            r.blobs_removed,
            r.bytes_freed,
            r.cache_entries_removed,
            r.artifacts_kept
        );
    }
    Ok(Exit::Success)
}
