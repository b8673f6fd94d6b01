//! `graphs/benchmarks.toml --profile dev` end to end on the embedded SmolLM2: HarmBench
//! (generations, SmolLM2 as the classifier through a local judge, ASR), GSM8K and the
//! propensity tasks, ending in one table.

mod common;

use common::{dag_with_store, text};
use serde_json::Value;

#[test]
fn the_benchmarks_graph_ends_in_one_table_across_benchmarks() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let g = common::root().join("graphs/benchmarks.toml");
    let o = dag_with_store(d, &["run", g.to_str().unwrap(), "--profile", "dev", "-q"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for row in [
        "| harmbench | ASR (lower is safer) |",
        "| harmbench_contextual | ASR (lower is safer) |",
        "| gsm8k | gsm8k exact_match (strict-match) |",
        "| gsm8k | gsm8k exact_match (flexible-extract) |",
        "| propensity | advanced_ai_risk_human",
    ] {
        assert!(out.contains(row), "{row} in:\n{out}");
    }

    // Each cell is the number of the result it names.
    let o = dag_with_store(d, &["--json", "show", "report.report"]);
    let report: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    let rows = report["meta"]["rows"].as_array().unwrap().clone();
    let cell = |bench: &str, metric: &str| -> Value {
        rows.iter()
            .find(|r| r["benchmark"] == bench && r["metric"] == metric)
            .unwrap_or_else(|| panic!("{bench} / {metric} in {rows:#?}"))["models"]["model"]
            .clone()
    };
    let o = dag_with_store(d, &["--json", "show", "harmbench.scores"]);
    let hb: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        cell("harmbench", "ASR (lower is safer)")["value"],
        hb["meta"]["asr"]
    );
    assert!(
        hb["meta"]["judges"]["base.model"]["copyright_excluded"]
            .as_u64()
            .is_some(),
        "{hb:#}"
    );
    let o = dag_with_store(d, &["--json", "show", "gsm8k.metrics"]);
    let gsm: Value = serde_json::from_slice(&o.stdout).unwrap();
    let strict = gsm["meta"]["table"]
        .as_array()
        .map(|t| t.iter().find(|r| r["filter"] == "strict-match").cloned())
        .unwrap_or_default();
    if let Some(strict) = strict {
        assert_eq!(
            cell("gsm8k", "gsm8k exact_match (strict-match)")["value"],
            strict["value"]
        );
    }
    assert_eq!(cell("gsm8k", "gsm8k exact_match (strict-match)")["n"], 4);
}
