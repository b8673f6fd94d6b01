//! The whole-run memo (`dag_engine::Memo`): an unchanged graph over an unchanged store is
//! answered without loading the graph, and every change a key could see (the graph file,
//! an override, a profile, a data file, the store) sends the next run or status through the
//! full path again, which then finds what is stale.

mod common;

use std::path::Path;

use common::{dag, text, write_project};

const MEMO_HIT: &str = "answered without loading the graph";

/// Runs `dag run g.toml ARGS` and returns whether the memo answered it (its run log says).
fn run(d: &Path, args: &[&str]) -> (bool, String) {
    let mut all = vec!["run", "g.toml", "-q"];
    all.extend_from_slice(args);
    let o = dag(d, &all);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let log = t
        .split_whitespace()
        .find(|w| w.ends_with(".log)"))
        .map(|w| w.trim_end_matches(')'))
        .unwrap_or_else(|| panic!("the run log's path: {t}"));
    let hit = std::fs::read_to_string(log).unwrap().contains(MEMO_HIT);
    (hit, t)
}

fn graph(label: &str) -> String {
    format!(
        r#"
[node.rows]
type = "dataset"
path = "rows.jsonl"

[node.copy]
type = "command"
run = "cat {{in.rows}} > {{out.rows}}"
inputs = {{ rows = "rows.dataset" }}
outputs = {{ rows = "dataset" }}

[node.tail]
type = "noop"
label = "{label}"
inputs = {{ in = "copy.rows" }}

[profile.other]
tail.label = "from a profile"
"#
    )
}

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rows.jsonl"), "{\"a\": 1}\n").unwrap();
    write_project(dir.path(), "g.toml", &graph("x"));
    dir
}

#[test]
fn a_no_op_run_is_answered_from_the_memo_and_records_the_run() {
    let dir = project();
    let d = dir.path();
    let (hit, t) = run(d, &[]);
    assert!(!hit && t.contains("3 ran"), "{t}");
    let (hit, t) = run(d, &[]);
    assert!(hit, "the second run is the memo's: {t}");
    assert!(t.contains("0 ran, 3 cached"), "{t}");
    // It is a run like any other: in the log, with every instance and its outputs.
    let o = dag(d, &["--json", "log", "-n", "1"]);
    let runs: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let nodes = runs[0]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{runs:#}");
    assert!(
        nodes
            .iter()
            .all(|n| n["status"] == "Cached" && n["key"].is_string())
    );
    // status too.
    let st = text(&dag(d, &["status", "g.toml"]));
    assert_eq!(st.matches("cached").count(), 3, "{st}");
}

#[test]
fn every_change_a_key_could_see_goes_through_the_full_path() {
    let dir = project();
    let d = dir.path();
    run(d, &[]);
    assert!(run(d, &[]).0);

    // An override, a profile, a target: not the memoised invocation, and each memoised in
    // its own right.
    assert!(!run(d, &["--set", "tail.label=y"]).0);
    assert!(run(d, &["--set", "tail.label=y"]).0);
    assert!(!run(d, &["--profile", "other"]).0);
    assert!(!run(d, &["--only", "copy"]).0);
    assert!(run(d, &["--only", "copy"]).0);
    // Those runs moved the store (`tail` ran twice), so the first invocation's memo is void.
    assert!(!run(d, &[]).0);
    assert!(run(d, &[]).0);

    // The graph file, one byte.
    std::fs::write(d.join("g.toml"), graph("x") + "\n").unwrap();
    let (hit, t) = run(d, &[]);
    assert!(!hit && t.contains("0 ran"), "{t}");
    assert!(run(d, &[]).0);

    // A data file a key reads by content: status must see it stale, not the memo's "cached".
    std::fs::write(d.join("rows.jsonl"), "{\"a\": 2}\n").unwrap();
    let st = text(&dag(d, &["status", "g.toml"]));
    assert!(st.contains("stale") && st.contains("rows"), "{st}");
    let (hit, t) = run(d, &[]);
    assert!(!hit && t.contains("3 ran"), "{t}");
    // The same content written again (a new mtime): checked in full, found cached.
    std::fs::write(d.join("rows.jsonl"), "{\"a\": 2}\n").unwrap();
    let (hit, t) = run(d, &[]);
    assert!(!hit && t.contains("0 ran"), "{t}");
    assert!(run(d, &[]).0);

    // The store: anything committed or removed since (here gc) voids the memo.
    let o = dag(d, &["gc", "--keep-runs", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let (hit, t) = run(d, &[]);
    assert!(!hit, "{t}");
}

#[test]
fn a_failed_run_or_a_step_pinned_to_tool_versions_is_never_memoised() {
    let dir = project();
    let d = dir.path();
    let failing = graph("x").replace("cat {in.rows}", "exit 1; cat {in.rows}");
    write_project(d, "g.toml", &failing);
    assert!(!dag(d, &["run", "g.toml", "-q"]).status.success());
    let o = dag(d, &["run", "g.toml", "-q"]);
    assert!(
        !o.status.success(),
        "the failure is met again: {}",
        text(&o)
    );

    // `versions` is key material the memo cannot check without running the program.
    let pinned = graph("x").replace(
        "outputs = { rows = \"dataset\" }",
        "outputs = { rows = \"dataset\" }\nversions = [\"sh\"]",
    );
    // `sh` answers no `--version` everywhere; a script that does.
    let tool = d.join("tool");
    std::fs::write(&tool, "#!/bin/sh\necho tool 1\n").unwrap();
    std::process::Command::new("chmod")
        .args(["+x", tool.to_str().unwrap()])
        .status()
        .unwrap();
    write_project(
        d,
        "g.toml",
        &pinned.replace("[\"sh\"]", &format!("[\"{}\"]", tool.display())),
    );
    run(d, &[]);
    assert!(!run(d, &[]).0);
}
