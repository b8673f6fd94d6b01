//! The two parameterised building blocks shared by every decoder: [`Linear`] and [`RmsNorm`].
//!
//! Weights are declared through a `tch::nn::Path`, so their variable names mirror Hugging Face
//! checkpoint names (`model.layers.0.self_attn.q_proj.weight`) and one loader
//! ([`crate::weights`]) can fill every model. They start as zeros and are not trainable; the
//! loader overwrites them.

use tch::{Kind, Tensor, nn};

/// A dense projection `y = x Wᵀ + b`, with `W` of shape `[out, in]` as in PyTorch.
///
/// The weight is kept as a plain tensor (not `nn::Linear`) so adapters such as LoRA can wrap
/// this type and add their low-rank delta in [`Linear::forward`] without touching the model
/// code that calls it.
#[derive(Debug)]
pub struct Linear {
    /// `[out_features, in_features]`.
    pub weight: Tensor,
    /// `[out_features]`, when the layer has a bias.
    pub bias: Option<Tensor>,
    /// A low-rank adapter added to the output, when one is attached.
    pub lora: Option<crate::lora::LoraDelta>,
}

impl Linear {
    /// Declares `weight` (and `bias` when `bias` is true) under `p`.
    pub fn new(p: nn::Path, in_features: i64, out_features: i64, bias: bool) -> Linear {
        Linear {
            weight: p.zeros_no_train("weight", &[out_features, in_features]),
            bias: bias.then(|| p.zeros_no_train("bias", &[out_features])),
            lora: None,
        }
    }

    /// Applies the projection over the last dimension.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let y = x.linear(&self.weight, self.bias.as_ref());
        match &self.lora {
            Some(lora) => y + lora.forward(x),
            None => y,
        }
    }
}

/// Root-mean-square layer norm, computed in f32 and cast back, as transformers'
/// `LlamaRMSNorm` does.
#[derive(Debug)]
pub struct RmsNorm {
    /// `[dim]` gain.
    pub weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    /// Declares `weight` under `p`.
    pub fn new(p: nn::Path, dim: i64, eps: f64) -> RmsNorm {
        RmsNorm {
            weight: p.zeros_no_train("weight", &[dim]),
            eps,
        }
    }

    /// Normalises over the last dimension.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let kind = x.kind();
        let x32 = x.to_kind(Kind::Float);
        let variance = x32.square().mean_dim(-1, true, Kind::Float);
        let normed = (x32 * (variance + self.eps).rsqrt()).to_kind(kind);
        &self.weight * normed
    }
}
