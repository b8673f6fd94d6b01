//! Spec of the `finetune` node (runs in dag-worker; see `nodes/worker/src/finetune.rs` and
//! `docs/finetune.md`).

use std::collections::BTreeMap;

use dag_engine::{
    ArtifactKind, NodeSpec, ParamError, ParamSpec, ParamType, PortSpec, Resources, Value,
};

use crate::worker::CheckedWorker;
use crate::worker::WorkerNode;

fn int(name: &'static str, v: i64, doc: &'static str) -> ParamSpec {
    ParamSpec::with_default(name, ParamType::Int, Value::Int(v), doc)
}

fn float(name: &'static str, v: f64, doc: &'static str) -> ParamSpec {
    ParamSpec::with_default(name, ParamType::Float, Value::Float(v), doc)
}

/// The `finetune` node type: supervised finetuning with LoRA or full weights.
pub fn finetune() -> CheckedWorker {
    let node = WorkerNode(NodeSpec {
        name: "finetune",
        // 2: dropout reseeded per block (checkpointing-safe), f32 adapters over bf16 bases.
        // 3: CPU dropout masks from ChaCha8 streams; the LM head on target positions only.
        // 4: metrics.jsonl without the steps' wall-clock tokens_per_s (not an output of the
        //    inputs: the metrics artifact differed on every run).
        version: 4,
        doc: "Supervised finetuning with an assistant-only loss. Examples are conversations (a `messages` column of \
              {role, content}) or, when `prompt` is set, a user turn and an assistant turn filled from `{column}` \
              templates; rendered with the model's chat template, optionally without system messages (context \
              distillation). LoRA (PEFT layout) or full finetuning; AdamW, warmup then linear or cosine decay, \
              accumulation, clipping. Checkpoints every `save_interval` steps and at the end, each a model that \
              `generate` and later nodes load; resumes after a kill from the last checkpoint, bit-identical on CPU.",
        inputs: vec![
            PortSpec::new("model", ArtifactKind::Model, "the base model"),
            PortSpec::new(
                "dataset",
                ArtifactKind::Dataset,
                "training rows (generations feed it directly)",
            ),
        ],
        outputs: vec![
            PortSpec::new(
                "checkpoints",
                ArtifactKind::Checkpoints,
                "one model per saved step, in step order: model.json + PEFT adapter, or a Hugging Face folder (full)",
            ),
            PortSpec::new(
                "metrics",
                ArtifactKind::Metrics,
                "metrics.jsonl (one line per optimizer step) and loss.png",
            )
            .dir(),
        ],
        params: adapter_params()
            .into_iter()
            .chain([
                ParamSpec::with_default(
                    "messages",
                    ParamType::Str,
                    Value::Str("messages".into()),
                    "column of conversations (lists of {role, content}), used when `prompt` is not set",
                ),
                ParamSpec::optional(
                    "prompt",
                    ParamType::Str,
                    "user message template with `{column}` placeholders (with `response`)",
                ),
                ParamSpec::with_default(
                    "response",
                    ParamType::Str,
                    Value::Str("{completion}".into()),
                    "assistant message template, when `prompt` is set",
                ),
                ParamSpec::optional(
                    "system_prompt",
                    ParamType::Str,
                    "system message put before templated turns",
                ),
                ParamSpec::with_default(
                    "drop_system",
                    ParamType::Bool,
                    Value::Bool(false),
                    "remove system messages from conversations (context distillation)",
                ),
                int(
                    "max_len",
                    1024,
                    "tokens per example at most; longer ones are cut (and counted)",
                )
                .min(1.0),
                ParamSpec::with_default(
                    "packing",
                    ParamType::Bool,
                    Value::Bool(false),
                    "pack several examples into each row of max_len tokens; each attends only to itself",
                ),
            ])
            .chain(optimizer_params(2e-4))
            .chain([
                int(
                    "seed",
                    0,
                    "seed of the adapter init, data order and dropout",
                )
                .min(0.0),
                int(
                    "save_interval",
                    0,
                    "save a checkpoint every this many steps (0 = only at the end)",
                )
                .min(0.0),
                ParamSpec::with_default(
                    "merge",
                ParamType::Bool,
                Value::Bool(false),
                "LoRA: also write each checkpoint's merged model as a Hugging Face folder (merged/)",
            ),
            ParamSpec::with_default(
                "on_nan",
                ParamType::Enum(&["error", "stop"]),
                Value::Str("error".into()),
                "a non-finite loss: fail naming the step, or stop and keep the checkpoints saved before it",
            ),
            ])
            .collect(),
        resources: Resources::GPU,
    });
    CheckedWorker::new(node, check_lora)
}

pub use dag_protocol::models::TARGET_MODULES;

/// With `method = "lora"`: `target_modules` names at least one projection, each one the
/// runtime knows (it would refuse them only once the model has loaded).
pub(crate) fn check_lora(params: &BTreeMap<String, Value>) -> Result<(), ParamError> {
    if params.get("method").and_then(Value::as_str) != Some("lora") {
        return Ok(());
    }
    let Some(Value::List(targets)) = params.get("target_modules") else {
        return Ok(());
    };
    let hint = "name projections among q, k, v, o, gate, up, down (or q_proj ...)";
    if targets.is_empty() {
        return Err(ParamError::new(
            "target_modules",
            "LoRA needs at least one target module",
            hint,
        ));
    }
    for t in targets.iter().filter_map(Value::as_str) {
        let full = if t.ends_with("_proj") {
            t.to_string()
        } else {
            format!("{t}_proj")
        };
        if !TARGET_MODULES.contains(&full.as_str()) {
            return Err(ParamError::new(
                "target_modules",
                format!("unknown LoRA target module `{t}`"),
                hint,
            ));
        }
    }
    Ok(())
}

/// LoRA params (`method` included), shared with `finetune-classifier`.
pub(crate) fn adapter_params() -> Vec<ParamSpec> {
    let strs = |v: &[&str]| Value::List(v.iter().map(|s| Value::Str(s.to_string())).collect());
    vec![
        ParamSpec::with_default(
            "method",
            ParamType::Enum(&["lora", "full"]),
            Value::Str("lora".into()),
            "train a LoRA adapter, or every weight",
        ),
        int("rank", 8, "LoRA rank").min(1.0),
        float(
            "alpha",
            16.0,
            "LoRA alpha (the update is scaled by alpha / rank)",
        )
        .above(0.0),
        float("dropout", 0.05, "LoRA dropout").min(0.0).below(1.0),
        ParamSpec::with_default(
            "target_modules",
            ParamType::List(Box::new(ParamType::Str)),
            strs(&["q", "k", "v", "o", "gate", "up", "down"]),
            "projections LoRA wraps: q, k, v, o, gate, up, down (or q_proj ...)",
        ),
    ]
}

/// Optimisation params, shared with `finetune-classifier` (`lr` is its default).
pub(crate) fn optimizer_params(lr: f64) -> Vec<ParamSpec> {
    vec![
        float("lr", lr, "peak learning rate").above(0.0),
        float("weight_decay", 0.0, "AdamW decoupled weight decay").min(0.0),
        int("warmup_steps", 0, "optimizer steps of linear warmup").min(0.0),
        ParamSpec::with_default(
            "schedule",
            ParamType::Enum(&["linear", "cosine", "constant"]),
            Value::Str("linear".into()),
            "decay after warmup",
        ),
        ParamSpec::with_default(
            "gradient_checkpointing",
            ParamType::Bool,
            Value::Bool(false),
            "recompute each block in the backward pass instead of storing its activations (less memory, one more forward)",
        ),
        int("batch_size", 4, "rows per forward pass").min(1.0),
        int("grad_accum", 1, "forward passes per optimizer step").min(1.0),
        float("max_grad_norm", 1.0, "global gradient-norm clip (0 = off)").min(0.0),
        int("epochs", 1, "passes over the data (when max_steps is 0)").min(1.0),
        int("max_steps", 0, "optimizer steps in all (0 = from epochs)").min(0.0),
    ]
}
