//! `probe-report`: the probes study's results as one artifact a person reads. Every probe cell
//! and the prompted baseline write their own scores and metrics; comparing them means opening
//! sixteen artifacts. This node reads all their `scores` and writes one table, the same numbers
//! as JSON, and ROC and reliability plots per split.
//!
//! The metrics are recomputed here from the per-row scores with `dag-metrics` (the same
//! composition `train-probe` uses), under this node's own bootstrap seed, so every row of the
//! table shares one resampling setup whatever its producer used.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use dag_engine::{
    ArtifactKind, InputArtifact, Node, NodeError, NodeSpec, ParamSpec, ParamType, PortSpec,
    Resources, RunContext, Value,
};
use dag_metrics::{
    BootstrapConfig, Interval, ProbeMetrics, ReliabilityTable, RocCurve,
    per_group_metrics_with_interval, probe_metrics_with_interval, reliability_plot_png,
    reliability_table, roc_curve, roc_plot_png,
};
use dag_protocol::ScoreRow;
use serde_json::{Value as Json, json};

/// The `probe-report` node type.
pub struct ProbeReport(NodeSpec);

impl ProbeReport {
    /// The node type with its spec.
    pub fn new() -> Self {
        ProbeReport(NodeSpec {
            name: "probe-report",
            // 2: the metadata's `summary`, the table `dag run` prints.
            version: 2,
            doc: "The probes study's report: reads per-row `scores` (train-probe cells, classify-prompted) and writes \
                  results.md (one row per input and split: AUROC with a seeded stratified bootstrap 95% interval, \
                  TPR at 1% FPR with the threshold on negatives only and the seed study's closest-point variant, \
                  accuracy at 0.5, ECE over 10 bins, Brier, rows), results.json (the same numbers, reliability \
                  tables, input digests) and ROC and reliability PNGs per split. An input may lack some of \
                  `splits` (the prompted baseline scores test only): its cells are `-`. Scores lines with a `group` \
                  (the producers' `group_column`) add per split an inputs x groups AUROC table and a full table \
                  per group, each group's rows alone.",
            inputs: vec![
                PortSpec::new(
                    "scores",
                    ArtifactKind::Scores,
                    "per-row scores: a list of `node.scores`, or a matrix node (all its instances)",
                )
                .many(),
            ],
            outputs: vec![
                PortSpec::new(
                    "report",
                    ArtifactKind::Report,
                    "results.md, results.json, roc-<split>*.png, reliability-<split>*.png",
                )
                .dir(),
            ],
            params: vec![
                ParamSpec::with_default(
                    "splits",
                    ParamType::List(Box::new(ParamType::Str)),
                    Value::List(vec![
                        Value::Str("validation".into()),
                        Value::Str("test".into()),
                    ]),
                    "splits to report, in this order (the scores' `split` values)",
                ),
                ParamSpec::with_default(
                    "bootstrap",
                    ParamType::Int,
                    Value::Int(1000),
                    "stratified bootstrap resamples for the AUROC intervals (0: no intervals)",
                )
                .min(0.0),
                ParamSpec::with_default("seed", ParamType::Int, Value::Int(0), "bootstrap seed")
                    .min(0.0),
                ParamSpec::optional("title", ParamType::Str, "heading of results.md"),
            ],
            resources: Resources::CPU,
        })
    }
}

impl Default for ProbeReport {
    fn default() -> Self {
        Self::new()
    }
}

impl Node for ProbeReport {
    fn spec(&self) -> &NodeSpec {
        &self.0
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let splits = match ctx.value("splits") {
            Some(Value::List(l)) => l
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            _ => vec![],
        };
        // At least 0: the range is checked when the graph loads.
        let bootstrap = ctx.int("bootstrap").unwrap_or(1000);
        let options = Options {
            splits,
            bootstrap: bootstrap as usize,
            seed: ctx.int("seed").unwrap_or(0) as u64,
            title: ctx.str("title").map(String::from),
        };
        let inputs = ctx.inputs("scores").to_vec();
        let out = ctx.output_path("report");
        let meta = write_report(&inputs, &options, &out)?;
        ctx.info(format!(
            "{} inputs, splits {}",
            inputs.len(),
            options.splits.join(", ")
        ));
        ctx.set_meta("report", meta);
        Ok(())
    }
}

/// The node's params, parsed.
#[derive(Debug, Clone)]
pub struct Options {
    /// Splits to report, in order.
    pub splits: Vec<String>,
    /// Bootstrap resamples (below 2: no intervals).
    pub bootstrap: usize,
    /// Bootstrap seed.
    pub seed: u64,
    /// Heading of results.md.
    pub title: Option<String>,
}

/// What a scores file must look like, for every error about one.
const FORMAT_HINT: &str = "connect the `scores` output of `train-probe` or `classify-prompted`: one JSON \
                           object per line with `split`, `row`, `label` (0 or 1) and `score` (a probability)";

/// Distinct colours of the plots' palette: more curves than this on one chart repeat colours,
/// so larger reports draw one chart per value of the first matrix variable.
const CURVES_PER_CHART: usize = dag_metrics::DISTINCT_COLOURS;

/// One split of one input's scores.
#[derive(Debug, Default)]
struct SplitScores {
    scores: Vec<f64>,
    labels: Vec<bool>,
    /// Each row's `group` (the producer's `group_column`), when the lines carry one.
    groups: Option<Vec<String>>,
}

/// One input: where it came from and its scores by split.
struct Scored {
    label: String,
    digest: String,
    node: String,
    /// Matrix assignment parsed from the label, in the label's order.
    assignment: Vec<(String, String)>,
    splits: BTreeMap<String, SplitScores>,
}

/// The metrics of one input on one split.
struct Cell {
    metrics: ProbeMetrics,
    auroc_ci: Option<Interval>,
    roc: RocCurve,
    reliability: ReliabilityTable,
    /// The same metrics on each group's rows alone; empty when the rows carry no group.
    by_group: BTreeMap<String, (ProbeMetrics, Option<Interval>)>,
}

/// The node an input is reported under and its matrix assignment: `probe[layer=6,probe=lda]`
/// -> (`probe`, [(layer, 6), (probe, lda)]). An instance of a dynamic map, or one element of
/// a list, is not a matrix cell: it is reported under its whole name, with no assignment.
fn node_and_assignment(input: &InputArtifact) -> (String, Vec<(String, String)>) {
    let s = &input.source;
    if s.element.is_some() {
        (s.to_string(), vec![])
    } else if s.producer.element.is_some() {
        (s.producer.to_string(), vec![])
    } else {
        (s.producer.node.clone(), s.producer.assignment.clone())
    }
}

/// Reads a scores file by split, checking every line; errors name the input and the line.
fn read_scores(label: &str, path: &Path) -> Result<BTreeMap<String, SplitScores>, NodeError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| NodeError::caused(format!("Failed to read the scores of `{label}`"), &e))?;
    let mut splits: BTreeMap<String, SplitScores> = BTreeMap::new();
    // Whether the first line carried a group: every line must agree with it.
    let mut grouped: Option<bool> = None;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |what: String| {
            NodeError::msg(format!("Line {} of `{label}` {what}", i + 1)).hint(FORMAT_HINT)
        };
        let ScoreRow {
            split,
            label: y,
            score,
            group,
            ..
        } = ScoreRow::parse(line).map_err(bad)?;
        if *grouped.get_or_insert(group.is_some()) != group.is_some() {
            let (has, lacks) = if group.is_some() {
                ("has", "earlier lines have none")
            } else {
                ("has no", "earlier lines have one")
            };
            return Err(NodeError::msg(format!(
                "Line {} of `{label}` {has} `group` but {lacks}",
                i + 1
            ))
            .hint("a scores file comes from one node: with `group_column` every line has a `group`, without it none does"));
        }
        let s = splits.entry(split).or_default();
        s.scores.push(score);
        s.labels.push(y);
        if let Some(g) = group {
            s.groups.get_or_insert_with(Vec::new).push(g);
        }
    }
    Ok(splits)
}

fn quoted(names: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let v: Vec<String> = names
        .into_iter()
        .map(|n| format!("`{}`", n.as_ref()))
        .collect();
    v.join(", ")
}

/// Reads every input and checks that the requested splits can be reported: each input has at
/// least one of them, and each split is in some input. An input lacking some split is allowed
/// (the prompted baseline scores test only) and shown as `-`.
fn read_inputs(inputs: &[InputArtifact], splits: &[String]) -> Result<Vec<Scored>, NodeError> {
    if inputs.is_empty() {
        return Err(NodeError::msg("`probe-report` has no scores to report")
            .hint("connect e.g. `inputs = { scores = [\"probe.scores\", \"prompted.scores\"] }`"));
    }
    if splits.is_empty() {
        return Err(NodeError::msg("`splits` is empty: nothing to report")
            .hint("name the splits to report, e.g. `splits = [\"validation\", \"test\"]`"));
    }
    let mut out = vec![];
    for input in inputs {
        let by_split = read_scores(&input.label, &input.path)?;
        if !splits.iter().any(|s| by_split.contains_key(s)) {
            let has = if by_split.is_empty() {
                "it has no rows at all".to_string()
            } else {
                format!("it has rows for {}", quoted(by_split.keys()))
            };
            return Err(NodeError::msg(format!(
                "`{}` has no rows for any of {}; {has}",
                input.label,
                quoted(splits),
            ))
            .hint("set `splits` to the splits the inputs were scored on, or connect scores of those splits"));
        }
        let (node, assignment) = node_and_assignment(input);
        out.push(Scored {
            label: input.label.clone(),
            digest: input.digest.to_hex(),
            node,
            assignment,
            splits: by_split,
        });
    }
    for split in splits {
        if !out.iter().any(|s| s.splits.contains_key(split)) {
            let mut present: Vec<&String> = out.iter().flat_map(|s| s.splits.keys()).collect();
            present.sort();
            present.dedup();
            return Err(NodeError::msg(format!(
                "No input has rows for split `{split}`; the inputs have {}",
                quoted(present)
            ))
            .hint("`splits` names the `split` values written in the scores"));
        }
    }
    Ok(out)
}

/// The metrics of one input's split; a single-class split is an error since AUROC (the
/// report's headline) is undefined there.
fn cell(
    input: &Scored,
    split: &str,
    s: &SplitScores,
    options: &Options,
) -> Result<Cell, NodeError> {
    let positives = s.labels.iter().filter(|&&y| y).count();
    if positives == 0 || positives == s.labels.len() {
        let class = if positives == 0 {
            "negative"
        } else {
            "positive"
        };
        return Err(NodeError::msg(format!(
            "Split `{split}` of `{}` has only {class} rows ({}): AUROC is undefined",
            input.label,
            s.labels.len()
        ))
        .hint("a split needs both labels; check the labels upstream, or leave the split out of `splits`"));
    }
    let fail = |what: &str, e: &dag_metrics::MetricError| {
        NodeError::caused_hinted(
            format!("Failed to compute {what} of `{}` on `{split}`", input.label),
            e,
        )
    };
    let config = BootstrapConfig {
        n_resamples: options.bootstrap,
        seed: options.seed,
        level: 0.95,
    };
    let bootstrap = (options.bootstrap >= 2).then_some(&config);
    let (metrics, auroc_ci) = probe_metrics_with_interval(&s.scores, &s.labels, bootstrap)
        .map_err(|e| fail("the metrics", &e))?;
    // A group of one class is not an error (unlike a split): its AUROC is `None`, shown as such.
    let by_group = match &s.groups {
        Some(groups) => per_group_metrics_with_interval(&s.scores, &s.labels, groups, bootstrap)
            .map_err(|e| fail("the per-group metrics", &e))?,
        None => BTreeMap::new(),
    };
    Ok(Cell {
        metrics,
        auroc_ci,
        by_group,
        roc: roc_curve(&s.scores, &s.labels, None, true).map_err(|e| fail("the ROC curve", &e))?,
        reliability: reliability_table(&s.scores, &s.labels, 10)
            .map_err(|e| fail("the reliability table", &e))?,
    })
}

/// Matrix variables over all inputs, in first-seen order: the table's label columns.
fn columns(inputs: &[Scored]) -> Vec<String> {
    let mut cols: Vec<String> = vec![];
    for (k, _) in inputs.iter().flat_map(|i| &i.assignment) {
        if !cols.contains(k) {
            cols.push(k.clone());
        }
    }
    cols
}

fn value_of<'a>(input: &'a Scored, var: &str) -> Option<&'a str> {
    input
        .assignment
        .iter()
        .find(|(k, _)| k == var)
        .map(|(_, v)| v.as_str())
}

/// A matrix value as JSON: numbers as numbers (`layer = 6`), anything else as text.
fn json_value(v: &str) -> Json {
    match serde_json::from_str::<Json>(v) {
        Ok(n @ Json::Number(_)) => n,
        _ => json!(v),
    }
}

/// Charts of one split: (file suffix and caption part, members). Inputs without the grouping
/// variable (a baseline) appear on every chart, as the reference each group is read against.
fn chart_groups(
    inputs: &[Scored],
    members: &[usize],
    cols: &[String],
) -> Vec<(Option<String>, Vec<usize>)> {
    let var = match cols.first() {
        Some(v) if members.len() > CURVES_PER_CHART => v,
        _ => return vec![(None, members.to_vec())],
    };
    let mut values: Vec<&str> = vec![];
    for &i in members {
        if let Some(v) = value_of(&inputs[i], var)
            && !values.contains(&v)
        {
            values.push(v);
        }
    }
    values
        .into_iter()
        .map(|value| {
            let group = members
                .iter()
                .copied()
                .filter(|&i| value_of(&inputs[i], var).is_none_or(|v| v == value))
                .collect();
            (Some(format!("{var}={value}")), group)
        })
        .collect()
}

/// A file-name-safe form of a chart's group (`layer=6` -> `layer-6`).
fn file_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// A curve's legend: what tells it apart from the other curves of its chart.
fn legend(input: &Scored, group_var: Option<&str>) -> String {
    let parts: Vec<String> = input
        .assignment
        .iter()
        .filter(|(k, _)| Some(k.as_str()) != group_var)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if parts.is_empty() {
        input.node.clone()
    } else {
        parts.join(" ")
    }
}

fn f3(x: f64) -> String {
    format!("{x:.3}")
}

/// Computes every cell, draws the plots and writes results.md and results.json under `out`;
/// returns the artifact's metadata.
pub fn write_report(
    inputs: &[InputArtifact],
    options: &Options,
    out: &Path,
) -> Result<Json, NodeError> {
    let inputs = read_inputs(inputs, &options.splits)?;
    // cells[split][input]
    let mut cells: Vec<Vec<Option<Cell>>> = vec![];
    for split in &options.splits {
        let row = inputs
            .iter()
            .map(|input| {
                input
                    .splits
                    .get(split)
                    .map(|s| cell(input, split, s, options))
                    .transpose()
            })
            .collect::<Result<Vec<_>, _>>()?;
        cells.push(row);
    }
    std::fs::create_dir_all(out)
        .map_err(|e| NodeError::caused(format!("Failed to create `{}`", out.display()), &e))?;
    let cols = columns(&inputs);
    let mut plots: Vec<(String, String)> = vec![];
    for (split, row) in options.splits.iter().zip(&cells) {
        let members: Vec<usize> = (0..inputs.len()).filter(|&i| row[i].is_some()).collect();
        for (group, idx) in chart_groups(&inputs, &members, &cols) {
            let var = group
                .as_deref()
                .and_then(|g| g.split_once('='))
                .map(|(k, _)| k);
            let suffix = group
                .as_deref()
                .map(|g| format!("-{}", file_part(g)))
                .unwrap_or_default();
            let caption = match &group {
                Some(g) => format!("{split}, {g}"),
                None => split.clone(),
            };
            let named: Vec<(String, &Cell)> = idx
                .iter()
                .map(|&i| {
                    (
                        legend(&inputs[i], var),
                        row[i].as_ref().expect("member has the split"),
                    )
                })
                .collect();
            let roc_labels: Vec<String> = named
                .iter()
                .map(|(l, c)| format!("{l} (AUROC {})", f3(c.metrics.auroc.unwrap_or(f64::NAN))))
                .collect();
            let roc: Vec<(&str, &RocCurve)> = roc_labels
                .iter()
                .zip(&named)
                .map(|(l, (_, c))| (l.as_str(), &c.roc))
                .collect();
            let rel: Vec<(&str, &ReliabilityTable)> = named
                .iter()
                .map(|(l, c)| (l.as_str(), &c.reliability))
                .collect();
            for (kind, title) in [("roc", "ROC"), ("reliability", "Reliability")] {
                let file = format!("{kind}-{}{suffix}.png", file_part(split));
                let path = out.join(&file);
                let title = format!("{title}: {caption}");
                let drawn = if kind == "roc" {
                    roc_plot_png(&path, &title, &roc)
                } else {
                    reliability_plot_png(&path, &title, &rel)
                };
                drawn.map_err(|e| {
                    NodeError::caused_hinted(format!("Failed to draw `{file}`"), &e)
                })?;
                plots.push((split.clone(), file));
            }
        }
    }
    let write = |name: &str, bytes: &[u8]| {
        let p = out.join(name);
        std::fs::write(&p, bytes)
            .map_err(|e| NodeError::caused(format!("Failed to write `{}`", p.display()), &e))
    };
    write(
        "results.md",
        markdown(&inputs, &cells, &cols, &plots, options).as_bytes(),
    )?;
    let results = results_json(&inputs, &cells, &plots, options);
    write(
        "results.json",
        &serde_json::to_vec_pretty(&results).expect("serialises"),
    )?;
    Ok(json!({
        "inputs": inputs.len(),
        "splits": options.splits,
        "plots": plots.iter().map(|(_, f)| f).collect::<Vec<_>>(),
        "summary": summary(&inputs, &cells, &cols, options),
    }))
}

/// The table `dag run` prints at the end: each input's AUROC [95% CI] per split, then per
/// group (source dataset) of each split whose scores carry groups.
fn summary(
    inputs: &[Scored],
    cells: &[Vec<Option<Cell>>],
    cols: &[String],
    options: &Options,
) -> String {
    let mut header = row_label_header(cols);
    // (split index, group): the whole split first, then its groups in order.
    let mut columns: Vec<(usize, Option<&str>)> = vec![];
    for (s, split) in options.splits.iter().enumerate() {
        columns.push((s, None));
        header.push(format!("{split} AUROC"));
        let groups: BTreeSet<&str> = cells[s]
            .iter()
            .flatten()
            .flat_map(|c| c.by_group.keys().map(String::as_str))
            .collect();
        let groups_len = groups.len();
        // One group is the whole split again.
        for g in groups.into_iter().filter(|_| groups_len > 1) {
            columns.push((s, Some(g)));
            header.push(format!("{split} `{g}`"));
        }
    }
    let mut md = format!(
        "| {} |\n|{}\n",
        header.join(" | "),
        " --- |".repeat(header.len())
    );
    for (i, input) in inputs.iter().enumerate() {
        let mut line = row_label(input, cols);
        for (s, group) in &columns {
            let text = match (&cells[*s][i], group) {
                (None, _) => "-".to_string(),
                (Some(c), None) => auroc_text(&c.metrics, c.auroc_ci),
                (Some(c), Some(g)) => c
                    .by_group
                    .get(*g)
                    .map_or("-".into(), |(m, ci)| auroc_text(m, *ci)),
            };
            line.push(text);
        }
        md.push_str(&format!("| {} |\n", line.join(" | ")));
    }
    md
}

/// One input's metrics on some rows as results.json writes them.
fn metrics_json(m: &ProbeMetrics, ci: Option<Interval>) -> Json {
    let mut v = serde_json::to_value(m).expect("metrics serialise");
    v["n_negative"] = json!(m.n - m.n_positive);
    v["auroc_ci"] = ci.map_or(Json::Null, |ci| json!([ci.lower, ci.upper]));
    v
}

fn results_json(
    inputs: &[Scored],
    cells: &[Vec<Option<Cell>>],
    plots: &[(String, String)],
    options: &Options,
) -> Json {
    let rows: Vec<Json> = inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let mut by_split = serde_json::Map::new();
            let mut missing = vec![];
            for (split, row) in options.splits.iter().zip(cells) {
                let Some(c) = &row[i] else {
                    missing.push(split.clone());
                    continue;
                };
                let mut m = metrics_json(&c.metrics, c.auroc_ci);
                m["reliability"] = serde_json::to_value(&c.reliability).expect("serialises");
                if !c.by_group.is_empty() {
                    m["by_group"] = c
                        .by_group
                        .iter()
                        .map(|(g, (gm, ci))| {
                            let mut v = metrics_json(gm, *ci);
                            if let Some(why) = gm.undefined_auroc_reason() {
                                v["note"] = json!(why);
                            }
                            (g.clone(), v)
                        })
                        .collect::<serde_json::Map<_, _>>()
                        .into();
                }
                by_split.insert(split.clone(), m);
            }
            json!({
                "label": input.label,
                "node": input.node,
                "assignment": input.assignment.iter().map(|(k, v)| (k.clone(), json_value(v))).collect::<serde_json::Map<_, _>>(),
                "digest": input.digest,
                "splits": by_split,
                "missing_splits": missing,
            })
        })
        .collect();
    json!({
        "title": options.title,
        "splits": options.splits,
        "bootstrap": { "n_resamples": options.bootstrap, "seed": options.seed, "level": 0.95, "stratified": true },
        "inputs": rows,
        "plots": plots.iter().map(|(s, f)| json!({ "split": s, "file": f })).collect::<Vec<_>>(),
    })
}

/// The metric tables' header: the input's label columns, then the metrics.
fn table_header(cols: &[String], options: &Options) -> Vec<String> {
    let mut header = row_label_header(cols);
    header.extend(
        [
            "n (pos/neg)",
            if options.bootstrap >= 2 {
                "AUROC [95% CI]"
            } else {
                "AUROC"
            },
            "TPR@1%FPR",
            "TPR@1%FPR (closest point)",
            "accuracy@0.5",
            "ECE (10 bins)",
            "Brier",
        ]
        .map(String::from),
    );
    header
}

/// The cells naming an input: its node and its value of each matrix variable (`-` if none).
fn row_label(input: &Scored, cols: &[String]) -> Vec<String> {
    let mut line: Vec<String> = vec![input.node.clone()];
    line.extend(
        cols.iter()
            .map(|k| value_of(input, k).unwrap_or("-").to_string()),
    );
    line
}

/// AUROC with its interval when there is one; `-` when undefined (one class).
fn auroc_text(m: &ProbeMetrics, ci: Option<Interval>) -> String {
    let auroc = m.auroc.map_or("-".into(), f3);
    match ci {
        Some(ci) => format!("{auroc} [{}, {}]", f3(ci.lower), f3(ci.upper)),
        None => auroc,
    }
}

/// The metric cells of [`table_header`], rounded to three decimals.
fn metric_cells(m: &ProbeMetrics, ci: Option<Interval>) -> Vec<String> {
    vec![
        format!("{} ({}/{})", m.n, m.n_positive, m.n - m.n_positive),
        auroc_text(m, ci),
        m.tpr_at_1pct_fpr.map_or("-".into(), |t| f3(t.tpr)),
        m.tpr_at_1pct_fpr_closest_point.map_or("-".into(), f3),
        f3(m.accuracy_at_half),
        f3(m.ece_10),
        f3(m.brier),
    ]
}

/// The per-group part of a split's section, when some input's rows carry a `group`: first
/// AUROC as inputs x groups (how each probe fares on each source dataset, at a glance), then
/// one full table per group (the inputs ranked on that dataset's rows alone). Inputs without
/// groups have no rows here; a grouped input without rows in some group shows `-`.
fn group_tables(
    md: &mut String,
    split: &str,
    inputs: &[Scored],
    row: &[Option<Cell>],
    cols: &[String],
    options: &Options,
) {
    let grouped: Vec<(&Scored, &Cell)> = inputs
        .iter()
        .zip(row)
        .filter_map(|(input, c)| c.as_ref().map(|c| (input, c)))
        .filter(|(_, c)| !c.by_group.is_empty())
        .collect();
    if grouped.is_empty() {
        return;
    }
    let groups: std::collections::BTreeSet<&String> = grouped
        .iter()
        .flat_map(|(_, c)| c.by_group.keys())
        .collect();
    let _ = writeln!(md, "### {split}: per group\n");
    let _ = writeln!(
        md,
        "The same metrics on each group's rows alone (the scores' `group`, from the producing \
         node's `group_column`: the rows' source dataset), under the same bootstrap; first AUROC \
         per input and group, then every metric per group. Inputs whose scores carry no group \
         are not listed. An AUROC of `-` marks a group with rows of one class only on this split \
         (AUROC, its interval and TPR at 1% FPR need both classes: undefined, not zero), or, in \
         the first table, an input without rows in that group.\n"
    );
    let mut header = row_label_header(cols);
    header.extend(groups.iter().map(|g| format!("`{g}`")));
    let _ = writeln!(md, "| {} |", header.join(" | "));
    let _ = writeln!(md, "|{}", " --- |".repeat(header.len()));
    for (input, c) in &grouped {
        let mut line = row_label(input, cols);
        line.extend(groups.iter().map(|g| {
            c.by_group
                .get(*g)
                .map_or("-".into(), |(m, ci)| auroc_text(m, *ci))
        }));
        let _ = writeln!(md, "| {} |", line.join(" | "));
    }
    md.push('\n');
    let header = table_header(cols, options);
    for g in groups {
        let _ = writeln!(md, "#### {split}, group `{g}`\n");
        let _ = writeln!(md, "| {} |", header.join(" | "));
        let _ = writeln!(md, "|{}", " --- |".repeat(header.len()));
        for (input, c) in &grouped {
            if let Some((m, ci)) = c.by_group.get(g) {
                let mut line = row_label(input, cols);
                line.extend(metric_cells(m, *ci));
                let _ = writeln!(md, "| {} |", line.join(" | "));
            }
        }
        md.push('\n');
    }
}

/// The label columns of a table's header.
fn row_label_header(cols: &[String]) -> Vec<String> {
    let mut header: Vec<String> = vec!["node".into()];
    header.extend(cols.iter().cloned());
    header
}

fn markdown(
    inputs: &[Scored],
    cells: &[Vec<Option<Cell>>],
    cols: &[String],
    plots: &[(String, String)],
    options: &Options,
) -> String {
    let mut md = String::new();
    let title = options.title.as_deref().unwrap_or("Probe report");
    let interval = if options.bootstrap >= 2 {
        format!(
            "with its 95% stratified bootstrap interval ({} resamples, seed {})",
            options.bootstrap, options.seed
        )
    } else {
        "without intervals (`bootstrap` below 2)".to_string()
    };
    // The notes say why each column is computed the way it is: they are what a reader of the
    // numbers needs and cannot recover from the table.
    let _ = writeln!(md, "# {title}\n");
    let _ = writeln!(
        md,
        "AUROC (ties count half) {interval}. TPR at 1% FPR sets its threshold on the negatives \
         alone, so the FPR it achieves never exceeds 1%; with fewer than 100 negatives no negative \
         may be flagged and the threshold is the highest negative score. \"Closest point\" is the \
         seed study's variant (the ROC point nearest 1% FPR, which may exceed it), kept only to \
         compare with its published numbers. Accuracy flags a row when its score is above 0.5; ECE \
         uses 10 equal-width bins. `-`: the input has no rows for that split.\n"
    );
    let header = table_header(cols, options);
    for (split, row) in options.splits.iter().zip(cells) {
        let _ = writeln!(md, "## {split}\n");
        let _ = writeln!(md, "| {} |", header.join(" | "));
        let _ = writeln!(md, "|{}", " --- |".repeat(header.len()));
        for (input, c) in inputs.iter().zip(row) {
            let mut line = row_label(input, cols);
            match c {
                Some(c) => line.extend(metric_cells(&c.metrics, c.auroc_ci)),
                None => line.extend(std::iter::repeat_n(
                    "-".to_string(),
                    header.len() - line.len(),
                )),
            }
            let _ = writeln!(md, "| {} |", line.join(" | "));
        }
        let mut ns: Vec<usize> = row.iter().flatten().map(|c| c.metrics.n).collect();
        ns.sort_unstable();
        ns.dedup();
        if ns.len() > 1 {
            let _ = writeln!(
                md,
                "\nThe inputs scored different numbers of `{split}` rows: their numbers are not on the same rows."
            );
        }
        md.push('\n');
        for (_, file) in plots.iter().filter(|(s, _)| s == split) {
            let _ = writeln!(md, "![{file}]({file})");
        }
        md.push('\n');
        // After the plots: they draw the whole split, which the table above them reports.
        group_tables(&mut md, split, inputs, row, cols, options);
    }
    let _ = writeln!(md, "## Inputs\n\n| input | digest |\n| --- | --- |");
    for input in inputs {
        let _ = writeln!(md, "| `{}` | `{}` |", input.label, input.digest);
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use dag_engine::{InstanceId, Source};
    use dag_metrics::{
        accuracy, brier_score, expected_calibration_error, probe_metrics, roc_auc,
        stratified_bootstrap, tpr_at_fpr, tpr_at_fpr_closest_point,
    };

    /// A scores artifact as a node sees it, written under `dir`.
    fn input(dir: &Path, label: &str, jsonl: &str) -> InputArtifact {
        let path = dir.join(format!("{}.jsonl", file_part(label)));
        std::fs::write(&path, jsonl).unwrap();
        InputArtifact {
            digest: dag_store::hash_bytes(jsonl.as_bytes()),
            kind: ArtifactKind::Scores,
            path,
            meta: Json::Null,
            label: label.to_string(),
            source: source(label),
        }
    }

    /// The source a test's label names: `node[k=v,...].port`, `node[element].port`,
    /// `node.port` or `node.port[element]`, as the engine prints them.
    fn source(label: &str) -> Source {
        let (head, tail) = label.rsplit_once('.').unwrap();
        let (rest, element) = match tail.split_once('[') {
            Some((port, e)) => (
                format!("{head}.{port}"),
                Some(e.trim_end_matches(']').to_string()),
            ),
            None => (label.to_string(), None),
        };
        let (instance, port) = rest.rsplit_once('.').unwrap();
        let producer = match instance.split_once('[') {
            None => InstanceId::single(instance),
            Some((node, inner)) => {
                let inner = inner.strip_suffix(']').unwrap();
                let mut id = InstanceId::single(node);
                for part in inner.split(',') {
                    match part.split_once('=') {
                        Some((k, v)) => id.assignment.push((k.into(), v.into())),
                        None => id.element = Some(part.into()),
                    }
                }
                id
            }
        };
        Source {
            producer,
            port: port.into(),
            element,
        }
    }

    fn lines(rows: &[(&str, bool, f64)]) -> String {
        rows.iter()
            .enumerate()
            .map(|(i, (split, y, s))| {
                format!(
                    "{}\n",
                    json!({ "split": split, "row": i, "label": u8::from(*y), "score": s })
                )
            })
            .collect()
    }

    /// `n` rows per split with a planted, noisy signal; scores rounded to two decimals so
    /// ties across classes occur.
    fn planted(splits: &[&str], n: usize, shift: f64) -> Vec<(String, bool, f64)> {
        let mut out = vec![];
        for (k, split) in splits.iter().enumerate() {
            for i in 0..n {
                let y = i % 2 == 0;
                let noise = ((i * 37 + k * 11) % 101) as f64 / 101.0 - 0.5;
                let s: f64 = 0.5 + if y { shift } else { -shift } + 0.6 * noise;
                out.push((
                    split.to_string(),
                    y,
                    (s.clamp(0.0, 1.0) * 100.0).round() / 100.0,
                ));
            }
        }
        out
    }

    fn planted_lines(splits: &[&str], n: usize, shift: f64) -> String {
        let rows = planted(splits, n, shift);
        let refs: Vec<(&str, bool, f64)> =
            rows.iter().map(|(s, y, x)| (s.as_str(), *y, *x)).collect();
        lines(&refs)
    }

    fn options(splits: &[&str]) -> Options {
        Options {
            splits: splits.iter().map(|s| s.to_string()).collect(),
            bootstrap: 200,
            seed: 7,
            title: None,
        }
    }

    fn results(out: &Path) -> Json {
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap()
    }

    /// The study's shape: three layers x five probes and the prompted baseline (test only).
    fn study(dir: &Path) -> Vec<InputArtifact> {
        let mut v = vec![];
        for (l, layer) in [6, 15, 24].into_iter().enumerate() {
            for (p, probe) in [
                "mean-logistic",
                "diff-of-means",
                "lda",
                "per-token",
                "attention",
            ]
            .into_iter()
            .enumerate()
            {
                let shift = 0.02 * (l * 5 + p) as f64;
                v.push(input(
                    dir,
                    &format!("probe[layer={layer},probe={probe}].scores"),
                    &planted_lines(&["train", "validation", "test"], 24, shift),
                ));
            }
        }
        v.push(input(
            dir,
            "prompted.scores",
            &planted_lines(&["test"], 24, 0.05),
        ));
        v
    }

    fn close(a: &Json, b: f64) {
        let a = a.as_f64().unwrap_or_else(|| panic!("{a} is not a number"));
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn inputs_report_under_their_node_and_matrix_assignment() {
        let d = tempfile::tempdir().unwrap();
        let of = |label: &str| node_and_assignment(&input(d.path(), label, ""));
        assert_eq!(
            of("probe[layer=6,probe=lda].scores"),
            (
                "probe".to_string(),
                vec![("layer".into(), "6".into()), ("probe".into(), "lda".into())]
            )
        );
        assert_eq!(of("prompted.scores"), ("prompted".to_string(), vec![]));
        assert_eq!(
            of("sweep[lr=0.001].scores").1,
            vec![("lr".into(), "0.001".into())]
        );
        // A dynamic-map instance's element is not an assignment: it stays in the name.
        assert_eq!(
            of("eval[step-30].scores"),
            ("eval[step-30]".to_string(), vec![])
        );
        assert_eq!(of("ft.checkpoints[step-30]").0, "ft.checkpoints[step-30]");
    }

    #[test]
    fn numbers_are_dag_metrics_on_the_same_rows() {
        let dir = tempfile::tempdir().unwrap();
        let rows = planted(&["validation", "test"], 40, 0.1);
        let refs: Vec<(&str, bool, f64)> =
            rows.iter().map(|(s, y, x)| (s.as_str(), *y, *x)).collect();
        let inputs = [input(
            dir.path(),
            "probe[layer=6,probe=lda].scores",
            &lines(&refs),
        )];
        let out = dir.path().join("report");
        let opts = options(&["validation", "test"]);
        write_report(&inputs, &opts, &out).unwrap();
        let r = results(&out);
        let row = &r["inputs"][0];
        assert_eq!(row["node"], "probe");
        assert_eq!(row["assignment"], json!({ "layer": 6, "probe": "lda" }));
        assert_eq!(row["digest"], inputs[0].digest.to_hex());
        for split in ["validation", "test"] {
            let (p, y): (Vec<f64>, Vec<bool>) = rows
                .iter()
                .filter(|(s, _, _)| s == split)
                .map(|(_, y, x)| (*x, *y))
                .unzip();
            let m = &row["splits"][split];
            assert_eq!(m["n"], 40);
            assert_eq!(
                (m["n_positive"].clone(), m["n_negative"].clone()),
                (json!(20), json!(20))
            );
            close(&m["auroc"], roc_auc(&p, &y).unwrap());
            close(
                &m["tpr_at_1pct_fpr"]["tpr"],
                tpr_at_fpr(&p, &y, 0.01).unwrap().tpr,
            );
            close(
                &m["tpr_at_1pct_fpr_closest_point"],
                tpr_at_fpr_closest_point(&p, &y, 0.01).unwrap(),
            );
            close(&m["accuracy_at_half"], accuracy(&p, &y, 0.5).unwrap());
            close(
                &m["ece_10"],
                expected_calibration_error(&p, &y, 10).unwrap(),
            );
            close(
                &m["reliability"]["ece"],
                expected_calibration_error(&p, &y, 10).unwrap(),
            );
            assert_eq!(m["reliability"]["bins"].as_array().unwrap().len(), 10);
            close(&m["brier"], brier_score(&p, &y, None).unwrap());
            let config = BootstrapConfig {
                n_resamples: 200,
                seed: 7,
                level: 0.95,
            };
            let ci = stratified_bootstrap(&p, &y, &config, roc_auc).unwrap();
            close(&m["auroc_ci"][0], ci.lower);
            close(&m["auroc_ci"][1], ci.upper);
            // The table shows the same numbers, rounded.
            let md = std::fs::read_to_string(out.join("results.md")).unwrap();
            let cell = format!("{:.3} [{:.3}, {:.3}]", ci.estimate, ci.lower, ci.upper);
            assert!(md.contains(&cell), "{cell} not in\n{md}");
        }
    }

    /// Planted rows with a `group` each: `a` and `b` in turns, and on test two rows of `c`,
    /// both positive.
    fn grouped(splits: &[&str], n: usize, shift: f64) -> Vec<(String, bool, f64, String)> {
        let mut rows: Vec<(String, bool, f64, String)> = planted(splits, n, shift)
            .into_iter()
            .enumerate()
            .map(|(i, (split, y, s))| (split, y, s, ["a", "b"][i % 4 / 2].to_string()))
            .collect();
        if splits.contains(&"test") {
            rows.push(("test".into(), true, 0.8, "c".into()));
            rows.push(("test".into(), true, 0.3, "c".into()));
        }
        rows
    }

    fn grouped_lines(rows: &[(String, bool, f64, String)]) -> String {
        rows.iter()
            .enumerate()
            .map(|(i, (split, y, s, g))| {
                format!(
                    "{}\n",
                    json!({ "split": split, "row": i, "label": u8::from(*y), "score": s, "group": g })
                )
            })
            .collect()
    }

    #[test]
    fn groups_get_the_same_metrics_on_their_own_rows() {
        let dir = tempfile::tempdir().unwrap();
        let rows = grouped(&["validation", "test"], 40, 0.1);
        let inputs = [
            input(
                dir.path(),
                "probe[layer=6,probe=lda].scores",
                &grouped_lines(&rows),
            ),
            input(
                dir.path(),
                "prompted.scores",
                &planted_lines(&["test"], 20, 0.0),
            ),
        ];
        let out = dir.path().join("report");
        write_report(&inputs, &options(&["validation", "test"]), &out).unwrap();
        let r = results(&out);
        let config = BootstrapConfig {
            n_resamples: 200,
            seed: 7,
            level: 0.95,
        };
        for split in ["validation", "test"] {
            let by = &r["inputs"][0]["splits"][split]["by_group"];
            for g in ["a", "b"] {
                let (p, y): (Vec<f64>, Vec<bool>) = rows
                    .iter()
                    .filter(|(s, _, _, gr)| s == split && gr == g)
                    .map(|(_, y, x, _)| (*x, *y))
                    .unzip();
                let m = &by[g];
                assert_eq!(m["n"], 20, "{split} {g}");
                close(&m["auroc"], roc_auc(&p, &y).unwrap());
                close(&m["brier"], brier_score(&p, &y, None).unwrap());
                let ci = stratified_bootstrap(&p, &y, &config, roc_auc).unwrap();
                close(&m["auroc_ci"][0], ci.lower);
                close(&m["auroc_ci"][1], ci.upper);
                assert!(m.get("note").is_none());
            }
        }
        // One class: no AUROC and a note why, but the calibration numbers are there.
        let c = &r["inputs"][0]["splits"]["test"]["by_group"]["c"];
        assert_eq!((&c["auroc"], &c["auroc_ci"]), (&Json::Null, &Json::Null));
        assert!(
            c["note"]
                .as_str()
                .unwrap()
                .starts_with("only positive rows (2)"),
            "{c}"
        );
        let m = probe_metrics(&[0.8, 0.3], &[true, true]).unwrap();
        close(&c["brier"], m.brier);
        assert!(
            r["inputs"][0]["splits"]["validation"]["by_group"]
                .get("c")
                .is_none()
        );
        // The baseline has no groups: no breakdown, and no rows in the per-group tables.
        assert!(r["inputs"][1]["splits"]["test"].get("by_group").is_none());
        let md = std::fs::read_to_string(out.join("results.md")).unwrap();
        let test = md.split_once("### test: per group").unwrap().1;
        assert!(
            test.contains("| node | layer | probe | `a` | `b` | `c` |"),
            "{md}"
        );
        let a = &r["inputs"][0]["splits"]["test"]["by_group"]["a"];
        let cell = format!(
            "{:.3} [{:.3}, {:.3}]",
            a["auroc"].as_f64().unwrap(),
            a["auroc_ci"][0].as_f64().unwrap(),
            a["auroc_ci"][1].as_f64().unwrap()
        );
        assert!(
            test.contains(&format!("| probe | 6 | lda | {cell} | ")),
            "{cell} in\n{md}"
        );
        assert!(test.contains(" | - |\n"), "group c's AUROC is `-`:\n{md}");
        assert!(
            test.contains("#### test, group `c`\n\n| node | layer | probe | n (pos/neg) |"),
            "{md}"
        );
        assert!(
            test.contains("| probe | 6 | lda | 2 (2/0) | - | - | - |"),
            "{md}"
        );
        assert!(!test.contains("| prompted |"), "{md}");
        let validation = md.split_once("## test").unwrap().0;
        assert!(validation.contains("### validation: per group"), "{md}");
        assert!(!validation.contains("`c`"), "{md}");
    }

    #[test]
    fn scores_without_groups_give_no_group_tables() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = study(dir.path());
        let out = dir.path().join("report");
        write_report(&inputs, &options(&["validation", "test"]), &out).unwrap();
        let md = std::fs::read_to_string(out.join("results.md")).unwrap();
        assert!(!md.contains("per group"), "{md}");
        let json = std::fs::read_to_string(out.join("results.json")).unwrap();
        assert!(!json.contains("by_group"));
    }

    #[test]
    fn a_scores_file_is_grouped_on_every_line_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let good = r#"{"split": "test", "row": 0, "label": 1, "score": 0.7, "group": "a"}"#;
        for (bad, what) in [
            (
                r#"{"split": "test", "row": 1, "label": 0, "score": 0.1}"#,
                "has no `group` but earlier lines have one",
            ),
            (
                r#"{"split": "test", "row": 1, "label": 0, "score": 0.1, "group": 3}"#,
                "has group 3, not a string",
            ),
        ] {
            let inputs = [input(
                dir.path(),
                "prompted.scores",
                &format!("{good}\n{bad}\n"),
            )];
            let err = error(&inputs, &["test"]);
            assert!(
                err.to_string()
                    .contains(&format!("Line 2 of `prompted.scores` {what}")),
                "{err}"
            );
        }
    }

    #[test]
    fn ties_count_half() {
        let dir = tempfile::tempdir().unwrap();
        let rows = [
            ("test", true, 0.9),
            ("test", true, 0.5),
            ("test", false, 0.5),
            ("test", false, 0.1),
        ];
        let flat = [("test", true, 0.5), ("test", false, 0.5)];
        let inputs = [
            input(dir.path(), "a.scores", &lines(&rows)),
            input(dir.path(), "b.scores", &lines(&flat)),
        ];
        let out = dir.path().join("report");
        write_report(&inputs, &options(&["test"]), &out).unwrap();
        let r = results(&out);
        close(&r["inputs"][0]["splits"]["test"]["auroc"], 0.875);
        close(&r["inputs"][1]["splits"]["test"]["auroc"], 0.5);
    }

    #[test]
    fn the_study_gets_a_row_per_cell_and_a_chart_per_layer() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = study(dir.path());
        let out = dir.path().join("report");
        let meta = write_report(&inputs, &options(&["validation", "test"]), &out).unwrap();
        assert_eq!(meta["inputs"], 16);
        let md = std::fs::read_to_string(out.join("results.md")).unwrap();
        let (validation, test) = md.split_once("## test").unwrap();
        assert!(
            test.contains("| probe | 24 | attention | 24 (12/12) |"),
            "{md}"
        );
        assert!(test.contains("| prompted | - | - | 24 (12/12) |"), "{md}");
        // The baseline has no validation rows: a row of `-`, not an error.
        assert!(validation.contains("| prompted | - | - | - | - |"), "{md}");
        assert_eq!(test.matches("\n| probe | ").count(), 15, "{md}");
        // Table rows keep the input order.
        assert!(
            test.find("| 6 | mean-logistic |").unwrap()
                < test.find("| 15 | mean-logistic |").unwrap()
        );
        // Sixteen curves are too many for one chart: one per layer, the baseline on each.
        for split in ["validation", "test"] {
            for layer in [6, 15, 24] {
                for kind in ["roc", "reliability"] {
                    let png = std::fs::read(out.join(format!("{kind}-{split}-layer-{layer}.png")))
                        .unwrap();
                    assert!(
                        png.len() > 1000 && png.starts_with(b"\x89PNG"),
                        "{kind} {split} {layer}"
                    );
                }
            }
        }
        let r = results(&out);
        assert_eq!(r["inputs"][15]["missing_splits"], json!(["validation"]));
        assert_eq!(r["plots"].as_array().unwrap().len(), 12);
    }

    #[test]
    fn a_small_report_has_one_chart_per_split() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = [
            input(
                dir.path(),
                "probe[probe=lda].scores",
                &planted_lines(&["test"], 20, 0.1),
            ),
            input(
                dir.path(),
                "prompted.scores",
                &planted_lines(&["test"], 20, 0.0),
            ),
        ];
        let out = dir.path().join("report");
        write_report(&inputs, &options(&["test"]), &out).unwrap();
        let mut files: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(
            files,
            [
                "reliability-test.png",
                "results.json",
                "results.md",
                "roc-test.png"
            ]
        );
        for f in ["reliability-test.png", "roc-test.png"] {
            let png = std::fs::read(out.join(f)).unwrap();
            assert!(png.len() > 1000 && png.starts_with(b"\x89PNG"), "{f}");
        }
    }

    #[test]
    fn output_bytes_depend_only_on_inputs_and_seed() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = study(dir.path());
        let opts = options(&["validation", "test"]);
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        write_report(&inputs, &opts, &a).unwrap();
        write_report(&inputs, &opts, &b).unwrap();
        let files: Vec<_> = std::fs::read_dir(&a)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files.len(), 14);
        for f in &files {
            assert_eq!(
                std::fs::read(a.join(f)).unwrap(),
                std::fs::read(b.join(f)).unwrap(),
                "{f:?}"
            );
        }
        // Another seed moves the intervals.
        let c = dir.path().join("c");
        write_report(&inputs, &Options { seed: 8, ..opts }, &c).unwrap();
        assert_ne!(
            std::fs::read(a.join("results.json")).unwrap(),
            std::fs::read(c.join("results.json")).unwrap()
        );
    }

    fn error(inputs: &[InputArtifact], splits: &[&str]) -> NodeError {
        let dir = tempfile::tempdir().unwrap();
        write_report(inputs, &options(splits), &dir.path().join("report"))
            .map(|_| ())
            .unwrap_err()
    }

    fn hint(e: &NodeError) -> &str {
        e.hint.as_deref().unwrap_or_default()
    }

    #[test]
    fn an_input_without_the_splits_is_named_with_the_splits_it_has() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = [
            input(
                dir.path(),
                "probe[layer=6].scores",
                &planted_lines(&["train", "test"], 8, 0.1),
            ),
            input(
                dir.path(),
                "other.scores",
                &planted_lines(&["train"], 8, 0.1),
            ),
        ];
        let err = error(&inputs, &["validation", "test"]);
        assert!(
            err.to_string().contains(
                "`other.scores` has no rows for any of `validation`, `test`; it has rows for `train`"
            )
                && hint(&err).starts_with("set `splits`"),
            "{err:?}"
        );
        let err = error(&inputs[..1], &["val", "test"]);
        assert!(
            err.to_string()
                .contains("No input has rows for split `val`; the inputs have `test`, `train`"),
            "{err}"
        );
    }

    #[test]
    fn a_single_class_split_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let rows = [
            ("test", true, 0.9),
            ("test", true, 0.4),
            ("validation", true, 0.3),
            ("validation", false, 0.2),
        ];
        let inputs = [input(
            dir.path(),
            "probe[layer=6,probe=lda].scores",
            &lines(&rows),
        )];
        let err = error(&inputs, &["validation", "test"]);
        assert!(
            err.to_string().contains("Split `test` of `probe[layer=6,probe=lda].scores` has only positive rows (2): AUROC is undefined"),
            "{err}"
        );
    }

    #[test]
    fn malformed_lines_are_errors_with_their_line_number() {
        let dir = tempfile::tempdir().unwrap();
        let good = r#"{"split": "test", "row": 0, "label": 1, "score": 0.7}"#;
        for (bad, what) in [
            ("{\"split\": \"test\", ", "is not a JSON object"),
            (
                r#"{"split": "test", "row": 1, "label": 2, "score": 0.1}"#,
                "has label 2, not 0 or 1",
            ),
            (
                r#"{"split": "test", "row": 1, "label": 0, "score": 1.5}"#,
                "has score 1.5, not a probability",
            ),
            (
                r#"{"split": "test", "row": 1, "label": 0}"#,
                "has score nothing",
            ),
            (
                r#"{"row": 1, "label": 0, "score": 0.2}"#,
                "has split nothing, not a string",
            ),
        ] {
            let inputs = [input(
                dir.path(),
                "prompted.scores",
                &format!("{good}\n\n{bad}\n"),
            )];
            let err = error(&inputs, &["test"]);
            assert!(
                err.to_string()
                    .contains(&format!("Line 3 of `prompted.scores` {what}"))
                    && hint(&err).starts_with("connect"),
                "{err:?}"
            );
        }
    }
}
