//! Judge-graded scoring end to end (`anima`) against a real OpenAI-compatible server started
//! on loopback: llmock, which answers with scripted verdicts and scripted faults (429 with
//! Retry-After, 500s, delays past the timeout) and keeps a journal of every request it got.
//! The journal is the proof: no call lost, none answered twice, Retry-After honoured, and a
//! run killed mid-grading resumes with exactly the calls not yet answered.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::tools::Llmock as Server;
use common::{dag, text, write_project};
use serde_json::{Value, json};

/// Verdicts by judge: judge-a passes everything, judge-b fails everything, so the two
/// judges' means differ and every grading's value is known.
fn verdicts() -> Vec<Value> {
    vec![
        json!({"type": "reply", "text": "The answer weighs the animals.\nGRADE: C", "match": {"model": "judge-a"}, "times": 1_000_000}),
        json!({"type": "reply", "text": "It ignores them.\n**GRADE: I**", "match": {"model": "judge-b"}, "times": 1_000_000}),
        json!({"type": "reply", "text": "I cannot grade this.", "match": {"model": "judge-c"}, "times": 1_000_000}),
    ]
}

/// Three ANIMA questions answered twice each by the tiny model, graded by `judges`:
/// 5 gradings per epoch per judge.
fn graph(url: &str, judges: &[&str], extra: &str) -> String {
    let fixtures = common::root().join("tests/fixtures/anima");
    let judges: Vec<String> = judges.iter().map(|j| format!("\"{j}\"")).collect();
    format!(
        r#"
[node.questions]
type = "dataset"
path = "{q}"

[node.dimensions]
type = "dataset"
path = "{d}"

[node.tiny]
type = "model"
path = "{m}"

[node.answers]
type = "generate"
inputs = {{ dataset = "questions.dataset", model = "tiny.model" }}
prompt = "{{question}}"
chat = false
n = 2
temperature = 1.0
max_new_tokens = 6
on_length = "warn"

[node.grade]
type = "anima"
inputs = {{ answers = "answers.generations", dimensions = "dimensions.dataset" }}
judge_url = "{url}"
judges = [{judges}]
{extra}
"#,
        q = fixtures.join("questions.jsonl").display(),
        d = fixtures.join("dimensions.jsonl").display(),
        m = common::tiny_model().display(),
        judges = judges.join(", "),
    )
}

const CALLS: usize = 20;

/// Runs the graph, which must succeed, and returns the run's log file (what nodes said).
fn run_ok(dir: &Path) -> String {
    let o = dag(dir, &["run", "g.toml"]);
    assert!(o.status.success(), "{}", text(&o));
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir.join(".dag/logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    logs.sort();
    std::fs::read_to_string(logs.last().expect("a run log")).unwrap()
}

/// The scores `grade` recorded (its metadata is the whole report).
fn scores(dir: &Path) -> Value {
    let o = dag(dir, &["--json", "show", "grade.scores"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    v["meta"].clone()
}

/// Each instance's status in the latest run.
fn statuses(dir: &Path) -> std::collections::BTreeMap<String, String> {
    common::run_statuses(&dag(dir, &["--json", "log", "-n", "1"]))
}

fn answered(journal: &[Value]) -> usize {
    journal.iter().filter(|r| r["status"] == 200).count()
}

#[test]
fn faults_lose_no_call_answer_none_twice_and_change_nothing() {
    let server = Server::start();
    // Without faults: the reference.
    let clean = tempfile::tempdir().unwrap();
    write_project(
        clean.path(),
        "g.toml",
        &graph(&server.url(), &["judge-a", "judge-b"], "concurrency = 4"),
    );
    server.script(Value::Array(verdicts()));
    run_ok(clean.path());
    assert_eq!(answered(&server.journal()), CALLS, "one request per call");

    // With 429s (Retry-After 1.5 s), 500s and a reply slower than the timeout.
    let faulty = tempfile::tempdir().unwrap();
    write_project(
        faulty.path(),
        "g.toml",
        &graph(
            &server.url(),
            &["judge-a", "judge-b"],
            "concurrency = 4\ntimeout_s = 1.0\nmax_retries = 4",
        ),
    );
    let mut behaviors = vec![
        json!({"type": "fail", "status": 429, "retry_after": 1.5, "times": 2}),
        json!({"type": "fail", "status": 500, "times": 2}),
        json!({"type": "fail", "status": 503, "times": 1}),
        json!({"type": "delay", "seconds": 3, "times": 1}),
    ];
    behaviors.extend(verdicts());
    server.script(Value::Array(behaviors));
    let log = run_ok(faulty.path());
    let journal = server.journal();
    assert_eq!(
        journal.iter().filter(|r| r["status"] == 429).count(),
        2,
        "the scripted 429s arrived"
    );
    // Every call answered once: the late reply to the timed-out request is the only
    // answer the client never read, and it is counted by the server, not by dag.
    let late = journal
        .iter()
        .filter(|r| r["status"] == 200 && r["duration"].as_f64().unwrap_or(0.0) >= 2.9)
        .count();
    assert_eq!(
        answered(&journal) - late,
        CALLS,
        "no call lost, none answered twice: {log}"
    );
    assert_eq!(
        late, 1,
        "the slow reply arrived after the client gave up on it"
    );
    for why in ["HTTP 429", "HTTP 500", "HTTP 503", "timed out"] {
        assert!(
            log.contains(why),
            "the retry after `{why}` is reported: {log}"
        );
    }

    // Retry-After honoured: each 429'd request is sent again no sooner than 1.5 s later.
    for (i, r) in journal
        .iter()
        .enumerate()
        .filter(|(_, r)| r["status"] == 429)
    {
        let again = journal[i + 1..]
            .iter()
            .find(|x| x["fingerprint"] == r["fingerprint"])
            .expect("the rate-limited call is retried");
        let waited = again["started_at"].as_f64().unwrap() - r["ended_at"].as_f64().unwrap();
        assert!(
            waited >= 1.45,
            "retried after {waited:.3} s, before Retry-After's 1.5 s"
        );
    }

    // The same result as without faults: grades and scores byte for byte.
    common::assert_same_outputs(clean.path(), faulty.path());
    let s = scores(clean.path());
    assert_eq!(s["grades_attempted"], json!(CALLS), "{s:#}");
    // judge-a passes everything and judge-b fails everything: Cohen's kappa 0 (each judge
    // uses one verdict, so chance agreement is 0 and so is observed agreement), Fleiss'
    // kappa -1 (every item split evenly, against an expected agreement of 1/2).
    let agreement = &s["agreement"];
    assert_eq!(
        agreement["pairs"][0]["cohen_kappa"],
        json!(0.0),
        "{agreement:#}"
    );
    assert_eq!(
        agreement["pairs"][0]["items"],
        json!(CALLS / 2),
        "{agreement:#}"
    );
    assert_eq!(agreement["fleiss_kappa"], json!(-1.0), "{agreement:#}");
    let by_judge: Vec<(&str, f64)> = s["graders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["grader"].as_str().unwrap(),
                g["overall_mean"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(by_judge, [("judge-a", 1.0), ("judge-b", 0.0)]);
    assert_eq!(s["overall_mean"], json!(0.5), "the mean over judges: {s:#}");
}

#[test]
fn a_run_killed_mid_grading_resumes_with_only_the_missing_calls() {
    let server = Server::start();
    server.script(Value::Array(verdicts()));
    let dir = tempfile::tempdir().unwrap();
    write_project(
        dir.path(),
        "g.toml",
        &graph(&server.url(), &["judge-a", "judge-b"], "concurrency = 1"),
    );
    let marker = dir.path().join("held");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dag"))
        .args(["run", "g.toml", "-q"])
        .current_dir(dir.path())
        .env("OMP_NUM_THREADS", common::THREADS)
        .env("DAG_TEST_HOLD_AFTER_SAVES", "7")
        .env("DAG_TEST_HOLD_MARKER", &marker)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while !marker.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("dag exited ({status}) before 7 calls were saved");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = server.journal().len();
    assert!(
        (7..=8).contains(&before),
        "7 saved, at most one in flight: {before}"
    );

    let log = run_ok(dir.path());
    let resumed = server.journal().len() - before;
    assert_eq!(
        resumed,
        CALLS - 7,
        "only the calls not saved are sent again: {log}"
    );
    assert!(log.contains("7 of 20 judge calls answered before"), "{log}");

    // And the result is the one an uninterrupted run gives.
    let clean = tempfile::tempdir().unwrap();
    write_project(
        clean.path(),
        "g.toml",
        &graph(&server.url(), &["judge-a", "judge-b"], "concurrency = 1"),
    );
    run_ok(clean.path());
    common::assert_same_outputs(clean.path(), dir.path());
}

#[test]
fn a_new_judge_sends_only_its_own_calls_and_reruns_nothing_upstream() {
    let server = Server::start();
    server.script(Value::Array(verdicts()));
    let dir = tempfile::tempdir().unwrap();
    write_project(
        dir.path(),
        "g.toml",
        &graph(&server.url(), &["judge-a"], ""),
    );
    run_ok(dir.path());
    let first = server.journal().len();
    assert_eq!(first, CALLS / 2);

    write_project(
        dir.path(),
        "g.toml",
        &graph(&server.url(), &["judge-a", "judge-c"], ""),
    );
    let log = run_ok(dir.path());
    let journal = server.journal();
    let new: Vec<&Value> = journal[first..].iter().collect();
    assert_eq!(new.len(), CALLS / 2, "{log}");
    assert!(
        new.iter().all(|r| r["model"] == "judge-c"),
        "only the new judge is asked"
    );
    let st = statuses(dir.path());
    assert!(
        st["answers"].contains("Cached"),
        "generate is not rerun: {st:?}"
    );

    // judge-c never gives a verdict: every one of its gradings is unscored, counted, and
    // never a 0; the scores are judge-a's alone.
    let s = scores(dir.path());
    assert_eq!(s["grades_unparseable"], json!(CALLS / 2), "{s:#}");
    assert_eq!(s["overall_mean"], json!(1.0), "{s:#}");

    // Raising concurrency or retries changes how calls run, not what they compute.
    write_project(
        dir.path(),
        "g.toml",
        &graph(
            &server.url(),
            &["judge-a", "judge-c"],
            "concurrency = 16\nmax_retries = 1\ntimeout_s = 30.0",
        ),
    );
    let log = run_ok(dir.path());
    assert_eq!(server.journal().len(), journal.len(), "nothing sent: {log}");
    assert!(statuses(dir.path())["grade"].contains("Cached"), "{log}");
}

#[test]
fn a_spent_budget_keeps_what_was_answered_and_a_bigger_one_finishes() {
    let server = Server::start();
    server.script(Value::Array(verdicts()));
    let dir = tempfile::tempdir().unwrap();
    write_project(
        dir.path(),
        "g.toml",
        &graph(
            &server.url(),
            &["judge-a", "judge-b"],
            "concurrency = 1\nmax_calls = 6",
        ),
    );
    let o = dag(dir.path(), &["run", "g.toml"]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("6 of 20 judge calls answered and saved") && t.contains("max_calls"),
        "{t}"
    );
    assert_eq!(server.journal().len(), 6, "the budget is a hard limit");

    write_project(
        dir.path(),
        "g.toml",
        &graph(
            &server.url(),
            &["judge-a", "judge-b"],
            "concurrency = 1\nmax_calls = 14",
        ),
    );
    run_ok(dir.path());
    assert_eq!(
        server.journal().len(),
        CALLS,
        "the second run pays for the other 14 only"
    );
}

#[test]
fn the_api_key_reaches_the_server_and_nowhere_else() {
    let server = Server::start();
    server.script(Value::Array(verdicts()));
    let dir = tempfile::tempdir().unwrap();
    let secret = "sk-dag-test-7c1e9a0b44d2f6";
    write_project(
        dir.path(),
        "g.toml",
        &graph(
            &server.url(),
            &["judge-a"],
            "api_key_env = \"DAG_TEST_JUDGE_KEY\"",
        ),
    );

    // Unset: a clear error before any call.
    let o = dag(dir.path(), &["run", "g.toml"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("`DAG_TEST_JUDGE_KEY`"), "{}", text(&o));
    assert_eq!(server.journal().len(), 0);

    let o = Command::new(env!("CARGO_BIN_EXE_dag"))
        .args(["run", "g.toml"])
        .env("DAG_LOG", "debug")
        .current_dir(dir.path())
        .env("OMP_NUM_THREADS", common::THREADS)
        .env("DAG_TEST_JUDGE_KEY", secret)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains(secret), "the key is not printed");
    for args in [
        &["log"][..],
        &["lineage", "grade.scores"],
        &["show", "grade.grades"],
    ] {
        let o = dag(dir.path(), args);
        assert!(
            !text(&o).contains(secret),
            "`dag {}` shows the key",
            args.join(" ")
        );
    }
    let leaks = files_containing(&dir.path().join(".dag"), secret.as_bytes());
    assert!(leaks.is_empty(), "the key is stored in {leaks:?}");
    assert_eq!(server.journal().len(), CALLS / 2);
}

fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_containing(&p, needle));
        } else if let Ok(bytes) = std::fs::read(&p)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            out.push(p);
        }
    }
    out
}

#[test]
fn grade_qa_scores_parsed_verdicts_and_counts_the_rest() {
    let server = Server::start();
    // judge-a grades C; judge-d's replies hit the parser's traps, each unscored, never a 0:
    // two letters, a "downgrade:" in prose, no grade at all.
    let mut behaviors = verdicts();
    for text in [
        "GRADE: CI",
        "I would downgrade: I think it is fine",
        "Looks right to me.",
    ] {
        behaviors.push(
            json!({"type": "reply", "text": text, "match": {"model": "judge-d"}, "times": 2}),
        );
    }
    server.script(Value::Array(behaviors));
    let dir = tempfile::tempdir().unwrap();
    let graph = format!(
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
    );
    write_project(dir.path(), "g.toml", &graph);
    run_ok(dir.path());
    let o = dag(dir.path(), &["--json", "show", "qa.scores"]);
    let s: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    let s = &s["meta"];
    assert_eq!(
        s["overall"],
        json!({"accuracy": 1.0, "scored": 6, "unscored": 6}),
        "{s:#}"
    );
    assert_eq!(
        s["judges"]["judge-d"],
        json!({"accuracy": null, "scored": 0, "unscored": 6}),
        "{s:#}"
    );
    assert_eq!(server.journal().len(), 12, "3 rows x 2 answers x 2 judges");

    // A bad template is refused when the graph loads, naming the placeholder.
    write_project(
        dir.path(),
        "g.toml",
        &format!("{graph}grader_template = \"{{question}} {{answr}}\"\n"),
    );
    let o = dag(dir.path(), &["run", "g.toml"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("`{answr}`") && text(&o).contains("grader_template"),
        "{}",
        text(&o)
    );
    assert_eq!(server.journal().len(), 12, "nothing sent");
}

/// Runs `graph` in a new project and returns the project and `node.scores`' report.
fn run_scores(graph: &str, node: &str) -> (tempfile::TempDir, Value) {
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), "g.toml", graph);
    run_ok(dir.path());
    let o = dag(dir.path(), &["--json", "show", &format!("{node}.scores")]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    (dir, v["meta"].clone())
}

#[test]
fn harmbench_judges_real_behaviours_by_their_prompt_and_excludes_copyright() {
    let server = Server::start();
    server.script(json!([
        {"type": "reply", "text": "Yes", "match": {"model": "judge-y"}, "times": 1_000_000},
        // Not exactly yes or no: `other`, never a success.
        {"type": "reply", "text": "Yes.", "match": {"model": "judge-o"}, "times": 1_000_000},
    ]));
    let data = common::root().join("../shared/data/harmbench");
    // The first 13 validation behaviours: 10 standard, 1 contextual, 2 copyright.
    let graph = format!(
        r#"
[node.behaviors]
type = "dataset"
path = "{csv}"
limit = 13

[node.tiny]
type = "model"
path = "{m}"

[node.gen]
type = "generate"
inputs = {{ dataset = "behaviors.dataset", model = "tiny.model" }}
prompt = "{{Behavior}}"
chat = false
max_new_tokens = 4
on_length = "warn"

[node.hb]
type = "harmbench"
inputs = {{ generations = "gen.generations" }}
standard_prompt = "{std}"
contextual_prompt = "{ctx}"
judge_url = "{url}"
judges = ["judge-y", "judge-o"]
judge_max_tokens = 1
"#,
        csv = data.join("harmbench_behaviors_text_val.csv").display(),
        std = data.join("classifier_prompt_standard.txt").display(),
        ctx = data.join("classifier_prompt_contextual.txt").display(),
        m = common::tiny_model().display(),
        url = server.url(),
    );
    let (_dir, s) = run_scores(&graph, "hb");
    let journal = server.journal();
    assert_eq!(
        journal.len(),
        22,
        "11 behaviours judged by 2 judges; copyright never sent"
    );
    let contextual = journal
        .iter()
        .filter(|r| {
            r["body"]["messages"][0]["content"]
                .as_str()
                .unwrap()
                .contains("[CONTEXT]:")
        })
        .count();
    assert_eq!(
        contextual, 2,
        "the one contextual behaviour gets the contextual prompt"
    );
    assert!(journal.iter().all(|r| r["body"]["max_tokens"] == 1));
    let y = &s["judges"]["judge-y"];
    let o = &s["judges"]["judge-o"];
    assert_eq!(y["asr"], json!(1.0), "{s:#}");
    assert_eq!(o["asr"], json!(0.0), "{s:#}");
    assert_eq!(o["verdicts"]["other"], json!(11), "{s:#}");
    assert_eq!(y["copyright_excluded"], json!(2), "{s:#}");
    assert_eq!(s["asr"], json!(0.5), "the mean over judges: {s:#}");
}

#[test]
fn airbench_parses_scores_strictly_and_follows_the_declared_direction() {
    let server = Server::start();
    server.script(json!([
        {"type": "reply", "text": "The answer refuses.\n##the_score: 1", "match": {"model": "judge-s"}, "times": 1_000_000},
        {"type": "reply", "text": "##the_score: 0.7", "match": {"model": "judge-u"}, "times": 1_000_000},
    ]));
    let fixtures = common::root().join("nodes/judge/tests/fixtures/airbench");
    let graph = |direction: &str| {
        format!(
            r#"
[node.items]
type = "dataset"
path = "{items}"

[node.tiny]
type = "model"
path = "{m}"

[node.gen]
type = "generate"
inputs = {{ dataset = "items.dataset", model = "tiny.model" }}
prompt = "{{prompt}}"
chat = false
max_new_tokens = 4
on_length = "warn"

[node.air]
type = "airbench"
inputs = {{ answers = "gen.generations" }}
judge_prompts = "{prompts}"
score_direction = "{direction}"
judge_url = "{url}"
judges = ["judge-s", "judge-u"]
"#,
            items = fixtures.join("items.json").display(),
            prompts = fixtures.join("judge_prompts.jsonl").display(),
            m = common::tiny_model().display(),
            url = server.url(),
        )
    };
    let (dir, s) = run_scores(&graph("higher-is-safer"), "air");
    let sent = server.journal().len();
    let s_judge = &s["judges"]["judge-s"];
    assert_eq!(s_judge["safety_score"], json!(1.0), "{s:#}");
    assert_eq!(s_judge["unscored"], json!(0), "{s:#}");
    let u_judge = &s["judges"]["judge-u"];
    assert_eq!(
        u_judge["scored"],
        json!(0),
        "0.7 is not on the scale: {s:#}"
    );
    assert_eq!(u_judge["unscored"], s_judge["scored"], "{s:#}");

    // The other direction: the same replies (no call is made again), the opposite safety.
    write_project(dir.path(), "g.toml", &graph("higher-is-less-safe"));
    run_ok(dir.path());
    assert_eq!(
        server.journal().len(),
        sent,
        "a changed direction needs no new call"
    );
    let o = dag(dir.path(), &["--json", "show", "air.scores"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["meta"]["judges"]["judge-s"]["safety_score"],
        json!(0.0),
        "{v:#}"
    );
    assert_eq!(
        v["meta"]["judges"]["judge-s"]["mean_score"],
        json!(1.0),
        "{v:#}"
    );
}

#[test]
fn a_local_judge_constrained_to_the_verdict_grammar_grades_anima_end_to_end() {
    // SmolLM2 (the embedded default model) judges in dag-worker: each reply is the likelier
    // of `GRADE: C` and `GRADE: I`, so every grading parses and nothing is unscored.
    let dir = tempfile::tempdir().unwrap();
    let local = graph("http://unused", &["x"], "")
        .replace("judge_url = \"http://unused\"\njudges = [\"x\"]\n", "")
        .replace(
            "dimensions = \"dimensions.dataset\" }",
            "dimensions = \"dimensions.dataset\", judge = \"smol.model\" }",
        )
        + "\n[node.smol]\ntype = \"model\"\nsource = \"smollm2\"\n";
    assert!(!local.contains("judge_url"), "{local}");
    write_project(dir.path(), "g.toml", &local);
    let log = run_ok(dir.path());
    assert!(log.contains("judges 10 calls locally"), "{log}");
    let s = scores(dir.path());
    assert_eq!(s["grades_attempted"], json!(CALLS / 2), "{s:#}");
    assert_eq!(s["grades_unparseable"], json!(0), "constrained: {s:#}");
    assert_eq!(s["graders"][0]["grader"], json!("smol.model"), "{s:#}");
    let o = dag(
        dir.path(),
        &["--json", "show", "grade.grades", "--rows", "100"],
    );
    assert!(o.status.success(), "{}", text(&o));

    // Rerun: every verdict is saved; nothing runs again.
    run_ok(dir.path());
    assert!(statuses(dir.path())["grade"].contains("Cached"));
}

#[test]
fn rubric_labelling_keeps_unlabelled_rows_and_reports_agreement() {
    let server = Server::start();
    server.script(json!([
        {"type": "reply", "text": "{\"label\": \"High Stakes\", \"confidence\": 8, \"explanation\": \"Harm.\"}", "match": {"model": "judge-h"}, "times": 1_000_000},
        // A bare label is not the asked-for object: unlabelled, kept, never guessed.
        {"type": "reply", "text": "High Stakes", "match": {"model": "judge-x"}, "times": 1_000_000},
    ]));
    let graph = |judge: &str| {
        format!(
            r#"
[node.rows]
type = "dataset"
path = "{rows}"

[node.stakes]
type = "rubric-label"
inputs = {{ dataset = "rows.dataset" }}
rubric = "{rubric}"
labels = ["Low Stakes", "High Stakes"]
compare_column = "label"
judge_url = "{url}"
judges = ["{judge}"]
"#,
            rows = common::root().join("tests/fixtures/stakes.jsonl").display(),
            rubric = common::root()
                .join("../shared/data/models-under-pressure/labeling_rubric.md")
                .display(),
            url = server.url(),
        )
    };
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), "g.toml", &graph("judge-h"));
    run_ok(dir.path());
    let o = dag(dir.path(), &["--json", "show", "stakes.metrics"]);
    let m: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    let m = &m["meta"];
    assert_eq!(
        m["counts"],
        json!({"Low Stakes": 0, "High Stakes": 4}),
        "{m:#}"
    );
    // Existing labels 1, 0, 1, 0 against 1, 1, 1, 1: half agree, and the judge's one
    // label makes chance agreement 1/2 too, so kappa is 0.
    assert_eq!(
        m["agreement_with_existing"]["accuracy"],
        json!(0.5),
        "{m:#}"
    );
    assert_eq!(
        m["agreement_with_existing"]["cohen_kappa"],
        json!(0.0),
        "{m:#}"
    );
    let rubric_sent = &server.journal()[0]["body"]["messages"][0]["content"];
    assert!(
        rubric_sent
            .as_str()
            .unwrap()
            .contains("High-Stakes vs. Low-Stakes"),
        "the rubric is sent"
    );

    write_project(dir.path(), "g.toml", &graph("judge-x"));
    run_ok(dir.path());
    let o = dag(dir.path(), &["--json", "show", "stakes.metrics"]);
    let m: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(m["meta"]["unlabelled"], json!(4), "{m:#}");
    assert_eq!(m["meta"]["rows"], json!(4), "every row is kept");
}

#[test]
fn two_models_compare_one_sided_over_their_epoch_means() {
    let server = Server::start();
    // judge-m passes its first five calls and fails the rest; with one call in flight they
    // go in plan order: q1 (2 dimensions) x 2 epochs, then q2 epoch 0's first expansion.
    // Epoch 0: q1 1, q2 (C, I) 1/2, q3 0 -> 1/2; epoch 1: q1 1, q2 0, q3 0 -> 1/3.
    let mut behaviors = verdicts();
    behaviors.insert(
        0,
        json!({"type": "reply", "text": "GRADE: C", "match": {"model": "judge-m"}, "times": 5}),
    );
    behaviors.push(json!({"type": "reply", "text": "GRADE: I", "match": {"model": "judge-m"}, "times": 1_000_000}));
    server.script(Value::Array(behaviors));
    let dir = tempfile::tempdir().unwrap();
    let g = graph(&server.url(), &["judge-a"], "")
        + &format!(
            r#"
[node.grade_m]
type = "anima"
inputs = {{ answers = "answers.generations", dimensions = "dimensions.dataset" }}
judge_url = "{url}"
judges = ["judge-m"]
concurrency = 1

[node.compare]
type = "anima-compare"
inputs = {{ a = "grade.scores", b = "grade_m.scores" }}
"#,
            url = server.url()
        );
    write_project(dir.path(), "g.toml", &g);
    run_ok(dir.path());
    let o = dag(dir.path(), &["--json", "show", "compare.metrics"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    let m = &v["meta"];
    assert_eq!(m["a"]["epoch_means"], json!([1.0, 1.0]), "{m:#}");
    let b: Vec<f64> = serde_json::from_value(m["b"]["epoch_means"].clone()).unwrap();
    assert!(
        (b[0] - 0.5).abs() < 1e-12 && (b[1] - 1.0 / 3.0).abs() < 1e-12,
        "{m:#}"
    );
    // Welch: se = sqrt(0/2 + (1/72)/2) = 1/12, t = (1 - 5/12) / (1/12) = 7, df = 1, and
    // P(T_1 > 7) = 1/2 - atan(7)/pi.
    let test = &m["test"];
    assert!(
        (test["statistic"].as_f64().unwrap() - 7.0).abs() < 1e-9,
        "{test:#}"
    );
    assert!(
        (test["df"].as_f64().unwrap() - 1.0).abs() < 1e-9,
        "{test:#}"
    );
    let p = 0.5 - 7f64.atan() / std::f64::consts::PI;
    assert!(
        (test["p_value"].as_f64().unwrap() - p).abs() < 1e-9,
        "{test:#}"
    );
}

#[test]
fn an_api_judge_held_to_a_json_schema_is_read_by_its_verdict_field() {
    let server = Server::start();
    // judge-json is not scripted: llmock answers with an object that follows the schema it
    // was sent (the schema's first verdict). judge-odd answers a verdict outside it.
    server.script(json!([
        {"type": "reply", "text": "{\"reasoning\": \"x\", \"verdict\": \"GRADE: X\"}", "match": {"model": "judge-odd"}, "times": 1_000_000},
    ]));
    let dir = tempfile::tempdir().unwrap();
    write_project(
        dir.path(),
        "g.toml",
        &graph(
            &server.url(),
            &["judge-json", "judge-odd"],
            "json_verdict = true",
        ),
    );
    run_ok(dir.path());
    let journal = server.journal();
    assert_eq!(answered(&journal), CALLS);
    for r in &journal {
        let body = &r["body"];
        let format = &body["response_format"];
        assert_eq!(format["type"], "json_schema", "{body:#}");
        assert_eq!(
            format["json_schema"]["schema"]["properties"]["verdict"]["enum"],
            json!(["GRADE: C", "GRADE: I"]),
            "the schema holds the verdict to the scorer's grammar: {body:#}"
        );
        let prompt = body["messages"][0]["content"].as_str().unwrap();
        assert!(
            prompt.ends_with("one of \"GRADE: C\", \"GRADE: I\"}."),
            "{prompt}"
        );
    }
    let s = scores(dir.path());
    let mean = |judge: &str| {
        s["graders"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["grader"] == judge)
            .map_or(Value::Null, |g| g["overall_mean"].clone())
    };
    assert_eq!(mean("judge-json"), json!(1.0), "{s:#}");
    assert_eq!(
        mean("judge-odd"),
        Value::Null,
        "a verdict outside the schema is unscored, never a 0: {s:#}"
    );
    assert_eq!(s["grades_unparseable"], json!(CALLS / 2), "{s:#}");
    assert_eq!(s["overall_mean"], json!(1.0), "{s:#}");
}

/// The most requests the server had in flight at once, from its journal's times.
fn most_in_flight(journal: &[Value]) -> usize {
    let mut edges: Vec<(f64, i32)> = journal
        .iter()
        .flat_map(|r| {
            [
                (r["started_at"].as_f64().unwrap(), 1),
                (r["ended_at"].as_f64().unwrap(), -1),
            ]
        })
        .collect();
    // An end and a start at the same instant do not overlap.
    edges.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let (mut now, mut most) = (0, 0);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

/// Two anima nodes against one API, each allowed 8 requests in flight: judge-a's 10 calls
/// in `grade`, judge-b's 10 in `grade_b`, in a fresh project.
fn two_graders(server: &Server) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let second = format!(
        r#"concurrency = 8

[node.grade_b]
type = "anima"
inputs = {{ answers = "answers.generations", dimensions = "dimensions.dataset" }}
judge_url = "{}"
judges = ["judge-b"]
concurrency = 8
"#,
        server.url()
    );
    write_project(
        dir.path(),
        "g.toml",
        &graph(&server.url(), &["judge-a"], &second),
    );
    dir
}

/// Whether the requests of `a` and of `b` were sent over windows of time that overlap: the
/// two nodes were sending side by side. (Not that two requests were in flight at once: with
/// the endpoint's connections handed out first come, first served, two nodes that start
/// together can alternate whole rounds and never have one of each in flight, and whether
/// they do depends on microseconds.)
fn side_by_side(journal: &[Value], a: &str, b: &str) -> bool {
    let window = |m: &str| {
        journal
            .iter()
            .filter(|r| r["model"] == m)
            .map(|r| {
                (
                    r["started_at"].as_f64().unwrap(),
                    r["ended_at"].as_f64().unwrap(),
                )
            })
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(s, e), (s1, e1)| {
                (s.min(s1), e.max(e1))
            })
    };
    let ((sa, ea), (sb, eb)) = (window(a), window(b));
    sa < eb && sb < ea
}

#[test]
fn nodes_side_by_side_share_the_runs_connections_and_budget() {
    let server = Server::start();
    let mut behaviors = verdicts();
    // Each answer takes 0.5 s: with 2 connections, 20 calls keep both nodes sending for
    // about 5 s, over windows that overlap unless one starts seconds after the other.
    behaviors.insert(
        0,
        json!({"type": "delay", "seconds": 0.5, "times": Value::Null}),
    );
    server.script(Value::Array(behaviors.clone()));
    let dir = two_graders(&server);
    let o = dag(
        dir.path(),
        &["run", "g.toml", "-j", "4", "--api-connections", "2"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let journal = server.journal();
    assert_eq!(answered(&journal), CALLS);
    assert!(
        side_by_side(&journal, "judge-a", "judge-b"),
        "the two nodes sent over one window of time (else this run shows nothing about sharing)"
    );
    assert_eq!(
        most_in_flight(&journal),
        2,
        "two nodes of 8 each hold 2 connections to the endpoint between them"
    );

    // One budget for the whole run, whichever node spends it.
    server.script(Value::Array(behaviors));
    let dir = two_graders(&server);
    let o = dag(
        dir.path(),
        &[
            "run",
            "g.toml",
            "-j",
            "4",
            "--api-connections",
            "2",
            "--max-api-calls",
            "7",
        ],
    );
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("--max-api-calls"),
        "the hint names the run's budget: {t}"
    );
    assert_eq!(
        server.journal().len(),
        7,
        "one budget for the whole run: {t}"
    );
    let o = dag(dir.path(), &["run", "g.toml", "-j", "4"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        answered(&server.journal()),
        CALLS,
        "the second run sends only the 13 calls not yet answered"
    );
}

#[test]
fn a_pinned_judge_revision_keys_its_calls_and_refuses_another_served_model() {
    let server = Server::start();
    server.script(Value::Array(verdicts()));
    let dir = tempfile::tempdir().unwrap();
    // llmock reports the model asked for: `judge-a`.
    write_project(
        dir.path(),
        "g.toml",
        &graph(
            &server.url(),
            &["judge-a"],
            "judge_revisions = [\"judge-a\"]",
        ),
    );
    run_ok(dir.path());
    assert_eq!(server.journal().len(), CALLS / 2);
    let pinned = scores(dir.path());
    assert!(pinned["overall_mean"].is_number(), "{pinned:#}");

    // Unpinned, the same judge is another key: its calls are asked again.
    write_project(
        dir.path(),
        "g.toml",
        &graph(&server.url(), &["judge-a"], ""),
    );
    run_ok(dir.path());
    assert_eq!(
        server.journal().len(),
        CALLS,
        "the pin is part of each call's key"
    );

    // Pinned to a snapshot the server does not report: refused, named, nothing saved for it.
    write_project(
        dir.path(),
        "g.toml",
        &graph(
            &server.url(),
            &["judge-a"],
            "judge_revisions = [\"judge-a-2026-01-01\"]\nconcurrency = 1",
        ),
    );
    let o = dag(dir.path(), &["run", "g.toml"]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("`judge-a` was answered by the served model `judge-a`, not the pinned `judge-a-2026-01-01`")
            && t.contains("judge_revisions"),
        "{t}"
    );
    assert!(t.contains("0 of 10 judge calls answered and saved"), "{t}");
    let before = server.journal().len();
    assert_eq!(
        before,
        CALLS + 1,
        "the first refusal stops the requests: {t}"
    );
    let o = dag(dir.path(), &["run", "g.toml"]);
    assert!(!o.status.success());
    assert_eq!(
        server.journal().len(),
        before + 1,
        "a refused reply was not saved: its call is asked again"
    );

    // One revision per judge, checked when the graph loads.
    write_project(
        dir.path(),
        "g.toml",
        &graph(
            &server.url(),
            &["judge-a", "judge-b"],
            "judge_revisions = [\"judge-a\"]",
        ),
    );
    let o = dag(dir.path(), &["status", "g.toml"]);
    let t = text(&o);
    assert!(
        !o.status.success() && t.contains("1 revisions for 2 judges"),
        "{t}"
    );
}
