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
        let mut out: Vec<Row> = Vec::new();
        let mut counts = serde_json::Map::new();
        for (input, name) in inputs.iter().zip(&sources) {
            let before = out.len() as u64;
            let rows = table::read_dataset(&input.path)
                .map_err(|e| NodeError::caused(format!("Failed to read `{}`", input.label), &e))?;
            for (i, mut row) in rows.into_iter().enumerate() {
                if !named {
                    out.push(row);
                    continue;
                }
                if row.contains_key(&column) {
                    return Err(NodeError::msg(format!(
                        "Row {i} of `{}` already has a `{column}` column",
                        input.label
                    ))
                    .hint("set `source_column` to a name the rows do not use"));
                }
                row.insert(column.clone(), json!(name));
                out.push(row);
            }
            // Two inputs may share a name: their rows are one source.
            let n = counts.get(name).and_then(|v| v.as_u64()).unwrap_or(0);
            counts.insert(name.clone(), json!(n + out.len() as u64 - before));
        }
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
