//! Randomized crash test of the store's writers, through the `dag` binary: `run`, `gc`,
//! `verify --repair` and `pin` are killed with SIGKILL at pseudo-random instants spread over
//! their duration, then the store must hold its invariants (`dag verify` checks every blob's
//! hash, every list's elements and every cache entry's outputs), an index rebuilt from the
//! journal must be whole too, and a rerun must succeed.
//!
//! The instants come from a fixed-seed generator, not a process-global RNG; where a kill
//! lands still varies with the machine's speed, so every instant must be safe. The number
//! of kills per writer is `DAG_CRASH_KILLS` (default 8, for the suite); the figures in
//! `docs/store.md` come from longer runs of this test.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{dag, text};

/// xorshift64*: the kill instants, reproducible from the seed.
struct Instants(u64);

impl Instants {
    fn next_fraction(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn kills() -> usize {
    std::env::var("DAG_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
}

fn chain(len: usize, salt: &str) -> String {
    let mut g = String::new();
    for i in 0..len {
        g.push_str(&format!(
            "[node.n{i}]\ntype = \"noop\"\nlabel = \"{salt}{i}\"\n"
        ));
        if i > 0 {
            g.push_str(&format!("inputs = {{ in = \"n{}.out\" }}\n", i - 1));
        }
    }
    g
}

/// A project whose store holds two runs of a 300-node graph (the first one garbage for
/// `gc --keep-runs 1`) and a pin.
fn template() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join(".git")).unwrap();
    std::fs::write(d.join("g.toml"), chain(300, "a")).unwrap();
    assert!(dag(d, &["run", "g.toml", "-q"]).status.success());
    assert!(dag(d, &["pin", "n10", "ten"]).status.success());
    std::fs::write(d.join("g.toml"), chain(300, "b")).unwrap();
    assert!(dag(d, &["run", "g.toml", "-q"]).status.success());
    dir
}

fn copy_project(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    let ok = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to.path())
        .status()
        .unwrap()
        .success();
    assert!(ok);
    to
}

/// Flips bytes in a few blobs, so `verify --repair` has work.
fn damage_some_blobs(d: &Path) {
    let mut blobs: Vec<_> = walk(&d.join(".dag/blobs"));
    blobs.sort();
    for b in blobs.iter().step_by(37) {
        let mut perm = std::fs::metadata(b).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        std::fs::set_permissions(b, perm).unwrap();
        std::fs::write(b, b"flipped").unwrap();
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The store is whole: verify finds nothing (after repairing what `prepare` damaged, when
/// the killed writer did not get to it), and the graph runs to success on it.
fn assert_whole(d: &Path, context: &str, damaged: bool) {
    let o = dag(d, &["verify"]);
    let s = text(&o);
    assert!(
        !s.contains("which is not in the store"),
        "{context}: a cache entry or list names a missing artifact:\n{s}"
    );
    if !o.status.success() {
        // Only the blobs flipped on purpose may show (corrupt, or already quarantined and
        // so missing); repair them and go on.
        assert!(damaged, "{context}:\n{s}");
        let problems = String::from_utf8_lossy(&o.stdout);
        assert!(
            problems
                .lines()
                .skip(1)
                .all(|l| l.starts_with("corrupt blob") || l.starts_with("missing blob")),
            "{context}:\n{s}"
        );
        assert!(
            dag(d, &["verify", "--repair"]).status.success(),
            "{context}"
        );
    }
    // The journal holds what the index holds: an index rebuilt from it (on a copy) is
    // whole too, and keeps the pin.
    let copy = copy_project(d);
    let o = dag(copy.path(), &["verify", "--rebuild-index"]);
    assert!(o.status.success(), "{context}: rebuild:\n{}", text(&o));
    let o = dag(copy.path(), &["verify"]);
    assert!(o.status.success(), "{context}: rebuilt:\n{}", text(&o));
    assert!(
        dag(copy.path(), &["show", "ten"]).status.success(),
        "{context}: the rebuilt index keeps the pin"
    );
    let o = dag(d, &["run", "g.toml", "-q"]);
    assert!(
        o.status.success(),
        "{context}: the rerun failed:\n{}",
        text(&o)
    );
    let o = dag(d, &["verify"]);
    assert!(
        o.status.success(),
        "{context}: after the rerun:\n{}",
        text(&o)
    );
    let o = dag(d, &["show", "ten"]);
    assert!(
        o.status.success(),
        "{context}: the pin survives:\n{}",
        text(&o)
    );
}

/// Kills `dag ARGS` at `kills()` instants spread over its uninterrupted duration.
fn crash_writer(
    name: &str,
    args: &[&str],
    prepare: &dyn Fn(&Path),
    damaged: bool,
    seed: u64,
) -> (usize, usize) {
    let base = template();
    // How long the writer takes uninterrupted, to spread the kills over it.
    let probe = copy_project(base.path());
    prepare(probe.path());
    let t0 = Instant::now();
    let o = dag(probe.path(), args);
    let full = t0.elapsed();
    assert!(o.status.success(), "{name} uninterrupted: {}", text(&o));
    let mut instants = Instants(seed);
    let (mut mid, mut after) = (0, 0);
    for k in 0..kills() {
        let p = copy_project(base.path());
        let d = p.path();
        prepare(d);
        // A little past the end too, so the last instants are covered.
        let at = full.mul_f64(1.1 * instants.next_fraction());
        let mut child = Command::new(env!("CARGO_BIN_EXE_dag"))
            .args(args)
            .current_dir(d)
            .env_remove("DAG_STORE")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while started.elapsed() < at {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        if child.try_wait().unwrap().is_none() {
            mid += 1;
        } else {
            after += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_whole(d, &format!("{name} killed at {at:?} (kill {k})"), damaged);
    }
    eprintln!(
        "{name}: {} kills, {mid} mid-operation, {after} after it ended; uninterrupted {full:?}",
        mid + after
    );
    (mid, after)
}

#[test]
fn killed_gc_never_breaks_the_store() {
    crash_writer("gc", &["gc", "--keep-runs", "1"], &|_| {}, false, 1);
}

#[test]
fn killed_run_never_breaks_the_store() {
    crash_writer(
        "run",
        &["run", "g.toml", "-q", "--set", "n0.label=c"],
        &|_| {},
        false,
        2,
    );
}

#[test]
fn killed_repair_never_breaks_the_store() {
    crash_writer(
        "verify --repair",
        &["verify", "--repair"],
        &damage_some_blobs,
        true,
        3,
    );
}

#[test]
fn killed_pin_never_breaks_the_store() {
    crash_writer("pin", &["pin", "n20", "twenty"], &|_| {}, false, 4);
}
