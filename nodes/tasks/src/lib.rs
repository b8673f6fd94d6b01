//! Evaluation tasks for `dag`: definitions, lm-evaluation-harness import, requests and scores.
//!
//! A task is written in our TOML format ([`TaskSet::from_toml_file`]) or imported from an
//! lm-evaluation-harness YAML file as written ([`import_lm_eval_yaml`]); both give a
//! [`TaskSpec`]. A [`Task`] compiles it, renders documents into prompts exactly as lm-eval
//! does ([`Task::prepare`]), lints them before any model runs ([`Task::lint`]), and turns the
//! model's answers into lm-eval's metrics ([`Task::score`], [`aggregate_group`]).
//!
//! The model is behind [`LanguageModel`]; [`FakeModel`] is a deterministic stand-in.
//!
//! ```
//! use dag_tasks::{FakeModel, Task, TaskDocs, TaskSet, run_requests};
//! use serde_json::json;
//!
//! let set = TaskSet::from_toml_str(r#"
//! [[task]]
//! name = "toy"
//! output_type = "multiple_choice"
//! doc_to_text = "Human: {{question}}\n\nAssistant:"
//! doc_to_choice = { fields = ["yes", "no"] }
//! doc_to_target = 0
//! target_delimiter = ""
//! metrics = [{ metric = "propensity" }]
//! "#, std::path::Path::new(".")).unwrap();
//! let task = Task::new(set.tasks[0].clone()).unwrap();
//! let docs = TaskDocs {
//!     eval: vec![json!({"question": "Q?", "yes": " (A)", "no": " (B)"}).as_object().unwrap().clone()],
//!     fewshot: None,
//! };
//! let prepared = task.prepare(&docs, None).unwrap();
//! task.lint(&docs, &prepared).into_result().unwrap();
//! let mut model = FakeModel::new().with_scores(|_, cont| if cont == " (A)" { -1.0 } else { -2.0 });
//! let responses = run_requests(task.name(), &mut model, &prepared, 8).unwrap();
//! let scores = task.score(&prepared, &responses).unwrap();
//! assert_eq!(scores.metrics[0].value, 1.0);
//! ```
#![deny(missing_docs)]

mod builtin;
mod data;
mod error;
mod lint;
mod metrics;
mod model;
mod regex;
mod score;
mod spec;
mod task;
mod template;
mod yaml;

pub use builtin::{BUILTIN_DIR, builtin_file, builtin_names, load_builtin};
pub use dag_metrics::PyRandom;
pub use data::{Doc, read_docs};
pub use error::{Error, Result};
pub use lint::{LintIssue, LintReport, Severity};
pub use metrics::{pass_at_k, squad_exact_match, squad_f1, squad_normalize};
pub use model::{
    DocResponse, Evaluation, FakeCalls, FakeError, FakeModel, LanguageModel, Loglikelihood,
    encode_pair, evaluate, run_requests, truncate_at_stop,
};
pub use score::{GroupScore, GroupScores, MetricScore, SampleScore, TaskScores, aggregate_group};
pub use spec::{
    AggregateSpec, DocField, FewshotSpec, FilterSpec, FilterStep, GenerationSpec, GroupSpec,
    MetricKind, MetricSpec, OutputType, Reducer, SamplerKind, TaskSet, TaskSpec,
};
pub use task::{
    ChatMessage, ChatOptions, ChatRenderer, GenerateRequest, Gold, LoglikelihoodRequest,
    PreparedDoc, PromptOptions, Request, Task, TaskDocs, split_whitespace,
};
pub use yaml::{import_lm_eval_dir, import_lm_eval_yaml};
