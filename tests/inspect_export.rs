//! `dag export --format inspect` read back by inspect itself: inspect-ai 0.3.285 (installed by
//! the test into `$DAG_CACHE/venv-inspect-0.3.285`, once per machine) reads the exported
//! `.eval` logs with `read_eval_log`, and `inspect view` lists and parses them
//! (`/api/log-files`, `/api/log-headers`). One `evaluate` on the tiny model (no server) and
//! one `grade-qa` against llmock (an OpenAI-compatible server on loopback, as in
//! tests/judge.rs). Needs `dag-worker` built beside `dag` (scripts/test builds it first).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use common::tools::{Llmock, Running, free_port, venv, wait_listening};
use common::{dag, text, write_project};
use serde_json::{Value, json};

const INSPECT: &str = "inspect-ai==0.3.285";

/// inspect's venv (minutes to install the first time).
fn inspect_venv() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| venv("venv-inspect-0.3.285", INSPECT))
}

/// Reads the log twice with `read_eval_log` and returns what the tests check. NaN (an
/// unscored value) comes back as the string "NaN".
const READ: &str = r#"
import json, math, sys
from inspect_ai.log import read_eval_log
path = sys.argv[1]
log = read_eval_log(path)
again = read_eval_log(path)
header = read_eval_log(path, header_only=True)
def v(x):
    if isinstance(x, float) and math.isnan(x):
        return "NaN"
    if isinstance(x, dict):
        return {k: v(y) for k, y in x.items()}
    return x
print(json.dumps({
    "status": log.status,
    "task": log.eval.task,
    "model": log.eval.model,
    "eval_ids": [log.eval.eval_id, again.eval.eval_id, header.eval.eval_id],
    "run_id": log.eval.run_id,
    "task_id": log.eval.task_id,
    "total_samples": log.results.total_samples,
    "completed_samples": log.results.completed_samples,
    "results": [{"name": s.name, "metrics": {k: m.value for k, m in s.metrics.items()}}
                for s in log.results.scores],
    "samples": [{
        "id": s.id, "epoch": s.epoch, "input": s.input, "target": s.target,
        "choices": s.choices, "completion": s.output.completion,
        "scores": {k: {"value": v(sc.value), "answer": sc.answer, "explanation": sc.explanation,
                       "reason": sc.reason, "metadata": sc.metadata}
                   for k, sc in (s.scores or {}).items()},
    } for s in log.samples],
}))
"#;

fn read_back(log: &Path) -> Value {
    let o = Command::new(inspect_venv().join("bin/python"))
        .args(["-c", READ])
        .arg(log)
        .output()
        .expect("python runs");
    assert!(o.status.success(), "read_eval_log: {}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)))
}

fn curl(args: &[&str]) -> Value {
    let o = Command::new("curl")
        .args(["-sS", "--fail-with-body"])
        .args(args)
        .output()
        .expect("curl runs");
    assert!(o.status.success(), "curl {args:?}: {}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("curl {args:?}: {}", text(&o)))
}

/// Runs `inspect view` on the log's directory: the log is listed under its task and its
/// header parses with the task, the status and the sample count.
fn check_view(log: &Path, task: &str, samples: usize) {
    let dir = log.parent().unwrap();
    let port = free_port();
    let mut child = Command::new(inspect_venv().join("bin/inspect"))
        .args(["view", "--log-dir"])
        .arg(dir)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("inspect view starts");
    wait_listening(&mut child, port, "inspect view");
    let view = Running(child);
    let base = format!("http://127.0.0.1:{port}/api");
    let files = curl(&[&format!("{base}/log-files")]);
    let listed: Vec<&Value> = files["files"]
        .as_array()
        .unwrap_or_else(|| panic!("{files:#}"))
        .iter()
        .filter(|f| {
            f["name"]
                .as_str()
                .is_some_and(|n| n.ends_with(&*log.file_name().unwrap().to_string_lossy()))
        })
        .collect();
    assert_eq!(listed.len(), 1, "the log is listed: {files:#}");
    assert_eq!(listed[0]["task"], task, "{files:#}");
    let name = listed[0]["name"].as_str().unwrap();
    let headers = curl(&[
        "-G",
        &format!("{base}/log-headers"),
        "--data-urlencode",
        &format!("file={name}"),
    ]);
    let h = &headers[0];
    assert_eq!(h["eval"]["task"], task, "{headers:#}");
    assert_eq!(h["status"], "success", "{headers:#}");
    assert_eq!(h["results"]["total_samples"], samples, "{headers:#}");
    drop(view);
}

/// Exports `target` as an inspect log twice (byte-identical), returns its path.
fn export(dir: &Path, target: &str, name: &str) -> PathBuf {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let dest = logs.join(name);
    let again = dir.join(format!("again-{name}"));
    for d in [&dest, &again] {
        let o = dag(
            dir,
            &["export", "--format", "inspect", target, d.to_str().unwrap()],
        );
        assert!(o.status.success(), "{}", text(&o));
    }
    assert!(
        std::fs::read(&dest).unwrap() == std::fs::read(&again).unwrap(),
        "exporting `{target}` twice gives the same bytes"
    );
    dest
}

/// A JSON artifact or the rows of a JSONL artifact, read from the store.
fn blob(dir: &Path, target: &str) -> String {
    let o = dag(dir, &["--json", "show", target]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    let hex = v["artifact"].as_str().unwrap();
    std::fs::read_to_string(dir.join(".dag/blobs").join(&hex[..2]).join(&hex[2..])).unwrap()
}

fn rows(dir: &Path, target: &str) -> Vec<Value> {
    blob(dir, target)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const TASKS: &str = r#"
[[task]]
name = "mc"
output_type = "multiple_choice"
test_split = "test"
splits = { test = "docs.jsonl" }
doc_to_text = "{{question}}\nAnswer:"
doc_to_choice = { field = "choices" }
doc_to_target = { field = "label" }
metrics = [{ metric = "acc" }, { metric = "acc_norm" }]

[[task]]
name = "gen"
output_type = "generate_until"
test_split = "test"
splits = { test = "docs.jsonl" }
doc_to_text = "{{question}}\nAnswer:"
doc_to_target = "yes"
generation = { until = ["\n"], max_gen_toks = 6 }
"#;

#[test]
fn an_evaluation_reads_back_in_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let mut docs = String::new();
    for i in 0..7 {
        let choices: Vec<String> = (0..2 + i % 3).map(|c| format!("option {c}")).collect();
        docs.push_str(
            &json!({"question": format!("Question {i}: is the answer yes?"), "choices": choices, "label": i % 2})
                .to_string(),
        );
        docs.push('\n');
    }
    std::fs::write(p.join("docs.jsonl"), docs).unwrap();
    std::fs::write(p.join("tasks.toml"), TASKS).unwrap();
    write_project(
        p,
        "g.toml",
        &format!(
            r#"
[node.tiny]
type = "model"
path = "{m}"

[node.eval]
type = "evaluate"
inputs = {{ model = "tiny.model" }}
tasks = ["mc"]
definitions = "tasks.toml"
bootstrap_iters = 100

[node.both]
type = "evaluate"
inputs = {{ model = "tiny.model" }}
tasks = ["mc", "gen"]
definitions = "tasks.toml"
bootstrap_iters = 100
"#,
            m = common::tiny_model().display()
        ),
    );
    let o = dag(p, &["run", "g.toml", "-q"]);
    assert!(o.status.success(), "{}", text(&o));

    let log = export(p, "eval.samples", "eval.eval");
    // Either output of the computation names the same log.
    let via_metrics = export(p, "eval.metrics", "eval-metrics.eval");
    assert!(std::fs::read(&log).unwrap() == std::fs::read(&via_metrics).unwrap());
    std::fs::remove_file(&via_metrics).unwrap();

    let got = read_back(&log);
    assert_eq!(got["status"], "success");
    assert_eq!(got["task"], "mc");
    assert_eq!(got["model"], "dag/tiny-llama");
    let ids = got["eval_ids"].as_array().unwrap();
    assert_eq!(ids[0].as_str().unwrap().len(), 22, "{got:#}");
    assert!(
        ids.iter().all(|i| i == &ids[0]),
        "eval_id is stable across reads: {ids:?}"
    );
    assert_eq!(got["total_samples"], 7);
    assert_eq!(got["completed_samples"], 7);
    let metrics: Value = serde_json::from_str(&blob(p, "eval.metrics")).unwrap();
    let results = &got["results"];
    assert_eq!(results[0]["name"], "none", "{results:#}");
    assert_eq!(
        results[0]["metrics"]["acc"], metrics["tasks"]["mc"]["acc,none"],
        "{results:#}"
    );
    assert_eq!(
        results[0]["metrics"]["acc_norm"],
        metrics["tasks"]["mc"]["acc_norm,none"]
    );
    let samples = got["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 7);
    let dag_rows = rows(p, "eval.samples");
    for (s, r) in samples.iter().zip(&dag_rows) {
        assert_eq!(s["id"], r["doc_id"], "ids are the documents'");
        assert_eq!(s["epoch"], 1, "inspect's epochs count from 1");
        assert_eq!(s["input"], r["prompt"]);
        assert_eq!(s["choices"], r["choices"]);
        let gold = r["target"][0].as_u64().unwrap() as u8;
        assert_eq!(s["target"], char::from(b'A' + gold).to_string());
        let score = &s["scores"]["none"];
        assert_eq!(score["value"], r["scores"], "{s:#}");
        let predicted = r["prediction"].as_u64().unwrap() as u8;
        assert_eq!(score["answer"], char::from(b'A' + predicted).to_string());
        assert_eq!(score["metadata"]["loglikelihoods"], r["loglikelihoods"]);
    }
    check_view(&log, "mc", 7);

    // Several tasks: one log named after the node, samples `task:doc`, scores `task/filter`.
    let log = export(p, "both", "both.eval");
    let got = read_back(&log);
    assert_eq!(got["task"], "both");
    assert_eq!(got["total_samples"], 14);
    let names: Vec<&str> = got["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["mc/none", "gen/none"]);
    let gen_rows = rows(p, "both.samples");
    let gen0 = gen_rows
        .iter()
        .find(|r| r["task"] == "gen" && r["doc_id"] == 0)
        .unwrap();
    let s = got["samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "gen:0")
        .expect("a generation sample");
    assert_eq!(s["target"], "yes");
    assert_eq!(
        s["completion"], gen0["responses"][0],
        "the model's completion"
    );
    assert_eq!(
        s["scores"]["gen/none"]["value"]["exact_match"],
        gen0["scores"]["exact_match"]
    );

    // What is not an evaluation is refused, naming what is supported.
    let o = dag(
        p,
        &["export", "--format", "inspect", "tiny.model", "model.eval"],
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("`model` node") && text(&o).contains("`evaluate`"),
        "{}",
        text(&o)
    );
    assert!(!p.join("model.eval").exists());
}

#[test]
fn judge_grades_read_back_in_inspect() {
    let server = Llmock::start();
    // judge-a passes everything; judge-d's replies have no grade: unscored, never a 0.
    server.script(json!([
        {"type": "reply", "text": "The answer is right.\nGRADE: C", "match": {"model": "judge-a"}, "times": 1_000_000},
        {"type": "reply", "text": "Looks right to me.", "match": {"model": "judge-d"}, "times": 1_000_000},
    ]));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    write_project(
        p,
        "g.toml",
        &format!(
            r#"
[node.tasks]
type = "dataset"
path = "{q}"

[node.tiny]
type = "model"
path = "{m}"

[node.answers]
type = "generate"
inputs = {{ dataset = "tasks.dataset", model = "tiny.model" }}
prompt = "{{prompt}}"
chat = false
n = 2
temperature = 1.0
max_new_tokens = 4
on_length = "warn"

[node.qa]
type = "grade-qa"
inputs = {{ answers = "answers.generations" }}
judge_url = "{url}"
judges = ["judge-a", "judge-d"]
concurrency = 1
"#,
            q = common::root().join("tests/fixtures/qa.jsonl").display(),
            m = common::tiny_model().display(),
            url = server.url(),
        ),
    );
    let o = dag(p, &["run", "g.toml", "-q"]);
    assert!(o.status.success(), "{}", text(&o));

    let log = export(p, "qa.grades", "qa.eval");
    let got = read_back(&log);
    assert_eq!(got["status"], "success");
    assert_eq!(got["task"], "grade-qa");
    assert_eq!(got["model"], "dag/tiny-llama");
    let ids = got["eval_ids"].as_array().unwrap();
    assert!(ids.iter().all(|i| i == &ids[0]), "{ids:?}");
    assert_eq!(got["total_samples"], 6, "3 questions x 2 answers each");
    let results = &got["results"];
    assert_eq!(results[0]["name"], "judge-a", "{results:#}");
    assert_eq!(results[0]["metrics"]["accuracy"], 1.0, "{results:#}");
    assert_eq!(results[1]["name"], "judge-d", "{results:#}");
    assert!(
        results[1]["metrics"].get("accuracy").is_none(),
        "no accuracy without a scored grading: {results:#}"
    );

    let grades = rows(p, "qa.grades");
    let samples = got["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 6);
    let mut seen = std::collections::BTreeSet::new();
    for s in samples {
        let (id, epoch) = (s["id"].as_str().unwrap(), s["epoch"].as_u64().unwrap());
        seen.insert((id.to_string(), epoch));
        let g = grades
            .iter()
            .find(|g| g["id"] == id && g["sample"].as_u64() == Some(epoch - 1))
            .unwrap_or_else(|| panic!("no grade of {id} epoch {epoch}"));
        assert_eq!(s["input"], g["prompt"]);
        assert_eq!(s["target"], g["target"]);
        assert_eq!(s["completion"], g["completion"], "the model's answer");
        let a = &s["scores"]["judge-a"];
        assert_eq!(a["value"], "C", "{s:#}");
        assert_eq!(a["answer"], g["completion"]);
        assert_eq!(a["explanation"], "The answer is right.\nGRADE: C");
        let d = &s["scores"]["judge-d"];
        assert_eq!(d["value"], "NaN", "unscored, not a 0: {s:#}");
        assert_eq!(d["reason"], "grader_failed");
        assert_eq!(d["explanation"], "Looks right to me.");
    }
    let expected: std::collections::BTreeSet<(String, u64)> = ["q1", "q2", "q3"]
        .iter()
        .flat_map(|q| [(q.to_string(), 1), (q.to_string(), 2)])
        .collect();
    assert_eq!(seen, expected, "one sample per question and epoch");
    check_view(&log, "grade-qa", 6);
}
