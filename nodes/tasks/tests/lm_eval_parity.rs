//! Prompts and requests against what lm-evaluation-harness 0.4.13 builds from its own task
//! YAMLs on the same files (`tests/fixtures/make_fixtures.py`), and the real data sets in
//! `../shared/data`.

use std::path::{Path, PathBuf};

use dag_tasks::{
    LoglikelihoodRequest, PreparedDoc, Request, Task, TaskSet, load_builtin, split_whitespace,
};
use serde::Deserialize;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn builtin(name: &str) -> TaskSet {
    load_builtin(name, &root().join("../shared/data"))
        .expect("known builtin")
        .unwrap()
}

#[derive(Debug, Deserialize)]
struct RefDoc {
    doc_id: usize,
    requests: Vec<RefRequest>,
}

#[derive(Debug, Deserialize)]
struct RefRequest {
    context: String,
    continuation: Option<String>,
    until: Option<Vec<String>>,
}

fn read<T: for<'de> Deserialize<'de>>(name: &str) -> T {
    serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap()
}

/// lm-eval's instances hold the raw (context, continuation); its HF model moves the context's
/// trailing whitespace before encoding. Our requests carry the moved form and the raw prompt.
fn assert_same(ours: &[PreparedDoc], reference: &[RefDoc]) {
    assert_eq!(ours.len(), reference.len());
    for (doc, r) in ours.iter().zip(reference) {
        assert_eq!(doc.requests.len(), r.requests.len(), "doc {}", r.doc_id);
        for (req, rr) in doc.requests.iter().zip(&r.requests) {
            assert_eq!(doc.prompt, rr.context, "prompt of doc {}", r.doc_id);
            match req {
                Request::Loglikelihood(ll) => {
                    let expected: LoglikelihoodRequest =
                        split_whitespace(&rr.context, rr.continuation.as_deref().unwrap());
                    assert_eq!(ll, &expected, "doc {}", r.doc_id);
                }
                Request::Generate(g) => {
                    assert_eq!(g.context, rr.context, "doc {}", r.doc_id);
                    assert_eq!(Some(&g.until), rr.until.as_ref());
                }
            }
        }
    }
}

#[test]
fn advanced_ai_risk_requests_match_lm_eval() {
    let set = builtin("advanced_ai_risk");
    let reference: std::collections::BTreeMap<String, Vec<RefDoc>> =
        read("lm_eval_advanced_ai_risk.json");
    assert_eq!(reference.len(), 3);
    for (category, docs) in reference {
        let spec = set
            .task(&format!("advanced_ai_risk_human-{category}"))
            .unwrap();
        let task = Task::new(spec.clone()).unwrap();
        let data = task.load_docs().unwrap();
        let prepared = task.prepare(&data, Some(docs.len())).unwrap();
        assert_same(&prepared, &docs);
    }
}

#[test]
fn gsm8k_five_shot_prompts_match_lm_eval_sampling() {
    let mut spec = builtin("gsm8k").tasks.remove(0);
    // The fixture used the test file as the few-shot pool (see make_fixtures.py).
    let test = root().join("../shared/data/gsm8k/test.jsonl");
    spec.set_split("train", test);
    let task = Task::new(spec).unwrap();
    let data = task.load_docs().unwrap();
    let reference: Vec<RefDoc> = read("lm_eval_gsm8k.json");
    let prepared = task.prepare(&data, Some(reference.len())).unwrap();
    assert_same(&prepared, &reference);
    assert!(prepared[0].prompt.matches("Question:").count() == 6);
}

#[test]
fn gsm8k_runs_zero_shot_without_a_train_file() {
    let task = Task::new(builtin("gsm8k").tasks.remove(0)).unwrap();
    let data = task.load_docs().unwrap();
    assert_eq!(data.eval.len(), 1319);
    assert!(data.fewshot.is_none());
    let prepared = task.prepare(&data, None).unwrap();
    assert_eq!(
        prepared[0].prompt,
        format!(
            "Question: {}\nAnswer:",
            data.eval[0]["question"].as_str().unwrap()
        )
    );
    let report = task.lint(&data, &prepared);
    assert_eq!(report.errors().count(), 0, "{:?}", report.issues);
}

#[test]
fn mmlu_per_subject_dev_prefix_matches_lm_eval() {
    let mut spec = builtin("mmlu").tasks.remove(0);
    spec.set_split("test", fixture("mmlu_test.jsonl"));
    spec.set_split("dev", fixture("mmlu_dev.jsonl"));
    let task = Task::new(spec).unwrap();
    let data = task.load_docs().unwrap();
    let prepared = task.prepare(&data, None).unwrap();
    let reference: std::collections::BTreeMap<String, Vec<RefDoc>> = read("lm_eval_mmlu.json");
    // Our single file lists abstract_algebra first, then high_school_biology, in order.
    let flat: Vec<RefDoc> = reference.into_values().flatten().collect();
    assert_same(&prepared, &flat);
}

#[test]
fn nq_open_prompts_match_lm_eval() {
    let mut spec = builtin("nq_open").tasks.remove(0);
    spec.set_split("validation", fixture("nq_open_validation.jsonl"));
    spec.set_split("train", fixture("nq_open_train.jsonl"));
    spec.fewshot.num = 2;
    let task = Task::new(spec).unwrap();
    let data = task.load_docs().unwrap();
    let prepared = task.prepare(&data, None).unwrap();
    assert_same(&prepared, &read::<Vec<RefDoc>>("lm_eval_nq_open.json"));
}

#[test]
fn all_sixteen_advanced_ai_risk_files_prepare_and_pass_lint() {
    let set = builtin("advanced_ai_risk");
    assert_eq!(set.tasks.len(), 16);
    assert_eq!(set.groups[0].tasks.len(), 16);
    let mut total = 0;
    for spec in &set.tasks {
        let task = Task::new(spec.clone()).unwrap();
        let data = task.load_docs().unwrap();
        let prepared = task.prepare(&data, None).unwrap();
        let report = task.lint(&data, &prepared);
        assert_eq!(
            report.errors().count(),
            0,
            "{}: {:?}",
            spec.name,
            report.errors().collect::<Vec<_>>()
        );
        for doc in &prepared {
            assert_eq!(doc.requests.len(), 2);
            assert!(doc.prompt.starts_with("Human: "));
            assert!(doc.prompt.ends_with("\n\nAssistant:"));
        }
        total += prepared.len();
    }
    assert_eq!(total, 8116);
}
