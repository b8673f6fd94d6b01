//! `dag-worker JOB.json`: runs one model node for `dag` (see `dag_protocol` for
//! the protocol). It is the only binary linked against libtorch.

mod activations;
mod classifier;
mod evaluate;
mod failure;
mod finetune;
mod generate;
mod judge;
mod model;
mod probe;
mod prompt;
mod prompted;
mod scores;
#[cfg(test)]
mod testing;

use std::io::Write;
use std::process::ExitCode;

use dag_protocol::NodeError;
use dag_protocol::{Job, Report};

/// Writes protocol lines to stdout; everything human goes to stderr.
pub struct Reporter;

impl Reporter {
    /// Sends one report, flushed so `dag` sees progress as it happens.
    pub fn send(&self, r: Report) {
        let saved = matches!(r, Report::SaveItems(_));
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string(&r).expect("reports serialise")
        );
        let _ = out.flush();
        drop(out);
        if saved {
            hold_if_asked();
        }
    }
}

/// See [`dag_protocol::test_hold`]: after the N-th save, wait here to be killed.
fn hold_if_asked() {
    static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SAVES.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
    if dag_protocol::test_hold::after_saves() == Some(n) {
        loop {
            std::thread::park();
        }
    }
}

/// Runs the job's node; every name in `dag_protocol::models::WORKER_NODES` has an arm, and
/// so does the local judge, a step of judge-graded nodes rather than a node of its own.
fn run(job: &Job, rep: &Reporter) -> Result<(), NodeError> {
    match job.node.as_str() {
        "generate" => generate::run(job, rep),
        "evaluate" => evaluate::run(job, rep),
        "finetune" => finetune::run(job, rep),
        "extract-activations" => activations::run(job, rep),
        "train-probe" => probe::run(job, rep),
        "classify-prompted" => prompted::run(job, rep),
        "finetune-classifier" => classifier::run(job, rep),
        dag_protocol::judge::LOCAL_JUDGE_JOB => judge::run(job, rep),
        other => Err(NodeError::msg(format!("dag-worker has no node type `{other}`"))
            .hint("dag and dag-worker come from different builds; rebuild both with `cargo build --release --workspace --bins`")),
    }
}

/// Dies with its parent. When `dag` is killed (kill -9, a crashed terminal), an orphaned
/// worker would keep writing into the work directory that the rerun's worker resumes from.
fn die_with_parent() {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and changes only this
    // process's own death signal.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    // The parent may have died before the call: then we are already an orphan.
    if std::os::unix::process::parent_id() == 1 {
        std::process::exit(1);
    }
}

fn main() -> ExitCode {
    die_with_parent();
    let rep = Reporter;
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: dag-worker JOB.json (dag starts it; it is not meant to be run by hand)");
        return ExitCode::from(2);
    };
    let job: Job = match std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(j) => j,
        Err(e) => {
            rep.send(Report::Error {
                message: format!("Failed to read the job `{}`", path.to_string_lossy()),
                causes: vec![e],
                hint: None,
            });
            return ExitCode::from(2);
        }
    };
    match run(&job, &rep) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            rep.send(Report::Error {
                message: e.message,
                causes: e.causes,
                hint: e.hint,
            });
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every worker node the specs declare has an implementation here: a job naming it is
    /// dispatched (and fails on its empty inputs), never refused as an unknown type.
    #[test]
    fn every_worker_node_is_dispatched() {
        let jobs = [dag_protocol::judge::LOCAL_JUDGE_JOB];
        for name in dag_protocol::models::WORKER_NODES.iter().chain(&jobs) {
            let job = Job {
                node: name.to_string(),
                instance: "t".into(),
                params: Default::default(),
                inputs: Default::default(),
                outputs: Default::default(),
                scratch: std::env::temp_dir(),
                resumed: vec![],
                work_dir: std::env::temp_dir(),
            };
            let outcome = std::panic::catch_unwind(|| run(&job, &Reporter));
            if let Ok(Err(e)) = outcome {
                assert!(!e.message.contains("has no node type"), "{name}: {e}");
            }
        }
    }
}
