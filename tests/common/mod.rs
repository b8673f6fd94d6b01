//! Helpers shared by the end-to-end tests that drive the `dag` binary.

// Every test binary compiles this module and uses only part of it.
#![allow(dead_code)]

pub mod tools;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root (`../shared/data` is relative to it).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The tiny random Llama the model tests run on.
pub fn tiny_model() -> PathBuf {
    root().join("nodes/runtime/tests/fixtures/tiny-llama")
}

/// Writes `graph` to `dir/file` and makes `dir` a project root (dag looks for `.git`).
pub fn write_project(dir: &Path, file: &str, graph: &str) {
    std::fs::write(dir.join(file), graph).unwrap();
    std::fs::create_dir_all(dir.join(".git")).unwrap();
}

/// The libtorch thread count model tests run with. Training and sampling depend on the
/// order of floating-point reductions, which depends on it: a fixed count makes what the
/// tests assert the same on the 2-core CI machine and a 16-core GPU host.
pub const THREADS: &str = "2";

/// Runs `dag ARGS` in `dir`.
pub fn dag(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dag"))
        .args(args)
        .current_dir(dir)
        .env("OMP_NUM_THREADS", THREADS)
        .output()
        .expect("dag runs")
}

/// Runs `dag --store DIR/.dag ARGS` in `dir`: for tests that run a graph of the repository
/// (`graphs/*.toml`, whose data paths are relative to it) on a store of their own.
pub fn dag_with_store(dir: &Path, args: &[&str]) -> Output {
    let store = dir.join(".dag");
    let mut all = vec!["--store", store.to_str().expect("a UTF-8 temp path")];
    all.extend_from_slice(args);
    dag(dir, &all)
}

/// Stdout and stderr together, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Starts `dag run g.toml -q` in `dir` with the test hold on (see
/// `dag_protocol::test_hold`) and returns once its model node has saved exactly
/// `saves` items: the worker then waits, alive, to be killed.
pub fn start_held_after_saves(dir: &Path, saves: usize) -> std::process::Child {
    let marker = dir.join("held-after-saves");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dag"))
        .args(["run", "g.toml", "-q"])
        .current_dir(dir)
        .env("OMP_NUM_THREADS", THREADS)
        .env("DAG_TEST_HOLD_AFTER_SAVES", saves.to_string())
        .env("DAG_TEST_HOLD_MARKER", &marker)
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while !marker.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("dag exited ({status}) before its worker saved {saves} items");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child
}

/// Starts `dag run g.toml` in `dir`, lets its training node save `states` states (folders
/// `prefix...`), kill -9s the worker mid-training and checks that the attempt failed.
/// Returns how many states were saved by then.
pub fn kill_training_after(dir: &Path, prefix: &str, states: usize) -> usize {
    let mut child = start_held_after_saves(dir, states);
    // The training process itself, not dag (which then reports the attempt failed).
    let workers = children(child.id());
    assert!(!workers.is_empty(), "the worker is held, alive");
    for w in workers {
        let _ = Command::new("kill").args(["-9", &w.to_string()]).status();
    }
    assert!(!child.wait().unwrap().success(), "the killed attempt fails");
    saved_states(dir, prefix)
}

/// The processes whose parent is `pid`: the `dag-worker` a running `dag` has started.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s.rsplit_once(')')?.1.to_string();
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// How many finished states (folders named `prefix...`, not `.tmp`) training nodes have
/// saved in the work directories of the project in `dir`.
fn saved_states(dir: &Path, prefix: &str) -> usize {
    std::fs::read_dir(dir.join(".dag/work"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .flat_map(|e| std::fs::read_dir(e.path()).into_iter().flatten())
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(prefix) && !n.ends_with(".tmp")
        })
        .count()
}

/// Each instance's status (`Ran`, `Cached`, `Failed`, ...) in the run `log` describes: the
/// output of `dag --json log -n 1`, with or without `--store`.
pub fn run_statuses(log: &Output) -> std::collections::BTreeMap<String, String> {
    let runs: Vec<serde_json::Value> = serde_json::from_slice(&log.stdout)
        .unwrap_or_else(|_| panic!("dag log --json: {}", text(log)));
    runs[0]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            // A failure carries its message: `{"Failed": "..."}`.
            let status = match &n["status"] {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Object(o) => o.keys().next().unwrap().clone(),
                other => other.to_string(),
            };
            (n["instance"].as_str().unwrap().to_string(), status)
        })
        .collect()
}

/// Every node instance's outputs (port to digest) in the latest run recorded in `dir`.
pub fn last_run_outputs(dir: &Path) -> std::collections::BTreeMap<String, serde_json::Value> {
    let o = dag(dir, &["--json", "log", "-n", "1"]);
    let runs: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|_| panic!("dag log --json: {}", text(&o)));
    let run = runs
        .iter()
        .max_by_key(|r| r["id"].as_str().unwrap_or_default().to_string())
        .expect("a recorded run");
    run["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["instance"].as_str().unwrap().to_string(),
                n["outputs"].clone(),
            )
        })
        .collect()
}

/// The same graph run in two project directories gave every node instance byte-identical
/// outputs: outputs are a function of inputs and params only, with no paths, timings,
/// hosts or pids inside them.
pub fn assert_same_outputs(a: &Path, b: &Path) {
    let (x, y) = (last_run_outputs(a), last_run_outputs(b));
    assert_eq!(
        x.keys().collect::<Vec<_>>(),
        y.keys().collect::<Vec<_>>(),
        "the same instances"
    );
    for (instance, outs) in &x {
        assert_eq!(
            outs,
            &y[instance],
            "`{instance}` gave different outputs in {} and {}",
            a.display(),
            b.display()
        );
    }
}
