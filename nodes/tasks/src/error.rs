//! The crate's error type.

use std::path::PathBuf;

use dag_diagnostic::Hint;

/// Everything that can go wrong while loading, preparing or scoring a task.
///
/// Messages say what failed and name the file, task, document and field involved; most have a
/// [`Hint`] with the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read.
    #[error("Failed to read `{path}`")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A task TOML file is not valid for our format.
    #[error("Failed to parse task definition `{path}`")]
    Toml {
        /// The file (or `<string>` for text passed in memory).
        path: PathBuf,
        /// The cause.
        #[source]
        source: toml::de::Error,
    },
    /// An lm-eval YAML file could not be parsed as YAML.
    #[error("Failed to parse lm-eval task YAML `{path}`")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// An lm-eval YAML key is a Python `!function` hook, which we cannot run.
    #[error(
        "Failed to import `{path}`: key `{key}` is the Python hook `!function {function}`, which dag cannot run"
    )]
    PythonHook {
        /// The YAML file holding the hook (after following `include:`).
        path: PathBuf,
        /// The key, dotted for nested keys (`metric_list[0].aggregation`).
        key: String,
        /// The hook's target, e.g. `utils.process_docs`.
        function: String,
        /// How to say the same thing in a dag TOML task.
        hint: String,
    },
    /// An lm-eval YAML key holds something we cannot import.
    #[error("Failed to import `{path}`: key `{key}` {message}")]
    Unsupported {
        /// The YAML file.
        path: PathBuf,
        /// The offending key.
        key: String,
        /// What is wrong with it.
        message: String,
        /// What to do instead.
        hint: String,
    },
    /// `include:` chains loop back to a file already being read.
    #[error("Failed to import `{path}`: its `include:` chain comes back to itself")]
    IncludeCycle {
        /// The file reached twice.
        path: PathBuf,
    },
    /// A data file row could not be read.
    #[error("Failed to read row {row} of `{path}`: {message}")]
    Data {
        /// The data file.
        path: PathBuf,
        /// 1-based row (line for JSONL, record for CSV).
        row: usize,
        /// What is wrong.
        message: String,
    },
    /// A task names no data for a split it needs.
    #[error("Failed to load task `{task}`: {message}")]
    MissingData {
        /// The task.
        task: String,
        /// What is missing.
        message: String,
        /// How to provide it.
        hint: String,
    },
    /// A Jinja template does not compile.
    #[error("Failed to compile the `{field}` template of task `{task}`")]
    TemplateSyntax {
        /// The task.
        task: String,
        /// `doc_to_text`, `doc_to_choice`, `doc_to_target`, `description`...
        field: String,
        /// The cause.
        #[source]
        source: minijinja::Error,
    },
    /// Rendering or resolving a field failed for one document.
    #[error("Failed to build `{field}` for document {doc_id} of task `{task}`: {message}")]
    Document {
        /// The task.
        task: String,
        /// Index of the document in its split.
        doc_id: usize,
        /// The field being built.
        field: String,
        /// What went wrong.
        message: String,
        /// The template engine's error, when there is one.
        #[source]
        source: Option<minijinja::Error>,
    },
    /// A regular expression in a filter or metric does not compile.
    #[error("Failed to compile regex `{pattern}` of task `{task}`")]
    Regex {
        /// The task.
        task: String,
        /// The pattern.
        pattern: String,
        /// The cause.
        #[source]
        source: Box<fancy_regex::Error>,
    },
    /// A regex failed while matching (backtracking limit).
    #[error("Failed to apply regex `{pattern}`")]
    RegexRun {
        /// The pattern.
        pattern: String,
        /// The cause.
        #[source]
        source: Box<fancy_regex::Error>,
    },
    /// The task definition is inconsistent.
    #[error("Failed to set up task `{task}`: {message}")]
    Invalid {
        /// The task.
        task: String,
        /// What is inconsistent.
        message: String,
        /// How to fix it.
        hint: String,
    },
    /// Template lint found errors; nothing was sent to a model.
    #[error("Failed lint of task `{task}`: {}", summarize(.issues))]
    Lint {
        /// The task.
        task: String,
        /// The blocking issues (warnings are not included).
        issues: Vec<crate::LintIssue>,
    },
    /// Model responses do not line up with the prepared requests.
    #[error("Failed to score task `{task}`: {message}")]
    Responses {
        /// The task.
        task: String,
        /// What does not line up.
        message: String,
    },
    /// The model implementation failed.
    #[error("Failed to run the model on task `{task}`")]
    Model {
        /// The task.
        task: String,
        /// The model's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Hint for Error {
    fn hint(&self) -> Option<String> {
        match self {
            Error::Toml { .. } => Some("see docs/tasks.md for the TOML task format".into()),
            Error::PythonHook { hint, .. }
            | Error::Unsupported { hint, .. }
            | Error::MissingData { hint, .. }
            | Error::Invalid { hint, .. } => Some(hint.clone()),
            Error::Regex { .. } => Some(
                "patterns use Python `re` syntax; check the escaping (TOML and YAML double-quoted strings need `\\\\` for one regex backslash)"
                    .into(),
            ),
            Error::Lint { .. } => Some(
                "fix the template or the data; `dag` checks prompts before any forward pass".into(),
            ),
            Error::Io { .. }
            | Error::Yaml { .. }
            | Error::IncludeCycle { .. }
            | Error::Data { .. }
            | Error::TemplateSyntax { .. }
            | Error::Document { .. }
            | Error::RegexRun { .. }
            | Error::Responses { .. }
            | Error::Model { .. } => None,
        }
    }
}

fn summarize(issues: &[crate::LintIssue]) -> String {
    let mut out = format!("{} problem(s)", issues.len());
    for issue in issues.iter().take(5) {
        out.push_str("\n  ");
        out.push_str(&issue.to_string());
    }
    if issues.len() > 5 {
        out.push_str(&format!("\n  ... and {} more", issues.len() - 5));
    }
    out
}

/// Shorthand for this crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
