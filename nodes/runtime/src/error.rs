//! The crate's one error type.

use std::path::PathBuf;

use dag_diagnostic::Hint;

/// Everything that can go wrong while loading or running a model.
///
/// Messages say what failed and name the path or tensor involved; variants that wrap a lower
/// error carry it as their `#[source]`; what the user can do is its [`Hint`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("Failed to access `{path}`")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A GGUF file is malformed or uses a feature this reader does not handle.
    #[error("Failed to read GGUF file `{path}`: {reason}")]
    Gguf {
        /// The GGUF file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A JSON file (config, tokenizer config, index) could not be parsed.
    #[error("Failed to parse `{path}`")]
    Json {
        /// The JSON file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A safetensors file could not be parsed.
    #[error("Failed to read safetensors file `{path}`")]
    Safetensors {
        /// The safetensors file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: safetensors::SafeTensorError,
    },
    /// A model folder holds only pickled PyTorch weights.
    #[error(
        "Failed to load `{path}`: only pickled `.bin` weights were found, and unpickling runs arbitrary code"
    )]
    PickleRefused {
        /// The model folder.
        path: PathBuf,
    },
    /// The model's architecture is not implemented here.
    #[error(
        "Failed to load model: architecture `{found}` is not supported (supported: {supported})"
    )]
    UnsupportedArchitecture {
        /// The architecture named by the checkpoint.
        found: String,
        /// The architectures this runtime implements, comma-separated.
        supported: String,
    },
    /// The model configuration is missing a field or holds an inconsistent value.
    #[error("Failed to configure model from `{path}`: {reason}")]
    Config {
        /// Where the configuration came from.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A weight the model needs is absent from the checkpoint.
    #[error("Failed to load weights: tensor `{name}` is missing from `{path}`")]
    MissingTensor {
        /// The Hugging Face name of the tensor.
        name: String,
        /// The checkpoint.
        path: PathBuf,
    },
    /// A weight in the checkpoint has the wrong shape for the configured model.
    #[error("Failed to load weights: tensor `{name}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The Hugging Face name of the tensor.
        name: String,
        /// The shape the model expects.
        expected: Vec<i64>,
        /// The shape stored in the checkpoint.
        found: Vec<i64>,
    },
    /// The tokenizer could not be built, or failed to encode or decode.
    #[error("Failed to {action} with the tokenizer")]
    Tokenizer {
        /// What was attempted ("build", "encode", "decode", ...).
        action: String,
        /// The tokenizers error.
        #[source]
        source: tokenizers::Error,
    },
    /// The chat template could not be compiled or rendered.
    #[error("Failed to render the chat template")]
    Template {
        /// The minijinja error (including `raise_exception` messages from the template).
        #[source]
        source: minijinja::Error,
    },
    /// The model has no chat template.
    #[error("Failed to render a chat prompt: the model has no chat template")]
    NoChatTemplate,
    /// A libtorch operation failed.
    #[error("Failed to run libtorch operation: {context}")]
    Torch {
        /// What was being done.
        context: String,
        /// The libtorch error.
        #[source]
        source: tch::TchError,
    },
    /// A device string could not be parsed or names an unavailable device.
    #[error("Failed to use device `{device}`: {reason}")]
    Device {
        /// The device as given.
        device: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A model reference could not be parsed.
    #[error("Failed to parse model reference `{reference}`: {reason}")]
    Reference {
        /// The reference as given.
        reference: String,
        /// What was wrong.
        reason: String,
    },
    /// A download from the model hub failed.
    #[error("Failed to download `{url}`: {reason}")]
    Download {
        /// The URL requested.
        url: String,
        /// What went wrong (status, hash mismatch, ...).
        reason: String,
        /// The HTTP error, if any.
        #[source]
        source: Option<reqwest::Error>,
    },
    /// Offline mode is on and a needed file is not in the local cache.
    #[error(
        "Failed to find `{file}` of `{repo}` at revision `{revision}` in the local cache `{cache}` while offline"
    )]
    Offline {
        /// The repository id (`org/name`).
        repo: String,
        /// The requested revision.
        revision: String,
        /// The file that is missing.
        file: String,
        /// The hub cache folder that was searched.
        cache: PathBuf,
    },
    /// A numeric setting (of a LoRA adapter, a generation, a training run) is out of range.
    #[error("Failed to {action}: `{setting}` must be {allowed}, got {value}")]
    Setting {
        /// What was being done ("configure LoRA", "generate", "train").
        action: &'static str,
        /// The setting's name, as the caller spells it (`rank`, `top_p`, ...).
        setting: &'static str,
        /// The value given.
        value: f64,
        /// The values it may take ("at least 1", "in (0, 1]", ...).
        allowed: &'static str,
    },
    /// A name (a dtype, a schedule, a LoRA target module) is not one this runtime knows.
    #[error("Failed to use unknown {what} `{name}` (expected one of {})", .expected.join(", "))]
    UnknownName {
        /// What kind of name it is ("dtype", "schedule", "LoRA target module").
        what: &'static str,
        /// The name as given.
        name: String,
        /// The names that are accepted.
        expected: &'static [&'static str],
    },
    /// An input that needs at least one element has none.
    #[error("Failed to {action}: {what} is empty")]
    EmptyInput {
        /// What was being done ("train", "run the model", ...).
        action: &'static str,
        /// The input that is empty ("the training set", ...).
        what: &'static str,
    },
    /// Training examples have no token the loss could be computed on.
    #[error(
        "Failed to train: {} example(s) have no trainable token after masking and truncation (examples {})",
        .examples.len(),
        first_indices(.examples)
    )]
    NoTrainableTokens {
        /// The indices of those examples, in order.
        examples: Vec<usize>,
    },
    /// A classifier's labels do not pair up with its examples.
    #[error("Failed to train a classifier: {labels} labels for {examples} examples")]
    LabelCount {
        /// How many labels were given.
        labels: usize,
        /// How many examples were given.
        examples: usize,
    },
    /// A classifier was asked to train on packed sequences.
    #[error(
        "Failed to train a classifier: packing is not supported, as a classifier reads each example's last token"
    )]
    ClassifierPacking,
    /// A prediction was asked of a trainer whose objective is not a classifier.
    #[error("Failed to predict: the trainer is not a classifier (Objective::Classify)")]
    NotAClassifier,
    /// The chat template renders an assistant turn differently inside the whole conversation.
    #[error(
        "Failed to mask the loss: the chat template does not render assistant turn {turn} as a prefix of the whole conversation"
    )]
    TurnNotPrefix {
        /// The index of the assistant message among the conversation's messages.
        turn: usize,
    },
    /// A LoRA adapter was attached to a model that already has one.
    #[error("Failed to attach a LoRA adapter: the model already has one")]
    AdapterAttached,
    /// An operation needs a LoRA adapter and the model has none.
    #[error("Failed to {action}: the model has no LoRA adapter")]
    NoAdapter {
        /// What was being done ("merge the adapter", "train in LoRA mode").
        action: &'static str,
    },
    /// A prompt encodes to no tokens.
    #[error("Failed to generate: prompt {index} encodes to no tokens")]
    EmptyPrompt {
        /// The prompt's index among the requests.
        index: usize,
    },
    /// A prompt and the tokens to generate do not fit the model's context.
    #[error(
        "Failed to generate: the prompt ({prompt_tokens} tokens) plus max_new_tokens ({max_new_tokens}) exceeds the model's context of {context} tokens"
    )]
    ContextOverflow {
        /// The (padded) prompt length.
        prompt_tokens: i64,
        /// The tokens asked for.
        max_new_tokens: usize,
        /// The model's `max_position_embeddings`.
        context: i64,
    },
    /// A requested hidden state is past the model's last block.
    #[error(
        "Failed to run the model: hidden state {index} does not exist; the model has {layers} blocks (valid: 0..={layers})"
    )]
    NoSuchHiddenState {
        /// The index asked for.
        index: usize,
        /// The model's number of blocks.
        layers: usize,
    },
    /// A scored context encodes to no tokens, so nothing predicts the first continuation token.
    #[error(
        "Failed to score: the context encodes to no tokens, so the first continuation token has nothing to be predicted from"
    )]
    EmptyContext,
    /// A continuation adds no tokens to its context.
    #[error("Failed to score: continuation `{continuation}` adds no tokens to its context")]
    EmptyContinuation {
        /// The continuation (with the context's trailing spaces moved into it).
        continuation: String,
    },
    /// The RoPE frequencies come from a GGUF `rope_freqs` tensor, which `config.json` cannot express.
    #[error(
        "Failed to write `config.json`: this model's RoPE frequencies come from a GGUF `rope_freqs` tensor, which config.json cannot express"
    )]
    RopeFreqsExport,
    /// The q/k/v and output projections' biases differ, which the family's `config.json` cannot express.
    #[error(
        "Failed to write `config.json`: q/k/v projection bias ({qkv_bias}) and output projection bias ({o_bias}) differ, which this family's config.json cannot express"
    )]
    BiasExport {
        /// Whether the q/k/v projections have biases.
        qkv_bias: bool,
        /// Whether the output projection has a bias.
        o_bias: bool,
    },
    /// A training step's loss is NaN or infinite: the step's update was not applied.
    #[error("the loss is {loss} at step {step}; training stopped before that step's update")]
    NonFiniteLoss {
        /// The optimizer step (1-based) whose loss it is.
        step: usize,
        /// The loss.
        loss: f64,
    },
}

impl Hint for Error {
    fn hint(&self) -> Option<String> {
        let hint = match self {
            Error::PickleRefused { .. } => {
                "convert the checkpoint to safetensors (e.g. `model.save_pretrained(dir, safe_serialization=True)`)"
            }
            Error::NoChatTemplate => {
                "use a plain prompt, or an instruct model whose tokenizer_config.json or GGUF metadata has `chat_template`"
            }
            Error::Offline { .. } => {
                "unset HF_HUB_OFFLINE to download it, or copy the model into that cache"
            }
            Error::AdapterAttached => "merge the attached adapter first",
            Error::EmptyContext => "give a non-empty context",
            Error::RopeFreqsExport => "export from the Hugging Face folder instead",
            Error::Io { .. }
            | Error::Gguf { .. }
            | Error::Json { .. }
            | Error::Safetensors { .. }
            | Error::UnsupportedArchitecture { .. }
            | Error::Config { .. }
            | Error::MissingTensor { .. }
            | Error::ShapeMismatch { .. }
            | Error::Tokenizer { .. }
            | Error::Template { .. }
            | Error::Torch { .. }
            | Error::Device { .. }
            | Error::Reference { .. }
            | Error::Download { .. }
            | Error::Setting { .. }
            | Error::UnknownName { .. }
            | Error::EmptyInput { .. }
            | Error::NoTrainableTokens { .. }
            | Error::LabelCount { .. }
            | Error::ClassifierPacking
            | Error::NotAClassifier
            | Error::TurnNotPrefix { .. }
            | Error::NoAdapter { .. }
            | Error::EmptyPrompt { .. }
            | Error::ContextOverflow { .. }
            | Error::NoSuchHiddenState { .. }
            | Error::EmptyContinuation { .. }
            | Error::BiasExport { .. }
            | Error::NonFiniteLoss { .. } => return None,
        };
        Some(hint.to_string())
    }
}

/// The first ten of `indices`, as `[0, 3, ...]` with `, ...` when there are more.
fn first_indices(indices: &[usize]) -> String {
    let shown = &indices[..indices.len().min(10)];
    let more = if indices.len() > 10 { ", ..." } else { "" };
    format!("{shown:?}{more}")
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }

    pub(crate) fn torch(context: impl Into<String>) -> impl FnOnce(tch::TchError) -> Error {
        let context = context.into();
        move |source| Error::Torch { context, source }
    }

    pub(crate) fn tokenizer(action: &str) -> impl FnOnce(tokenizers::Error) -> Error + '_ {
        move |source| Error::Tokenizer {
            action: action.to_string(),
            source,
        }
    }
}
