//! Engine benchmark: no-op run and status on generated layered graphs, planning after
//! one edit, store throughput, hashing throughput, startup. Prints each figure beside
//! its target. Run: `cargo bench --bench engine` (`DAG_BENCH_HASH_GIB=2` by default).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn dag(dir: &Path, args: &[&str]) -> Duration {
    let t = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_dag"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("dag runs");
    let e = t.elapsed();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    e
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn layered(n: usize, width: usize, first_label: &str) -> String {
    let mut g = String::with_capacity(n * 90);
    for i in 0..n {
        let layer = i / width;
        g.push_str(&format!("[node.n{i}]\ntype = \"noop\"\n"));
        if i == 0 {
            g.push_str(&format!("label = \"{first_label}\"\n"));
        }
        if layer > 0 {
            let a = (layer - 1) * width + i % width;
            let b = (layer - 1) * width + (i + 1) % width;
            g.push_str(&format!(
                "inputs = {{ in = [\"n{a}.out\", \"n{b}.out\"] }}\n"
            ));
        }
    }
    g
}

fn row(what: &str, got: String, target: &str) {
    println!("{what:<44} {got:>14}   target {target}");
}

fn main() {
    println!(
        "dag engine benchmark ({} cores)\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let t = Instant::now();
    let help: Vec<Duration> = (0..7).map(|_| dag(Path::new("."), &["--help"])).collect();
    let _ = t;
    row(
        "dag --help",
        format!("{:.1} ms", median(help).as_secs_f64() * 1e3),
        "< 20 ms",
    );
    let sizes: &[usize] = if std::env::var_os("DAG_BENCH_100K").is_some() {
        &[1_000, 10_000, 100_000]
    } else {
        &[1_000, 10_000]
    };
    for &n in sizes {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join(".git")).unwrap();
        std::fs::write(d.join("g.toml"), layered(n, 100, "a")).unwrap();
        let plan_cold = dag(d, &["plan", "g.toml"]);
        row(
            &format!("{n} nodes: plan on an empty store"),
            format!("{:.0} ms", plan_cold.as_secs_f64() * 1e3),
            if n == 100_000 { "seconds" } else { "-" },
        );
        let first = dag(d, &["run", "g.toml", "-q"]);
        row(
            &format!("{n} nodes: first run (executes all)"),
            format!("{:.2} s", first.as_secs_f64()),
            "-",
        );
        let noop = median((0..5).map(|_| dag(d, &["run", "g.toml", "-q"])).collect());
        row(
            &format!("{n} nodes: no-op run"),
            format!("{:.0} ms", noop.as_secs_f64() * 1e3),
            if n == 10_000 { "< 200 ms" } else { "-" },
        );
        let status = median((0..5).map(|_| dag(d, &["status", "g.toml"])).collect());
        row(
            &format!("{n} nodes: status"),
            format!("{:.0} ms", status.as_secs_f64() * 1e3),
            if n == 10_000 { "< 200 ms" } else { "-" },
        );
        std::fs::write(d.join("g.toml"), layered(n, 100, "b")).unwrap();
        let plan = median((0..5).map(|_| dag(d, &["plan", "g.toml"])).collect());
        row(
            &format!("{n} nodes: plan after editing one root"),
            format!("{:.0} ms", plan.as_secs_f64() * 1e3),
            "seconds at 100k",
        );
    }
    // Store throughput on small artifacts.
    let dir = tempfile::tempdir().unwrap();
    let store = dag_store::Store::open(&dir.path().join(".dag")).unwrap();
    let count = 5_000;
    let t = Instant::now();
    let mut digests = vec![];
    for i in 0..count {
        let body = format!("{{\"row\": {i}, \"pad\": \"{}\"}}", "x".repeat(1000));
        let p = store
            .stage_bytes(body.as_bytes(), "dataset", serde_json::Value::Null)
            .unwrap();
        digests.push(p.digest);
        store.commit_artifacts(vec![p]).unwrap();
    }
    let put = t.elapsed();
    let t = Instant::now();
    for d in &digests {
        store.read(d).unwrap();
    }
    let get = t.elapsed();
    row(
        "store put, 1 KiB artifacts (durable)",
        format!("{:.0}/s", count as f64 / put.as_secs_f64()),
        "-",
    );
    row(
        "store get, 1 KiB artifacts (verified)",
        format!("{:.0}/s", count as f64 / get.as_secs_f64()),
        "-",
    );
    let blobs = |p: &Path| walk_size(&p.join("blobs"));
    let before = blobs(store.root());
    let body = format!("{{\"row\": 0, \"pad\": \"{}\"}}", "x".repeat(1000));
    store
        .commit_artifacts(vec![
            store
                .stage_bytes(body.as_bytes(), "dataset", serde_json::Value::Null)
                .unwrap(),
        ])
        .unwrap();
    row(
        "storing an identical artifact again",
        format!("+{} bytes", blobs(store.root()) - before),
        "0 bytes",
    );
    // Hashing throughput on a large file.
    let gib: u64 = std::env::var("DAG_BENCH_HASH_GIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let big = dir.path().join("big");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
        let chunk: Vec<u8> = (0..(1u32 << 20))
            .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
            .collect();
        for _ in 0..(gib * 1024) {
            f.write_all(&chunk).unwrap();
        }
    }
    let _ = dag_store::hash_file(&big).unwrap(); // warm the page cache
    let t = Instant::now();
    dag_store::hash_file(&big).unwrap();
    let secs = t.elapsed().as_secs_f64();
    row(
        &format!("blake3 hashing a {gib} GiB file (mmap, rayon)"),
        format!("{:.2} GB/s", (gib << 30) as f64 / secs / 1e9),
        ">= 1 GB/s",
    );
}

fn walk_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        walk_size(&p)
                    } else {
                        std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0)
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}
