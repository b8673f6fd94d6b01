//! Test helpers shared by the node tests: the tiny model, datasets, jobs, score lines.

use std::path::{Path, PathBuf};

use dag_protocol::Job;
use dag_table as table;
use serde_json::{Value, json};

/// The tiny random Llama of the runtime's tests, as a `model` node's artifact.
pub fn tiny_model(dir: &Path) -> PathBuf {
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime/tests/fixtures/tiny-llama");
    let out = dir.join("model");
    std::fs::create_dir_all(&out).unwrap();
    let reference = json!({ "location": tiny });
    std::fs::write(out.join("model.json"), reference.to_string()).unwrap();
    out
}

/// Eight rows with `text`, a 0/1 `label` and a `source` (`web` for rows 0, 1, 4, 5,
/// `chat` for the others), as a dataset artifact named `name` under `dir`.
pub fn rows(dir: &Path, name: &str) -> Value {
    let rows: Vec<table::Row> = (0..8)
        .map(|i| {
            let (text, source) = (
                format!("row {i} says {}", ["no", "yes"][i % 2]),
                ["web", "chat"][i % 4 / 2],
            );
            let r = json!({ "text": text, "label": i % 2, "source": source });
            r.as_object().unwrap().clone()
        })
        .collect();
    let path = dir.join(format!("{name}.jsonl"));
    table::write_jsonl(&path, &rows).unwrap();
    json!([{ "path": path, "digest": "0", "kind": "dataset", "meta": null, "label": name }])
}

/// A job of `node` under `dir` with `scores` written to `dir/scores.jsonl`.
pub fn job(dir: &Path, node: &str, params: Value, inputs: Value, outputs: Value) -> Job {
    let mut outputs = outputs;
    outputs["scores"] = json!(dir.join("scores.jsonl"));
    let fields = dag_protocol::models::worker_params(node).unwrap();
    let params = dag_protocol::params::with_defaults(&fields, params.as_object().unwrap().clone());
    serde_json::from_value(json!({
        "node": node, "instance": "t", "params": params, "inputs": inputs, "outputs": outputs,
        "scratch": dir, "resumed": [], "work_dir": dir.join("work"),
    }))
    .unwrap()
}

pub fn scores(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("scores.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
