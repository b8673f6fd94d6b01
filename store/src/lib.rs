//! The content-addressed artifact store of `dag`.
//!
//! Every node output is an artifact named by the blake3 hash of its content. A file
//! artifact is one blob; a directory artifact (a checkpoint folder, sharded activations)
//! is a *tree*: a manifest of `(path, blob digest, size)` whose own digest is a Merkle
//! root over its files, so two checkpoints sharing a tokenizer store it once.
//!
//! On disk (schema `v1`, see [`STORE_SCHEMA`]):
//!
//! ```text
//! .dag/
//!   STORE_VERSION        "dag-store v1"; a different version is refused, never migrated
//!   CACHEDIR.TAG, .gitignore
//!   lock                 pid and role of the process holding the store
//!   serve.sock           where that process answers other processes' index reads
//!   blobs/ab/cdef…       immutable (read-only) blobs, sharded by the first hash byte
//!   trees/<digest>/      directory views of tree artifacts, hard links into blobs/
//!   tmp/                 staging area: a blob is renamed out of here only once durable
//!   quarantine/          blobs that failed `verify --repair`
//!   journal/             every index change, appended: what `verify --rebuild-index` replays
//!   index/               sled: artifacts, cache, consumers, runs, heads, pins, stat cache,
//!                        item progress
//! ```
//!
//! Invariant: the index never names a blob that is not durable. Blobs are written to
//! `tmp/`, fsynced, renamed into place, and only then is the index updated, in one sled
//! transaction. A crash leaves at worst an orphan blob, which `gc` removes.
//!
//! ```no_run
//! # fn main() -> Result<(), dag_store::Error> {
//! let store = dag_store::Store::open(std::path::Path::new(".dag"))?;
//! let pending = store.stage_bytes(b"hello", "report", serde_json::json!({}))?;
//! let digest = pending.digest;
//! store.commit_artifacts(vec![pending])?;
//! assert_eq!(store.read(&digest)?, b"hello");
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod access;
mod digest;
mod error;
mod index;
mod journal;
mod lock;
mod maintenance;
mod serve;
mod store;

pub use digest::{Digest, hash_bytes, hash_file};
pub use error::Error;
pub use index::{
    ArtifactRecord, CacheEntry, Layout, NodeRunRecord, NodeRunStatus, RunRecord, RunStatus,
    TreeEntry,
};
pub use maintenance::{
    CrashAfter, GcOptions, GcReport, RebuildReport, VerifyProblem, VerifyReport,
};
pub use store::{CacheLookup, PendingArtifact, Store};

/// The on-disk schema version. A store written with another version is refused with a
/// hint to use a fresh store: like uv's cache buckets we bump the version, never migrate.
pub const STORE_SCHEMA: &str = "dag-store v1";
