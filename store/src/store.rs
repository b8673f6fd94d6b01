//! The store itself: durable blobs, the sled index, and the operations the engine needs.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use sled::Transactional;

use crate::access::Tree;
use crate::digest::{hash_file, hash_tree_manifest};
use crate::index::{
    ArtifactRecord, CacheEntry, Layout, RunHead, RunRecord, RunStatus, StatKey, StatRecord,
    TreeEntry, decode, encode, trees,
};
use crate::journal::{Journal, Record};
use crate::lock::{IndexReleased, Role, SharedLock, StoreLock};
use crate::serve::{Client, Server};
use crate::{Digest, Error, STORE_SCHEMA};

/// An artifact whose blobs are durable on disk but which the index does not name yet.
/// Committing it (alone or with a cache entry) makes it visible in one transaction.
#[derive(Debug, Clone)]
pub struct PendingArtifact {
    /// The artifact's digest.
    pub digest: Digest,
    /// The record to write.
    pub record: ArtifactRecord,
}

/// The answer of [`Store::cache_lookup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheLookup {
    /// Cached, every output on disk: output port to artifact, in port order.
    Hit(Vec<(String, Digest)>),
    /// Cached, but this output is not (all) on disk: run again.
    OutputsMissing(Digest),
    /// Never computed (or dropped by `gc` or `verify --repair`).
    Miss,
}

/// An open store. One process holds it (and writes); others read through that process
/// ([`Store::open_reader`]).
pub struct Store {
    root: PathBuf,
    artifacts: Tree,
    cache: Tree,
    outputs: Tree,
    output_meta: Tree,
    consumers: Tree,
    runs: Tree,
    heads: Tree,
    pins: Tree,
    stat: Tree,
    progress: Tree,
    verified: Tree,
    /// The index itself (its default tree holds the generation count); `None` for a
    /// reader that the holder serves.
    db: Option<sled::Db>,
    /// Where a writer appends each change it makes ([`crate::journal`]).
    journal: Option<Journal>,
    tmp_counter: AtomicU64,
    /// Emptied scratch directories, renamed for their next use rather than removed and
    /// made again: on ext4 every new inode is a search past the recently deleted ones,
    /// which made the directory each node instance writes into most of a small node's cost.
    scratch_pool: std::sync::Mutex<Vec<PathBuf>>,
    // Drop order matters: the sled handles above first, then `holding`.
    holding: Holding,
}

/// How this process has the store.
enum Holding {
    /// It holds the lock: it reads and writes the index (a reader only reads), and serves
    /// other processes' reads.
    Lock {
        role: Role,
        // Drop order matters: the server lets go of its sled handle, then we wait for
        // sled to close its file, then release our lock; a process that gets the lock
        // after us can open the index.
        _server: Option<Server>,
        _index_released: IndexReleased,
        _lock: StoreLock,
    },
    /// Another process holds it and answers this one's index reads.
    Served,
    /// The store cannot be written here (a read-only filesystem or directory): this
    /// process reads a private copy of its index, taken under a shared lock.
    Copy {
        _copy: tempfile::TempDir,
        _shared: SharedLock,
    },
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("root", &self.root).finish()
    }
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn mkdir(p: &Path) -> Result<(), Error> {
    fs::create_dir_all(p).map_err(|e| Error::io("create directory", p, e))
}

fn fsync_dir(p: &Path) -> Result<(), Error> {
    fs::File::open(p)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io("sync directory", p, e))
}

fn stat_key(meta: &fs::Metadata) -> StatKey {
    StatKey {
        dev: meta.dev(),
        ino: meta.ino(),
        size: meta.size(),
        mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
        ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
    }
}

/// All regular files below `dir`, as sorted `/`-separated relative paths.
fn walk_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, Error> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).map_err(|e| Error::io("read directory", &d, e))? {
            let entry = entry.map_err(|e| Error::io("read directory", &d, e))?;
            let path = entry.path();
            let ft = entry.file_type().map_err(|e| Error::io("stat", &path, e))?;
            if ft.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .expect("walked path is below its root")
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push((rel, path));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The Merkle root of a tree: the domain-separated hash of its canonical manifest.
fn tree_digest(entries: &[TreeEntry]) -> Digest {
    let mut manifest = String::new();
    for e in entries {
        manifest.push_str(&format!("{}\t{}\t{}\n", e.digest, e.size, e.path));
    }
    hash_tree_manifest(manifest.as_bytes())
}

impl Store {
    /// Opens (creating if needed) the store at `root` to write it, taking its lock. A
    /// reader holding the lock is waited for; a writer is named in the error.
    pub fn open(root: &Path) -> Result<Store, Error> {
        mkdir(root)?;
        match StoreLock::acquire(root, Role::Writer)? {
            Ok(lock) => Self::open_locked(root, lock, Role::Writer),
            Err(held) => Err(Error::Locked {
                root: root.to_path_buf(),
                pid: held.pid,
            }),
        }
    }

    /// Opens the store at `root` to read it, beside a process that writes it: through
    /// that process when one holds the store ([`crate::serve`]), from a private copy of
    /// the index when the store cannot be written here, and otherwise by holding it for
    /// the moment. Every write is refused with [`Error::ReadOnly`].
    pub fn open_reader(root: &Path) -> Result<Store, Error> {
        if !root.join("STORE_VERSION").exists() {
            // Nothing to read yet: a new, empty store, as a writer would make it.
            mkdir(root)?;
        }
        let held = match StoreLock::acquire(root, Role::Reader) {
            Ok(Ok(lock)) => return Self::open_locked(root, lock, Role::Reader),
            Ok(Err(held)) => held,
            Err(Error::Io { source, .. }) if cannot_write(&source) => {
                match SharedLock::acquire(root)? {
                    Some(shared) => return Self::open_copy(root, shared),
                    None => crate::lock::Held {
                        pid: "unknown".into(),
                        writer: true,
                    },
                }
            }
            Err(e) => return Err(e),
        };
        match Client::connect(root)? {
            Some(client) => Ok(Self::served(root, client)),
            None => Err(Error::Locked {
                root: root.to_path_buf(),
                pid: held.pid,
            }),
        }
    }

    pub(crate) fn open_locked(root: &Path, lock: StoreLock, role: Role) -> Result<Store, Error> {
        let version_path = root.join("STORE_VERSION");
        match fs::read_to_string(&version_path) {
            Ok(v) if v.trim() == STORE_SCHEMA => {}
            Ok(v) => {
                return Err(Error::Schema {
                    root: root.to_path_buf(),
                    found: v.trim().to_string(),
                    expected: STORE_SCHEMA,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                for d in ["blobs", "trees", "tmp", "quarantine"] {
                    mkdir(&root.join(d))?;
                }
                let w = |p: &Path, s: &str| fs::write(p, s).map_err(|e| Error::io("write", p, e));
                w(
                    &root.join("CACHEDIR.TAG"),
                    "Signature: 8a477f597d28d172789f06886806bc55\n# dag artifact store\n",
                )?;
                w(&root.join(".gitignore"), "*\n")?;
                w(&version_path, &format!("{STORE_SCHEMA}\n"))?;
            }
            Err(e) => return Err(Error::io("read", &version_path, e)),
        }
        let index = root.join("index");
        let fresh_index = !index.exists();
        remove_unfinished_snapshots(&index)?;
        let db = open_index(&index, &index)?;
        let holding = Holding::Lock {
            role,
            _server: Server::start(root, db.clone()),
            _index_released: IndexReleased {
                db_file: index.join("db"),
            },
            _lock: lock,
        };
        let journal = (role == Role::Writer).then(|| Journal::new(root));
        let store = Self::with_index(root, db, journal, holding)?;
        if fresh_index {
            // A new index (a new store, or the damaged one moved aside): nothing to lose.
            let _ = fs::remove_file(root.join(GENERATION_FILE));
        } else {
            store.check_generation()?;
            if role == Role::Writer && !root.join(crate::journal::DIR).exists() {
                // A store from before the journal: start it with the whole index.
                store.compact_journal()?;
            }
        }
        store.mark_interrupted_runs()?;
        Ok(store)
    }

    /// A store on a filesystem we cannot write: its index copied aside, under a shared
    /// lock so that no writer changes it meanwhile.
    fn open_copy(root: &Path, shared: SharedLock) -> Result<Store, Error> {
        let version_path = root.join("STORE_VERSION");
        let found =
            fs::read_to_string(&version_path).map_err(|e| Error::io("read", &version_path, e))?;
        if found.trim() != STORE_SCHEMA {
            return Err(Error::Schema {
                root: root.to_path_buf(),
                found: found.trim().to_string(),
                expected: STORE_SCHEMA,
            });
        }
        let copy = tempfile::Builder::new()
            .prefix("dag-index-")
            .tempdir()
            .map_err(|e| Error::io("create a directory for", &std::env::temp_dir(), e))?;
        let index = root.join("index");
        copy_dir(&index, copy.path())?;
        remove_unfinished_snapshots(copy.path())?;
        let db = open_index(copy.path(), &index)?;
        let store = Self::with_index(
            root,
            db,
            None,
            Holding::Copy {
                _copy: copy,
                _shared: shared,
            },
        )?;
        store.check_generation()?;
        Ok(store)
    }

    fn with_index(
        root: &Path,
        db: sled::Db,
        journal: Option<Journal>,
        holding: Holding,
    ) -> Result<Store, Error> {
        let trees = |n: &'static str| Ok(Tree::Own(db.open_tree(n)?));
        Self::assemble(root, trees, Some(db.clone()), journal, holding)
    }

    fn served(root: &Path, client: Client) -> Store {
        let client = Arc::new(client);
        let trees = |name: &'static str| {
            Ok(Tree::Served {
                client: client.clone(),
                name,
            })
        };
        Self::assemble(root, trees, None, None, Holding::Served)
            .expect("serving a tree cannot fail")
    }

    /// A store over the trees `tree` gives for each name.
    fn assemble(
        root: &Path,
        tree: impl Fn(&'static str) -> Result<Tree, Error>,
        db: Option<sled::Db>,
        journal: Option<Journal>,
        holding: Holding,
    ) -> Result<Store, Error> {
        Ok(Store {
            artifacts: tree(trees::ARTIFACTS)?,
            cache: tree(trees::CACHE)?,
            outputs: tree(trees::OUTPUTS)?,
            output_meta: tree(trees::OUTPUT_META)?,
            consumers: tree(trees::CONSUMERS)?,
            runs: tree(trees::RUNS)?,
            heads: tree(trees::HEADS)?,
            pins: tree(trees::PINS)?,
            stat: tree(trees::STAT)?,
            progress: tree(trees::PROGRESS)?,
            verified: tree(trees::VERIFIED)?,
            db,
            journal,
            root: root.to_path_buf(),
            tmp_counter: AtomicU64::new(0),
            scratch_pool: Default::default(),
            holding,
        })
    }

    /// The index, to write it: only a writer has it.
    pub(crate) fn writable(&self) -> Result<&sled::Db, Error> {
        match (&self.holding, &self.db) {
            (
                Holding::Lock {
                    role: Role::Writer, ..
                },
                Some(db),
            ) => Ok(db),
            _ => Err(Error::ReadOnly),
        }
    }

    /// Whether this process may keep what it learns (checked blobs, hashed inputs) in
    /// the index: it holds the store, as a writer or a reader.
    fn keeps_caches(&self) -> bool {
        matches!(self.holding, Holding::Lock { .. })
    }

    /// Whether this process only reads the store.
    pub fn is_read_only(&self) -> bool {
        self.writable().is_err()
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn blob_path(&self, d: &Digest) -> PathBuf {
        let hex = d.to_hex();
        self.root.join("blobs").join(&hex[..2]).join(&hex[2..])
    }

    /// A fresh, empty directory under `tmp/` for a node to write its outputs into.
    /// Staging files from here into the store is a rename, never a copy.
    pub fn scratch_dir(&self, label: &str) -> Result<PathBuf, Error> {
        self.writable()?;
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let safe: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let dir =
            self.root
                .join("tmp")
                .join(format!("{}-{}-{n}-{safe}", std::process::id(), now_secs()));
        let _ = fs::remove_dir_all(&dir);
        let reused = self
            .scratch_pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        if let Some(old) = reused
            && fs::rename(&old, &dir).is_ok()
        {
            return Ok(dir);
        }
        mkdir(&dir)?;
        Ok(dir)
    }

    /// Hands back a directory from [`Store::scratch_dir`] once its node is done with it:
    /// kept for the next one when empty (its outputs were moved into the store), else
    /// removed.
    pub fn release_scratch(&self, dir: PathBuf) {
        let empty = fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_none());
        if empty {
            self.scratch_pool
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(dir);
        } else {
            let _ = fs::remove_dir_all(&dir);
        }
    }

    /// Moves (or copies, across filesystems) `src` into the blob area, durably.
    /// Returns the digest and size. An identical blob already present costs no space:
    /// `src` is then simply dropped.
    fn put_blob(
        &self,
        src: &Path,
        digest: Option<Digest>,
        keep_src: bool,
    ) -> Result<(Digest, u64), Error> {
        self.writable()?;
        let digest = match digest {
            Some(d) => d,
            None => hash_file(src)?,
        };
        let size = fs::metadata(src)
            .map_err(|e| Error::io("stat", src, e))?
            .len();
        let dest = self.blob_path(&digest);
        if dest.exists() {
            if !keep_src {
                let _ = fs::remove_file(src);
            }
            return Ok((digest, size));
        }
        let parent = dest.parent().expect("blob path has a parent");
        mkdir(parent)?;
        let staged = if keep_src || !src.starts_with(&self.root) {
            // Copy into our tmp first so the final rename is atomic on our filesystem.
            let tmp = self.scratch_dir("blob")?.join("blob");
            fs::copy(src, &tmp).map_err(|e| Error::io("copy", src, e))?;
            tmp
        } else {
            src.to_path_buf()
        };
        fs::File::open(&staged)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io("sync", &staged, e))?;
        let mut perm = fs::metadata(&staged)
            .map_err(|e| Error::io("stat", &staged, e))?
            .permissions();
        perm.set_mode(0o444);
        fs::set_permissions(&staged, perm).map_err(|e| Error::io("make read-only", &staged, e))?;
        fs::rename(&staged, &dest).map_err(|e| Error::io("move into the store", &staged, e))?;
        fsync_dir(parent)?;
        Ok((digest, size))
    }

    fn record(
        &self,
        digest: Digest,
        layout: Layout,
        kind: &str,
        size: u64,
        meta: serde_json::Value,
    ) -> PendingArtifact {
        PendingArtifact {
            digest,
            record: ArtifactRecord {
                digest,
                layout,
                kind: kind.to_string(),
                size,
                entries: vec![],
                children: vec![],
                meta_json: meta.to_string(),
                producer: None,
                created: now_secs(),
            },
        }
    }

    /// Makes `bytes` a durable blob and returns the artifact, not yet indexed.
    pub fn stage_bytes(
        &self,
        bytes: &[u8],
        kind: &str,
        meta: serde_json::Value,
    ) -> Result<PendingArtifact, Error> {
        let tmp = self.scratch_dir("bytes")?.join("data");
        let mut f = fs::File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
        f.write_all(bytes)
            .map_err(|e| Error::io("write", &tmp, e))?;
        drop(f);
        let digest = crate::hash_bytes(bytes);
        let (digest, size) = self.put_blob(&tmp, Some(digest), false)?;
        let _ = fs::remove_dir(tmp.parent().expect("tmp file has a parent"));
        Ok(self.record(digest, Layout::File, kind, size, meta))
    }

    /// Moves a file (inside the store's scratch area, or copies one from outside) into
    /// the store as a file artifact, not yet indexed.
    pub fn stage_file(
        &self,
        path: &Path,
        kind: &str,
        meta: serde_json::Value,
    ) -> Result<PendingArtifact, Error> {
        let (digest, size) = self.put_blob(path, None, false)?;
        Ok(self.record(digest, Layout::File, kind, size, meta))
    }

    /// Moves every file below `dir` into the store as one tree artifact. Files are
    /// hashed in parallel; each becomes a blob shared with any other tree holding it.
    pub fn stage_dir(
        &self,
        dir: &Path,
        kind: &str,
        meta: serde_json::Value,
    ) -> Result<PendingArtifact, Error> {
        let files = walk_files(dir)?;
        let entries: Vec<TreeEntry> = files
            .par_iter()
            .map(|(rel, path)| {
                let (digest, size) = self.put_blob(path, None, false)?;
                Ok(TreeEntry {
                    path: rel.clone(),
                    digest,
                    size,
                })
            })
            .collect::<Result<_, Error>>()?;
        let size = entries.iter().map(|e| e.size).sum();
        let digest = tree_digest(&entries);
        let mut p = self.record(digest, Layout::Tree, kind, size, meta);
        p.record.entries = entries;
        Ok(p)
    }

    /// A list artifact: an ordered, named list of other artifacts (the checkpoints of a
    /// finetune). Its content is the JSON list, and `gc` keeps the elements alive with it.
    pub fn stage_list(
        &self,
        items: &[(String, Digest)],
        kind: &str,
        meta: serde_json::Value,
    ) -> Result<PendingArtifact, Error> {
        let json: Vec<serde_json::Value> = items
            .iter()
            .map(|(name, d)| serde_json::json!({ "name": name, "artifact": d.to_hex() }))
            .collect();
        let bytes = serde_json::to_vec_pretty(&json).expect("JSON list serialises");
        let mut p = self.stage_bytes(&bytes, kind, meta)?;
        p.record.children = items.iter().map(|(_, d)| *d).collect();
        Ok(p)
    }

    /// Reads the elements of a list artifact.
    pub fn read_list(&self, d: &Digest) -> Result<Vec<(String, Digest)>, Error> {
        let bytes = self.read(d)?;
        let v: Vec<serde_json::Value> =
            serde_json::from_slice(&bytes).map_err(|e| Error::Decode {
                what: format!("list artifact {d}"),
                detail: e.to_string(),
            })?;
        v.iter()
            .map(|item| {
                let name = item["name"].as_str().unwrap_or_default().to_string();
                let digest = item["artifact"].as_str().unwrap_or_default().parse()?;
                Ok((name, digest))
            })
            .collect()
    }

    /// Indexes staged artifacts (already durable) in one transaction.
    pub fn commit_artifacts(&self, pending: Vec<PendingArtifact>) -> Result<(), Error> {
        let db = self.writable()?;
        self.write(Record::Artifacts(
            pending.into_iter().map(|p| p.record).collect(),
        ))?;
        db.flush()?;
        Ok(())
    }

    /// Records a node instance's completion: its output artifacts, its cache entry, the
    /// consumer edges of its inputs and the graph's head pointer for `scope`, all in one
    /// transaction after every blob is durable.
    pub fn commit_node(
        &self,
        entry: &CacheEntry,
        pending: &[PendingArtifact],
        head_scope: Option<&str>,
    ) -> Result<(), Error> {
        let db = self.writable()?;
        let metas = entry
            .outputs
            .iter()
            .filter_map(|(port, d)| {
                let p = pending.iter().find(|p| p.digest == *d)?;
                Some((port.clone(), p.record.meta_json.clone()))
            })
            .collect();
        let artifacts = pending
            .iter()
            .map(|p| ArtifactRecord {
                producer: Some(entry.key),
                ..p.record.clone()
            })
            .collect();
        self.write(Record::Node {
            entry: entry.clone(),
            artifacts,
            metas,
            head: head_scope.map(str::to_string),
        })?;
        db.flush()?;
        Ok(())
    }

    /// Points `scope` (a graph node instance) at an already cached key, so that `status`
    /// explains later changes against what the user last ran.
    pub fn set_head(&self, scope: &str, key: &Digest) -> Result<(), Error> {
        self.write(Record::Head {
            scope: scope.to_string(),
            key: *key,
        })
    }

    /// Applies `record` to the index and appends it to the journal: every change a
    /// writer makes goes through here, and a rebuild replays the journal through
    /// [`Store::apply`], so the index and its journal cannot disagree on what a record does.
    fn write(&self, record: Record) -> Result<(), Error> {
        let db = self.writable()?;
        self.apply(&record)?;
        if !matches!(record, Record::Run(_)) {
            db.update_and_fetch(CHANGES_KEY, |old| {
                let n = old
                    .and_then(|v| <[u8; 8]>::try_from(v).ok())
                    .map_or(0, u64::from_le_bytes);
                Some((n + 1).to_le_bytes().to_vec())
            })?;
        }
        match &self.journal {
            Some(journal) => journal.append(&record),
            None => Err(Error::ReadOnly),
        }
    }

    /// Writes one record into the index, in one transaction where it touches several
    /// trees. Not flushed: callers flush where a change must be durable on return.
    pub(crate) fn apply(&self, record: &Record) -> Result<(), Error> {
        match record {
            Record::Artifacts(records) => {
                self.artifacts
                    .own()?
                    .transaction(|t| {
                        for r in records {
                            index_artifact(t, r)?;
                        }
                        Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
                    })
                    .map_err(tx_err)?;
            }
            Record::Node {
                entry,
                artifacts,
                metas,
                head,
            } => {
                let entry_bytes = encode(entry);
                let output_bytes = encode(&entry.outputs);
                (
                    self.artifacts.own()?,
                    self.cache.own()?,
                    self.outputs.own()?,
                    self.output_meta.own()?,
                    self.consumers.own()?,
                    self.heads.own()?,
                )
                    .transaction(|(arts, cache, outs, metas_tree, cons, heads)| {
                        for r in artifacts {
                            index_artifact(arts, r)?;
                        }
                        cache.insert(&entry.key.0, entry_bytes.clone())?;
                        outs.insert(&entry.key.0, output_bytes.clone())?;
                        for (port, meta) in metas {
                            metas_tree
                                .insert(output_meta_key(&entry.key, port), meta.as_bytes())?;
                        }
                        for input in &entry.inputs {
                            let mut k = input.0.to_vec();
                            k.extend_from_slice(&entry.key.0);
                            cons.insert(k, &[])?;
                        }
                        if let Some(scope) = head {
                            heads.insert(scope.as_bytes(), &entry.key.0)?;
                        }
                        Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
                    })
                    .map_err(tx_err)?;
            }
            Record::Head { scope, key } => self.heads.insert(scope.as_bytes(), &key.0)?,
            Record::CacheRemoved(key) => {
                // Both or neither: a hit reads `outputs`, and `gc` and `verify` walk `cache`.
                let ports: Vec<String> = self
                    .cache_outputs(key)?
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(p, _)| p)
                    .collect();
                (
                    self.cache.own()?,
                    self.outputs.own()?,
                    self.output_meta.own()?,
                )
                    .transaction(|(cache, outs, metas)| {
                        cache.remove(&key.0)?;
                        outs.remove(&key.0)?;
                        for p in &ports {
                            metas.remove(output_meta_key(key, p))?;
                        }
                        Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
                    })
                    .map_err(tx_err)?;
            }
            Record::ArtifactsRemoved(ds) => {
                let mut batch = sled::Batch::default();
                for d in ds {
                    batch.remove(&d.0);
                }
                self.artifacts.own()?.apply_batch(batch)?;
            }
            Record::Run(run) => self.runs.insert(run.id.as_bytes(), encode(run))?,
            Record::Pin { name, artifact } => self.pins.insert(name.as_bytes(), &artifact.0)?,
            Record::Unpin(name) => {
                self.pins.remove(name.as_bytes())?;
            }
            Record::Progress { key, batch, blob } => {
                let mut k = key.0.to_vec();
                k.extend_from_slice(&batch.to_be_bytes());
                self.progress.insert(k, &blob.0)?;
            }
            Record::ProgressCleared(key) => {
                for r in self.progress.scan_prefix(key.0) {
                    let (k, _) = r?;
                    self.progress.remove(k)?;
                }
            }
        }
        Ok(())
    }

    /// The key that `scope` last completed with.
    pub fn head(&self, scope: &str) -> Result<Option<Digest>, Error> {
        Ok(self
            .heads
            .get(scope.as_bytes())?
            .and_then(|v| <[u8; 32]>::try_from(v.as_ref()).ok().map(Digest)))
    }

    /// The cache entry for a key, if that computation is stored and its outputs are
    /// all still indexed.
    pub fn cache_get(&self, key: &Digest) -> Result<Option<CacheEntry>, Error> {
        let Some(bytes) = self.cache.get(key.0)? else {
            return Ok(None);
        };
        let entry: CacheEntry = decode("cache entry", &bytes)?;
        for (_, d) in &entry.outputs {
            if !self.artifacts.contains_key(d.0)? {
                return Ok(None);
            }
        }
        Ok(Some(entry))
    }

    /// The outputs of a cached computation: the hot path of every no-op run, one index
    /// read. Valid because `verify --repair` and `gc` drop the cache entries of any
    /// artifact they remove, so an entry never names an unindexed artifact.
    pub fn cache_outputs(&self, key: &Digest) -> Result<Option<Vec<(String, Digest)>>, Error> {
        match self.outputs.get(key.0)? {
            Some(bytes) => Ok(Some(decode("cache outputs", &bytes)?)),
            None => Ok(None),
        }
    }

    /// Drops a cache entry (the computation will run again).
    pub fn cache_remove(&self, key: &Digest) -> Result<(), Error> {
        self.write(Record::CacheRemoved(*key))
    }

    /// The metadata the computation `key` wrote for its output `port`: that instance's
    /// own, even where identical content from another computation was stored first.
    /// `None` for entries committed before this was recorded.
    pub fn output_meta(
        &self,
        key: &Digest,
        port: &str,
    ) -> Result<Option<serde_json::Value>, Error> {
        Ok(self
            .output_meta
            .get(output_meta_key(key, port))?
            .and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// What the cache holds for `key`. A hit is an entry whose outputs are all on disk
    /// ([`Store::artifact_present`]): one whose blobs were deleted by hand, or a store
    /// copied in part, is a miss, so the node runs again and restores them rather than
    /// handing a consumer an artifact that is not there.
    pub fn cache_lookup(&self, key: &Digest) -> Result<CacheLookup, Error> {
        let Some(outputs) = self.cache_outputs(key)? else {
            return Ok(CacheLookup::Miss);
        };
        for (_, d) in &outputs {
            if !self.artifact_present(d)? {
                return Ok(CacheLookup::OutputsMissing(*d));
            }
        }
        Ok(CacheLookup::Hit(outputs))
    }

    /// Whether an artifact can be read: indexed, with every blob on disk (and, for a list,
    /// every element so). One `stat` per blob, no hashing.
    pub fn artifact_present(&self, d: &Digest) -> Result<bool, Error> {
        let Some(rec) = self.artifact(d)? else {
            return Ok(false);
        };
        let blobs_present = match rec.layout {
            Layout::File => self.blob_path(d).exists(),
            Layout::Tree => rec
                .entries
                .iter()
                .all(|e| self.blob_path(&e.digest).exists()),
        };
        if !blobs_present {
            return Ok(false);
        }
        for c in &rec.children {
            if !self.artifact_present(c)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The blobs artifact `d` is made of (for a list, its elements'), for a caller that
    /// checks presence again later without the index ([`Store::blobs_on_disk`]). `None`
    /// when the artifact is not indexed.
    pub fn blobs_of(&self, d: &Digest) -> Result<Option<Vec<Digest>>, Error> {
        let Some(rec) = self.artifact(d)? else {
            return Ok(None);
        };
        let mut out = match rec.layout {
            Layout::File => vec![*d],
            Layout::Tree => rec.entries.iter().map(|e| e.digest).collect(),
        };
        for c in &rec.children {
            match self.blobs_of(c)? {
                Some(b) => out.extend(b),
                None => return Ok(None),
            }
        }
        Ok(Some(out))
    }

    /// Whether every one of `blobs` is on disk: one `stat` each, no hashing.
    pub fn blobs_on_disk(&self, blobs: &[Digest]) -> bool {
        blobs.iter().all(|b| self.blob_path(b).exists())
    }

    /// Every cache entry.
    pub fn cache_entries(&self) -> Result<Vec<CacheEntry>, Error> {
        self.cache
            .iter()
            .map(|r| {
                let (_, v) = r?;
                decode("cache entry", &v)
            })
            .collect()
    }

    /// The artifact record for a digest.
    pub fn artifact(&self, d: &Digest) -> Result<Option<ArtifactRecord>, Error> {
        match self.artifacts.get(d.0)? {
            Some(v) => Ok(Some(decode("artifact", &v)?)),
            None => Ok(None),
        }
    }

    /// Every artifact record.
    pub fn artifacts(&self) -> Result<Vec<ArtifactRecord>, Error> {
        self.artifacts
            .iter()
            .map(|r| {
                let (_, v) = r?;
                decode("artifact", &v)
            })
            .collect()
    }

    /// Finds artifacts whose hex digest starts with `prefix`.
    pub fn resolve_prefix(&self, prefix: &str) -> Result<Vec<Digest>, Error> {
        let prefix = prefix.to_ascii_lowercase();
        Ok(self
            .artifacts()?
            .into_iter()
            .map(|a| a.digest)
            .filter(|d| d.to_hex().starts_with(&prefix))
            .collect())
    }

    /// Cache keys of node instances that read artifact `d`.
    pub fn consumers(&self, d: &Digest) -> Result<Vec<Digest>, Error> {
        self.consumers
            .scan_prefix(d.0)
            .map(|r| {
                let (k, _) = r?;
                let key: [u8; 32] = k[32..].try_into().expect("consumer keys are 64 bytes");
                Ok(Digest(key))
            })
            .collect()
    }

    /// Checks a blob against its name before handing it out. A blob whose file identity
    /// (inode, size, mtime, ctime) is unchanged since its last successful check is not
    /// re-hashed; `dag verify` re-hashes everything regardless.
    fn ensure_verified(&self, d: &Digest) -> Result<PathBuf, Error> {
        let path = self.blob_path(d);
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(_) => return Err(Error::MissingBlob { path }),
        };
        let key = stat_key(&meta);
        if let Some(v) = self.verified.get(d.0)?
            && decode::<StatKey>("verified", &v)? == key
        {
            return Ok(path);
        }
        let actual = hash_file(&path)?;
        if actual != *d {
            return Err(Error::Corrupt {
                path,
                expected: d.to_hex(),
                actual: actual.to_hex(),
            });
        }
        if self.keeps_caches() {
            self.verified.insert(d.0, encode(&key))?;
        }
        Ok(path)
    }

    /// The verified bytes of a file artifact.
    pub fn read(&self, d: &Digest) -> Result<Vec<u8>, Error> {
        let path = self.ensure_verified(d)?;
        let bytes = fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        // Re-check what we actually read: a concurrent corruption must not slip through.
        let actual = crate::hash_bytes(&bytes);
        if actual != *d {
            return Err(Error::Corrupt {
                path,
                expected: d.to_hex(),
                actual: actual.to_hex(),
            });
        }
        Ok(bytes)
    }

    /// A read-only path to an artifact's content: the blob itself for a file, or a
    /// directory of hard links for a tree. Every blob is verified first.
    pub fn path(&self, d: &Digest) -> Result<PathBuf, Error> {
        let rec = self
            .artifact(d)?
            .ok_or_else(|| Error::UnknownArtifact(d.to_hex()))?;
        match rec.layout {
            Layout::File => self.ensure_verified(d),
            Layout::Tree => {
                let view = self.root.join("trees").join(d.to_hex());
                for e in &rec.entries {
                    let blob = self.ensure_verified(&e.digest)?;
                    let dest = view.join(&e.path);
                    if dest.exists() {
                        continue;
                    }
                    mkdir(dest.parent().expect("tree entry has a parent"))?;
                    if fs::hard_link(&blob, &dest).is_err() {
                        fs::copy(&blob, &dest).map_err(|e| Error::io("copy", &blob, e))?;
                    }
                }
                mkdir(&view)?;
                Ok(view)
            }
        }
    }

    /// Copies an artifact out of the store to `dest` (a file, or a new directory).
    pub fn export(&self, d: &Digest, dest: &Path) -> Result<(), Error> {
        let rec = self
            .artifact(d)?
            .ok_or_else(|| Error::UnknownArtifact(d.to_hex()))?;
        match rec.layout {
            Layout::File => {
                let src = self.ensure_verified(d)?;
                fs::copy(&src, dest).map_err(|e| Error::io("copy to", dest, e))?;
                let mut perm = fs::metadata(dest)
                    .map_err(|e| Error::io("stat", dest, e))?
                    .permissions();
                perm.set_mode(0o644);
                fs::set_permissions(dest, perm).map_err(|e| Error::io("chmod", dest, e))?;
            }
            Layout::Tree => {
                for e in &rec.entries {
                    let src = self.ensure_verified(&e.digest)?;
                    let out = dest.join(&e.path);
                    mkdir(out.parent().expect("tree entry has a parent"))?;
                    fs::copy(&src, &out).map_err(|e| Error::io("copy to", &out, e))?;
                    let mut perm = fs::metadata(&out)
                        .map_err(|e| Error::io("stat", &out, e))?
                        .permissions();
                    perm.set_mode(0o644);
                    fs::set_permissions(&out, perm).map_err(|e| Error::io("chmod", &out, e))?;
                }
            }
        }
        Ok(())
    }

    /// The content digest of an external input (a file or a directory such as a model
    /// folder), computed once and then answered from the stat cache while the file's
    /// (device, inode, size, mtime, ctime) is unchanged. A directory's digest equals the
    /// digest the same files would have as a stored tree artifact.
    pub fn hash_external(&self, path: &Path) -> Result<Digest, Error> {
        let meta = fs::metadata(path).map_err(|e| Error::io("read", path, e))?;
        if meta.is_dir() {
            let files = walk_files(path)?;
            let entries = files
                .par_iter()
                .map(|(rel, p)| {
                    let m = fs::metadata(p).map_err(|e| Error::io("stat", p, e))?;
                    Ok(TreeEntry {
                        path: rel.clone(),
                        digest: self.hash_external_file(p, &m)?,
                        size: m.len(),
                    })
                })
                .collect::<Result<Vec<_>, Error>>()?;
            Ok(tree_digest(&entries))
        } else {
            self.hash_external_file(path, &meta)
        }
    }

    fn hash_external_file(&self, path: &Path, meta: &fs::Metadata) -> Result<Digest, Error> {
        let abs = fs::canonicalize(path).map_err(|e| Error::io("resolve", path, e))?;
        let key = abs.as_os_str().as_encoded_bytes().to_vec();
        let stat = stat_key(meta);
        if let Some(v) = self.stat.get(&key)? {
            let rec: StatRecord = decode("stat cache", &v)?;
            if rec.stat == stat {
                return Ok(rec.digest);
            }
        }
        let digest = hash_file(path)?;
        // Re-stat: if the file changed while we hashed it, do not cache the result.
        let after = fs::metadata(path).map_err(|e| Error::io("stat", path, e))?;
        if stat_key(&after) == stat && self.keeps_caches() {
            self.stat
                .insert(key, encode(&StatRecord { stat, digest }))?;
        }
        Ok(digest)
    }

    /// Saves one completed batch of a resumable node's items. Durable on return.
    pub fn progress_save(&self, key: &Digest, batch: u64, bytes: &[u8]) -> Result<(), Error> {
        let db = self.writable()?;
        let pending = self.stage_bytes(bytes, "progress", serde_json::Value::Null)?;
        self.write(Record::Progress {
            key: *key,
            batch,
            blob: pending.digest,
        })?;
        db.flush()?;
        Ok(())
    }

    /// Batches saved so far for `key`, in batch order.
    pub fn progress_load(&self, key: &Digest) -> Result<Vec<(u64, Vec<u8>)>, Error> {
        let mut out = Vec::new();
        for r in self.progress.scan_prefix(key.0) {
            let (k, v) = r?;
            let batch = u64::from_be_bytes(k[32..40].try_into().expect("progress key is 40 bytes"));
            let d = Digest(v.as_ref().try_into().expect("progress value is a digest"));
            match self.read(&d) {
                Ok(bytes) => out.push((batch, bytes)),
                // A lost or corrupt batch is simply recomputed.
                Err(Error::Corrupt { .. } | Error::MissingBlob { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// A directory that survives failed and killed attempts at the computation `key`, for
    /// progress too large for item batches (activation shards, training checkpoints with
    /// optimizer state). Files must be written atomically (tmp file, then rename), because
    /// an attempt can die mid-write. Removed by [`Self::progress_clear`] once the outputs
    /// are committed.
    pub fn work_dir(&self, key: &Digest) -> Result<PathBuf, Error> {
        self.writable()?;
        let dir = self.root.join("work").join(key.to_hex());
        fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
        Ok(dir)
    }

    /// Forgets the saved batches of `key` (after its outputs are committed).
    pub fn progress_clear(&self, key: &Digest) -> Result<(), Error> {
        self.writable()?;
        let work = self.root.join("work").join(key.to_hex());
        let _ = fs::remove_dir_all(&work);
        // Most computations save nothing: no record for them (one per node otherwise).
        if self.progress.scan_prefix(key.0).next().is_none() {
            return Ok(());
        }
        self.write(Record::ProgressCleared(*key))
    }

    pub(crate) fn progress_keys(&self) -> Result<Vec<Digest>, Error> {
        let mut keys: Vec<Digest> = Vec::new();
        for r in self.progress.iter() {
            let (k, _) = r?;
            let d = Digest(
                k[..32]
                    .try_into()
                    .expect("progress key starts with a digest"),
            );
            if keys.last() != Some(&d) {
                keys.push(d);
            }
        }
        Ok(keys)
    }

    pub(crate) fn progress_blobs(&self) -> Result<Vec<Digest>, Error> {
        self.progress
            .iter()
            .map(|r| {
                let (_, v) = r?;
                Ok(Digest(
                    v.as_ref().try_into().expect("progress value is a digest"),
                ))
            })
            .collect()
    }

    /// Writes (or overwrites) a run record. Durable on return.
    pub fn put_run(&self, run: &RunRecord) -> Result<(), Error> {
        let db = self.writable()?;
        self.write(Record::Run(run.clone()))?;
        db.flush()?;
        if let Some(journal) = &self.journal {
            journal.sync()?;
        }
        self.advance_generation()
    }

    /// Sled recovers whatever prefix of its log it can read, silently: a truncated or
    /// overwritten index opens with its newest records (or all of them) gone. So the index
    /// counts generations (each run record written, each gc and repair) and mirrors the
    /// count in `index-generation` beside it, written only after the index is flushed: a
    /// kill leaves the file at most equal to the index, and an index found behind its file
    /// has lost writes.
    pub(crate) fn advance_generation(&self) -> Result<(), Error> {
        let db = self.writable()?;
        let next = self.generation()? + 1;
        db.insert(GENERATION_KEY, &next.to_le_bytes())?;
        db.flush()?;
        let path = self.root.join(GENERATION_FILE);
        let tmp = self.root.join(format!("{GENERATION_FILE}.tmp"));
        fs::write(&tmp, format!("{next}\n")).map_err(|e| Error::io("write", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| Error::io("write", &path, e))?;
        Ok(())
    }

    /// How many changes other than run records this index has taken (a cache entry, an
    /// artifact, a head, a pin, a removal): a result memoised against it (a whole run found
    /// cached, see `dag_engine::memo`) holds while the count is unchanged. `None` for a
    /// process whose reads are served by another.
    pub fn changes(&self) -> Result<Option<u64>, Error> {
        let Some(db) = &self.db else {
            return Ok(None);
        };
        Ok(Some(
            db.get(CHANGES_KEY)?
                .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
                .map_or(0, u64::from_le_bytes),
        ))
    }

    /// A memo saved under `key` by [`Store::put_memo`]. Memos are not journaled: an index
    /// rebuilt from the journal has none, and the next run recomputes them.
    /// One that no longer decodes (saved by another version) is no memo.
    pub fn memo<T: serde::de::DeserializeOwned>(&self, key: &Digest) -> Result<Option<T>, Error> {
        let Some(db) = &self.db else {
            return Ok(None);
        };
        Ok(db
            .open_tree(MEMO_TREE)?
            .get(key.0)?
            .and_then(|v| decode("memo", &v).ok()))
    }

    /// Saves a memo (see [`Store::memo`]); not flushed, since losing one costs one full run.
    pub fn put_memo<T: serde::Serialize>(&self, key: &Digest, value: &T) -> Result<(), Error> {
        let db = self.writable()?;
        db.open_tree(MEMO_TREE)?.insert(key.0, encode(value))?;
        Ok(())
    }

    fn generation(&self) -> Result<u64, Error> {
        let Some(db) = &self.db else {
            return Ok(0);
        };
        Ok(db
            .get(GENERATION_KEY)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, u64::from_le_bytes))
    }

    /// Refuses an index that is behind its `index-generation` file (see
    /// [`Store::advance_generation`]).
    fn check_generation(&self) -> Result<(), Error> {
        let path = self.root.join(GENERATION_FILE);
        let Ok(text) = fs::read_to_string(&path) else {
            return Ok(()); // a store from before the count, or a new one
        };
        let recorded: u64 = text.trim().parse().unwrap_or(0);
        let found = self.generation()?;
        if found < recorded {
            return Err(Error::IndexDamaged {
                index: self.root.join("index"),
                detail: format!(
                    "it holds {found} of the {recorded} generations of records written to it: its newest writes are gone"
                ),
            });
        }
        Ok(())
    }

    /// Only one process holds the store, so a run still `Running` when we take the lock
    /// belongs to a process that died: say so, instead of `running` forever.
    pub(crate) fn mark_interrupted_runs(&self) -> Result<(), Error> {
        // Finished records carry every node's outcome; read only their heads, so opening a
        // store with many large runs stays fast.
        let mut interrupted = vec![];
        for r in self.runs.iter() {
            let (id, v) = r?;
            if decode::<RunHead>("run", &v)?.status == RunStatus::Running {
                let run: RunRecord = decode("run", &v)?;
                interrupted.push((id, run));
            }
        }
        if interrupted.is_empty() {
            return Ok(());
        }
        for (id, run) in interrupted {
            let run = RunRecord {
                status: RunStatus::Interrupted,
                ..run
            };
            self.runs.insert(id, encode(&run))?;
        }
        if let Some(db) = &self.db {
            db.flush()?;
        }
        Ok(())
    }

    /// One run record.
    pub fn run(&self, id: &str) -> Result<Option<RunRecord>, Error> {
        match self.runs.get(id.as_bytes())? {
            Some(v) => Ok(Some(decode("run", &v)?)),
            None => Ok(None),
        }
    }

    /// All run records, oldest first.
    pub fn runs(&self) -> Result<Vec<RunRecord>, Error> {
        self.runs
            .iter()
            .map(|r| {
                let (_, v) = r?;
                decode("run", &v)
            })
            .collect()
    }

    /// Pins an artifact under a name: `gc` never removes it.
    pub fn pin(&self, name: &str, d: &Digest) -> Result<(), Error> {
        let db = self.writable()?;
        if self.artifact(d)?.is_none() {
            return Err(Error::UnknownArtifact(d.to_hex()));
        }
        self.write(Record::Pin {
            name: name.to_string(),
            artifact: *d,
        })?;
        db.flush()?;
        Ok(())
    }

    /// Removes a pin; returns whether it existed.
    pub fn unpin(&self, name: &str) -> Result<bool, Error> {
        let db = self.writable()?;
        let existed = self.pins.contains_key(name.as_bytes())?;
        self.write(Record::Unpin(name.to_string()))?;
        db.flush()?;
        Ok(existed)
    }

    /// All pins, by name.
    pub fn pins(&self) -> Result<Vec<(String, Digest)>, Error> {
        self.pins
            .iter()
            .map(|r| {
                let (k, v) = r?;
                Ok((
                    String::from_utf8_lossy(&k).into_owned(),
                    Digest(v.as_ref().try_into().expect("pin value is a digest")),
                ))
            })
            .collect()
    }

    /// Rewrites the journal as one base segment holding the index as it is now.
    pub(crate) fn compact_journal(&self) -> Result<(), Error> {
        let Some(journal) = &self.journal else {
            return Err(Error::ReadOnly);
        };
        let mut records: Vec<Record> = self
            .artifacts()?
            .chunks(512)
            .map(|c| Record::Artifacts(c.to_vec()))
            .collect();
        for entry in self.cache_entries()? {
            let mut metas = vec![];
            for (port, _) in &entry.outputs {
                if let Some(m) = self.output_meta.get(output_meta_key(&entry.key, port))? {
                    metas.push((port.clone(), String::from_utf8_lossy(&m).into_owned()));
                }
            }
            records.push(Record::Node {
                entry,
                artifacts: vec![],
                metas,
                head: None,
            });
        }
        for r in self.heads.iter() {
            let (scope, key) = r?;
            if let Ok(key) = <[u8; 32]>::try_from(key.as_ref()) {
                records.push(Record::Head {
                    scope: String::from_utf8_lossy(&scope).into_owned(),
                    key: Digest(key),
                });
            }
        }
        records.extend(self.runs()?.into_iter().map(Record::Run));
        for (name, artifact) in self.pins()? {
            records.push(Record::Pin { name, artifact });
        }
        for r in self.progress.iter() {
            let (k, v) = r?;
            records.push(Record::Progress {
                key: Digest(
                    k[..32]
                        .try_into()
                        .expect("progress key starts with a digest"),
                ),
                batch: u64::from_be_bytes(k[32..40].try_into().expect("progress key is 40 bytes")),
                blob: Digest(v.as_ref().try_into().expect("progress value is a digest")),
            });
        }
        journal.compact(records.into_iter())
    }

    /// Removes artifact records in one atomic batch.
    pub(crate) fn remove_artifacts(&self, ds: &[Digest]) -> Result<(), Error> {
        self.write(Record::ArtifactsRemoved(ds.to_vec()))
    }

    pub(crate) fn forget_verified(&self, d: &Digest) -> Result<(), Error> {
        self.writable()?;
        self.verified.remove(d.0)?;
        Ok(())
    }

    pub(crate) fn flush(&self) -> Result<(), Error> {
        self.writable()?.flush()?;
        Ok(())
    }
}

/// Opens the sled index at `path` (`index` is the store's, for messages: a reader may open
/// a copy of it).
fn open_index(path: &Path, index: &Path) -> Result<sled::Db, Error> {
    // Sled panics on some kinds of damage instead of returning an error; either way the
    // user gets one message saying what is intact and how to go on.
    let opened = std::panic::catch_unwind(|| {
        sled::Config::new()
            .path(path)
            .cache_capacity(64 << 20)
            .open()
    });
    let index = index.to_path_buf();
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(sled::Error::Io(e))) if e.kind() != std::io::ErrorKind::InvalidData => {
            Err(Error::Index(sled::Error::Io(e)))
        }
        Ok(Err(e)) => Err(Error::IndexDamaged {
            index,
            detail: e.to_string(),
        }),
        Err(panic) => {
            let detail = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the index reader panicked".into());
            Err(Error::IndexDamaged { index, detail })
        }
    }
}

/// Whether an error opening a file for writing means this process cannot write there.
fn cannot_write(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
    )
}

/// Copies the directory `src` (sled's index: a few files and a folder of large values)
/// into the existing directory `dest`.
fn copy_dir(src: &Path, dest: &Path) -> Result<(), Error> {
    for (rel, path) in walk_files(src)? {
        let to = dest.join(&rel);
        mkdir(to.parent().expect("a copied file has a parent"))?;
        fs::copy(&path, &to).map_err(|e| Error::io("copy", &path, e))?;
        // The copy is ours to write (sled opens it read-write), whatever the original's mode.
        fs::set_permissions(&to, fs::Permissions::from_mode(0o644))
            .map_err(|e| Error::io("chmod", &to, e))?;
    }
    Ok(())
}

/// Sled writes a snapshot of its page table to `snap.N.generating`, fsyncs it and renames it
/// to `snap.N`, removing older ones only after the rename; but when it opens, it reads the
/// newest file named `snap.*`, `.generating` included. A process killed while writing one
/// (sled writes them at open and on flushes) leaves an index that sled then refuses as
/// corrupt (measured: kill -9 of `dag run` in its first 30 ms, 1 in 100 kills). Such a file
/// is never needed: the previous snapshot and the log are still there, and we hold the
/// store's lock, so no process is writing one now.
fn remove_unfinished_snapshots(index: &Path) -> Result<(), Error> {
    let Ok(entries) = fs::read_dir(index) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            let p = e.path();
            fs::remove_file(&p).map_err(|err| Error::io("remove", &p, err))?;
        }
    }
    Ok(())
}

/// Where the index's generation count lives, in the index and beside it.
const GENERATION_KEY: &[u8] = b"generation";
/// Where the count of [`Store::changes`] lives, in the index's default tree.
const CHANGES_KEY: &[u8] = b"changes";
/// The tree of whole-run memos ([`Store::memo`]).
const MEMO_TREE: &str = "memo";
const GENERATION_FILE: &str = "index-generation";

/// Inserts an artifact record unless present: the first producer is kept, and identical
/// content from another computation costs nothing more.
fn index_artifact(
    t: &sled::transaction::TransactionalTree,
    rec: &ArtifactRecord,
) -> sled::transaction::ConflictableTransactionResult<(), ()> {
    if t.get(rec.digest.0)?.is_none() {
        t.insert(&rec.digest.0, encode(rec))?;
    }
    Ok(())
}

fn output_meta_key(key: &Digest, port: &str) -> Vec<u8> {
    let mut k = key.0.to_vec();
    k.extend_from_slice(port.as_bytes());
    k
}

fn tx_err(e: sled::transaction::TransactionError<()>) -> Error {
    match e {
        sled::transaction::TransactionError::Storage(e) => Error::Index(e),
        sled::transaction::TransactionError::Abort(()) => Error::Decode {
            what: "transaction".into(),
            detail: "aborted".into(),
        },
    }
}
