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
    /// A generation or scoring request is invalid.
    #[error("Failed to run request: {0}")]
    Request(String),
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
            | Error::Request(_)
            | Error::NonFiniteLoss { .. } => return None,
        };
        Some(hint.to_string())
    }
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
