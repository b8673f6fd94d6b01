//! [`Model`]: a loaded decoder with its tokenizer and chat template, on one device and dtype.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use tch::{Kind, nn};

use crate::chat::{ChatTemplate, Message};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::hub::HubRef;
use crate::llama::Transformer;
use crate::tokenizer::Tokenizer;
use crate::weights::{self, WeightSource};

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A `.gguf` file.
    Gguf(PathBuf),
    /// A Hugging Face model folder (config.json, safetensors, tokenizer files).
    HfDir(PathBuf),
    /// A Hugging Face hub reference, downloaded into (or found in) the local HF cache.
    Hub(HubRef),
}

impl FromStr for ModelSource {
    type Err = Error;

    /// `hf://org/name[@revision]`, a path to a `.gguf` file, or a path to a model folder.
    fn from_str(s: &str) -> Result<ModelSource> {
        if s.starts_with("hf://") {
            return s.parse().map(ModelSource::Hub);
        }
        let path = PathBuf::from(s);
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        {
            Ok(ModelSource::Gguf(path))
        } else {
            Ok(ModelSource::HfDir(path))
        }
    }
}

/// Storage/compute precision of the weights and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    /// 32-bit float (the default on CPU).
    F32,
    /// IEEE half.
    F16,
    /// bfloat16 (the default on CUDA).
    Bf16,
}

impl DType {
    /// The libtorch kind.
    pub fn kind(self) -> Kind {
        match self {
            DType::F32 => Kind::Float,
            DType::F16 => Kind::Half,
            DType::Bf16 => Kind::BFloat16,
        }
    }

    /// `f32`, `f16` or `bf16`.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::Bf16 => "bf16",
        }
    }
}

impl FromStr for DType {
    type Err = Error;

    fn from_str(s: &str) -> Result<DType> {
        match s {
            "f32" | "float32" => Ok(DType::F32),
            "f16" | "float16" => Ok(DType::F16),
            "bf16" | "bfloat16" => Ok(DType::Bf16),
            other => Err(Error::UnknownName {
                what: "dtype",
                name: other.to_string(),
                expected: &["f32", "f16", "bf16"],
            }),
        }
    }
}

/// `auto`, `cpu` or `cuda:N` (`cuda` = `cuda:0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// CUDA device 0 when libtorch sees one, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// A CUDA device by index.
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<DeviceSpec> {
        let bad = |reason: &str| Error::Device {
            device: s.to_string(),
            reason: reason.to_string(),
        };
        match s {
            "auto" => Ok(DeviceSpec::Auto),
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(|| bad("expected `auto`, `cpu` or `cuda:N`")),
        }
    }
}

impl DeviceSpec {
    /// The concrete device, checking that a requested CUDA device exists.
    pub fn resolve(self) -> Result<tch::Device> {
        match self {
            DeviceSpec::Cpu => Ok(tch::Device::Cpu),
            DeviceSpec::Auto => Ok(tch::Device::cuda_if_available()),
            DeviceSpec::Cuda(i) => {
                let count = tch::Cuda::device_count() as usize;
                if i < count {
                    Ok(tch::Device::Cuda(i))
                } else {
                    Err(Error::Device {
                        device: format!("cuda:{i}"),
                        reason: format!("libtorch sees {count} CUDA device(s)"),
                    })
                }
            }
        }
    }
}

/// How to place a model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Target device.
    pub device: DeviceSpec,
    /// Precision; `None` = f32 on CPU, bf16 on CUDA.
    pub dtype: Option<DType>,
}

/// A loaded model: decoder weights, tokenizer, chat template, EOS ids, device and dtype.
pub struct Model {
    pub(crate) transformer: Transformer,
    // Owns the weights the transformer's tensors alias; kept for LoRA/finetuning access.
    vs: nn::VarStore,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    pub(crate) eos_token_ids: Vec<u32>,
    pub(crate) pad_token_id: u32,
    device: tch::Device,
    dtype: DType,
    pub(crate) identity: String,
    pub(crate) lora: Option<crate::lora::Lora>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("architecture", &self.config().architecture)
            .field("device", &self.device)
            .field("dtype", &self.dtype)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
struct GenerationConfig {
    eos_token_id: Option<serde_json::Value>,
    pad_token_id: Option<u32>,
}

fn ids_of(v: &serde_json::Value) -> Vec<u32> {
    match v {
        serde_json::Value::Number(n) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
        serde_json::Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_u64())
            .map(|x| x as u32)
            .collect(),
        _ => Vec::new(),
    }
}

impl Model {
    /// Loads from a reference string (see [`ModelSource::from_str`]).
    pub fn from_reference(reference: &str, opts: LoadOptions) -> Result<Model> {
        Model::load(&reference.parse()?, opts)
    }

    /// Loads a model and places it on `opts.device` in `opts.dtype`.
    pub fn load(source: &ModelSource, opts: LoadOptions) -> Result<Model> {
        let device = opts.device.resolve()?;
        let dtype = opts.dtype.unwrap_or(if device.is_cuda() {
            DType::Bf16
        } else {
            DType::F32
        });
        match source {
            ModelSource::Gguf(path) => Model::load_gguf(path, device, dtype),
            ModelSource::HfDir(dir) => Model::load_hf_dir(dir, device, dtype),
            ModelSource::Hub(r) => Model::load_hf_dir(&crate::hub::download(r)?, device, dtype),
        }
    }

    fn load_gguf(path: &Path, device: tch::Device, dtype: DType) -> Result<Model> {
        let file = GgufFile::open(path)?;
        let mut cfg = Config::from_gguf(&file)?;
        if let Some(factors) = file.tensor("rope_freqs.weight") {
            let f: Vec<f32> = Vec::try_from(factors.flatten(0, -1))
                .map_err(Error::torch("read `rope_freqs.weight`"))?;
            cfg.rope_scaling =
                crate::config::RopeScaling::Factors(f.into_iter().map(f64::from).collect());
        }
        let tokenizer = Tokenizer::from_gguf(&file)?;
        let pad = file
            .metadata
            .get("tokenizer.ggml.padding_token_id")
            .and_then(crate::gguf::Value::as_u64)
            .map(|x| x as u32);
        let mut hasher = blake3::Hasher::new();
        hasher.update_mmap_rayon(path).map_err(Error::io(path))?;
        let weights_hash = hasher.finalize();
        let eos = cfg.eos_token_ids.clone();
        let source = WeightSource::gguf(file, &cfg);
        Model::assemble(
            cfg,
            &source,
            tokenizer,
            eos,
            pad,
            weights_hash,
            device,
            dtype,
        )
    }

    fn load_hf_dir(dir: &Path, device: tch::Device, dtype: DType) -> Result<Model> {
        let config_path = dir.join("config.json");
        if !config_path.exists() {
            return Err(Error::Config {
                path: dir.to_path_buf(),
                reason: "no `config.json`; not a Hugging Face model folder".into(),
            });
        }
        let cfg = Config::from_hf_json(&config_path)?;
        let shards = safetensors_files(dir)?;
        let mut hasher = blake3::Hasher::new();
        for shard in &shards {
            hasher.update_mmap_rayon(shard).map_err(Error::io(shard))?;
        }
        let weights_hash = hasher.finalize();
        let tokenizer = Tokenizer::from_hf_dir(dir)?;
        let mut eos = cfg.eos_token_ids.clone();
        let mut pad = None;
        let gen_path = dir.join("generation_config.json");
        if gen_path.exists() {
            let text = std::fs::read_to_string(&gen_path).map_err(Error::io(&gen_path))?;
            let generation: GenerationConfig =
                serde_json::from_str(&text).map_err(|source| Error::Json {
                    path: gen_path.clone(),
                    source,
                })?;
            // transformers' generate() stops on the generation config's EOS ids when present.
            if let Some(v) = &generation.eos_token_id {
                eos = ids_of(v);
            }
            pad = generation.pad_token_id;
        }
        if eos.is_empty()
            && let Some(id) = tokenizer
                .special
                .eos
                .as_deref()
                .and_then(|t| tokenizer.token_to_id(t))
        {
            eos.push(id);
        }
        let source = WeightSource::safetensors(&shards)?;
        Model::assemble(
            cfg,
            &source,
            tokenizer,
            eos,
            pad,
            weights_hash,
            device,
            dtype,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        cfg: Config,
        source: &WeightSource,
        tokenizer: Tokenizer,
        eos_token_ids: Vec<u32>,
        pad: Option<u32>,
        weights_hash: blake3::Hash,
        device: tch::Device,
        dtype: DType,
    ) -> Result<Model> {
        let mut vs = nn::VarStore::new(device);
        let transformer = Transformer::new(&cfg, vs.root());
        vs.set_kind(dtype.kind());
        weights::load(&vs, source)?;
        let template = tokenizer
            .chat_template
            .as_deref()
            .map(|src| ChatTemplate::new(src, tokenizer.special.clone()))
            .transpose()?;
        let pad_token_id = pad
            .or_else(|| {
                tokenizer
                    .special
                    .pad
                    .as_deref()
                    .and_then(|t| tokenizer.token_to_id(t))
            })
            .or(eos_token_ids.first().copied())
            .unwrap_or(0);
        let mut h = blake3::Hasher::new();
        h.update(b"dag-runtime model identity v1\n");
        h.update(format!("{cfg:?}\n").as_bytes());
        h.update(dtype.name().as_bytes());
        h.update(weights_hash.as_bytes());
        h.update(tokenizer.to_json()?.as_bytes());
        h.update(tokenizer.chat_template.as_deref().unwrap_or("").as_bytes());
        h.update(format!("{eos_token_ids:?}").as_bytes());
        let identity = h.finalize().to_hex().to_string();
        Ok(Model {
            transformer,
            vs,
            tokenizer,
            template,
            eos_token_ids,
            pad_token_id,
            device,
            dtype,
            identity,
            lora: None,
        })
    }

    /// A blake3 hex digest of everything that decides the model's outputs: weight file bytes,
    /// configuration, tokenizer, chat template, EOS ids and dtype. Equal for the same files
    /// loaded anywhere; independent of the device.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The model configuration.
    pub fn config(&self) -> &Config {
        self.transformer.config()
    }

    /// The tokenizer (with special tokens and chat template source).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Where the weights live.
    pub fn device(&self) -> tch::Device {
        self.device
    }

    /// The weights' precision.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Token ids that end a generation (from generation_config.json, config.json or GGUF).
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos_token_ids
    }

    /// The variable store holding every weight under its Hugging Face name.
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    /// Whether the model has a chat template.
    pub fn has_chat_template(&self) -> bool {
        self.template.is_some()
    }

    /// Renders `messages` with the model's chat template (as transformers'
    /// `apply_chat_template(messages, tokenize=False, add_generation_prompt=...)`).
    pub fn render_chat(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        self.template
            .as_ref()
            .ok_or(Error::NoChatTemplate)?
            .render(messages, add_generation_prompt)
    }
}

/// The distinct shard file names a `model.safetensors.index.json` lists, sorted.
pub(crate) fn shard_names(index: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index).map_err(Error::io(index))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|source| Error::Json {
        path: index.to_path_buf(),
        source,
    })?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::Config {
            path: index.to_path_buf(),
            reason: "no `weight_map` object".into(),
        })?;
    let mut shards: Vec<String> = map
        .values()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    shards.sort();
    shards.dedup();
    Ok(shards)
}

/// The safetensors files of a folder: the shards listed by `model.safetensors.index.json`, or
/// `model.safetensors`. Pickled `.bin` checkpoints are refused.
fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let shards = shard_names(&index)?;
        return Ok(shards.into_iter().map(|s| dir.join(s)).collect());
    }
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    if dir.join("pytorch_model.bin").exists() || dir.join("pytorch_model.bin.index.json").exists() {
        return Err(Error::PickleRefused {
            path: dir.to_path_buf(),
        });
    }
    Err(Error::Config {
        path: dir.to_path_buf(),
        reason: "no `model.safetensors` or `model.safetensors.index.json`".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sources_devices_and_dtypes() {
        assert_eq!(
            "m/x.GGUF".parse::<ModelSource>().unwrap(),
            ModelSource::Gguf("m/x.GGUF".into())
        );
        assert_eq!(
            "m/dir".parse::<ModelSource>().unwrap(),
            ModelSource::HfDir("m/dir".into())
        );
        assert!(matches!(
            "hf://org/name@main".parse::<ModelSource>().unwrap(),
            ModelSource::Hub(_)
        ));
        assert_eq!("cuda:1".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(1));
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert!("gpu".parse::<DeviceSpec>().is_err());
        assert_eq!("bf16".parse::<DType>().unwrap(), DType::Bf16);
    }

    #[test]
    fn refuses_pickled_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pytorch_model.bin"), b"x").unwrap();
        let err = safetensors_files(dir.path()).unwrap_err();
        assert!(matches!(err, Error::PickleRefused { .. }));
        assert!(err.to_string().contains("arbitrary code"));
        assert!(
            dag_diagnostic::Hint::hint(&err).is_some_and(|h| h.contains("safetensors")),
            "{err}"
        );
    }
}
