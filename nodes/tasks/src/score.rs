//! From model responses to per-document scores, task metrics and group aggregates.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::metrics::{self, ExactMatch};
use crate::model::DocResponse;
use crate::regex::PyRegex;
use crate::spec::{FilterStep, GroupSpec, MetricKind, MetricSpec, OutputType, TaskSpec};
use crate::task::{Gold, PreparedDoc, Task};

/// One metric of one task under one filter, over all documents.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricScore {
    /// The metric.
    pub metric: MetricKind,
    /// The filter pipeline (`none` for multiple choice).
    pub filter: String,
    /// Mean over documents.
    pub value: f64,
    /// Standard error of the mean (`None` below two documents).
    pub stderr: Option<f64>,
    /// Documents counted.
    pub n: usize,
}

impl MetricScore {
    /// lm-eval's result key, `metric,filter` (`exact_match,strict-match`).
    pub fn key(&self) -> String {
        format!("{},{}", self.metric.name(), self.filter)
    }
}

/// What happened on one document under one filter.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SampleScore {
    /// Index of the document in the evaluated split.
    pub doc_id: usize,
    /// The filter pipeline.
    pub filter: String,
    /// Multiple choice: each choice's log-likelihood.
    pub loglikelihoods: Vec<f64>,
    /// Multiple choice: the chosen index (first maximum).
    pub prediction: Option<usize>,
    /// Multiple choice: the gold indices the prediction is compared with (empty when the gold
    /// is not among the choices).
    pub gold_indices: Vec<usize>,
    /// Generation: the raw responses, one per repeat.
    pub responses: Vec<String>,
    /// Generation: the responses after the filter pipeline.
    pub filtered: Vec<String>,
    /// Generation: the gold strings.
    pub golds: Vec<String>,
    /// Each metric's value on this document.
    pub scores: Vec<(MetricKind, f64)>,
}

/// A task's results.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskScores {
    /// The task.
    pub task: String,
    /// Documents scored.
    pub n_docs: usize,
    /// One entry per metric and filter.
    pub metrics: Vec<MetricScore>,
    /// One entry per document and filter.
    pub samples: Vec<SampleScore>,
}

impl TaskScores {
    /// The metrics recomputed over the documents sharing each value of `field` (MMLU's
    /// `subject`), keyed by that value; documents without the field go under `""`.
    pub fn breakdown(
        &self,
        docs: &crate::TaskDocs,
        field: &str,
    ) -> std::collections::BTreeMap<String, Vec<MetricScore>> {
        let mut values: std::collections::BTreeMap<(String, String, MetricKind), Vec<f64>> =
            Default::default();
        for sample in &self.samples {
            let key = docs
                .eval
                .get(sample.doc_id)
                .and_then(|d| d.get(field))
                .map(|v| match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_default();
            for (metric, value) in &sample.scores {
                values
                    .entry((key.clone(), sample.filter.clone(), *metric))
                    .or_default()
                    .push(*value);
            }
        }
        let mut out: std::collections::BTreeMap<String, Vec<MetricScore>> = Default::default();
        for ((key, filter, metric), v) in values {
            out.entry(key).or_default().push(MetricScore {
                metric,
                filter,
                value: metrics::mean(&v),
                stderr: metrics::mean_stderr(&v),
                n: v.len(),
            });
        }
        out
    }

    /// The score of `metric` under `filter`.
    pub fn get(&self, metric: MetricKind, filter: &str) -> Option<&MetricScore> {
        self.metrics
            .iter()
            .find(|m| m.metric == metric && m.filter == filter)
    }
}

/// A group's aggregate of one metric.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupScore {
    /// The metric.
    pub metric: MetricKind,
    /// The filter aggregated.
    pub filter: String,
    /// Weighted (by document count) or plain mean of the member tasks' values.
    pub value: f64,
    /// Pooled standard error of the members (lm-eval's `pooled_sample_stderr`).
    pub stderr: Option<f64>,
    /// Total documents.
    pub n: usize,
    /// Whether members were weighted by size.
    pub weight_by_size: bool,
}

/// A group's results.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupScores {
    /// The group.
    pub group: String,
    /// Its member tasks, in the group's order.
    pub tasks: Vec<String>,
    /// One entry per aggregated metric.
    pub metrics: Vec<GroupScore>,
}

#[derive(Clone, Debug)]
pub(crate) enum CompiledStep {
    Regex {
        regex: PyRegex,
        group_select: i64,
        fallback: String,
    },
    RemoveWhitespace,
    Lowercase,
    Uppercase,
    TakeFirst,
    TakeFirstK(usize),
    MajorityVote,
}

#[derive(Clone, Debug)]
pub(crate) struct CompiledFilter {
    name: String,
    steps: Vec<CompiledStep>,
}

#[derive(Clone, Debug)]
pub(crate) struct CompiledMetric {
    kind: MetricKind,
    exact: ExactMatch,
}

/// Filters and metrics with their regexes compiled.
#[derive(Clone, Debug)]
pub(crate) struct Scoring {
    filters: Vec<CompiledFilter>,
    metrics: Vec<CompiledMetric>,
}

impl Scoring {
    pub(crate) fn compile(spec: &TaskSpec) -> Result<Self> {
        let regex = |pattern: &str| {
            PyRegex::new(pattern).map_err(|source| Error::Regex {
                task: spec.name.clone(),
                pattern: pattern.to_string(),
                source: Box::new(source),
            })
        };
        let mut filters = Vec::new();
        for filter in spec.effective_filters() {
            let mut steps = Vec::new();
            for step in &filter.steps {
                steps.push(match step {
                    FilterStep::Regex {
                        regex_pattern,
                        group_select,
                        fallback,
                    } => CompiledStep::Regex {
                        regex: regex(regex_pattern)?,
                        group_select: *group_select,
                        fallback: fallback.clone(),
                    },
                    FilterStep::RemoveWhitespace => CompiledStep::RemoveWhitespace,
                    FilterStep::Lowercase => CompiledStep::Lowercase,
                    FilterStep::Uppercase => CompiledStep::Uppercase,
                    FilterStep::TakeFirst => CompiledStep::TakeFirst,
                    FilterStep::TakeFirstK { k } => CompiledStep::TakeFirstK(*k),
                    FilterStep::MajorityVote => CompiledStep::MajorityVote,
                });
            }
            filters.push(CompiledFilter {
                name: filter.name.clone(),
                steps,
            });
        }
        let metrics = spec
            .effective_metrics()
            .iter()
            .map(|m: &MetricSpec| {
                Ok(CompiledMetric {
                    kind: m.metric,
                    exact: ExactMatch {
                        regexes_to_ignore: m
                            .regexes_to_ignore
                            .iter()
                            .map(|p| regex(p))
                            .collect::<Result<_>>()?,
                        ignore_case: m.ignore_case,
                        ignore_punctuation: m.ignore_punctuation,
                        ignore_numbers: m.ignore_numbers,
                    },
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self { filters, metrics })
    }
}

impl CompiledFilter {
    fn apply(&self, responses: &[String]) -> Result<Vec<String>> {
        let mut current: Vec<String> = responses.to_vec();
        for step in &self.steps {
            current = match step {
                CompiledStep::Regex {
                    regex,
                    group_select,
                    fallback,
                } => current
                    .iter()
                    .map(|r| extract(regex, *group_select, fallback, r))
                    .collect::<Result<_>>()?,
                CompiledStep::RemoveWhitespace => current
                    .iter()
                    .map(|r| r.trim_matches(crate::task::is_py_whitespace).to_string())
                    .collect(),
                CompiledStep::Lowercase => current.iter().map(|r| r.to_lowercase()).collect(),
                CompiledStep::Uppercase => current.iter().map(|r| r.to_uppercase()).collect(),
                CompiledStep::TakeFirst => current.into_iter().take(1).collect(),
                CompiledStep::TakeFirstK(k) => current.into_iter().take(*k).collect(),
                CompiledStep::MajorityVote => {
                    let mut best: Option<(&String, usize)> = None;
                    for r in &current {
                        let count = current.iter().filter(|x| *x == r).count();
                        if best.is_none_or(|(_, c)| count > c) {
                            best = Some((r, count));
                        }
                    }
                    best.map(|(r, _)| vec![r.clone()]).unwrap_or_default()
                }
            };
        }
        Ok(current)
    }
}

/// lm-eval's `regex` filter on one response.
fn extract(regex: &PyRegex, group_select: i64, fallback: &str, response: &str) -> Result<String> {
    let matches = regex.findall(response).map_err(|e| Error::RegexRun {
        pattern: regex.pattern().to_string(),
        source: Box::new(e),
    })?;
    if matches.is_empty() {
        return Ok(fallback.to_string());
    }
    let len = matches.len() as i64;
    let index = if group_select < 0 {
        len + group_select
    } else {
        group_select
    };
    let Some(groups) = usize::try_from(index).ok().and_then(|i| matches.get(i)) else {
        return Ok(fallback.to_string());
    };
    let chosen = groups.iter().find(|g| !g.is_empty());
    Ok(match chosen {
        Some(g) => g.trim_matches(crate::task::is_py_whitespace).to_string(),
        None if groups.len() == 1 => String::new(),
        None => fallback.to_string(),
    })
}

impl Task {
    /// Score the model's responses to `docs` (as returned by [`crate::run_requests`], one per
    /// prepared document, in order).
    pub fn score(&self, docs: &[PreparedDoc], responses: &[DocResponse]) -> Result<TaskScores> {
        let spec = self.spec();
        let mismatch = |message: String| Error::Responses {
            task: spec.name.clone(),
            message,
        };
        if docs.len() != responses.len() {
            return Err(mismatch(format!(
                "{} documents but {} responses",
                docs.len(),
                responses.len()
            )));
        }
        let mut samples = Vec::new();
        for (doc, response) in docs.iter().zip(responses) {
            match (spec.output_type, response) {
                (OutputType::MultipleChoice, DocResponse::Loglikelihoods(lls)) => {
                    if lls.len() != doc.choices.len() {
                        return Err(mismatch(format!(
                            "document {} has {} choices but {} log-likelihoods",
                            doc.doc_id,
                            doc.choices.len(),
                            lls.len()
                        )));
                    }
                    samples.push(self.score_choice(doc, lls.iter().map(|l| l.logprob).collect()));
                }
                (OutputType::GenerateUntil, DocResponse::Generations(texts)) => {
                    for filter in &self.scoring().filters {
                        samples.push(self.score_generation(doc, filter, texts)?);
                    }
                }
                _ => {
                    return Err(mismatch(format!(
                        "document {} got a response of the wrong kind for a {:?} task",
                        doc.doc_id, spec.output_type
                    )));
                }
            }
        }
        let mut metrics_out = Vec::new();
        let filter_names: Vec<String> = match spec.output_type {
            OutputType::MultipleChoice => vec!["none".to_string()],
            OutputType::GenerateUntil => self
                .scoring()
                .filters
                .iter()
                .map(|f| f.name.clone())
                .collect(),
        };
        for filter in &filter_names {
            for metric in &self.scoring().metrics {
                let values: Vec<f64> = samples
                    .iter()
                    .filter(|s| &s.filter == filter)
                    .filter_map(|s| {
                        s.scores
                            .iter()
                            .find(|(k, _)| *k == metric.kind)
                            .map(|(_, v)| *v)
                    })
                    .collect();
                if values.is_empty() {
                    continue;
                }
                metrics_out.push(MetricScore {
                    metric: metric.kind,
                    filter: filter.clone(),
                    value: metrics::mean(&values),
                    stderr: metrics::mean_stderr(&values),
                    n: values.len(),
                });
            }
        }
        Ok(TaskScores {
            task: spec.name.clone(),
            n_docs: docs.len(),
            metrics: metrics_out,
            samples,
        })
    }

    fn score_choice(&self, doc: &PreparedDoc, lls: Vec<f64>) -> SampleScore {
        let in_range = |i: &i64| usize::try_from(*i).ok().filter(|&i| i < doc.choices.len());
        let gold_indices: Vec<usize> = match &doc.gold {
            Gold::Index(i) => in_range(i).into_iter().collect(),
            Gold::Indices(v) => v.iter().filter_map(in_range).collect(),
            Gold::Text(s) => doc
                .choices
                .iter()
                .position(|c| c == s)
                .into_iter()
                .collect(),
            Gold::Texts(v) => v
                .iter()
                .filter_map(|s| doc.choices.iter().position(|c| c == s))
                .collect(),
        };
        let pred = metrics::argmax(&lls);
        let per = |len: fn(&str) -> usize| -> Option<usize> {
            let normed: Vec<f64> = lls
                .iter()
                .zip(&doc.choices)
                .map(|(ll, c)| ll / len(c) as f64)
                .collect();
            metrics::argmax(&normed)
        };
        let pred_norm = per(|c| c.chars().count());
        let pred_bytes = per(str::len);
        let hit =
            |p: Option<usize>| f64::from(u8::from(p.is_some_and(|p| gold_indices.contains(&p))));
        let scores = self
            .scoring()
            .metrics
            .iter()
            .map(|m| {
                let v = match m.kind {
                    MetricKind::Acc | MetricKind::Propensity => hit(pred),
                    MetricKind::AccNorm => hit(pred_norm),
                    MetricKind::AccBytes => hit(pred_bytes),
                    _ => f64::NAN,
                };
                (m.kind, v)
            })
            .collect();
        SampleScore {
            doc_id: doc.doc_id,
            filter: "none".into(),
            loglikelihoods: lls,
            prediction: pred,
            gold_indices,
            responses: Vec::new(),
            filtered: Vec::new(),
            golds: Vec::new(),
            scores,
        }
    }

    fn score_generation(
        &self,
        doc: &PreparedDoc,
        filter: &CompiledFilter,
        texts: &[String],
    ) -> Result<SampleScore> {
        let spec = self.spec();
        let golds: Vec<String> = match &doc.gold {
            Gold::Index(i) if !doc.choices.is_empty() => usize::try_from(*i)
                .ok()
                .and_then(|i| doc.choices.get(i).cloned())
                .into_iter()
                .collect(),
            Gold::Index(i) => vec![i.to_string()],
            Gold::Indices(v) => v.iter().map(i64::to_string).collect(),
            Gold::Text(s) => vec![s.clone()],
            Gold::Texts(v) => v.clone(),
        };
        let filtered = filter.apply(texts)?;
        let mut scores = Vec::new();
        for m in &self.scoring().metrics {
            let per_response: Vec<f64> = filtered
                .iter()
                .map(|r| {
                    Ok(match m.kind {
                        MetricKind::ExactMatch => m.exact.score(r, &golds)?,
                        MetricKind::SquadExactMatch => metrics::squad_exact_match(r, &golds),
                        MetricKind::SquadF1 => metrics::squad_f1(r, &golds),
                        _ => f64::NAN,
                    })
                })
                .collect::<Result<_>>()?;
            if let crate::Reducer::PassAtK { k } = spec.reducer
                && per_response.len() < k
            {
                return Err(Error::Invalid {
                    task: spec.name.clone(),
                    message: format!(
                        "pass@{k} needs {k} responses per document but filter `{}` leaves {}",
                        filter.name,
                        per_response.len()
                    ),
                    hint: "drop `take_first` from the filter steps of pass@k tasks".into(),
                });
            }
            scores.push((m.kind, metrics::reduce(spec.reducer, &per_response)));
        }
        Ok(SampleScore {
            doc_id: doc.doc_id,
            filter: filter.name.clone(),
            loglikelihoods: Vec::new(),
            prediction: None,
            gold_indices: Vec::new(),
            responses: texts.to_vec(),
            filtered,
            golds,
            scores,
        })
    }
}

/// Aggregate member task scores into a group score (lm-eval's `aggregate_metric_list`):
/// a mean of the members' values, weighted by their document counts when `weight_by_size`.
pub fn aggregate_group(group: &GroupSpec, results: &[TaskScores]) -> Result<GroupScores> {
    let mut metrics_out = Vec::new();
    for agg in &group.aggregate {
        let mut values = Vec::new();
        let mut stderrs = Vec::new();
        let mut sizes = Vec::new();
        for task in &group.tasks {
            let scores =
                results
                    .iter()
                    .find(|r| &r.task == task)
                    .ok_or_else(|| Error::Invalid {
                        task: group.name.clone(),
                        message: format!("group member `{task}` has no results"),
                        hint: "score every member task before aggregating the group".into(),
                    })?;
            let m = scores
                .get(agg.metric, &agg.filter)
                .ok_or_else(|| Error::Invalid {
                    task: group.name.clone(),
                    message: format!(
                        "member `{task}` has no `{},{}` score",
                        agg.metric.name(),
                        agg.filter
                    ),
                    hint: "aggregate a metric every member computes".into(),
                })?;
            values.push(m.value);
            stderrs.push(m.stderr.unwrap_or(0.0));
            sizes.push(m.n);
        }
        let weights: Vec<f64> = if agg.weight_by_size {
            sizes.iter().map(|&n| n as f64).collect()
        } else {
            vec![1.0; sizes.len()]
        };
        let total: f64 = weights.iter().sum();
        let value = values.iter().zip(&weights).map(|(v, w)| v * w).sum::<f64>() / total;
        metrics_out.push(GroupScore {
            metric: agg.metric,
            filter: agg.filter.clone(),
            value,
            // lm-eval pools the members' standard errors by size whether or not the value is
            // weighted; keep its number.
            stderr: metrics::pooled_stderr(&stderrs, &sizes),
            n: sizes.iter().sum(),
            weight_by_size: agg.weight_by_size,
        });
    }
    Ok(GroupScores {
        group: group.name.clone(),
        tasks: group.tasks.clone(),
        metrics: metrics_out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_filter_follows_lm_eval() {
        let strict = PyRegex::new(r"#### (\-?[0-9\.\,]+)").unwrap();
        assert_eq!(
            extract(&strict, 0, "[invalid]", "x #### 18\n").unwrap(),
            "18"
        );
        assert_eq!(extract(&strict, 0, "[invalid]", "18").unwrap(), "[invalid]");
        let flexible = PyRegex::new(r"(-?[$0-9.,]{2,})|(-?[0-9]+)").unwrap();
        assert_eq!(
            extract(&flexible, -1, "[invalid]", "She has 3 eggs, so $18.").unwrap(),
            "$18."
        );
        assert_eq!(
            extract(&flexible, -1, "[invalid]", "answer: 7").unwrap(),
            "7"
        );
    }
}
