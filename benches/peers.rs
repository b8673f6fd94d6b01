//! Peers benchmark: `dag`, GNU make and Snakemake on the same synthetic DAG, one run, one
//! table side by side with ratios and the targets.
//!
//! The DAG is the peers' (`shared/bench/peers/dag.py`): N stages in layers of about sqrt(N),
//! each reading 1-2 upstream outputs and writing `{ echo TAG; cat INPUTS | cksum; }`; the
//! one-stage edit changes the middle stage's tag to `s<e>-edited`, so that stage and its
//! subtree must rerun (720 stages at N = 10,000). Columns:
//!   dag       the DAG as `command` nodes doing exactly the peers' shell work
//!   dag-noop  the DAG as `noop` nodes (`gen_dag.py`): the engine alone
//!   make      GNU make -j2 (`gen_make.py`), plus `sh all.sh`: the N commands, no engine
//!   snakemake one wildcard rule (`gen_smk.py wild`), `snakemake -c2`
//! Every figure is a whole process timed from outside (wall clock around it, peak RSS from
//! `/usr/bin/time -f %M`); no-op and status: 1 warm-up + 3 runs, median, as the peers' bench.
//!
//! Run: `cargo bench --bench peers`. Environment:
//!   DAG_BENCH_N=10000         stages
//!   DAG_BENCH_TOOLS=dag,dag-noop,make,smk
//!   DAG_PEERS_DIR             the peers' folder (default <manifest>/../shared/bench/peers)
//!   DAG_BIN                   the dag binary (default: the one cargo built)
//!   PEERS_VENV                venv holding `snakemake` (default $DAG_CACHE/venv-peers)
//!   DAG_BENCH_J1=1            also a first run with `dag run -j1` on a fresh copy
//!   DAG_BENCH_100K=1          also `dag plan` of the 100,000-node noop graph, empty store
//!   DAG_BENCH_LIMIT=1800      seconds one process may take (then killed, rc 124)
//!   DAG_BENCH_KEEP=1          keep the work folder (its path is printed)
//! Exits 1 when a dag column is wrong (a failed step, a wrong rerun count, outputs unlike
//! make's, no `command` node type in the binary); targets missed are only reported.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Tool {
    Dag,
    DagNoop,
    Make,
    Smk,
}

const COLUMNS: [Tool; 4] = [Tool::Dag, Tool::DagNoop, Tool::Make, Tool::Smk];

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Dag => "dag",
            Tool::DagNoop => "dag-noop",
            Tool::Make => "make",
            Tool::Smk => "snakemake",
        }
    }
}

/// One whole process, timed from outside.
struct Measured {
    wall: Duration,
    rss_kib: Option<u64>,
    rc: i32,
    stdout: String,
    stderr: String,
}

impl Measured {
    fn ok(&self) -> bool {
        self.rc == 0
    }
    fn secs(&self) -> f64 {
        self.wall.as_secs_f64()
    }
    fn mib(&self) -> Option<f64> {
        self.rss_kib.map(|k| k as f64 / 1024.0)
    }
    /// A short account of a failure: exit status and the end of stderr.
    fn failure(&self) -> String {
        let what = match self.rc {
            124 | 137 => "killed at the time limit (DAG_BENCH_LIMIT)".to_string(),
            rc => format!("exit status {rc}"),
        };
        let tail: Vec<&str> = self
            .stderr
            .lines()
            .chain(self.stdout.lines())
            .filter(|l| !l.trim().is_empty())
            .collect();
        let tail = tail[tail.len().saturating_sub(6)..].join("\n    ");
        format!("{what}\n    {tail}")
    }
}

/// A cell of the table: its text and, for ratios and targets, its number.
#[derive(Clone)]
struct Cell {
    text: String,
    value: Option<f64>,
}

fn num(v: f64, decimals: usize) -> Cell {
    Cell {
        text: format!("{v:.decimals$}"),
        value: Some(v),
    }
}

fn text(s: impl Into<String>) -> Cell {
    Cell {
        text: s.into(),
        value: None,
    }
}

/// Seconds with a precision that suits their size.
fn secs(v: f64) -> Cell {
    num(v, if v < 10.0 { 3 } else { 1 })
}

fn ms(v: Duration) -> Cell {
    let v = v.as_secs_f64() * 1e3;
    num(v, if v < 100.0 { 1 } else { 0 })
}

fn mib(m: &Measured) -> Cell {
    match m.mib() {
        Some(v) => num(v, 1),
        None => text("?"),
    }
}

struct Ctx {
    n: usize,
    peers: PathBuf,
    dag_bin: PathBuf,
    limit: u64,
    logs: PathBuf,
    root: PathBuf,
    /// The DAG: each stage's upstream stages (`dag.build`).
    deps: Vec<Vec<usize>>,
    edit: usize,
    expected: usize,
    descendants: Vec<usize>,
    cells: BTreeMap<(&'static str, Tool), Cell>,
    notes: Vec<String>,
    /// Things that make the dag columns wrong: the bench exits 1.
    errors: Vec<String>,
}

impl Ctx {
    fn set(&mut self, row: &'static str, tool: Tool, cell: Cell) {
        self.cells.insert((row, tool), cell);
    }

    /// Runs `cmd` in `dir` under `/usr/bin/time -f %M` and `timeout`, stdout and stderr to
    /// files under logs/ (read back for counting).
    fn timed(&self, dir: &Path, tag: &str, cmd: &[&str], path_prefix: Option<&Path>) -> Measured {
        let out = self.logs.join(format!("{tag}.out"));
        let err = self.logs.join(format!("{tag}.err"));
        let tfile = self.logs.join(format!("{tag}.time"));
        let mut c = Command::new("/usr/bin/time");
        c.arg("-f")
            .arg("%M")
            .arg("-o")
            .arg(&tfile)
            .args(["timeout", "-k", "30", &self.limit.to_string()])
            .args(cmd)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap());
        if let Some(p) = path_prefix {
            let path = std::env::var("PATH").unwrap_or_default();
            c.env("PATH", format!("{}:{path}", p.display()));
        }
        let t = Instant::now();
        let status = c
            .status()
            .unwrap_or_else(|e| panic!("cannot start /usr/bin/time (GNU time) for {cmd:?}: {e}"));
        let wall = t.elapsed();
        // GNU time writes "Command exited with non-zero status N" first on a failure.
        let rss_kib = std::fs::read_to_string(&tfile)
            .ok()
            .and_then(|s| s.lines().last().and_then(|l| l.trim().parse().ok()));
        Measured {
            wall,
            rss_kib,
            rc: status.code().unwrap_or(128),
            stdout: std::fs::read_to_string(&out).unwrap_or_default(),
            stderr: std::fs::read_to_string(&err).unwrap_or_default(),
        }
    }

    /// 1 warm-up + 3 runs; the median run (by wall clock), and the stages each counted run
    /// executed (by `count`), and the first failure if any.
    fn median3(
        &self,
        dir: &Path,
        tag: &str,
        cmd: &[&str],
        path_prefix: Option<&Path>,
        count: fn(&Measured) -> Option<usize>,
    ) -> Result<(Measured, Vec<Option<usize>>), Measured> {
        let mut runs = vec![];
        for k in 0..4 {
            let m = self.timed(dir, &format!("{tag}-{k}"), cmd, path_prefix);
            if !m.ok() {
                return Err(m);
            }
            if k > 0 {
                runs.push(m);
            }
        }
        let counts = runs.iter().map(count).collect();
        runs.sort_by_key(|m| m.wall);
        Ok((runs.swap_remove(1), counts))
    }

    fn python(&self, dir: &Path, tag: &str, args: &[&str]) -> Measured {
        let mut cmd = vec!["python3"];
        cmd.extend_from_slice(args);
        let m = self.timed(dir, tag, &cmd, None);
        assert!(
            m.ok(),
            "`python3 {}` failed: {}",
            args.join(" "),
            m.failure()
        );
        m
    }

    fn peer(&self, script: &str) -> String {
        self.peers.join(script).display().to_string()
    }

    fn fresh(&self, name: &str) -> PathBuf {
        let d = self.root.join(name);
        assert!(!d.exists(), "{} exists", d.display());
        d
    }

    /// Shows a wrong stage count loudly.
    fn count_cell(&mut self, row: &'static str, tool: Tool, got: Option<usize>, want: usize) {
        let cell = match got {
            Some(c) if c == want => text(format!("{c}")),
            Some(c) => {
                if matches!(tool, Tool::Dag | Tool::DagNoop) {
                    self.errors.push(format!(
                        "{}: {row}: {c} stages, expected {want}",
                        tool.name()
                    ));
                }
                text(format!("!! {c} != {want}"))
            }
            None => text("?"),
        };
        self.set(row, tool, cell);
    }

    fn step_failed(&mut self, tool: Tool, step: &str, m: &Measured) {
        let msg = format!("{}: {step} failed: {}", tool.name(), m.failure());
        println!("  {msg}");
        if matches!(tool, Tool::Dag | Tool::DagNoop) {
            self.errors.push(msg);
        } else {
            self.notes.push(msg);
        }
    }
}

/// `run ID: X ran, Y cached, ...` on dag's stderr.
fn dag_ran(m: &Measured) -> Option<usize> {
    m.stderr.lines().chain(m.stdout.lines()).find_map(|l| {
        let rest = l.trim().strip_prefix("run ")?;
        let (_, counts) = rest.split_once(": ")?;
        counts.split_once(" ran,")?.0.trim().parse().ok()
    })
}

/// make echoes each recipe it runs: bench.sh's `^\{ echo s[0-9]+`.
fn make_ran(m: &Measured) -> Option<usize> {
    Some(
        m.stdout
            .lines()
            .filter(|l| {
                l.strip_prefix("{ echo s")
                    .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
            })
            .count(),
    )
}

/// bench.sh's `^(local)?rule stage:` over Snakemake's output.
fn smk_ran(m: &Measured) -> Option<usize> {
    Some(
        m.stdout
            .lines()
            .chain(m.stderr.lines())
            .filter(|l| l.starts_with("rule stage:") || l.starts_with("localrule stage:"))
            .count(),
    )
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

fn first_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let s = String::from_utf8_lossy(&o.stdout).to_string()
                + &String::from_utf8_lossy(&o.stderr);
            s.lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_else(|| "not found".into())
}

/// The DAG's shape from the peers' own `dag.py` (its seeded random stream is Python's).
fn load_shape(peers: &Path, n: usize) -> (Vec<Vec<usize>>, usize) {
    let script = format!(
        "import json, sys; sys.path.insert(0, sys.argv[1]); import dag; \
         w, d = dag.build({n}); print(json.dumps({{'deps': d, 'edit': dag.edit_stage({n})}}))"
    );
    let o = Command::new("python3")
        .args(["-c", &script])
        .arg(peers)
        .output()
        .expect("python3 runs");
    assert!(
        o.status.success(),
        "dag.py: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("dag.py's JSON");
    let deps = v["deps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            d.as_array()
                .unwrap()
                .iter()
                .map(|j| j.as_u64().unwrap() as usize)
                .collect()
        })
        .collect();
    (deps, v["edit"].as_u64().unwrap() as usize)
}

fn descendants(deps: &[Vec<usize>], root: usize) -> Vec<usize> {
    let mut kids = vec![vec![]; deps.len()];
    for (i, ds) in deps.iter().enumerate() {
        for &j in ds {
            kids[j].push(i);
        }
    }
    let mut seen = vec![false; deps.len()];
    seen[root] = true;
    let mut stack = vec![root];
    while let Some(k) = stack.pop() {
        for &c in &kids[k] {
            if !seen[c] {
                seen[c] = true;
                stack.push(c);
            }
        }
    }
    (0..deps.len()).filter(|&i| seen[i]).collect()
}

/// The DAG as `command` nodes running exactly the peers' shell commands.
fn command_graph(deps: &[Vec<usize>], edit: Option<usize>) -> String {
    let mut g = String::with_capacity(deps.len() * 150);
    for (i, ds) in deps.iter().enumerate() {
        let tag = if edit == Some(i) {
            format!("s{i}-edited")
        } else {
            format!("s{i}")
        };
        g.push_str(&format!("[node.s{i}]\ntype = \"command\"\n"));
        if ds.is_empty() {
            g.push_str(&format!(
                "run = \"{{ echo {tag}; cat data/seed.txt | cksum; }} > {{out.out}}\"\n\
                 files = [\"data/seed.txt\"]\n"
            ));
        } else {
            let ins: Vec<String> = ds.iter().map(|j| format!("\"s{j}.out\"")).collect();
            g.push_str(&format!(
                "run = \"{{ echo {tag}; cat {{in.in}} | cksum; }} > {{out.out}}\"\n\
                 inputs = {{ in = [{}] }}\n",
                ins.join(", ")
            ));
        }
        g.push_str("outputs = { out = \"file\" }\n\n");
    }
    g
}

fn write_command_dir(dir: &Path, deps: &[Vec<usize>], edit: Option<usize>) {
    std::fs::create_dir_all(dir.join(".git")).unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/seed.txt"), "seed\n").unwrap();
    std::fs::write(dir.join("g.toml"), command_graph(deps, edit)).unwrap();
}

/// Stage number -> the bytes of its output.
type Outputs = BTreeMap<usize, Vec<u8>>;

/// What make's folder gives the dag column: the bare `sh all.sh` seconds and the outputs
/// after the first run and after the edit.
struct Reference {
    sh: f64,
    first: Outputs,
    edit: Outputs,
}

fn read_outputs(dir: &Path, stages: &[usize]) -> Outputs {
    stages
        .iter()
        .map(|&i| {
            let p = dir.join(format!("out/s{i}.txt"));
            let b = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (i, b)
        })
        .collect()
}

/// make's column; also the bare `sh all.sh` and the reference outputs for the dag check.
fn run_make(
    ctx: &mut Ctx,
    measure: bool,
    first_samples: &[usize],
    edit_samples: &[usize],
) -> Option<Reference> {
    let t = Tool::Make;
    let w = ctx.fresh("make");
    let ws = w.display().to_string();
    println!(
        "make: generating ({} the sh all.sh baseline{})",
        if measure { "with" } else { "only" },
        if measure {
            ""
        } else {
            " and reference outputs"
        }
    );
    ctx.python(
        &ctx.root.clone(),
        "make-gen",
        &[&ctx.peer("gen_make.py"), &ctx.n.to_string(), &ws],
    );
    let sh = ctx.timed(&w, "make-plain-sh", &["sh", "all.sh"], None);
    if !sh.ok() {
        ctx.step_failed(t, "sh all.sh", &sh);
        return None;
    }
    println!("  sh all.sh: {:.2} s", sh.secs());
    ctx.set("plain", t, secs(sh.secs()));
    ctx.set("plain_rss", t, mib(&sh));
    let ref_first = read_outputs(&w, first_samples);
    let e = ctx.edit;
    let n = ctx.n.to_string();
    if !measure {
        // Reference outputs after the edit: the edited recipe, its output deleted.
        ctx.python(
            &w,
            "make-edit",
            &[&ctx.peer("gen_make.py"), "--edit", &n, &ws],
        );
        std::fs::remove_file(w.join(format!("out/s{e}.txt"))).unwrap();
        let m = ctx.timed(&w, "make-ref-edit", &["make", "-j2"], None);
        assert!(m.ok(), "make (reference outputs) failed: {}", m.failure());
        let ref_edit = read_outputs(&w, edit_samples);
        return Some(Reference {
            sh: sh.secs(),
            first: ref_first,
            edit: ref_edit,
        });
    }
    for f in std::fs::read_dir(w.join("out")).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let first = ctx.timed(&w, "make-first", &["make", "-j2"], None);
    if !first.ok() {
        ctx.step_failed(t, "first run", &first);
        return None;
    }
    println!("  first run: {:.2} s", first.secs());
    ctx.set("first", t, secs(first.secs()));
    ctx.set("first_rss", t, mib(&first));
    let nn = ctx.n;
    ctx.count_cell("first_n", t, make_ran(&first), nn);
    ctx.set(
        "per_node",
        t,
        num((first.secs() - sh.secs()) / ctx.n as f64 * 1e3, 3),
    );
    match ctx.median3(&w, "make-noop", &["make", "-j2"], None, make_ran) {
        Ok((m, counts)) => {
            ctx.set("noop", t, ms(m.wall));
            ctx.set("noop_rss", t, mib(&m));
            if counts.iter().any(|c| *c != Some(0)) {
                ctx.notes
                    .push(format!("make: the no-op runs ran {counts:?} stages"));
            }
        }
        Err(m) => ctx.step_failed(t, "no-op run", &m),
    }
    match ctx.median3(&w, "make-status", &["make", "-n"], None, |_| None) {
        Ok((m, _)) => {
            ctx.set("status", t, ms(m.wall));
            ctx.set("status_rss", t, mib(&m));
        }
        Err(m) => ctx.step_failed(t, "make -n", &m),
    }
    ctx.python(
        &w,
        "make-edit",
        &[&ctx.peer("gen_make.py"), "--edit", &n, &ws],
    );
    let ed = ctx.timed(&w, "make-edit-run", &["make", "-j2"], None);
    if !ed.ok() {
        ctx.step_failed(t, "run after the edit", &ed);
        return None;
    }
    let c = make_ran(&ed).unwrap();
    ctx.set(
        "edit_n",
        t,
        text(if c == ctx.expected {
            format!("{c}")
        } else {
            format!("{c} (misses it)")
        }),
    );
    ctx.set("edit", t, secs(ed.secs()));
    ctx.set("edit_rss", t, mib(&ed));
    let after = ctx.timed(&w, "make-after-edit", &["make", "-j2"], None);
    let expected = ctx.expected;
    ctx.count_cell("after_noop", t, make_ran(&after), 0);
    // make ignores recipe edits: the make user's way is to delete the target.
    std::fs::remove_file(w.join(format!("out/s{e}.txt"))).unwrap();
    let rm = ctx.timed(&w, "make-edit-rm", &["make", "-j2"], None);
    if !rm.ok() {
        ctx.step_failed(t, "run after rm", &rm);
        return None;
    }
    ctx.count_cell("edit_rm_n", t, make_ran(&rm), expected);
    ctx.set("edit_rm", t, secs(rm.secs()));
    ctx.set("edit_rm_rss", t, mib(&rm));
    let ref_edit = read_outputs(&w, edit_samples);
    println!(
        "  no-op, status, edit: done (edit reran {c}; after rm: {:?})",
        make_ran(&rm).unwrap()
    );
    Some(Reference {
        sh: sh.secs(),
        first: ref_first,
        edit: ref_edit,
    })
}

fn find_snakemake() -> Result<(PathBuf, PathBuf), String> {
    let venv = std::env::var_os("PEERS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("DAG_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/dag")
                });
            cache.join("venv-peers")
        });
    let bin = venv.join("bin");
    if bin.join("snakemake").is_file() {
        return Ok((bin.join("snakemake"), bin));
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        if dir.join("snakemake").is_file() {
            return Ok((dir.join("snakemake"), dir));
        }
    }
    Err(format!(
        "no snakemake in {} nor on PATH (python3 -m venv {v} && {v}/bin/pip install \
         snakemake==9.27.1, or set PEERS_VENV)",
        bin.display(),
        v = venv.display()
    ))
}

fn run_smk(ctx: &mut Ctx) {
    let t = Tool::Smk;
    let (smk, bin) = match find_snakemake() {
        Ok(x) => x,
        Err(why) => {
            println!("snakemake: SKIPPED: {why}");
            ctx.set("first", t, text("skipped"));
            ctx.notes.push(format!("snakemake column skipped: {why}"));
            return;
        }
    };
    let s = smk.display().to_string();
    let version = first_line(&s, &["--version"]);
    println!("snakemake {version} ({s})");
    ctx.notes.push(format!("snakemake {version} ({s})"));
    let w = ctx.fresh("smk");
    let ws = w.display().to_string();
    let n = ctx.n.to_string();
    ctx.python(
        &ctx.root.clone(),
        "smk-gen",
        &[&ctx.peer("gen_smk.py"), "wild", &n, &ws],
    );
    let b = Some(bin.as_path());
    println!("  first run (about 400 s at N = 10,000)...");
    let first = ctx.timed(&w, "smk-first", &[&s, "-c2"], b);
    if !first.ok() {
        ctx.step_failed(t, "first run", &first);
        return;
    }
    println!("  first run: {:.1} s", first.secs());
    ctx.set("first", t, secs(first.secs()));
    ctx.set("first_rss", t, mib(&first));
    let nn = ctx.n;
    ctx.count_cell("first_n", t, smk_ran(&first), nn);
    if let Some(sh) = ctx.cells.get(&("plain", Tool::Make)).and_then(|c| c.value) {
        ctx.set(
            "per_node",
            t,
            num((first.secs() - sh) / ctx.n as f64 * 1e3, 3),
        );
    }
    match ctx.median3(&w, "smk-noop", &[&s, "-c2"], b, smk_ran) {
        Ok((m, counts)) => {
            ctx.set("noop", t, ms(m.wall));
            ctx.set("noop_rss", t, mib(&m));
            if counts.iter().any(|c| *c != Some(0)) {
                ctx.notes
                    .push(format!("snakemake: the no-op runs ran {counts:?} stages"));
            }
        }
        Err(m) => ctx.step_failed(t, "no-op run", &m),
    }
    match ctx.median3(&w, "smk-status", &[&s, "-c2", "-n"], b, |_| None) {
        Ok((m, _)) => {
            ctx.set("status", t, ms(m.wall));
            ctx.set("status_rss", t, mib(&m));
        }
        Err(m) => ctx.step_failed(t, "dry run", &m),
    }
    ctx.python(
        &w,
        "smk-edit",
        &[&ctx.peer("gen_smk.py"), "--edit", "wild", &n, &ws],
    );
    let ed = ctx.timed(&w, "smk-edit-run", &[&s, "-c2"], b);
    if !ed.ok() {
        ctx.step_failed(t, "run after the edit", &ed);
        return;
    }
    let expected = ctx.expected;
    ctx.count_cell("edit_n", t, smk_ran(&ed), expected);
    ctx.set("edit", t, secs(ed.secs()));
    ctx.set("edit_rss", t, mib(&ed));
    let after = ctx.timed(&w, "smk-after-edit", &[&s, "-c2"], b);
    ctx.count_cell("after_noop", t, smk_ran(&after), 0);
    println!("  no-op, dry run, edit: done");
}

fn has_command_node(ctx: &Ctx) -> Result<(), String> {
    let o = Command::new(&ctx.dag_bin)
        .arg("nodes")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", ctx.dag_bin.display()))?;
    let listed = String::from_utf8_lossy(&o.stdout)
        .lines()
        .any(|l| l.split_whitespace().next() == Some("command"));
    if listed {
        Ok(())
    } else {
        Err(format!(
            "the dag binary {} has no `command` node type (`dag nodes` does not list it): \
             the `dag` column needs it; build a dag that has it, or leave `dag` out of \
             DAG_BENCH_TOOLS",
            ctx.dag_bin.display()
        ))
    }
}

/// `dag export NODE.out` of each stage, compared byte for byte with make's file.
fn check_outputs(ctx: &Ctx, dir: &Path, phase: &str, reference: &Outputs) -> Result<usize, String> {
    let bin = ctx.dag_bin.display().to_string();
    let mut mismatched = vec![];
    for (&i, want) in reference {
        let dest = ctx.logs.join(format!("export-{phase}-s{i}"));
        let target = format!("s{i}.out");
        let d = dest.display().to_string();
        let m = ctx.timed(
            dir,
            &format!("dag-export-{phase}-s{i}"),
            &[&bin, "export", &target, &d, "--graph", "g.toml"],
            None,
        );
        if !m.ok() {
            return Err(format!("`dag export {target}` failed: {}", m.failure()));
        }
        let got = if dest.is_dir() {
            let files: Vec<PathBuf> = walk_files(&dest);
            if files.len() != 1 {
                return Err(format!(
                    "`dag export {target}` wrote a folder of {} files, not the file",
                    files.len()
                ));
            }
            std::fs::read(&files[0]).unwrap()
        } else {
            std::fs::read(&dest).map_err(|e| format!("{}: {e}", dest.display()))?
        };
        if &got != want {
            mismatched.push(format!(
                "s{i}: dag {:?} vs make {:?}",
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(want)
            ));
        }
    }
    if mismatched.is_empty() {
        Ok(reference.len())
    } else {
        Err(format!(
            "{} of {} outputs differ from make's: {}",
            mismatched.len(),
            reference.len(),
            mismatched.join("; ")
        ))
    }
}

fn walk_files(p: &Path) -> Vec<PathBuf> {
    let mut v = vec![];
    for e in std::fs::read_dir(p).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            v.extend(walk_files(&p));
        } else {
            v.push(p);
        }
    }
    v
}

/// The dag columns: `dag` (command nodes) or `dag-noop` (noop nodes).
fn run_dag(ctx: &mut Ctx, t: Tool, sh: Option<f64>, refs: Option<&Reference>) {
    let bin = ctx.dag_bin.display().to_string();
    let w = ctx.fresh(t.name());
    let ws = w.display().to_string();
    let n = ctx.n.to_string();
    let tag = t.name().to_string();
    if t == Tool::Dag {
        if let Err(why) = has_command_node(ctx) {
            println!("dag: FAILED: {why}");
            ctx.set("first", t, text("FAILED"));
            ctx.errors.push(format!("dag column: {why}"));
            return;
        }
        write_command_dir(&w, &ctx.deps, None);
    } else {
        ctx.python(
            &ctx.root.clone(),
            "dag-noop-gen",
            &[&ctx.peer("gen_dag.py"), &n, &ws],
        );
    }
    println!("{tag}: first run");
    let first = ctx.timed(
        &w,
        &format!("{tag}-first"),
        &[&bin, "run", "g.toml", "-q"],
        None,
    );
    if !first.ok() {
        ctx.step_failed(t, "first run", &first);
        ctx.set("first", t, text("FAILED"));
        return;
    }
    println!("  first run: {:.2} s", first.secs());
    ctx.set("first", t, secs(first.secs()));
    ctx.set("first_rss", t, mib(&first));
    let nn = ctx.n;
    ctx.count_cell("first_n", t, dag_ran(&first), nn);
    if t == Tool::Dag {
        if let Some(sh) = sh {
            ctx.set(
                "per_node",
                t,
                num((first.secs() - sh) / ctx.n as f64 * 1e3, 3),
            );
        }
    } else {
        // No shell work: the whole first run is engine.
        let mut c = num(first.secs() / ctx.n as f64 * 1e3, 3);
        c.text.push('*');
        ctx.set("per_node", t, c);
    }
    if t == Tool::Dag
        && let Some(r) = refs
    {
        match check_outputs(ctx, &w, "first", &r.first) {
            Ok(k) => {
                println!("  outputs after the first run: {k} of {k} equal to make's");
                ctx.set("check_first", t, text(format!("{k}/{k} equal")));
            }
            Err(why) => {
                println!("  outputs after the first run: {why}");
                ctx.set("check_first", t, text("!! DIFFER"));
                ctx.errors.push(format!("dag first run: {why}"));
            }
        }
    }
    match ctx.median3(
        &w,
        &format!("{tag}-noop"),
        &[&bin, "run", "g.toml", "-q"],
        None,
        dag_ran,
    ) {
        Ok((m, counts)) => {
            ctx.set("noop", t, ms(m.wall));
            ctx.set("noop_rss", t, mib(&m));
            if counts.iter().any(|c| *c != Some(0)) {
                ctx.errors.push(format!(
                    "{tag}: the no-op runs ran {counts:?} stages, not 0"
                ));
            }
        }
        Err(m) => ctx.step_failed(t, "no-op run", &m),
    }
    match ctx.median3(
        &w,
        &format!("{tag}-status"),
        &[&bin, "status", "g.toml"],
        None,
        |_| None,
    ) {
        Ok((m, _)) => {
            ctx.set("status", t, ms(m.wall));
            ctx.set("status_rss", t, mib(&m));
        }
        Err(m) => ctx.step_failed(t, "status", &m),
    }
    if t == Tool::Dag {
        std::fs::write(w.join("g.toml"), command_graph(&ctx.deps, Some(ctx.edit))).unwrap();
    } else {
        ctx.python(
            &w,
            "dag-noop-edit",
            &[&ctx.peer("gen_dag.py"), "--edit", &n, &ws],
        );
    }
    let ed = ctx.timed(
        &w,
        &format!("{tag}-edit"),
        &[&bin, "run", "g.toml", "-q"],
        None,
    );
    if !ed.ok() {
        ctx.step_failed(t, "run after the edit", &ed);
        return;
    }
    let expected = ctx.expected;
    ctx.count_cell("edit_n", t, dag_ran(&ed), expected);
    ctx.set("edit", t, secs(ed.secs()));
    ctx.set("edit_rss", t, mib(&ed));
    let after = ctx.timed(
        &w,
        &format!("{tag}-after-edit"),
        &[&bin, "run", "g.toml", "-q"],
        None,
    );
    if after.ok() {
        ctx.count_cell("after_noop", t, dag_ran(&after), 0);
    } else {
        ctx.step_failed(t, "no-op after the edit", &after);
    }
    println!(
        "  no-op, status, edit: done (edit reran {:?})",
        dag_ran(&ed)
    );
    if t == Tool::Dag {
        if let Some(r) = refs {
            match check_outputs(ctx, &w, "edit", &r.edit) {
                Ok(k) => {
                    println!("  outputs after the edit: {k} of {k} equal to make's");
                    ctx.set("check_edit", t, text(format!("{k}/{k} equal")));
                }
                Err(why) => {
                    println!("  outputs after the edit: {why}");
                    ctx.set("check_edit", t, text("!! DIFFER"));
                    ctx.errors.push(format!("dag after the edit: {why}"));
                }
            }
        }
        if env_flag("DAG_BENCH_J1") {
            let w1 = ctx.fresh("dag-j1");
            write_command_dir(&w1, &ctx.deps, None);
            println!("dag: first run with -j1 (fresh copy)");
            let m = ctx.timed(
                &w1,
                "dag-j1-first",
                &[&bin, "run", "g.toml", "-q", "-j1"],
                None,
            );
            if m.ok() {
                ctx.set("first_j1", t, secs(m.secs()));
                if let Some(sh) = sh {
                    ctx.set(
                        "per_node_j1",
                        t,
                        num((m.secs() - sh) / ctx.n as f64 * 1e3, 3),
                    );
                }
            } else {
                ctx.step_failed(t, "first run -j1", &m);
            }
        }
    }
}

fn plan_100k(ctx: &mut Ctx) {
    let t = Tool::DagNoop;
    let w = ctx.fresh("dag-noop-100k");
    let ws = w.display().to_string();
    println!("dag-noop: 100,000-node plan on an empty store");
    ctx.python(
        &ctx.root.clone(),
        "dag-100k-gen",
        &[&ctx.peer("gen_dag.py"), "100000", &ws],
    );
    let bin = ctx.dag_bin.display().to_string();
    let m = ctx.timed(&w, "dag-100k-plan", &[&bin, "plan", "g.toml"], None);
    if m.ok() {
        println!("  {:.2} s", m.secs());
        ctx.set("plan100k", t, secs(m.secs()));
        ctx.set("plan100k_rss", t, mib(&m));
    } else {
        ctx.step_failed(t, "100,000-node plan", &m);
    }
}

struct Row {
    key: &'static str,
    label: &'static str,
    /// dag/make and dag/snakemake make sense (times and memory).
    ratio: bool,
    target: &'static str,
    /// The column the target is judged on, and the most its value may be.
    met: Option<(Tool, f64)>,
}

const fn row(key: &'static str, label: &'static str, ratio: bool) -> Row {
    Row {
        key,
        label,
        ratio,
        target: "",
        met: None,
    }
}

fn rows() -> Vec<Row> {
    vec![
        row(
            "plain",
            "plain `sh all.sh`: the N commands, no engine (s)",
            false,
        ),
        row("plain_rss", "  peak RSS (MiB)", false),
        row("first", "first full run (s)", true),
        row("first_rss", "  peak RSS (MiB)", true),
        row("first_n", "  stages run (expected N)", false),
        Row {
            target: "<= 0.3 ms",
            met: Some((Tool::Dag, 0.3)),
            ..row(
                "per_node",
                "overhead per executed node (ms): (first - sh)/N",
                true,
            )
        },
        row("first_j1", "first full run, dag run -j1 (s)", false),
        Row {
            target: "<= 0.3 ms",
            met: Some((Tool::Dag, 0.3)),
            ..row("per_node_j1", "overhead per executed node, -j1 (ms)", false)
        },
        row(
            "check_first",
            "outputs byte-equal to make's, first run",
            false,
        ),
        Row {
            target: "<= 100 ms",
            met: Some((Tool::Dag, 100.0)),
            ..row("noop", "no-op run, median of 3 (ms)", true)
        },
        row("noop_rss", "  peak RSS (MiB)", true),
        Row {
            target: "<= 100 ms",
            met: Some((Tool::Dag, 100.0)),
            ..row("status", "status / dry-run, median of 3 (ms)", true)
        },
        row("status_rss", "  peak RSS (MiB)", true),
        Row {
            target: "exactly the expected",
            ..row("edit_n", "one-stage edit: stages rerun", false)
        },
        Row {
            target: "<= 1.5 s",
            met: Some((Tool::Dag, 1.5)),
            ..row("edit", "one-stage edit: time (s)", true)
        },
        row("edit_rss", "  peak RSS (MiB)", true),
        row(
            "edit_rm_n",
            "edit by deleting its output (make's way): reruns",
            false,
        ),
        row("edit_rm", "  time (s)", false),
        row("edit_rm_rss", "  peak RSS (MiB)", false),
        row(
            "after_noop",
            "no-op after the edit: stages run (expected 0)",
            false,
        ),
        row(
            "check_edit",
            "outputs byte-equal to make's, after the edit",
            false,
        ),
        Row {
            target: "<= 1 s",
            met: Some((Tool::DagNoop, 1.0)),
            ..row(
                "plan100k",
                "100,000-node `dag plan`, empty store (s)",
                false,
            )
        },
        row("plan100k_rss", "  peak RSS (MiB)", false),
    ]
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => {
            let r = a / b;
            if r >= 10.0 {
                format!("{r:.0}x")
            } else if r >= 0.1 {
                format!("{r:.2}x")
            } else {
                format!("{r:.3}x")
            }
        }
        _ => String::new(),
    }
}

fn print_table(ctx: &Ctx, tools: &[Tool]) {
    let all = rows();
    let mut lines: Vec<Vec<String>> = vec![vec![
        "measurement".into(),
        "dag".into(),
        "dag-noop".into(),
        "make".into(),
        "snakemake".into(),
        "dag/make".into(),
        "dag/smk".into(),
        "target".into(),
        "met".into(),
    ]];
    for r in &all {
        let get = |t: Tool| ctx.cells.get(&(r.key, t));
        if COLUMNS.iter().all(|&t| get(t).is_none()) {
            continue;
        }
        let mut line = vec![r.label.to_string()];
        for t in COLUMNS {
            line.push(match get(t) {
                Some(c) => c.text.clone(),
                None if tools.contains(&t) => "-".into(),
                None => "".into(),
            });
        }
        let v = |t: Tool| get(t).and_then(|c| c.value);
        if r.ratio {
            // make's own edit run does nothing (mtime-only): dag's edit is set against
            // make's rerun after deleting the edited output.
            let make = match r.key {
                "edit" => ctx.cells.get(&("edit_rm", Tool::Make)),
                "edit_rss" => ctx.cells.get(&("edit_rm_rss", Tool::Make)),
                _ => get(Tool::Make),
            };
            line.push(ratio(v(Tool::Dag), make.and_then(|c| c.value)));
            line.push(ratio(v(Tool::Dag), v(Tool::Smk)));
        } else {
            line.push(String::new());
            line.push(String::new());
        }
        let target = if r.key == "edit_n" {
            format!("exactly {}", ctx.expected)
        } else {
            r.target.to_string()
        };
        line.push(target);
        // Judged on the dag column; without one (no `command` node yet), on dag-noop's
        // where the figure means the same (not the per-node overhead).
        let judged = |t: Tool| {
            if t == Tool::Dag && get(Tool::Dag).is_none() && !r.key.starts_with("per_node") {
                (Tool::DagNoop, " (noop)")
            } else {
                (t, "")
            }
        };
        let met = if r.key == "edit_n" {
            let (t, which) = judged(Tool::Dag);
            match get(t) {
                Some(c) if c.text == ctx.expected.to_string() => format!("yes{which}"),
                Some(_) => format!("NO{which}"),
                None => String::new(),
            }
        } else {
            match r.met {
                Some((t, most)) => {
                    let (t, which) = judged(t);
                    match v(t) {
                        Some(x) if x <= most => format!("yes{which}"),
                        Some(_) => format!("NO{which}"),
                        None => String::new(),
                    }
                }
                None => String::new(),
            }
        };
        line.push(met);
        lines.push(line);
    }
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|k| lines.iter().map(|l| l[k].chars().count()).max().unwrap())
        .collect();
    for (j, l) in lines.iter().enumerate() {
        let mut s = String::new();
        for (k, cell) in l.iter().enumerate() {
            let pad = widths[k] - cell.chars().count();
            if k == 0 {
                s.push_str(cell);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str("  ");
                s.push_str(&" ".repeat(pad));
                s.push_str(cell);
            }
        }
        println!("{}", s.trim_end());
        if j == 0 {
            println!(
                "{}",
                "-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1))
            );
        }
    }
}

fn main() {
    let n: usize = std::env::var("DAG_BENCH_N")
        .ok()
        .map(|s| s.parse().expect("DAG_BENCH_N: a number of stages"))
        .unwrap_or(10_000);
    let peers = std::env::var_os("DAG_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/peers"));
    assert!(
        peers.join("dag.py").is_file(),
        "the peers' benchmark folder (dag.py, gen_make.py, gen_smk.py, gen_dag.py) is not at \
         {}: set DAG_PEERS_DIR to it",
        peers.display()
    );
    let peers = peers.canonicalize().unwrap();
    let dag_bin = std::env::var_os("DAG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_dag")));
    let tools_var =
        std::env::var("DAG_BENCH_TOOLS").unwrap_or_else(|_| "dag,dag-noop,make,smk".into());
    let mut tools = vec![];
    for name in tools_var
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        tools.push(match name {
            "dag" => Tool::Dag,
            "dag-noop" => Tool::DagNoop,
            "make" => Tool::Make,
            "smk" | "snakemake" => Tool::Smk,
            other => {
                panic!("DAG_BENCH_TOOLS: unknown tool `{other}` (known: dag, dag-noop, make, smk)")
            }
        });
    }
    tools.sort();
    tools.dedup();
    let limit = std::env::var("DAG_BENCH_LIMIT")
        .ok()
        .map(|s| s.parse().expect("DAG_BENCH_LIMIT: seconds"))
        .unwrap_or(1800);
    assert!(
        Path::new("/usr/bin/time").is_file(),
        "/usr/bin/time (GNU time) is needed for peak RSS"
    );

    let shape_line = first_line(
        "python3",
        &[&peers.join("dag.py").display().to_string(), &n.to_string()],
    );
    let expected: usize = shape_line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("expected_rerun="))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("`python3 dag.py {n}` printed `{shape_line}`"));
    let (deps, edit) = load_shape(&peers, n);
    let desc = descendants(&deps, edit);

    let tmp = tempfile::Builder::new()
        .prefix("dag-peers-")
        .tempdir()
        .unwrap();
    let root = tmp.path().to_path_buf();
    let logs = root.join("logs");
    std::fs::create_dir(&logs).unwrap();
    let mut ctx = Ctx {
        n,
        peers: peers.clone(),
        dag_bin: dag_bin.clone(),
        limit,
        logs,
        root: root.clone(),
        deps,
        edit,
        expected,
        descendants: desc,
        cells: BTreeMap::new(),
        notes: vec![],
        errors: vec![],
    };

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "dag peers benchmark: N = {n}, {} cores, load average {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("  dag.py: {shape_line}");
    if ctx.descendants.len() != expected {
        println!(
            "  !! the bench's own descendant count ({}) differs from dag.py's ({expected})",
            ctx.descendants.len()
        );
    }
    println!(
        "  dag: {} ({})",
        first_line(&dag_bin.display().to_string(), &["--version"]),
        dag_bin.display()
    );
    println!("  make: {}", first_line("make", &["--version"]));
    println!("  peers: {}", peers.display());
    println!("  work: {}", root.display());
    println!(
        "  tools: {}\n",
        tools
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(", ")
    );

    // Stages whose outputs the dag column is checked on: 20 spread over the DAG; after
    // the edit those again, the edited stage and 5 of its descendants.
    let mut first_samples: Vec<usize> = (0..20).map(|k| k * (n - 1) / 19).collect();
    first_samples.dedup();
    let mut edit_samples = first_samples.clone();
    let d = &ctx.descendants;
    edit_samples.extend((0..6).map(|k| d[k * (d.len() - 1) / 5]));
    edit_samples.sort();
    edit_samples.dedup();

    let need_make = tools.contains(&Tool::Make) || tools.contains(&Tool::Dag);
    let made = if need_make {
        run_make(
            &mut ctx,
            tools.contains(&Tool::Make),
            &first_samples,
            &edit_samples,
        )
    } else {
        None
    };
    let sh = made.as_ref().map(|m| m.sh);
    if tools.contains(&Tool::DagNoop) {
        run_dag(&mut ctx, Tool::DagNoop, sh, None);
    }
    if env_flag("DAG_BENCH_100K") {
        plan_100k(&mut ctx);
    }
    if tools.contains(&Tool::Dag) {
        let refs = made.as_ref();
        if refs.is_none() {
            ctx.notes
                .push("dag outputs not checked: make's reference outputs are missing".into());
        }
        run_dag(&mut ctx, Tool::Dag, sh, refs);
    }
    if tools.contains(&Tool::Smk) {
        run_smk(&mut ctx);
    }

    println!(
        "\nN = {n} stages; one-stage edit of s{edit}: {expected} stages must rerun \
         (python3 dag.py {n})\n"
    );
    print_table(&ctx, &tools);
    println!(
        "\nEach figure is one whole process (wall clock around /usr/bin/time and timeout), \
         peak RSS by /usr/bin/time; make -j2, snakemake -c2, dag with its default -j ({} \
         cores).",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!(
        "Status / dry-run: `dag status g.toml`, `make -n`, `snakemake -c2 -n`. make is \
         mtime-only: it misses the recipe edit; its way is to delete the output, and the \
         edit rows' dag/make set dag's edit against that rerun."
    );
    if ctx.cells.contains_key(&("per_node", Tool::DagNoop)) {
        println!("* dag-noop executes no shell work: its first run / N, the engine alone.");
    }
    println!(
        "Load average at the end: {} (the machine may be shared: figures move with it).",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    for note in &ctx.notes {
        println!("note: {note}");
    }
    if env_flag("DAG_BENCH_KEEP") {
        let kept = tmp.keep();
        println!("work folder kept: {}", kept.display());
    } else {
        drop(tmp); // before `exit`, which runs no destructors
    }
    if !ctx.errors.is_empty() {
        println!();
        for e in &ctx.errors {
            println!("!! {e}");
        }
        std::process::exit(1);
    }
}
