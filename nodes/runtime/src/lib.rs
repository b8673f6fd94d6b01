//! dag-runtime: a model runtime on libtorch (through tch) for the `dag` engine's heavy nodes.
//!
//! It loads decoder-only language models from GGUF files, Hugging Face folders or
//! `hf://org/name@revision` references ([`Model::load`]), rebuilds their tokenizer and chat
//! template, and offers three entry points:
//! - [`Model::generate`]: batched generation with a KV cache (greedy or sampled, `n` samples,
//!   stop strings, per-item seeds and a per-item completion hook);
//! - [`Model::forward`]: logits and residual-stream states (transformers' `hidden_states[i]`);
//! - [`Model::score`]: continuation log-likelihoods with the context computed once.
//!
//! Supported architectures: Llama (Llama 3.x with its RoPE scaling, SmolLM2), Qwen2/2.5 and
//! Qwen3, all in [`llama`] with [`Config`] switches. See `docs/runtime.md` for the design,
//! parity fixtures and measured throughput.
//!
//! ```no_run
//! use dag_runtime::{GenerateRequest, LoadOptions, Message, Model, Prompt, SamplingParams};
//! let model = Model::from_reference("model.gguf", LoadOptions::default())?;
//! let requests = [GenerateRequest::new(Prompt::Chat(vec![Message::new("user", "Hi")]))];
//! let params = SamplingParams { max_new_tokens: 32, ..SamplingParams::default() };
//! let out = model.generate(&requests, &params, &mut |item| eprintln!("item {} done", item.index))?;
//! println!("{}", out[0].completions[0].text);
//! # Ok::<(), dag_runtime::Error>(())
//! ```
#![deny(missing_docs)]

pub mod chat;
pub mod config;
mod error;
mod export;
pub mod generate;
pub mod gguf;
pub mod hub;
pub mod layers;
pub mod llama;
pub mod lora;
mod model;
mod score;
pub mod tokenizer;
pub mod train;
pub mod weights;

#[cfg(test)]
mod testing;

pub use chat::{ChatTemplate, Message};
pub use config::{Architecture, Config};
pub use error::{Error, Result};
pub use generate::{
    Completion, FinishReason, ForwardOutput, GenerateRequest, ItemResult, Prompt, SamplingParams,
};
pub use hub::HubRef;
pub use lora::{Lora, LoraConfig};
pub use model::{DType, DeviceSpec, LoadOptions, Model, ModelSource};
pub use score::{ContinuationScore, ScoreRequest};
pub use tokenizer::Tokenizer;

#[cfg(test)]
mod thread_safety {
    /// Engines run nodes on worker threads: a loaded model must move to one. It is not `Sync`
    /// (tch tensors are not), so sharing one needs a `Mutex`.
    #[test]
    fn model_is_send() {
        fn check<T: Send>() {}
        check::<crate::Model>();
    }
}
