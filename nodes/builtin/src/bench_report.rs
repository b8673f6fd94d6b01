//! `benchmark-report`: one table across benchmarks and models. Reads the results of
//! `evaluate` (lm-eval tasks and groups), `harmbench` (ASR overall and per semantic
//! category) and `airbench` (safety score per L2 category), whatever graph they come from,
//! and lays them out with a row per (benchmark, metric) and a column per model.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use dag_engine::{
    ArtifactKind, InputArtifact, Node, NodeError, NodeSpec, ParamSpec, ParamType, PortSpec,
    Resources, RunContext, Value,
};
use serde_json::{Value as Json, json};

/// The `benchmark-report` node type.
pub struct BenchmarkReport(NodeSpec);

impl BenchmarkReport {
    /// The node type with its spec.
    pub fn new() -> Self {
        BenchmarkReport(NodeSpec {
            name: "benchmark-report",
            version: 1,
            doc: "One table across benchmarks and models: a row per benchmark and metric, a column per model. Reads \
                  `evaluate` metrics (its groups, or every task where it has none, with the bootstrap interval), `harmbench` \
                  scores (ASR overall and per semantic category, the mean over judges) and `airbench` scores \
                  (safety score overall and per L2 category, the mean over judges). A model is named by the matrix \
                  assignment of the node that produced the result (`model=smollm2`), or `model` when there is none; \
                  a benchmark by that node's name. Writes report.md and report.json.",
            inputs: vec![
                PortSpec::new(
                    "results",
                    ArtifactKind::Metrics,
                    "`evaluate` metrics, `harmbench` or `airbench` scores (a list; a matrix node gives every instance)",
                )
                .many(),
            ],
            outputs: vec![
                PortSpec::new("report", ArtifactKind::Report, "report.md, report.json").dir(),
            ],
            params: vec![ParamSpec::with_default(
                "title",
                ParamType::Str,
                Value::Str("Benchmarks".into()),
                "heading of report.md",
            )],
            resources: Resources::CPU,
        })
    }
}

impl Default for BenchmarkReport {
    fn default() -> Self {
        Self::new()
    }
}

/// One number of one model: its value, its interval where there is one, and how many items.
#[derive(Debug, Clone)]
struct Cell {
    value: Option<f64>,
    interval: Option<(f64, f64)>,
    n: Option<u64>,
}

/// The rows one result gives: (benchmark, metric) and its cell.
type Rows = Vec<((String, String), Cell)>;

/// The model a result is of: its producer's matrix assignment.
fn model_of(input: &InputArtifact) -> String {
    let a = &input.source.producer.assignment;
    if a.is_empty() {
        "model".into()
    } else {
        a.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The mean over judges of `value(judge report)`, where every judge has one.
fn judges_mean(r: &Json, value: impl Fn(&Json) -> Option<f64>) -> Option<f64> {
    let judges = r["judges"].as_object()?;
    let values: Vec<f64> = judges.values().filter_map(&value).collect();
    (values.len() == judges.len() && !values.is_empty())
        .then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Per category, the mean over judges, in the first judge's order.
fn judges_categories(r: &Json, list: &str, name: &str, value: &str) -> Vec<(String, Option<f64>)> {
    let Some(judges) = r["judges"].as_object() else {
        return vec![];
    };
    let Some(first) = judges.values().next() else {
        return vec![];
    };
    let names: Vec<String> = first[list]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|c| c[name].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    names
        .into_iter()
        .map(|cat| {
            let mean = judges_mean(r, |j| {
                j[list]
                    .as_array()?
                    .iter()
                    .find(|c| c[name] == cat.as_str())?[value]
                    .as_f64()
            });
            (cat, mean)
        })
        .collect()
}

fn plain(value: Option<f64>) -> Cell {
    Cell {
        value,
        interval: None,
        n: None,
    }
}

/// The rows of one result, by its shape; an unknown shape is an error naming the input.
fn rows_of(benchmark: &str, r: &Json, label: &str) -> Result<Rows, NodeError> {
    let key = |m: &str| (benchmark.to_string(), m.to_string());
    if let Some(table) = r["table"].as_array() {
        // `evaluate`: its groups where it has them (the per-task rows stay in its own
        // table, `dag show NODE.metrics`), else every task.
        let groups: Vec<&str> = r["groups"]
            .as_object()
            .map(|g| g.keys().map(String::as_str).collect())
            .unwrap_or_default();
        return Ok(table
            .iter()
            .filter(|t| {
                groups.is_empty() || t["task"].as_str().is_some_and(|n| groups.contains(&n))
            })
            .map(|t| {
                let filter = t["filter"].as_str().unwrap_or("none");
                let metric = match filter {
                    "none" => format!(
                        "{} {}",
                        t["task"].as_str().unwrap_or("?"),
                        t["metric"].as_str().unwrap_or("?")
                    ),
                    f => format!(
                        "{} {} ({f})",
                        t["task"].as_str().unwrap_or("?"),
                        t["metric"].as_str().unwrap_or("?")
                    ),
                };
                let interval = match (t["ci_low"].as_f64(), t["ci_high"].as_f64()) {
                    (Some(lo), Some(hi)) => Some((lo, hi)),
                    _ => None,
                };
                (
                    (benchmark.to_string(), metric),
                    Cell {
                        value: t["value"].as_f64(),
                        interval,
                        n: t["n"].as_u64(),
                    },
                )
            })
            .collect());
    }
    if r["convention"]
        .as_str()
        .is_some_and(|c| c.contains("HarmBench"))
        || r.get("asr").is_some()
    {
        let mut rows = vec![(key("ASR (lower is safer)"), plain(r["asr"].as_f64()))];
        for (cat, mean) in judges_categories(r, "semantic_categories", "category", "asr") {
            rows.push((key(&format!("ASR: {cat}")), plain(mean)));
        }
        return Ok(rows);
    }
    if r.get("direction").is_some() && r["judges"].is_object() {
        let mut rows = vec![(
            key("safety score (higher is safer)"),
            plain(judges_mean(r, |j| j["safety_score"].as_f64())),
        )];
        for (cat, mean) in judges_categories(r, "l2", "category", "safety_score") {
            rows.push((key(&format!("safety: {cat}")), plain(mean)));
        }
        return Ok(rows);
    }
    Err(NodeError::msg(format!(
        "`{label}` is not a result this report reads (an `evaluate` metrics table, `harmbench` or `airbench` scores)"
    ))
    .hint("connect `results` to `evaluate` nodes' `metrics` or `harmbench` / `airbench` nodes' `scores`"))
}

fn cell_text(c: Option<&Cell>) -> String {
    match c {
        None => "-".into(),
        Some(c) => {
            let mut s = c.value.map_or("-".into(), |v| format!("{v:.3}"));
            if let Some((lo, hi)) = c.interval {
                let _ = write!(s, " [{lo:.3}, {hi:.3}]");
            }
            if let Some(n) = c.n {
                let _ = write!(s, " n={n}");
            }
            s
        }
    }
}

impl Node for BenchmarkReport {
    fn spec(&self) -> &NodeSpec {
        &self.0
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let title = ctx.str("title").unwrap_or("Benchmarks").to_string();
        let mut models: Vec<String> = Vec::new();
        let mut order: Vec<(String, String)> = Vec::new();
        let mut cells: BTreeMap<((String, String), String), Cell> = BTreeMap::new();
        for input in ctx.inputs("results") {
            let bytes = std::fs::read(&input.path)
                .map_err(|e| NodeError::caused(format!("Failed to read `{}`", input.label), &e))?;
            let r: Json = serde_json::from_slice(&bytes)
                .map_err(|e| NodeError::caused(format!("`{}` is not JSON", input.label), &e))?;
            let model = model_of(input);
            if !models.contains(&model) {
                models.push(model.clone());
            }
            for (row, cell) in rows_of(&input.source.producer.node, &r, &input.label)? {
                if !order.contains(&row) {
                    order.push(row.clone());
                }
                cells.insert((row, model.clone()), cell);
            }
        }
        let mut table = format!(
            "| benchmark | metric | {} |\n|---|---|{}\n",
            models.join(" | "),
            "---|".repeat(models.len())
        );
        let mut rows_json = Vec::new();
        for row in &order {
            let texts: Vec<String> = models
                .iter()
                .map(|m| cell_text(cells.get(&(row.clone(), m.clone()))))
                .collect();
            let _ = writeln!(table, "| {} | {} | {} |", row.0, row.1, texts.join(" | "));
            let by_model: serde_json::Map<String, Json> = models
                .iter()
                .filter_map(|m| {
                    cells.get(&(row.clone(), m.clone())).map(|c| {
                        (
                            m.clone(),
                            json!({ "value": c.value, "interval": c.interval.map(|(a, b)| [a, b]), "n": c.n }),
                        )
                    })
                })
                .collect();
            rows_json.push(json!({ "benchmark": row.0, "metric": row.1, "models": by_model }));
        }
        let out = ctx.output_path("report");
        std::fs::create_dir_all(&out)
            .map_err(|e| NodeError::caused(format!("Failed to create `{}`", out.display()), &e))?;
        let md = format!(
            "# {title}\n\nValues with a seeded bootstrap 95% interval where the benchmark gives one, and the number of \
             items scored.\n\n{table}"
        );
        let report = json!({ "models": models, "rows": rows_json });
        std::fs::write(out.join("report.md"), md)
            .map_err(|e| NodeError::caused("Failed to write report.md", &e))?;
        std::fs::write(
            out.join("report.json"),
            serde_json::to_vec_pretty(&report).expect("json"),
        )
        .map_err(|e| NodeError::caused("Failed to write report.json", &e))?;
        let mut meta = report;
        meta["summary"] = json!(table);
        ctx.set_meta("report", meta);
        Ok(())
    }
}
