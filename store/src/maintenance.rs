//! `verify` and `gc`: the two operations that look at the whole store.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use crate::index::Layout;
use crate::journal;
use crate::lock::{Role, StoreLock};
use crate::store::now_secs;
use crate::{Digest, Error, Store, hash_file};

/// One problem `verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum VerifyProblem {
    /// The blob's content no longer matches its name.
    Corrupt {
        /// Blob digest.
        blob: Digest,
        /// Artifacts that contain it.
        artifacts: Vec<Digest>,
    },
    /// The blob is gone.
    Missing {
        /// Blob digest.
        blob: Digest,
        /// Artifacts that contain it.
        artifacts: Vec<Digest>,
    },
    /// A list artifact names an element the index does not have.
    MissingElement {
        /// The list.
        list: Digest,
        /// The element it names.
        element: Digest,
    },
    /// A cache entry names an output the index does not have: a hit would hand a consumer
    /// an artifact that is not there.
    DanglingCacheEntry {
        /// The cache key.
        key: Digest,
        /// The output it names.
        output: Digest,
    },
}

/// What `verify` found and did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct VerifyReport {
    /// Blobs re-hashed.
    pub blobs_checked: usize,
    /// Bytes re-hashed.
    pub bytes_checked: u64,
    /// Problems found.
    pub problems: Vec<VerifyProblem>,
    /// Artifacts dropped from the index by `--repair` (they will be recomputed): those
    /// holding a bad blob and, transitively, the lists that hold those.
    pub artifacts_dropped: Vec<Digest>,
    /// Cache entries dropped by `--repair`, because they named a dropped or absent output.
    pub cache_entries_dropped: usize,
    /// Blobs moved to `quarantine/` by `--repair`.
    pub quarantined: Vec<PathBuf>,
    /// Mutations made by `--repair` (see [`CrashAfter`]).
    pub steps: usize,
}

/// What `gc` keeps.
#[derive(Debug, Clone, Default)]
pub struct GcOptions {
    /// Keep the artifacts of this many most recent runs of each graph.
    pub keep_runs: usize,
    /// Only report.
    pub dry_run: bool,
    /// Fault injection for crash tests; `CrashAfter::never()` otherwise.
    pub crash: CrashAfter,
}

/// Fault injection for crash tests of `gc` and `verify --repair`: the operation counts its
/// steps (each index write, flush and file removal) and stops with
/// [`Error::InjectedCrash`] before step `n`, leaving the store as a crash there would.
/// Sled's log is prefix-consistent, so a process killed between two steps can lose only
/// unflushed index writes, which is the same as stopping earlier: stopping before every `n`
/// covers every instant a kill can land on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CrashAfter(pub Option<usize>);

impl CrashAfter {
    /// No fault: the operation runs to the end.
    pub const fn never() -> Self {
        CrashAfter(None)
    }
}

/// Counts steps against a [`CrashAfter`].
struct Steps {
    crash: CrashAfter,
    done: usize,
}

impl Steps {
    fn new(crash: CrashAfter) -> Self {
        Steps { crash, done: 0 }
    }

    /// Call before each mutation.
    fn step(&mut self) -> Result<(), Error> {
        if self.crash.0 == Some(self.done) {
            return Err(Error::InjectedCrash(self.done));
        }
        self.done += 1;
        Ok(())
    }
}

/// What `gc` removed (or would remove, with `dry_run`).
#[derive(Debug, Default, Clone, Serialize)]
pub struct GcReport {
    /// Artifacts kept.
    pub artifacts_kept: usize,
    /// Artifacts removed from the index.
    pub artifacts_removed: usize,
    /// Blob files deleted.
    pub blobs_removed: usize,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// Cache entries dropped because their outputs were removed.
    pub cache_entries_removed: usize,
    /// Mutations made (for crash tests: each is an instant a crash may land before).
    pub steps: usize,
}

impl Store {
    /// Re-hashes every blob the index names; with `repair`, quarantines corrupt blobs and
    /// drops the artifacts (and so the cache entries) that need them, so a rerun
    /// recomputes exactly those.
    pub fn verify(&self, repair: bool) -> Result<VerifyReport, Error> {
        self.verify_crashing(repair, CrashAfter::never())
    }

    /// [`Store::verify`] with fault injection, for crash tests.
    pub fn verify_crashing(&self, repair: bool, crash: CrashAfter) -> Result<VerifyReport, Error> {
        if repair {
            self.writable()?;
        }
        let mut steps = Steps::new(crash);
        let artifacts = self.artifacts()?;
        let mut owners: std::collections::BTreeMap<Digest, Vec<Digest>> = Default::default();
        for a in &artifacts {
            match a.layout {
                Layout::File => owners.entry(a.digest).or_default().push(a.digest),
                Layout::Tree => {
                    for e in &a.entries {
                        owners.entry(e.digest).or_default().push(a.digest);
                    }
                }
            }
        }
        let blobs: Vec<Digest> = owners.keys().copied().collect();
        // `None`: the blob is missing or unreadable.
        let results: Vec<(Digest, Option<(Digest, u64)>)> = blobs
            .par_iter()
            .map(|b| {
                let path = self.blob_path(b);
                match fs::metadata(&path) {
                    Err(_) => (*b, None),
                    Ok(m) => (*b, hash_file(&path).ok().map(|d| (d, m.len()))),
                }
            })
            .collect();
        let mut report = VerifyReport::default();
        let mut bad_blobs = Vec::new();
        for (blob, r) in results {
            report.blobs_checked += 1;
            let artifacts = owners[&blob].clone();
            match r {
                Some((actual, len)) if actual == blob => report.bytes_checked += len,
                Some(_) => {
                    report
                        .problems
                        .push(VerifyProblem::Corrupt { blob, artifacts });
                    bad_blobs.push((blob, true));
                }
                None => {
                    report
                        .problems
                        .push(VerifyProblem::Missing { blob, artifacts });
                    bad_blobs.push((blob, false));
                }
            }
        }
        // Structure: every list's elements and every cache entry's outputs are indexed.
        let indexed: HashSet<Digest> = artifacts.iter().map(|a| a.digest).collect();
        for a in &artifacts {
            for c in &a.children {
                if !indexed.contains(c) {
                    report.problems.push(VerifyProblem::MissingElement {
                        list: a.digest,
                        element: *c,
                    });
                }
            }
        }
        let entries = self.cache_entries()?;
        for entry in &entries {
            for (_, d) in &entry.outputs {
                if !indexed.contains(d) {
                    report.problems.push(VerifyProblem::DanglingCacheEntry {
                        key: entry.key,
                        output: *d,
                    });
                }
            }
        }
        if repair {
            let mut dropped: HashSet<Digest> = HashSet::new();
            for (blob, present) in bad_blobs {
                steps.step()?;
                self.forget_verified(&blob)?;
                if present {
                    steps.step()?;
                    let src = self.blob_path(&blob);
                    let dest = self.root().join("quarantine").join(blob.to_hex());
                    fs::rename(&src, &dest).map_err(|e| Error::io("quarantine", &src, e))?;
                    report.quarantined.push(dest);
                }
                dropped.extend(owners[&blob].iter().copied());
            }
            // A list is only as whole as its elements: drop every list that (transitively)
            // holds a dropped or absent artifact, so its producer runs again.
            let mut gone: HashSet<Digest> = dropped.clone();
            loop {
                let more: Vec<Digest> = artifacts
                    .iter()
                    .filter(|a| !gone.contains(&a.digest))
                    .filter(|a| {
                        a.children
                            .iter()
                            .any(|c| gone.contains(c) || !indexed.contains(c))
                    })
                    .map(|a| a.digest)
                    .collect();
                if more.is_empty() {
                    break;
                }
                gone.extend(more.iter().copied());
                dropped.extend(more);
            }
            // Cache entries first: a crash between the two steps leaves artifacts no entry
            // names (garbage for `gc`), never an entry naming an artifact that is gone.
            for entry in &entries {
                if entry
                    .outputs
                    .iter()
                    .any(|(_, d)| dropped.contains(d) || !indexed.contains(d))
                {
                    steps.step()?;
                    self.cache_remove(&entry.key)?;
                    report.cache_entries_dropped += 1;
                }
            }
            steps.step()?;
            self.flush()?;
            let mut dropped: Vec<Digest> = dropped.into_iter().collect();
            dropped.sort();
            steps.step()?;
            self.remove_artifacts(&dropped)?;
            for a in &dropped {
                steps.step()?;
                let _ = fs::remove_dir_all(self.root().join("trees").join(a.to_hex()));
            }
            report.artifacts_dropped = dropped;
            steps.step()?;
            self.advance_generation()?;
        }
        report.steps = steps.done;
        Ok(report)
    }

    /// Removes every artifact that no pin and none of the `keep_runs` latest runs of each
    /// graph reaches, the cache entries that pointed at them, orphan blobs left by
    /// crashes, and the scratch area.
    pub fn gc(&self, opts: &GcOptions) -> Result<GcReport, Error> {
        if !opts.dry_run {
            self.writable()?;
        }
        let mut steps = Steps::new(opts.crash);
        let mut roots: Vec<Digest> = self.pins()?.into_iter().map(|(_, d)| d).collect();
        let mut runs = self.runs()?;
        runs.sort_by(|a, b| b.id.cmp(&a.id));
        let mut seen_per_graph: std::collections::HashMap<String, usize> = Default::default();
        for run in &runs {
            let n = seen_per_graph.entry(run.graph.clone()).or_default();
            if *n < opts.keep_runs {
                roots.extend(run.artifacts());
            }
            *n += 1;
        }
        let all = self.artifacts()?;
        let by_digest: std::collections::HashMap<Digest, &crate::ArtifactRecord> =
            all.iter().map(|a| (a.digest, a)).collect();
        let mut live: HashSet<Digest> = HashSet::new();
        while let Some(d) = roots.pop() {
            if live.insert(d)
                && let Some(a) = by_digest.get(&d)
            {
                roots.extend(a.children.iter().copied());
            }
        }
        let mut live_blobs: HashSet<Digest> = self.progress_blobs()?.into_iter().collect();
        let mut report = GcReport::default();
        // The order is what makes a killed gc harmless: cache entries go before the
        // artifacts they name, and blobs only once the index no longer names them (flushed),
        // so at every instant each entry's outputs and each artifact's blobs exist.
        for entry in self.cache_entries()? {
            if entry.outputs.iter().any(|(_, d)| !live.contains(d)) {
                report.cache_entries_removed += 1;
                if !opts.dry_run {
                    steps.step()?;
                    self.cache_remove(&entry.key)?;
                }
            }
        }
        if !opts.dry_run {
            steps.step()?;
            self.flush()?;
        }
        let mut dead = vec![];
        for a in &all {
            if live.contains(&a.digest) {
                report.artifacts_kept += 1;
                match a.layout {
                    Layout::File => {
                        live_blobs.insert(a.digest);
                    }
                    Layout::Tree => live_blobs.extend(a.entries.iter().map(|e| e.digest)),
                }
            } else {
                report.artifacts_removed += 1;
                dead.push(a.digest);
            }
        }
        if !opts.dry_run {
            // One atomic batch: a dead list and its dead elements go together, so no list
            // is ever left naming a removed element.
            steps.step()?;
            self.remove_artifacts(&dead)?;
            for d in &dead {
                steps.step()?;
                let _ = fs::remove_dir_all(self.root().join("trees").join(d.to_hex()));
            }
            steps.step()?;
            self.flush()?;
        }
        let blobs_dir = self.root().join("blobs");
        for shard in fs::read_dir(&blobs_dir).map_err(|e| Error::io("read", &blobs_dir, e))? {
            let shard = shard.map_err(|e| Error::io("read", &blobs_dir, e))?.path();
            let prefix = shard
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            for f in fs::read_dir(&shard).map_err(|e| Error::io("read", &shard, e))? {
                let f = f.map_err(|e| Error::io("read", &shard, e))?.path();
                let name = f
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                let keep = format!("{prefix}{name}")
                    .parse::<Digest>()
                    .map(|d| live_blobs.contains(&d))
                    .unwrap_or(false);
                if !keep {
                    report.blobs_removed += 1;
                    report.bytes_freed += fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
                    if !opts.dry_run {
                        steps.step()?;
                        fs::remove_file(&f).map_err(|e| Error::io("remove", &f, e))?;
                    }
                }
            }
        }
        if !opts.dry_run {
            // We hold the store lock, so nothing in the scratch area is in use.
            let tmp = self.root().join("tmp");
            steps.step()?;
            let _ = fs::remove_dir_all(&tmp);
            // Work directories of computations that no longer have saved progress belong to
            // attempts that finished or whose progress was dropped: nothing resumes from them.
            let work = self.root().join("work");
            let in_flight: HashSet<String> = self
                .progress_keys()?
                .into_iter()
                .map(|d| d.to_hex())
                .collect();
            if let Ok(dirs) = fs::read_dir(&work) {
                for d in dirs.flatten() {
                    if !in_flight.contains(&*d.file_name().to_string_lossy()) {
                        let _ = fs::remove_dir_all(d.path());
                    }
                }
            }
            steps.step()?;
            fs::create_dir_all(&tmp).map_err(|e| Error::io("create directory", &tmp, e))?;
            self.advance_generation()?;
            // The journal still holds everything gc removed: rewrite it as the index is now.
            steps.step()?;
            self.compact_journal()?;
        }
        report.steps = steps.done;
        Ok(report)
    }

    /// Rebuilds the index of the store at `root` from its journal: the index found there
    /// (damaged, or not) is moved aside, never deleted; a fresh one is made and every
    /// journalled change replayed into it; then `verify --repair` drops whatever the
    /// blobs no longer back, so what comes back is exactly what can still be read.
    pub fn rebuild_index(root: &Path) -> Result<RebuildReport, Error> {
        fs::create_dir_all(root).map_err(|e| Error::io("create directory", root, e))?;
        let lock = match StoreLock::acquire(root, Role::Writer)? {
            Ok(lock) => lock,
            Err(held) => {
                return Err(Error::Locked {
                    root: root.to_path_buf(),
                    pid: held.pid,
                });
            }
        };
        let index = root.join("index");
        let moved_aside = if index.exists() {
            let mut n = 0;
            let aside = loop {
                let aside = root.join(format!(
                    "index.damaged-{}{}",
                    now_secs(),
                    if n == 0 {
                        String::new()
                    } else {
                        format!("-{n}")
                    }
                ));
                if !aside.exists() {
                    break aside;
                }
                n += 1;
            };
            fs::rename(&index, &aside).map_err(|e| Error::io("move aside", &index, e))?;
            Some(aside)
        } else {
            None
        };
        let store = Store::open_locked(root, lock, Role::Writer)?;
        let replay = journal::replay(&root.join(journal::DIR), |r| store.apply(&r))?;
        store.flush()?;
        store.advance_generation()?;
        // Runs the journal last saw running belong to processes that are gone.
        store.mark_interrupted_runs()?;
        let verify = store.verify(true)?;
        Ok(RebuildReport {
            moved_aside,
            segments: replay.segments,
            records: replay.records,
            unreadable: replay.unreadable,
            artifacts: store.artifacts()?.len(),
            cache_entries: store.cache_entries()?.len(),
            runs: store.runs()?.len(),
            pins: store.pins()?.len(),
            verify,
        })
    }
}

/// What [`Store::rebuild_index`] found and restored.
#[derive(Debug, Clone, Serialize)]
pub struct RebuildReport {
    /// Where the index that was there has been moved (delete it once the rebuilt store is
    /// checked).
    pub moved_aside: Option<PathBuf>,
    /// Journal segments read (from the newest base on).
    pub segments: usize,
    /// Records replayed.
    pub records: usize,
    /// Bytes that could not be read, by segment: a write cut short by a crash, or damage.
    /// What they held is lost and will be recomputed.
    pub unreadable: Vec<(PathBuf, u64)>,
    /// Artifacts in the rebuilt index.
    pub artifacts: usize,
    /// Cache entries in the rebuilt index.
    pub cache_entries: usize,
    /// Run records in the rebuilt index.
    pub runs: usize,
    /// Pins in the rebuilt index.
    pub pins: usize,
    /// The check of every blob after the replay, and what it dropped.
    pub verify: VerifyReport,
}
