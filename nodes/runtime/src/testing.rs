//! Helpers for unit tests.

use crate::config::{Architecture, Config, RopeScaling};

/// A two-layer GQA model small enough for instant CPU tests.
pub fn tiny_config() -> Config {
    Config {
        architecture: Architecture::Llama,
        vocab_size: 32,
        hidden_size: 16,
        intermediate_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 4,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        rope_scaling: RopeScaling::None,
        max_position_embeddings: 64,
        tie_word_embeddings: true,
        qkv_bias: false,
        o_bias: false,
        mlp_bias: false,
        qk_norm: false,
        eos_token_ids: vec![],
    }
}
