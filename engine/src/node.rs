//! The contract between the engine and node implementations.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use dag_protocol::NodeError;
use dag_store::{Digest, Store};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{ArtifactKind, NodeSpec, Value};

/// A node type's implementation. `run` is called on a blocking thread with the
/// instance's inputs (verified, read-only paths) and writes its outputs through the
/// context; the engine stores them only if `run` returns `Ok`.
pub trait Node: Send + Sync + 'static {
    /// The type's ports, params and resources.
    fn spec(&self) -> &NodeSpec;
    /// Computes the outputs.
    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError>;
    /// Checks beyond each param's type and range (one param constrains another, a URL
    /// must be https), run when the graph loads so the error names the file and line
    /// instead of failing the node after upstream work. `params` has defaults filled in;
    /// matrix variables are absent.
    fn check_params(&self, params: &BTreeMap<String, Value>) -> Result<(), ParamError> {
        let _ = params;
        Ok(())
    }
    /// What an instance holds while running, given its params and the input ports the
    /// graph connects: by default the spec's. A node that runs a model only when one is
    /// connected (a judge node's local `judge`) holds the GPU class then, so it never runs
    /// beside another model node on the same device (or on the same CPU cores, each with
    /// all the threads); a user step holds what its params declare.
    fn resources(&self, params: &BTreeMap<String, Value>, connected: &[&str]) -> crate::Resources {
        let _ = (params, connected);
        self.spec().resources
    }
    /// Whether each node of this type declares its own ports and params in the graph
    /// (`outputs = {...}`, `params = {...}`, and inputs named freely, of any kind): a user
    /// step. The engine then checks the graph against that node's spec (see
    /// [`crate::NodeDecl::spec`]) rather than the type's.
    fn declares_ports(&self) -> bool {
        false
    }
    /// For a type that [`Node::declares_ports`]: checks a node's params against its own
    /// declared spec (a placeholder naming a port it does not have), at load.
    fn check_declared(
        &self,
        spec: &NodeSpec,
        params: &BTreeMap<String, Value>,
    ) -> Result<(), ParamError> {
        let _ = (spec, params);
        Ok(())
    }
    /// What an instance's outputs depend on beyond its params, input artifacts and path
    /// contents, entering its key (a user step's interpreter version). `Err` says why it
    /// could not be found out, and fails the instance.
    fn key_material(
        &self,
        params: &BTreeMap<String, Value>,
    ) -> Result<Option<serde_json::Value>, String> {
        let _ = params;
        Ok(None)
    }
}

/// A param that [`Node::check_params`] refuses.
#[derive(Debug, Clone)]
pub struct ParamError {
    /// The param at fault (its line is reported).
    pub param: String,
    /// What is wrong.
    pub message: String,
    /// What to write instead.
    pub hint: Option<String>,
}

impl ParamError {
    /// `param` is wrong because of `message`; `hint` says what to write instead.
    pub fn new(param: &str, message: impl Into<String>, hint: impl Into<String>) -> Self {
        ParamError {
            param: param.to_string(),
            message: message.into(),
            hint: Some(hint.into()),
        }
    }
}

/// A store failure as a node error.
pub fn store_failure(e: dag_store::Error) -> NodeError {
    NodeError::caused_hinted("Failed to use the artifact store", &e)
}

/// One input artifact as a node sees it.
#[derive(Debug, Clone)]
pub struct InputArtifact {
    /// The artifact's digest.
    pub digest: Digest,
    /// Its kind.
    pub kind: ArtifactKind,
    /// A read-only path: the file, or a directory for tree artifacts.
    pub path: PathBuf,
    /// Metadata written by the producer.
    pub meta: serde_json::Value,
    /// Where it came from (`finetune.checkpoints[step-30]`), for labels in reports: the
    /// printed [`InputArtifact::source`].
    pub label: String,
    /// Where it came from, as parts: the producing instance, its port, the list element.
    pub source: crate::Source,
}

/// What a running node can see and do.
pub struct RunContext<'a> {
    pub(crate) instance: String,
    pub(crate) params: BTreeMap<String, Value>,
    pub(crate) inputs: BTreeMap<String, Vec<InputArtifact>>,
    pub(crate) out_dir: PathBuf,
    pub(crate) meta: BTreeMap<String, serde_json::Value>,
    pub(crate) store: &'a Store,
    pub(crate) key: Digest,
    pub(crate) cancel: Arc<AtomicBool>,
    pub(crate) progress: indicatif::ProgressBar,
    pub(crate) next_batch: u64,
    pub(crate) spec: &'a NodeSpec,
    pub(crate) run: &'a RunShared,
}

/// What every node of one run shares: the run's limits, and state a node layer keeps per
/// run by type (the judge layer's connection slots per endpoint and its call budget), so
/// that nodes running side by side are bounded together rather than each on its own.
pub(crate) struct RunShared {
    pub(crate) limits: crate::Limits,
    pub(crate) run_id: String,
    pub(crate) graph_dir: PathBuf,
    by_type: std::sync::Mutex<
        std::collections::HashMap<std::any::TypeId, Arc<dyn std::any::Any + Send + Sync>>,
    >,
}

impl RunShared {
    pub(crate) fn new(limits: crate::Limits, run_id: String, graph_dir: PathBuf) -> Self {
        RunShared {
            limits,
            run_id,
            graph_dir,
            by_type: Default::default(),
        }
    }
}

impl<'a> RunContext<'a> {
    /// The run's resource limits and budgets, as `dag run` was given them.
    pub fn limits(&self) -> &crate::Limits {
        &self.run.limits
    }

    /// The one `T` of this run, made by `init` from the run's limits for the first node that
    /// asks; every node of the run gets the same one.
    pub fn run_shared<T: Send + Sync + 'static>(
        &self,
        init: impl FnOnce(&crate::Limits) -> T,
    ) -> Arc<T> {
        let mut by_type = self.run.by_type.lock().unwrap_or_else(|e| e.into_inner());
        let entry = by_type
            .entry(std::any::TypeId::of::<T>())
            .or_insert_with(|| Arc::new(init(&self.run.limits)));
        entry
            .clone()
            .downcast::<T>()
            .expect("entries are stored under their own type")
    }

    /// The instance name (`probe[layer=12]`).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The spec this instance runs under: its type's, or the one its node declares.
    pub fn spec(&self) -> &'a NodeSpec {
        self.spec
    }

    /// The id of the run, for files kept beside its record (a user step's logs).
    pub fn run_id(&self) -> &str {
        &self.run.run_id
    }

    /// The directory of the graph file: where a user step's command runs. Never part of
    /// an output or a key.
    pub fn graph_dir(&self) -> &Path {
        &self.run.graph_dir
    }

    /// All params, coerced to their declared types; paths are absolute.
    pub fn params(&self) -> &BTreeMap<String, Value> {
        &self.params
    }

    fn param(&self, name: &str) -> Option<&Value> {
        debug_assert!(self.spec.param(name).is_some(), "undeclared param {name}");
        self.params.get(name)
    }

    /// A string (or enum, path, secret-env) param; `None` when absent.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.param(name).and_then(Value::as_str)
    }

    /// An integer param.
    pub fn int(&self, name: &str) -> Option<i64> {
        match self.param(name) {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        }
    }

    /// A float param.
    pub fn float(&self, name: &str) -> Option<f64> {
        match self.param(name) {
            Some(Value::Float(f)) => Some(*f),
            Some(Value::Int(i)) => Some(*i as f64),
            _ => None,
        }
    }

    /// A boolean param.
    pub fn bool(&self, name: &str) -> Option<bool> {
        match self.param(name) {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    /// A list or table param, any value.
    pub fn value(&self, name: &str) -> Option<&Value> {
        self.param(name)
    }

    /// The artifacts connected to `port` (empty for an unconnected optional port).
    pub fn inputs(&self, port: &str) -> &[InputArtifact] {
        self.inputs.get(port).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The single artifact connected to `port`.
    pub fn input(&self, port: &str) -> Result<&InputArtifact, NodeError> {
        self.inputs(port)
            .first()
            .ok_or_else(|| NodeError::msg(format!("Input `{port}` is not connected")))
    }

    /// Where to write the output `port`: a file path, or (for directory ports) a
    /// directory that already exists.
    pub fn output_path(&self, port: &str) -> PathBuf {
        let spec = self
            .spec
            .output(port)
            .unwrap_or_else(|| panic!("node type {} has no output {port}", self.spec.name));
        let p = self.out_dir.join(port);
        if spec.dir || spec.kind.element().is_some() {
            let _ = std::fs::create_dir_all(&p);
        }
        p
    }

    /// For a list output (checkpoints), a fresh directory for the element `name`;
    /// elements are listed in the order they were created.
    pub fn list_item(&self, port: &str, name: &str) -> Result<PathBuf, NodeError> {
        let dir = self.output_path(port);
        let n = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        let p = dir.join(format!("{n:06}-{name}"));
        std::fs::create_dir_all(&p)
            .map_err(|e| NodeError::caused(format!("Failed to create `{}`", p.display()), &e))?;
        Ok(p)
    }

    /// Attaches metadata (row counts, columns...) to an output.
    pub fn set_meta(&mut self, port: &str, meta: serde_json::Value) {
        self.meta.insert(port.to_string(), meta);
    }

    /// A scratch directory that is removed after the node finishes.
    pub fn scratch(&self) -> PathBuf {
        let p = self.out_dir.join(".scratch");
        let _ = std::fs::create_dir_all(&p);
        p
    }

    /// A directory that survives killed attempts at this same computation (same cache
    /// key), for resumable progress too large for [`Self::save_items`]: activation shards,
    /// checkpoints with optimizer state. Write files atomically (tmp, then rename) and
    /// record each finished one with `save_items`; `dag gc` removes work directories that
    /// have no saved items. Removed once the outputs are committed.
    pub fn work_dir(&self) -> Result<PathBuf, NodeError> {
        self.store.work_dir(&self.key).map_err(store_failure)
    }

    /// Fails with [`NodeError::cancelled`] once the user pressed Ctrl-C. Long nodes call
    /// this between batches.
    pub fn check_cancelled(&self) -> Result<(), NodeError> {
        if self.cancel.load(Ordering::Relaxed) {
            Err(NodeError::cancelled())
        } else {
            Ok(())
        }
    }

    /// The cancellation flag itself, for nodes that must stop work they do not run
    /// themselves (a worker process to kill).
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// Sets the total number of items, for the progress bar.
    pub fn set_total(&self, total: u64) {
        self.progress.set_length(total);
    }

    /// Advances the progress bar.
    pub fn advance(&self, n: u64) {
        self.progress.inc(n);
    }

    /// Prints a line above the progress bars.
    pub fn info(&self, msg: impl AsRef<str>) {
        tracing::info!(node = %self.instance, "{}", msg.as_ref());
        self.progress
            .println(format!("[{}] {}", self.instance, msg.as_ref()));
    }

    /// Items completed by earlier, interrupted attempts at this same computation, in
    /// the order they were saved. A node that processes many items calls this first and
    /// skips what it returns, then saves each new batch with [`Self::save_items`]: a
    /// kill -9 loses at most the batch in flight.
    pub fn resume_items<T: DeserializeOwned>(&mut self) -> Result<Vec<T>, NodeError> {
        let mut out = Vec::new();
        let batches = self.store.progress_load(&self.key).map_err(store_failure)?;
        let mut expected = 0;
        for (idx, bytes) in batches {
            // A gap (a lost batch) ends what we can trust: later batches are redone.
            if idx != expected {
                break;
            }
            let items: Vec<T> = serde_json::from_slice(&bytes)
                .map_err(|e| NodeError::caused("Failed to decode a saved batch of items", &e))?;
            out.extend(items);
            expected += 1;
        }
        self.next_batch = expected;
        if !out.is_empty() {
            self.info(format!("resuming: {} items already done", out.len()));
        }
        Ok(out)
    }

    /// Durably saves a batch of completed items (see [`Self::resume_items`]).
    pub fn save_items<T: Serialize>(&mut self, items: &[T]) -> Result<(), NodeError> {
        let bytes = serde_json::to_vec(items)
            .map_err(|e| NodeError::caused("Failed to encode a batch of items", &e))?;
        self.store
            .progress_save(&self.key, self.next_batch, &bytes)
            .map_err(store_failure)?;
        tracing::debug!(node = %self.instance, batch = self.next_batch, items = items.len(), "saved batch");
        self.next_batch += 1;
        Ok(())
    }

    /// The params as a typed struct (see `dag_protocol::params!`), for a node whose spec is
    /// derived from one with [`crate::ParamSpec::from_params`].
    pub fn typed_params<P: dag_protocol::params::Params>(&self) -> Result<P, NodeError> {
        let map: serde_json::Map<String, serde_json::Value> = self
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect();
        P::from_map(&map).map_err(|e| {
            NodeError::caused(
                format!("Failed to read the params of `{}`", self.instance),
                &e,
            )
        })
    }

    /// The saved result of one paid call (a judge's reply), by the call's own key: what the
    /// call asks and of whom, not this node's key. A node that makes such calls looks each
    /// up first and saves each as it completes ([`Self::save_call_result`]), so a kill loses
    /// no call already answered, and a rerun with changed inputs or params sends only the
    /// calls it has not made before.
    pub fn call_result<T: DeserializeOwned>(&self, call: &Digest) -> Result<Option<T>, NodeError> {
        let saved = self.store.progress_load(call).map_err(store_failure)?;
        match saved.into_iter().find(|(batch, _)| *batch == 0) {
            Some((_, bytes)) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| NodeError::caused("Failed to decode a saved call result", &e)),
            None => Ok(None),
        }
    }

    /// Durably saves the result of one call (see [`Self::call_result`]).
    pub fn save_call_result<T: Serialize>(
        &self,
        call: &Digest,
        result: &T,
    ) -> Result<(), NodeError> {
        let bytes = serde_json::to_vec(result)
            .map_err(|e| NodeError::caused("Failed to encode a call result", &e))?;
        self.store
            .progress_save(call, 0, &bytes)
            .map_err(store_failure)
    }

    /// The store root, for nodes that keep caches beside it.
    pub fn store_root(&self) -> &Path {
        self.store.root()
    }
}

/// The node types a graph may use.
#[derive(Default, Clone)]
pub struct Registry {
    nodes: HashMap<&'static str, Arc<dyn Node>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a node type.
    pub fn register(&mut self, node: impl Node) {
        let name = node.spec().name;
        self.nodes.insert(name, Arc::new(node));
    }

    /// The node type named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Node>> {
        self.nodes.get(name)
    }

    /// All type names, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        let mut v: Vec<_> = self.nodes.keys().copied().collect();
        v.sort();
        v
    }
}
