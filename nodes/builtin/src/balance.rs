//! `balance`: seeded per-label resampling to equal class counts, optionally within
//! strata of another column.

use std::collections::BTreeMap;

use dag_engine::{
    ArtifactKind, Node, NodeError, NodeSpec, ParamSpec, ParamType, PortSpec, Resources, RunContext,
    Value,
};
use rand::{Rng, SeedableRng};
use serde_json::json;

use dag_table::{self as table, Row};

/// The `balance` node type.
pub struct Balance(NodeSpec);

impl Balance {
    /// The node type with its spec.
    pub fn new() -> Self {
        Balance(NodeSpec {
            name: "balance",
            // 2: a row whose label is null (a judge could not label it) is dropped and
            // counted, never balanced as a class of its own.
            version: 2,
            doc: "Resamples rows so every value of `label` has the same count (within each value of `stratify`, when set): \
                  `down` keeps a seeded sample of each class as large as the smallest, `up` repeats seeded draws of the \
                  smaller classes up to the largest. Rows whose label is null (unlabelled) are dropped and counted. \
                  Reports counts before and after.",
            inputs: vec![PortSpec::new(
                "dataset",
                ArtifactKind::Dataset,
                "rows to balance",
            )],
            outputs: vec![PortSpec::new(
                "dataset",
                ArtifactKind::Dataset,
                "balanced rows, in input order",
            )],
            params: vec![
                ParamSpec::required("label", ParamType::Str, "column whose values are balanced"),
                ParamSpec::optional(
                    "stratify",
                    ParamType::Str,
                    "balance separately within each value of this column",
                ),
                ParamSpec::with_default(
                    "mode",
                    ParamType::Enum(&["down", "up"]),
                    Value::Str("down".into()),
                    "downsample to the smallest class, or upsample to the largest",
                ),
                ParamSpec::with_default("seed", ParamType::Int, Value::Int(0), "seed of the draws")
                    .min(0.0),
            ],
            resources: Resources::CPU,
        })
    }
}

impl Default for Balance {
    fn default() -> Self {
        Self::new()
    }
}

type Counts = BTreeMap<String, BTreeMap<String, usize>>;

/// stratum -> label -> row indices, in input order.
type Classes = BTreeMap<String, BTreeMap<String, Vec<usize>>>;

/// The rows by stratum and label, and how many rows have a null label and are left out.
fn classes(
    rows: &[Row],
    label: &str,
    stratify: Option<&str>,
) -> Result<(Classes, usize), NodeError> {
    let mut groups = Classes::new();
    let mut unlabelled = 0usize;
    for (i, r) in rows.iter().enumerate() {
        let l = crate::column(r, label, i)?;
        if l.is_null() {
            unlabelled += 1;
            continue;
        }
        let s = match stratify {
            Some(c) => table::as_text(crate::column(r, c, i)?),
            None => String::new(),
        };
        groups
            .entry(s)
            .or_default()
            .entry(table::as_text(l))
            .or_default()
            .push(i);
    }
    Ok((groups, unlabelled))
}

impl Node for Balance {
    fn spec(&self) -> &NodeSpec {
        &self.0
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let input = ctx.input("dataset")?;
        let rows = table::read_dataset(&input.path)
            .map_err(|e| NodeError::caused("Failed to read the input dataset", &e))?;
        let label = ctx.str("label").expect("required").to_string();
        let stratify = ctx.str("stratify").map(str::to_string);
        let up = ctx.str("mode") == Some("up");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(ctx.int("seed").unwrap_or(0) as u64);
        let (groups, unlabelled) = classes(&rows, &label, stratify.as_deref())?;
        let mut before: Counts = BTreeMap::new();
        let mut after: Counts = BTreeMap::new();
        let mut chosen: Vec<usize> = vec![];
        for (s, by_label) in &groups {
            if by_label.len() < 2 {
                ctx.info(format!(
                    "stratum `{s}` has a single label value; kept as is"
                ));
            }
            let target = if up {
                by_label.values().map(Vec::len).max()
            } else {
                by_label.values().map(Vec::len).min()
            }
            .unwrap_or(0);
            for (l, idx) in by_label {
                before
                    .entry(s.clone())
                    .or_default()
                    .insert(l.clone(), idx.len());
                let picked: Vec<usize> = if idx.len() >= target {
                    let mut pos = rand::seq::index::sample(&mut rng, idx.len(), target).into_vec();
                    pos.sort_unstable();
                    pos.into_iter().map(|p| idx[p]).collect()
                } else {
                    let mut v = idx.clone();
                    for _ in idx.len()..target {
                        v.push(idx[rng.random_range(0..idx.len())]);
                    }
                    v
                };
                after
                    .entry(s.clone())
                    .or_default()
                    .insert(l.clone(), picked.len());
                chosen.extend(picked);
            }
        }
        chosen.sort_unstable();
        let out: Vec<Row> = chosen.into_iter().map(|i| rows[i].clone()).collect();
        let path = ctx.output_path("dataset");
        table::write_jsonl(&path, &out)
            .map_err(|e| NodeError::caused(format!("Failed to write `{}`", path.display()), &e))?;
        let flat = |c: &Counts| -> serde_json::Value {
            if stratify.is_none() {
                json!(c.get("").cloned().unwrap_or_default())
            } else {
                json!(c)
            }
        };
        ctx.info(format!(
            "{} rows -> {} rows; counts before {} after {}{}",
            rows.len(),
            out.len(),
            flat(&before),
            flat(&after),
            if unlabelled > 0 {
                format!("; {unlabelled} unlabelled rows dropped")
            } else {
                String::new()
            }
        ));
        if groups.values().all(|by_label| by_label.len() < 2) {
            return Err(NodeError::msg(format!(
                "Every row has the same `{label}` ({})",
                flat(&before)
            ))
            .hint("balancing needs two classes: check the node that wrote the labels (its metrics count them)"));
        }
        ctx.set_meta("dataset", json!({ "rows": out.len(), "label": label, "stratify": stratify, "before": flat(&before), "after": flat(&after), "unlabelled": unlabelled }));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlabelled_rows_are_counted_not_a_class() {
        let rows: Vec<Row> = [json!(1), json!(null), json!(0), json!(1)]
            .into_iter()
            .map(|l| {
                let mut r = Row::new();
                r.insert("label".into(), l);
                r
            })
            .collect();
        let (groups, unlabelled) = classes(&rows, "label", None).unwrap();
        assert_eq!(unlabelled, 1);
        let by_label = &groups[""];
        assert_eq!(by_label.keys().collect::<Vec<_>>(), ["0", "1"]);
        assert_eq!(by_label["1"], vec![0, 3]);
    }
}
