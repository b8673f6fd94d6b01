//! Activation extraction throughput and peak memory: the real `extract-activations` node in
//! `dag-worker` beside transformers' `output_hidden_states` on the same model, texts, batch
//! size and truncation (`benches/extract_transformers.py`, run in the same invocation when
//! `DAG_BENCH_PYTHON` names an interpreter that has torch and transformers).
//!
//! ```text
//! eval "$(scripts/setup.sh --env)"
//! DAG_BENCH_PYTHON=$HOME/.cache/dag/venv-torch-2.11.0/bin/python PYTHONPATH=/tmp/ref-probes-site \
//!     cargo bench -p dag-worker --bench extract -- [--rows 64,256] [--max-len 128] [--batch 8]
//! ```
//! (`cargo bench --profile dev ...` reuses the debug build when a release build is too slow to make.)
//! Texts are the rejected dialogues of HH-RLHF harmless-base (`../shared/data`), layers 6, 15
//! and 24 in one pass, f32. Peak RSS is the process's high-water mark (`VmHWM`); with shards
//! written as they finish it must not grow with the number of rows.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn texts(n: usize) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/hh-rlhf/harmless-base/test.jsonl.gz");
    let mut s = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&path)?).read_to_string(&mut s)?;
    Ok(s.lines()
        .take(n)
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .map(|v| v["rejected"].as_str().unwrap_or_default().to_string())
        })
        .collect::<Result<_, _>>()?)
}

/// Peak resident memory (MiB) of a running process, polled until it exits.
fn run_measured(mut cmd: Command) -> Result<(f64, f64, String), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let child = cmd.stdout(std::process::Stdio::piped()).spawn()?;
    let status_path = format!("/proc/{}/status", child.id());
    let poll = std::thread::spawn(move || {
        let mut peak = 0.0f64;
        while let Ok(s) = std::fs::read_to_string(&status_path) {
            if let Some(kb) = s
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
            {
                peak = peak.max(kb / 1024.0);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        peak
    });
    let out = child.wait_with_output()?;
    let secs = start.elapsed().as_secs_f64();
    let peak = poll.join().unwrap_or(0.0);
    if !out.status.success() {
        return Err(format!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stdout)).into());
    }
    Ok((
        secs,
        peak,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let rows: Vec<usize> = arg(&args, "--rows")
        .unwrap_or_else(|| "64,256".into())
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let max_len: usize = arg(&args, "--max-len")
        .unwrap_or_else(|| "128".into())
        .parse()?;
    let batch: usize = arg(&args, "--batch")
        .unwrap_or_else(|| "8".into())
        .parse()?;
    let model = std::env::var("DAG_SMOLLM2_GGUF")
        .map_err(|_| "DAG_SMOLLM2_GGUF is not set: run `eval \"$(scripts/setup.sh --env)\"`")?;
    let python = std::env::var("DAG_BENCH_PYTHON").ok();
    let tmp = tempfile::tempdir()?;
    let model_dir = tmp.path().join("model");
    std::fs::create_dir_all(&model_dir)?;
    std::fs::write(
        model_dir.join("model.json"),
        json!({ "location": model, "device": "cpu", "dtype": "f32" }).to_string(),
    )?;
    println!(
        "extraction of layers 6, 15, 24 (f32), max_len {max_len}, batch {batch}, torch threads default"
    );
    println!(
        "dag-worker seconds include process start and model load; `load` is a 1-row run's time,"
    );
    println!("and `net` divides by the seconds minus it (transformers: forward passes only)");
    println!("engine        rows  tokens  seconds  tokens/s       net  peak RSS MiB");
    let mut load = 0.0;
    for &n in std::iter::once(&1).chain(&rows) {
        let dir = tmp.path().join(format!("n{n}"));
        let data = dir.join("data.jsonl");
        std::fs::create_dir_all(&dir)?;
        let texts = texts(n)?;
        let mut lines = String::new();
        for (i, t) in texts.iter().enumerate() {
            lines += &json!({ "text": t, "label": i % 2 }).to_string();
            lines.push('\n');
        }
        std::fs::write(&data, lines)?;
        let out = dir.join("out");
        let work = dir.join("work/job");
        std::fs::create_dir_all(&out)?;
        std::fs::create_dir_all(&work)?;
        let input = |path: &PathBuf, kind: &str, digest: &str| json!([{ "path": path, "digest": digest, "kind": kind, "meta": null, "label": kind }]);
        let job = json!({
            "node": "extract-activations",
            "instance": "bench",
            "params": { "layer": 6, "layers": [6, 15, 24], "text_column": "text", "chat": false, "max_len": max_len,
                        "truncation_side": "left", "batch_size": batch, "dtype": "f32", "shard_rows": 64 },
            "inputs": { "model": input(&model_dir, "model", "m"), "dataset": input(&data, "dataset", &format!("d{n}")) },
            "outputs": { "activations": out },
            "scratch": dir.join("scratch"),
            "resumed": [],
            "work_dir": work,
        });
        let job_path = dir.join("job.json");
        std::fs::write(&job_path, job.to_string())?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dag-worker"));
        cmd.arg(&job_path);
        let (secs, peak, stdout) = run_measured(cmd)?;
        let meta = stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find_map(|v| v.get("meta").map(|m| m["value"].clone()))
            .ok_or("the worker reported no meta")?;
        let tokens = meta["tokens"].as_u64().unwrap_or(0);
        if n == 1 {
            load = secs;
            println!("dag-worker    load  {tokens:>6}  {secs:>7.2}");
            continue;
        }
        println!(
            "dag-worker  {n:>6}  {tokens:>6}  {secs:>7.2}  {:>8.0}  {:>8.0}  {peak:>12.0}",
            tokens as f64 / secs,
            tokens as f64 / (secs - load).max(1e-9)
        );
        if let Some(py) = &python {
            let script =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/extract_transformers.py");
            let mut cmd = Command::new(py);
            cmd.arg(&script).arg(&model).arg(&data).args([
                "--max-len",
                &max_len.to_string(),
                "--batch",
                &batch.to_string(),
            ]);
            let (_, peak, stdout) = run_measured(cmd)?;
            let r: Value = serde_json::from_str(stdout.lines().last().unwrap_or("{}"))?;
            let tps = r["tokens_per_second"].as_f64().unwrap_or(f64::NAN);
            println!(
                "transformers{n:>7}  {:>6}  {:>7.2}  {tps:>8.0}  {tps:>8.0}  {peak:>12.0}",
                r["tokens"],
                r["seconds"].as_f64().unwrap_or(f64::NAN),
            );
        }
    }
    if python.is_none() {
        println!("(set DAG_BENCH_PYTHON to run transformers beside it)");
    }
    Ok(())
}
