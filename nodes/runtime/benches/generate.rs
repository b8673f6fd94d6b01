//! Batched greedy generation throughput on the CPU (or any device), beside
//! `benches/generate_transformers.py` which runs transformers' `generate` on the same prompts.
//!
//! ```text
//! cargo bench -p dag-runtime --bench generate -- [--model PATH] [--device cpu] \
//!     [--batches 1,8,32] [--new-tokens 64] [--dtype f32]
//! ```
//! The model defaults to `$DAG_SMOLLM2_GGUF`. Each batch size `b` generates `new-tokens` tokens
//! (EOS ignored) for the first `b` prompts of `benches/prompts.json`, once to warm up and once
//! timed, and prints generated tokens per second (prefill included).

use std::time::Instant;

use dag_runtime::{GenerateRequest, LoadOptions, Model, Prompt, SamplingParams};

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
    let batches: Vec<usize> = arg(&args, "--batches")
        .unwrap_or_else(|| "1,8,32".into())
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let new_tokens: usize = arg(&args, "--new-tokens")
        .unwrap_or_else(|| "64".into())
        .parse()?;
    let opts = LoadOptions {
        device: device.parse()?,
        dtype: arg(&args, "--dtype").map(|d| d.parse()).transpose()?,
    };
    let prompts: Vec<String> =
        serde_json::from_str(include_str!("prompts.json")).expect("valid prompts.json");

    let start = Instant::now();
    let model = Model::from_reference(&model_path, opts)?;
    println!(
        "model {model_path} on {:?} {} loaded in {:.2}s; torch threads {}",
        model.device(),
        model.dtype().name(),
        start.elapsed().as_secs_f64(),
        tch::get_num_threads()
    );
    println!("engine     batch  new_tokens  seconds  tokens/s");
    for &batch in &batches {
        let requests: Vec<GenerateRequest> = prompts
            .iter()
            .cycle()
            .take(batch)
            .map(|p| GenerateRequest::new(Prompt::Text(p.clone())))
            .collect();
        let params = SamplingParams {
            max_new_tokens: new_tokens,
            ignore_eos: true,
            batch_size: batch,
            ..SamplingParams::default()
        };
        model.generate(&requests, &params, &mut |_| {})?;
        let start = Instant::now();
        let out = model.generate(&requests, &params, &mut |_| {})?;
        let secs = start.elapsed().as_secs_f64();
        let tokens: usize = out.iter().map(|i| i.completions[0].completion_tokens).sum();
        println!(
            "dag-runtime {batch:>5}  {new_tokens:>10}  {secs:>7.2}  {:>8.1}",
            tokens as f64 / secs
        );
    }
    Ok(())
}
