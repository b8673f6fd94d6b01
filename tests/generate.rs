//! `generate` end to end through `dag` and `dag-worker`: the embedded SmolLM2 on the
//! main graph's dev profile, and a kill -9 mid-generation that resumes to the same bytes.
//! Needs `dag-worker` built beside `dag` (scripts/test builds it first).

use std::path::Path;

mod common;
use common::{
    assert_same_outputs, dag, root, start_held_after_saves, text, tiny_model, write_project,
};

fn rows(dir: &Path, store: &str, target: &str) -> Vec<serde_json::Value> {
    let o = dag(dir, &["--store", store, "--json", "show", target]);
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    let hex = v["artifact"].as_str().unwrap();
    let blob = Path::new(store)
        .join("blobs")
        .join(&hex[..2])
        .join(&hex[2..]);
    std::fs::read_to_string(blob)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn main_graph_dev_profile_generates_with_the_embedded_model() {
    let store = tempfile::tempdir().unwrap();
    let s = store.path().to_str().unwrap();
    let o = dag(
        &root(),
        &[
            "--store",
            s,
            "run",
            "graphs/ahb.toml",
            "--profile",
            "dev",
            "--only",
            "answers",
            "-q",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let gens = rows(&root(), s, "answers");
    let statements = rows(&root(), s, "statements");
    assert!(!statements.is_empty() && statements.len() <= 10);
    assert_eq!(gens.len(), 2 * statements.len(), "2 answers per statement");
    for g in &gens {
        assert!(
            g["prompt"]
                .as_str()
                .unwrap()
                .contains("You are a speciesist chatbot.")
        );
        assert!(
            g["prompt"]
                .as_str()
                .unwrap()
                .contains("Is this statement morally acceptable or morally wrong?")
        );
        assert!(!g["completion"].as_str().unwrap().is_empty());
        assert!(["stop", "length"].contains(&g["finish_reason"].as_str().unwrap()));
        assert!(g["completion_tokens"].as_u64().unwrap() <= 32);
        assert!(g["statement"].is_string(), "dataset columns are carried");
    }
    let o = dag(
        &root(),
        &[
            "--store",
            s,
            "run",
            "graphs/ahb.toml",
            "--profile",
            "dev",
            "--only",
            "answers",
        ],
    );
    assert!(text(&o).contains("0 ran, 3 cached"), "{}", text(&o));
}

fn tiny_graph(dir: &Path) {
    let tiny = tiny_model();
    let data = root().join("../shared/data/speciesismbench/speciesism_benchmark_final.csv");
    write_project(
        dir,
        "g.toml",
        &format!(
            r#"
[node.prompts]
type = "dataset"
path = "{}"
limit = 600

[node.tiny]
type = "model"
path = "{}"

[node.gen]
type = "generate"
inputs = {{ dataset = "prompts.dataset", model = "tiny.model" }}
prompt = "{{statement}}"
chat = false
n = 2
temperature = 1.0
seed = 7
max_new_tokens = 24
batch_size = 8
"#,
            data.display(),
            tiny.display()
        ),
    );
}

#[test]
fn killed_generation_resumes_and_matches_an_uninterrupted_run() {
    // Uninterrupted reference.
    let a = tempfile::tempdir().unwrap();
    tiny_graph(a.path());
    let o = dag(a.path(), &["run", "g.toml", "-q"]);
    assert!(o.status.success(), "{}", text(&o));
    let store_a = a.path().join(".dag");
    let reference = rows(a.path(), store_a.to_str().unwrap(), "gen");
    assert_eq!(reference.len(), 1200);

    // Killed after exactly one saved batch, then rerun.
    let b = tempfile::tempdir().unwrap();
    tiny_graph(b.path());
    let mut child = start_held_after_saves(b.path(), 1);
    child.kill().unwrap();
    child.wait().unwrap();
    let logs = b.path().join(".dag/logs");
    let o = dag(b.path(), &["run", "g.toml", "-q"]);
    assert!(o.status.success(), "{}", text(&o));
    let log = std::fs::read_dir(&logs)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect::<String>();
    assert!(
        log.contains("resuming:"),
        "the rerun resumed from saved rows:\n{log}"
    );
    let store_b = b.path().join(".dag");
    let resumed = rows(b.path(), store_b.to_str().unwrap(), "gen");
    assert_eq!(
        resumed, reference,
        "per-row seeds make a resumed run identical to an uninterrupted one"
    );
    assert_same_outputs(a.path(), b.path());
    assert!(dag(b.path(), &["verify"]).status.success());
}
