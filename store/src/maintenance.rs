//! `verify` and `gc`: the two operations that look at the whole store.

use std::collections::HashSet;
use std::fs;
use std::path::PathBuf;

use rayon::prelude::*;
use serde::Serialize;

use crate::index::Layout;
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
    /// Artifacts dropped from the index by `--repair` (they will be recomputed).
    pub artifacts_dropped: Vec<Digest>,
    /// Blobs moved to `quarantine/` by `--repair`.
    pub quarantined: Vec<PathBuf>,
}

/// What `gc` keeps.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Keep the artifacts of this many most recent runs of each graph.
    pub keep_runs: usize,
    /// Only report.
    pub dry_run: bool,
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
}

impl Store {
    /// Re-hashes every blob the index names; with `repair`, quarantines corrupt blobs and
    /// drops the artifacts (and so the cache entries) that need them, so a rerun
    /// recomputes exactly those.
    pub fn verify(&self, repair: bool) -> Result<VerifyReport, Error> {
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
        if repair {
            for (blob, present) in bad_blobs {
                self.forget_verified(&blob)?;
                if present {
                    let src = self.blob_path(&blob);
                    let dest = self.root().join("quarantine").join(blob.to_hex());
                    fs::rename(&src, &dest).map_err(|e| Error::io("quarantine", &src, e))?;
                    report.quarantined.push(dest);
                }
                for a in &owners[&blob] {
                    if !report.artifacts_dropped.contains(a) {
                        self.remove_artifact(a)?;
                        let _ = fs::remove_dir_all(self.root().join("trees").join(a.to_hex()));
                        report.artifacts_dropped.push(*a);
                    }
                }
            }
            // Keep the invariant `cache_outputs` relies on: no entry names a dropped artifact.
            let dropped: HashSet<Digest> = report.artifacts_dropped.iter().copied().collect();
            for entry in self.cache_entries()? {
                if entry.outputs.iter().any(|(_, d)| dropped.contains(d)) {
                    self.cache_remove(&entry.key)?;
                }
            }
            self.flush()?;
        }
        Ok(report)
    }

    /// Removes every artifact that no pin and none of the `keep_runs` latest runs of each
    /// graph reaches, the cache entries that pointed at them, orphan blobs left by
    /// crashes, and the scratch area.
    pub fn gc(&self, opts: &GcOptions) -> Result<GcReport, Error> {
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
                if !opts.dry_run {
                    self.remove_artifact(&a.digest)?;
                    let _ = fs::remove_dir_all(self.root().join("trees").join(a.digest.to_hex()));
                }
            }
        }
        for entry in self.cache_entries()? {
            if entry.outputs.iter().any(|(_, d)| !live.contains(d)) {
                report.cache_entries_removed += 1;
                if !opts.dry_run {
                    self.cache_remove(&entry.key)?;
                }
            }
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
                        fs::remove_file(&f).map_err(|e| Error::io("remove", &f, e))?;
                    }
                }
            }
        }
        if !opts.dry_run {
            // We hold the store lock, so nothing in the scratch area is in use.
            let tmp = self.root().join("tmp");
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
            fs::create_dir_all(&tmp).map_err(|e| Error::io("create directory", &tmp, e))?;
            self.flush()?;
        }
        Ok(report)
    }
}
