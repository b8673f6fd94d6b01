//! End-to-end tests through the `dag` binary, on the real data in `../shared/data`.

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
        s.contains("from balanced (balance v1)") && s.contains("from statements (dataset v1)"),
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
fn corrupted_blob_is_detected_repaired_and_recomputed() {
    let p = project(&speciesism_graph());
    let d = p.path();
    assert!(dag(d, &["run", "graphs/g.toml"]).status.success());
    let v: serde_json::Value =
        serde_json::from_slice(&dag(d, &["--json", "show", "balanced"]).stdout).unwrap();
    let hex = v["artifact"].as_str().unwrap();
    let blob = d.join(".dag/blobs").join(&hex[..2]).join(&hex[2..]);
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
    drop(held);
    assert!(dag(p.path(), &["run", "graphs/g.toml"]).status.success());
}

#[test]
fn kill_9_mid_run_then_rerun_completes_and_verify_is_clean() {
    // A long chain of cheap nodes: a kill lands between or inside commits.
    let mut g = String::from("[node.n0]\ntype = \"noop\"\nlabel = \"0\"\n");
    for i in 1..400 {
        g.push_str(&format!(
            "[node.n{i}]\ntype = \"noop\"\nlabel = \"{i}\"\ninputs = {{ in = \"n{}.out\" }}\n",
            i - 1
        ));
    }
    let p = project(&g);
    let d = p.path();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dag"))
        .args(["run", "graphs/g.toml", "-q"])
        .current_dir(d)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let o = dag(d, &["run", "graphs/g.toml", "-q"]);
    assert!(o.status.success(), "{}", text(&o));
    let s = text(&o);
    let ran: usize = s
        .split(": ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(400);
    assert!(
        ran < 400,
        "the rerun reused what the killed run committed: {s}"
    );
    let o = dag(d, &["verify"]);
    assert!(
        o.status.success() && !text(&o).contains("corrupt"),
        "{}",
        text(&o)
    );
    assert!(text(&dag(d, &["run", "graphs/g.toml"])).contains("0 ran, 400 cached"));
    let o = dag(d, &["log", "-n", "3"]);
    assert!(
        text(&o).contains("running"),
        "the killed run is recorded as unfinished: {}",
        text(&o)
    );
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

#[test]
fn ctrl_c_stops_cleanly_and_keeps_finished_work() {
    let mut g = String::from("[node.n0]\ntype = \"noop\"\n");
    for i in 1..2000 {
        g.push_str(&format!(
            "[node.n{i}]\ntype = \"noop\"\nlabel = \"{i}\"\ninputs = {{ in = \"n{}.out\" }}\n",
            i - 1
        ));
    }
    let p = project(&g);
    let d = p.path();
    let child = Command::new(env!("CARGO_BIN_EXE_dag"))
        .args(["run", "graphs/g.toml", "-q"])
        .current_dir(d)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(800));
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    assert!(text(&o).contains("stopping"), "{}", text(&o));
    assert!(dag(d, &["verify"]).status.success());
    let s = text(&dag(d, &["log", "-n", "1"]));
    assert!(s.contains("cancelled"), "{s}");
    let o = dag(d, &["run", "graphs/g.toml", "-q"]);
    assert!(o.status.success());
    assert!(
        !text(&o).contains(" 0 cached"),
        "finished nodes were kept: {}",
        text(&o)
    );
}
