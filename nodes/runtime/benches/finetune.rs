//! LoRA SFT training throughput on the CPU (or any device), beside
//! `benches/finetune_peft.py` which trains the same adapter with transformers + PEFT on the
//! same token batches and settings.
//!
//! ```text
//! cargo bench -p dag-runtime --bench finetune -- [--model PATH] [--device cpu] \
//!     [--batch 4] [--seq 128] [--steps 4] [--checkpointing] [--python PYTHON]
//! ```
//! The model defaults to `$DAG_SMOLLM2_GGUF`. The batches are the tokenised texts of
//! `benches/prompts.json`, repeated to `seq` tokens, with the first quarter of each row masked
//! out of the loss; they are written to a JSON file the Python script reads, so both sides
//! train on identical tokens. LoRA rank 8, alpha 16, dropout 0.05 on q, k, v, o, gate, up,
//! down; AdamW lr 2e-4, clipping at 1.0. One step warms up, then `steps` steps are timed;
//! tokens/s counts every token of every row. With `--python` (or `$DAG_BENCH_PYTHON`), the
//! peer script runs in the same invocation and its figure prints below ours.
//! `--checkpointing` turns gradient checkpointing on for both (transformers'
//! `gradient_checkpointing_enable`); each side prints its peak resident (host) memory.
//!
//! On a GPU machine, the target configuration is a Llama-3.2-1B-shaped model with random
//! weights in bf16 (`benches/make_random_llama.py` writes one as a Hugging Face folder):
//!
//! ```text
//! python nodes/runtime/benches/make_random_llama.py /tmp/llama-1b --tokenizer $DAG_SMOLLM2_GGUF
//! cargo bench -p dag-runtime --bench finetune -- --model /tmp/llama-1b --device cuda --python PY
//! ```

use std::time::Instant;

use dag_runtime::train::{Example, Mode, Schedule, TrainConfig, Trainer};
use dag_runtime::{LoadOptions, LoraConfig, Model};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let model_path = arg(&args, "--model")
        .or_else(|| std::env::var("DAG_SMOLLM2_GGUF").ok())
        .ok_or("no model: pass --model PATH or run `eval \"$(scripts/setup.sh --env)\"`")?;
    let device = arg(&args, "--device").unwrap_or_else(|| "cpu".into());
    let num = |name: &str, default: usize| -> Result<usize, Box<dyn std::error::Error>> {
        Ok(arg(&args, name).map_or(Ok(default), |v| v.parse())?)
    };
    let (batch, seq, steps) = (num("--batch", 4)?, num("--seq", 128)?, num("--steps", 4)?);
    let checkpointing = args.iter().any(|a| a == "--checkpointing");
    let opts = LoadOptions {
        device: device.parse()?,
        dtype: None,
    };
    let start = Instant::now();
    let mut model = Model::from_reference(&model_path, opts)?;
    println!(
        "model {model_path} on {:?} {} loaded in {:.2}s; torch threads {}",
        model.device(),
        model.dtype().name(),
        start.elapsed().as_secs_f64(),
        tch::get_num_threads()
    );
    let prompts: Vec<String> =
        serde_json::from_str(include_str!("prompts.json")).expect("valid prompts.json");
    let rows = batch * (steps + 1);
    let examples: Vec<Example> = (0..rows)
        .map(|i| {
            let text = prompts[i % prompts.len()].repeat(64);
            let ids = model.tokenizer().encode(&text, false)?;
            let ids: Vec<u32> = ids.into_iter().take(seq).collect();
            let trainable = (0..ids.len()).map(|j| j >= seq / 4).collect();
            Ok(Example { ids, trainable })
        })
        .collect::<Result<_, dag_runtime::Error>>()?;
    let data = std::env::temp_dir().join(format!("dag-bench-finetune-{}.json", std::process::id()));
    let json: Vec<serde_json::Value> = examples
        .iter()
        .map(|e| serde_json::json!({ "ids": e.ids, "trainable": e.trainable }))
        .collect();
    std::fs::write(&data, serde_json::to_vec(&json)?)?;

    let targets: Vec<String> = ["q", "k", "v", "o", "gate", "up", "down"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    model.attach_lora(LoraConfig::new(8, 16.0, 0.05, &targets)?, 0)?;
    let cfg = TrainConfig {
        lr: 2e-4,
        schedule: Schedule::Constant,
        batch_size: batch,
        max_steps: Some(steps + 1),
        gradient_checkpointing: checkpointing,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(&model, Mode::Lora, examples, cfg)?;
    let warm = trainer.train_step(&model)?;
    let start = Instant::now();
    let mut tokens = 0;
    let mut last = warm;
    for _ in 0..steps {
        last = trainer.train_step(&model)?;
        tokens += last.tokens;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "engine             batch  seq  steps  seconds  tokens/s  last_loss  peak_rss_mib  (checkpointing {checkpointing})"
    );
    println!(
        "dag-runtime        {batch:>5}  {seq:>3}  {steps:>5}  {secs:>7.2}  {:>8.1}  {:>9.4}  {:>12}",
        tokens as f64 / secs,
        last.loss,
        peak_rss_mib()
    );
    let python = arg(&args, "--python").or_else(|| std::env::var("DAG_BENCH_PYTHON").ok());
    if let Some(py) = python {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/finetune_peft.py");
        let status = std::process::Command::new(py)
            .args([
                script,
                "--model",
                &model_path,
                "--data",
                data.to_str().unwrap_or_default(),
            ])
            .args(["--batch", &batch.to_string(), "--steps", &steps.to_string()])
            .args(["--device", &device])
            .args(checkpointing.then_some("--checkpointing"))
            .status()?;
        if !status.success() {
            eprintln!("the transformers + PEFT script failed ({status})");
        }
    } else {
        println!(
            "(pass --python PYTHON with transformers and peft to run benches/finetune_peft.py beside it)"
        );
    }
    let _ = std::fs::remove_file(&data);
    Ok(())
}

/// Peak resident set size of this process (Linux `VmHWM`), in MiB.
fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}
