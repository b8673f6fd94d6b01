//! The whole-run memo: a no-op run (or status) of an unchanged graph without loading it.
//!
//! A run or status that finds every instance of a graph cached saves, under the graph's
//! identity (its file's bytes, profile, `--set` overrides, `--only` targets), what it found
//! and what it depended on: the store's change count, the `dag` binary, and the
//! (inode, size, mtime, ctime) of every local file its keys read by content (`Path` params,
//! each file of a directory). The next invocation with the same identity checks those with
//! a few `stat` calls and, when none moved, answers from the memo instead of parsing the
//! graph and deriving 10,000 keys: every key would come out the same, and every entry is
//! still in the index because the index has not changed.
//!
//! What the memo cannot see, it refuses: a graph with a node whose key has material beyond
//! params, inputs and file contents (a user step's `versions`) is never memoised. Like the
//! full path, a lookup `stat`s every blob of every output, so an output deleted behind the
//! store's back is a miss; a blob corrupted in place is found when read, or by `dag verify`.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use dag_store::{Digest, NodeRunRecord, Store};
use serde::{Deserialize, Serialize};

use crate::{Graph, LoadOptions, Value};

/// What identifies one invocation on one graph: the memo's key.
#[derive(Debug, Clone, Copy)]
pub struct MemoKey(Digest);

impl MemoKey {
    /// The key of `graph_bytes` (the graph file as read, at `graph_path`) loaded with
    /// `opts` and run for `targets` (empty: all).
    pub fn new(
        graph_path: &Path,
        graph_bytes: &[u8],
        opts: &LoadOptions,
        targets: &[String],
    ) -> MemoKey {
        let mut h = blake3::Hasher::new_derive_key("dag whole-run memo v1");
        let abs = std::path::absolute(graph_path).unwrap_or_else(|_| graph_path.to_path_buf());
        let identity = serde_json::json!({
            "graph": abs.display().to_string(),
            "profile": opts.profile,
            "set": opts.set,
            "targets": targets,
            "tool": crate::VERSION,
        });
        h.update(identity.to_string().as_bytes());
        h.update(blake3::hash(graph_bytes).as_bytes());
        MemoKey(h.finalize().into())
    }
}

/// A file's identity as the stat cache sees it: unchanged means unchanged content.
type Stat = [i64; 5];

fn stat(p: &Path) -> Option<Stat> {
    let m = std::fs::metadata(p).ok()?;
    Some([
        m.ino() as i64,
        m.len() as i64,
        m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        m.ctime() * 1_000_000_000 + m.ctime_nsec(),
        i64::from(m.is_dir()),
    ])
}

/// The local files a graph's keys read by content, with their stats, taken before the
/// run computes any key: a file that changes during the run then fails the next check.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fingerprint {
    files: Vec<(PathBuf, Option<Stat>)>,
    exe: Option<Stat>,
}

impl Fingerprint {
    /// The fingerprint of `graph`, or `None` when a key of it depends on something the
    /// memo cannot check (see the module doc).
    pub fn of(graph: &Graph) -> Option<Fingerprint> {
        let mut paths = BTreeSet::new();
        for decl in &graph.nodes {
            let spec = decl.spec();
            if decl.node.key_material(&decl.params).ok()?.is_some()
                || decl.matrix.iter().any(|(k, _)| k == "versions")
            {
                return None;
            }
            let values = decl.params.iter().chain(
                decl.matrix
                    .iter()
                    .flat_map(|(k, vs)| vs.iter().map(move |v| (k, v))),
            );
            for (k, v) in values {
                if !spec.is_path_param(k) {
                    continue;
                }
                match v {
                    Value::Str(p) => {
                        paths.insert(PathBuf::from(p));
                    }
                    Value::List(items) => {
                        paths.extend(items.iter().filter_map(Value::as_str).map(PathBuf::from))
                    }
                    _ => {}
                }
            }
        }
        let mut files = vec![];
        for p in paths {
            walk(&p, &mut files);
        }
        Some(Fingerprint {
            files,
            exe: std::env::current_exe().ok().and_then(|e| stat(&e)),
        })
    }

    fn unchanged(&self) -> bool {
        self.exe.is_some()
            && self.exe == std::env::current_exe().ok().and_then(|e| stat(&e))
            && self.files.iter().all(|(p, s)| stat(p) == *s)
    }
}

/// `p` and, for a directory, everything in it (a file added or removed changes the
/// directory's mtime; a file edited in place, its own stat).
fn walk(p: &Path, out: &mut Vec<(PathBuf, Option<Stat>)>) {
    let s = stat(p);
    out.push((p.to_path_buf(), s));
    if s.is_some_and(|s| s[4] == 1)
        && let Ok(rd) = std::fs::read_dir(p)
    {
        let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for e in entries {
            walk(&e, out);
        }
    }
}

/// A whole run found cached, as saved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Memo {
    changes: u64,
    fingerprint: Fingerprint,
    /// Every instance, as the run recorded it (all cached), in the run's order.
    pub records: Vec<NodeRunRecord>,
    /// (node type, port) of the graph's report outputs, whose summaries a run prints.
    pub reports: Vec<(String, String)>,
    /// Every blob the outputs are made of: checked on disk at each lookup, so an output
    /// deleted behind the store's back is a miss, as it is for the full path.
    blobs: Vec<Digest>,
}

impl Memo {
    /// `dag status`'s lines: every instance cached.
    pub fn lines(&self) -> Vec<crate::StatusLine> {
        self.records
            .iter()
            .map(|r| crate::StatusLine {
                instance: r.instance.clone(),
                node_type: r.node_type.clone(),
                key: r.key.map(|k| k.to_hex()),
                state: crate::NodeState::Cached,
            })
            .collect()
    }

    /// The memo saved under `key`, if it still holds: the store has not changed since,
    /// nor the binary, nor any file the keys read.
    pub fn lookup(store: &Store, key: &MemoKey) -> Option<Memo> {
        let memo: Memo = store.memo(&key.0).ok()??;
        let now = store.changes().ok()??;
        let holds =
            memo.changes == now && memo.fingerprint.unchanged() && store.blobs_on_disk(&memo.blobs);
        holds.then_some(memo)
    }

    /// Saves what a run or status found, if every instance of it was cached or ran (so a
    /// rerun would find it cached) and nothing failed, was skipped or is pending. A memo
    /// that cannot be saved (a reader, a full disk) costs the next run its shortcut only.
    pub fn save(
        store: &Store,
        key: &MemoKey,
        fingerprint: Option<Fingerprint>,
        records: &[NodeRunRecord],
        reports: &[(String, String)],
    ) {
        use dag_store::NodeRunStatus;
        let Some(fingerprint) = fingerprint else {
            return;
        };
        if records.is_empty()
            || records
                .iter()
                .any(|r| !matches!(r.status, NodeRunStatus::Cached | NodeRunStatus::Ran))
        {
            return;
        }
        let Ok(Some(changes)) = store.changes() else {
            return;
        };
        let mut blobs = vec![];
        for r in records {
            for (_, d) in &r.outputs {
                match store.blobs_of(d) {
                    Ok(Some(b)) => blobs.extend(b),
                    _ => return,
                }
            }
        }
        blobs.sort();
        blobs.dedup();
        let records = records
            .iter()
            .map(|r| NodeRunRecord {
                status: NodeRunStatus::Cached,
                seconds: 0.0,
                ..r.clone()
            })
            .collect();
        let memo = Memo {
            changes,
            fingerprint,
            records,
            reports: reports.to_vec(),
            blobs,
        };
        let _ = store.put_memo(&key.0, &memo);
    }
}
