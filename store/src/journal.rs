//! The journal: every change a writer makes to the index, appended as a record once the
//! index holds it, so that a damaged index can be rebuilt (`dag verify --rebuild-index`)
//! rather than thrown away. The index is a view of the journal: the write methods of
//! [`crate::Store`] make a [`Record`], apply it to the index and append it here, and the
//! rebuild applies the same records through the same code.
//!
//! ```text
//! journal/0000000007.base   the whole index as `gc` left it (older segments are removed)
//! journal/0000000008.log    one segment per writing process, appended as it commits
//! ```
//!
//! A frame is `len: u32 LE`, the first 8 bytes of the payload's blake3, the bincode
//! payload. A process killed mid-append leaves a torn last frame: replay stops reading
//! that segment there and goes on with the next one (a later process's). Appends are not
//! fsynced one by one (the page cache outlives a killed process); they are at each run
//! record, at `gc` and when the store closes, so a power loss can cost the last records
//! before one of those, which a rebuild then recomputes.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::index::{ArtifactRecord, CacheEntry, RunRecord, decode, encode};
use crate::{Digest, Error};

/// The journal's directory inside the store.
pub(crate) const DIR: &str = "journal";

/// One change to the index.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Record {
    /// Artifacts indexed on their own (an input hashed in, a list's elements).
    Artifacts(Vec<ArtifactRecord>),
    /// A node instance completed: its new artifacts, its cache entry, each output's
    /// metadata as it wrote it, and the head pointer it moves.
    Node {
        entry: CacheEntry,
        artifacts: Vec<ArtifactRecord>,
        metas: Vec<(String, String)>,
        head: Option<String>,
    },
    /// A head pointer moved to an already cached key.
    Head { scope: String, key: Digest },
    /// A cache entry dropped (by `gc`, `verify --repair`, or a rerun).
    CacheRemoved(Digest),
    /// Artifact records dropped (by `gc` or `verify --repair`).
    ArtifactsRemoved(Vec<Digest>),
    /// A run record, written as the run starts and again as it ends.
    Run(RunRecord),
    /// A pin set.
    Pin { name: String, artifact: Digest },
    /// A pin removed.
    Unpin(String),
    /// A batch of a resumable node's items saved (the blob holds the items).
    Progress {
        key: Digest,
        batch: u64,
        blob: Digest,
    },
    /// A resumable node's saved batches forgotten.
    ProgressCleared(Digest),
}

/// The segment this process appends to, made at its first write.
#[derive(Debug)]
pub(crate) struct Journal {
    dir: PathBuf,
    segment: Mutex<Option<BufWriter<File>>>,
}

/// A segment file: its sequence number and whether it is a base (a whole index).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Segment {
    pub(crate) seq: u64,
    pub(crate) base: bool,
    pub(crate) path: PathBuf,
}

/// What reading the journal found.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    pub(crate) segments: usize,
    pub(crate) records: usize,
    /// Bytes that could not be read as frames (torn or damaged tails), by segment.
    pub(crate) unreadable: Vec<(PathBuf, u64)>,
}

impl Journal {
    pub(crate) fn new(root: &Path) -> Journal {
        Journal {
            dir: root.join(DIR),
            segment: Mutex::new(None),
        }
    }

    /// Appends `record`; the index already holds it.
    pub(crate) fn append(&self, record: &Record) -> Result<(), Error> {
        let mut segment = self.segment.lock().unwrap_or_else(|p| p.into_inner());
        if segment.is_none() {
            let seq = segments(&self.dir)?.last().map_or(0, |s| s.seq) + 1;
            let path = self.dir.join(format!("{seq:010}.log"));
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .map_err(|e| Error::io("create the journal segment", &path, e))?;
            *segment = Some(BufWriter::new(file));
        }
        let w = segment.as_mut().expect("made above");
        write_frame(w, record)
            .and_then(|()| w.flush())
            .map_err(|e| Error::io("append to the journal in", &self.dir, e))
    }

    /// Makes what was appended durable.
    pub(crate) fn sync(&self) -> Result<(), Error> {
        let mut segment = self.segment.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = segment.as_mut() {
            w.flush()
                .and_then(|()| w.get_ref().sync_data())
                .map_err(|e| Error::io("sync the journal in", &self.dir, e))?;
        }
        Ok(())
    }

    /// Replaces every segment by one base holding `records` (the whole index): written
    /// aside, made durable, renamed into place, and only then are the older segments
    /// removed, so a crash at any point leaves a journal that replays to the same index.
    pub(crate) fn compact(&self, records: impl Iterator<Item = Record>) -> Result<(), Error> {
        let mut segment = self.segment.lock().unwrap_or_else(|p| p.into_inner());
        // The next append starts a segment after the base; this one is superseded by it.
        segment.take();
        let old = segments(&self.dir)?;
        let seq = old.last().map_or(0, |s| s.seq) + 1;
        let path = self.dir.join(format!("{seq:010}.base"));
        let tmp = self.dir.join(format!("{seq:010}.base.tmp"));
        let io = |e| Error::io("write the journal base", &tmp, e);
        let mut w = BufWriter::new(File::create(&tmp).map_err(io)?);
        for r in records {
            write_frame(&mut w, &r).map_err(io)?;
        }
        let file = w.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        fs::rename(&tmp, &path).map_err(|e| Error::io("move into place", &tmp, e))?;
        sync_dir(&self.dir)?;
        for s in old {
            fs::remove_file(&s.path).map_err(|e| Error::io("remove", &s.path, e))?;
        }
        Ok(())
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        if let Err(e) = self.sync() {
            tracing::warn!(error = %e, "the journal's last records may not be durable");
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io("sync directory", dir, e))
}

fn write_frame(w: &mut impl Write, record: &Record) -> std::io::Result<()> {
    let payload = encode(record);
    let len = u32::try_from(payload.len()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a journal record over 4 GiB",
        )
    })?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(&blake3::hash(&payload).as_bytes()[..8])?;
    w.write_all(&payload)
}

/// The journal's segments in order, made if missing; temporary files are ignored.
pub(crate) fn segments(dir: &Path) -> Result<Vec<Segment>, Error> {
    fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
    let mut out = vec![];
    for entry in fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))? {
        let entry = entry.map_err(|e| Error::io("read directory", dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let (stem, base) = match (name.strip_suffix(".log"), name.strip_suffix(".base")) {
            (Some(stem), _) => (stem, false),
            (_, Some(stem)) => (stem, true),
            _ => continue,
        };
        if let Ok(seq) = stem.parse() {
            out.push(Segment {
                seq,
                base,
                path: entry.path(),
            });
        }
    }
    out.sort();
    Ok(out)
}

/// Reads the journal from its newest base, handing each record to `apply` in order.
pub(crate) fn replay(
    dir: &Path,
    mut apply: impl FnMut(Record) -> Result<(), Error>,
) -> Result<Replay, Error> {
    let all = segments(dir)?;
    let start = all.iter().rposition(|s| s.base).unwrap_or(0);
    let mut report = Replay::default();
    for segment in &all[start..] {
        report.segments += 1;
        let mut bytes = vec![];
        File::open(&segment.path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| Error::io("read the journal segment", &segment.path, e))?;
        let mut at = 0;
        while let Some((record, next)) = frame_at(&bytes, at) {
            apply(record)?;
            report.records += 1;
            at = next;
        }
        if at < bytes.len() {
            report
                .unreadable
                .push((segment.path.clone(), (bytes.len() - at) as u64));
        }
    }
    Ok(report)
}

/// The record framed at `at`, and where the next frame starts; `None` at the end or at
/// a frame that is cut short or does not match its checksum.
fn frame_at(bytes: &[u8], at: usize) -> Option<(Record, usize)> {
    let len = u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?) as usize;
    let sum = bytes.get(at + 4..at + 12)?;
    let payload = bytes.get(at + 12..at + 12 + len)?;
    if &blake3::hash(payload).as_bytes()[..8] != sum {
        return None;
    }
    let record = decode("journal record", payload).ok()?;
    Some((record, at + 12 + len))
}
