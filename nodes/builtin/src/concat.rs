//! `concat`: stacks the rows of several datasets, each row tagged with the name of the
//! dataset it came from, so one test split can hold an in-distribution set and an
//! out-of-distribution one and every metric downstream can be broken down by source
//! (`group_column` of the probe nodes).

use dag_engine::{
    ArtifactKind, Node, NodeError, NodeSpec, ParamSpec, ParamType, PortSpec, Resources, RunContext,
    Value,
};
use serde_json::json;

use dag_table::{self as table, Row};

/// The `concat` node type.
pub struct Concat(NodeSpec);

impl Concat {
    /// The node type with its spec.
    pub fn new() -> Self {
        Concat(NodeSpec {
            name: "concat",
            version: 1,
            doc: "Stacks the rows of `datasets` in the order they are listed; with `sources` (one name per input, \
                  in the same order), writes each row's input name into `source_column`. The names are params, not the \
                  producers' node names, so renaming a node upstream changes nothing here.",
            inputs: vec![
                PortSpec::new("datasets", ArtifactKind::Dataset, "the datasets, in order").many(),
            ],
            outputs: vec![PortSpec::new(
                "dataset",
                ArtifactKind::Dataset,
                "every input row, in order, with `source_column`",
            )],
            params: vec![
                ParamSpec::optional(
                    "sources",
                    ParamType::List(Box::new(ParamType::Str)),
                    "a name for each input, in the order of `datasets` (absent: rows are stacked as they are)",
                ),
                ParamSpec::with_default(
                    "source_column",
                    ParamType::Str,
                    Value::Str("source".into()),
                    "the column receiving each row's source name",
                ),
            ],
            resources: Resources::CPU,
        })
    }
}

impl Default for Concat {
    fn default() -> Self {
        Self::new()
    }
}

/// The rows of each (label, rows) input in order, each tagged with its name from `sources`
/// in `column` when a column is given; with the row count per name.
fn stack(
    inputs: Vec<(&str, Vec<Row>)>,
    sources: &[String],
    column: Option<&str>,
) -> Result<(Vec<Row>, serde_json::Map<String, serde_json::Value>), NodeError> {
    let mut out: Vec<Row> = Vec::new();
    let mut counts = serde_json::Map::new();
    for ((label, rows), name) in inputs.into_iter().zip(sources) {
        let before = out.len() as u64;
        for (i, mut row) in rows.into_iter().enumerate() {
            if let Some(column) = column {
                if row.contains_key(column) {
                    return Err(NodeError::msg(format!(
                        "Row {i} of `{label}` already has a `{column}` column"
                    ))
                    .hint("set `source_column` to a name the rows do not use"));
                }
                row.insert(column.to_string(), json!(name));
            }
            out.push(row);
        }
        // Two inputs may share a name: their rows are one source.
        let n = counts.get(name).and_then(|v| v.as_u64()).unwrap_or(0);
        counts.insert(name.clone(), json!(n + out.len() as u64 - before));
    }
    Ok((out, counts))
}

impl Node for Concat {
    fn spec(&self) -> &NodeSpec {
        &self.0
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let column = ctx.str("source_column").unwrap_or("source").to_string();
        let inputs = ctx.inputs("datasets");
        // Without `sources` rows are stacked as they are; counts go by input label.
        let named = ctx.value("sources").is_some();
        let sources: Vec<String> = match ctx.value("sources") {
            Some(Value::List(l)) => l
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            _ => inputs.iter().map(|i| i.label.clone()).collect(),
        };
        if sources.len() != inputs.len() {
            let labels: Vec<&str> = inputs.iter().map(|i| i.label.as_str()).collect();
            return Err(NodeError::msg(format!(
                "`sources` has {} names for {} datasets ({})",
                sources.len(),
                inputs.len(),
                labels.join(", ")
            ))
            .hint("give one name per input, in the order `datasets` lists them"));
        }
        let mut read = Vec::new();
        for input in inputs {
            let rows = table::read_dataset(&input.path)
                .map_err(|e| NodeError::caused(format!("Failed to read `{}`", input.label), &e))?;
            read.push((input.label.as_str(), rows));
        }
        let (out, counts) = stack(read, &sources, named.then_some(column.as_str()))?;
        let path = ctx.output_path("dataset");
        table::write_jsonl(&path, &out)
            .map_err(|e| NodeError::caused(format!("Failed to write `{}`", path.display()), &e))?;
        ctx.set_meta(
            "dataset",
            json!({ "rows": out.len(), "source_column": named.then_some(&column), "sources": counts }),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(texts: &[&str]) -> Vec<Row> {
        texts
            .iter()
            .map(|t| {
                let mut r = Row::new();
                r.insert("text".into(), json!(t));
                r
            })
            .collect()
    }

    #[test]
    fn rows_stack_in_order_named_or_not() {
        let names = vec!["synthetic".to_string(), "hh".to_string()];
        let inputs = || {
            vec![
                ("a.dataset", rows(&["x", "y"])),
                ("b.dataset", rows(&["z"])),
            ]
        };
        let (out, counts) = stack(inputs(), &names, Some("dataset")).unwrap();
        let got: Vec<(&str, &str)> = out
            .iter()
            .map(|r| (r["text"].as_str().unwrap(), r["dataset"].as_str().unwrap()))
            .collect();
        assert_eq!(got, [("x", "synthetic"), ("y", "synthetic"), ("z", "hh")]);
        assert_eq!(counts["synthetic"], 2);
        let (plain, _) = stack(inputs(), &names, None).unwrap();
        assert!(plain.iter().all(|r| !r.contains_key("dataset")));
        let e = stack(inputs(), &names, Some("text")).unwrap_err();
        assert!(
            format!("{e:?}").contains("Row 0 of `a.dataset` already has a `text` column"),
            "{e:?}"
        );
    }
}
