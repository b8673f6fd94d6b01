//! Score rows and their metrics, shared by the nodes that write `scores` (`train-probe`,
//! `classify-prompted`, `finetune-classifier`): binary labels, the per-dataset group of a
//! row, and each split's (and each group's) metrics with their bootstrap intervals.

use dag_metrics::BootstrapConfig;
use dag_protocol::NodeError;
use dag_table as table;
use serde_json::{Map, Value, json};

use crate::failure::caused;

pub(crate) fn metric_err(what: &str, e: &dag_metrics::MetricError) -> NodeError {
    caused(what.to_string(), e)
}

/// 0/1 numbers and booleans; anything else is not a binary label.
pub fn parse_label(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_f64() {
            Some(0.0) => Some(false),
            Some(1.0) => Some(true),
            _ => None,
        },
        Value::String(s) => match s.as_str() {
            "0" | "false" => Some(false),
            "1" | "true" => Some(true),
            _ => None,
        },
        _ => None,
    }
}

/// A row's group: its `column` value as text (strings as they are, other values as JSON).
/// `what` names the row in the error, which lists the columns the row does have.
pub fn group_of(
    columns: &Map<String, Value>,
    column: &str,
    what: &str,
) -> Result<String, NodeError> {
    columns.get(column).map(table::as_text).ok_or_else(|| {
        let have: Vec<String> = columns.keys().map(|k| format!("`{k}`")).collect();
        NodeError::msg(format!(
            "{what} has no column `{column}` (the `group_column`)"
        ))
        .hint(format!(
            "columns available: {}; set `group_column` to one of them, or leave it out for no per-group metrics",
            have.join(", ")
        ))
    })
}

/// The bootstrap behind every AUROC interval of these nodes; none below 2 resamples.
pub(crate) fn bootstrap(resamples: usize) -> Option<BootstrapConfig> {
    (resamples >= 2).then(|| BootstrapConfig {
        n_resamples: resamples,
        ..BootstrapConfig::default()
    })
}

fn metrics_json(m: &dag_metrics::ProbeMetrics, ci: Option<dag_metrics::Interval>) -> Value {
    let mut v = serde_json::to_value(m).expect("metrics serialise");
    if let Some(ci) = ci {
        v["auroc_ci"] = json!([ci.lower, ci.upper]);
    }
    v
}

/// Metrics of one split's scores: the standard set with a bootstrap interval on AUROC.
pub fn split_metrics(scores: &[f64], y: &[bool], resamples: usize) -> Result<Value, NodeError> {
    let (m, ci) =
        dag_metrics::probe_metrics_with_interval(scores, y, bootstrap(resamples).as_ref())
            .map_err(|e| metric_err("Failed to compute probe metrics", &e))?;
    Ok(metrics_json(&m, ci))
}

/// [`split_metrics`] of each group's rows alone (the `by_group` object), keyed by group, with
/// the split's bootstrap. A group of one class gets `auroc: null` and a `note` saying why
/// instead of failing the node: a source dataset of one class is still worth its accuracy
/// and calibration numbers.
pub fn group_metrics(
    scores: &[f64],
    y: &[bool],
    groups: &[String],
    resamples: usize,
) -> Result<Value, NodeError> {
    let by = dag_metrics::per_group_metrics_with_interval(
        scores,
        y,
        groups,
        bootstrap(resamples).as_ref(),
    )
    .map_err(|e| metric_err("Failed to compute per-group probe metrics", &e))?;
    let mut out = Map::new();
    for (group, (m, ci)) in by {
        let mut v = metrics_json(&m, ci);
        if let Some(why) = m.undefined_auroc_reason() {
            v["note"] = json!(why);
        }
        out.insert(group, v);
    }
    Ok(Value::Object(out))
}
