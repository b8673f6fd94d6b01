//! A real LoRA SFT run on CPU: SmolLM2-135M-Instruct learns to answer SpeciesismBench
//! statements with a fixed moral verdict. The loss falls and a held-out statement's target
//! answer becomes more likely. Reads the statements from `../shared/data` (not copied into
//! the repository); answers are built from each row's `label` and `animal`.

use std::path::{Path, PathBuf};

use dag_runtime::train::{self, Example, Mode, Schedule, TrainConfig, Trainer};
use dag_runtime::{DeviceSpec, LoadOptions, LoraConfig, Message, Model};

fn smollm2() -> PathBuf {
    let path = std::env::var_os("DAG_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(dag_protocol::models::embedded_smollm2);
    assert!(
        path.exists(),
        "the SmolLM2 GGUF is missing at `{}`: run `scripts/setup.sh`",
        path.display()
    );
    path
}

fn examples(model: &Model, n: usize) -> Vec<Example> {
    let csv = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/speciesismbench/speciesism_benchmark_final.csv");
    let rows = dag_table::read_rows(&csv, dag_table::Format::Csv, false)
        .unwrap()
        .rows;
    rows.iter()
        .take(n)
        .map(|r| {
            let statement = r["statement"].as_str().unwrap();
            let animal = r["animal"].as_str().unwrap_or("animal");
            let answer = if r["label"] == "wrong" {
                format!("Morally wrong. The {animal} can suffer, and its interests matter.")
            } else {
                "Morally acceptable.".to_string()
            };
            let messages = vec![
                Message::new(
                    "user",
                    format!(
                        "\"{statement}\"\nIs this statement morally acceptable or morally wrong?"
                    ),
                ),
                Message::new("assistant", answer),
            ];
            train::encode_chat(model, &messages, 256).unwrap().0
        })
        .collect()
}

#[test]
fn lora_sft_lowers_the_loss_and_raises_a_held_out_target() {
    let opts = LoadOptions {
        device: DeviceSpec::Cpu,
        dtype: None,
    };
    let mut model = Model::from_reference(smollm2().to_str().unwrap(), opts).unwrap();
    let mut data = examples(&model, 33);
    let held_out = data.pop().unwrap();
    let before = train::target_logprob(&model, &held_out).unwrap();
    let targets: Vec<String> = ["q", "k", "v", "o", "gate", "up", "down"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    model
        .attach_lora(LoraConfig::new(8, 16.0, 0.0, &targets).unwrap(), 0)
        .unwrap();
    let cfg = TrainConfig {
        lr: 2e-3,
        batch_size: 4,
        max_steps: Some(8),
        schedule: Schedule::Constant,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(&model, Mode::Lora, data, cfg).unwrap();
    let mut losses = vec![];
    while trainer.step() < trainer.total_steps() {
        losses.push(trainer.train_step(&model).unwrap().loss);
    }
    let after = train::target_logprob(&model, &held_out).unwrap();
    eprintln!("losses {losses:?}; held-out target log-prob per token {before:.3} -> {after:.3}");
    let first = (losses[0] + losses[1]) / 2.0;
    let last = (losses[6] + losses[7]) / 2.0;
    assert!(last < 0.5 * first, "loss {first:.3} -> {last:.3}");
    assert!(
        after > before + 0.5,
        "held-out log-prob {before:.3} -> {after:.3}"
    );
}
