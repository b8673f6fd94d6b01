//! `combinations`: draws combinations of factor values, one row each, for a `generate` node
//! to turn into synthetic prompts. The Models Under Pressure study writes its training data
//! this way: topic x role of the user x impact factor (`situation_factors.json`) and prompt
//! style x tone x language x length (`prompt_variations.json`), each drawn combination asked
//! for once as a high-stakes and once as a low-stakes situation (`cross`), so the two
//! classes differ in stakes and in nothing the factors control.

use std::collections::BTreeMap;

use dag_engine::{
    ArtifactKind, Node, NodeError, NodeSpec, ParamError, ParamSpec, ParamType, PortSpec, Resources,
    RunContext, Value,
};
use rand::SeedableRng;
use serde_json::{Value as Json, json};

use dag_table::{self as table, Row};

/// The `combinations` node type.
pub struct Combinations(NodeSpec);

impl Combinations {
    /// The node type with its spec.
    pub fn new() -> Self {
        Combinations(NodeSpec {
            name: "combinations",
            version: 1,
            doc: "Draws `n` distinct combinations of factor values (seeded, without replacement) from JSON files of \
                  factors: `{\"topic\": [\"Finance\", ...]}` (a list of values) or `{\"tone\": {\"angry\": \"Write angrily.\"}}` \
                  (value = detail, written to `<factor>_detail`). Each combination is one row with a column per factor \
                  and its number in `combination`; `cross` factors are not drawn but crossed with every drawn combination, \
                  so `cross = { stakes = [\"high\", \"low\"] }` writes minimally different pairs.",
            inputs: vec![],
            outputs: vec![PortSpec::new(
                "dataset",
                ArtifactKind::Dataset,
                "one row per combination (times each `cross` value): `combination`, the factors, their `_detail`s",
            )],
            params: vec![
                ParamSpec::required(
                    "factors",
                    ParamType::Path,
                    "JSON object of factors: name -> list of values, or name -> {value: detail}",
                ),
                ParamSpec::optional(
                    "variations",
                    ParamType::Path,
                    "a second JSON file of factors in the same format (the study's prompt variations)",
                ),
                ParamSpec::optional(
                    "select",
                    ParamType::List(Box::new(ParamType::Str)),
                    "the factors to draw, in this column order (default: every factor, in file order)",
                ),
                ParamSpec::required(
                    "n",
                    ParamType::Int,
                    "distinct combinations to draw (at most the product of the factors' sizes)",
                )
                .min(1.0),
                ParamSpec::optional(
                    "cross",
                    ParamType::Map(Box::new(ParamType::List(Box::new(ParamType::Str)))),
                    "factors written with every value for each drawn combination, e.g. `{ stakes = [\"high\", \"low\"] }`",
                ),
                ParamSpec::with_default("seed", ParamType::Int, Value::Int(0), "seed of the draw")
                    .min(0.0),
            ],
            resources: Resources::CPU,
        })
    }
}

impl Default for Combinations {
    fn default() -> Self {
        Self::new()
    }
}

/// One factor: its name and values, each with an optional detail.
#[derive(Debug, Clone, PartialEq)]
struct Factor {
    name: String,
    values: Vec<(String, Option<String>)>,
}

/// Reads a factors file: a JSON object whose every member is a non-empty list of strings or
/// an object of strings. Anything else is an error naming the file and the factor.
fn read_factors(path: &str) -> Result<Vec<Factor>, NodeError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| NodeError::caused(format!("Failed to read the factors file `{path}`"), &e))?;
    parse_factors(&text).map_err(|why| {
        NodeError::msg(format!("`{path}` is not a factors file: {why}")).hint(
            "write one JSON object: `{\"topic\": [\"Finance\", ...], \"tone\": {\"angry\": \"Write angrily.\"}}`",
        )
    })
}

fn parse_factors(text: &str) -> Result<Vec<Factor>, String> {
    // The workspace's serde_json keeps members in file order (`preserve_order`), so the
    // columns and the numbering of combinations follow the file.
    let v: Json = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    let mut out = Vec::new();
    for (name, members) in obj {
        let values = match members {
            Json::Array(items) => items
                .iter()
                .map(|i| match i {
                    Json::String(s) => Ok((s.clone(), None)),
                    other => Err(format!(
                        "factor `{name}` has a value {other} that is not text"
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
            Json::Object(items) => items
                .iter()
                .map(|(k, d)| match d {
                    Json::String(d) => Ok((k.clone(), Some(d.clone()))),
                    other => Err(format!(
                        "factor `{name}`: the detail of `{k}` is {other}, not text"
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
            other => {
                return Err(format!(
                    "factor `{name}` is {other}, not a list or an object"
                ));
            }
        };
        if values.is_empty() {
            return Err(format!("factor `{name}` has no values"));
        }
        out.push(Factor {
            name: name.clone(),
            values,
        });
    }
    Ok(out)
}

/// The factors a node draws from, in column order: both files, narrowed by `select`.
fn chosen_factors(
    files: Vec<Vec<Factor>>,
    select: Option<&[Value]>,
) -> Result<Vec<Factor>, NodeError> {
    let mut all: Vec<Factor> = Vec::new();
    for f in files.into_iter().flatten() {
        if all.iter().any(|a| a.name == f.name) {
            return Err(NodeError::msg(format!(
                "Factor `{}` is defined in both `factors` and `variations`",
                f.name
            ))
            .hint("rename one of them"));
        }
        all.push(f);
    }
    let Some(select) = select else {
        return Ok(all);
    };
    select
        .iter()
        .map(|name| {
            let name = name.as_str().unwrap_or_default();
            all.iter().find(|f| f.name == name).cloned().ok_or_else(|| {
                let have: Vec<String> = all.iter().map(|f| format!("`{}`", f.name)).collect();
                NodeError::msg(format!(
                    "`select` names `{name}`, which no factors file defines"
                ))
                .hint(format!("the factors are {}", have.join(", ")))
            })
        })
        .collect()
}

/// Combination `index` of the product, the first factor most significant, so combinations
/// in index order are in the files' lexicographic order.
fn decode(factors: &[Factor], mut index: u64) -> Vec<usize> {
    let mut picks = vec![0; factors.len()];
    for (i, f) in factors.iter().enumerate().rev() {
        let size = f.values.len() as u64;
        picks[i] = (index % size) as usize;
        index /= size;
    }
    picks
}

/// Draws `n` distinct combinations and writes their rows, each crossed with every
/// combination of the `cross` values (in the order given, the first varying slowest).
fn draw(
    factors: &[Factor],
    cross: &[(String, Vec<String>)],
    n: u64,
    seed: u64,
) -> Result<Vec<Row>, NodeError> {
    let size = factors
        .iter()
        .try_fold(1u64, |acc, f| acc.checked_mul(f.values.len() as u64));
    let size = match size {
        Some(s) if s <= usize::MAX as u64 => s,
        _ => {
            return Err(NodeError::msg(
                "The factors have more combinations than this machine can number",
            )
            .hint("`select` fewer factors"));
        }
    };
    if n > size {
        let sizes: Vec<String> = factors
            .iter()
            .map(|f| format!("{} {}", f.values.len(), f.name))
            .collect();
        return Err(NodeError::msg(format!(
            "`n = {n}` but the factors have only {size} combinations ({})",
            sizes.join(" x ")
        ))
        .hint(format!("set `n` to at most {size}, or add factors")));
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut drawn: Vec<u64> = rand::seq::index::sample(&mut rng, size as usize, n as usize)
        .into_iter()
        .map(|i| i as u64)
        .collect();
    drawn.sort_unstable();
    let crossed: u64 = cross.iter().map(|(_, v)| v.len() as u64).product();
    let mut rows = Vec::new();
    for (number, &index) in drawn.iter().enumerate() {
        let mut base = Row::new();
        base.insert("combination".into(), json!(number));
        for (f, &pick) in factors.iter().zip(&decode(factors, index)) {
            let (value, detail) = &f.values[pick];
            base.insert(f.name.clone(), json!(value));
            if let Some(d) = detail {
                base.insert(format!("{}_detail", f.name), json!(d));
            }
        }
        for c in 0..crossed {
            let mut picks = vec![0; cross.len()];
            let mut rest = c;
            for (i, (_, values)) in cross.iter().enumerate().rev() {
                picks[i] = (rest % values.len() as u64) as usize;
                rest /= values.len() as u64;
            }
            let mut row = base.clone();
            for ((name, values), pick) in cross.iter().zip(picks) {
                row.insert(name.clone(), json!(values[pick]));
            }
            rows.push(row);
        }
    }
    Ok(rows)
}

fn cross_param(params: &BTreeMap<String, Value>) -> Vec<(String, Vec<String>)> {
    match params.get("cross") {
        Some(Value::Table(t)) => t
            .iter()
            .map(|(k, v)| {
                let values = match v {
                    Value::List(l) => l
                        .iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect(),
                    _ => vec![],
                };
                (k.clone(), values)
            })
            .collect(),
        _ => vec![],
    }
}

impl Node for Combinations {
    fn spec(&self) -> &NodeSpec {
        &self.0
    }

    fn check_params(&self, params: &BTreeMap<String, Value>) -> Result<(), ParamError> {
        for (name, values) in cross_param(params) {
            let mut unique = values.clone();
            unique.sort_unstable();
            unique.dedup();
            if values.is_empty() || unique.len() != values.len() {
                return Err(ParamError::new(
                    "cross",
                    format!("`{name}` needs at least one value, each once"),
                    "e.g. `cross = { stakes = [\"high-stakes\", \"low-stakes\"] }`",
                ));
            }
            if name == "combination" || name.ends_with("_detail") {
                return Err(ParamError::new(
                    "cross",
                    format!("`{name}` is a name the node writes itself"),
                    "choose another name",
                ));
            }
        }
        Ok(())
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let mut files = vec![read_factors(ctx.str("factors").expect("required"))?];
        if let Some(v) = ctx.str("variations") {
            files.push(read_factors(v)?);
        }
        let select = match ctx.value("select") {
            Some(Value::List(l)) => Some(l.as_slice()),
            _ => None,
        };
        let factors = chosen_factors(files, select)?;
        let cross = cross_param(ctx.params());
        for (name, _) in &cross {
            if factors.iter().any(|f| &f.name == name) {
                return Err(NodeError::msg(format!(
                    "`cross` names `{name}`, which is also a drawn factor"
                ))
                .hint(format!(
                    "leave `{name}` out of `select`, or rename the cross factor"
                )));
            }
        }
        let n = ctx.int("n").expect("required") as u64;
        let rows = draw(&factors, &cross, n, ctx.int("seed").unwrap_or(0) as u64)?;
        let path = ctx.output_path("dataset");
        table::write_jsonl(&path, &rows)
            .map_err(|e| NodeError::caused(format!("Failed to write `{}`", path.display()), &e))?;
        let sizes: serde_json::Map<String, Json> = factors
            .iter()
            .map(|f| (f.name.clone(), json!(f.values.len())))
            .collect();
        ctx.set_meta(
            "dataset",
            json!({ "rows": rows.len(), "combinations": n, "factors": sizes, "cross": cross.iter().map(|(k, _)| k).collect::<Vec<_>>() }),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn factors() -> Vec<Factor> {
        parse_factors(
            r#"{"topic": ["Finance", "Pets", "Law"], "tone": {"angry": "Write angrily.", "casual": "Be casual."}}"#,
        )
        .unwrap()
    }

    #[test]
    fn files_keep_their_order_and_details() {
        let f = factors();
        assert_eq!(f[0].name, "topic");
        assert_eq!(f[0].values[2], ("Law".into(), None));
        assert_eq!(f[1].name, "tone");
        assert_eq!(
            f[1].values[0],
            ("angry".into(), Some("Write angrily.".into()))
        );
        for (bad, why) in [
            ("[1]", "not a JSON object"),
            (r#"{"a": []}"#, "`a` has no values"),
            (r#"{"a": [1]}"#, "not text"),
            (r#"{"a": {"x": 2}}"#, "the detail of `x`"),
            (r#"{"a": "x"}"#, "not a list or an object"),
        ] {
            let e = parse_factors(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn the_whole_product_is_every_combination_once_in_order() {
        let f = factors();
        let rows = draw(&f, &[], 6, 3).unwrap();
        let got: Vec<(String, String)> = rows
            .iter()
            .map(|r| {
                (
                    r["topic"].as_str().unwrap().into(),
                    r["tone"].as_str().unwrap().into(),
                )
            })
            .collect();
        let mut want = vec![];
        for t in ["Finance", "Pets", "Law"] {
            for tone in ["angry", "casual"] {
                want.push((t.to_string(), tone.to_string()));
            }
        }
        assert_eq!(got, want);
        assert_eq!(rows[1]["tone_detail"], "Be casual.");
        assert_eq!(rows[5]["combination"], 5);
        let e = draw(&f, &[], 7, 0).unwrap_err().to_string();
        assert!(e.contains("only 6 combinations (3 topic x 2 tone)"), "{e}");
    }

    #[test]
    fn draws_are_distinct_seeded_and_crossed_in_pairs() {
        let f = factors();
        let cross = vec![(
            "stakes".to_string(),
            vec!["high".to_string(), "low".to_string()],
        )];
        let a = draw(&f, &cross, 4, 7).unwrap();
        assert_eq!(
            a,
            draw(&f, &cross, 4, 7).unwrap(),
            "the same seed, the same rows"
        );
        assert_ne!(
            a,
            draw(&f, &cross, 4, 8).unwrap(),
            "another seed draws other combinations (4 of 6: 15 ways)"
        );
        assert_eq!(a.len(), 8);
        let mut seen = std::collections::HashSet::new();
        for pair in a.chunks(2) {
            assert_eq!(pair[0]["stakes"], "high");
            assert_eq!(pair[1]["stakes"], "low");
            let strip = |r: &Row| {
                let mut r = r.clone();
                r.shift_remove("stakes");
                r
            };
            assert_eq!(
                strip(&pair[0]),
                strip(&pair[1]),
                "a pair differs in stakes only"
            );
            assert!(seen.insert((pair[0]["topic"].clone(), pair[0]["tone"].clone())));
            assert_eq!(
                pair[0].keys().next_back().map(String::as_str),
                Some("stakes"),
                "the cross column comes last"
            );
        }
    }

    #[test]
    fn select_narrows_and_orders_and_names_unknown_factors() {
        let sel = [Value::Str("tone".into()), Value::Str("topic".into())];
        let f = chosen_factors(vec![factors()], Some(&sel)).unwrap();
        assert_eq!(f[0].name, "tone");
        let bad = [Value::Str("colour".into())];
        let e = chosen_factors(vec![factors()], Some(&bad)).unwrap_err();
        assert!(format!("{e:?}").contains("`topic`, `tone`"), "{e:?}");
        let e = chosen_factors(vec![factors(), factors()], None).unwrap_err();
        assert!(format!("{e:?}").contains("both"), "{e:?}");
    }
}
