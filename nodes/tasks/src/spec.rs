//! Task definitions: the TOML format and the in-memory [`TaskSpec`] both loaders produce.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How a task asks the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputType {
    /// One log-likelihood per choice; the highest wins.
    MultipleChoice,
    /// Free generation until a stop sequence, then filters and string metrics.
    GenerateUntil,
}

/// Where a prompt part (`text`, `choices`, `target`, `description`) comes from.
///
/// In TOML: a string is a Jinja template, an integer an index, an array a literal list, and the
/// tables `{ field = "name" }` / `{ fields = ["a", "b"] }` read document fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DocField {
    /// A constant integer (a gold index, or an index into the choices).
    Index(i64),
    /// A Jinja template rendered against the document.
    Template(String),
    /// A constant list of strings (choices, or several gold answers).
    List(Vec<String>),
    /// One named document field, taken as is.
    Field {
        /// The field name.
        field: String,
    },
    /// Several named document fields, as a list (for choices).
    Fields {
        /// The field names, in choice order.
        fields: Vec<String>,
    },
    /// lm-eval's rule for a bare string: the field of that name when the document has one,
    /// otherwise a Jinja template. The YAML import produces it.
    FieldOrTemplate {
        /// The field name or template.
        field_or_template: String,
    },
}

/// How few-shot examples are picked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplerKind {
    /// `random.Random(seed).sample`, one generator shared by all documents in order (lm-eval's
    /// `default` sampler).
    #[default]
    Random,
    /// The first `num_fewshot` documents of the few-shot split, in order (lm-eval's `first_n`).
    FirstN,
}

/// Few-shot settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FewshotSpec {
    /// How many solved examples precede each question.
    pub num: usize,
    /// How examples are picked.
    pub sampler: SamplerKind,
    /// Seed of the random sampler (lm-eval's `--fewshot_random_seed`, 1234 by default).
    pub seed: u64,
    /// Split the examples come from: a key of [`TaskSpec::splits`]. When unset, lm-eval's rule
    /// applies: the training split, else the validation split, else the test split.
    pub split: Option<String>,
    /// Drop the evaluated document from its own examples. lm-eval does this exactly when the
    /// configured few-shot split name equals the test split name (both unset counts as equal);
    /// unset here means that rule.
    pub exclude_eval_doc: Option<bool>,
    /// Restrict examples to documents whose value of this field equals the evaluated
    /// document's (MMLU's per-subject dev prefix when all subjects share one file).
    pub same_field: Option<String>,
    /// When the few-shot split has no data file, run zero-shot instead of failing (GSM8K's
    /// train file is the user's to provide).
    pub optional: bool,
    /// Delimiter after each example's question, when it differs from the task's.
    pub target_delimiter: Option<String>,
    /// Delimiter after each example, when it differs from the task's.
    pub fewshot_delimiter: Option<String>,
}

impl Default for FewshotSpec {
    fn default() -> Self {
        Self {
            num: 0,
            sampler: SamplerKind::Random,
            seed: 1234,
            split: None,
            exclude_eval_doc: None,
            same_field: None,
            optional: false,
            target_delimiter: None,
            fewshot_delimiter: None,
        }
    }
}

/// Decoding settings of `generate_until` tasks (lm-eval's `generation_kwargs`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerationSpec {
    /// Stop sequences; the output is cut at the first one.
    pub until: Vec<String>,
    /// Sample instead of greedy decoding.
    pub do_sample: bool,
    /// Sampling temperature (0 means greedy).
    pub temperature: f64,
    /// Most new tokens to generate (lm-eval's default is 256).
    pub max_gen_toks: usize,
    /// Any other settings, passed through to the model side untouched (`top_p`, ...).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Default for GenerationSpec {
    fn default() -> Self {
        Self {
            until: Vec::new(),
            do_sample: false,
            temperature: 0.0,
            max_gen_toks: 256,
            extra: BTreeMap::new(),
        }
    }
}

/// One step of a filter pipeline (lm-eval's `filter_list[].filter[]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "function", rename_all = "snake_case", deny_unknown_fields)]
pub enum FilterStep {
    /// Python `re.findall`, then pick one match (`group_select`, negative counts from the end);
    /// a match with several groups gives its first non-empty group; `fallback` when none.
    Regex {
        /// The pattern (Python `re` syntax).
        #[serde(default = "default_regex_pattern")]
        regex_pattern: String,
        /// Which match to keep.
        #[serde(default)]
        group_select: i64,
        /// Output when nothing matches.
        #[serde(default = "default_fallback")]
        fallback: String,
    },
    /// Strip leading and trailing whitespace.
    RemoveWhitespace,
    /// Lowercase.
    Lowercase,
    /// Uppercase.
    Uppercase,
    /// Keep the first response of the repeats.
    TakeFirst,
    /// Keep the first `k` responses of the repeats.
    TakeFirstK {
        /// How many.
        k: usize,
    },
    /// Keep the most frequent response of the repeats (ties: first seen).
    MajorityVote,
}

fn default_regex_pattern() -> String {
    r"#### (\-?[0-9\.\,]+)".to_string()
}

fn default_fallback() -> String {
    "[invalid]".to_string()
}

/// A named filter pipeline; each produces its own set of metrics (`exact_match,strict-match`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    /// The name metrics are reported under.
    pub name: String,
    /// The steps, in order.
    pub steps: Vec<FilterStep>,
}

/// Metrics this crate computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// Multiple choice: the highest log-likelihood is the gold choice.
    Acc,
    /// Multiple choice: highest log-likelihood per character of the choice is the gold choice.
    AccNorm,
    /// Multiple choice: highest log-likelihood per UTF-8 byte of the choice.
    AccBytes,
    /// Multiple choice, propensity reading: the behaviour-matching answer (the target) is
    /// preferred. Same number as `acc`, named for what it means on behaviour evals.
    Propensity,
    /// String equality after lm-eval's normalisations.
    ExactMatch,
    /// SQuAD exact match (lowercase, no punctuation, no articles, single spaces), best gold.
    SquadExactMatch,
    /// SQuAD token F1 after the same normalisation, best gold.
    SquadF1,
}

impl MetricKind {
    /// The name used in reports and YAML.
    pub fn name(self) -> &'static str {
        match self {
            Self::Acc => "acc",
            Self::AccNorm => "acc_norm",
            Self::AccBytes => "acc_bytes",
            Self::Propensity => "propensity",
            Self::ExactMatch => "exact_match",
            Self::SquadExactMatch => "squad_exact_match",
            Self::SquadF1 => "squad_f1",
        }
    }

    /// Every metric, for error messages.
    pub const ALL: [MetricKind; 7] = [
        Self::Acc,
        Self::AccNorm,
        Self::AccBytes,
        Self::Propensity,
        Self::ExactMatch,
        Self::SquadExactMatch,
        Self::SquadF1,
    ];

    /// Parse a metric name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// One metric and its options (lm-eval's `metric_list[]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricSpec {
    /// Which metric.
    pub metric: MetricKind,
    /// `exact_match`: compare lowercased.
    #[serde(default)]
    pub ignore_case: bool,
    /// `exact_match`: drop ASCII punctuation before comparing.
    #[serde(default)]
    pub ignore_punctuation: bool,
    /// `exact_match`: drop ASCII digits before comparing.
    #[serde(default)]
    pub ignore_numbers: bool,
    /// `exact_match`: Python regexes whose matches are deleted from both sides first.
    #[serde(default)]
    pub regexes_to_ignore: Vec<String>,
}

impl MetricSpec {
    /// A metric with no options.
    pub fn plain(metric: MetricKind) -> Self {
        Self {
            metric,
            ignore_case: false,
            ignore_punctuation: false,
            ignore_numbers: false,
            regexes_to_ignore: Vec::new(),
        }
    }
}

/// How the scores of a document's repeated generations become one score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Reducer {
    /// Mean of the per-response scores.
    #[default]
    Mean,
    /// The most frequent per-response score (ties: the first seen).
    Mode,
    /// The best per-response score.
    Max,
    /// Unbiased pass@k (Chen et al. 2021): `1 - C(n-c, k) / C(n, k)` with `c` correct of `n`.
    PassAtK {
        /// `k`, at most the number of repeats.
        k: usize,
    },
}

/// A complete task, whichever way it was written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Task name, used in reports and cache keys.
    pub name: String,
    /// How the model is asked.
    pub output_type: OutputType,
    /// Data files by split name (`test`, `validation`, `train`, `dev`...), relative paths
    /// resolved against the definition's directory. Empty when the caller passes documents.
    #[serde(default)]
    pub splits: BTreeMap<String, PathBuf>,
    /// The split evaluated (lm-eval's `test_split`).
    #[serde(default)]
    pub test_split: Option<String>,
    /// Evaluated when there is no test split (lm-eval's `validation_split`).
    #[serde(default)]
    pub validation_split: Option<String>,
    /// First fallback for few-shot examples (lm-eval's `training_split`).
    #[serde(default)]
    pub training_split: Option<String>,
    /// Text before everything else (a template, rendered per document).
    #[serde(default)]
    pub description: String,
    /// The question.
    pub doc_to_text: DocField,
    /// The choices (`multiple_choice`), or the list a target index points into.
    #[serde(default)]
    pub doc_to_choice: Option<DocField>,
    /// The gold: an index into the choices, a string, or a list of acceptable strings.
    pub doc_to_target: DocField,
    /// Between question and answer.
    #[serde(default = "default_target_delimiter")]
    pub target_delimiter: String,
    /// After each few-shot example.
    #[serde(default = "default_fewshot_delimiter")]
    pub fewshot_delimiter: String,
    /// Few-shot settings.
    #[serde(default)]
    pub fewshot: FewshotSpec,
    /// Decoding settings (`generate_until` only).
    #[serde(default)]
    pub generation: GenerationSpec,
    /// Filter pipelines (`generate_until`); none means one `none` pipeline that takes the first
    /// response.
    #[serde(default)]
    pub filters: Vec<FilterSpec>,
    /// Metrics; none means lm-eval's defaults (`acc`, `acc_norm` for multiple choice,
    /// `exact_match` for generation).
    #[serde(default)]
    pub metrics: Vec<MetricSpec>,
    /// Generations per document.
    #[serde(default = "one")]
    pub repeats: usize,
    /// How the repeats' scores are combined.
    #[serde(default)]
    pub reducer: Reducer,
}

fn default_target_delimiter() -> String {
    " ".to_string()
}

fn default_fewshot_delimiter() -> String {
    "\n\n".to_string()
}

fn one() -> usize {
    1
}

/// How a group's score comes from its tasks' scores (lm-eval's `aggregate_metric_list[]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateSpec {
    /// The metric aggregated.
    pub metric: MetricKind,
    /// Micro-average (weight each task by its document count) instead of a plain mean.
    #[serde(default = "yes")]
    pub weight_by_size: bool,
    /// Only this filter's values are aggregated (`none` for multiple choice).
    #[serde(default = "none_filter")]
    pub filter: String,
}

fn yes() -> bool {
    true
}

fn none_filter() -> String {
    "none".to_string()
}

/// A group of tasks reported together.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// The group's name.
    pub name: String,
    /// Member task names.
    pub tasks: Vec<String>,
    /// Aggregated metrics.
    #[serde(default)]
    pub aggregate: Vec<AggregateSpec>,
}

/// A TOML task file: one `[task]`-level definition, or a group with its member tasks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskFile {
    #[serde(default)]
    task: Vec<TaskSpec>,
    #[serde(default)]
    group: Vec<GroupSpec>,
}

/// What one definition file holds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskSet {
    /// Tasks, in file order.
    pub tasks: Vec<TaskSpec>,
    /// Groups, in file order.
    pub groups: Vec<GroupSpec>,
}

impl TaskSet {
    /// Parse TOML text. Relative split paths are resolved against `base_dir`.
    ///
    /// The file holds `[[task]]` tables and optionally `[[group]]` tables; see
    /// `docs/tasks.md`.
    pub fn from_toml_str(text: &str, base_dir: &Path) -> Result<Self> {
        Self::parse(text, base_dir, Path::new("<string>"))
    }

    /// Read a TOML definition file; relative paths are resolved against its directory.
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base, path)
    }

    fn parse(text: &str, base_dir: &Path, origin: &Path) -> Result<Self> {
        let file: TaskFile = toml::from_str(text).map_err(|source| Error::Toml {
            path: origin.to_path_buf(),
            source,
        })?;
        let mut tasks = file.task;
        for task in &mut tasks {
            task.resolve_paths(base_dir);
            task.validate()?;
        }
        Ok(Self {
            tasks,
            groups: file.group,
        })
    }

    /// The task of that name.
    pub fn task(&self, name: &str) -> Option<&TaskSpec> {
        self.tasks.iter().find(|t| t.name == name)
    }
}

impl TaskSpec {
    /// Make relative split paths relative to `base_dir`.
    pub fn resolve_paths(&mut self, base_dir: &Path) {
        for path in self.splits.values_mut() {
            if path.is_relative() {
                *path = base_dir.join(&*path);
            }
        }
    }

    /// Point a split at a data file (the user's MMLU copy, GSM8K's train file...).
    pub fn set_split(&mut self, split: &str, path: impl Into<PathBuf>) {
        self.splits.insert(split.to_string(), path.into());
    }

    /// The split evaluated: the test split, else the validation split.
    pub fn eval_split(&self) -> Option<&str> {
        self.test_split
            .as_deref()
            .or(self.validation_split.as_deref())
    }

    /// The split few-shot examples come from, by lm-eval's rule.
    pub fn fewshot_split(&self) -> Option<&str> {
        self.fewshot
            .split
            .as_deref()
            .or(self.training_split.as_deref())
            .or(self.validation_split.as_deref())
            .or(self.test_split.as_deref())
    }

    /// Whether the evaluated document is removed from its own few-shot examples.
    pub fn excludes_eval_doc(&self) -> bool {
        // lm-eval compares the configured names, so two unset names count as equal.
        self.fewshot
            .exclude_eval_doc
            .unwrap_or(self.fewshot.split == self.test_split)
    }

    /// The metrics computed: the configured ones, or lm-eval's defaults for the output type.
    pub fn effective_metrics(&self) -> Vec<MetricSpec> {
        if !self.metrics.is_empty() {
            return self.metrics.clone();
        }
        match self.output_type {
            OutputType::MultipleChoice => vec![
                MetricSpec::plain(MetricKind::Acc),
                MetricSpec::plain(MetricKind::AccNorm),
            ],
            OutputType::GenerateUntil => vec![MetricSpec::plain(MetricKind::ExactMatch)],
        }
    }

    /// The filter pipelines applied: the configured ones, or `none` = take the first response.
    pub fn effective_filters(&self) -> Vec<FilterSpec> {
        if self.filters.is_empty() {
            vec![FilterSpec {
                name: "none".to_string(),
                steps: vec![FilterStep::TakeFirst],
            }]
        } else {
            self.filters.clone()
        }
    }

    /// Check the parts that do not depend on documents.
    pub fn validate(&self) -> Result<()> {
        let invalid = |message: String, hint: &str| Error::Invalid {
            task: self.name.clone(),
            message,
            hint: hint.to_string(),
        };
        if self.name.trim().is_empty() {
            return Err(invalid(
                "the task has an empty name".into(),
                "set `name = \"...\"`",
            ));
        }
        if self.output_type == OutputType::MultipleChoice && self.doc_to_choice.is_none() {
            return Err(invalid(
                "a multiple_choice task needs choices".into(),
                "add `doc_to_choice = [\"A\", \"B\"]` or `doc_to_choice = { fields = [...] }`",
            ));
        }
        if self.repeats == 0 {
            return Err(invalid(
                "`repeats` is 0".into(),
                "use `repeats = 1` or more",
            ));
        }
        if let Reducer::PassAtK { k } = self.reducer
            && (k == 0 || k > self.repeats)
        {
            return Err(invalid(
                format!("pass@{k} needs 1 <= k <= repeats ({})", self.repeats),
                "raise `repeats` or lower `k`",
            ));
        }
        for metric in self.effective_metrics() {
            let mc_metric = matches!(
                metric.metric,
                MetricKind::Acc
                    | MetricKind::AccNorm
                    | MetricKind::AccBytes
                    | MetricKind::Propensity
            );
            if mc_metric != (self.output_type == OutputType::MultipleChoice) {
                return Err(invalid(
                    format!(
                        "metric `{}` does not apply to {:?} tasks",
                        metric.metric.name(),
                        self.output_type
                    ),
                    "use acc/acc_norm/acc_bytes/propensity for multiple_choice and exact_match/squad_exact_match/squad_f1 for generate_until",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_field_forms_round_trip_through_toml() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Wrap {
            fields: Vec<DocField>,
        }
        let text = r#"fields = [3, "{{q}}", ["A", "B"], { field = "answer" }, { fields = ["a", "b"] }, { field_or_template = "question" }]"#;
        let parsed: Wrap = toml::from_str(text).unwrap();
        assert_eq!(
            parsed.fields,
            vec![
                DocField::Index(3),
                DocField::Template("{{q}}".into()),
                DocField::List(vec!["A".into(), "B".into()]),
                DocField::Field {
                    field: "answer".into()
                },
                DocField::Fields {
                    fields: vec!["a".into(), "b".into()]
                },
                DocField::FieldOrTemplate {
                    field_or_template: "question".into()
                },
            ]
        );
        let again: Wrap = toml::from_str(&toml::to_string(&parsed).unwrap()).unwrap();
        assert_eq!(again, parsed);
    }

    #[test]
    fn toml_errors_name_the_file_and_validation_explains_the_fix() {
        let err = TaskSet::from_toml_str("[[task]]\nname = 3", Path::new(".")).unwrap_err();
        assert!(
            err.to_string()
                .contains("Failed to parse task definition `<string>`")
        );
        let err = TaskSet::from_toml_str(
            "[[task]]\nname = \"x\"\noutput_type = \"multiple_choice\"\ndoc_to_text = \"q\"\ndoc_to_target = 0\n",
            Path::new("."),
        )
        .unwrap_err();
        assert!(err.to_string().contains("needs choices"), "{err}");
        let err = TaskSet::from_toml_str(
            "[[task]]\nname = \"x\"\noutput_type = \"generate_until\"\ndoc_to_text = \"q\"\ndoc_to_target = \"a\"\nmetrics = [{ metric = \"acc\" }]\n",
            Path::new("."),
        )
        .unwrap_err();
        assert!(err.to_string().contains("does not apply"), "{err}");
    }
}
