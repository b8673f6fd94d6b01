//! `evaluate` (runs in dag-worker) and `compare-evals` (runs here): benchmark and propensity
//! tasks with lm-evaluation-harness semantics, and the paired comparison of two evaluations
//! on the same items.
//!
//! The per-sample records both nodes share are one JSON object per line:
//! `{task, doc_id, filter, prompt_hash, item_keys, choices, loglikelihoods, prediction,
//! target, responses, filtered, scores: {metric: value}}`.

use std::collections::BTreeMap;

use dag_engine::{
    ArtifactKind, Node, NodeError, NodeSpec, ParamSpec, ParamType, PortSpec, Resources, RunContext,
    Value,
};
use dag_metrics::{BootstrapConfig, paired_comparison};
use serde_json::{Value as Json, json};

use dag_protocol::evaluate::EvaluateParams;

use crate::worker::WorkerNode;
use dag_table as table;

/// The `evaluate` node type.
pub fn evaluate() -> WorkerNode {
    WorkerNode(NodeSpec {
        name: "evaluate",
        version: 1,
        doc: "Runs evaluation tasks on a model with lm-evaluation-harness semantics: multiple choice by \
              continuation log-likelihood (each context's KV cache computed once and shared by its choices), \
              generate_until with filters and exact match. `tasks` names tasks or groups from `definitions` \
              (our TOML or lm-eval YAML) or the built-in sets (advanced_ai_risk, gsm8k, mmlu, nq_open, whose \
              data is read under `data`). Prompts are linted before the first forward pass. Writes metrics with \
              standard errors and seeded bootstrap intervals, group aggregates, and per-sample records. \
              Built-in definitions are part of this node's version.",
        inputs: vec![PortSpec::new(
            "model",
            ArtifactKind::Model,
            "the model (a `model` node, or a finetune checkpoint)",
        )],
        outputs: vec![
            PortSpec::new(
                "metrics",
                ArtifactKind::Metrics,
                "metrics.json: per task and group, value, stderr, 95% bootstrap interval, n",
            ),
            PortSpec::new(
                "samples",
                ArtifactKind::Scores,
                "one row per document and filter: prompt hash, item keys, choices, log-likelihoods, prediction, target, scores",
            ),
        ],
        params: ParamSpec::from_params::<EvaluateParams>(),
        resources: Resources::GPU,
    })
}

/// The `compare-evals` node type: a paired comparison of two evaluations.
pub struct CompareEvals(NodeSpec);

impl CompareEvals {
    /// The node type with its spec.
    pub fn new() -> Self {
        CompareEvals(NodeSpec {
            name: "compare-evals",
            version: 1,
            doc: "Compares two evaluations of the same tasks item by item (per-sample records of two \
                  `evaluate` nodes, e.g. a base model and a finetuned checkpoint): for every task, filter and \
                  metric, the mean difference b - a with a seeded bootstrap 95% interval, a paired sign-flip \
                  p-value and the paired t-test. Items are matched by task, document id and filter; an item \
                  present on one side only is an error, since the comparison would not be paired.",
            inputs: vec![
                PortSpec::new(
                    "a",
                    ArtifactKind::Scores,
                    "samples of the reference evaluation",
                ),
                PortSpec::new(
                    "b",
                    ArtifactKind::Scores,
                    "samples of the evaluation compared with it",
                ),
            ],
            outputs: vec![PortSpec::new(
                "metrics",
                ArtifactKind::Metrics,
                "metrics.json: per task, filter and metric, means, difference, interval and p-values",
            )],
            params: vec![
                ParamSpec::with_default(
                    "bootstrap_iters",
                    ParamType::Int,
                    Value::Int(1000),
                    "resamples for the interval and the Monte Carlo sign-flip test",
                )
                .min(2.0),
                ParamSpec::with_default("seed", ParamType::Int, Value::Int(1234), "bootstrap seed")
                    .min(0.0),
            ],
            resources: Resources::CPU,
        })
    }
}

impl Default for CompareEvals {
    fn default() -> Self {
        Self::new()
    }
}

type ItemKey = (String, String, u64);
/// Paired per-document values of one (task, filter, metric): `a`'s, then `b`'s.
type Paired = BTreeMap<(String, String, String), (Vec<f64>, Vec<f64>)>;

/// Per-sample scores keyed by (task, filter, doc_id), then metric.
fn read_samples(
    path: &std::path::Path,
) -> Result<BTreeMap<ItemKey, BTreeMap<String, f64>>, NodeError> {
    let rows = table::read_dataset(path)
        .map_err(|e| NodeError::caused(format!("Failed to read `{}`", path.display()), &e))?;
    let mut out = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        let (Some(task), Some(filter), Some(doc)) = (
            row.get("task").and_then(Json::as_str),
            row.get("filter").and_then(Json::as_str),
            row.get("doc_id").and_then(Json::as_u64),
        ) else {
            return Err(NodeError::msg(format!(
                "Row {} of `{}` is not a per-sample record (no task, filter or doc_id)",
                i + 1,
                path.display()
            ))
            .hint("connect the `samples` output of an `evaluate` node"));
        };
        let scores = row
            .get("scores")
            .and_then(Json::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_f64().map(|x| (k.clone(), x)))
                    .collect()
            })
            .unwrap_or_default();
        out.insert((task.to_string(), filter.to_string(), doc), scores);
    }
    Ok(out)
}

impl Node for CompareEvals {
    fn spec(&self) -> &NodeSpec {
        &self.0
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let a = read_samples(&ctx.input("a")?.path)?;
        let b = read_samples(&ctx.input("b")?.path)?;
        if let Some(k) = a
            .keys()
            .find(|k| !b.contains_key(*k))
            .or_else(|| b.keys().find(|k| !a.contains_key(*k)))
        {
            let side = if a.contains_key(k) { "a" } else { "b" };
            return Err(NodeError::msg(format!(
                "Document {} of task `{}` (filter `{}`) is only in `{side}`",
                k.2, k.0, k.1
            ))
            .hint("compare evaluations of the same tasks with the same `limit`; a paired comparison needs every item on both sides"));
        }
        let config = BootstrapConfig {
            n_resamples: ctx.int("bootstrap_iters").unwrap_or(1000).max(2) as usize,
            seed: ctx.int("seed").unwrap_or(1234) as u64,
            level: 0.95,
        };
        // (task, filter, metric) -> paired values in document order.
        let mut paired: Paired = BTreeMap::new();
        for (k, sa) in &a {
            let sb = &b[k];
            for (metric, x) in sa {
                if let Some(y) = sb.get(metric) {
                    let e = paired
                        .entry((k.0.clone(), k.1.clone(), metric.clone()))
                        .or_default();
                    e.0.push(*x);
                    e.1.push(*y);
                }
            }
        }
        let mut tasks = serde_json::Map::new();
        let mut table_rows = Vec::new();
        for ((task, filter, metric), (xs, ys)) in &paired {
            // Called as (b, a): the difference is b - a, positive when `b` scores higher, and the
            // result's `mean_a` is b's mean.
            let c = paired_comparison(ys, xs, &config).map_err(|e| {
                NodeError::caused_hinted(
                    format!("Failed to compare `{metric}` on task `{task}`"),
                    &e,
                )
            })?;
            let key = format!("{metric},{filter}");
            let entry = tasks
                .entry(task.clone())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("object");
            entry.insert(format!("{key} a"), json!(c.mean_b));
            entry.insert(format!("{key} b"), json!(c.mean_a));
            entry.insert(format!("{key} b-a"), json!(c.difference.estimate));
            entry.insert(format!("{key} p"), json!(c.sign_flip_p_value));
            table_rows.push(json!({
                "task": task, "metric": metric, "filter": filter, "n": c.n,
                "a": c.mean_b, "b": c.mean_a, "difference": c.difference.estimate,
                "ci_low": c.difference.lower, "ci_high": c.difference.upper,
                "sign_flip_p": c.sign_flip_p_value, "sign_flip_exact": c.sign_flip_exact,
                "t": c.t_test.statistic, "t_p": c.t_test.p_value,
            }));
        }
        let out = json!({ "tasks": tasks, "table": table_rows });
        let path = ctx.output_path("metrics");
        std::fs::write(&path, serde_json::to_vec_pretty(&out).expect("serialises"))
            .map_err(|e| NodeError::caused(format!("Failed to write `{}`", path.display()), &e))?;
        ctx.set_meta(
            "metrics",
            json!({ "comparisons": table_rows.len(), "items": a.len() }),
        );
        Ok(())
    }
}
