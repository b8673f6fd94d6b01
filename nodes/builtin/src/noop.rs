//! `noop`: records the digests of its inputs and a label. Used to benchmark the
//! engine on large generated graphs and to wire placeholders while building a graph.

use dag_engine::{
    ArtifactKind, Node, NodeError, NodeSpec, ParamSpec, ParamType, PortSpec, Resources, RunContext,
    Value,
};

/// The `noop` node type.
pub struct Noop(NodeSpec);

impl Noop {
    /// The node type with its spec.
    pub fn new() -> Self {
        Noop(NodeSpec {
            name: "noop",
            version: 1,
            doc: "Writes its `label` and the digests of its inputs: a node that costs nothing, for engine benchmarks and graph sketches.",
            inputs: vec![
                PortSpec::new("in", ArtifactKind::Dataset, "anything")
                    .many()
                    .optional(),
            ],
            outputs: vec![PortSpec::new("out", ArtifactKind::Dataset, "one JSON row")],
            params: vec![
                ParamSpec::with_default(
                    "label",
                    ParamType::Str,
                    Value::Str(String::new()),
                    "written to the output",
                ),
                ParamSpec::optional(
                    "hold_marker",
                    ParamType::Str,
                    "for tests that interrupt a run at a known point: once the output is written, create this file and wait until the run is cancelled",
                ),
            ],
            resources: Resources::CPU,
        })
    }
}

impl Default for Noop {
    fn default() -> Self {
        Self::new()
    }
}

impl Node for Noop {
    fn spec(&self) -> &NodeSpec {
        &self.0
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let inputs: Vec<String> = ctx.inputs("in").iter().map(|i| i.digest.to_hex()).collect();
        let row = serde_json::json!({ "label": ctx.str("label"), "inputs": inputs });
        std::fs::write(ctx.output_path("out"), format!("{row}\n"))
            .map_err(|e| NodeError::caused("Failed to write the output", &e))?;
        if let Some(marker) = ctx.str("hold_marker").filter(|m| !m.is_empty()) {
            std::fs::write(marker, b"")
                .map_err(|e| NodeError::caused(format!("Failed to create `{marker}`"), &e))?;
            // A test kills the process here or cancels the run; nothing else ends the wait.
            loop {
                ctx.check_cancelled()?;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        Ok(())
    }
}
