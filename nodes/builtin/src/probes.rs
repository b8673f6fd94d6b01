//! Specs of the activation and probe nodes (they run in `dag-worker`; see `docs/probes.md`).
//!
//! - `extract-activations`: residual-stream states of one layer per instance, stored as
//!   sharded safetensors. A graph fans it out over layers with a static `matrix`, so each
//!   layer is its own artifact with its own cache key; `layers` names the sibling layers one
//!   forward pass writes together (a per-pass cache in the store's work area hands them to
//!   their cells).
//! - `train-probe`: a probe (closed form, logistic regression, or learned with AdamW on
//!   per-token scores or attention) trained on one layer's activations, with per-row scores
//!   and metrics for every split it was given.
//! - `classify-prompted`: the prompted-classifier baseline, scored from next-token
//!   log-likelihoods, with the same per-row score format and metrics.

use std::collections::BTreeMap;

use dag_engine::{ArtifactKind, NodeSpec, ParamError, ParamSpec, PortSpec, Resources, Value};

use dag_protocol::probes::{
    ClassifyPromptedParams, ExtractActivationsParams, FinetuneClassifierParams, TrainProbeParams,
};

use crate::worker::CheckedWorker;
use crate::worker::WorkerNode;

/// The checks of the rendering params the worker would make only once the model has
/// loaded: one text column, and a system prompt only where a chat template renders it.
/// A matrix variable is absent here, so "neither column" is left to the run.
fn check_rendering(params: &BTreeMap<String, Value>) -> Result<(), ParamError> {
    let has = |k: &str| params.get(k).and_then(Value::as_str).is_some();
    if has("text_column") && has("messages_column") {
        return Err(ParamError::new(
            "messages_column",
            "`text_column` and `messages_column` are both set",
            "keep one: raw text, or a conversation rendered with the chat template",
        ));
    }
    if has("text_column") && has("system_prompt") && params.get("chat") == Some(&Value::Bool(false))
    {
        return Err(ParamError::new(
            "system_prompt",
            "`system_prompt` is set but the text is not rendered with the chat template",
            "set `chat = true`, or drop `system_prompt`",
        ));
    }
    Ok(())
}

/// The `extract-activations` node type.
pub fn extract_activations() -> CheckedWorker {
    let node = WorkerNode(NodeSpec {
        name: "extract-activations",
        version: 1,
        doc: "Stores the residual-stream states entering block `layer` (transformers' `hidden_states[layer]`) \
              for every row of a dataset: sharded safetensors (`activations` [rows, tokens, d] right-padded per \
              shard, `attention_mask`, `input_ids`, `row`) plus the row's other columns as JSONL and a meta.json. \
              Fan out over layers with `matrix = { layer = [...] }` and name the same list in `layers` so one \
              forward pass writes them all. Resumable per shard after a kill; memory is flat in the row count.",
        inputs: vec![
            PortSpec::new(
                "model",
                ArtifactKind::Model,
                "the model (a `model` node or a checkpoint)",
            ),
            PortSpec::new(
                "dataset",
                ArtifactKind::Dataset,
                "rows with a text or messages column",
            ),
        ],
        outputs: vec![
            PortSpec::new(
                "activations",
                ArtifactKind::Activations,
                "one layer: meta.json, shard-NNNNN.safetensors and shard-NNNNN.jsonl",
            )
            .dir(),
        ],
        params: ParamSpec::from_params::<ExtractActivationsParams>(),
        resources: Resources::GPU,
    });
    CheckedWorker::new(node, check_rendering)
}

/// `train-probe`'s rules between params: `cv` is 0 (off) or at least 2 folds, with
/// candidates in `Cs`; `seeds` names at least one seed.
fn check_train_probe(params: &BTreeMap<String, Value>) -> Result<(), ParamError> {
    let cv = match params.get("cv") {
        Some(Value::Int(k)) => Some(*k),
        _ => None,
    };
    if cv == Some(1) {
        return Err(ParamError::new(
            "cv",
            "`cv = 1` is not a cross-validation (it would silently use `C`)",
            "give 0 to use `C`, or 2 or more folds",
        ));
    }
    if cv.is_some_and(|k| k >= 2)
        && matches!(params.get("Cs"), Some(Value::List(l)) if l.is_empty())
    {
        return Err(ParamError::new(
            "Cs",
            "`Cs` is empty, so `cv` has no C to choose from",
            "give candidates, e.g. `Cs = [0.01, 0.1, 1.0, 10.0]`, or set `cv = 0`",
        ));
    }
    if matches!(params.get("seeds"), Some(Value::List(l)) if l.is_empty()) {
        return Err(ParamError::new(
            "seeds",
            "`seeds` is empty",
            "give at least one seed, e.g. `seeds = [0]`",
        ));
    }
    Ok(())
}

/// The `train-probe` node type.
pub fn train_probe() -> CheckedWorker {
    let node = WorkerNode(NodeSpec {
        name: "train-probe",
        // 2: standardisation statistics and mean features summed in blocks of rows.
        version: 2,
        doc: "Trains a probe on one layer's activations and scores every row of every split given. \
              Closed form (`diff-of-means`, `lda`) and `mean-logistic` (scikit-learn's lbfgs logistic \
              regression on mean activations, `C` or `cv`) are deterministic; `per-token` (a linear score per \
              token, then `aggregate`) and `attention` (learned query and value) train with AdamW, warmup + \
              cosine, clip 1.0 and early stopping on validation AUROC that restores the best epoch's weights, \
              once per seed. Padding never enters an aggregate.",
        inputs: vec![
            PortSpec::new("train", ArtifactKind::Activations, "training activations"),
            PortSpec::new(
                "validation",
                ArtifactKind::Activations,
                "validation activations (early stopping, reporting)",
            ),
            PortSpec::new(
                "test",
                ArtifactKind::Activations,
                "held-out activations (reporting only)",
            )
            .optional(),
        ],
        outputs: vec![
            PortSpec::new(
                "probe",
                ArtifactKind::Probe,
                "weights.safetensors, config.json, metrics.json, curve.png (learned probes)",
            )
            .dir(),
            PortSpec::new(
                "scores",
                ArtifactKind::Scores,
                "JSONL: one row per input row and split with split, row, label, score",
            ),
        ],
        params: ParamSpec::from_params::<TrainProbeParams>(),
        resources: Resources::GPU,
    });
    CheckedWorker::new(node, check_train_probe)
}

/// `answers` is two different strings: the first means label 1.
fn check_answers(params: &BTreeMap<String, Value>) -> Result<(), ParamError> {
    if let Some(Value::List(answers)) = params.get("answers") {
        let two_different = answers.len() == 2 && answers[0] != answers[1];
        if !two_different {
            let shown: Vec<String> = answers
                .iter()
                .map(|a| format!("{:?}", a.as_str().unwrap_or_default()))
                .collect();
            return Err(ParamError::new(
                "answers",
                format!(
                    "`answers` must be two different strings, not [{}]",
                    shown.join(", ")
                ),
                "e.g. `answers = [\"Yes\", \"No\"]`: the first means label 1",
            ));
        }
    }
    Ok(())
}

/// The `classify-prompted` node type.
pub fn classify_prompted() -> CheckedWorker {
    let node = WorkerNode(NodeSpec {
        name: "classify-prompted",
        version: 1,
        doc: "The prompted-classifier baseline: asks the model `template` (`{column}` placeholders) about each row \
              and scores P(answer A) / (P(A) + P(B)) from the next-token log-likelihoods of the two answers. \
              Writes per-row scores in train-probe's format with the same metrics.",
        inputs: vec![
            PortSpec::new("model", ArtifactKind::Model, "the model"),
            PortSpec::new("dataset", ArtifactKind::Dataset, "rows to classify"),
        ],
        outputs: vec![PortSpec::new(
            "scores",
            ArtifactKind::Scores,
            "JSONL: split, row, label, score (and the two log-likelihoods)",
        )],
        params: ParamSpec::from_params::<ClassifyPromptedParams>(),
        resources: Resources::GPU,
    });
    CheckedWorker::new(node, check_answers)
}

/// `finetune-classifier`: the rendering and LoRA checks.
fn check_finetune_classifier(params: &BTreeMap<String, Value>) -> Result<(), ParamError> {
    check_rendering(params)?;
    crate::finetune::check_lora(params)
}

/// The `finetune-classifier` node type: the finetuned-classifier baseline.
pub fn finetune_classifier() -> CheckedWorker {
    let node = WorkerNode(NodeSpec {
        name: "finetune-classifier",
        // 2: CPU dropout masks from ChaCha8 streams.
        version: 2,
        doc: "The finetuned-classifier baseline: a linear head on the final hidden state of each row's last token, \
              trained with a LoRA adapter (or every weight) by the finetune node's trainer on a class-weighted \
              binary cross-entropy. Scores every row of every split given, in train-probe's format with the \
              same metrics; the adapter is in PEFT's layout and the head in safetensors.",
        inputs: vec![
            PortSpec::new("model", ArtifactKind::Model, "the base model"),
            PortSpec::new("train", ArtifactKind::Dataset, "training rows with a 0/1 label"),
            PortSpec::new("validation", ArtifactKind::Dataset, "validation rows (reporting)").optional(),
            PortSpec::new("test", ArtifactKind::Dataset, "held-out rows (reporting)").optional(),
        ],
        outputs: vec![
            PortSpec::new(
                "classifier",
                ArtifactKind::Probe,
                "adapter/ (PEFT), head.safetensors (score.weight [1, d], score.bias [1]), config.json, metrics.json, loss.png",
            )
            .dir(),
            PortSpec::new(
                "scores",
                ArtifactKind::Scores,
                "JSONL: one row per input row and split with split, row, label, score",
            ),
        ],
        params: ParamSpec::from_params::<FinetuneClassifierParams>(),
        resources: Resources::GPU,
    });
    CheckedWorker::new(node, check_finetune_classifier)
}
