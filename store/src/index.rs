//! Records kept in the sled index, and their encoding.
//!
//! Values are bincode-encoded serde structs; metadata and pre-images that users read are
//! JSON strings inside them, so `serde_json::Value` (which bincode cannot describe) never
//! crosses the binary encoding.

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{Digest, Error};

/// Names of the sled trees. Changing one is a schema change.
pub(crate) mod trees {
    pub const ARTIFACTS: &str = "artifacts-v1";
    pub const CACHE: &str = "cache-v1";
    /// key -> outputs only: what a cache hit needs, without the pre-image.
    pub const OUTPUTS: &str = "cache-outputs-v1";
    /// key ++ output port -> that output's metadata as its producer wrote it. An artifact's
    /// record keeps its first producer's metadata; identical content from another
    /// computation has its own here.
    pub const OUTPUT_META: &str = "cache-output-meta-v1";
    pub const CONSUMERS: &str = "consumers-v1";
    pub const RUNS: &str = "runs-v1";
    pub const HEADS: &str = "heads-v1";
    pub const PINS: &str = "pins-v1";
    pub const STAT: &str = "stat-v1";
    pub const PROGRESS: &str = "progress-v1";
    pub const VERIFIED: &str = "verified-v1";

    /// Every tree, for a reader to ask for by name.
    pub const ALL: &[&str] = &[
        ARTIFACTS,
        CACHE,
        OUTPUTS,
        OUTPUT_META,
        CONSUMERS,
        RUNS,
        HEADS,
        PINS,
        STAT,
        PROGRESS,
        VERIFIED,
    ];
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(v, bincode::config::standard())
        .expect("store records are always encodable")
}

pub(crate) fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, Error> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(v, _)| v)
        .map_err(|e| Error::Decode {
            what: what.to_string(),
            detail: e.to_string(),
        })
}

/// How an artifact is laid out on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    /// One blob.
    File,
    /// A directory: a manifest blob naming one blob per file.
    Tree,
}

/// One file of a tree artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeEntry {
    /// Path relative to the tree root, `/`-separated.
    pub path: String,
    /// Digest of the file's content.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
}

/// What the index knows about one artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    /// The artifact's identity.
    pub digest: Digest,
    /// File or tree.
    pub layout: Layout,
    /// The artifact kind as the engine names it (`dataset`, `model`, `metrics`...).
    pub kind: String,
    /// Total bytes of content.
    pub size: u64,
    /// Files of a tree (empty for a file artifact).
    pub entries: Vec<TreeEntry>,
    /// Other artifacts this one refers to (the elements of a list artifact); kept alive
    /// together by `gc`.
    pub children: Vec<Digest>,
    /// Free-form metadata as JSON text (row counts, columns, dtype...).
    pub meta_json: String,
    /// Cache key of the node instance that produced it, if any.
    pub producer: Option<Digest>,
    /// Seconds since the epoch when first stored.
    pub created: u64,
}

impl ArtifactRecord {
    /// The metadata parsed as JSON.
    pub fn meta(&self) -> serde_json::Value {
        serde_json::from_str(&self.meta_json).unwrap_or(serde_json::Value::Null)
    }
}

/// The cache: what a node instance with a given key produced, and the full pre-image of
/// the key, so that "why did this rerun?" is a diff of two pre-images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// The key (blake3 of the canonical pre-image).
    pub key: Digest,
    /// Output port name to artifact digest, in port order.
    pub outputs: Vec<(String, Digest)>,
    /// The canonical pre-image, JSON text.
    pub preimage_json: String,
    /// Artifacts read to produce the outputs (for downstream lineage).
    pub inputs: Vec<Digest>,
    /// Wall-clock seconds the computation took.
    pub seconds: f64,
    /// The run that computed it.
    pub run_id: String,
    /// The graph node instance that first computed it (`probe[layer=12]`); not part of
    /// the key, so two graphs computing the same thing share the entry.
    pub label: String,
}

impl CacheEntry {
    /// The pre-image parsed as JSON.
    pub fn preimage(&self) -> serde_json::Value {
        serde_json::from_str(&self.preimage_json).unwrap_or(serde_json::Value::Null)
    }
}

/// The outcome of a whole `dag run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunStatus {
    /// Still running (the process holds the store's lock).
    Running,
    /// Every node succeeded or was cached.
    Succeeded,
    /// At least one node failed.
    Failed,
    /// Stopped by Ctrl-C or SIGTERM.
    Cancelled,
    /// Its process died before it could record an outcome (kill -9, a crash, power loss):
    /// found `Running` by the next process to open the store.
    Interrupted,
}

/// What happened to one node instance in a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeRunStatus {
    /// Outputs came from the cache.
    Cached,
    /// Executed and succeeded.
    Ran,
    /// Executed and failed with this message.
    Failed(String),
    /// Not run because an upstream node failed.
    Skipped(String),
    /// Stopped by Ctrl-C.
    Cancelled,
}

/// One node instance in a run record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRunRecord {
    /// Instance name (`probe[layer=12]`).
    pub instance: String,
    /// Node type.
    pub node_type: String,
    /// Cache key, when it could be computed.
    pub key: Option<Digest>,
    /// Outcome.
    pub status: NodeRunStatus,
    /// Wall-clock seconds spent executing (0 when cached).
    pub seconds: f64,
    /// Canonical params as JSON text (secrets never included).
    pub params_json: String,
    /// Outputs by port.
    pub outputs: Vec<(String, Digest)>,
}

/// A record of one `dag run`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Sortable id: `YYYYmmddTHHMMSS.mmm-<pid>` (older stores: `YYYYmmddTHHMMSS-<pid>`, which sort
    /// before the new ones of the same second).
    pub id: String,
    /// Absolute path of the graph file.
    pub graph: String,
    /// Selected profile, if any.
    pub profile: Option<String>,
    /// Seconds since the epoch.
    pub started: u64,
    /// Seconds since the epoch, when finished.
    pub finished: Option<u64>,
    /// Host name.
    pub host: String,
    /// `dag` version that ran it.
    pub tool_version: String,
    /// Overall outcome.
    pub status: RunStatus,
    /// Per-instance outcomes, in execution order.
    pub nodes: Vec<NodeRunRecord>,
}

/// The leading fields of a [`RunRecord`], decoded without its node outcomes (bincode reads
/// a struct's fields in order and ignores what follows).
#[derive(Deserialize)]
pub(crate) struct RunHead {
    _id: String,
    _graph: String,
    _profile: Option<String>,
    _started: u64,
    _finished: Option<u64>,
    _host: String,
    _tool_version: String,
    pub(crate) status: RunStatus,
}

impl RunRecord {
    /// Every artifact this run's nodes produced or reused.
    pub fn artifacts(&self) -> impl Iterator<Item = Digest> + '_ {
        self.nodes
            .iter()
            .flat_map(|n| n.outputs.iter().map(|(_, d)| *d))
    }
}

/// Identity of an external file as the stat cache sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StatKey {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

/// A stat cache record: the file's identity when it was hashed, and the digest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StatRecord {
    pub stat: StatKey,
    pub digest: Digest,
}
