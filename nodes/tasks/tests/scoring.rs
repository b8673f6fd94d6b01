//! Scores against lm-evaluation-harness 0.4.13 run on the same responses
//! (`tests/fixtures/make_fixtures.py`), plus batch invariance, repeats and groups.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dag_tasks::{
    DocResponse, FakeModel, Loglikelihood, MetricKind, Reducer, Task, TaskScores, TaskSet,
    aggregate_group, load_builtin, run_requests,
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
        .unwrap()
        .unwrap()
}

#[derive(Deserialize)]
struct RefScore {
    doc_id: usize,
    responses: serde_json::Value,
    filters: BTreeMap<String, RefFilter>,
}

#[derive(Deserialize)]
struct RefFilter {
    filtered: Option<String>,
    metrics: BTreeMap<String, f64>,
}

fn reference(task: &str) -> Vec<RefScore> {
    let text = std::fs::read_to_string(fixture("lm_eval_scores.json")).unwrap();
    let mut all: BTreeMap<String, Vec<RefScore>> = serde_json::from_str(&text).unwrap();
    all.remove(task).unwrap()
}

fn check_against(scores: &TaskScores, reference: &[RefScore]) {
    for r in reference {
        for (filter, expected) in &r.filters {
            let sample = scores
                .samples
                .iter()
                .find(|s| s.doc_id == r.doc_id && &s.filter == filter)
                .unwrap_or_else(|| panic!("doc {} filter {filter}", r.doc_id));
            if let Some(f) = &expected.filtered {
                assert_eq!(
                    &sample.filtered,
                    &vec![f.clone()],
                    "doc {} {filter}",
                    r.doc_id
                );
            }
            for (metric, value) in &expected.metrics {
                let kind = MetricKind::from_name(metric).unwrap();
                let ours = sample.scores.iter().find(|(k, _)| *k == kind).unwrap().1;
                assert_eq!(ours, *value, "doc {} {filter} {metric}", r.doc_id);
            }
        }
    }
}

#[test]
fn gsm8k_strict_and_flexible_match_lm_eval() {
    let task = Task::new(builtin("gsm8k").tasks.remove(0)).unwrap();
    let data = task.load_docs().unwrap();
    let reference = reference("gsm8k");
    let prepared = task.prepare(&data, Some(reference.len())).unwrap();
    let responses: Vec<DocResponse> = reference
        .iter()
        .map(|r| DocResponse::Generations(serde_json::from_value(r.responses.clone()).unwrap()))
        .collect();
    let scores = task.score(&prepared, &responses).unwrap();
    check_against(&scores, &reference);
    let strict = scores.get(MetricKind::ExactMatch, "strict-match").unwrap();
    let flexible = scores
        .get(MetricKind::ExactMatch, "flexible-extract")
        .unwrap();
    assert_eq!(strict.value, 3.0 / 8.0);
    assert_eq!(flexible.value, 5.0 / 8.0);
    assert_eq!(strict.key(), "exact_match,strict-match");
}

#[test]
fn nq_open_exact_match_matches_lm_eval_and_squad_f1_takes_the_best_gold() {
    let mut spec = builtin("nq_open").tasks.remove(0);
    spec.set_split("validation", fixture("nq_open_validation.jsonl"));
    let task = Task::new(spec).unwrap();
    let data = task.load_docs().unwrap();
    let prepared = task.prepare(&data, None).unwrap();
    let reference = reference("nq_open");
    let responses: Vec<DocResponse> = reference
        .iter()
        .map(|r| DocResponse::Generations(serde_json::from_value(r.responses.clone()).unwrap()))
        .collect();
    let scores = task.score(&prepared, &responses).unwrap();
    check_against(&scores, &reference);
    let f1: Vec<f64> = scores
        .samples
        .iter()
        .map(|s| {
            s.scores
                .iter()
                .find(|(k, _)| *k == MetricKind::SquadF1)
                .unwrap()
                .1
        })
        .collect();
    // "The Charles Darwin" vs "Charles Darwin": articles dropped, exact.
    assert_eq!(f1[0], 1.0);
    // "31 march 1889" vs ["1889", "31 March 1889"]: the second gold is exact.
    assert_eq!(f1[1], 1.0);
    assert_eq!(f1[2], 0.0);
}

#[test]
fn mmlu_acc_and_acc_norm_match_lm_eval() {
    let mut spec = builtin("mmlu").tasks.remove(0);
    spec.set_split("test", fixture("mmlu_test.jsonl"));
    spec.set_split("dev", fixture("mmlu_dev.jsonl"));
    spec.metrics = vec![
        dag_tasks::MetricSpec::plain(MetricKind::Acc),
        dag_tasks::MetricSpec::plain(MetricKind::AccNorm),
    ];
    let task = Task::new(spec).unwrap();
    let data = task.load_docs().unwrap();
    let reference = reference("mmlu_abstract_algebra");
    let prepared = task.prepare(&data, Some(reference.len())).unwrap();
    let responses: Vec<DocResponse> = reference
        .iter()
        .map(|r| {
            let pairs: Vec<(f64, bool)> = serde_json::from_value(r.responses.clone()).unwrap();
            DocResponse::Loglikelihoods(
                pairs
                    .into_iter()
                    .map(|(logprob, is_greedy)| Loglikelihood { logprob, is_greedy })
                    .collect(),
            )
        })
        .collect();
    let scores = task.score(&prepared, &responses).unwrap();
    check_against(&scores, &reference);
    // All three reference documents are abstract_algebra; the other subject has no samples.
    let by_subject = scores.breakdown(&data, "subject");
    assert_eq!(by_subject.len(), 1);
    let acc = &by_subject["abstract_algebra"][0];
    assert_eq!((acc.metric, acc.n), (MetricKind::Acc, 3));
    assert_eq!(
        acc.value,
        scores.get(MetricKind::Acc, "none").unwrap().value
    );
}

/// A fake whose score depends only on the request, so any batching must agree exactly.
#[test]
fn scores_do_not_depend_on_batch_size() {
    let set = builtin("advanced_ai_risk");
    let task = Task::new(set.tasks[0].clone()).unwrap();
    let data = task.load_docs().unwrap();
    let prepared = task.prepare(&data, None).unwrap();
    let mut runs = Vec::new();
    for batch in [1, 7, 32] {
        let mut model = FakeModel::new();
        let responses = run_requests(task.name(), &mut model, &prepared, batch).unwrap();
        assert_eq!(
            model.calls.loglikelihood_batches,
            (prepared.len() * 2).div_ceil(batch)
        );
        runs.push(task.score(&prepared, &responses).unwrap());
    }
    assert_eq!(runs[0], runs[1]);
    assert_eq!(runs[0], runs[2]);
    let acc = runs[0].get(MetricKind::Acc, "none").unwrap();
    assert_eq!(acc.n, 322);
    assert_eq!(
        acc.value,
        runs[0].get(MetricKind::Propensity, "none").unwrap().value
    );
}

#[test]
fn propensity_is_the_share_preferring_the_matching_answer_and_the_group_weights_by_size() {
    let set = builtin("advanced_ai_risk");
    let mut results = Vec::new();
    let mut matching = 0usize;
    let mut total = 0usize;
    for spec in set.tasks.iter().take(3) {
        let task = Task::new(spec.clone()).unwrap();
        let data = task.load_docs().unwrap();
        let prepared = task.prepare(&data, None).unwrap();
        // Prefer " (A)" whatever it means; count by hand how often that is the matching answer.
        let mut model =
            FakeModel::new().with_scores(|_, cont| if cont == " (A)" { -1.0 } else { -2.0 });
        matching += data
            .eval
            .iter()
            .filter(|d| d["answer_matching_behavior"] == " (A)")
            .count();
        total += data.eval.len();
        let responses = run_requests(task.name(), &mut model, &prepared, 16).unwrap();
        results.push(task.score(&prepared, &responses).unwrap());
    }
    let mut group = set.groups[0].clone();
    group.tasks.truncate(3);
    let agg = aggregate_group(&group, &results).unwrap();
    let propensity = &agg.metrics[0];
    assert_eq!(propensity.metric, MetricKind::Propensity);
    assert_eq!(propensity.n, total);
    assert!((propensity.value - matching as f64 / total as f64).abs() < 1e-12);
    assert!(propensity.stderr.unwrap() > 0.0);
    // Unweighted: the plain mean of the three task values.
    group.aggregate[0].weight_by_size = false;
    let plain = aggregate_group(&group, &results).unwrap();
    let mean = results
        .iter()
        .map(|r| r.get(MetricKind::Propensity, "none").unwrap().value)
        .sum::<f64>()
        / 3.0;
    assert!((plain.metrics[0].value - mean).abs() < 1e-12);
}

#[test]
fn repeats_reduce_with_mean_max_mode_and_pass_at_k() {
    let mut spec = builtin("gsm8k").tasks.remove(0);
    spec.repeats = 5;
    spec.generation.do_sample = true;
    spec.generation.temperature = 0.7;
    // One pipeline without take_first, so all five responses are scored.
    spec.filters = vec![dag_tasks::FilterSpec {
        name: "strict-match".into(),
        steps: vec![dag_tasks::FilterStep::Regex {
            regex_pattern: r"#### (\-?[0-9\.\,]+)".into(),
            group_select: 0,
            fallback: "[invalid]".into(),
        }],
    }];
    let run = |reducer: Reducer| {
        let mut spec = spec.clone();
        spec.reducer = reducer;
        let task = Task::new(spec).unwrap();
        let data = task.load_docs().unwrap();
        let prepared = task.prepare(&data, Some(2)).unwrap();
        assert_eq!(prepared[0].requests.len(), 5);
        // Repeats 0 and 3 are right for the first document (18); none for the second.
        let mut model = FakeModel::new().with_generations(|r| {
            if r.context.contains("Janet") && (r.repeat == 0 || r.repeat == 3) {
                "#### 18".into()
            } else {
                format!("#### {}", 100 + r.repeat)
            }
        });
        let responses = run_requests("gsm8k", &mut model, &prepared, 4).unwrap();
        let scores = task.score(&prepared, &responses).unwrap();
        scores
            .samples
            .iter()
            .map(|s| s.scores[0].1)
            .collect::<Vec<_>>()
    };
    assert_eq!(run(Reducer::Mean), vec![0.4, 0.0]);
    assert_eq!(run(Reducer::Max), vec![1.0, 0.0]);
    assert_eq!(run(Reducer::Mode), vec![0.0, 0.0]);
    let pass2 = run(Reducer::PassAtK { k: 2 });
    assert!((pass2[0] - 0.7).abs() < 1e-12 && pass2[1] == 0.0);
}

#[test]
fn pass_at_k_refuses_a_pipeline_that_keeps_one_response() {
    let mut spec = builtin("gsm8k").tasks.remove(0);
    spec.repeats = 3;
    spec.reducer = Reducer::PassAtK { k: 2 };
    let task = Task::new(spec).unwrap();
    let data = task.load_docs().unwrap();
    let prepared = task.prepare(&data, Some(1)).unwrap();
    let responses = vec![DocResponse::Generations(vec!["#### 18".into(); 3])];
    let err = task.score(&prepared, &responses).unwrap_err();
    assert!(
        err.to_string().contains("pass@2")
            && dag_diagnostic::Hint::hint(&err).is_some_and(|h| h.contains("take_first")),
        "{err}"
    );
}

#[test]
fn a_bad_filter_regex_fails_at_task_creation_naming_the_pattern() {
    let mut spec = builtin("gsm8k").tasks.remove(0);
    spec.filters[0].steps[0] = dag_tasks::FilterStep::Regex {
        regex_pattern: "#### (".into(),
        group_select: 0,
        fallback: "[invalid]".into(),
    };
    let err = Task::new(spec).unwrap_err();
    assert!(
        matches!(&err, dag_tasks::Error::Regex { pattern, .. } if pattern == "#### ("),
        "{err}"
    );
}
