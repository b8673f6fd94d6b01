//! `finetune`'s params, and the LoRA and optimizer groups it shares with
//! `finetune-classifier`.

use crate::params::ParamEnum;

crate::param_enum! {
    /// What is trained.
    pub enum Method {
        /// A LoRA adapter.
        Lora = "lora",
        /// Every weight.
        Full = "full",
    }
}

crate::param_enum! {
    /// The learning-rate decay after warmup.
    pub enum Schedule {
        /// Linear to zero.
        Linear = "linear",
        /// Cosine to zero.
        Cosine = "cosine",
        /// None.
        Constant = "constant",
    }
}

crate::param_enum! {
    /// What a non-finite loss does.
    pub enum OnNan {
        /// Fail, naming the step.
        Error = "error",
        /// Stop and keep the checkpoints saved before it.
        Stop = "stop",
    }
}

crate::params! {
    /// LoRA params (`method` included), shared with `finetune-classifier`.
    pub struct Adapter {
        method: Method = Enum(Method::NAMES), "lora", "train a LoRA adapter, or every weight";
        rank: i64 = Int, 8, "LoRA rank", min = 1.0;
        alpha: f64 = Float, 16.0, "LoRA alpha (the update is scaled by alpha / rank)", above = 0.0;
        dropout: f64 = Float, 0.05, "LoRA dropout", min = 0.0, below = 1.0;
        target_modules: Vec<String> = List(&Str),
            serde_json::json!(["q", "k", "v", "o", "gate", "up", "down"]),
            "projections LoRA wraps: q, k, v, o, gate, up, down (or q_proj ...)";
    }
}

crate::params! {
    /// Optimisation params, shared with `finetune-classifier` (each node declares its own
    /// `lr`, whose default differs).
    pub struct Optimizer {
        weight_decay: f64 = Float, 0.0, "AdamW decoupled weight decay", min = 0.0;
        warmup_steps: i64 = Int, 0, "optimizer steps of linear warmup", min = 0.0;
        schedule: Schedule = Enum(Schedule::NAMES), "linear", "decay after warmup";
        gradient_checkpointing: bool = Bool, false,
            "recompute each block in the backward pass instead of storing its activations (less memory, one more forward)";
        batch_size: i64 = Int, 4, "rows per forward pass", min = 1.0;
        grad_accum: i64 = Int, 1, "forward passes per optimizer step", min = 1.0;
        max_grad_norm: f64 = Float, 1.0, "global gradient-norm clip (0 = off)", min = 0.0;
        epochs: i64 = Int, 1, "passes over the data (when max_steps is 0)", min = 1.0;
        max_steps: i64 = Int, 0, "optimizer steps in all (0 = from epochs)", min = 0.0;
    }
}

crate::params! {
    /// `finetune`'s own params (with [`Adapter`] and [`Optimizer`]).
    pub struct Finetune {
        messages: String = Str, "messages",
            "column of conversations (lists of {role, content}), used when `prompt` is not set";
        prompt: Option<String> = Str, OPTIONAL,
            "user message template with `{column}` placeholders (with `response`)";
        response: String = Str, "{completion}", "assistant message template, when `prompt` is set";
        system_prompt: Option<String> = Str, OPTIONAL, "system message put before templated turns";
        drop_system: bool = Bool, false,
            "remove system messages from conversations (context distillation)";
        max_len: i64 = Int, 1024, "tokens per example at most; longer ones are cut (and counted)",
            min = 1.0;
        packing: bool = Bool, false,
            "pack several examples into each row of max_len tokens; each attends only to itself";
        lr: f64 = Float, 2e-4, "peak learning rate", above = 0.0;
        seed: i64 = Int, 0, "seed of the adapter init, data order and dropout", min = 0.0;
        save_interval: i64 = Int, 0, "save a checkpoint every this many steps (0 = only at the end)",
            min = 0.0;
        merge: bool = Bool, false,
            "LoRA: also write each checkpoint's merged model as a Hugging Face folder (merged/)";
        on_nan: OnNan = Enum(OnNan::NAMES), "error",
            "a non-finite loss: fail naming the step, or stop and keep the checkpoints saved before it";
    }
}

/// Everything `finetune` takes.
pub type FinetuneParams = (Finetune, Adapter, Optimizer);
