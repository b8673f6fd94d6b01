//! Model nodes run in `dag-worker`, a separate process linked against libtorch, so
//! that `dag` itself starts in milliseconds, a CUDA crash or out-of-memory kills one
//! node and not the scheduler, and Ctrl-C can stop a model mid-batch by killing it.
//!
//! The protocol: `dag` writes a [`Job`] as JSON and runs `dag-worker JOB.json`; the
//! worker writes its outputs where the job says and reports on stdout, one JSON
//! [`Report`] per line. Items the worker saves are persisted by `dag` in the store
//! (the worker never opens the store) and handed back in the next attempt's job, so a
//! killed generation resumes where it stopped.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use dag_engine::{Node, NodeError, NodeSpec, ParamError, RunContext, Value};
pub use dag_protocol::{Job, JobInput, Report, test_hold};

/// A node type whose implementation lives in `dag-worker`.
pub struct WorkerNode(pub NodeSpec);

/// A model node type that runs in `dag-worker` (a [`WorkerNode`]) with checks of its params
/// that no range expresses, run when the graph loads (see [`Node::check_params`]).
pub struct CheckedWorker {
    node: WorkerNode,
    check: fn(&BTreeMap<String, Value>) -> Result<(), ParamError>,
}

impl CheckedWorker {
    /// `node` whose params `check` refuses or accepts at load.
    pub fn new(
        node: WorkerNode,
        check: fn(&BTreeMap<String, Value>) -> Result<(), ParamError>,
    ) -> Self {
        CheckedWorker { node, check }
    }
}

impl Node for CheckedWorker {
    fn spec(&self) -> &NodeSpec {
        self.node.spec()
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        self.node.run(ctx)
    }

    fn check_params(&self, params: &BTreeMap<String, Value>) -> Result<(), ParamError> {
        (self.check)(params)
    }
}

/// Where `dag-worker` is: `DAG_WORKER`, or beside the running `dag`.
fn worker_path() -> Result<PathBuf, NodeError> {
    if let Some(p) = std::env::var_os("DAG_WORKER") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()
        .map_err(|e| NodeError::caused("Failed to locate the running dag binary", &e))?;
    let dir = exe
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    // Test binaries live one level below the binaries, in deps/.
    for cand in [dir.join("dag-worker"), dir.join("../dag-worker")] {
        if cand.exists() {
            return Ok(cand);
        }
    }
    Err(NodeError::msg(format!("Failed to find `dag-worker` next to `{}`", exe.display()))
        .hint("model nodes run in dag-worker: build it with `cargo build --release --workspace --bins` (scripts/dag does), or set DAG_WORKER"))
}

impl Node for WorkerNode {
    fn spec(&self) -> &NodeSpec {
        &self.0
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let resumed: Vec<serde_json::Value> = ctx.resume_items()?;
        let params = ctx
            .params()
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect();
        let inputs = self
            .0
            .inputs
            .iter()
            .map(|p| {
                let items = ctx
                    .inputs(p.name)
                    .iter()
                    .map(|a| JobInput {
                        path: a.path.clone(),
                        digest: a.digest.to_hex(),
                        kind: a.kind.name().into(),
                        meta: a.meta.clone(),
                        label: a.label.clone(),
                    })
                    .collect();
                (p.name.to_string(), items)
            })
            .collect();
        let outputs = self
            .0
            .outputs
            .iter()
            .map(|p| (p.name.to_string(), ctx.output_path(p.name)))
            .collect();
        let job = Job {
            node: self.0.name.into(),
            instance: ctx.instance().into(),
            params,
            inputs,
            outputs,
            scratch: ctx.scratch(),
            resumed,
            work_dir: ctx.work_dir()?,
        };
        let (hold_after, mut saves) = (test_hold::after_saves(), 0);
        run_job(ctx, &job, &mut |ctx, items| {
            ctx.save_items(&items)?;
            saves += 1;
            if Some(saves) == hold_after
                && let Some(marker) = test_hold::marker()
            {
                std::fs::write(&marker, b"").map_err(|e| {
                    NodeError::caused(format!("Failed to create `{}`", marker.display()), &e)
                })?;
            }
            Ok(())
        })
    }
}

/// What a caller of [`run_job`] does with each batch of items the worker saves.
pub(crate) type OnSaved<'a> =
    dyn FnMut(&mut RunContext<'_>, Vec<serde_json::Value>) -> Result<(), NodeError> + 'a;

/// Runs `job` in `dag-worker` for the node running in `ctx`: its progress and messages go
/// to `ctx`, each batch of items it saves to `on_saved` (persisted before the next report is
/// read), its failure back as the node's. Ctrl-C kills the worker. A model node's whole run
/// is one job; a node may also run a job as one step (a local judge's verdicts).
pub(crate) fn run_job(
    ctx: &mut RunContext<'_>,
    job: &Job,
    on_saved: &mut OnSaved<'_>,
) -> Result<(), NodeError> {
    let worker = worker_path()?;
    let job_path = job.scratch.join(format!("{}.job.json", job.node));
    std::fs::write(
        &job_path,
        serde_json::to_vec_pretty(job).expect("jobs serialise"),
    )
    .map_err(|e| NodeError::caused(format!("Failed to write `{}`", job_path.display()), &e))?;
    let mut child = Command::new(&worker)
        .arg(&job_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| NodeError::caused(format!("Failed to start `{}`", worker.display()), &e))?;
    let pid = child.id();
    let cancel = ctx.cancel_flag();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if cancel.load(Ordering::Relaxed) {
                    // SIGKILL: the worker holds no state we need; saved items are already ours.
                    let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let stdout = child.stdout.take().expect("piped");
    let mut failure: Option<NodeError> = None;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        match serde_json::from_str::<Report>(&line) {
            Ok(Report::Total(n)) => ctx.set_total(n),
            Ok(Report::Advance(n)) => ctx.advance(n),
            Ok(Report::Info(s)) => ctx.info(s),
            Ok(Report::SaveItems(items)) => on_saved(ctx, items)?,
            Ok(Report::Meta { port, value }) => ctx.set_meta(&port, value),
            Ok(Report::Error {
                message,
                causes,
                hint,
            }) => {
                failure = Some(NodeError {
                    message,
                    causes,
                    hint,
                    cancelled: false,
                })
            }
            Err(_) => ctx.info(line),
        }
    }
    let status = child
        .wait()
        .map_err(|e| NodeError::caused("Failed to wait for dag-worker", &e))?;
    done.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    ctx.check_cancelled()?;
    if let Some(f) = failure {
        return Err(f);
    }
    if !status.success() {
        return Err(NodeError::msg(format!("dag-worker exited with {status} while running `{}`", ctx.instance()))
                .hint("its error output is above; completed items were saved and the next run resumes after them"));
    }
    Ok(())
}
