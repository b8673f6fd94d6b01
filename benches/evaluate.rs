//! Evaluation throughput beside lm-evaluation-harness: the 16 advanced-ai-risk propensity
//! tasks on SmolLM2 (f32, CPU), the same items and batch size, documents per second with the
//! model load excluded (and reported apart).
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo bench --bench evaluate -- --limit 20 --batch 16 [--python PATH]
//! ```
//!
//! `--python` names an interpreter that has lm-eval 0.4.13 and transformers next to torch
//! (see benches/evaluate_lm_eval.py); without one only our figure is printed.

use std::path::{Path, PathBuf};
use std::process::Command;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `evaluated N documents (R requests) in S s: D documents/s; model loaded in L s`.
fn our_figures(log: &str) -> Option<(f64, f64, f64)> {
    let line = log
        .lines()
        .find(|l| l.contains("evaluated ") && l.contains("documents/s"))?;
    let num_after = |key: &str| -> Option<f64> {
        let rest = &line[line.find(key)? + key.len()..];
        rest.trim_start()
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .next()?
            .parse()
            .ok()
    };
    Some((
        num_after("evaluated")?,
        num_after(") in")?,
        num_after("model loaded in")?,
    ))
}

fn main() {
    let limit: usize = arg("--limit").and_then(|s| s.parse().ok()).unwrap_or(20);
    let batch: usize = arg("--batch").and_then(|s| s.parse().ok()).unwrap_or(16);
    let data = root().join("../shared/data");
    let dag = Path::new(env!("CARGO_BIN_EXE_dag"));
    if !dag.with_file_name("dag-worker").exists() {
        eprintln!(
            "dag-worker is not beside `{}`: run `cargo build --release --workspace --bins` first",
            dag.display()
        );
        std::process::exit(2);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join(".git")).expect("mkdir");
    std::fs::write(
        dir.path().join("g.toml"),
        format!(
            "[node.base]\ntype = \"model\"\nsource = \"smollm2\"\n\n[node.eval]\ntype = \"evaluate\"\ninputs = {{ model = \"base.model\" }}\ntasks = [\"advanced_ai_risk_human\"]\ndata = \"{}\"\nlimit = {limit}\nbatch_size = {batch}\n",
            data.display()
        ),
    )
    .expect("write graph");
    let o = Command::new(dag)
        .args(["run", "g.toml", "-q"])
        .current_dir(dir.path())
        .output()
        .expect("dag runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let logs = dir.path().join(".dag/logs");
    let log = std::fs::read_dir(&logs)
        .expect("logs")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .collect::<String>();
    let (docs, seconds, load) = our_figures(&log).expect("the worker's timing line in the run log");
    println!("advanced-ai-risk, 16 tasks x {limit} documents, SmolLM2 f32 CPU, batch {batch}");
    println!(
        "{:<22} {:>10} {:>10} {:>12} {:>10}",
        "", "documents", "seconds", "documents/s", "load s"
    );
    println!(
        "{:<22} {:>10} {:>10.2} {:>12.2} {:>10.2}",
        "dag evaluate",
        docs,
        seconds,
        docs / seconds,
        load
    );
    let Some(python) = arg("--python") else {
        println!("(no --python given: lm-eval not run)");
        return;
    };
    let gguf = dag_nodes::models::embedded_smollm2();
    let o = Command::new(python)
        .arg(root().join("benches/evaluate_lm_eval.py"))
        .args(["--model", &gguf.display().to_string()])
        .args(["--data", &data.display().to_string()])
        .args(["--limit", &limit.to_string(), "--batch", &batch.to_string()])
        .output()
        .expect("python runs");
    let out = String::from_utf8_lossy(&o.stdout);
    let Some(peer) = out
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    else {
        eprintln!("lm-eval failed:\n{}", String::from_utf8_lossy(&o.stderr));
        std::process::exit(1);
    };
    let peer_rate = peer["docs_per_s"].as_f64().unwrap_or(f64::NAN);
    println!(
        "{:<22} {:>10} {:>10.2} {:>12.2} {:>10.2}",
        format!("lm-eval {}", "0.4.13"),
        peer["docs"],
        peer["seconds"].as_f64().unwrap_or(f64::NAN),
        peer_rate,
        peer["load_s"].as_f64().unwrap_or(f64::NAN)
    );
    println!(
        "speed-up: {:.2}x (target >= 2x)",
        docs / seconds / peer_rate
    );
}
