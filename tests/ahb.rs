//! The AnimalHarmBench study end to end: `graphs/ahb.toml --profile dev` on the embedded
//! SmolLM2 (answers, LoRA distillation, answers of every evaluated model, ANIMA graded by
//! SmolLM2 as a local judge, the report), and the exact rerun set of each kind of edit.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::tools::Llmock;
use common::{dag_with_store, run_statuses, text};
use serde_json::{Value, json};

fn graph() -> PathBuf {
    common::root().join("graphs/ahb.toml")
}

/// Runs the dev profile with `sets` (`node.param=value`), which must succeed; returns
/// its output.
fn run_dev(dir: &Path, sets: &[String]) -> String {
    let g = graph();
    let mut args = vec!["run", g.to_str().unwrap(), "--profile", "dev", "-q"];
    for s in sets {
        args.extend(["--set", s.as_str()]);
    }
    let o = dag_with_store(dir, &args);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    t
}

/// Each instance's status in the latest run: `Ran`, `Cached`, ...
fn statuses(dir: &Path) -> BTreeMap<String, String> {
    run_statuses(&dag_with_store(dir, &["--json", "log", "-n", "1"]))
}

/// The instances that ran, sorted.
fn ran(dir: &Path) -> Vec<String> {
    statuses(dir)
        .into_iter()
        .filter(|(_, s)| s == "Ran")
        .map(|(n, _)| n)
        .collect()
}

fn show(dir: &Path, target: &str) -> Value {
    let o = dag_with_store(dir, &["--json", "show", target]);
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)))
}

/// Every anima node, by the model it evaluates.
const GRADERS: [&str; 5] = ["pre", "pre_prompted", "ckpt", "post", "post_prompted"];

#[test]
fn the_ahb_graph_ends_in_its_report_and_each_edit_reruns_exactly_what_it_touches() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // One checkpoint (at the end, step 2) first.
    let out = run_dev(d, &["distill.save_interval=2".into()]);
    assert!(out.contains("| ckpt[step-2] |"), "{out}");
    assert!(!out.contains("ckpt[step-1]"), "{out}");

    // Checkpoints every step: one more checkpoint, whose answers and grading are new; the
    // step-2 checkpoint is bit-identical, so its answers and grading are reused.
    let out = run_dev(d, &[]);
    assert_eq!(
        ran(d),
        [
            "answers_ckpt[step-1]",
            "ckpt[step-1]",
            "distill",
            "propensity_ckpt[step-1]",
            "report"
        ],
        "{out}"
    );
    let st = statuses(d);
    for cached in [
        "answers_ckpt[step-2]",
        "ckpt[step-2]",
        "propensity_ckpt[step-2]",
        "propensity_post",
        "post",
        "post_prompted",
    ] {
        assert_eq!(st[cached], "Cached", "{cached}: {st:?}");
    }

    // The run ends with the report: a row per evaluated model and the comparison.
    for row in [
        "| pre |",
        "| pre_prompted |",
        "| ckpt[step-1] |",
        "| ckpt[step-2] |",
        "| post |",
        "| post_prompted |",
    ] {
        assert!(out.contains(row), "{row} in:\n{out}");
    }
    assert!(out.contains("`post` vs `pre`"), "{out}");
    assert!(out.contains("propensity (advanced-ai-risk)"), "{out}");
    assert!(out.contains("dag export report.report DIR"), "{out}");

    // Every number in the report is the number of the grading it names.
    let report = show(d, "report.report")["meta"].clone();
    let models = report["models"].as_array().unwrap();
    let names: Vec<&str> = models
        .iter()
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "pre",
            "pre_prompted",
            "ckpt[step-1]",
            "ckpt[step-2]",
            "post",
            "post_prompted"
        ]
    );
    for m in models {
        let scores = show(d, &format!("{}.scores", m["model"].as_str().unwrap()));
        assert_eq!(scores["artifact"], m["scores"], "{m:#}");
        assert_eq!(scores["meta"]["overall_mean"], m["overall"], "{m:#}");
        assert_eq!(
            m["epoch_means"].as_array().unwrap().len(),
            2,
            "two epochs in dev: {m:#}"
        );
        assert_eq!(
            m["grades_unscored"],
            json!(0),
            "the local judge is held to the verdicts: {m:#}"
        );
        // Each dimension with its interval over the two epochs, as the scores have it.
        let dims = m["dimensions"].as_array().unwrap();
        assert!(!dims.is_empty(), "{m:#}");
        for (d, theirs) in dims
            .iter()
            .zip(scores["meta"]["dimensions"].as_array().unwrap())
        {
            // A dimension no question has (or one epoch) has no interval.
            let i = &theirs["epoch_interval"];
            let want = if i.is_null() {
                Value::Null
            } else {
                json!([i["lower"], i["upper"]])
            };
            assert_eq!(d["interval"], want, "{d} {theirs}");
        }
        assert!(
            dims.iter().any(|d| d["interval"].is_array()),
            "two epochs give the tagged dimensions an interval: {m:#}"
        );
        // Propensity: evaluated without a prompt, so not for the prompted rows.
        let name = m["model"].as_str().unwrap();
        assert_eq!(
            m["propensity"].is_null(),
            name.ends_with("_prompted"),
            "{m:#}"
        );
    }
    let exported = d.join("exported");
    let o = dag_with_store(d, &["export", "report.report", exported.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let png = std::fs::read(exported.join("scores.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let md = std::fs::read_to_string(exported.join("report.md")).unwrap();
    assert!(
        md.contains("![overall score per model](scores.png)"),
        "{md}"
    );
    // The graph's own step (`lengths`, a script) beside the built-in nodes: a plot and a
    // metrics file made from the answers before and after distillation.
    let plot = d.join("lengths");
    let o = dag_with_store(d, &["export", "lengths.plot", plot.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let svg = std::fs::read_to_string(plot.join("lengths.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("pre: ") && svg.contains("post: "));
    let summary = d.join("lengths.json");
    let o = dag_with_store(d, &["export", "lengths.summary", summary.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let summary: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    for model in ["pre", "post"] {
        // dev: 3 questions, 2 answers each.
        assert_eq!(summary[model]["answers"], json!(6), "{summary:#}");
        assert!(
            summary[model]["mean_words"].as_f64().unwrap() > 0.0,
            "{summary:#}"
        );
    }
    let g = graph();
    let o = dag_with_store(
        d,
        &["lineage", "report.report", "--graph", g.to_str().unwrap()],
    );
    let lineage = text(&o);
    for reaches in [
        "from questions",
        "from dimensions",
        "from base",
        "from statements",
    ] {
        assert!(
            lineage.contains(reaches),
            "the report's lineage reaches `{reaches}`:\n{lineage}"
        );
    }

    // Another judge: only the gradings and the report rerun, and SmolLM2's verdicts are
    // reused (only the API judge's calls are made).
    let server = Llmock::start();
    server.script(json!([
        {"type": "reply", "text": "{\"reasoning\": \"r\", \"verdict\": \"GRADE: I\"}", "match": {"model": "judge-x"}, "times": 1_000_000},
    ]));
    let mut judge = vec![];
    for n in GRADERS {
        judge.push(format!("{n}.judge_url=\"{}\"", server.url()));
        judge.push(format!("{n}.judges=[\"judge-x\"]"));
        judge.push(format!("{n}.json_verdict=true"));
    }
    run_dev(d, &judge);
    let st = statuses(d);
    for (name, status) in &st {
        let grading = GRADERS
            .iter()
            .any(|g| name == g || name.starts_with(&format!("{g}[")));
        if grading || name == "report" {
            assert!(status == "Ran" || status == "Cached", "{name}: {st:?}");
        } else {
            assert_eq!(
                status, "Cached",
                "{name} must not rerun for a new judge: {st:?}"
            );
        }
    }
    assert_eq!(st["pre"], "Ran");
    let journal = server.journal();
    assert!(!journal.is_empty());
    assert!(journal.iter().all(|r| r["model"] == "judge-x"));
    let report = show(d, "report.report")["meta"].clone();
    let pre = &report["models"][0];
    assert_eq!(
        pre["overall"],
        json!(0.5),
        "SmolLM2 says C (1.0), judge-x says I (0.0): the mean over graders: {pre:#}"
    );
    // `dag diff` of the two runs shows the report's numbers that moved, each with both
    // intervals.
    let o = dag_with_store(d, &["--json", "diff", "last~1", "last"]);
    let diff: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    let moved: Vec<&Value> = diff
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["node"] == "report")
        .flat_map(|n| n["changes"].as_array().unwrap())
        .filter_map(|c| c["metrics"].as_array())
        .flatten()
        .collect();
    let overall = moved
        .iter()
        .find(|m| m["metric"] == "report.json:models.[pre].overall")
        .unwrap_or_else(|| panic!("{moved:#?}"));
    assert_eq!(overall["b"], json!(0.5), "{overall}");
    assert_ne!(overall["a"], overall["b"]);
    assert_eq!(overall["b_interval"], pre["interval"], "{overall}");
    assert!(
        overall["a_interval"].is_array() && overall["b_interval"].is_array(),
        "{overall}"
    );
    let printed = text(&dag_with_store(d, &["diff", "last~1", "last"]));
    assert!(
        printed.contains("report.json:models.[pre].overall"),
        "{printed}"
    );

    // The teacher's system prompt: the answers distilled and everything after them rerun;
    // the pre-distill evaluations do not.
    run_dev(
        d,
        &["answers.system_prompt=\"You are a chatbot who sees animals as things.\"".into()],
    );
    let st = statuses(d);
    for rerun in [
        "answers",
        "distill",
        "answers_ckpt[step-1]",
        "answers_post_prompted",
        "propensity_ckpt[step-1]",
        "report",
    ] {
        assert_eq!(st[rerun], "Ran", "{rerun}: {st:?}");
    }
    // The last checkpoint and `distill.final` are one model: whichever of its two
    // generations ran first, the other found it cached.
    assert!(
        [&st["answers_ckpt[step-2]"], &st["answers_post"]]
            .iter()
            .any(|s| *s == "Ran"),
        "{st:?}"
    );
    for kept in [
        "statements",
        "questions",
        "dimensions",
        "base",
        "answers_pre",
        "answers_pre_prompted",
        "pre",
        "pre_prompted",
        "propensity_pre",
    ] {
        assert_eq!(st[kept], "Cached", "{kept}: {st:?}");
    }
}
