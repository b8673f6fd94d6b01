//! LoRA adapters: low-rank deltas on the decoder's projections, in the PEFT file layout.
//!
//! A wrapped projection computes `W x + b + (alpha / r) · B A dropout(x)` with `A` of shape
//! `[r, in]` and `B` of shape `[out, r]`, as PEFT's `lora.Linear` does (`B` starts at zero,
//! so an untrained adapter leaves the model unchanged). The base weights are never touched
//! while an adapter is attached; [`Model::merge_lora`] folds the delta into them.
//!
//! On disk an adapter is what PEFT's `save_pretrained` writes and `PeftModel.from_pretrained`
//! reads: `adapter_config.json` and `adapter_model.safetensors` with tensors named
//! `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::error::{Error, Result};
use crate::llama::Transformer;
use crate::model::Model;

/// The projections an adapter may wrap, as PEFT names them in `target_modules`: the list
/// the specs check graphs against at load, so both sides share it.
pub use dag_protocol::models::TARGET_MODULES;

/// The names a target module may be given by: [`TARGET_MODULES`], then their short forms.
const TARGET_NAMES: [&str; 14] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
    "q",
    "k",
    "v",
    "o",
    "gate",
    "up",
    "down",
];

/// File names PEFT uses for an adapter folder.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// See [`CONFIG_FILE`].
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// Rank, scaling, dropout and the modules an adapter wraps.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    /// Rank `r` of the update.
    pub rank: i64,
    /// `lora_alpha`: the update is scaled by `alpha / r` (or `alpha / sqrt(r)` with rsLoRA).
    pub alpha: f64,
    /// Dropout on the adapter's input while training.
    pub dropout: f64,
    /// Wrapped modules, PEFT names (`q_proj`...), in [`TARGET_MODULES`] order.
    pub target_modules: Vec<String>,
    /// rsLoRA scaling (`alpha / sqrt(r)`), as PEFT's `use_rslora`.
    pub use_rslora: bool,
}

impl LoraConfig {
    /// Validates the settings; `targets` may use short names (`q`, `gate`) or PEFT names
    /// (`q_proj`). An unknown name is an error that lists the valid ones.
    pub fn new(rank: i64, alpha: f64, dropout: f64, targets: &[String]) -> Result<LoraConfig> {
        if rank < 1 {
            return Err(Error::Setting {
                action: "configure LoRA",
                setting: "rank",
                value: rank as f64,
                allowed: "at least 1",
            });
        }
        if !(0.0..1.0).contains(&dropout) {
            return Err(Error::Setting {
                action: "configure LoRA",
                setting: "dropout",
                value: dropout,
                allowed: "in [0, 1)",
            });
        }
        if targets.is_empty() {
            return Err(Error::EmptyInput {
                action: "configure LoRA",
                what: "the list of target modules",
            });
        }
        let mut wanted = Vec::new();
        for t in targets {
            let full = if t.ends_with("_proj") {
                t.clone()
            } else {
                format!("{t}_proj")
            };
            if !TARGET_MODULES.contains(&full.as_str()) {
                return Err(Error::UnknownName {
                    what: "LoRA target module",
                    name: t.clone(),
                    expected: &TARGET_NAMES,
                });
            }
            wanted.push(full);
        }
        let target_modules = TARGET_MODULES
            .iter()
            .filter(|m| wanted.iter().any(|w| w == *m))
            .map(|m| m.to_string())
            .collect();
        Ok(LoraConfig {
            rank,
            alpha,
            dropout,
            target_modules,
            use_rslora: false,
        })
    }

    /// The factor applied to `B A x`.
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.rank as f64).sqrt()
        } else {
            self.alpha / self.rank as f64
        }
    }

    fn wraps(&self, hf_name: &str) -> bool {
        self.target_modules
            .iter()
            .any(|m| hf_name.ends_with(&format!(".{m}")))
    }
}

/// `adapter_config.json` as PEFT writes it (fields this runtime reads or must refuse).
#[derive(Debug, Serialize, Deserialize)]
struct PeftConfig {
    peft_type: String,
    r: i64,
    lora_alpha: f64,
    #[serde(default)]
    lora_dropout: f64,
    target_modules: serde_json::Value,
    #[serde(default)]
    use_rslora: bool,
    #[serde(default)]
    use_dora: bool,
    #[serde(default)]
    fan_in_fan_out: bool,
    #[serde(default)]
    bias: Option<String>,
    #[serde(default)]
    rank_pattern: serde_json::Value,
    #[serde(default)]
    alpha_pattern: serde_json::Value,
    #[serde(default)]
    modules_to_save: serde_json::Value,
    #[serde(default)]
    layers_to_transform: serde_json::Value,
    #[serde(default)]
    lora_bias: bool,
    #[serde(default)]
    exclude_modules: serde_json::Value,
    #[serde(default)]
    target_parameters: serde_json::Value,
    #[serde(default)]
    trainable_token_indices: serde_json::Value,
    #[serde(default)]
    layer_replication: serde_json::Value,
}

/// The low-rank delta one projection carries.
#[derive(Debug)]
pub struct LoraDelta {
    /// `[r, in]`.
    pub a: Tensor,
    /// `[out, r]`.
    pub b: Tensor,
    scale: f64,
    dropout: f64,
    training: Arc<AtomicBool>,
}

impl LoraDelta {
    /// `scale · B A dropout(x)` over the last dimension, computed in the adapter's precision
    /// (f32) and returned in `x`'s.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let train = self.training.load(Ordering::Relaxed);
        let x32 = x.to_kind(self.a.kind());
        let x32 = if train && self.dropout > 0.0 {
            dropout(&x32, self.dropout)
        } else {
            x32
        };
        (x32.linear::<Tensor>(&self.a, None)
            .linear::<Tensor>(&self.b, None)
            * self.scale)
            .to_kind(x.kind())
    }
}

/// Inverted dropout (`x · mask / (1 - p)`) during training.
///
/// On the CPU, libtorch draws dropout masks one element at a time from a single mt19937
/// stream (its parallel MKL sampler is reserved for Intel processors): with seven adapters
/// per block that was a seventh of a LoRA training step on a 2-core AMD machine, with the
/// other core idle. Here the mask comes from ChaCha8 streams, one per chunk, filled in
/// parallel. Their key is drawn from libtorch's generator, so reseeding it replays the same
/// masks, which is what gradient checkpointing's recomputation relies on. Other devices keep
/// libtorch's fused kernel.
fn dropout(x: &Tensor, p: f64) -> Tensor {
    if x.device() != tch::Device::Cpu {
        return x.dropout(p, true);
    }
    let key = Tensor::randint(i64::MAX, [1], (Kind::Int64, tch::Device::Cpu)).int64_value(&[0]);
    x * dropout_mask(x.numel(), p, key as u64).view(x.size().as_slice())
}

/// `n` values, each `1 / (1 - p)` with probability `1 - p` and 0 otherwise, from the
/// ChaCha8 streams of `key` (one stream per chunk of 2¹⁶ values, so the mask does not depend
/// on how many threads fill it).
fn dropout_mask(n: usize, p: f64, key: u64) -> Tensor {
    use rand::{RngCore, SeedableRng};
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 16;
    // A value survives when a uniform u32 is at or above p·2³²: probability 1 - p to 2⁻³².
    let threshold = (p * 4_294_967_296.0).round().min(f64::from(u32::MAX)) as u32;
    let kept = (1.0 / (1.0 - p)) as f32;
    let mut mask = vec![0f32; n];
    mask.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(chunk, values)| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(key);
            rng.set_stream(chunk as u64);
            for v in values {
                *v = if rng.next_u32() >= threshold {
                    kept
                } else {
                    0.0
                };
            }
        });
    Tensor::from_slice(&mask)
}

/// The adapters attached to a model: one [`LoraDelta`] per wrapped projection, whose tensors
/// are shared (not copied) with the projections that apply them.
#[derive(Debug)]
pub struct Lora {
    config: LoraConfig,
    /// `(HF module name, A, B)` in layer order.
    modules: Vec<(String, Tensor, Tensor)>,
    training: Arc<AtomicBool>,
}

fn peft_name(module: &str, which: &str) -> String {
    format!("base_model.model.{module}.lora_{which}.weight")
}

impl Lora {
    fn attach(transformer: &mut Transformer, config: LoraConfig, seed: u64) -> Lora {
        let training = Arc::new(AtomicBool::new(false));
        // The adapter's initial A is drawn from libtorch's global generator, seeded here so the
        // same seed gives the same adapter whatever ran before.
        tch::manual_seed(seed as i64);
        let mut modules = Vec::new();
        for (name, lin) in transformer.projections_mut() {
            if !config.wraps(&name) {
                continue;
            }
            let (out, inp) = (lin.weight.size()[0], lin.weight.size()[1]);
            let opts = (Kind::Float, lin.weight.device());
            // PEFT: kaiming_uniform_(A, a=sqrt(5)), i.e. U(-1/sqrt(in), 1/sqrt(in)); B = 0.
            let bound = 1.0 / (inp as f64).sqrt();
            // Adapters stay f32 over a bf16/f16 base (PEFT's `autocast_adapter_dtype`): they
            // are the trained weights, and low-precision updates of them would round away.
            let a = Tensor::empty([config.rank, inp], opts)
                .uniform_(-bound, bound)
                .set_requires_grad(true);
            let b = Tensor::zeros([out, config.rank], opts).set_requires_grad(true);
            lin.lora = Some(LoraDelta {
                a: a.shallow_clone(),
                b: b.shallow_clone(),
                scale: config.scale(),
                dropout: config.dropout,
                training: training.clone(),
            });
            modules.push((name, a, b));
        }
        Lora {
            config,
            modules,
            training,
        }
    }

    /// The adapter's settings.
    pub fn config(&self) -> &LoraConfig {
        &self.config
    }

    /// Every adapter tensor under its PEFT name, `lora_A` before `lora_B`, in layer order.
    /// These share storage with the model: updating them in place updates the model.
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(self.modules.len() * 2);
        for (name, a, b) in &self.modules {
            out.push((peft_name(name, "A"), a.shallow_clone()));
            out.push((peft_name(name, "B"), b.shallow_clone()));
        }
        out
    }

    /// Turns adapter dropout on (training) or off (inference, the default).
    pub fn set_training(&self, on: bool) {
        self.training.store(on, Ordering::Relaxed);
    }

    /// Writes `adapter_config.json` and `adapter_model.safetensors` into `dir` (created if
    /// needed), loadable by PEFT's `PeftModel.from_pretrained(base, dir)`.
    pub fn save(&self, dir: &Path, base_model: &str) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
        let c = &self.config;
        let config = serde_json::json!({
            "alpha_pattern": {},
            "auto_mapping": null,
            "base_model_name_or_path": base_model,
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "layers_pattern": null,
            "layers_to_transform": null,
            "lora_alpha": c.alpha,
            "lora_dropout": c.dropout,
            "modules_to_save": null,
            "peft_type": "LORA",
            "r": c.rank,
            "rank_pattern": {},
            "revision": null,
            "target_modules": c.target_modules,
            "task_type": "CAUSAL_LM",
            "use_dora": false,
            "use_rslora": c.use_rslora,
        });
        let path = dir.join(CONFIG_FILE);
        std::fs::write(
            &path,
            serde_json::to_vec_pretty(&config).expect("json serialises"),
        )
        .map_err(Error::io(&path))?;
        write_safetensors(&dir.join(WEIGHTS_FILE), &self.parameters())
    }
}

/// Writes `tensors` (any dtype tch can name, converted to f32 when not f32/bf16/f16) to a
/// safetensors file with the `{"format": "pt"}` metadata transformers expects.
pub fn write_safetensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    use safetensors::Dtype;
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t.detach().to_device(tch::Device::Cpu).contiguous();
        let (dtype, t) = match t.kind() {
            Kind::BFloat16 => (Dtype::BF16, t),
            Kind::Half => (Dtype::F16, t),
            _ => (Dtype::F32, t.to_kind(Kind::Float)),
        };
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        let mut bytes = vec![0u8; t.numel() * t.kind().elt_size_in_bytes()];
        t.f_copy_data_u8(&mut bytes, t.numel())
            .map_err(Error::torch(format!("read tensor `{name}`")))?;
        owned.push((name.clone(), dtype, shape, bytes));
    }
    let views = owned
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes)
                .map(|v| (name.as_str(), v))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|source| Error::Safetensors {
            path: path.to_path_buf(),
            source,
        })?;
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::tensor::serialize_to_file(views, Some(meta), path).map_err(|source| {
        Error::Safetensors {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Reads every tensor of a safetensors file.
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let tensors = Tensor::read_safetensors(path)
        .map_err(Error::torch(format!("read `{}`", path.display())))?;
    Ok(tensors.into_iter().collect())
}

fn read_peft_config(dir: &Path) -> Result<LoraConfig> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
    let c: PeftConfig = serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.clone(),
        source,
    })?;
    let refuse = |reason: &str| Error::Config {
        path: path.clone(),
        reason: reason.to_string(),
    };
    if c.peft_type != "LORA" {
        return Err(refuse(&format!(
            "`peft_type` is `{}`; only LORA adapters load here",
            c.peft_type
        )));
    }
    if c.use_dora || c.fan_in_fan_out {
        return Err(refuse("DoRA and fan_in_fan_out adapters are not supported"));
    }
    if c.lora_bias || c.bias.as_deref().is_some_and(|b| b != "none") {
        return Err(refuse("adapters that train biases are not supported"));
    }
    let nonempty = |v: &serde_json::Value| match v {
        serde_json::Value::Null => false,
        serde_json::Value::Object(m) => !m.is_empty(),
        serde_json::Value::Array(a) => !a.is_empty(),
        _ => true,
    };
    if nonempty(&c.rank_pattern)
        || nonempty(&c.alpha_pattern)
        || nonempty(&c.modules_to_save)
        || nonempty(&c.layers_to_transform)
        || nonempty(&c.exclude_modules)
        || nonempty(&c.target_parameters)
        || nonempty(&c.trainable_token_indices)
        || nonempty(&c.layer_replication)
    {
        return Err(refuse(
            "per-module ranks, `modules_to_save`, `layers_to_transform`, `exclude_modules`, `target_parameters`, `trainable_token_indices` and `layer_replication` are not supported",
        ));
    }
    let targets: Vec<String> = match &c.target_modules {
        serde_json::Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        other => {
            return Err(refuse(&format!(
                "`target_modules` must be a list of names, got {other}"
            )));
        }
    };
    let mut cfg = LoraConfig::new(c.r, c.lora_alpha, c.lora_dropout, &targets).map_err(|e| {
        Error::Config {
            path: path.clone(),
            reason: e.to_string(),
        }
    })?;
    cfg.use_rslora = c.use_rslora;
    Ok(cfg)
}

impl Model {
    /// Wraps the projections named by `config` with fresh adapters (A random from `seed`,
    /// B zero) and freezes every base weight.
    pub fn attach_lora(&mut self, config: LoraConfig, seed: u64) -> Result<&Lora> {
        if self.lora.is_some() {
            return Err(Error::AdapterAttached);
        }
        for (_, var) in self.var_store().variables() {
            let _ = var.set_requires_grad(false);
        }
        let lora = Lora::attach(&mut self.transformer, config, seed);
        Ok(self.lora.insert(lora))
    }

    /// The attached adapter, if any.
    pub fn lora(&self) -> Option<&Lora> {
        self.lora.as_ref()
    }

    /// Loads a PEFT adapter folder (`adapter_config.json` + `adapter_model.safetensors`) onto
    /// this model. The model's identity then covers the adapter's bytes too.
    pub fn load_adapter(&mut self, dir: &Path) -> Result<()> {
        let config = read_peft_config(dir)?;
        let weights_path = dir.join(WEIGHTS_FILE);
        let mut stored = read_safetensors(&weights_path)?;
        let lora = self.attach_lora(config, 0)?;
        let _guard = tch::no_grad_guard();
        for (name, mut t) in lora.parameters() {
            let src = stored.remove(&name).ok_or_else(|| Error::MissingTensor {
                name: name.clone(),
                path: weights_path.clone(),
            })?;
            if src.size() != t.size() {
                return Err(Error::ShapeMismatch {
                    name,
                    expected: t.size(),
                    found: src.size(),
                });
            }
            t.f_copy_(&src)
                .map_err(Error::torch(format!("copy adapter tensor `{name}`")))?;
        }
        if let Some(extra) = stored.keys().next() {
            return Err(Error::Config {
                path: weights_path,
                reason: format!(
                    "tensor `{extra}` wraps a module this model does not have or the config does not target"
                ),
            });
        }
        let mut h = blake3::Hasher::new();
        h.update(b"dag-runtime model identity v1 + lora adapter\n");
        h.update(self.identity.as_bytes());
        for f in [CONFIG_FILE, WEIGHTS_FILE] {
            let p = dir.join(f);
            h.update(f.as_bytes());
            h.update_mmap_rayon(&p).map_err(Error::io(&p))?;
        }
        self.identity = h.finalize().to_hex().to_string();
        Ok(())
    }

    /// Folds the attached adapter into the base weights (`W += scale · B A`) and detaches
    /// it, so the model runs at base speed with the adapted behaviour.
    pub fn merge_lora(&mut self) -> Result<()> {
        let Some(lora) = self.lora.take() else {
            return Err(Error::NoAdapter {
                action: "merge the adapter",
            });
        };
        let _guard = tch::no_grad_guard();
        let scale = lora.config.scale();
        for (name, lin) in self.transformer.projections_mut() {
            if let Some(delta) = lin.lora.take() {
                let update = delta
                    .b
                    .to_kind(Kind::Float)
                    .matmul(&delta.a.to_kind(Kind::Float))
                    * scale;
                let merged = lin.weight.to_kind(Kind::Float) + update;
                lin.weight
                    .f_copy_(&merged)
                    .map_err(Error::torch(format!("merge the adapter into `{name}`")))?;
            }
        }
        Ok(())
    }
}

impl Model {
    /// Writes every weight of the model, with the attached adapter folded into the projections
    /// it wraps, to one safetensors file under Hugging Face names (the model itself keeps its
    /// adapter). Tied embeddings are written once, as `model.embed_tokens.weight`.
    pub fn write_merged(&self, path: &Path) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let deltas: HashMap<String, (&Tensor, &Tensor)> = self
            .lora
            .iter()
            .flat_map(|l| l.modules.iter())
            .map(|(name, a, b)| (format!("{name}.weight"), (a, b)))
            .collect();
        let scale = self.lora.as_ref().map_or(0.0, |l| l.config.scale());
        let mut vars: Vec<(String, Tensor)> = self.var_store().variables().into_iter().collect();
        vars.sort_by(|x, y| x.0.cmp(&y.0));
        for (name, w) in &mut vars {
            if let Some((a, b)) = deltas.get(name.as_str()) {
                let update = b.to_kind(Kind::Float).matmul(&a.to_kind(Kind::Float)) * scale;
                *w = (w.to_kind(Kind::Float) + update).to_kind(w.kind());
            }
        }
        write_safetensors(path, &vars)
    }

    /// Overwrites weights with those of a safetensors file under Hugging Face names (a full
    /// finetuning checkpoint); every tensor must name a weight of this model with its shape.
    /// The model's identity then covers the file's bytes.
    pub fn load_weights(&mut self, path: &Path) -> Result<()> {
        let stored = read_safetensors(path)?;
        let vars = self.var_store().variables();
        let _guard = tch::no_grad_guard();
        for (name, src) in stored {
            let mut dst = vars
                .get(&name)
                .ok_or_else(|| Error::Config {
                    path: path.to_path_buf(),
                    reason: format!("tensor `{name}` is not a weight of this model"),
                })?
                .shallow_clone();
            if src.size() != dst.size() {
                return Err(Error::ShapeMismatch {
                    name,
                    expected: dst.size(),
                    found: src.size(),
                });
            }
            dst.f_copy_(&src)
                .map_err(Error::torch(format!("copy weight `{name}`")))?;
        }
        let mut h = blake3::Hasher::new();
        h.update(b"dag-runtime model identity v1 + finetuned weights\n");
        h.update(self.identity.as_bytes());
        h.update_mmap_rayon(path).map_err(Error::io(path))?;
        self.identity = h.finalize().to_hex().to_string();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn targets_accept_short_and_peft_names_and_reject_unknown_ones() {
        let c = LoraConfig::new(4, 8.0, 0.0, &names(&["v", "q_proj", "down"])).unwrap();
        assert_eq!(c.target_modules, names(&["q_proj", "v_proj", "down_proj"]));
        assert_eq!(c.scale(), 2.0);
        let err = LoraConfig::new(4, 8.0, 0.0, &names(&["qkv"])).unwrap_err();
        assert!(
            matches!(&err, Error::UnknownName { name, .. } if name == "qkv"),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("unknown LoRA target module `qkv`") && msg.contains("gate_proj"),
            "{msg}"
        );
        let err = LoraConfig::new(0, 8.0, 0.0, &names(&["q"])).unwrap_err();
        assert!(
            matches!(err, Error::Setting { setting: "rank", value, .. } if value == 0.0),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "Failed to configure LoRA: `rank` must be at least 1, got 0"
        );
        let err = LoraConfig::new(4, 8.0, 1.0, &names(&["q"])).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Setting {
                    setting: "dropout",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = LoraConfig::new(4, 8.0, 0.0, &[]).unwrap_err();
        assert!(matches!(err, Error::EmptyInput { .. }), "{err:?}");
    }

    #[test]
    fn every_target_name_is_a_module_or_its_short_form() {
        let (long, short) = TARGET_NAMES.split_at(TARGET_MODULES.len());
        assert_eq!(long, TARGET_MODULES);
        for (l, s) in long.iter().zip(short) {
            assert_eq!(*l, format!("{s}_proj"));
        }
    }

    #[test]
    fn dropout_masks_keep_1_minus_p_scaled_and_replay_from_their_key() {
        let n = 3 * (1 << 16) + 123;
        let mask = |key| Vec::<f32>::try_from(dropout_mask(n, 0.25, key)).unwrap();
        let a = mask(11);
        assert_eq!(a, mask(11), "the same key gives the same mask");
        assert_ne!(a, mask(12));
        let scale = 1.0 / 0.75f32;
        assert!(a.iter().all(|&v| v == 0.0 || v == scale));
        // 196,731 draws: the kept fraction's standard error is 0.001.
        let kept = a.iter().filter(|&&v| v > 0.0).count() as f64 / n as f64;
        assert!((kept - 0.75).abs() < 0.005, "kept {kept}");
        // Every chunk is its own stream, not a repeat of the first.
        assert_ne!(a[..1000], a[1 << 16..(1 << 16) + 1000]);
        // Expectation preserved: the mean of x · mask is close to the mean of x.
        let mean = a.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
        assert!((mean - 1.0).abs() < 0.01, "mean {mean}");
    }
}
