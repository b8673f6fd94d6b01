//! End-to-end tests through the `dag` binary, on the real data in `../shared/data`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn dag(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dag"))
        .args(args)
        .current_dir(dir)
        .env_remove("DAG_STORE")
        .output()
        .expect("dag runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn shared_data(rel: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(rel);
    assert!(p.exists(), "missing shared data {}", p.display());
    p
}

fn project(graph: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".git")).unwrap();
    std::fs::create_dir(dir.path().join("graphs")).unwrap();
    std::fs::write(dir.path().join("graphs/g.toml"), graph).unwrap();
    dir
}

fn speciesism_graph() -> String {
    format!(
        r#"
[node.statements]
type = "dataset"
path = "{}"
held_out = {{ speciesism_type = ["leather_animals", "racing_animals", "pet_animals"] }}

[node.balanced]
type = "balance"
inputs = {{ dataset = "statements.dataset" }}
label = "speciesism_type"

[node.hh]
type = "dataset"
path = "{}"
limit = 100

[node.power]
type = "dataset"
path = "{}"
select = ["question", "answer_matching_behavior"]

[node.gsm8k]
type = "dataset"
path = "{}"
held_out_fraction = 0.2
seed = 3

[profile.dev]
statements.limit = 60
"#,
        shared_data("speciesismbench/speciesism_benchmark_final.csv").display(),
        shared_data("hh-rlhf/harmless-base/test.jsonl.gz").display(),
        shared_data(
            "anthropic-advanced-ai-risk/human_generated_evals/power-seeking-inclination.jsonl"
        )
        .display(),
        shared_data("gsm8k/test.jsonl").display()
    )
}

#[test]
fn run_rerun_edit_status_show_lineage_log_export() {
    let p = project(&speciesism_graph());
    let d = p.path();
    let o = dag(d, &["run", "graphs/g.toml"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("5 ran, 0 cached"), "{}", text(&o));
    let o = dag(d, &["run", "graphs/g.toml"]);
    assert!(
        text(&o).contains("0 ran, 5 cached"),
        "a rerun does nothing: {}",
        text(&o)
    );
    // Real data sets read as expected.
    let meta = |t: &str| -> serde_json::Value {
        serde_json::from_slice::<serde_json::Value>(&dag(d, &["--json", "show", t]).stdout).unwrap()
            ["meta"]
            .clone()
    };
    assert_eq!(meta("hh")["rows"], 100);
    assert_eq!(
        meta("power")["columns"],
        serde_json::json!(["question", "answer_matching_behavior"])
    );
    let train = meta("gsm8k.dataset")["rows"].as_u64().unwrap();
    let test = meta("gsm8k.held_out")["rows"].as_u64().unwrap();
    assert_eq!(
        (train + test, test),
        (1319, 264),
        "a seeded 20% split of GSM8K's 1319 rows"
    );

    // Dev profile: statements and what depends on it rerun; hh does not.
    let o = dag(d, &["status", "graphs/g.toml", "--profile", "dev"]);
    let s = text(&o);
    assert!(
        s.contains("stale") && s.contains("param limit added (60)"),
        "{s}"
    );
    assert!(
        s.contains("pending") && s.contains("after statements"),
        "{s}"
    );
    let o = dag(d, &["run", "graphs/g.toml", "--profile", "dev"]);
    assert!(text(&o).contains("2 ran, 3 cached"), "{}", text(&o));

    // The held-out split by speciesism_type and the balance counts.
    let o = dag(d, &["--json", "show", "statements.held_out"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["kind"], "dataset");
    let o = dag(d, &["--json", "show", "balanced"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let after = v["meta"]["after"].as_object().unwrap();
    let counts: Vec<u64> = after.values().map(|c| c.as_u64().unwrap()).collect();
    assert!(
        counts.len() >= 2 && counts.iter().all(|&c| c == counts[0]),
        "{after:?}"
    );
    let o = dag(d, &["show", "balanced", "-n", "2"]);
    assert!(
        text(&o).contains("statement") && text(&o).contains("more rows"),
        "{}",
        text(&o)
    );

    let o = dag(d, &["lineage", "balanced"]);
    let s = text(&o);
    assert!(
        s.contains("from balanced (balance v2)") && s.contains("from statements (dataset v1)"),
        "{s}"
    );
    let o = dag(d, &["--json", "lineage", "statements", "--down"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["next"][0]["producer"]["instance"], "balanced");
    let o = dag(d, &["lineage", "balanced", "--format", "dot"]);
    assert!(text(&o).starts_with("digraph lineage"));

    let o = dag(d, &["log"]);
    assert_eq!(text(&o).lines().count(), 4, "header + 3 runs: {}", text(&o));
    let o = dag(d, &["diff", "last~1", "last"]);
    assert!(text(&o).contains("param limit: null -> 60"), "{}", text(&o));

    let o = dag(d, &["export", "balanced", "out.jsonl"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        std::fs::read_to_string(d.join("out.jsonl"))
            .unwrap()
            .lines()
            .count()
            > 1
    );
    let o = dag(d, &["verify"]);
    assert!(
        o.status.success() && text(&o).contains("checked"),
        "{}",
        text(&o)
    );
}

#[test]
fn dataset_and_balance_outputs_are_the_same_bytes_in_another_directory() {
    let (a, b) = (project(&speciesism_graph()), project(&speciesism_graph()));
    for p in [&a, &b] {
        let o = dag(p.path(), &["run", "graphs/g.toml", "--profile", "dev"]);
        assert!(o.status.success(), "{}", text(&o));
    }
    common::assert_same_outputs(a.path(), b.path());
}

#[test]
fn bad_graphs_exit_2_naming_file_line_and_fix() {
    let p = project("[node.a]\ntype = \"dataset\"\npaht = \"x.csv\"\n");
    let o = dag(p.path(), &["run", "graphs/g.toml"]);
    assert_eq!(o.status.code(), Some(2));
    let s = text(&o);
    assert!(
        s.contains("g.toml:3:1")
            && s.contains("unknown param `paht`")
            && s.contains("did you mean `path`?"),
        "{s}"
    );
    let p = project("[node.a]\ntype = \"dataset\"\npath = \"missing.csv\"\n");
    let s = text(&dag(p.path(), &["status", "graphs/g.toml"]));
    assert!(
        s.contains("g.toml:3:8") && s.contains("does not exist"),
        "{s}"
    );
}

#[test]
fn hints_are_printed_last_after_a_blank_line() {
    let p = project("[node.a]\ntype = \"noop\"\n");
    assert!(dag(p.path(), &["run", "graphs/g.toml"]).status.success());
    for (args, stderr) in [
        (
            &["log", "--run", "zzz"][..],
            "error: no run `zzz`\n\nhint: `dag log` lists runs\n",
        ),
        (
            &["show", "nosuch"],
            "error: `nosuch` is not a pin, an artifact digest, or a node output of a recorded run\n\n\
             hint: run `dag log` to see runs, or `dag status GRAPH` for node names\n",
        ),
        (
            &["nodes", "nosuch"],
            "error: no node type `nosuch`\n\nhint: `dag nodes` lists them\n",
        ),
    ] {
        let o = dag(p.path(), args);
        assert_eq!(o.status.code(), Some(2), "dag {args:?}");
        assert_eq!(String::from_utf8_lossy(&o.stderr), stderr, "dag {args:?}");
    }
}

#[test]
fn malformed_rows_fail_with_line_or_skip_with_count() {
    let p = project("[node.a]\ntype = \"dataset\"\npath = \"../rows.jsonl\"\n");
    std::fs::write(
        p.path().join("rows.jsonl"),
        "{\"a\": 1}\n{oops\n{\"a\": 2}\n",
    )
    .unwrap();
    let o = dag(p.path(), &["run", "graphs/g.toml"]);
    assert_eq!(o.status.code(), Some(1));
    let s = text(&o);
    assert!(
        s.contains("rows.jsonl` line 2: invalid JSON") && s.contains("on_error = \\\"skip\\\"")
            || s.contains("on_error = \"skip\""),
        "{s}"
    );
    let o = dag(
        p.path(),
        &["run", "graphs/g.toml", "--set", "a.on_error=skip"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value =
        serde_json::from_slice(&dag(p.path(), &["--json", "show", "a"]).stdout).unwrap();
    assert_eq!(v["meta"]["rows"], 2);
    assert_eq!(v["meta"]["skipped_rows"], 1);
}

#[test]
fn an_unbalanced_csv_quote_is_reported_at_its_line_not_merged_silently() {
    let p = project("[node.a]\ntype = \"dataset\"\npath = \"../rows.csv\"\n");
    let d = p.path();
    std::fs::write(
        d.join("rows.csv"),
        "q,a\n1,fine\n2,\"never closed\n3,lost\n4,lost too\n",
    )
    .unwrap();
    let o = dag(d, &["run", "graphs/g.toml"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let s = text(&o);
    assert!(
        s.contains("rows.csv` line 3: a quoted field runs over") && s.contains("multiline = true"),
        "{s}"
    );
    // Real multi-line text, declared: read as it is.
    let o = dag(d, &["run", "graphs/g.toml", "--set", "a.multiline=true"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value =
        serde_json::from_slice(&dag(d, &["--json", "show", "a"]).stdout).unwrap();
    assert_eq!(v["meta"]["rows"], 2);
}

/// The blob file of `target`, a file artifact.
fn blob_of(dir: &Path, target: &str) -> PathBuf {
    let v: serde_json::Value =
        serde_json::from_slice(&dag(dir, &["--json", "show", target]).stdout).unwrap();
    let hex = v["artifact"].as_str().unwrap();
    dir.join(".dag/blobs").join(&hex[..2]).join(&hex[2..])
}

#[test]
fn corrupted_blob_is_detected_repaired_and_recomputed() {
    let p = project(&speciesism_graph());
    let d = p.path();
    assert!(dag(d, &["run", "graphs/g.toml"]).status.success());
    let blob = blob_of(d, "balanced");
    let mut perm = std::fs::metadata(&blob).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&blob, perm).unwrap();
    std::fs::write(&blob, b"not what was stored").unwrap();
    let o = dag(d, &["show", "balanced"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("is corrupt") && text(&o).contains("dag verify --repair"),
        "{}",
        text(&o)
    );
    let o = dag(d, &["verify"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("corrupt blob"), "{}", text(&o));
    assert!(dag(d, &["verify", "--repair"]).status.success());
    let o = dag(d, &["run", "graphs/g.toml"]);
    assert!(
        text(&o).contains("1 ran, 4 cached"),
        "only the damaged node reruns: {}",
        text(&o)
    );
    assert!(dag(d, &["verify"]).status.success());
}

#[test]
fn a_deleted_output_blob_is_a_cache_miss_not_a_success() {
    let p = project(&speciesism_graph());
    let d = p.path();
    assert!(dag(d, &["run", "graphs/g.toml"]).status.success());
    std::fs::remove_file(blob_of(d, "balanced")).unwrap();
    let s = text(&dag(d, &["status", "graphs/g.toml"]));
    assert!(s.contains("missing from the store"), "{s}");
    let o = dag(d, &["run", "graphs/g.toml"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("1 ran, 4 cached"),
        "the node whose output vanished runs again: {}",
        text(&o)
    );
    assert!(dag(d, &["show", "balanced"]).status.success());
    assert!(dag(d, &["verify"]).status.success());
}

/// Runs `dag ARGS` in `dir` with stdout (and, with `close_stderr`, stderr) a pipe whose
/// reader is already gone, as in `dag log | head` once head has exited.
fn dag_into_closed_pipe(dir: &Path, args: &[&str], close_stderr: bool) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dag"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("DAG_STORE")
        .stdout(writer.try_clone().unwrap());
    if close_stderr {
        cmd.stderr(writer);
    }
    cmd.output().unwrap()
}

#[test]
fn a_closed_stdout_ends_quietly_and_never_aborts_a_run() {
    let p = project(&speciesism_graph());
    let d = p.path();
    let o = dag_into_closed_pipe(d, &["--json", "run", "graphs/g.toml"], false);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!text(&o).contains("panicked"), "{}", text(&o));
    let o = dag_into_closed_pipe(d, &["run", "graphs/g.toml", "--set", "hh.limit=50"], true);
    assert_eq!(o.status.code(), Some(0), "a closed stderr too");
    let o = dag(d, &["log"]);
    assert_eq!(
        text(&o).matches("succeeded").count(),
        2,
        "both runs finished and were recorded: {}",
        text(&o)
    );
    for args in [
        &["log"][..],
        &["show", "balanced", "-n", "50"],
        &["lineage", "balanced"],
        &["nodes"],
    ] {
        let o = dag_into_closed_pipe(d, args, false);
        assert_eq!(o.status.code(), Some(0), "`dag {args:?}`: {}", text(&o));
        assert!(
            !text(&o).contains("panicked"),
            "`dag {args:?}`: {}",
            text(&o)
        );
    }
}

#[test]
fn identical_outputs_of_two_nodes_keep_each_nodes_own_metadata_and_lineage() {
    let p = project("");
    let d = p.path();
    std::fs::write(d.join("one.csv"), "q,a\n1,2\n3,4\n5,6\n7,8\n9,10\n").unwrap();
    std::fs::write(d.join("two.csv"), "q,a\n1,2\n3,4\n5,6\n").unwrap();
    let graph = |node: &str, file: &str| {
        format!("[node.{node}]\ntype = \"dataset\"\npath = \"../{file}\"\nlimit = 2\n")
    };
    std::fs::write(d.join("graphs/a.toml"), graph("first", "one.csv")).unwrap();
    std::fs::write(d.join("graphs/b.toml"), graph("second", "two.csv")).unwrap();
    assert!(dag(d, &["run", "graphs/a.toml"]).status.success());
    assert!(dag(d, &["run", "graphs/b.toml"]).status.success());
    let show = |t: &str| -> serde_json::Value {
        serde_json::from_slice(&dag(d, &["--json", "show", t]).stdout).unwrap()
    };
    let (a, b) = (show("first"), show("second"));
    assert_eq!(
        a["artifact"], b["artifact"],
        "the same two rows, stored once"
    );
    assert_eq!(a["producer"]["instance"], "first");
    assert_eq!(b["producer"]["instance"], "second");
    assert_eq!(a["meta"]["source_rows"], 5);
    assert_eq!(b["meta"]["source_rows"], 3);
    let s = text(&dag(d, &["lineage", "second"]));
    assert!(
        s.contains("from second (dataset") && !s.contains("first"),
        "{s}"
    );
}

#[test]
fn a_second_process_is_told_which_pid_holds_the_store() {
    let p = project(&speciesism_graph());
    let held = dag_store::Store::open(&p.path().join(".dag")).unwrap();
    let o = dag(p.path(), &["run", "graphs/g.toml"]);
    assert_eq!(o.status.code(), Some(2));
    let s = text(&o);
    assert!(
        s.contains(&format!(
            "in use by another dag process (pid {})",
            std::process::id()
        )),
        "{s}"
    );
    // The store error's hint comes last, after the causes, once.
    let hint = "\n\nhint: wait for it to finish, or use another store with `--store DIR`\n";
    assert!(s.ends_with(hint) && s.matches("hint:").count() == 1, "{s}");
    drop(held);
    assert!(dag(p.path(), &["run", "graphs/g.toml"]).status.success());
}

/// A chain of `len` cheap noop nodes whose node `hold` holds the run once its output is
/// written (see noop's `hold_marker`), so a test interrupts the run at a known point.
fn held_chain(len: usize, hold: usize, marker: &Path) -> String {
    let mut g = String::new();
    for i in 0..len {
        g.push_str(&format!("[node.n{i}]\ntype = \"noop\"\nlabel = \"{i}\"\n"));
        if i > 0 {
            g.push_str(&format!("inputs = {{ in = \"n{}.out\" }}\n", i - 1));
        }
        if i == hold {
            g.push_str(&format!("hold_marker = \"{}\"\n", marker.display()));
        }
    }
    g
}

/// Starts `dag ARGS` in `dir` and returns once `marker` exists: the run is then held with
/// every node before the holding one committed.
fn start_until_marker(dir: &Path, args: &[&str], marker: &Path) -> std::process::Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dag"))
        .args(args)
        .current_dir(dir)
        .env_remove("DAG_STORE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    while !marker.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("dag exited ({status}) before holding the run");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child
}

#[test]
fn status_show_log_lineage_and_verify_read_the_store_while_a_run_holds_it() {
    let p = project("");
    let d = p.path();
    let marker = d.join("held");
    std::fs::write(d.join("graphs/g.toml"), held_chain(6, 3, &marker)).unwrap();
    let mut child = start_until_marker(d, &["run", "graphs/g.toml", "-q"], &marker);
    let ok = |args: &[&str]| {
        let o = dag(d, args);
        assert!(o.status.success(), "dag {args:?}: {}", text(&o));
        text(&o)
    };
    let s = ok(&["status", "graphs/g.toml"]);
    for line in ["cached     n2", "never run  n3", "pending    n4"] {
        assert!(s.contains(line), "what the run has committed so far: {s}");
    }
    assert!(ok(&["log"]).contains("running"));
    let v: serde_json::Value = serde_json::from_str(&ok(&["--json", "show", "n1"])).unwrap();
    assert_eq!(v["producer"]["instance"], "n1");
    let s = ok(&["lineage", "n2"]);
    assert!(s.contains("from n2") && s.contains("from n1"), "{s}");
    assert!(ok(&["verify"]).contains("checked 3 blobs"));
    // Writers still wait their turn, told who holds the store.
    let o = dag(d, &["gc", "--keep-runs", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains(&format!(
            "in use by another dag process (pid {})",
            child.id()
        )),
        "{}",
        text(&o)
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(ok(&["log"]).contains("interrupted"));
}

/// Runs `dag ARGS` in `dir` with `dir/.dag` mounted read-only (a private mount namespace:
/// root ignores file modes, so a read-only mount is how a test makes a store unwritable).
/// `None` where this machine cannot make mount namespaces.
fn dag_on_read_only_store(dir: &Path, args: &[&str]) -> Option<Output> {
    let store = dir.join(".dag");
    let probe = Command::new("unshare")
        .args(["-m", "true"])
        .stderr(std::process::Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("skipped: `unshare -m` is not permitted here");
        return None;
    }
    let script = r#"mount --bind -o ro "$1" "$1" && shift && exec "$@""#;
    let o = Command::new("unshare")
        .args(["-m", "sh", "-c", script, "sh"])
        .arg(&store)
        .arg(env!("CARGO_BIN_EXE_dag"))
        .args(args)
        .current_dir(dir)
        .env_remove("DAG_STORE")
        .output()
        .unwrap();
    Some(o)
}

#[test]
fn a_read_only_store_can_still_be_read() {
    let p = project(&speciesism_graph());
    let d = p.path();
    assert!(dag(d, &["run", "graphs/g.toml"]).status.success());
    let before = text(&dag(d, &["status", "graphs/g.toml"]));
    let Some(o) = dag_on_read_only_store(d, &["status", "graphs/g.toml"]) else {
        return;
    };
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(text(&o), before);
    for args in [
        &["log"][..],
        &["show", "statements"],
        &["lineage", "statements"],
        &["verify"],
    ] {
        let o = dag_on_read_only_store(d, args).unwrap();
        assert!(o.status.success(), "dag {args:?}: {}", text(&o));
    }
    let o = dag_on_read_only_store(d, &["run", "graphs/g.toml"]).unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("Read-only file system"), "{}", text(&o));
}

#[test]
fn kill_9_mid_run_then_rerun_completes_and_verify_is_clean() {
    let p = project("");
    let d = p.path();
    let marker = d.join("held");
    std::fs::write(d.join("graphs/g.toml"), held_chain(400, 200, &marker)).unwrap();
    let mut child = start_until_marker(d, &["run", "graphs/g.toml", "-q"], &marker);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let o = dag(d, &["verify"]);
    assert!(
        o.status.success() && !text(&o).contains("corrupt"),
        "{}",
        text(&o)
    );
    let o = dag(d, &["log", "-n", "3"]);
    assert!(
        text(&o).contains("interrupted"),
        "the killed run is recorded as interrupted: {}",
        text(&o)
    );
    // The hold changes nothing downstream: noop's output does not include it.
    let o = dag(
        d,
        &["run", "graphs/g.toml", "-q", "--set", "n200.hold_marker="],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("200 ran, 200 cached"),
        "the rerun reused exactly what the killed run committed: {}",
        text(&o)
    );
    assert!(dag(d, &["verify"]).status.success());
}

#[test]
fn a_damaged_index_is_rebuilt_from_the_journal_and_nothing_reruns() {
    let p = project(&speciesism_graph());
    let d = p.path();
    assert!(dag(d, &["run", "graphs/g.toml"]).status.success());
    assert!(dag(d, &["pin", "statements", "base"]).status.success());
    assert!(dag(d, &["gc", "--keep-runs", "1"]).status.success());
    assert!(
        dag(d, &["run", "graphs/g.toml", "--profile", "dev"])
            .status
            .success()
    );
    let log = text(&dag(d, &["log"]));
    let db = d.join(".dag/index/db");
    let mut bytes = std::fs::read(&db).unwrap();
    for b in &mut bytes[..64] {
        *b = !*b;
    }
    std::fs::write(&db, bytes).unwrap();
    let o = dag(d, &["status", "graphs/g.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("Run `dag verify --rebuild-index`"),
        "{}",
        text(&o)
    );

    let o = dag(d, &["verify", "--rebuild-index"]);
    let s = text(&o);
    assert!(o.status.success(), "{s}");
    assert!(
        s.contains("moved the index found to") && s.contains("2 run(s), 1 pin(s)"),
        "{s}"
    );
    assert!(
        s.contains("dropped 0 artifact(s)") && !s.contains("lost:"),
        "{s}"
    );
    assert_eq!(text(&dag(d, &["log"])), log, "the run history is back");
    assert!(
        dag(d, &["show", "base"]).status.success(),
        "the pin is back"
    );
    for profile in [&[][..], &["--profile", "dev"]] {
        let o = dag(d, &[&["run", "graphs/g.toml"][..], profile].concat());
        assert!(
            text(&o).contains(" 0 ran, "),
            "nothing reruns: {}",
            text(&o)
        );
    }
    assert!(dag(d, &["verify"]).status.success());
}

#[test]
fn gc_dry_run_reports_and_keeps_pins() {
    let p = project(&speciesism_graph());
    let d = p.path();
    assert!(dag(d, &["run", "graphs/g.toml"]).status.success());
    assert!(
        dag(d, &["pin", "statements", "base-statements"])
            .status
            .success()
    );
    assert!(
        dag(d, &["run", "graphs/g.toml", "--profile", "dev"])
            .status
            .success()
    );
    let o = dag(d, &["gc", "--dry-run", "--keep-runs", "1"]);
    assert!(text(&o).contains("would remove"), "{}", text(&o));
    let o = dag(d, &["gc", "--keep-runs", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        dag(d, &["show", "base-statements"]).status.success(),
        "pinned artifact survives gc"
    );
}

/// Serves `body` at any path on a loopback port for a bounded number of requests.
fn serve(body: &'static [u8], requests: usize) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let mut s = stream.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(body);
        }
    });
    port
}

#[test]
fn https_style_sources_are_pinned_by_checksum() {
    const CSV: &[u8] = b"question,answer\nWhat is 2+2?,4\nWhat is 3+3?,6\n";
    let port = serve(CSV, 2);
    let good = blake3::hash(CSV).to_hex().to_string();
    let graph = |sum: &str| {
        format!(
            "[node.q]\ntype = \"dataset\"\nurl = \"http://127.0.0.1:{port}/data/q.csv\"\nchecksum = \"blake3:{sum}\"\n"
        )
    };
    let p = project(&graph(&good));
    let o = dag(p.path(), &["run", "graphs/g.toml"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value =
        serde_json::from_slice(&dag(p.path(), &["--json", "show", "q"]).stdout).unwrap();
    assert_eq!(v["meta"]["rows"], 2);
    let p = project(&graph(&"0".repeat(64)));
    let o = dag(p.path(), &["run", "graphs/g.toml"]);
    assert_eq!(o.status.code(), Some(1));
    let s = text(&o);
    assert!(
        s.contains("does not match its checksum") && s.contains(&good),
        "{s}"
    );
    let p = project(&format!(
        "[node.q]\ntype = \"dataset\"\nurl = \"http://127.0.0.1:{port}/q.csv\"\n"
    ));
    let s = text(&dag(p.path(), &["run", "graphs/g.toml"]));
    assert!(s.contains("has no `checksum`"), "{s}");
}

/// Sends `signal` to a run held halfway through a chain of 2000 nodes: it must stop with
/// `code`, record the run as cancelled and keep the 1000 nodes it finished.
fn signal_stops_cleanly_and_keeps_finished_work(signal: &str, code: i32) {
    let p = project("");
    let d = p.path();
    let marker = d.join("held");
    std::fs::write(d.join("graphs/g.toml"), held_chain(2000, 1000, &marker)).unwrap();
    let child = start_until_marker(d, &["run", "graphs/g.toml", "-q"], &marker);
    Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(code), "{}", text(&o));
    assert!(text(&o).contains("stopping"), "{}", text(&o));
    assert!(dag(d, &["verify"]).status.success());
    let s = text(&dag(d, &["log", "-n", "1"]));
    assert!(s.contains("cancelled"), "{s}");
    let o = dag(
        d,
        &["run", "graphs/g.toml", "-q", "--set", "n1000.hold_marker="],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("1000 ran, 1000 cached"),
        "finished nodes were kept: {}",
        text(&o)
    );
}

#[test]
fn ctrl_c_stops_cleanly_and_keeps_finished_work() {
    signal_stops_cleanly_and_keeps_finished_work("-INT", 130);
}

#[test]
fn sigterm_stops_like_ctrl_c_and_exits_143() {
    signal_stops_cleanly_and_keeps_finished_work("-TERM", 143);
}
