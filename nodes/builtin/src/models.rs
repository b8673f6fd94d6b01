//! Specs of the model nodes. `model` runs here (it only names and fingerprints
//! weights); the heavy ones run in `dag-worker` (see [`crate::worker`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dag_engine::{
    ArtifactKind, Node, NodeError, NodeSpec, ParamError, ParamSpec, ParamType, PortSpec, Resources,
    RunContext, Value,
};

use dag_protocol::generate::GenerateParams;

use crate::worker::WorkerNode;

pub use dag_protocol::models::embedded_smollm2;

/// Whether `device` is what the worker's runtime parses: `auto`, `cpu`, `cuda` or `cuda:N`.
fn is_device(device: &str) -> bool {
    matches!(device, "auto" | "cpu" | "cuda")
        || device
            .strip_prefix("cuda:")
            .is_some_and(|n| n.parse::<usize>().is_ok())
}

/// The `model` node type: a model reference whose identity is its weights' content.
pub struct ModelRef(NodeSpec);

impl ModelRef {
    /// The node type with its spec.
    pub fn new() -> Self {
        ModelRef(NodeSpec {
            name: "model",
            version: 1,
            doc: "Names a model for the model nodes: `path` to a GGUF file or a Hugging Face model folder \
                  (identified by content, so editing the weights reruns what used them), or `source = \"smollm2\"` \
                  for the embedded default SmolLM2-135M-Instruct, or `source = \"hf://org/name@revision\"`.",
            inputs: vec![],
            outputs: vec![
                PortSpec::new(
                    "model",
                    ArtifactKind::Model,
                    "a model reference (model.json)",
                )
                .dir(),
            ],
            params: vec![
                ParamSpec::optional(
                    "path",
                    ParamType::Path,
                    "a .gguf file or a Hugging Face model folder",
                ),
                ParamSpec::optional(
                    "source",
                    ParamType::Str,
                    "`smollm2` (embedded default) or `hf://org/name@revision`",
                ),
                ParamSpec::with_default(
                    "device",
                    ParamType::Str,
                    Value::Str("auto".into()),
                    "`auto`, `cpu` or `cuda:N`",
                ),
                ParamSpec::with_default(
                    "dtype",
                    ParamType::Enum(&["auto", "f32", "bf16", "f16"]),
                    Value::Str("auto".into()),
                    "`auto`: f32 on CPU, bf16 on CUDA",
                ),
            ],
            resources: Resources::CPU,
        })
    }
}

impl Default for ModelRef {
    fn default() -> Self {
        Self::new()
    }
}

fn fingerprint(path: &Path) -> Result<String, NodeError> {
    let fail = |e: dag_store::Error| {
        NodeError::caused(format!("Failed to fingerprint `{}`", path.display()), &e)
    };
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| NodeError::caused(format!("Failed to list `{}`", path.display()), &e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        let mut h = blake3::Hasher::new();
        for f in files {
            h.update(f.file_name().unwrap_or_default().as_encoded_bytes());
            h.update(dag_store::hash_file(&f).map_err(fail)?.to_hex().as_bytes());
        }
        Ok(h.finalize().to_hex().to_string())
    } else {
        Ok(dag_store::hash_file(path).map_err(fail)?.to_hex())
    }
}

impl Node for ModelRef {
    fn spec(&self) -> &NodeSpec {
        &self.0
    }

    /// `path` or a known `source`, not both, and a device the runtime knows. "Neither" is
    /// left to the run: `path` may be a matrix variable, absent here.
    fn check_params(&self, params: &BTreeMap<String, Value>) -> Result<(), ParamError> {
        let source = params.get("source").and_then(Value::as_str);
        if let Some(s) = source {
            if params.contains_key("path") {
                return Err(ParamError::new(
                    "source",
                    "`path` and `source` are both set",
                    "keep one: `path` for local weights, `source` for the embedded or a Hugging Face model",
                ));
            }
            if s != "smollm2" && !s.starts_with("hf://") {
                return Err(ParamError::new(
                    "source",
                    format!("unknown model source `{s}`"),
                    "use `source = \"smollm2\"`, `source = \"hf://org/name@revision\"`, or `path = \"...\"` for local weights",
                ));
            }
        }
        if let Some(d) = params.get("device").and_then(Value::as_str)
            && !is_device(d)
        {
            return Err(ParamError::new(
                "device",
                format!("unknown device `{d}`"),
                "use `auto`, `cpu` or `cuda:N` (`cuda` = `cuda:0`)",
            ));
        }
        Ok(())
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let (location, content) = match (ctx.str("path"), ctx.str("source")) {
            (Some(p), None) => (p.to_string(), Some(fingerprint(Path::new(p))?)),
            (None, Some("smollm2")) => {
                let p = embedded_smollm2();
                if !p.exists() {
                    return Err(NodeError::msg(format!("The embedded default model is not at `{}`", p.display()))
                        .hint("run `scripts/setup.sh` (the README's commands do), or set DAG_SMOLLM2_GGUF"));
                }
                (p.display().to_string(), Some(fingerprint(&p)?))
            }
            (None, Some(s)) if s.starts_with("hf://") => (s.to_string(), None),
            (None, Some(s)) => {
                return Err(NodeError::msg(format!("Unknown model source `{s}`"))
                    .hint("use `source = \"smollm2\"`, `source = \"hf://org/name@revision\"`, or `path = \"...\"` for local weights"));
            }
            (Some(_), Some(_)) => {
                return Err(NodeError::msg("Both `path` and `source` are set").hint("keep one"));
            }
            (None, None) => {
                return Err(NodeError::msg("No model given")
                    .hint("add `source = \"smollm2\"` or `path = \"models/...\"`"));
            }
        };
        let dir = ctx.output_path("model");
        let reference = dag_protocol::models::ModelRef {
            location,
            content,
            device: ctx.str("device").map(str::to_string),
            dtype: ctx.str("dtype").map(str::to_string),
            adapter: None,
            weights: None,
            step: None,
        };
        std::fs::write(
            dir.join("model.json"),
            serde_json::to_vec_pretty(&reference).expect("serialises"),
        )
        .map_err(|e| NodeError::caused("Failed to write model.json", &e))?;
        ctx.set_meta(
            "model",
            serde_json::to_value(&reference).expect("serialises"),
        );
        Ok(())
    }
}

/// The `generate` node type (runs in dag-worker).
pub fn generate() -> WorkerNode {
    WorkerNode(NodeSpec {
        name: "generate",
        version: 1,
        doc: "Generates completions for every row of a dataset: the user message is `prompt` with `{column}` \
              placeholders filled from the row, rendered with the model's chat template (after `system_prompt` \
              when given). Batched with a KV cache; greedy at temperature 0, else seeded sampling: each row draws from \
              its own seed, whatever the batch. The logits those draws apply to can differ in the last \
              bits with the batch's padding, so a different `batch_size` (part of the cache key) can flip \
              a rare token; the same batch_size gives the same completions. Resumable per row after a kill.",
        inputs: vec![
            PortSpec::new("dataset", ArtifactKind::Dataset, "rows to prompt with"),
            PortSpec::new(
                "model",
                ArtifactKind::Model,
                "the model (a `model` node, or a finetune checkpoint)",
            ),
        ],
        outputs: vec![PortSpec::new(
            "generations",
            ArtifactKind::Generations,
            "one row per sample: the dataset row, prompt, completion, finish_reason, token counts",
        )],
        params: ParamSpec::from_params::<GenerateParams>(),
        resources: Resources::GPU,
    })
}
