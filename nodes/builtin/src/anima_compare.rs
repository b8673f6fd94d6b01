//! `anima-compare`: the testbed's comparison of two evaluated models. The score of one
//! evaluation is its mean overall per epoch; each model gets a Student-t interval over its
//! epochs, and Welch's one-sided t-test asks whether model `a` scores higher than `b`
//! (scipy's `ttest_ind(a, b, equal_var=False, alternative="greater")`).

use dag_engine::{
    ArtifactKind, Node, NodeError, NodeSpec, ParamSpec, ParamType, PortSpec, Resources, RunContext,
    Value,
};
use dag_metrics::Alternative;
use serde_json::{Value as Json, json};

/// The `anima-compare` node type.
pub struct AnimaCompare(NodeSpec);

impl AnimaCompare {
    /// The node type with its spec.
    pub fn new() -> Self {
        AnimaCompare(NodeSpec {
            name: "anima-compare",
            version: 1,
            doc: "Compares two ANIMA evaluations as the testbed does: each model's mean overall per epoch with a Student-t \
                  interval over epochs, and Welch's one-sided t-test of `a` scoring higher than `b` (each needs 2 epochs \
                  or more: `n` on the `generate` that answered).",
            inputs: vec![
                PortSpec::new(
                    "a",
                    ArtifactKind::Metrics,
                    "the `scores` of the model tested for scoring higher",
                ),
                PortSpec::new(
                    "b",
                    ArtifactKind::Metrics,
                    "the `scores` of the model it is compared with",
                ),
            ],
            outputs: vec![PortSpec::new(
                "metrics",
                ArtifactKind::Metrics,
                "both models' per-epoch means and intervals, the difference of means, the test",
            )],
            params: vec![
                ParamSpec::with_default(
                    "level",
                    ParamType::Float,
                    Value::Float(0.95),
                    "confidence level of the intervals",
                )
                .above(0.0)
                .below(1.0),
            ],
            resources: Resources::CPU,
        })
    }
}

impl Default for AnimaCompare {
    fn default() -> Self {
        Self::new()
    }
}

/// An evaluation's per-epoch means, read from an `anima` `scores` artifact.
fn epoch_means(ctx: &RunContext<'_>, port: &str) -> Result<(String, Vec<f64>), NodeError> {
    let input = ctx.input(port)?;
    let bytes = std::fs::read(&input.path)
        .map_err(|e| NodeError::caused(format!("Failed to read `{}`", input.label), &e))?;
    let report: Json = serde_json::from_slice(&bytes)
        .map_err(|e| NodeError::caused(format!("`{}` is not JSON", input.label), &e))?;
    let epochs = report["epochs"].as_array().ok_or_else(|| {
        NodeError::msg(format!(
            "`{}` has no `epochs`: it is not the scores of an `anima` node",
            input.label
        ))
        .hint(format!("connect `{port}` to an `anima` node's `scores`"))
    })?;
    let means: Vec<f64> = epochs.iter().filter_map(|e| e["mean"].as_f64()).collect();
    if means.len() < 2 {
        return Err(NodeError::msg(format!(
            "`{}` has {} scored epoch(s); comparing needs at least 2",
            input.label,
            means.len()
        ))
        .hint("answer each question several times: raise `n` on the `generate` node (the testbed uses 15)"));
    }
    Ok((input.label.clone(), means))
}

impl Node for AnimaCompare {
    fn spec(&self) -> &NodeSpec {
        &self.0
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let level = ctx.float("level").unwrap_or(0.95);
        let (la, a) = epoch_means(ctx, "a")?;
        let (lb, b) = epoch_means(ctx, "b")?;
        let metric = |what: &str, e: dag_metrics::MetricError| {
            NodeError::caused(format!("Failed to compute {what}"), &e)
        };
        let side = |label: &str, means: &[f64]| -> Result<Json, NodeError> {
            let ci = dag_metrics::t_interval(means, level).map_err(|e| metric("an interval", e))?;
            Ok(
                json!({ "label": label, "epoch_means": means, "mean": ci.mean, "sd": ci.sd, "interval": [ci.lower, ci.upper] }),
            )
        };
        let test = dag_metrics::welch_t_test(&a, &b, Alternative::Greater)
            .map_err(|e| metric("Welch's t-test", e))?;
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let metrics = json!({
            "convention": "ANIMA scores: C = 1.0, I = 0.0, higher is better",
            "level": level,
            "a": side(&la, &a)?,
            "b": side(&lb, &b)?,
            "difference": mean(&a) - mean(&b),
            "test": {
                "name": "Welch's t-test of per-epoch means, one-sided: a > b",
                "statistic": test.statistic,
                "df": test.df,
                "p_value": test.p_value,
            },
        });
        std::fs::write(
            ctx.output_path("metrics"),
            serde_json::to_vec_pretty(&metrics).expect("json"),
        )
        .map_err(|e| NodeError::caused("Failed to write the comparison", &e))?;
        ctx.set_meta("metrics", metrics);
        Ok(())
    }
}
