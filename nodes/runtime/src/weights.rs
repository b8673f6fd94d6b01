//! The one weight loader: every model variable (named as in Hugging Face checkpoints) is looked
//! up in a [`WeightSource`], shape-checked and copied into the `VarStore`.
//!
//! GGUF files use llama.cpp's tensor names and, for Llama, store q/k projection rows permuted
//! for llama.cpp's interleaved RoPE; [`WeightSource::Gguf`] maps names back and undoes that
//! permutation, so the model code only ever sees HF layout.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use tch::{Kind, Tensor, nn};

use crate::config::{Architecture, Config};
use crate::error::{Error, Result};
use crate::gguf::GgufFile;

/// Where weights come from.
pub enum WeightSource {
    /// One or more memory-mapped `.safetensors` files (sharded checkpoints list all shards).
    Safetensors {
        /// `(path, mapping)` per shard.
        files: Vec<(PathBuf, memmap2::Mmap)>,
        /// Tensor name → index into `files`.
        index: HashMap<String, usize>,
    },
    /// A GGUF file.
    Gguf {
        /// The parsed file.
        file: GgufFile,
        /// Its architecture (decides whether q/k rows are un-permuted).
        architecture: Architecture,
        /// Query heads.
        heads: i64,
        /// Key/value heads.
        kv_heads: i64,
    },
}

fn map_file(path: &Path) -> Result<memmap2::Mmap> {
    let file = std::fs::File::open(path).map_err(Error::io(path))?;
    // SAFETY: read-only map of a checkpoint that is not modified while loaded.
    unsafe { memmap2::Mmap::map(&file) }.map_err(Error::io(path))
}

fn st_error(path: &Path) -> impl FnOnce(safetensors::SafeTensorError) -> Error + '_ {
    move |source| Error::Safetensors {
        path: path.to_path_buf(),
        source,
    }
}

impl WeightSource {
    /// Maps safetensors shards and indexes their tensor names.
    pub fn safetensors(paths: &[PathBuf]) -> Result<WeightSource> {
        let mut files = Vec::with_capacity(paths.len());
        let mut index = HashMap::new();
        for (i, path) in paths.iter().enumerate() {
            let mmap = map_file(path)?;
            let st = SafeTensors::deserialize(&mmap).map_err(st_error(path))?;
            for name in st.names() {
                index.insert(name.to_string(), i);
            }
            files.push((path.clone(), mmap));
        }
        Ok(WeightSource::Safetensors { files, index })
    }

    /// Wraps an opened GGUF file described by `cfg`.
    pub fn gguf(file: GgufFile, cfg: &Config) -> WeightSource {
        WeightSource::Gguf {
            file,
            architecture: cfg.architecture,
            heads: cfg.num_attention_heads,
            kv_heads: cfg.num_key_value_heads,
        }
    }

    fn describe(&self) -> PathBuf {
        match self {
            WeightSource::Safetensors { files, .. } => files
                .first()
                .and_then(|(p, _)| p.parent())
                .map(Path::to_path_buf)
                .unwrap_or_default(),
            WeightSource::Gguf { file, .. } => file.path().to_path_buf(),
        }
    }

    /// The tensor with Hugging Face name `name`, on the CPU, or `None` if absent.
    pub fn get(&self, name: &str) -> Result<Option<Tensor>> {
        match self {
            WeightSource::Safetensors { files, index } => {
                let Some(&i) = index.get(name) else {
                    return Ok(None);
                };
                let (path, mmap) = &files[i];
                let st = SafeTensors::deserialize(mmap).map_err(st_error(path))?;
                let view = st.tensor(name).map_err(st_error(path))?;
                let kind = match view.dtype() {
                    Dtype::F32 => Kind::Float,
                    Dtype::F16 => Kind::Half,
                    Dtype::BF16 => Kind::BFloat16,
                    other => {
                        return Err(Error::Config {
                            path: path.clone(),
                            reason: format!(
                                "tensor `{name}` has dtype {other:?}; only F32, F16 and BF16 are loaded"
                            ),
                        });
                    }
                };
                let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
                Tensor::f_from_data_size(view.data(), &shape, kind)
                    .map(Some)
                    .map_err(Error::torch(format!(
                        "copy tensor `{name}` out of `{}`",
                        path.display()
                    )))
            }
            WeightSource::Gguf {
                file,
                architecture,
                heads,
                kv_heads,
            } => {
                let Some(gguf_name) = gguf_name(name) else {
                    return Ok(None);
                };
                let Some(t) = file.tensor(&gguf_name) else {
                    return Ok(None);
                };
                // llama.cpp's converter permutes Llama q/k rows (weights and biases) so that
                // RoPE pairs are adjacent; transformers' rotate_half expects halves.
                let permuted_heads = match architecture {
                    Architecture::Llama if name.contains("self_attn.q_proj") => Some(*heads),
                    Architecture::Llama if name.contains("self_attn.k_proj") => Some(*kv_heads),
                    _ => None,
                };
                Ok(Some(match permuted_heads {
                    Some(h) => unpermute(&t, h),
                    None => t,
                }))
            }
        }
    }
}

/// Inverse of llama.cpp's `permute(w, n_head)`:
/// `w.reshape(n_head, 2, rows/n_head/2, *rest).swapaxes(1, 2)` is undone by viewing the rows as
/// `(n_head, rows/n_head/2, 2)` and swapping back.
pub fn unpermute(w: &Tensor, heads: i64) -> Tensor {
    let shape = w.size();
    let rows = shape[0];
    let mut split = vec![heads, rows / heads / 2, 2];
    split.extend_from_slice(&shape[1..]);
    w.reshape(&split).transpose(1, 2).reshape(&shape)
}

/// The GGUF tensor name for a Hugging Face name (llama.cpp `tensor_mapping.py`).
fn gguf_name(hf: &str) -> Option<String> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (module, param) = rest.rsplit_once('.')?;
    let short = match module {
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{short}.{param}"))
}

/// Fills every variable of `vs` from `source`, converting to the variable's dtype and device.
pub fn load(vs: &nn::VarStore, source: &WeightSource) -> Result<()> {
    let _guard = tch::no_grad_guard();
    for (name, mut var) in vs.variables() {
        let t = source.get(&name)?.ok_or_else(|| Error::MissingTensor {
            name: name.clone(),
            path: source.describe(),
        })?;
        if t.size() != var.size() {
            return Err(Error::ShapeMismatch {
                name,
                expected: var.size(),
                found: t.size(),
            });
        }
        var.f_copy_(&t)
            .map_err(Error::torch(format!("copy weight `{name}` into the model")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        // llama.cpp: w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2).reshape(shape)
        let (heads, rows, cols) = (3i64, 12i64, 2i64);
        let w = Tensor::arange(rows * cols, (Kind::Float, tch::Device::Cpu)).view([rows, cols]);
        let permuted = w
            .reshape([heads, 2, rows / heads / 2, cols])
            .transpose(1, 2)
            .reshape([rows, cols]);
        assert!(unpermute(&permuted, heads).equal(&w));
        let bias = Tensor::arange(rows, (Kind::Float, tch::Device::Cpu));
        let permuted = bias
            .reshape([heads, 2, rows / heads / 2])
            .transpose(1, 2)
            .reshape([rows]);
        assert!(unpermute(&permuted, heads).equal(&bias));
    }

    #[test]
    fn gguf_names_follow_llama_cpp() {
        assert_eq!(
            gguf_name("model.layers.3.self_attn.k_proj.bias").as_deref(),
            Some("blk.3.attn_k.bias")
        );
        assert_eq!(
            gguf_name("model.layers.0.post_attention_layernorm.weight").as_deref(),
            Some("blk.0.ffn_norm.weight")
        );
        assert_eq!(
            gguf_name("lm_head.weight").as_deref(),
            Some("output.weight")
        );
        assert_eq!(gguf_name("model.layers.0.unknown.weight"), None);
    }
}
