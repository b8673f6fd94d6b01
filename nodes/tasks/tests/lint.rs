//! Template lint: each problem is reported with the document and the field, as an error or,
//! where the data can legitimately cause it, a warning.

use std::path::Path;

use dag_tasks::{Error, LintReport, Severity, Task, TaskDocs, TaskSet};
use serde_json::{Value, json};

fn task(toml: &str) -> Task {
    let set = TaskSet::from_toml_str(toml, Path::new(".")).unwrap();
    Task::new(set.tasks[0].clone()).unwrap()
}

fn docs(rows: Vec<Value>) -> TaskDocs {
    TaskDocs {
        eval: rows
            .into_iter()
            .map(|r| r.as_object().unwrap().clone())
            .collect(),
        fewshot: None,
    }
}

fn lint(task: &Task, rows: Vec<Value>) -> LintReport {
    let docs = docs(rows);
    let prepared = task.prepare(&docs, None).unwrap();
    task.lint(&docs, &prepared)
}

fn only(report: &LintReport, severity: Severity) -> Vec<(Option<usize>, String)> {
    report
        .issues
        .iter()
        .filter(|i| i.severity == severity)
        .map(|i| (i.doc_id, i.field.clone()))
        .collect()
}

const MC: &str = r#"
[[task]]
name = "mc"
output_type = "multiple_choice"
doc_to_text = "{{q}}\nAnswer:"
doc_to_choice = { field = "choices" }
doc_to_target = { field = "gold" }
"#;

#[test]
fn a_prompt_that_ignores_the_document_is_an_error() {
    let t = task(
        r#"
[[task]]
name = "constant"
output_type = "generate_until"
doc_to_text = "Solve the problem.\nAnswer:"
doc_to_target = "{{answer}}"
"#,
    );
    let rows = (0..10)
        .map(|i| json!({"q": format!("q{i}"), "answer": format!("{i}")}))
        .collect();
    let report = lint(&t, rows);
    assert_eq!(
        only(&report, Severity::Error),
        [(Some(0), "doc_to_text".to_string())]
    );
    let err = report.into_result().unwrap_err();
    assert!(matches!(err, Error::Lint { .. }));
    assert!(
        err.to_string()
            .contains("10 of 10 documents render the same prompt"),
        "{err}"
    );
}

#[test]
fn a_few_duplicated_rows_are_a_warning() {
    let t = task(MC);
    let mut rows: Vec<Value> = (0..30)
        .map(|i| json!({"q": format!("q{i}"), "choices": ["yes", "no"], "gold": 0}))
        .collect();
    rows.push(json!({"q": "q3", "choices": ["yes", "no"], "gold": 1}));
    let report = lint(&t, rows);
    assert!(only(&report, Severity::Error).is_empty());
    assert_eq!(
        only(&report, Severity::Warning),
        [(Some(3), "doc_to_text".to_string())]
    );
}

#[test]
fn unfilled_placeholders_are_errors_unless_the_data_has_them() {
    let t = task(
        r#"
[[task]]
name = "placeholder"
output_type = "generate_until"
doc_to_text = "Question: {question}\nContext: {{ctx}}\nAnswer:"
doc_to_target = "{{answer}}"
"#,
    );
    let report = lint(
        &t,
        vec![
            json!({"question": "a", "ctx": "plain", "answer": "1"}),
            json!({"question": "b", "ctx": "see {question} in {{ braces }}", "answer": "2"}),
        ],
    );
    // Document 0: `{question}` came from the template. Document 1: the data holds it too.
    assert_eq!(
        only(&report, Severity::Error),
        [(Some(0), "doc_to_text".to_string())]
    );
    assert_eq!(only(&report, Severity::Warning).len(), 3);
    assert!(
        report.issues[0]
            .to_string()
            .contains("document 0, `doc_to_text`")
    );
}

#[test]
fn gold_out_of_range_empty_and_duplicate_choices() {
    let t = task(MC);
    let report = lint(
        &t,
        vec![
            json!({"q": "a", "choices": ["x", "y"], "gold": 2}),
            json!({"q": "b", "choices": [], "gold": 0}),
            json!({"q": "c", "choices": ["x", "x", "y"], "gold": 1}),
            json!({"q": "d", "choices": ["x", "x", "y"], "gold": 2}),
            json!({"q": "e", "choices": ["x", ""], "gold": 0}),
            json!({"q": "f", "choices": ["x", "y"], "gold": "z"}),
        ],
    );
    let errors = only(&report, Severity::Error);
    assert_eq!(
        errors,
        [
            (Some(0), "doc_to_target".to_string()),
            (Some(1), "doc_to_choice".to_string()),
            (Some(2), "doc_to_choice".to_string()),
            (Some(4), "doc_to_choice".to_string()),
            (Some(5), "doc_to_target".to_string()),
        ]
    );
    assert_eq!(
        only(&report, Severity::Warning),
        [(Some(3), "doc_to_choice".to_string())]
    );
}

#[test]
fn evaluate_stops_on_lint_errors_before_calling_the_model() {
    let t = task(MC);
    let docs = docs(vec![json!({"q": "a", "choices": ["x", "y"], "gold": 5})]);
    let mut model = dag_tasks::FakeModel::new();
    let err = dag_tasks::evaluate(&t, &docs, &mut model, None, 8, &Default::default()).unwrap_err();
    assert!(matches!(err, Error::Lint { .. }), "{err}");
    assert_eq!(model.calls.loglikelihood_requests, 0);
}

#[test]
fn render_failures_name_the_document_and_field() {
    let t = task(MC);
    let docs = docs(vec![
        json!({"q": "a", "choices": ["x"], "gold": 0}),
        json!({"choices": ["x"], "gold": 0}),
    ]);
    let err = t.prepare(&docs, None).unwrap_err();
    let Error::Document { doc_id, field, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!((*doc_id, field.as_str()), (1, "doc_to_text"));
}

#[test]
fn tasks_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Task>();
    assert_send_sync::<dag_tasks::TaskScores>();
    assert_send_sync::<dag_tasks::PreparedDoc>();
}
