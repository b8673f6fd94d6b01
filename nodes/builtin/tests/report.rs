//! `probe-report` through the engine: a matrix node and a single node fanned into its many-port
//! arrive with the labels the report parses (`probe[layer=6,probe=lda].scores`), in input
//! order. The scores come from a test-only node, since no node that runs without torch writes
//! scores.

use std::sync::Arc;

use dag_engine::{
    ArtifactKind, Graph, LoadOptions, Node, NodeError, NodeSpec, ParamSpec, ParamType, PortSpec,
    Resources, RunContext, RunOptions, Runner, Value,
};
use dag_store::Store;

/// `fake-scores`: planted scores for `validation` and `test` (only `test` when `test_only`),
/// better separated at higher `layer`.
struct FakeScores(NodeSpec);

impl Node for FakeScores {
    fn spec(&self) -> &NodeSpec {
        &self.0
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let shift = 0.01 * ctx.int("layer").unwrap_or(0) as f64;
        let splits: &[&str] = if ctx.bool("test_only").unwrap_or(false) {
            &["test"]
        } else {
            &["validation", "test"]
        };
        let mut out = String::new();
        for split in splits {
            for i in 0..20 {
                let y = i % 2;
                let noise = ((i * 37) % 101) as f64 / 101.0 - 0.5;
                let s = (0.5 + (y as f64 - 0.5) * shift + 0.5 * noise).clamp(0.0, 1.0);
                out.push_str(&format!(
                    "{{\"split\": \"{split}\", \"row\": {i}, \"label\": {y}, \"score\": {s}}}\n"
                ));
            }
        }
        std::fs::write(ctx.output_path("scores"), out)
            .map_err(|e| NodeError::caused("Failed to write scores", &e))
    }
}

fn registry() -> dag_engine::Registry {
    let mut r = dag_nodes::registry();
    r.register(FakeScores(NodeSpec {
        name: "fake-scores",
        version: 1,
        doc: "planted scores",
        inputs: vec![],
        outputs: vec![PortSpec::new("scores", ArtifactKind::Scores, "scores")],
        params: vec![
            ParamSpec::with_default("layer", ParamType::Int, Value::Int(0), "signal"),
            ParamSpec::with_default("probe", ParamType::Str, Value::Str(String::new()), "name"),
            ParamSpec::with_default("test_only", ParamType::Bool, Value::Bool(false), "splits"),
        ],
        resources: Resources::CPU,
    }));
    r
}

const GRAPH: &str = r#"
[node.probe]
type = "fake-scores"
matrix = { layer = [6, 24], probe = ["lda", "attention"] }

[node.prompted]
type = "fake-scores"
test_only = true

[node.report]
type = "probe-report"
inputs = { scores = ["probe.scores", "prompted.scores"] }
bootstrap = 50
"#;

#[test]
fn a_matrix_node_and_a_baseline_fan_into_one_report() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join(".dag")).unwrap());
    let path = dir.path().join("g.toml");
    std::fs::write(&path, GRAPH).unwrap();
    let graph = Graph::load(&path, &registry(), &LoadOptions::default()).unwrap();
    let runner = Runner::new(store.clone(), Arc::new(graph), RunOptions::default());
    let summary = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(runner.run(&|_: &dag_engine::Event| {}))
        .unwrap();
    let report = summary
        .records
        .iter()
        .find(|r| r.instance == "report")
        .unwrap();
    let (port, digest) = &report.outputs[0];
    assert_eq!(port, "report");
    let out = store.path(digest).unwrap();
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    let test = md.split_once("## test").unwrap().1;
    let rows: Vec<&str> = test
        .lines()
        .filter(|l| l.starts_with("| probe |") || l.starts_with("| prompted |"))
        .map(|l| l.split(" | 20 (").next().unwrap())
        .collect();
    assert_eq!(
        rows,
        [
            "| probe | 6 | lda",
            "| probe | 6 | attention",
            "| probe | 24 | lda",
            "| probe | 24 | attention",
            "| prompted | - | -",
        ],
        "{md}"
    );
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(
        results["inputs"][0]["label"],
        "probe[layer=6,probe=lda].scores"
    );
    assert_eq!(
        results["inputs"][4]["missing_splits"],
        serde_json::json!(["validation"])
    );
    // Five curves fit one chart per split.
    for f in ["roc-test.png", "reliability-validation.png"] {
        assert!(out.join(f).exists(), "{f}");
    }
}
