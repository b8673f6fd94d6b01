//! Spec of the `finetune` node (runs in dag-worker; see `nodes/worker/src/finetune.rs` and
//! `docs/finetune.md`).

use std::collections::BTreeMap;

use dag_engine::{ArtifactKind, NodeSpec, ParamError, ParamSpec, PortSpec, Resources, Value};

use crate::worker::CheckedWorker;
use crate::worker::WorkerNode;

/// The `finetune` node type: supervised finetuning with LoRA or full weights.
pub fn finetune() -> CheckedWorker {
    let node = WorkerNode(NodeSpec {
        name: "finetune",
        // 2: dropout reseeded per block (checkpointing-safe), f32 adapters over bf16 bases.
        // 3: CPU dropout masks from ChaCha8 streams; the LM head on target positions only.
        // 4: metrics.jsonl without the steps' wall-clock tokens_per_s (not an output of the
        //    inputs: the metrics artifact differed on every run).
        version: 5,
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
                "final",
                ArtifactKind::Model,
                "the last checkpoint, as a model (the same artifact as the list's last element)",
            )
            .dir(),
            PortSpec::new(
                "metrics",
                ArtifactKind::Metrics,
                "metrics.jsonl (one line per optimizer step) and loss.png",
            )
            .dir(),
        ],
        params: ParamSpec::from_params::<FinetuneParams>(),
        resources: Resources::GPU,
    });
    CheckedWorker::new(node, check_lora)
}

use dag_protocol::finetune::FinetuneParams;
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
