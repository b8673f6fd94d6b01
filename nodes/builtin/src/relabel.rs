//! `relabel`: reshapes rows for classification. `unpivot` turns each row holding several
//! texts (an HH-RLHF pair: `chosen`, `rejected`) into one row per text with a label and the
//! source row's id, so a split made on pairs, before or inside this node, never puts the two
//! halves of a pair in different splits; `map` rewrites a label column's values.

use std::collections::{BTreeMap, HashSet};

use dag_engine::{
    ArtifactKind, Node, NodeError, NodeSpec, ParamSpec, ParamType, PortSpec, Resources, RunContext,
    Value,
};
use rand::SeedableRng;
use serde_json::json;

use dag_table::{self as table, Row};

/// The `relabel` node type.
pub struct Relabel(NodeSpec);

impl Relabel {
    /// The node type with its spec.
    pub fn new() -> Self {
        Relabel(NodeSpec {
            name: "relabel",
            version: 1,
            doc: "Reshapes rows for classification: `unpivot = { rejected = 1, chosen = 0 }` makes one row per named \
                  column (its text in `text_column`, the given label in `label_column`, the source row's index in \
                  `group_column`, other columns kept); `map = { yes = 1, no = 0 }` rewrites `label_column` values; `set = { dataset = \"hh-rlhf\" }` writes a \
                  column into every row. \
                  `held_out_fraction` splits by source row (seeded) before unpivoting, so pairs stay together.",
            inputs: vec![PortSpec::new(
                "dataset",
                ArtifactKind::Dataset,
                "rows to relabel",
            )],
            outputs: vec![
                PortSpec::new("dataset", ArtifactKind::Dataset, "relabelled rows"),
                PortSpec::new(
                    "held_out",
                    ArtifactKind::Dataset,
                    "relabelled rows of the source rows split off by `held_out_fraction` (empty without it)",
                ),
            ],
            params: vec![
                ParamSpec::optional(
                    "unpivot",
                    ParamType::Map(Box::new(ParamType::Int)),
                    "column = label: one output row per column",
                ),
                ParamSpec::optional(
                    "map",
                    ParamType::Map(Box::new(ParamType::Int)),
                    "value = label: rewrites `label_column` (values not listed are an error)",
                ),
                ParamSpec::optional(
                    "set",
                    ParamType::Map(Box::new(ParamType::Str)),
                    "column = text written to every row, e.g. the rows' source dataset for a probe's `group_column`",
                ),
                ParamSpec::with_default(
                    "text_column",
                    ParamType::Str,
                    Value::Str("text".into()),
                    "unpivot: column receiving the text",
                ),
                ParamSpec::with_default(
                    "label_column",
                    ParamType::Str,
                    Value::Str("label".into()),
                    "column holding the label",
                ),
                ParamSpec::with_default(
                    "group_column",
                    ParamType::Str,
                    Value::Str("pair".into()),
                    "unpivot: column receiving the source row's index",
                ),
                ParamSpec::optional(
                    "held_out_fraction",
                    ParamType::Float,
                    "fraction of source rows (pairs) sent to `held_out`",
                )
                .above(0.0)
                .below(1.0),
                ParamSpec::with_default("seed", ParamType::Int, Value::Int(0), "seed of the split")
                    .min(0.0),
            ],
            resources: Resources::CPU,
        })
    }
}

impl Default for Relabel {
    fn default() -> Self {
        Self::new()
    }
}

/// What to do with the rows (the node's params, parsed).
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Columns to unpivot with their labels (in column-name order: params are tables with sorted keys).
    pub unpivot: Vec<(String, i64)>,
    /// Value -> label rewrites of the label column.
    pub map: BTreeMap<String, i64>,
    /// Column receiving unpivoted text.
    pub text_column: String,
    /// Label column.
    pub label_column: String,
    /// Column receiving the source row index.
    pub group_column: String,
    /// Fraction of source rows held out, and the seed.
    pub held_out: Option<(f64, u64)>,
    /// Columns written into every row.
    pub set: Vec<(String, String)>,
}

fn int_map(v: Option<&Value>) -> Vec<(String, i64)> {
    match v {
        Some(Value::Table(m)) => m
            .iter()
            .filter_map(|(k, v)| match v {
                Value::Int(i) => Some((k.clone(), *i)),
                _ => None,
            })
            .collect(),
        _ => vec![],
    }
}

/// Applies `plan` to `rows`: (kept rows, held-out rows).
pub fn relabel(rows: &[Row], plan: &Plan) -> Result<(Vec<Row>, Vec<Row>), NodeError> {
    if plan.unpivot.is_empty() && plan.map.is_empty() && plan.set.is_empty() {
        return Err(NodeError::msg(
            "`relabel` has nothing to do: none of `unpivot`, `map` and `set` is given",
        )
        .hint("add `unpivot = { rejected = 1, chosen = 0 }`, `map = { yes = 1, no = 0 }` or `set = { dataset = \"name\" }`"));
    }
    let held: HashSet<usize> = match plan.held_out {
        Some((frac, seed)) => {
            if !(0.0..=1.0).contains(&frac) {
                return Err(NodeError::msg(format!(
                    "`held_out_fraction = {frac}` is not between 0 and 1"
                )));
            }
            let n = (frac * rows.len() as f64).round() as usize;
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            rand::seq::index::sample(&mut rng, rows.len(), n)
                .into_iter()
                .collect()
        }
        None => HashSet::new(),
    };
    let (mut kept, mut out_held) = (vec![], vec![]);
    for (i, row) in rows.iter().enumerate() {
        let mut produced = vec![];
        if plan.unpivot.is_empty() {
            produced.push(row.clone());
        } else {
            for (col, label) in &plan.unpivot {
                let text = row.get(col).ok_or_else(|| {
                    NodeError::msg(format!("Row {i} has no column `{col}` to unpivot")).hint(
                        format!(
                            "columns are: {}",
                            row.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    )
                })?;
                let mut r = Row::new();
                for (k, v) in row {
                    if !plan.unpivot.iter().any(|(c, _)| c == k) {
                        r.insert(k.clone(), v.clone());
                    }
                }
                r.insert(plan.text_column.clone(), text.clone());
                r.insert(plan.label_column.clone(), json!(label));
                r.insert(plan.group_column.clone(), json!(i));
                r.insert("source_column".into(), json!(col));
                produced.push(r);
            }
        }
        if !plan.map.is_empty() {
            for r in &mut produced {
                let v = r.get(&plan.label_column).ok_or_else(|| {
                    NodeError::msg(format!(
                        "Row {i} has no label column `{}` to map",
                        plan.label_column
                    ))
                    .hint("set `label_column`")
                })?;
                let key = table::as_text(v);
                let mapped = plan.map.get(&key).ok_or_else(|| {
                    NodeError::msg(format!("Row {i}: label value `{key}` is not in `map`")).hint(
                        format!(
                            "`map` lists {}; add the value or filter such rows out first",
                            plan.map
                                .keys()
                                .map(|k| format!("`{k}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?;
                r.insert(plan.label_column.clone(), json!(mapped));
            }
        }
        for r in &mut produced {
            for (col, text) in &plan.set {
                r.insert(col.clone(), json!(text));
            }
        }
        if held.contains(&i) {
            out_held.extend(produced);
        } else {
            kept.extend(produced);
        }
    }
    Ok((kept, out_held))
}

impl Node for Relabel {
    fn spec(&self) -> &NodeSpec {
        &self.0
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let input = ctx.input("dataset")?;
        let rows = table::read_dataset(&input.path)
            .map_err(|e| NodeError::caused("Failed to read the input dataset", &e))?;
        let s = |k: &str| ctx.str(k).unwrap_or_default().to_string();
        let plan = Plan {
            unpivot: int_map(ctx.value("unpivot")),
            map: int_map(ctx.value("map")).into_iter().collect(),
            text_column: s("text_column"),
            label_column: s("label_column"),
            group_column: s("group_column"),
            held_out: ctx
                .float("held_out_fraction")
                .map(|f| (f, ctx.int("seed").unwrap_or(0) as u64)),
            set: match ctx.value("set") {
                Some(Value::Table(m)) => m
                    .iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                    .collect(),
                _ => vec![],
            },
        };
        let (kept, held) = relabel(&rows, &plan)?;
        for (port, out) in [("dataset", &kept), ("held_out", &held)] {
            let path = ctx.output_path(port);
            table::write_jsonl(&path, out).map_err(|e| {
                NodeError::caused(format!("Failed to write `{}`", path.display()), &e)
            })?;
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            for r in out.iter() {
                *counts
                    .entry(
                        r.get(&plan.label_column)
                            .map(table::as_text)
                            .unwrap_or_default(),
                    )
                    .or_default() += 1;
            }
            ctx.set_meta(
                port,
                json!({ "rows": out.len(), "source_rows": rows.len(), "labels": counts }),
            );
        }
        ctx.info(format!(
            "{} rows -> {} + {} held out",
            rows.len(),
            kept.len(),
            held.len()
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize) -> Vec<Row> {
        (0..n)
            .map(|i| {
                serde_json::from_value(json!({ "chosen": format!("good {i}"), "rejected": format!("bad {i}"), "source": "hh" }))
                    .unwrap()
            })
            .collect()
    }

    fn plan() -> Plan {
        Plan {
            unpivot: vec![("rejected".into(), 1), ("chosen".into(), 0)],
            text_column: "text".into(),
            label_column: "label".into(),
            group_column: "pair".into(),
            ..Plan::default()
        }
    }

    #[test]
    fn unpivot_makes_two_labelled_rows_per_pair() {
        let (kept, held) = relabel(&rows(2), &plan()).unwrap();
        assert!(held.is_empty());
        assert_eq!(kept.len(), 4);
        assert_eq!(kept[0]["text"], "bad 0");
        assert_eq!(kept[0]["label"], 1);
        assert_eq!(kept[1]["text"], "good 0");
        assert_eq!(kept[1]["label"], 0);
        assert_eq!(kept[3]["pair"], 1);
        assert_eq!(kept[3]["source"], "hh");
        assert!(kept[0].get("chosen").is_none() && kept[0].get("rejected").is_none());
    }

    #[test]
    fn a_split_never_separates_a_pair() {
        let p = Plan {
            held_out: Some((0.3, 7)),
            ..plan()
        };
        let (kept, held) = relabel(&rows(50), &p).unwrap();
        assert_eq!(held.len(), 30);
        assert_eq!(kept.len() + held.len(), 100);
        let pairs = |rs: &[Row]| {
            rs.iter()
                .map(|r| r["pair"].as_u64().unwrap())
                .collect::<HashSet<_>>()
        };
        assert!(pairs(&kept).is_disjoint(&pairs(&held)));
        // Both halves of every held-out pair are held out.
        for p in pairs(&held) {
            assert_eq!(held.iter().filter(|r| r["pair"] == p).count(), 2);
        }
        // Seeded: the same split again, a different one with another seed.
        assert_eq!(relabel(&rows(50), &p).unwrap().1, held);
        let other = Plan {
            held_out: Some((0.3, 8)),
            ..plan()
        };
        assert_ne!(relabel(&rows(50), &other).unwrap().1, held);
    }

    #[test]
    fn set_writes_a_column_into_every_row_unpivoted_or_not() {
        let set = vec![("dataset".to_string(), "hh-rlhf".to_string())];
        let p = Plan {
            set: set.clone(),
            held_out: Some((0.5, 1)),
            ..plan()
        };
        let (kept, held) = relabel(&rows(4), &p).unwrap();
        assert_eq!(kept.len() + held.len(), 8);
        assert!(kept.iter().chain(&held).all(|r| r["dataset"] == "hh-rlhf"));
        let alone = Plan {
            set,
            ..Plan::default()
        };
        let (kept, _) = relabel(&rows(2), &alone).unwrap();
        assert_eq!(kept[1]["dataset"], "hh-rlhf");
        assert_eq!(kept[1]["chosen"], "good 1", "nothing else changes");
    }

    #[test]
    fn map_rewrites_labels_and_refuses_unknown_values() {
        let rs: Vec<Row> = ["yes", "no", "yes"]
            .iter()
            .map(|v| serde_json::from_value(json!({ "label": v })).unwrap())
            .collect();
        let p = Plan {
            map: [("yes".to_string(), 1), ("no".to_string(), 0)].into(),
            label_column: "label".into(),
            ..Plan::default()
        };
        let (kept, _) = relabel(&rs, &p).unwrap();
        assert_eq!(
            kept.iter()
                .map(|r| r["label"].as_i64().unwrap())
                .collect::<Vec<_>>(),
            [1, 0, 1]
        );
        let mut bad = rs.clone();
        bad[1].insert("label".into(), json!("maybe"));
        let err = relabel(&bad, &p).unwrap_err();
        assert!(
            err.message.contains("`maybe`")
                && err
                    .hint
                    .as_deref()
                    .is_some_and(|h| h.contains("`no`, `yes`")),
            "{err:?}"
        );
    }

    #[test]
    fn missing_columns_and_empty_plans_are_errors() {
        let mut p = plan();
        p.unpivot.push(("preferred".into(), 1));
        let err = relabel(&rows(1), &p).unwrap_err();
        assert!(
            err.message.contains("no column `preferred`")
                && err.hint.as_deref().is_some_and(|h| h.contains("chosen")),
            "{err:?}"
        );
        let err = relabel(&rows(1), &Plan::default()).unwrap_err().to_string();
        assert!(err.contains("nothing to do"), "{err}");
        let err = relabel(
            &rows(4),
            &Plan {
                held_out: Some((1.5, 0)),
                ..plan()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not between 0 and 1"), "{err}");
    }
}
