//! `ahb-report`: the AnimalHarmBench testbed's result. One row per evaluated model (each an
//! `anima` node instance: pre-distill, with the prompt, every checkpoint, post-distill):
//! the overall score with a Student-t interval over epochs, the per-dimension means, what
//! went unscored; the one-sided comparison of two of them; the testbed's dot-and-whisker
//! plot and a Markdown table.

use std::fmt::Write as _;

use dag_engine::{
    ArtifactKind, InputArtifact, Node, NodeError, NodeSpec, ParamError, ParamSpec, ParamType,
    PortSpec, Resources, RunContext, Value,
};
use dag_metrics::{Alternative, Estimate};
use serde_json::{Value as Json, json};

/// The `ahb-report` node type.
pub struct AhbReport(NodeSpec);

impl AhbReport {
    /// The node type with its spec.
    pub fn new() -> Self {
        AhbReport(NodeSpec {
            name: "ahb-report",
            // 2: per-dimension intervals.
            version: 2,
            doc: "The AnimalHarmBench testbed's report over every evaluated model's `anima` scores, in input order: the \
                  overall score (C = 1.0, I = 0.0, higher is better) with a Student-t interval over the per-epoch \
                  means, the per-dimension means with the same interval over each dimension's per-epoch means, \
                  unscored grades and questions; Welch's one-sided t-test of the first \
                  model of `compare` scoring higher than the second; report.md (the table), scores.png (dot and \
                  whisker) and report.json.",
            inputs: vec![
                PortSpec::new(
                    "scores",
                    ArtifactKind::Metrics,
                    "`anima` scores, one per evaluated model (a list; a mapped node gives all its instances), named by the instance that graded",
                )
                .many(),
                PortSpec::new(
                    "propensity",
                    ArtifactKind::Metrics,
                    "`evaluate` metrics of the evaluated models on the propensity tasks, from nodes named `propensity_<grading node>` (`propensity_post`; `propensity_ckpt` mapped with the checkpoints): one more column",
                )
                .many()
                .optional(),
            ],
            outputs: vec![
                PortSpec::new(
                    "report",
                    ArtifactKind::Report,
                    "report.md, report.json, scores.png",
                )
                .dir(),
            ],
            params: vec![
                ParamSpec::optional(
                    "compare",
                    ParamType::List(Box::new(ParamType::Str)),
                    "two evaluated models, by the instance that graded them (`[\"post\", \"pre\"]`): is the first higher?",
                ),
                ParamSpec::with_default(
                    "level",
                    ParamType::Float,
                    Value::Float(0.95),
                    "confidence level of the intervals",
                )
                .above(0.0)
                .below(1.0),
                ParamSpec::with_default(
                    "title",
                    ParamType::Str,
                    Value::Str("AnimalHarmBench (ANIMA)".into()),
                    "heading of report.md and of the plot",
                ),
            ],
            resources: Resources::CPU,
        })
    }
}

impl Default for AhbReport {
    fn default() -> Self {
        Self::new()
    }
}

/// One evaluated model's numbers, read from its `anima` scores.
struct Model {
    name: String,
    digest: String,
    overall: Option<f64>,
    epoch_means: Vec<f64>,
    interval: Option<dag_metrics::TInterval>,
    dimensions: Vec<DimensionScore>,
    grades: u64,
    unparseable: u64,
    questions_scored: u64,
    questions_unscored: usize,
    /// The propensity tasks' group score, where an evaluation was given.
    propensity: Option<Propensity>,
}

/// One dimension's mean, and the Student-t interval over its per-epoch means.
#[derive(Debug, Clone)]
struct DimensionScore {
    name: String,
    mean: Option<f64>,
    interval: Option<(f64, f64)>,
}

/// A propensity evaluation's group score and its bootstrap interval.
#[derive(Debug, Clone, Copy)]
struct Propensity {
    value: Option<f64>,
    interval: Option<(f64, f64)>,
}

/// The evaluated model's name: the instance that graded it (`post`, `ckpt[step-40]`).
fn model_name(input: &InputArtifact) -> String {
    input.source.producer.to_string()
}

fn read_model(input: &InputArtifact, level: f64) -> Result<Model, NodeError> {
    let name = model_name(input);
    let bytes = std::fs::read(&input.path)
        .map_err(|e| NodeError::caused(format!("Failed to read the scores of `{name}`"), &e))?;
    let r: Json = serde_json::from_slice(&bytes)
        .map_err(|e| NodeError::caused(format!("The scores of `{name}` are not JSON"), &e))?;
    let (Some(epochs), Some(dims)) = (r["epochs"].as_array(), r["dimensions"].as_array()) else {
        return Err(NodeError::msg(format!(
            "`{}` is not the scores of an `anima` node (no `epochs` and `dimensions`)",
            input.label
        ))
        .hint("connect `scores` to `anima` nodes' `scores` outputs"));
    };
    let epoch_means: Vec<f64> = epochs.iter().filter_map(|e| e["mean"].as_f64()).collect();
    let interval = (epoch_means.len() >= 2)
        .then(|| dag_metrics::t_interval(&epoch_means, level).ok())
        .flatten();
    let count = |k: &str| r[k].as_u64().unwrap_or(0);
    Ok(Model {
        name,
        digest: input.digest.to_hex(),
        overall: r["overall_mean"].as_f64(),
        epoch_means,
        interval,
        dimensions: dims
            .iter()
            .map(|d| {
                let i = &d["epoch_interval"];
                DimensionScore {
                    name: d["dimension"].as_str().unwrap_or_default().to_string(),
                    mean: d["mean"].as_f64(),
                    interval: i["lower"].as_f64().zip(i["upper"].as_f64()),
                }
            })
            .collect(),
        grades: count("grades_attempted"),
        unparseable: count("grades_unparseable"),
        questions_scored: count("questions_scored"),
        questions_unscored: r["questions_unscored"].as_array().map_or(0, Vec::len),
        propensity: None,
    })
}

/// The grading node a propensity evaluation belongs to: its node's name without
/// `propensity_`, with its map element (`propensity_ckpt[step-40]` -> `ckpt[step-40]`).
fn propensity_model(input: &InputArtifact) -> Option<String> {
    let p = &input.source.producer;
    let base = p.node.strip_prefix("propensity_")?;
    Some(match &p.element {
        Some(e) => format!("{base}[{e}]"),
        None => base.to_string(),
    })
}

/// The score of an `evaluate` of the propensity tasks: its group's row (the first group),
/// or its only task's, with the bootstrap interval.
fn propensity_score(input: &InputArtifact) -> Result<Propensity, NodeError> {
    let bytes = std::fs::read(&input.path)
        .map_err(|e| NodeError::caused(format!("Failed to read `{}`", input.label), &e))?;
    let r: Json = serde_json::from_slice(&bytes)
        .map_err(|e| NodeError::caused(format!("`{}` is not JSON", input.label), &e))?;
    let table = r["table"].as_array().ok_or_else(|| {
        NodeError::msg(format!(
            "`{}` is not the metrics of an `evaluate` node",
            input.label
        ))
        .hint("connect `propensity` to `evaluate` nodes' `metrics`")
    })?;
    let group = r["groups"]
        .as_object()
        .and_then(|g| g.keys().next().cloned());
    let row = match &group {
        Some(g) => table.iter().find(|t| t["task"] == g.as_str() && t["metric"] == "propensity"),
        None if table.len() == 1 => table.first(),
        None => None,
    }
    .ok_or_else(|| {
        NodeError::msg(format!(
            "`{}` has no group score of the propensity tasks",
            input.label
        ))
        .hint("evaluate `tasks = [\"advanced_ai_risk_human\"]` (the group), as graphs/propensity.toml does")
    })?;
    let interval = match (row["ci_low"].as_f64(), row["ci_high"].as_f64()) {
        (Some(lo), Some(hi)) => Some((lo, hi)),
        _ => None,
    };
    Ok(Propensity {
        value: row["value"].as_f64(),
        interval,
    })
}

fn f3(x: Option<f64>) -> String {
    x.map_or("-".into(), |x| format!("{x:.3}"))
}

/// The table: one row per model, the dimensions in the first model's order.
fn table(models: &[Model], level: f64) -> String {
    let dims: Vec<&str> = models
        .first()
        .map(|m| m.dimensions.iter().map(|d| d.name.as_str()).collect())
        .unwrap_or_default();
    let mut head = vec![
        "model".to_string(),
        "overall".into(),
        format!("{:.0}% interval", level * 100.0),
        "epochs".into(),
    ];
    head.extend(dims.iter().map(|d| d.to_string()));
    let with_propensity = models.iter().any(|m| m.propensity.is_some());
    if with_propensity {
        head.push("propensity (advanced-ai-risk)".into());
    }
    head.extend(["unscored grades".into(), "questions".into()]);
    let mut s = format!("| {} |\n|{}\n", head.join(" | "), "---|".repeat(head.len()));
    for m in models {
        let interval = m
            .interval
            .as_ref()
            .map_or("-".into(), |i| format!("[{:.3}, {:.3}]", i.lower, i.upper));
        let mut row = vec![
            m.name.clone(),
            f3(m.overall),
            interval,
            m.epoch_means.len().to_string(),
        ];
        for d in &dims {
            row.push(match m.dimensions.iter().find(|x| x.name == *d) {
                Some(DimensionScore {
                    mean,
                    interval: Some((lo, hi)),
                    ..
                }) => format!("{} [{lo:.3}, {hi:.3}]", f3(*mean)),
                Some(x) => f3(x.mean),
                None => "-".into(),
            });
        }
        if with_propensity {
            row.push(match m.propensity {
                Some(Propensity {
                    value,
                    interval: Some((lo, hi)),
                }) => format!("{} [{lo:.3}, {hi:.3}]", f3(value)),
                Some(Propensity { value, .. }) => f3(value),
                None => "-".into(),
            });
        }
        row.push(format!("{} of {}", m.unparseable, m.grades));
        row.push(if m.questions_unscored > 0 {
            format!("{} ({} unscored)", m.questions_scored, m.questions_unscored)
        } else {
            m.questions_scored.to_string()
        });
        let _ = writeln!(s, "| {} |", row.join(" | "));
    }
    s
}

impl Node for AhbReport {
    fn spec(&self) -> &NodeSpec {
        &self.0
    }

    fn check_params(
        &self,
        params: &std::collections::BTreeMap<String, Value>,
    ) -> Result<(), ParamError> {
        if let Some(Value::List(c)) = params.get("compare")
            && c.len() != 2
        {
            return Err(ParamError::new(
                "compare",
                format!("names {} models; the comparison takes two", c.len()),
                "name the model tested for scoring higher, then the one it is compared with: `compare = [\"post\", \"pre\"]`",
            ));
        }
        Ok(())
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let level = ctx.float("level").unwrap_or(0.95);
        let title = ctx
            .str("title")
            .unwrap_or("AnimalHarmBench (ANIMA)")
            .to_string();
        let mut models = ctx
            .inputs("scores")
            .iter()
            .map(|i| read_model(i, level))
            .collect::<Result<Vec<_>, _>>()?;
        for input in ctx.inputs("propensity") {
            let want = propensity_model(input);
            let Some(m) = models.iter_mut().find(|m| Some(&m.name) == want.as_ref()) else {
                let names: Vec<String> = models
                    .iter()
                    .map(|m| format!("`propensity_{}`", m.name))
                    .collect();
                return Err(NodeError::msg(format!(
                    "The propensity evaluation `{}` belongs to no evaluated model",
                    input.source.producer
                ))
                .hint(format!(
                    "name each propensity `evaluate` node after the grading node of its model: one of {}",
                    names.join(", ")
                )));
            };
            m.propensity = Some(propensity_score(input)?);
        }
        let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
        let comparison = match ctx.value("compare") {
            Some(Value::List(pair)) => {
                let find = |v: &Value| -> Result<&Model, NodeError> {
                    let want = v.as_str().unwrap_or_default();
                    models.iter().find(|m| m.name == want).ok_or_else(|| {
                        NodeError::msg(format!(
                            "`compare` names `{want}`, which is not an evaluated model"
                        ))
                        .hint(format!(
                            "name two of {}",
                            names
                                .iter()
                                .map(|n| format!("`{n}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    })
                };
                let (a, b) = (find(&pair[0])?, find(&pair[1])?);
                Some(compare(a, b)?)
            }
            _ => None,
        };

        let out = ctx.output_path("report");
        std::fs::create_dir_all(&out)
            .map_err(|e| NodeError::caused(format!("Failed to create `{}`", out.display()), &e))?;
        let table = table(&models, level);
        let mut md = format!(
            "# {title}\n\nANIMA scores: C = 1.0, I = 0.0, higher is better. Overall: the mean over questions of \
             each question's score (means over graders, then expansions, then dimensions by weight), reduced over \
             epochs; the interval is Student-t over the per-epoch means, and a dimension's over its per-epoch \
             means (none with a single epoch).\n\n{table}\n"
        );
        if let Some(c) = &comparison {
            let _ = writeln!(md, "{}\n", c["summary"].as_str().unwrap_or_default());
        }
        md.push_str("![overall score per model](scores.png)\n");
        let estimates: Vec<Estimate> = models
            .iter()
            .map(|m| Estimate {
                label: m.name.clone(),
                value: m.overall.unwrap_or(f64::NAN),
                interval: m.interval.as_ref().map(|i| (i.lower, i.upper)),
            })
            .collect();
        dag_metrics::dot_whisker_png(
            &out.join("scores.png"),
            &title,
            "overall ANIMA score (higher is better)",
            // A little above 1 so a perfect score's dot is not cut by the frame.
            0.0..1.04,
            &estimates,
        )
        .map_err(|e| NodeError::caused("Failed to draw scores.png", &e))?;
        let rows: Vec<Json> = models
            .iter()
            .map(|m| {
                json!({
                    "model": m.name,
                    "scores": m.digest,
                    "overall": m.overall,
                    "epoch_means": m.epoch_means,
                    "interval": m.interval.as_ref().map(|i| json!([i.lower, i.upper])),
                    "dimensions": m.dimensions.iter().map(|d| json!({"dimension": d.name, "mean": d.mean, "interval": d.interval.map(|(a, b)| [a, b])})).collect::<Vec<_>>(),
                    "grades": m.grades,
                    "grades_unscored": m.unparseable,
                    "questions_scored": m.questions_scored,
                    "questions_unscored": m.questions_unscored,
                    "propensity": m.propensity.map(|p| json!({ "value": p.value, "interval": p.interval.map(|(a, b)| [a, b]) })),
                })
            })
            .collect();
        let report = json!({
            "convention": "ANIMA scores: C = 1.0, I = 0.0, higher is better",
            "level": level,
            "models": rows,
            "comparison": comparison,
        });
        let write = |name: &str, bytes: &[u8]| {
            std::fs::write(out.join(name), bytes)
                .map_err(|e| NodeError::caused(format!("Failed to write {name}"), &e))
        };
        write("report.md", md.as_bytes())?;
        write(
            "report.json",
            &serde_json::to_vec_pretty(&report).expect("json"),
        )?;
        let mut summary = table;
        if let Some(c) = &comparison {
            summary.push_str(c["summary"].as_str().unwrap_or_default());
            summary.push('\n');
        }
        let mut meta = report;
        meta["summary"] = json!(summary);
        ctx.set_meta("report", meta);
        Ok(())
    }
}

/// Welch's one-sided test of `a` scoring higher than `b` over their per-epoch means.
fn compare(a: &Model, b: &Model) -> Result<Json, NodeError> {
    for m in [a, b] {
        if m.epoch_means.len() < 2 {
            return Err(NodeError::msg(format!(
                "`{}` has {} scored epoch(s); the comparison needs at least 2",
                m.name,
                m.epoch_means.len()
            ))
            .hint("answer each question several times: raise `n` on the `generate` node (the testbed uses 15)"));
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let difference = mean(&a.epoch_means) - mean(&b.epoch_means);
    let head = format!(
        "`{}` vs `{}`: difference of per-epoch means {difference:+.3}",
        a.name, b.name
    );
    let mut out = json!({
        "a": a.name,
        "b": b.name,
        "difference": difference,
        "test": "Welch's t-test of per-epoch means, one-sided: a > b",
    });
    // Both models scoring the same in every epoch (a judge that always gives one grade)
    // leaves the test undefined: the report says so instead of failing or inventing a p.
    match dag_metrics::welch_t_test(&a.epoch_means, &b.epoch_means, Alternative::Greater) {
        Ok(t) => {
            out["statistic"] = json!(t.statistic);
            out["df"] = json!(t.df);
            out["p_value"] = json!(t.p_value);
            out["summary"] = json!(format!(
                "{head}; Welch's one-sided t = {:.3}, df = {:.1}, p = {:.4}",
                t.statistic, t.df, t.p_value
            ));
        }
        Err(e) => {
            out["statistic"] = Json::Null;
            out["p_value"] = Json::Null;
            out["undefined"] = json!(e.to_string());
            out["summary"] = json!(format!(
                "{head}; Welch's t-test is undefined here ({e}): no p-value"
            ));
        }
    }
    Ok(out)
}
