//! `dag verify`: every blob re-hashed; `--repair` and `--rebuild-index`.

use super::*;

pub(super) fn verify(explicit: Option<&Path>, a: &VerifyArgs, json: bool) -> Result<Exit> {
    if a.rebuild_index {
        return rebuild_index(explicit, json);
    }
    let store = if a.repair {
        open(explicit, None)?
    } else {
        open_reader(explicit, None)?
    };
    let r = store.verify(a.repair)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        outln!(
            "checked {} blobs ({} bytes)",
            r.blobs_checked,
            r.bytes_checked
        );
        for p in &r.problems {
            match p {
                dag_store::VerifyProblem::Corrupt { blob, artifacts } => outln!(
                    "corrupt blob {} (in {} artifact(s))",
                    blob.short(),
                    artifacts.len()
                ),
                dag_store::VerifyProblem::Missing { blob, artifacts } => outln!(
                    "missing blob {} (in {} artifact(s))",
                    blob.short(),
                    artifacts.len()
                ),
                dag_store::VerifyProblem::MissingElement { list, element } => outln!(
                    "list {} names element {}, which is not in the store",
                    list.short(),
                    element.short()
                ),
                dag_store::VerifyProblem::DanglingCacheEntry { key, output } => outln!(
                    "cache entry {} names output {}, which is not in the store",
                    key.short(),
                    output.short()
                ),
            }
        }
        if a.repair {
            outln!(
                "quarantined {} blob(s); dropped {} artifact(s) and {} cache entr(ies), which the next run recomputes",
                r.quarantined.len(),
                r.artifacts_dropped.len(),
                r.cache_entries_dropped
            );
        } else if !r.problems.is_empty() {
            errln!(
                "\nhint: run `dag verify --repair` to quarantine them; the next run recomputes what needs them"
            );
        }
    }
    Ok(if r.problems.is_empty() || a.repair {
        Exit::Success
    } else {
        Exit::NodeFailed
    })
}

pub(super) fn rebuild_index(explicit: Option<&Path>, json: bool) -> Result<Exit> {
    let root = store_root(explicit, None);
    let r = Store::rebuild_index(&root)
        .with_context(|| format!("Failed to rebuild the index of `{}`", root.display()))?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(Exit::Success);
    }
    if let Some(aside) = &r.moved_aside {
        outln!("moved the index found to {}", aside.display());
    }
    outln!(
        "replayed {} record(s) from {} journal segment(s): {} artifact(s), {} cache entr(ies), {} run(s), {} pin(s)",
        r.records,
        r.segments,
        r.artifacts,
        r.cache_entries,
        r.runs,
        r.pins
    );
    for (segment, bytes) in &r.unreadable {
        outln!(
            "lost: the last {bytes} byte(s) of {} could not be read (a write cut short); what they held runs again",
            segment.display()
        );
    }
    outln!(
        "checked {} blobs ({} bytes): dropped {} artifact(s) and {} cache entr(ies) whose blobs are gone or corrupt, which the next run recomputes",
        r.verify.blobs_checked,
        r.verify.bytes_checked,
        r.verify.artifacts_dropped.len(),
        r.verify.cache_entries_dropped
    );
    outln!(
        "not restored: the caches of hashed inputs and checked blobs, which refill as they are used"
    );
    if r.moved_aside.is_some() {
        outln!("\nonce the rebuilt store looks right, the moved index can be deleted");
    }
    Ok(Exit::Success)
}
