//! User steps (`command` nodes), end to end through the `dag` binary: what enters the key
//! (and what does not), failures that store nothing, outputs checked against their
//! declaration, matrix and dynamic map, timeouts, and a kill -9 mid-command.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::{dag, run_statuses, text, write_project};

fn statuses(d: &Path) -> BTreeMap<String, String> {
    run_statuses(&dag(d, &["--json", "log", "-n", "1"]))
}

fn run_ok(d: &Path) -> BTreeMap<String, String> {
    let o = dag(d, &["run", "g.toml", "-q"]);
    assert!(o.status.success(), "{}", text(&o));
    statuses(d)
}

fn ran(s: &BTreeMap<String, String>) -> Vec<&str> {
    s.iter()
        .filter(|(_, v)| *v == "Ran")
        .map(|(k, _)| k.as_str())
        .collect()
}

/// The bytes of output `node.port` of the last run, through `dag show`.
fn shown(d: &Path, target: &str) -> String {
    let o = dag(d, &["show", target]);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A project directory holding `graph` as `g.toml`.
fn project(graph: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), "g.toml", graph);
    dir
}

/// Starts `dag run g.toml -q` in `d` and returns once its command has created `held`.
fn start_until_held(d: &Path) -> std::process::Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dag"))
        .args(["run", "g.toml", "-q"])
        .current_dir(d)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while !d.join("held").exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "dag exited before the hold"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child
}

/// Whether the process whose pid `pid_file` holds is gone, or a zombie (dead, its exit not
/// yet collected by whoever adopted it).
fn dead(pid_file: &Path) -> bool {
    let pid = std::fs::read_to_string(pid_file).unwrap();
    let state = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim().chars().next())
        })
        .flatten();
    matches!(state, None | Some('Z'))
}

#[test]
fn a_step_reruns_exactly_when_something_its_key_covers_changes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("scripts")).unwrap();
    std::fs::write(
        d.join("rows.jsonl"),
        "{\"text\": \"a b c\"}\n{\"text\": \"d e\"}\n",
    )
    .unwrap();
    std::fs::write(d.join("stopwords.txt"), "a\n").unwrap();
    std::fs::write(d.join("requirements.lock"), "tool==1\n").unwrap();
    // A program whose version the step pins.
    let tool = d.join("tool");
    std::fs::write(&tool, "#!/bin/sh\necho tool 1.0\n").unwrap();
    Command::new("chmod")
        .args(["+x", tool.to_str().unwrap()])
        .status()
        .unwrap();
    std::fs::write(
        d.join("scripts/count.sh"),
        "# counts the words of each row, less the stopwords\n\
         n=$(grep -o '\"text\": *\"[^\"]*\"' \"$DAG_IN_ROWS\" | wc -w)\n\
         s=$(wc -l < \"$1\")\n\
         printf '{\"words\": %s, \"stop\": %s, \"scale\": %s}\\n' \"$n\" \"$s\" \"$DAG_PARAM_SCALE\" > \"$DAG_OUT_COUNTS\"\n",
    )
    .unwrap();
    write_project(
        d,
        "g.toml",
        &format!(
            r#"
[node.rows]
type = "dataset"
path = "rows.jsonl"

[node.count]
type = "command"
script = "scripts/count.sh"
run = "sh {{script}} stopwords.txt"
inputs = {{ rows = "rows.dataset" }}
outputs = {{ counts = "dataset" }}
params = {{ scale = 2 }}
files = ["stopwords.txt"]
env = ["requirements.lock"]
versions = ["{}"]
timeout = 60

[node.after]
type = "noop"
inputs = {{ in = "count.counts" }}
"#,
            tool.display()
        ),
    );
    let s = run_ok(d);
    assert_eq!(ran(&s), ["after", "count", "rows"], "{s:?}");
    let counts = shown(d, "count.counts");
    assert!(counts.contains("scale") && counts.contains('2'), "{counts}");
    assert!(ran(&run_ok(d)).is_empty(), "a second run is all cached");

    // Run settings and an unchanged file (touched only) change nothing.
    let o = dag(
        d,
        &[
            "run",
            "g.toml",
            "-q",
            "--set",
            "count.timeout=120",
            "--set",
            "count.cpu=2",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        ran(&statuses(d)).is_empty(),
        "timeout and cpu are not in the key"
    );
    std::fs::write(d.join("stopwords.txt"), "a\n").unwrap();
    assert!(ran(&run_ok(d)).is_empty(), "same content, same key");

    // Each thing the key covers, changed alone, reruns the step (and only what reads it).
    type Edit<'a> = (&'a str, Box<dyn Fn() + 'a>);
    let edits: Vec<Edit> = vec![
        (
            "the script's content",
            Box::new(|| {
                let p = d.join("scripts/count.sh");
                let s = std::fs::read_to_string(&p).unwrap();
                std::fs::write(&p, format!("{s}# edited\n")).unwrap();
            }),
        ),
        (
            "a file it reads",
            Box::new(|| std::fs::write(d.join("stopwords.txt"), "a\nthe\n").unwrap()),
        ),
        (
            "the environment pin",
            Box::new(|| std::fs::write(d.join("requirements.lock"), "tool==2\n").unwrap()),
        ),
        (
            "the pinned program's version",
            Box::new(|| std::fs::write(&tool, "#!/bin/sh\necho tool 2.0\n").unwrap()),
        ),
        (
            "its param",
            Box::new(|| {
                let p = d.join("g.toml");
                let g = std::fs::read_to_string(&p).unwrap();
                std::fs::write(&p, g.replace("scale = 2", "scale = 3")).unwrap();
            }),
        ),
        (
            "the command line",
            Box::new(|| {
                let p = d.join("g.toml");
                let g = std::fs::read_to_string(&p).unwrap();
                std::fs::write(&p, g.replace("stopwords.txt\"\n", "stopwords.txt \"\n")).unwrap();
            }),
        ),
    ];
    for (what, edit) in edits {
        edit();
        let st = dag(d, &["status", "g.toml"]);
        assert!(text(&st).contains("stale"), "{what}: {}", text(&st));
        let s = run_ok(d);
        assert!(ran(&s).contains(&"count"), "{what} reruns the step: {s:?}");
        assert!(
            !ran(&s).contains(&"rows"),
            "{what}: upstream stays cached: {s:?}"
        );
    }
    // An input that changes reruns it too.
    std::fs::write(d.join("rows.jsonl"), "{\"text\": \"x\"}\n").unwrap();
    let s = run_ok(d);
    assert!(
        ran(&s).contains(&"count") && ran(&s).contains(&"rows"),
        "{s:?}"
    );
    let counts = shown(d, "count.counts");
    assert!(
        counts
            .lines()
            .any(|l| l.split_whitespace().next() == Some("1")),
        "one word now: {counts}"
    );
}

#[test]
fn a_failing_step_stores_nothing_reports_its_error_output_and_lets_other_branches_finish() {
    let dir = project(
        r#"
[node.bad]
type = "command"
run = "echo partial > {out.out}; echo 'line one' >&2; echo 'boom: the input has no header' >&2; exit 3"
outputs = { out = "file" }

[node.after_bad]
type = "command"
run = "cat {in.x} > {out.out}"
inputs = { x = "bad.out" }
outputs = { out = "file" }

[node.good]
type = "command"
run = "echo fine > {out.out}"
outputs = { out = "file" }
"#,
    );
    let d = dir.path();
    let o = dag(d, &["run", "g.toml", "-q"]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("exited with exit status: 3"), "{t}");
    assert!(
        t.contains("boom: the input has no header"),
        "the tail of stderr: {t}"
    );
    let log = t
        .split_whitespace()
        .map(|w| w.trim_end_matches(';'))
        .find(|w| w.ends_with("bad.log"))
        .unwrap_or_else(|| panic!("the log's path: {t}"));
    assert!(std::fs::read_to_string(log).unwrap().contains("line one"));
    let s = statuses(d);
    assert_eq!(s["good"], "Ran", "{s:?}");
    assert!(s["bad"].starts_with("Failed"), "{s:?}");
    assert!(s["after_bad"].starts_with("Skipped"), "{s:?}");
    // Nothing of the failed attempt was stored: it is still never run.
    let st = text(&dag(d, &["status", "g.toml"]));
    assert!(st.contains("never run") && st.contains("bad"), "{st}");
}

#[test]
fn outputs_are_checked_against_their_declaration() {
    let cases = [
        (
            "run = \"true\"\noutputs = { table = \"dataset\" }",
            "did not write its output `table`",
        ),
        (
            "run = \"echo not json > {out.table}\"\noutputs = { table = \"dataset\" }",
            "its line 1 is not a JSON object",
        ),
        (
            "run = \"rmdir {out.plot}; echo x > {out.plot}\"\noutputs = { plot = { kind = \"report\", dir = true } }",
            "wrote a file, not a directory, as its output `plot`",
        ),
        (
            "run = \"mkdir {out.m}\"\noutputs = { m = \"metrics\" }",
            "wrote a directory, not a file, as its output `m`",
        ),
        (
            "run = \"echo '{' > {out.m}\"\noutputs = { m = \"metrics\" }",
            "is declared metrics, but it is not JSON",
        ),
    ];
    for (body, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write_project(
            d,
            "g.toml",
            &format!("[node.step]\ntype = \"command\"\n{body}\n"),
        );
        let o = dag(d, &["run", "g.toml", "-q"]);
        assert!(!o.status.success(), "{body}");
        assert!(text(&o).contains(expected), "{body}: {}", text(&o));
        assert!(
            text(&dag(d, &["status", "g.toml"])).contains("never run"),
            "nothing stored for {body}"
        );
    }
}

#[test]
fn mistakes_in_a_step_are_reported_at_load_with_their_line() {
    let cases = [
        (
            "run = \"cat {in.data} > {out.out}\"\noutputs = { out = \"file\" }",
            "`run` names the input `data`, which this step does not declare",
            "g.toml:4:",
        ),
        (
            "run = \"echo > {out.out}\"\noutputs = { out = \"datset\" }",
            "unknown kind `datset`",
            "did you mean `dataset`?",
        ),
        (
            "run = \"echo > {out.out}\"\noutputs = { out = \"file\" }\nparams = { run = 1 }",
            "`run` of node `step` is a param of `command` itself",
            "g.toml:6:",
        ),
        (
            "outputs = { out = \"file\" }",
            "a command step needs `run` or `script`",
            "hint:",
        ),
        (
            "run = \"echo {param.n} > {out.out}\"\noutputs = { out = \"file\" }",
            "`run` names the param `n`",
            "params = { n = ... }",
        ),
        (
            "run = \"true\"\nscript = \"missing.py\"\noutputs = { out = \"file\" }",
            "which does not exist",
            "g.toml:5:",
        ),
    ];
    for (body, expected, also) in cases {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write_project(
            d,
            "g.toml",
            &format!("\n[node.step]\ntype = \"command\"\n{body}\n"),
        );
        let o = dag(d, &["status", "g.toml"]);
        assert_eq!(o.status.code(), Some(2), "{body}: {}", text(&o));
        assert!(text(&o).contains(expected), "{body}: {}", text(&o));
        assert!(text(&o).contains(also), "{body}: {}", text(&o));
    }
}

#[test]
fn steps_fan_out_over_a_matrix_and_over_the_elements_of_a_list() {
    let dir = project(
        r#"
# A step that writes a list of checkpoints (one directory each), and one step per element.
[node.train]
type = "command"
run = "for s in 10 20 30; do mkdir -p {out.ckpts}/step-$s; echo $s > {out.ckpts}/step-$s/weights; done"
outputs = { ckpts = "checkpoints" }

[node.score]
type = "command"
run = "echo $(cat {in.ckpt}/weights) x {param.scale} > {out.score}"
inputs = { ckpt = "train.ckpts[*]" }
outputs = { score = "file" }
matrix = { scale = [1, 2] }
"#,
    );
    let d = dir.path();
    let s = run_ok(d);
    let scored: Vec<&String> = s.keys().filter(|k| k.starts_with("score")).collect();
    assert_eq!(scored.len(), 6, "3 checkpoints x 2 scales: {s:?}");
    let one = s
        .keys()
        .find(|k| k.starts_with("score") && k.contains("step-20") && k.contains("scale=2"))
        .unwrap_or_else(|| panic!("an instance per element and scale: {s:?}"));
    assert!(shown(d, &format!("{one}.score")).contains("20 x 2"));
    assert!(ran(&run_ok(d)).is_empty());
    // One more scale: only its three instances run.
    let g = std::fs::read_to_string(d.join("g.toml")).unwrap();
    std::fs::write(d.join("g.toml"), g.replace("[1, 2]", "[1, 2, 3]")).unwrap();
    assert_eq!(ran(&run_ok(d)).len(), 3, "{:?}", statuses(d));
}

#[test]
fn a_step_past_its_timeout_is_killed_with_everything_it_started() {
    let dir = project(
        r#"
[node.slow]
type = "command"
run = "sleep 300 & echo $! > child.pid; wait"
outputs = { out = "file" }
timeout = 1
"#,
    );
    let d = dir.path();
    let o = dag(d, &["run", "g.toml", "-q"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("ran past its timeout of 1 s"),
        "{}",
        text(&o)
    );
    assert!(
        dead(&d.join("child.pid")),
        "the command's own child was killed with it"
    );
}

#[test]
fn kill_9_mid_command_then_rerun_keeps_what_finished_and_completes() {
    // `held` first, then wait for `release`: the test kills dag in between.
    let dir = project(
        r#"
[node.first]
type = "command"
run = "echo one > {out.out}"
outputs = { out = "file" }

[node.second]
type = "command"
run = "echo $$ > second.pid; touch held; while [ ! -e release ]; do sleep 0.02; done; cat {in.x} > {out.out}; echo two >> {out.out}"
inputs = { x = "first.out" }
outputs = { out = "file" }
"#,
    );
    let d = dir.path();
    let mut child = start_until_held(d);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // The orphaned command is still waiting; stop it as its user would.
    let pid = std::fs::read_to_string(d.join("second.pid")).unwrap();
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", pid.trim())])
        .status();
    std::fs::write(d.join("release"), "").unwrap();
    let s = run_ok(d);
    assert_eq!(
        s["first"], "Cached",
        "what finished before the kill is kept: {s:?}"
    );
    assert_eq!(s["second"], "Ran");
    assert_eq!(
        shown(d, "second.out").trim_end().lines().last(),
        Some("two")
    );
    let v = dag(d, &["verify"]);
    assert!(v.status.success(), "{}", text(&v));
}

#[test]
fn ctrl_c_mid_command_kills_its_process_group_and_stores_nothing_of_it() {
    let dir = project(
        r#"
[node.slow]
type = "command"
run = "sleep 300 & echo $! > child.pid; touch held; wait; echo done > {out.out}"
outputs = { out = "file" }
"#,
    );
    let d = dir.path();
    let mut child = start_until_held(d);
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "Ctrl-C's exit status");
    assert!(
        dead(&d.join("child.pid")),
        "the command's background process was killed with it"
    );
    let s = statuses(d);
    assert_eq!(s["slow"], "Cancelled", "{s:?}");
    assert!(text(&dag(d, &["status", "g.toml"])).contains("never run"));
}
