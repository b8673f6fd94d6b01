//! The scheduler: expands the graph into node instances, keys them, answers what it
//! can from the cache and runs the rest concurrently within resource limits.
//!
//! Each declared node is one future that waits for its upstream nodes, expands into
//! instances (static matrix, and a dynamic map over list artifacts once they exist),
//! and settles each instance from the cache or by running it on a blocking thread. A
//! cached instance costs a key computation and one index lookup, so a no-op run is
//! linear in the number of nodes.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use dag_diagnostic::Hint;
use dag_store::{
    CacheEntry, CacheLookup, Digest, NodeRunRecord, NodeRunStatus, PendingArtifact, RunRecord,
    RunStatus, Store,
};
use tokio::sync::{Semaphore, watch};

use crate::NodeError;
use crate::explain::{NodeState, StatusLine, explain_change};
use crate::instance::{InstanceId, Source};
use crate::key::Preimage;
use crate::node::{InputArtifact, Node, RunContext, store_failure};
use crate::spec::NodeSpec;
use crate::{ArtifactKind, Graph, Resources, Value};

/// Execute, or only say what would happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Run what is not cached.
    Execute,
    /// Compute keys and states; run nothing (`dag status`, `dag plan`).
    DryRun,
}

/// How many of each resource may be held at once.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// CPU slots (default: the number of cores).
    pub cpu: u32,
    /// GPU slots (default 1).
    pub gpu: u32,
    /// Concurrent API connections (default 8): the scheduler's `api` resource class, and
    /// the connections one run may hold open to any one endpoint.
    pub api: u32,
    /// Requests to APIs this run may send, retries included (default: unlimited).
    pub api_calls: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cpu: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
            gpu: 1,
            api: 8,
            api_calls: None,
        }
    }
}

/// Options of one run.
#[derive(Clone)]
pub struct RunOptions {
    /// Execute or dry-run.
    pub mode: RunMode,
    /// Resource limits.
    pub limits: Limits,
    /// Stop starting new nodes after the first failure (default: keep going).
    pub fail_fast: bool,
    /// Only these nodes and what they need (empty: all).
    pub targets: Vec<String>,
    /// Set to stop: running nodes see it through `check_cancelled`.
    pub cancel: Arc<AtomicBool>,
    /// Draw progress bars.
    pub progress: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            mode: RunMode::Execute,
            limits: Limits::default(),
            fail_fast: false,
            targets: vec![],
            cancel: Arc::new(AtomicBool::new(false)),
            progress: false,
        }
    }
}

/// What happened, as it happens: for logs and for tests that snapshot execution.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Outputs came from the cache.
    Cached(String),
    /// Started executing.
    Started(String),
    /// Finished and committed.
    Finished(String),
    /// Failed.
    Failed(String, String),
    /// Skipped because upstream failed.
    Skipped(String),
}

/// The outcome of a run (or dry run).
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Run id (empty for dry runs).
    pub run_id: String,
    /// Overall status.
    pub status: RunStatus,
    /// Per instance, in a topological order.
    pub lines: Vec<StatusLine>,
    /// Records as stored.
    pub records: Vec<NodeRunRecord>,
}

#[derive(Debug, Clone)]
struct InstOutcome {
    name: String,
    id: InstanceId,
    assignment: BTreeMap<String, Value>,
    outputs: Option<Vec<(&'static str, Digest, ArtifactKind)>>,
    /// Instances that are not settled: they will run, or failed.
    blocked_by: Vec<String>,
    failed: bool,
}

#[derive(Debug, Default)]
struct DeclOutcome {
    instances: Vec<InstOutcome>,
}

/// Runs one graph against one store.
pub struct Runner {
    store: Arc<Store>,
    graph: Arc<Graph>,
    opts: RunOptions,
    run_id: String,
    cpu: Arc<Semaphore>,
    gpu: Arc<Semaphore>,
    api: Arc<Semaphore>,
    shared: Arc<crate::node::RunShared>,
    multi: indicatif::MultiProgress,
    bar_style: indicatif::ProgressStyle,
    /// Settled instances, tagged with their node's position in the topological order.
    log: std::sync::Mutex<Vec<(usize, StatusLine, NodeRunRecord)>>,
    topo_pos: Vec<usize>,
    failed_once: AtomicBool,
}

fn run_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    // Civil date from days since the epoch (Howard Hinnant's algorithm) so ids sort.
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    // Milliseconds, because ids order the runs (`last`, `last~1`, gc's `--keep-runs`): two
    // runs in one second ordered by their pids' digits, "-995" after "-1068".
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}.{:03}-{}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis(),
        std::process::id()
    )
}

/// An instance's inputs, resolved against the settled upstream instances.
struct Upstream {
    inputs: BTreeMap<String, Vec<(Digest, ArtifactKind, Source)>>,
    /// Upstream instances that have not settled yet.
    waiting: Vec<String>,
    /// Upstream instances that failed.
    failed_up: Vec<String>,
}

/// One instance to execute, on a blocking thread: run the node into a scratch directory,
/// ingest its outputs and commit them with the cache entry, in that order, so nothing
/// partial is ever committed.
struct Execution {
    store: Arc<Store>,
    node: Arc<dyn Node>,
    /// The spec its node declares, if it declares one (else it runs under its type's).
    declared: Option<Arc<NodeSpec>>,
    instance: String,
    params: BTreeMap<String, Value>,
    inputs: BTreeMap<String, Vec<(Digest, ArtifactKind, Source)>>,
    key: Digest,
    preimage_json: String,
    run_id: String,
    scope: String,
    cancel: Arc<AtomicBool>,
    bar: indicatif::ProgressBar,
    started: Instant,
    shared: Arc<crate::node::RunShared>,
}

impl Execution {
    fn run(self) -> Result<Vec<(String, Digest)>, NodeError> {
        let store = &self.store;
        let out_dir = store.scratch_dir(&self.instance).map_err(store_failure)?;
        let mut resolved: BTreeMap<String, Vec<InputArtifact>> = BTreeMap::new();
        let mut all_inputs = vec![];
        for (port, items) in self.inputs {
            let v = resolved.entry(port).or_default();
            for (d, kind, source) in items {
                let path = store.path(&d).map_err(store_failure)?;
                let meta = store
                    .artifact(&d)
                    .map_err(store_failure)?
                    .map(|a| a.meta())
                    .unwrap_or_default();
                all_inputs.push(d);
                v.push(InputArtifact {
                    digest: d,
                    kind,
                    path,
                    meta,
                    label: source.to_string(),
                    source,
                });
            }
        }
        let spec = self.declared.as_deref().unwrap_or_else(|| self.node.spec());
        let mut ctx = RunContext {
            instance: self.instance.clone(),
            params: self.params,
            inputs: resolved,
            out_dir: out_dir.clone(),
            meta: BTreeMap::new(),
            store,
            key: self.key,
            cancel: self.cancel,
            progress: self.bar.clone(),
            next_batch: 0,
            spec,
            run: &self.shared,
        };
        let ran = self.node.run(&mut ctx);
        self.bar.finish_and_clear();
        let meta = std::mem::take(&mut ctx.meta);
        drop(ctx);
        if let Err(e) = ran {
            let _ = std::fs::remove_dir_all(&out_dir);
            return Err(e);
        }
        let (outputs, pending) = ingest(store, spec, &out_dir, &meta)?;
        let entry = CacheEntry {
            key: self.key,
            outputs: outputs.clone(),
            preimage_json: self.preimage_json,
            inputs: all_inputs,
            seconds: self.started.elapsed().as_secs_f64(),
            run_id: self.run_id,
            label: self.instance,
        };
        store
            .commit_node(&entry, &pending, Some(&self.scope))
            .map_err(store_failure)?;
        store.progress_clear(&self.key).map_err(store_failure)?;
        store.release_scratch(out_dir);
        Ok(outputs)
    }
}

fn cartesian(matrix: &[(String, Vec<Value>)]) -> Vec<BTreeMap<String, Value>> {
    let mut out = vec![BTreeMap::new()];
    for (k, vs) in matrix {
        out = out
            .into_iter()
            .flat_map(|a| {
                vs.iter().map(move |v| {
                    let mut a = a.clone();
                    a.insert(k.clone(), v.clone());
                    a
                })
            })
            .collect();
    }
    out
}

/// The store's head pointer name for an instance of the graph at `graph` (an absolute path,
/// as run records hold it): the key that instance last completed with, set as each instance
/// commits, so a run in progress can be read before its record lists its nodes.
pub(crate) fn head_scope(graph: &str, instance: &str) -> String {
    format!("{graph}::{instance}")
}

impl Runner {
    /// A runner for `graph` on `store`.
    pub fn new(store: Arc<Store>, graph: Arc<Graph>, opts: RunOptions) -> Runner {
        let mut topo_pos = vec![0; graph.nodes.len()];
        for (i, &d) in graph.order.iter().enumerate() {
            topo_pos[d] = i;
        }
        let l = opts.limits;
        let multi = if opts.progress {
            indicatif::MultiProgress::new()
        } else {
            indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden())
        };
        let id = run_id();
        Runner {
            store,
            run_id: id.clone(),
            cpu: Arc::new(Semaphore::new(l.cpu.max(1) as usize)),
            gpu: Arc::new(Semaphore::new(l.gpu.max(1) as usize)),
            api: Arc::new(Semaphore::new(l.api.max(1) as usize)),
            shared: Arc::new(crate::node::RunShared::new(
                l,
                id.clone(),
                graph.dir().to_path_buf(),
            )),
            opts,
            multi,
            bar_style: indicatif::ProgressStyle::with_template(
                "{spinner} {prefix} {wide_bar} {pos}/{len} {eta}",
            )
            .expect("static template"),
            log: Default::default(),
            topo_pos,
            failed_once: AtomicBool::new(false),
            graph,
        }
    }

    /// The id this run is recorded under.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    fn scope(&self, instance: &str) -> String {
        head_scope(&self.graph.path.display().to_string(), instance)
    }

    /// Runs (or dry-runs) the graph; `on_event` sees each instance settle.
    pub async fn run(
        &self,
        on_event: &(dyn Fn(&Event) + Sync),
    ) -> Result<RunSummary, dag_store::Error> {
        let g = &self.graph;
        let needed = self.needed();
        let started = dag_store_now();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let mut record = RunRecord {
            id: self.run_id.clone(),
            graph: g.path.display().to_string(),
            profile: g.profile.clone(),
            started,
            finished: None,
            host,
            tool_version: crate::VERSION.to_string(),
            status: RunStatus::Running,
            nodes: vec![],
        };
        let execute = self.opts.mode == RunMode::Execute;
        if execute {
            self.store.put_run(&record)?;
        }
        // One cell per declared node, filled once when it settles. Consumers wait on
        // the cell rather than polling the producer's future, so settling costs
        // O(nodes + edges) however deep the graph is.
        let cells: Vec<watch::Sender<Option<Arc<DeclOutcome>>>> =
            (0..g.nodes.len()).map(|_| watch::channel(None).0).collect();
        let cells = &cells;
        let mut futs = Vec::with_capacity(g.nodes.len());
        for &d in &g.order {
            if !needed.contains(&d) {
                continue;
            }
            let ups: std::collections::BTreeSet<usize> = g.nodes[d]
                .inputs
                .iter()
                .flat_map(|i| i.sources.iter().map(|s| s.node))
                .collect();
            futs.push(async move {
                let mut done: BTreeMap<usize, Arc<DeclOutcome>> = BTreeMap::new();
                for u in ups {
                    let mut rx = cells[u].subscribe();
                    let v = rx
                        .wait_for(Option::is_some)
                        .await
                        .expect("cells live until the run ends")
                        .clone()
                        .expect("waited for a value");
                    done.insert(u, v);
                }
                let out = Arc::new(self.settle_decl(d, &done, on_event).await);
                cells[d].send_replace(Some(out));
            });
        }
        futures::future::join_all(futs).await;
        let mut log = std::mem::take(&mut *self.log.lock().expect("log lock"));
        // Report in graph order, instances in creation order (the sort is stable).
        log.sort_by_key(|(pos, _, _)| *pos);
        let (lines, records): (Vec<_>, Vec<_>) = log.into_iter().map(|(_, l, r)| (l, r)).unzip();
        let status = if self.opts.cancel.load(Ordering::Relaxed) {
            RunStatus::Cancelled
        } else if records.iter().any(|r: &NodeRunRecord| {
            matches!(
                r.status,
                NodeRunStatus::Failed(_) | NodeRunStatus::Skipped(_)
            )
        }) {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        };
        record.status = status;
        record.finished = Some(dag_store_now());
        record.nodes = records.clone();
        if execute {
            self.store.put_run(&record)?;
        }
        Ok(RunSummary {
            run_id: if execute {
                self.run_id.clone()
            } else {
                String::new()
            },
            status,
            lines,
            records,
        })
    }

    /// The declared nodes the targets need (all when no targets).
    fn needed(&self) -> HashSet<usize> {
        let g = &self.graph;
        if self.opts.targets.is_empty() {
            return (0..g.nodes.len()).collect();
        }
        let mut stack: Vec<usize> = self.opts.targets.iter().filter_map(|t| g.node(t)).collect();
        let mut seen = HashSet::new();
        while let Some(n) = stack.pop() {
            if seen.insert(n) {
                stack.extend(
                    g.nodes[n]
                        .inputs
                        .iter()
                        .flat_map(|i| i.sources.iter().map(|s| s.node)),
                );
            }
        }
        seen
    }

    async fn settle_decl(
        &self,
        d: usize,
        done: &BTreeMap<usize, Arc<DeclOutcome>>,
        on_event: &(dyn Fn(&Event) + Sync),
    ) -> DeclOutcome {
        let decl = &self.graph.nodes[d];
        let spec = decl.spec();
        let mut out = DeclOutcome::default();
        // A dynamic map expands over the list elements of its `[*]` source.
        let each = decl
            .inputs
            .iter()
            .find_map(|i| i.sources.iter().find(|s| s.each).map(|s| (i.port, s)));
        // A node that reads a dynamically mapped node through a port of one artifact maps
        // with it, element by element (`grade[step-30]` reads `answers[step-30]`), as a
        // matrix node follows the matrix variables it shares with its inputs.
        let inherited = match each {
            Some(_) => None,
            None => decl
                .inputs
                .iter()
                .filter(|i| spec.input(i.port).is_some_and(|p| !p.many))
                .flat_map(|i| i.sources.iter())
                .find(|s| {
                    done[&s.node]
                        .instances
                        .iter()
                        .any(|u| u.id.element.is_some())
                }),
        };
        for assignment in cartesian(&decl.matrix) {
            let mut elements: Vec<Option<(String, Option<Digest>)>> = vec![None];
            let mut blocked = vec![];
            if let Some(src) = inherited {
                elements = matching(&done[&src.node], &assignment, None)
                    .filter_map(|up| up.id.element.clone().map(|e| Some((e, None))))
                    .collect();
            }
            if let Some((_, src)) = each {
                elements.clear();
                for up in matching(&done[&src.node], &assignment, None) {
                    match &up.outputs {
                        Some(outs) => {
                            let list = outs
                                .iter()
                                .find(|(p, _, _)| *p == src.port)
                                .expect("declared output")
                                .1;
                            match self.store.read_list(&list) {
                                Ok(items) => elements
                                    .extend(items.into_iter().map(|(n, d)| Some((n, Some(d))))),
                                Err(e) => blocked.push(format!("{} ({e})", up.name)),
                            }
                        }
                        None => blocked.push(up.name.clone()),
                    }
                }
                if !blocked.is_empty() {
                    elements = vec![None];
                }
            }
            for element in elements {
                let id = InstanceId::new(
                    &decl.name,
                    &assignment,
                    element.as_ref().map(|(n, _)| n.as_str()),
                );
                let inst = self
                    .settle_instance(d, id, &assignment, element, done, &blocked, on_event)
                    .await;
                out.instances.push(inst);
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    async fn settle_instance(
        &self,
        decl_index: usize,
        id: InstanceId,
        assignment: &BTreeMap<String, Value>,
        element: Option<(String, Option<Digest>)>,
        done: &BTreeMap<usize, Arc<DeclOutcome>>,
        each_blocked: &[String],
        on_event: &(dyn Fn(&Event) + Sync),
    ) -> InstOutcome {
        let decl = &self.graph.nodes[decl_index];
        let spec = decl.spec();
        let name = id.to_string();
        let mut params = decl.params.clone();
        params.extend(assignment.iter().map(|(k, v)| (k.clone(), v.clone())));
        let params_json = {
            let mut m = serde_json::Map::new();
            for (k, v) in &params {
                m.insert(k.clone(), v.to_json());
            }
            serde_json::Value::Object(m).to_string()
        };
        let mut outcome = InstOutcome {
            name: name.clone(),
            id,
            assignment: assignment.clone(),
            outputs: None,
            blocked_by: vec![],
            failed: false,
        };
        let mut record = NodeRunRecord {
            instance: name.clone(),
            node_type: spec.name.to_string(),
            key: None,
            status: NodeRunStatus::Cancelled,
            seconds: 0.0,
            params_json,
            outputs: vec![],
        };
        let Upstream {
            inputs,
            mut waiting,
            mut failed_up,
        } = self.resolve_inputs(decl_index, assignment, &element, done, each_blocked);
        let finish = |outcome: InstOutcome,
                      line_state: NodeState,
                      key: Option<Digest>,
                      record: NodeRunRecord| {
            let line = StatusLine {
                instance: name.clone(),
                node_type: spec.name.to_string(),
                key: key.map(|k| k.to_hex()),
                state: line_state,
            };
            self.log
                .lock()
                .expect("log lock")
                .push((self.topo_pos[decl_index], line, record));
            outcome
        };
        if !failed_up.is_empty() {
            failed_up.dedup();
            on_event(&Event::Skipped(name.clone()));
            record.status =
                NodeRunStatus::Skipped(format!("upstream failed: {}", failed_up.join(", ")));
            outcome.failed = true;
            outcome.blocked_by = failed_up.clone();
            return finish(
                outcome,
                NodeState::Skipped {
                    upstream: failed_up,
                },
                None,
                record,
            );
        }
        if !waiting.is_empty() {
            waiting.dedup();
            outcome.blocked_by = waiting.clone();
            return finish(
                outcome,
                NodeState::Waiting { upstream: waiting },
                None,
                record,
            );
        }
        if self.opts.cancel.load(Ordering::Relaxed)
            || (self.opts.fail_fast && self.failed_once.load(Ordering::Relaxed))
        {
            outcome.failed = true;
            return finish(outcome, NodeState::Cancelled, None, record);
        }
        let pre = match self.preimage(decl, &params, &inputs) {
            Ok(pre) => pre,
            Err(msg) => return self.fail(outcome, record, None, msg, on_event, &finish),
        };
        let key = pre.key();
        record.key = Some(key);
        let scope = self.scope(&name);
        let lookup = match self.store.cache_lookup(&key) {
            Ok(l) => l,
            Err(e) => {
                return self.fail(
                    outcome,
                    record,
                    Some(key),
                    with_hint(format!("Failed to read the cache: {e}"), e.hint()),
                    on_event,
                    &finish,
                );
            }
        };
        let missing_outputs = matches!(lookup, CacheLookup::OutputsMissing(_));
        if let CacheLookup::OutputsMissing(d) = &lookup {
            tracing::warn!(instance = %name, artifact = %d, "cached output is missing from the store; recomputing");
        }
        let cached = match lookup {
            CacheLookup::Hit(outputs) => Some(outputs),
            CacheLookup::OutputsMissing(_) | CacheLookup::Miss => None,
        };
        if let Some(outputs) = cached {
            let outs = self.kinds(spec, &outputs);
            record.outputs = outputs;
            record.status = NodeRunStatus::Cached;
            if self.opts.mode == RunMode::Execute
                && self.store.head(&scope).ok().flatten() != Some(key)
            {
                let _ = self.store.set_head(&scope, &key);
            }
            on_event(&Event::Cached(name.clone()));
            outcome.outputs = Some(outs);
            return finish(outcome, NodeState::Cached, Some(key), record);
        }
        if self.opts.mode == RunMode::DryRun {
            let state = match self
                .store
                .head(&scope)
                .ok()
                .flatten()
                .and_then(|h| self.store.cache_get(&h).ok().flatten())
            {
                _ if missing_outputs => NodeState::Stale {
                    reasons: vec!["its stored outputs are missing from the store".into()],
                },
                Some(prev) => NodeState::Stale {
                    reasons: explain_change(&prev.preimage(), &pre.0),
                },
                None => NodeState::NeverRun,
            };
            outcome.blocked_by = vec![name.clone()];
            return finish(outcome, state, Some(key), record);
        }
        // Execute.
        let connected: Vec<&str> = decl.inputs.iter().map(|i| i.port).collect();
        let res = decl.node.resources(&params, &connected);
        let permits = self.acquire(res).await;
        if self.opts.cancel.load(Ordering::Relaxed) {
            drop(permits);
            outcome.failed = true;
            return finish(outcome, NodeState::Cancelled, Some(key), record);
        }
        on_event(&Event::Started(name.clone()));
        let t0 = Instant::now();
        let bar = if self.opts.progress {
            let bar = self.multi.add(indicatif::ProgressBar::no_length());
            bar.set_style(self.bar_style.clone());
            bar.set_prefix(name.clone());
            bar
        } else {
            // Nothing is drawn: no bar to register (10,000 small nodes would pay for it).
            indicatif::ProgressBar::hidden()
        };
        let execution = Execution {
            store: self.store.clone(),
            node: decl.node.clone(),
            declared: decl.declared.clone(),
            instance: name.clone(),
            params,
            inputs,
            key,
            preimage_json: pre.0.to_string(),
            run_id: self.run_id.clone(),
            scope,
            cancel: self.opts.cancel.clone(),
            bar,
            started: t0,
            shared: self.shared.clone(),
        };
        let result = tokio::task::spawn_blocking(move || execution.run()).await;
        drop(permits);
        record.seconds = t0.elapsed().as_secs_f64();
        match result {
            Ok(Ok(outputs)) => {
                on_event(&Event::Finished(name.clone()));
                outcome.outputs = Some(self.kinds(spec, &outputs));
                record.outputs = outputs;
                record.status = NodeRunStatus::Ran;
                finish(outcome, NodeState::Ran, Some(key), record)
            }
            Ok(Err(e)) if e.cancelled => {
                outcome.failed = true;
                finish(outcome, NodeState::Cancelled, Some(key), record)
            }
            Ok(Err(e)) => self.fail(
                outcome,
                record,
                Some(key),
                failure_text(&e),
                on_event,
                &finish,
            ),
            Err(join) => self.fail(
                outcome,
                record,
                Some(key),
                format!("node panicked: {join}"),
                on_event,
                &finish,
            ),
        }
    }

    /// The upstream artifacts each input port gets, and the upstream instances that are
    /// not settled yet (waiting) or failed, from the settled instances in `done`.
    fn resolve_inputs(
        &self,
        decl_index: usize,
        assignment: &BTreeMap<String, Value>,
        element: &Option<(String, Option<Digest>)>,
        done: &BTreeMap<usize, Arc<DeclOutcome>>,
        each_blocked: &[String],
    ) -> Upstream {
        let element_name = element.as_ref().map(|(n, _)| n.as_str());
        let decl = &self.graph.nodes[decl_index];
        let spec = decl.spec();
        let mut inputs: BTreeMap<String, Vec<(Digest, ArtifactKind, Source)>> = BTreeMap::new();
        let mut waiting: Vec<String> = each_blocked.to_vec();
        let mut failed_up: Vec<String> = vec![];
        for inp in &decl.inputs {
            let entry = inputs.entry(inp.port.to_string()).or_default();
            for src in &inp.sources {
                if src.each {
                    if let Some((ename, Some(d))) = element {
                        let k = spec
                            .input(inp.port)
                            .map(|p| p.kind)
                            .unwrap_or(ArtifactKind::Model);
                        entry.push((
                            *d,
                            k,
                            Source {
                                producer: InstanceId::single(&self.graph.nodes[src.node].name),
                                port: src.port.to_string(),
                                element: Some(ename.clone()),
                            },
                        ));
                    }
                    continue;
                }
                for up in matching(&done[&src.node], assignment, element_name) {
                    match &up.outputs {
                        Some(outs) => {
                            let (_, dg, kind) = outs
                                .iter()
                                .find(|(p, _, _)| *p == src.port)
                                .expect("declared output");
                            entry.push((
                                *dg,
                                *kind,
                                Source {
                                    producer: up.id.clone(),
                                    port: src.port.to_string(),
                                    element: None,
                                },
                            ));
                        }
                        None if up.failed => failed_up.push(up.name.clone()),
                        None => waiting.push(up.name.clone()),
                    }
                }
            }
        }
        Upstream {
            inputs,
            waiting,
            failed_up,
        }
    }

    /// The instance's cache-key pre-image: type, version, canonical params (paths by
    /// content), input digests, and what the type adds ([`Node::key_material`]). `Err`
    /// names an input file that cannot be read.
    fn preimage(
        &self,
        decl: &crate::NodeDecl,
        params: &BTreeMap<String, Value>,
        inputs: &BTreeMap<String, Vec<(Digest, ArtifactKind, Source)>>,
    ) -> Result<Preimage, String> {
        let spec = decl.spec();
        let mut path_digests = BTreeMap::new();
        for (k, v) in params {
            if !spec.is_path_param(k) {
                continue;
            }
            let paths: Vec<&str> = match v {
                Value::Str(p) => vec![p],
                Value::List(items) => items.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            let mut digests = Vec::with_capacity(paths.len());
            for p in paths {
                let d = self
                    .store
                    .hash_external(std::path::Path::new(p))
                    .map_err(|e| {
                        with_hint(
                            format!("Failed to read input file `{p}` (param `{k}`): {e}"),
                            e.hint(),
                        )
                    })?;
                digests.push(d);
            }
            path_digests.insert(k.clone(), digests);
        }
        let input_digests: BTreeMap<String, Vec<Digest>> = inputs
            .iter()
            .map(|(k, v)| (k.clone(), v.iter().map(|x| x.0).collect()))
            .collect();
        let material = decl.node.key_material(params)?;
        Ok(Preimage::new(spec, params, &path_digests, &input_digests).with_material(material))
    }

    fn fail(
        &self,
        mut outcome: InstOutcome,
        mut record: NodeRunRecord,
        key: Option<Digest>,
        msg: String,
        on_event: &(dyn Fn(&Event) + Sync),
        finish: &dyn Fn(InstOutcome, NodeState, Option<Digest>, NodeRunRecord) -> InstOutcome,
    ) -> InstOutcome {
        self.failed_once.store(true, Ordering::Relaxed);
        on_event(&Event::Failed(outcome.name.clone(), msg.clone()));
        record.status = NodeRunStatus::Failed(msg.clone());
        outcome.failed = true;
        finish(outcome, NodeState::Failed { error: msg }, key, record)
    }

    fn kinds(
        &self,
        spec: &crate::NodeSpec,
        outs: &[(String, Digest)],
    ) -> Vec<(&'static str, Digest, ArtifactKind)> {
        spec.outputs
            .iter()
            .filter_map(|p| {
                outs.iter()
                    .find(|(n, _)| n == p.name)
                    .map(|(_, d)| (p.name, *d, p.kind))
            })
            .collect()
    }

    async fn acquire(&self, r: Resources) -> Vec<tokio::sync::OwnedSemaphorePermit> {
        let mut permits = vec![];
        let l = self.opts.limits;
        for (sem, n, cap) in [
            (&self.gpu, r.gpu, l.gpu),
            (&self.api, r.api, l.api),
            (&self.cpu, r.cpu, l.cpu),
        ] {
            // A node asking for more than the run allows gets all of it, not a deadlock.
            let n = n.min(cap.max(1));
            if n > 0 {
                permits.push(
                    sem.clone()
                        .acquire_many_owned(n)
                        .await
                        .expect("semaphores are never closed"),
                );
            }
        }
        permits
    }
}

/// A run answered from a memo ([`crate::Memo`]): recorded like any run of `graph` (its
/// absolute path) with every instance cached, without loading the graph.
pub fn replay_memo(
    store: &Store,
    graph: &std::path::Path,
    profile: Option<String>,
    memo: &crate::Memo,
) -> Result<RunSummary, dag_store::Error> {
    let now = dag_store_now();
    let record = RunRecord {
        id: run_id(),
        graph: graph.display().to_string(),
        profile,
        started: now,
        finished: Some(now),
        host: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        tool_version: crate::VERSION.to_string(),
        status: RunStatus::Succeeded,
        nodes: memo.records.clone(),
    };
    store.put_run(&record)?;
    Ok(RunSummary {
        run_id: record.id,
        status: RunStatus::Succeeded,
        lines: memo.lines(),
        records: record.nodes,
    })
}

/// Upstream instances that agree with `assignment` on their shared matrix variables and,
/// for an instance of a dynamic map (`element`), on the element where they have one.
fn matching<'o>(
    up: &'o DeclOutcome,
    assignment: &BTreeMap<String, Value>,
    element: Option<&str>,
) -> impl Iterator<Item = &'o InstOutcome> {
    up.instances.iter().filter(move |i| {
        i.assignment
            .iter()
            .all(|(k, v)| assignment.get(k).is_none_or(|a| a == v))
            && match (element, i.id.element.as_deref()) {
                (Some(mine), Some(theirs)) => mine == theirs,
                _ => true,
            }
    })
}

/// Output digests by port, and the artifacts to commit with the cache entry.
type Ingested = (Vec<(String, Digest)>, Vec<PendingArtifact>);

/// Stores what a node wrote, per its output ports. Nothing is indexed here: the caller
/// commits the cache entry and these artifacts in one transaction.
fn ingest(
    store: &Store,
    spec: &crate::NodeSpec,
    out_dir: &std::path::Path,
    meta: &BTreeMap<String, serde_json::Value>,
) -> Result<Ingested, NodeError> {
    let mut outputs = vec![];
    let mut pending = vec![];
    for port in &spec.outputs {
        let path = out_dir.join(port.name);
        if !path.exists() {
            return Err(NodeError::msg(format!(
                "Node type `{}` finished without writing its output `{}`",
                spec.name, port.name
            ))
            .hint("this is a bug in the node implementation; please report it"));
        }
        let m = meta
            .get(port.name)
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        let p = if let Some(elem) = port.kind.element() {
            let mut dirs: Vec<_> = std::fs::read_dir(&path)
                .map_err(|e| NodeError::caused(format!("Failed to list `{}`", path.display()), &e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            dirs.sort();
            let mut items = vec![];
            for d in dirs {
                let fname = d
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                let name = fname
                    .split_once('-')
                    .map(|(_, n)| n.to_string())
                    .unwrap_or(fname);
                let item = store
                    .stage_dir(&d, elem.name(), serde_json::json!({ "name": name }))
                    .map_err(store_failure)?;
                items.push((name, item.digest));
                pending.push(item);
            }
            store
                .stage_list(&items, port.kind.name(), m)
                .map_err(store_failure)?
        } else if port.dir {
            store
                .stage_dir(&path, port.kind.name(), m)
                .map_err(store_failure)?
        } else {
            store
                .stage_file(&path, port.kind.name(), m)
                .map_err(store_failure)?
        };
        outputs.push((port.name.to_string(), p.digest));
        pending.push(p);
    }
    Ok((outputs, pending))
}

fn dag_store_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The text a failed instance is recorded and reported with: the error and its causes, then
/// its hint, which `NodeError`'s message leaves out.
fn failure_text(e: &NodeError) -> String {
    with_hint(e.to_string(), Hint::hint(e))
}

/// A failure's text with its hint last, where the user reads it.
fn with_hint(text: String, hint: Option<String>) -> String {
    match hint {
        Some(h) => format!("{text}\n  hint: {h}"),
        None => text,
    }
}
