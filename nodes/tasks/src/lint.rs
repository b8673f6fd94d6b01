//! Template lint: catch prompts that cannot measure anything before any forward pass.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::Serialize;

use crate::spec::OutputType;
use crate::task::{Gold, PreparedDoc, Task, TaskDocs};

/// How bad a lint finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The evaluation must not run.
    Error,
    /// Legitimate in some data sets; reported, not blocking.
    Warning,
}

/// One lint finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LintIssue {
    /// Error or warning.
    pub severity: Severity,
    /// The document (index in the evaluated split), when the finding is about one.
    pub doc_id: Option<usize>,
    /// The definition field at fault (`doc_to_text`, `doc_to_choice`, `doc_to_target`...).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for LintIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match self.doc_id {
            Some(id) => write!(
                f,
                "{level}: document {id}, `{}`: {}",
                self.field, self.message
            ),
            None => write!(f, "{level}: `{}`: {}", self.field, self.message),
        }
    }
}

/// All findings of one lint run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LintReport {
    /// The task.
    pub task: String,
    /// Findings, errors and warnings mixed, in document order.
    pub issues: Vec<LintIssue>,
}

impl LintReport {
    /// The blocking findings.
    pub fn errors(&self) -> impl Iterator<Item = &LintIssue> {
        self.issues.iter().filter(|i| i.severity == Severity::Error)
    }

    /// The non-blocking findings.
    pub fn warnings(&self) -> impl Iterator<Item = &LintIssue> {
        self.issues
            .iter()
            .filter(|i| i.severity == Severity::Warning)
    }

    /// `Err(Error::Lint)` when there is any error; the warnings otherwise.
    pub fn into_result(self) -> crate::Result<Vec<LintIssue>> {
        let (errors, warnings): (Vec<_>, Vec<_>) = self
            .issues
            .into_iter()
            .partition(|i| i.severity == Severity::Error);
        if errors.is_empty() {
            Ok(warnings)
        } else {
            Err(crate::Error::Lint {
                task: self.task,
                issues: errors,
            })
        }
    }
}

/// A share of documents above which one shared prompt means the template ignores the document.
const CONSTANT_PROMPT_SHARE: f64 = 0.1;

/// Unfilled placeholders: Jinja delimiters, or a Python-format `{name}`.
fn placeholders(text: &str) -> Vec<&str> {
    static RE: std::sync::OnceLock<fancy_regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        fancy_regex::Regex::new(r"\{\{|\}\}|\{%|%\}|\{[A-Za-z_][A-Za-z0-9_]*\}")
            .expect("constant pattern")
    });
    re.find_iter(text)
        .filter_map(|m| m.ok())
        .map(|m| m.as_str())
        .collect()
}

fn string_values(doc: &crate::Doc, out: &mut HashSet<String>) {
    fn walk(v: &serde_json::Value, out: &mut HashSet<String>) {
        match v {
            serde_json::Value::String(s) => {
                for p in placeholders(s) {
                    out.insert(p.to_string());
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            serde_json::Value::Object(map) => map.values().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    doc.values().for_each(|v| walk(v, out));
}

impl Task {
    /// Check prepared documents: unfilled placeholders, empty prompts, empty or duplicate
    /// choices, gold answers outside the choices, and one prompt shared by many documents.
    ///
    /// A placeholder that also occurs in the documents' own text is a warning (the data says
    /// `{x}`), one only the template can have produced is an error. Duplicate prompts are an
    /// error when one prompt covers at least 3 documents and 10% of the split and the
    /// documents do not differ in their choices; otherwise a warning (duplicated rows).
    pub fn lint(&self, docs: &TaskDocs, prepared: &[PreparedDoc]) -> LintReport {
        let mut issues = Vec::new();
        let mut push = |severity, doc_id: Option<usize>, field: &str, message: String| {
            issues.push(LintIssue {
                severity,
                doc_id,
                field: field.to_string(),
                message,
            })
        };
        let mut pool_tokens = HashSet::new();
        if let Some(pool) = &docs.fewshot {
            pool.iter().for_each(|d| string_values(d, &mut pool_tokens));
        }
        let mc = self.spec().output_type == OutputType::MultipleChoice;
        for p in prepared {
            let mut own = HashSet::new();
            if let Some(doc) = docs.eval.get(p.doc_id) {
                string_values(doc, &mut own);
            }
            let mut check = |text: &str, field: &str, others: &HashSet<String>| {
                let mut seen = HashSet::new();
                for token in placeholders(text) {
                    if !seen.insert(token) {
                        continue;
                    }
                    let from_data = own.contains(token) || others.contains(token);
                    push(
                        if from_data {
                            Severity::Warning
                        } else {
                            Severity::Error
                        },
                        Some(p.doc_id),
                        field,
                        if from_data {
                            format!(
                                "the rendered text contains `{token}`, which the document's own data also contains"
                            )
                        } else {
                            format!(
                                "the rendered text contains the unfilled placeholder `{token}`; Jinja fields are written `{{{{ name }}}}`"
                            )
                        },
                    );
                }
            };
            let empty = HashSet::new();
            check(&p.question, "doc_to_text", &empty);
            if let Some(rest) = p.prompt.strip_suffix(p.question.as_str())
                && !rest.is_empty()
            {
                check(rest, "description/few-shot", &pool_tokens);
            }
            for choice in &p.choices {
                check(choice, "doc_to_choice", &empty);
            }
            match &p.gold {
                Gold::Text(s) => check(s, "doc_to_target", &empty),
                Gold::Texts(v) => v.iter().for_each(|s| check(s, "doc_to_target", &empty)),
                _ => {}
            }
            if p.question.trim().is_empty() && p.prompt.trim().is_empty() {
                push(
                    Severity::Error,
                    Some(p.doc_id),
                    "doc_to_text",
                    "the prompt renders empty".into(),
                );
            }
            if mc {
                lint_choices(p, &mut push);
            } else if matches!(&p.gold, Gold::Text(s) if s.trim().is_empty())
                || matches!(&p.gold, Gold::Texts(v) if v.is_empty())
            {
                push(
                    Severity::Warning,
                    Some(p.doc_id),
                    "doc_to_target",
                    "the gold answer is empty".into(),
                );
            }
        }
        lint_shared_prompts(prepared, mc, &mut push);
        LintReport {
            task: self.name().to_string(),
            issues,
        }
    }
}

fn lint_choices(p: &PreparedDoc, push: &mut impl FnMut(Severity, Option<usize>, &str, String)) {
    let id = Some(p.doc_id);
    if p.choices.is_empty() {
        push(
            Severity::Error,
            id,
            "doc_to_choice",
            "the choice list is empty".into(),
        );
        return;
    }
    if let Some(i) = p.choices.iter().position(String::is_empty) {
        push(
            Severity::Error,
            id,
            "doc_to_choice",
            format!("choice {i} is an empty string (acc_norm divides by its length)"),
        );
    }
    let golds: Vec<Option<usize>> = match &p.gold {
        Gold::Index(i) => vec![usize::try_from(*i).ok().filter(|&i| i < p.choices.len())],
        Gold::Indices(v) => v
            .iter()
            .map(|i| usize::try_from(*i).ok().filter(|&i| i < p.choices.len()))
            .collect(),
        Gold::Text(s) => vec![p.choices.iter().position(|c| c == s)],
        Gold::Texts(v) => v
            .iter()
            .map(|s| p.choices.iter().position(|c| c == s))
            .collect(),
    };
    if golds.is_empty() || golds.iter().any(Option::is_none) {
        let gold = match &p.gold {
            Gold::Index(i) => format!("index {i}"),
            Gold::Indices(v) => format!("indices {v:?}"),
            Gold::Text(s) => format!("{s:?}"),
            Gold::Texts(v) => format!("{v:?}"),
        };
        push(
            Severity::Error,
            id,
            "doc_to_target",
            format!(
                "the gold {gold} is not among the {} choices {:?}",
                p.choices.len(),
                p.choices
            ),
        );
    }
    let mut first_at: HashMap<&str, usize> = HashMap::new();
    for (i, c) in p.choices.iter().enumerate() {
        if let Some(&j) = first_at.get(c.as_str()) {
            let gold_is_duplicate = golds.iter().flatten().any(|&g| g == i || g == j);
            push(
                if gold_is_duplicate {
                    Severity::Error
                } else {
                    Severity::Warning
                },
                id,
                "doc_to_choice",
                format!(
                    "choices {j} and {i} are both {c:?}{}",
                    if gold_is_duplicate {
                        ", and one of them is the gold"
                    } else {
                        ""
                    }
                ),
            );
        } else {
            first_at.insert(c, i);
        }
    }
}

fn lint_shared_prompts(
    prepared: &[PreparedDoc],
    mc: bool,
    push: &mut impl FnMut(Severity, Option<usize>, &str, String),
) {
    let mut by_prompt: HashMap<&str, Vec<&PreparedDoc>> = HashMap::new();
    for p in prepared {
        by_prompt.entry(p.prompt.as_str()).or_default().push(p);
    }
    let mut groups: Vec<Vec<&PreparedDoc>> =
        by_prompt.into_values().filter(|g| g.len() > 1).collect();
    groups.sort_by_key(|g| g[0].doc_id);
    let n = prepared.len();
    for group in groups {
        let ids: Vec<usize> = group.iter().map(|p| p.doc_id).collect();
        let choices_differ = mc && group.iter().any(|p| p.choices != group[0].choices);
        let many = group.len() >= 3 && group.len() as f64 >= CONSTANT_PROMPT_SHARE * n as f64;
        let shown: Vec<String> = ids.iter().take(8).map(usize::to_string).collect();
        let more = if ids.len() > 8 {
            format!(" and {} more", ids.len() - 8)
        } else {
            String::new()
        };
        if many && !choices_differ {
            push(
                Severity::Error,
                Some(ids[0]),
                "doc_to_text",
                format!(
                    "{} of {n} documents render the same prompt (documents {}{more}); the template probably ignores the document",
                    ids.len(),
                    shown.join(", ")
                ),
            );
        } else {
            push(
                Severity::Warning,
                Some(ids[0]),
                "doc_to_text",
                format!(
                    "documents {}{more} render the same prompt{}",
                    shown.join(", "),
                    if choices_differ {
                        " (their choices differ)"
                    } else {
                        " (duplicated rows?)"
                    }
                ),
            );
        }
    }
}
