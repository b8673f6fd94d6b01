//! Spec of the `finetune` node (runs in dag-worker; see `nodes/worker/src/finetune.rs` and
//! `docs/finetune.md`).

use dag_engine::{ArtifactKind, NodeSpec, ParamSpec, ParamType, PortSpec, Resources, Value};

use crate::worker::WorkerNode;

fn int(name: &'static str, v: i64, doc: &'static str) -> ParamSpec {
    ParamSpec::with_default(name, ParamType::Int, Value::Int(v), doc)
}

fn float(name: &'static str, v: f64, doc: &'static str) -> ParamSpec {
    ParamSpec::with_default(name, ParamType::Float, Value::Float(v), doc)
}

/// The `finetune` node type: supervised finetuning with LoRA or full weights.
pub fn finetune() -> WorkerNode {
    WorkerNode(NodeSpec {
        name: "finetune",
        // 2: dropout reseeded per block (checkpointing-safe), f32 adapters over bf16 bases.
        // 3: CPU dropout masks from ChaCha8 streams; the LM head on target positions only.
        version: 3,
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
                ),
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
                ),
                int(
                    "save_interval",
                    0,
                    "save a checkpoint every this many steps (0 = only at the end)",
                ),
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
    })
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
        int("rank", 8, "LoRA rank"),
        float(
            "alpha",
            16.0,
            "LoRA alpha (the update is scaled by alpha / rank)",
        ),
        float("dropout", 0.05, "LoRA dropout"),
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
        float("lr", lr, "peak learning rate"),
        float("weight_decay", 0.0, "AdamW decoupled weight decay"),
        int("warmup_steps", 0, "optimizer steps of linear warmup"),
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
        int("batch_size", 4, "rows per forward pass"),
        int("grad_accum", 1, "forward passes per optimizer step"),
        float("max_grad_norm", 1.0, "global gradient-norm clip (0 = off)"),
        int("epochs", 1, "passes over the data (when max_steps is 0)"),
        int("max_steps", 0, "optimizer steps in all (0 = from epochs)"),
    ]
}
