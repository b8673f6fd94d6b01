//! Model hyper-parameters: read from a Hugging Face `config.json` or from GGUF metadata into one
//! runtime [`Config`] that the decoder in [`crate::llama`] is built from.
//!
//! The three supported families differ only in switches of that one decoder:
//! - Llama (Llama 2/3.x, SmolLM2): optional `attention_bias`/`mlp_bias`, Llama-3 RoPE scaling.
//! - Qwen2/2.5: bias on the q/k/v projections only (not on `o_proj`).
//! - Qwen3: no projection bias, an RMSNorm over each head of q and k before RoPE, and an explicit
//!   `head_dim`.

use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::gguf::GgufFile;

/// The decoder families this runtime implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// `LlamaForCausalLM` / GGUF `llama`.
    Llama,
    /// `Qwen2ForCausalLM` / GGUF `qwen2`.
    Qwen2,
    /// `Qwen3ForCausalLM` / GGUF `qwen3`.
    Qwen3,
}

/// Names accepted in `config.json` `architectures` / `model_type` and GGUF
/// `general.architecture`, listed in errors.
pub const SUPPORTED_ARCHITECTURES: &str =
    "LlamaForCausalLM (llama), Qwen2ForCausalLM (qwen2), Qwen3ForCausalLM (qwen3)";

impl Architecture {
    fn from_name(name: &str) -> Option<Architecture> {
        match name {
            "LlamaForCausalLM" | "llama" => Some(Architecture::Llama),
            "Qwen2ForCausalLM" | "qwen2" => Some(Architecture::Qwen2),
            "Qwen3ForCausalLM" | "qwen3" => Some(Architecture::Qwen3),
            _ => None,
        }
    }

    fn unsupported(found: &str) -> Error {
        Error::UnsupportedArchitecture {
            found: found.to_string(),
            supported: SUPPORTED_ARCHITECTURES.to_string(),
        }
    }

    /// The canonical lower-case name (`llama`, `qwen2`, `qwen3`).
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
            Architecture::Qwen3 => "qwen3",
        }
    }
}

/// Llama 3.x frequency-dependent RoPE rescaling (`rope_type: "llama3"`).
#[derive(Debug, Clone, PartialEq)]
pub struct Llama3RopeScaling {
    /// Wavelength scale for low frequencies.
    pub factor: f64,
    /// Below this fraction of the original context, frequencies are scaled fully.
    pub low_freq_factor: f64,
    /// Above this fraction, frequencies are kept.
    pub high_freq_factor: f64,
    /// Context length of pre-training.
    pub original_max_position_embeddings: f64,
}

/// How RoPE frequencies are derived beyond `base^(-2i/d)`.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Llama 3.x scaling, computed from its parameters.
    Llama3(Llama3RopeScaling),
    /// Per-frequency divisors stored in a GGUF (`rope_freqs.weight`), as llama.cpp does for
    /// Llama 3.x; the loader fills these in.
    Factors(Vec<f64>),
}

/// Runtime hyper-parameters of a decoder.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Which family (decides the switches below and the GGUF tensor permutation).
    pub architecture: Architecture,
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: i64,
    /// Width of the residual stream.
    pub hidden_size: i64,
    /// Width of the SwiGLU hidden layer.
    pub intermediate_size: i64,
    /// Number of decoder blocks.
    pub num_hidden_layers: i64,
    /// Query heads.
    pub num_attention_heads: i64,
    /// Key/value heads (grouped-query attention when fewer than query heads).
    pub num_key_value_heads: i64,
    /// Width of one head.
    pub head_dim: i64,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// RoPE frequency rescaling.
    pub rope_scaling: RopeScaling,
    /// Longest supported context.
    pub max_position_embeddings: i64,
    /// Whether `lm_head` reuses `embed_tokens`.
    pub tie_word_embeddings: bool,
    /// Bias on q/k/v projections.
    pub qkv_bias: bool,
    /// Bias on the output projection.
    pub o_bias: bool,
    /// Bias on the MLP projections.
    pub mlp_bias: bool,
    /// RMSNorm over each head of q and k before RoPE (Qwen3).
    pub qk_norm: bool,
    /// End-of-sequence ids declared by the config (merged with the generation config's).
    pub eos_token_ids: Vec<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(u32),
    Many(Vec<u32>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<u32> {
        match self {
            OneOrMany::One(x) => vec![x],
            OneOrMany::Many(v) => v,
        }
    }
}

/// RoPE parameters as written by transformers 4 (`rope_scaling`) or 5 (`rope_parameters`).
#[derive(Debug, Deserialize, Default)]
struct HfRope {
    rope_type: Option<String>,
    #[serde(rename = "type")]
    legacy_type: Option<String>,
    rope_theta: Option<f64>,
    factor: Option<f64>,
    low_freq_factor: Option<f64>,
    high_freq_factor: Option<f64>,
    original_max_position_embeddings: Option<f64>,
}

/// `config.json` as Hugging Face writes it for the supported families (field names verbatim).
#[derive(Debug, Deserialize)]
struct HfConfig {
    architectures: Option<Vec<String>>,
    model_type: Option<String>,
    vocab_size: i64,
    hidden_size: i64,
    intermediate_size: i64,
    num_hidden_layers: i64,
    num_attention_heads: i64,
    num_key_value_heads: Option<i64>,
    head_dim: Option<i64>,
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    rope_scaling: Option<HfRope>,
    rope_parameters: Option<HfRope>,
    max_position_embeddings: i64,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    eos_token_id: Option<OneOrMany>,
    #[serde(default)]
    use_sliding_window: bool,
}

impl Config {
    /// Reads a Hugging Face `config.json`.
    pub fn from_hf_json(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
        let hf: HfConfig = serde_json::from_str(&text).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })?;
        let name = hf
            .architectures
            .as_ref()
            .and_then(|a| a.first().cloned())
            .or(hf.model_type.clone())
            .ok_or_else(|| Error::Config {
                path: path.to_path_buf(),
                reason: "neither `architectures` nor `model_type` is set".into(),
            })?;
        let architecture =
            Architecture::from_name(&name).ok_or_else(|| Architecture::unsupported(&name))?;
        if hf.use_sliding_window {
            return Err(Error::Config {
                path: path.to_path_buf(),
                reason: "`use_sliding_window: true` is not implemented; only full attention is"
                    .into(),
            });
        }
        let rope = hf.rope_parameters.or(hf.rope_scaling).unwrap_or_default();
        let rope_theta = rope.rope_theta.or(hf.rope_theta).unwrap_or(10_000.0);
        let rope_type = rope.rope_type.or(rope.legacy_type);
        let rope_scaling = match rope_type.as_deref() {
            None | Some("default") => RopeScaling::None,
            Some("llama3") => {
                let need = |v: Option<f64>, field: &str| {
                    v.ok_or_else(|| Error::Config {
                        path: path.to_path_buf(),
                        reason: format!("llama3 rope scaling lacks `{field}`"),
                    })
                };
                RopeScaling::Llama3(Llama3RopeScaling {
                    factor: need(rope.factor, "factor")?,
                    low_freq_factor: need(rope.low_freq_factor, "low_freq_factor")?,
                    high_freq_factor: need(rope.high_freq_factor, "high_freq_factor")?,
                    original_max_position_embeddings: need(
                        rope.original_max_position_embeddings,
                        "original_max_position_embeddings",
                    )?,
                })
            }
            Some(other) => {
                return Err(Error::Config {
                    path: path.to_path_buf(),
                    reason: format!(
                        "rope type `{other}` is not implemented (supported: default, llama3)"
                    ),
                });
            }
        };
        let (qkv_bias, o_bias, qk_norm) = match architecture {
            Architecture::Llama => (hf.attention_bias, hf.attention_bias, false),
            Architecture::Qwen2 => (true, false, false),
            Architecture::Qwen3 => (hf.attention_bias, hf.attention_bias, true),
        };
        Ok(Config {
            architecture,
            vocab_size: hf.vocab_size,
            hidden_size: hf.hidden_size,
            intermediate_size: hf.intermediate_size,
            num_hidden_layers: hf.num_hidden_layers,
            num_attention_heads: hf.num_attention_heads,
            num_key_value_heads: hf.num_key_value_heads.unwrap_or(hf.num_attention_heads),
            head_dim: hf
                .head_dim
                .unwrap_or(hf.hidden_size / hf.num_attention_heads),
            rms_norm_eps: hf.rms_norm_eps,
            rope_theta,
            rope_scaling,
            max_position_embeddings: hf.max_position_embeddings,
            tie_word_embeddings: hf.tie_word_embeddings,
            qkv_bias,
            o_bias,
            mlp_bias: hf.mlp_bias,
            qk_norm,
            eos_token_ids: hf.eos_token_id.map(OneOrMany::into_vec).unwrap_or_default(),
        })
    }

    /// The `config.json` transformers reads back as this configuration. RoPE frequency
    /// factors taken from a GGUF `rope_freqs` tensor have no `config.json` form and are refused.
    pub fn to_hf_json(&self) -> Result<serde_json::Value> {
        let class = match self.architecture {
            Architecture::Llama => "LlamaForCausalLM",
            Architecture::Qwen2 => "Qwen2ForCausalLM",
            Architecture::Qwen3 => "Qwen3ForCausalLM",
        };
        let mut rope = serde_json::json!({ "rope_type": "default", "rope_theta": self.rope_theta });
        match &self.rope_scaling {
            RopeScaling::None => {}
            RopeScaling::Llama3(l) => {
                rope = serde_json::json!({
                    "rope_type": "llama3",
                    "rope_theta": self.rope_theta,
                    "factor": l.factor,
                    "low_freq_factor": l.low_freq_factor,
                    "high_freq_factor": l.high_freq_factor,
                    "original_max_position_embeddings": l.original_max_position_embeddings,
                });
            }
            RopeScaling::Factors(_) => {
                return Err(Error::RopeFreqsExport);
            }
        }
        if self.qkv_bias != self.o_bias && self.architecture != Architecture::Qwen2 {
            return Err(Error::BiasExport {
                qkv_bias: self.qkv_bias,
                o_bias: self.o_bias,
            });
        }
        let eos = match self.eos_token_ids.as_slice() {
            [] => serde_json::Value::Null,
            [one] => serde_json::json!(one),
            many => serde_json::json!(many),
        };
        Ok(serde_json::json!({
            "architectures": [class],
            "model_type": self.architecture.name(),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            // Both spellings: transformers 5 reads `rope_parameters`, 4.x `rope_theta` and
            // `rope_scaling`.
            "rope_parameters": rope,
            "rope_theta": self.rope_theta,
            "rope_scaling": if self.rope_scaling == RopeScaling::None { serde_json::Value::Null } else { rope.clone() },
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.qkv_bias,
            "mlp_bias": self.mlp_bias,
            "use_sliding_window": false,
            "eos_token_id": eos,
        }))
    }

    /// Reads GGUF metadata (`<arch>.block_count`, ...). Bias and tying are decided later from
    /// which tensors the file holds (see [`crate::weights`]).
    pub fn from_gguf(file: &GgufFile) -> Result<Config> {
        let name = file
            .require("general.architecture")?
            .as_str()
            .unwrap_or_default()
            .to_string();
        let architecture =
            Architecture::from_name(&name).ok_or_else(|| Architecture::unsupported(&name))?;
        let bad = |key: &str| Error::Gguf {
            path: file.path().to_path_buf(),
            reason: format!("metadata key `{key}` is missing or not a number"),
        };
        let int = |key: &str| -> Result<i64> {
            let key = format!("{name}.{key}");
            file.require(&key)?
                .as_u64()
                .map(|v| v as i64)
                .ok_or_else(|| bad(&key))
        };
        let opt_int = |key: &str| {
            file.metadata
                .get(&format!("{name}.{key}"))
                .and_then(|v| v.as_u64())
                .map(|v| v as i64)
        };
        let float = |key: &str| {
            file.metadata
                .get(&format!("{name}.{key}"))
                .and_then(|v| v.as_f64())
        };
        let hidden_size = int("embedding_length")?;
        let num_attention_heads = int("attention.head_count")?;
        let infos = file.tensor_infos();
        let vocab_size = match opt_int("vocab_size") {
            Some(v) => v,
            None => infos
                .get("token_embd.weight")
                .map(|t| t.shape[0])
                .ok_or_else(|| bad("vocab_size"))?,
        };
        let rms_key = format!("{name}.attention.layer_norm_rms_epsilon");
        let eos = file
            .metadata
            .get("tokenizer.ggml.eos_token_id")
            .and_then(|v| v.as_u64());
        Ok(Config {
            architecture,
            vocab_size,
            hidden_size,
            intermediate_size: int("feed_forward_length")?,
            num_hidden_layers: int("block_count")?,
            num_attention_heads,
            num_key_value_heads: opt_int("attention.head_count_kv").unwrap_or(num_attention_heads),
            head_dim: opt_int("attention.key_length").unwrap_or(hidden_size / num_attention_heads),
            rms_norm_eps: float("attention.layer_norm_rms_epsilon").ok_or_else(|| bad(&rms_key))?,
            rope_theta: float("rope.freq_base").unwrap_or(10_000.0),
            rope_scaling: RopeScaling::None,
            max_position_embeddings: opt_int("context_length").unwrap_or(4096),
            tie_word_embeddings: !infos.contains_key("output.weight"),
            qkv_bias: infos.contains_key("blk.0.attn_q.bias"),
            o_bias: infos.contains_key("blk.0.attn_output.bias"),
            mlp_bias: infos.contains_key("blk.0.ffn_up.bias"),
            qk_norm: infos.contains_key("blk.0.attn_q_norm.weight"),
            eos_token_ids: eos.map(|e| vec![e as u32]).unwrap_or_default(),
        })
    }

    /// RoPE inverse frequencies (`head_dim / 2` values), scaling applied.
    pub fn inv_freq(&self) -> Vec<f64> {
        let d = self.head_dim as f64;
        let base: Vec<f64> = (0..self.head_dim / 2)
            .map(|i| 1.0 / self.rope_theta.powf(2.0 * i as f64 / d))
            .collect();
        match &self.rope_scaling {
            RopeScaling::None => base,
            RopeScaling::Factors(f) => base.iter().zip(f).map(|(b, f)| b / f).collect(),
            // Mirrors transformers' `_compute_llama3_parameters`.
            RopeScaling::Llama3(s) => {
                let low_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
                let high_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
                base.iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen > low_wavelen {
                            f / s.factor
                        } else if wavelen < high_wavelen {
                            f
                        } else {
                            let smooth = (s.original_max_position_embeddings / wavelen
                                - s.low_freq_factor)
                                / (s.high_freq_factor - s.low_freq_factor);
                            (1.0 - smooth) * f / s.factor + smooth * f
                        }
                    })
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_scaling_keeps_high_and_divides_low_frequencies() {
        let cfg = Config {
            architecture: Architecture::Llama,
            vocab_size: 1,
            hidden_size: 128,
            intermediate_size: 1,
            num_hidden_layers: 1,
            num_attention_heads: 1,
            num_key_value_heads: 1,
            head_dim: 128,
            rms_norm_eps: 1e-5,
            rope_theta: 500_000.0,
            rope_scaling: RopeScaling::Llama3(Llama3RopeScaling {
                factor: 32.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192.0,
            }),
            max_position_embeddings: 131072,
            tie_word_embeddings: true,
            qkv_bias: false,
            o_bias: false,
            mlp_bias: false,
            qk_norm: false,
            eos_token_ids: vec![],
        };
        let scaled = cfg.inv_freq();
        let plain = Config {
            rope_scaling: RopeScaling::None,
            ..cfg.clone()
        }
        .inv_freq();
        // Wavelengths between 8192/4 and 8192 (indices 29..=35 here) are interpolated.
        assert_eq!(scaled[0], plain[0]);
        assert!((scaled[63] - plain[63] / 32.0).abs() < 1e-15);
        assert!(scaled[32] < plain[32] && scaled[32] > plain[32] / 32.0);
    }
}
