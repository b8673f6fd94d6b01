//! `evaluate` end to end through `dag` and `dag-worker`: batch-size invariance, template lint
//! before any forward pass, unknown task names, the paired comparison, and parity with
//! lm-evaluation-harness on SmolLM2 (reference made by tests/fixtures/make_lm_eval_smollm2.py).
//! Needs `dag-worker` built beside `dag` (scripts/test builds it first).

use std::path::Path;

mod common;
use common::{assert_same_outputs, dag, root, text, tiny_model};

fn blob(dir: &Path, target: &str) -> String {
    let o = dag(dir, &["--json", "show", target]);
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    let hex = v["artifact"].as_str().unwrap();
    std::fs::read_to_string(dir.join(".dag/blobs").join(&hex[..2]).join(&hex[2..])).unwrap()
}

fn rows(dir: &Path, target: &str) -> Vec<serde_json::Value> {
    blob(dir, target)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn json(dir: &Path, target: &str) -> serde_json::Value {
    serde_json::from_str(&blob(dir, target)).unwrap()
}

/// A project with a task file (multiple choice with contexts of many lengths and 2-4 choices,
/// plus a generate_until task) and the tiny random Llama.
fn project(tasks_toml: &str, nodes: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".git")).unwrap();
    let mut docs = String::new();
    for i in 0..23 {
        let q = format!(
            "Question {i}: {}is the answer yes?",
            "would you agree that the weather is nice today and ".repeat(i % 4)
        );
        let choices: Vec<String> = (0..2 + i % 3).map(|c| format!("option {c}")).collect();
        docs.push_str(
            &serde_json::json!({"question": q, "choices": choices, "label": i % 2}).to_string(),
        );
        docs.push('\n');
    }
    std::fs::write(dir.path().join("docs.jsonl"), docs).unwrap();
    std::fs::write(dir.path().join("tasks.toml"), tasks_toml).unwrap();
    let tiny = tiny_model();
    std::fs::write(
        dir.path().join("g.toml"),
        format!(
            "[node.tiny]\ntype = \"model\"\npath = \"{}\"\n\n{nodes}",
            tiny.display()
        ),
    )
    .unwrap();
    dir
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
generation = { until = ["\n"], max_gen_toks = 8 }

[[group]]
name = "both"
tasks = ["mc", "gen"]
aggregate = [{ metric = "acc", weight_by_size = true }]
"#;

#[test]
fn scores_do_not_depend_on_batch_size() {
    let mut nodes = String::new();
    for b in [1, 7, 32] {
        nodes.push_str(&format!(
            "[node.eval{b}]\ntype = \"evaluate\"\ninputs = {{ model = \"tiny.model\" }}\ntasks = [\"mc\", \"gen\"]\ndefinitions = \"tasks.toml\"\nbatch_size = {b}\nbootstrap_iters = 200\n\n"
        ));
    }
    let p = project(TASKS, &nodes);
    let o = dag(p.path(), &["run", "g.toml", "-q"]);
    assert!(o.status.success(), "{}", text(&o));
    let reference = rows(p.path(), "eval1.samples");
    assert_eq!(reference.len(), 46, "23 documents in each of two tasks");
    for b in [7, 32] {
        let other = rows(p.path(), &format!("eval{b}.samples"));
        assert_eq!(other.len(), reference.len());
        for (x, y) in reference.iter().zip(&other) {
            assert_eq!(x["doc_id"], y["doc_id"]);
            assert_eq!(
                x["item_keys"], y["item_keys"],
                "same items whatever the batch"
            );
            let (lx, ly) = (
                x["loglikelihoods"].as_array().unwrap(),
                y["loglikelihoods"].as_array().unwrap(),
            );
            for (a, c) in lx.iter().zip(ly) {
                let (a, c) = (a.as_f64().unwrap(), c.as_f64().unwrap());
                assert!((a - c).abs() < 1e-5, "batch {b}: {a} vs {c}");
            }
            assert_eq!(x["scores"], y["scores"], "batch {b}, doc {}", x["doc_id"]);
            assert_eq!(x["responses"], y["responses"]);
        }
        assert_eq!(
            json(p.path(), "eval1.metrics")["tasks"],
            json(p.path(), &format!("eval{b}.metrics"))["tasks"]
        );
    }
    // Multiple choice: one log-likelihood per choice, the prediction their argmax.
    let mc: Vec<_> = reference.iter().filter(|r| r["task"] == "mc").collect();
    for r in &mc {
        let lls: Vec<f64> = r["loglikelihoods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(lls.len(), r["choices"].as_array().unwrap().len());
        let best = (0..lls.len())
            .max_by(|&a, &b| lls[a].total_cmp(&lls[b]).then(b.cmp(&a)))
            .unwrap();
        assert_eq!(r["prediction"].as_u64().unwrap() as usize, best);
        assert_eq!(r["item_keys"].as_array().unwrap().len(), lls.len());
    }
    // Metrics carry a stderr and a bootstrap interval around the value.
    let m = json(p.path(), "eval7.metrics");
    let row = m["table"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["task"] == "mc" && r["metric"] == "acc")
        .unwrap()
        .clone();
    let (v, lo, hi) = (
        row["value"].as_f64().unwrap(),
        row["ci_low"].as_f64().unwrap(),
        row["ci_high"].as_f64().unwrap(),
    );
    assert!(lo <= v && v <= hi, "{row}");
    assert!(row["stderr"].as_f64().unwrap() > 0.0);
    // `dag show` prints the table.
    let o = dag(p.path(), &["show", "eval7.metrics"]);
    assert!(text(&o).contains("95% CI"), "{}", text(&o));
}

#[test]
fn lint_errors_stop_before_the_model_runs_and_name_the_document() {
    let broken = TASKS.replace(
        "doc_to_text = \"{{question}}\\nAnswer:\"\ndoc_to_choice",
        "doc_to_text = \"{question}\\nAnswer:\"\ndoc_to_choice",
    );
    assert_ne!(broken, TASKS);
    let p = project(
        &broken,
        "[node.eval]\ntype = \"evaluate\"\ninputs = { model = \"tiny.model\" }\ntasks = [\"mc\"]\ndefinitions = \"tasks.toml\"\n",
    );
    let o = dag(p.path(), &["run", "g.toml"]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("template lint"), "{t}");
    assert!(t.contains("doc_to_text"), "{t}");
    assert!(
        t.contains("lint = \\\"warn\\\"") || t.contains("lint = \"warn\""),
        "{t}"
    );
}

#[test]
fn unknown_task_names_suggest_the_closest() {
    let p = project(
        TASKS,
        "[node.eval]\ntype = \"evaluate\"\ninputs = { model = \"tiny.model\" }\ntasks = [\"mcc\"]\ndefinitions = \"tasks.toml\"\n",
    );
    let o = dag(p.path(), &["run", "g.toml"]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("No task or group is named `mcc`"), "{t}");
    assert!(t.contains("mc"), "{t}");
}

#[test]
fn paired_comparison_of_two_models_on_the_same_items() {
    let qwen = root().join("nodes/runtime/tests/fixtures/tiny-qwen2");
    let nodes = format!(
        r#"
[node.qwen]
type = "model"
path = "{}"

[node.a]
type = "evaluate"
inputs = {{ model = "tiny.model" }}
tasks = ["mc"]
definitions = "tasks.toml"

[node.b]
type = "evaluate"
inputs = {{ model = "qwen.model" }}
tasks = ["mc"]
definitions = "tasks.toml"

[node.cmp]
type = "compare-evals"
inputs = {{ a = "a.samples", b = "b.samples" }}
"#,
        qwen.display()
    );
    let p = project(TASKS, &nodes);
    let o = dag(p.path(), &["run", "g.toml", "-q"]);
    assert!(o.status.success(), "{}", text(&o));
    let a = rows(p.path(), "a.samples");
    let b = rows(p.path(), "b.samples");
    // Another model never shares an item key.
    for (x, y) in a.iter().zip(&b) {
        assert_ne!(x["item_keys"], y["item_keys"]);
    }
    let cmp = json(p.path(), "cmp.metrics");
    let row = cmp["table"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["metric"] == "acc")
        .unwrap()
        .clone();
    let mean = |rs: &[serde_json::Value]| {
        rs.iter()
            .map(|r| r["scores"]["acc"].as_f64().unwrap())
            .sum::<f64>()
            / rs.len() as f64
    };
    let diff = mean(&b) - mean(&a);
    assert!(
        (row["difference"].as_f64().unwrap() - diff).abs() < 1e-12,
        "{row}"
    );
    assert!(row["ci_low"].as_f64().unwrap() <= diff && diff <= row["ci_high"].as_f64().unwrap());
    let pv = row["sign_flip_p"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&pv));
    // evaluate and compare-evals in another directory: the same bytes.
    let elsewhere = project(TASKS, &nodes);
    let o = dag(elsewhere.path(), &["run", "g.toml", "-q"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_same_outputs(p.path(), elsewhere.path());
}

/// lm-eval 0.4.13's `--log_samples` on SmolLM2 (f32, CPU) against ours: per-choice
/// log-likelihoods within 1e-3, identical greedy flags, predictions, generations and scores.
#[test]
fn smollm2_matches_lm_evaluation_harness() {
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/lm_eval_smollm2.json")).unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".git")).unwrap();
    let data = root().join("../shared/data");
    std::fs::write(
        dir.path().join("g.toml"),
        format!(
            r#"
[node.base]
type = "model"
source = "smollm2"

[node.air]
type = "evaluate"
inputs = {{ model = "base.model" }}
tasks = ["advanced_ai_risk_human-coordinate-itself", "advanced_ai_risk_human-power-seeking-inclination", "advanced_ai_risk_human-survival-instinct"]
data = "{data}"
limit = 8

[node.gsm]
type = "evaluate"
inputs = {{ model = "base.model" }}
tasks = ["gsm8k"]
data = "{data}"
limit = 3
"#,
            data = data.display()
        ),
    )
    .unwrap();
    let o = dag(dir.path(), &["run", "g.toml", "-q"]);
    assert!(o.status.success(), "{}", text(&o));
    let mut ours = rows(dir.path(), "air.samples");
    ours.extend(rows(dir.path(), "gsm.samples"));
    let metrics = [
        json(dir.path(), "air.metrics"),
        json(dir.path(), "gsm.metrics"),
    ];
    let mut compared = 0;
    let mut max_diff: f64 = 0.0;
    for (task, r) in reference["tasks"].as_object().unwrap() {
        for s in r["samples"].as_array().unwrap() {
            let mine = ours
                .iter()
                .find(|o| {
                    o["task"] == *task && o["doc_id"] == s["doc_id"] && o["filter"] == s["filter"]
                })
                .unwrap_or_else(|| panic!("{task} doc {} {} missing", s["doc_id"], s["filter"]));
            if task.starts_with("advanced_ai_risk") {
                let lls = mine["loglikelihoods"].as_array().unwrap();
                for (ours, theirs) in lls.iter().zip(s["resps"].as_array().unwrap()) {
                    let (x, y) = (ours.as_f64().unwrap(), theirs[0].as_f64().unwrap());
                    max_diff = max_diff.max((x - y).abs());
                    assert!(
                        (x - y).abs() < 1e-3,
                        "{task} doc {}: {x} vs {y}",
                        s["doc_id"]
                    );
                }
            } else {
                assert_eq!(
                    mine["responses"][0], s["resps"][0],
                    "{task} doc {}",
                    s["doc_id"]
                );
                assert_eq!(mine["filtered"][0], s["filtered_resps"][0]);
            }
            for (metric, value) in s["metrics"].as_object().unwrap() {
                assert_eq!(
                    mine["scores"][metric], *value,
                    "{task} doc {} {metric}",
                    s["doc_id"]
                );
            }
            compared += 1;
        }
        // Task scores equal.
        for (key, value) in r["results"].as_object().unwrap() {
            if key.contains("stderr") || key == "alias" || key == "sample_len" {
                continue;
            }
            let ours = metrics
                .iter()
                .find_map(|m| m["tasks"][task][key].as_f64())
                .unwrap_or_else(|| panic!("{task} {key} missing"));
            assert!(
                (ours - value.as_f64().unwrap()).abs() < 1e-9,
                "{task} {key}"
            );
        }
    }
    assert!(compared >= 3 * 8 + 3 * 2, "compared {compared} samples");
    eprintln!("{compared} samples; largest log-likelihood difference {max_diff:.2e}");
}

#[test]
fn chat_templated_evaluation_and_diff_of_two_runs() {
    let p = project(
        TASKS,
        "[node.eval]\ntype = \"evaluate\"\ninputs = { model = \"tiny.model\" }\ntasks = [\"mc\"]\ndefinitions = \"tasks.toml\"\nchat = true\nsystem_prompt = \"Answer carefully.\"\nlimit = 6\n",
    );
    let o = dag(p.path(), &["run", "g.toml", "-q"]);
    assert!(o.status.success(), "{}", text(&o));
    let samples = rows(p.path(), "eval.samples");
    assert_eq!(samples.len(), 6, "limit applies per task");
    for s in &samples {
        let prompt = s["prompt"].as_str().unwrap();
        assert!(prompt.contains("Answer carefully."), "{prompt}");
        assert!(
            prompt.contains(&format!("Question {}", s["doc_id"])),
            "{prompt}"
        );
        // The tiny model's Llama-3-style template, with the generation prompt.
        assert!(
            prompt.starts_with("<|start_header_id|>system<|end_header_id|>")
                || prompt.contains("<|start_header_id|>system<|end_header_id|>"),
            "{prompt}"
        );
        assert!(
            prompt.ends_with("<|start_header_id|>assistant<|end_header_id|>\n\n"),
            "{prompt}"
        );
    }
    // Another limit: a second run whose metrics differ, which `dag diff` lists.
    let o = dag(p.path(), &["run", "g.toml", "-q", "--set", "eval.limit=12"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = dag(p.path(), &["diff", "last~1", "last"]);
    let t = text(&o);
    assert!(t.contains("param limit: 6 -> 12"), "{t}");
    assert!(t.contains("tasks.mc.n"), "{t}");
}

#[test]
fn builtin_mmlu_reads_the_users_files_and_missing_data_is_explained() {
    let fixtures = root().join("nodes/tasks/tests/fixtures");
    let nodes = format!(
        r#"
[node.mmlu]
type = "evaluate"
inputs = {{ model = "tiny.model" }}
tasks = ["mmlu"]
test_file = "{}"
fewshot_file = "{}"

[node.air]
type = "evaluate"
inputs = {{ model = "tiny.model" }}
tasks = ["advanced_ai_risk_human-coordinate-itself"]
"#,
        fixtures.join("mmlu_test.jsonl").display(),
        fixtures.join("mmlu_dev.jsonl").display()
    );
    let p = project(TASKS, &nodes);
    let o = dag(p.path(), &["run", "g.toml", "-q"]);
    let t = text(&o);
    assert!(!o.status.success(), "air has no data directory: {t}");
    assert!(
        t.contains("relative to the data directory, and `data` is not set"),
        "{t}"
    );
    assert!(t.contains("data = "), "the hint shows the fix: {t}");
    let samples = rows(p.path(), "mmlu.samples");
    assert_eq!(samples.len(), 6, "every test question, both subjects");
    for s in &samples {
        let prompt = s["prompt"].as_str().unwrap();
        assert!(
            prompt.starts_with("The following are multiple choice questions"),
            "{prompt}"
        );
        // Five solved dev examples of the same subject precede the question.
        assert_eq!(prompt.matches("\nAnswer:").count(), 6, "{prompt}");
        assert_eq!(s["choices"], serde_json::json!(["A", "B", "C", "D"]));
    }
}
