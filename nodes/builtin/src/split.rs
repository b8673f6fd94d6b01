//! `split`: a seeded train / validation / test split of a node's rows, keeping groups whole
//! (the two prompts of a minimally different pair, the halves of a dialogue pair) and each
//! split's class mix close to the whole's.

use std::collections::BTreeMap;

use dag_engine::{
    ArtifactKind, Node, NodeError, NodeSpec, ParamError, ParamSpec, ParamType, PortSpec, Resources,
    RunContext, Value,
};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde_json::json;

use dag_table::{self as table, Row};

/// The `split` node type.
pub struct Split(NodeSpec);

const PORTS: [&str; 3] = ["train", "validation", "test"];

impl Split {
    /// The node type with its spec.
    pub fn new() -> Self {
        let fraction = |name, doc| {
            ParamSpec::with_default(name, ParamType::Float, Value::Float(0.2), doc)
                .min(0.0)
                .below(1.0)
        };
        Split(NodeSpec {
            name: "split",
            version: 1,
            doc: "Splits rows into train, validation and test (seeded). With `group`, rows sharing that column's value \
                  go to one split together; with `stratify`, groups are split separately within each value of that \
                  column (a group's stratum is the set of its rows' values), so every split keeps the class mix. \
                  Rows keep their input order within a split.",
            inputs: vec![PortSpec::new(
                "dataset",
                ArtifactKind::Dataset,
                "rows to split",
            )],
            outputs: vec![
                PortSpec::new("train", ArtifactKind::Dataset, "the rest of the rows"),
                PortSpec::new(
                    "validation",
                    ArtifactKind::Dataset,
                    "a `validation` fraction of the groups",
                ),
                PortSpec::new(
                    "test",
                    ArtifactKind::Dataset,
                    "a `test` fraction of the groups",
                ),
            ],
            params: vec![
                fraction(
                    "validation",
                    "fraction of groups (or rows) sent to `validation`",
                ),
                fraction("test", "fraction of groups (or rows) sent to `test`"),
                ParamSpec::optional(
                    "group",
                    ParamType::Str,
                    "column whose rows sharing a value stay in one split",
                ),
                ParamSpec::optional(
                    "stratify",
                    ParamType::Str,
                    "column (the label) whose mix each split keeps",
                ),
                ParamSpec::with_default("seed", ParamType::Int, Value::Int(0), "seed of the split")
                    .min(0.0),
            ],
            resources: Resources::CPU,
        })
    }
}

impl Default for Split {
    fn default() -> Self {
        Self::new()
    }
}

/// What a split needs besides the rows.
struct Plan<'a> {
    validation: f64,
    test: f64,
    group: Option<&'a str>,
    stratify: Option<&'a str>,
    seed: u64,
}

/// The split each row goes to (0 train, 1 validation, 2 test).
fn assign(rows: &[Row], plan: &Plan<'_>) -> Result<Vec<usize>, NodeError> {
    // Groups in order of first appearance, so the draw does not depend on how values sort.
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut by_value: BTreeMap<String, usize> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        match plan.group {
            Some(col) => {
                let v = table::as_text(crate::column(r, col, i)?);
                let g = *by_value.entry(v).or_insert_with(|| {
                    groups.push(vec![]);
                    groups.len() - 1
                });
                groups[g].push(i);
            }
            None => groups.push(vec![i]),
        }
    }
    let mut strata: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (g, members) in groups.iter().enumerate() {
        let stratum = match plan.stratify {
            Some(col) => {
                let mut values = members
                    .iter()
                    .map(|&i| crate::column(&rows[i], col, i).map(table::as_text))
                    .collect::<Result<Vec<_>, _>>()?;
                values.sort_unstable();
                values.dedup();
                values.join("+")
            }
            None => String::new(),
        };
        strata.entry(stratum).or_default().push(g);
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(plan.seed);
    let mut out = vec![0; rows.len()];
    for members in strata.values_mut() {
        members.shuffle(&mut rng);
        let n = members.len() as f64;
        let n_test = (plan.test * n).round() as usize;
        let n_val = ((plan.validation * n).round() as usize).min(members.len() - n_test);
        for (k, &g) in members.iter().enumerate() {
            let split = if k < n_test {
                2
            } else if k < n_test + n_val {
                1
            } else {
                0
            };
            for &i in &groups[g] {
                out[i] = split;
            }
        }
    }
    Ok(out)
}

impl Node for Split {
    fn spec(&self) -> &NodeSpec {
        &self.0
    }

    fn check_params(&self, params: &BTreeMap<String, Value>) -> Result<(), ParamError> {
        let f = |k| match params.get(k) {
            Some(Value::Float(f)) => *f,
            Some(Value::Int(i)) => *i as f64,
            _ => 0.2,
        };
        if f("validation") + f("test") >= 1.0 {
            return Err(ParamError::new(
                "test",
                format!(
                    "`validation` ({}) and `test` ({}) leave no rows to train on",
                    f("validation"),
                    f("test")
                ),
                "make their sum less than 1",
            ));
        }
        Ok(())
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let rows = table::read_dataset(&ctx.input("dataset")?.path)
            .map_err(|e| NodeError::caused("Failed to read the rows", &e))?;
        let plan = Plan {
            validation: ctx.float("validation").unwrap_or(0.2),
            test: ctx.float("test").unwrap_or(0.2),
            group: ctx.str("group"),
            stratify: ctx.str("stratify"),
            seed: ctx.int("seed").unwrap_or(0) as u64,
        };
        let assigned = assign(&rows, &plan)?;
        let stratify = plan.stratify.map(str::to_string);
        let mut metas = Vec::new();
        for (s, port) in PORTS.iter().enumerate() {
            let part: Vec<Row> = rows
                .iter()
                .zip(&assigned)
                .filter(|(_, a)| **a == s)
                .map(|(r, _)| r.clone())
                .collect();
            let path = ctx.output_path(port);
            table::write_jsonl(&path, &part).map_err(|e| {
                NodeError::caused(format!("Failed to write `{}`", path.display()), &e)
            })?;
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            if let Some(col) = &stratify {
                for r in &part {
                    *counts.entry(table::as_text(&r[col])).or_default() += 1;
                }
            }
            metas.push((
                port,
                json!({ "rows": part.len(), "counts": stratify.as_ref().map(|_| counts) }),
            ));
        }
        let summary: Vec<String> = metas
            .iter()
            .map(|(p, m)| format!("{p} {}", m["rows"]))
            .collect();
        ctx.info(format!("{} rows -> {}", rows.len(), summary.join(", ")));
        for (port, meta) in metas {
            ctx.set_meta(port, meta);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize) -> Vec<Row> {
        (0..n)
            .map(|i| {
                let mut r = Row::new();
                r.insert("pair".into(), json!(i / 2));
                r.insert("label".into(), json!(i % 2));
                r.insert(
                    "kind".into(),
                    json!(if i < n / 4 { "rare" } else { "common" }),
                );
                r
            })
            .collect()
    }

    fn plan(
        group: Option<&'static str>,
        stratify: Option<&'static str>,
        seed: u64,
    ) -> Plan<'static> {
        Plan {
            validation: 0.25,
            test: 0.25,
            group,
            stratify,
            seed,
        }
    }

    #[test]
    fn groups_stay_whole_and_fractions_hold() {
        let r = rows(80);
        let a = assign(&r, &plan(Some("pair"), Some("label"), 1)).unwrap();
        for pair in a.chunks(2) {
            assert_eq!(pair[0], pair[1], "a pair is never split");
        }
        let count = |s| a.iter().filter(|&&x| x == s).count();
        assert_eq!((count(0), count(1), count(2)), (40, 20, 20));
        assert_eq!(
            a,
            assign(&r, &plan(Some("pair"), Some("label"), 1)).unwrap()
        );
        assert_ne!(
            a,
            assign(&r, &plan(Some("pair"), Some("label"), 2)).unwrap()
        );
    }

    #[test]
    fn strata_keep_the_mix() {
        let r = rows(80);
        let a = assign(&r, &plan(None, Some("kind"), 0)).unwrap();
        for s in 0..3 {
            let (rare, all) = a
                .iter()
                .zip(&r)
                .filter(|(x, _)| **x == s)
                .fold((0, 0), |(k, n), (_, row)| {
                    (k + usize::from(row["kind"] == "rare"), n + 1)
                });
            assert_eq!(rare * 4, all, "split {s}: {rare} rare of {all}");
        }
        let mut bad = rows(4);
        bad[3].shift_remove("kind");
        let e = assign(&bad, &plan(None, Some("kind"), 0)).unwrap_err();
        assert!(
            format!("{e:?}").contains("Row 3 has no column `kind`"),
            "{e:?}"
        );
    }
}
