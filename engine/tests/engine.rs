//! The engine's rules, proved by snapshotting which node instances execute.

use std::path::Path;
use std::sync::{Arc, Mutex};

use dag_engine::{
    ArtifactKind, Event, Graph, LoadOptions, Node, NodeError, NodeSpec, NodeState, ParamSpec,
    ParamType, PortSpec, Registry, Resources, RunContext, RunMode, RunOptions, Runner, Value,
};
use dag_store::Store;

/// `source`: writes `text` (and ignores `note`, so changing it re-executes the node
/// without changing its output: the early-cutoff case).
struct Source(NodeSpec);
impl Node for Source {
    fn spec(&self) -> &NodeSpec {
        &self.0
    }
    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let text = ctx.str("text").unwrap().to_string();
        if text == "boom" {
            return Err(
                NodeError::msg("Failed to produce text: it said boom").hint("say something else")
            );
        }
        std::fs::write(ctx.output_path("out"), text).unwrap();
        Ok(())
    }
}

/// `upper`: uppercases all its inputs, joined.
struct Upper(NodeSpec);
impl Node for Upper {
    fn spec(&self) -> &NodeSpec {
        &self.0
    }
    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let mut s = String::new();
        for i in ctx.inputs("in") {
            s.push_str(&std::fs::read_to_string(&i.path).unwrap().to_uppercase());
        }
        if let Some(suffix) = ctx.str("suffix") {
            s.push_str(suffix);
        }
        std::fs::write(ctx.output_path("out"), s).unwrap();
        Ok(())
    }
}

/// `train`: a list of `steps` checkpoints, each a folder.
struct Train(NodeSpec);
impl Node for Train {
    fn spec(&self) -> &NodeSpec {
        &self.0
    }
    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        for step in 1..=ctx.int("steps").unwrap() {
            let dir = ctx.list_item("checkpoints", &format!("step-{step}"))?;
            std::fs::write(dir.join("weights"), format!("w{step}")).unwrap();
        }
        Ok(())
    }
}

/// `score`: reads a model folder.
struct Score(NodeSpec);
impl Node for Score {
    fn spec(&self) -> &NodeSpec {
        &self.0
    }
    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let w = std::fs::read_to_string(ctx.input("model")?.path.join("weights")).unwrap();
        std::fs::write(
            ctx.output_path("metrics"),
            format!(
                "{{\"weights\": \"{w}\", \"layer\": {}}}",
                ctx.int("layer").unwrap()
            ),
        )
        .unwrap();
        Ok(())
    }
}

/// `grade`: reads one metrics file.
struct Grade(NodeSpec);
impl Node for Grade {
    fn spec(&self) -> &NodeSpec {
        &self.0
    }
    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let m = std::fs::read_to_string(&ctx.input("metrics")?.path).unwrap();
        std::fs::write(ctx.output_path("out"), format!("graded {m}\n")).unwrap();
        Ok(())
    }
}

/// `items`: processes `n` items in batches of 2, saving progress; dies after
/// `die_after` batches when that is set (as a kill would).
struct Items(NodeSpec, Arc<Mutex<Vec<u64>>>);
impl Node for Items {
    fn spec(&self) -> &NodeSpec {
        &self.0
    }
    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let n = ctx.int("n").unwrap() as u64;
        let die_after = ctx.int("die_after");
        let mut done: Vec<u64> = ctx.resume_items()?;
        let mut batches = 0;
        while (done.len() as u64) < n {
            let start = done.len() as u64;
            let batch: Vec<u64> = (start..(start + 2).min(n)).collect();
            self.1.lock().unwrap().extend(&batch);
            ctx.save_items(&batch)?;
            done.extend(batch);
            batches += 1;
            if Some(batches) == die_after {
                return Err(NodeError::msg("simulated crash"));
            }
        }
        let out: Vec<String> = done.iter().map(|i| i.to_string()).collect();
        std::fs::write(ctx.output_path("out"), out.join(",")).unwrap();
        Ok(())
    }
}

fn registry(items_log: Arc<Mutex<Vec<u64>>>) -> Registry {
    let mut r = Registry::new();
    r.register(Source(NodeSpec {
        name: "source",
        version: 1,
        doc: "writes text",
        inputs: vec![],
        outputs: vec![PortSpec::new("out", ArtifactKind::Dataset, "the text")],
        params: vec![
            ParamSpec::required("text", ParamType::Str, "what to write"),
            ParamSpec::with_default("note", ParamType::Str, Value::Str(String::new()), "ignored"),
            ParamSpec::with_default("lr", ParamType::Float, Value::Float(1e-4), "ignored"),
        ],
        resources: Resources::CPU,
    }));
    r.register(Upper(NodeSpec {
        name: "upper",
        version: 1,
        doc: "uppercases",
        inputs: vec![PortSpec::new("in", ArtifactKind::Dataset, "texts").many()],
        outputs: vec![PortSpec::new("out", ArtifactKind::Dataset, "upper")],
        params: vec![ParamSpec::optional("suffix", ParamType::Str, "appended")],
        resources: Resources::CPU,
    }));
    r.register(Train(NodeSpec {
        name: "train",
        version: 1,
        doc: "checkpoints",
        inputs: vec![PortSpec::new("data", ArtifactKind::Dataset, "data")],
        outputs: vec![PortSpec::new(
            "checkpoints",
            ArtifactKind::Checkpoints,
            "ckpts",
        )],
        params: vec![ParamSpec::required("steps", ParamType::Int, "how many")],
        resources: Resources::GPU,
    }));
    r.register(Score(NodeSpec {
        name: "score",
        version: 1,
        doc: "scores a model",
        inputs: vec![PortSpec::new("model", ArtifactKind::Model, "model")],
        outputs: vec![PortSpec::new("metrics", ArtifactKind::Metrics, "metrics")],
        params: vec![ParamSpec::with_default(
            "layer",
            ParamType::Int,
            Value::Int(0),
            "layer",
        )],
        resources: Resources::CPU,
    }));
    r.register(Grade(NodeSpec {
        name: "grade",
        version: 1,
        doc: "grades one metrics file",
        inputs: vec![PortSpec::new("metrics", ArtifactKind::Metrics, "metrics")],
        outputs: vec![PortSpec::new("out", ArtifactKind::Dataset, "grade")],
        params: vec![],
        resources: Resources::CPU,
    }));
    r.register(Items(
        NodeSpec {
            name: "items",
            version: 1,
            doc: "resumable",
            inputs: vec![],
            outputs: vec![PortSpec::new("out", ArtifactKind::Dataset, "items")],
            params: vec![
                ParamSpec::required("n", ParamType::Int, "items"),
                ParamSpec::optional("die_after", ParamType::Int, "batches before dying"),
            ],
            resources: Resources::CPU,
        },
        items_log,
    ));
    r
}

struct Env {
    dir: tempfile::TempDir,
    store: Arc<Store>,
    reg: Registry,
    items: Arc<Mutex<Vec<u64>>>,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join(".dag")).unwrap());
        let items = Arc::new(Mutex::new(vec![]));
        Env {
            reg: registry(items.clone()),
            dir,
            store,
            items,
        }
    }

    fn graph(&self, text: &str, opts: &LoadOptions) -> Result<Graph, String> {
        let path = self.dir.path().join("g.toml");
        std::fs::write(&path, text).unwrap();
        Graph::load(&path, &self.reg, opts).map_err(|e| e.to_string())
    }

    /// Runs and returns the sorted list of executed instances, and the summary.
    fn run_with(
        &self,
        text: &str,
        opts: &LoadOptions,
        mode: RunMode,
    ) -> (Vec<String>, dag_engine::RunSummary) {
        let g = Arc::new(self.graph(text, opts).unwrap());
        let events = Mutex::new(vec![]);
        let runner = Runner::new(
            self.store.clone(),
            g,
            RunOptions {
                mode,
                ..Default::default()
            },
        );
        let rt = tokio::runtime::Runtime::new().unwrap();
        let summary = rt
            .block_on(runner.run(&|e: &Event| {
                if let Event::Started(n) = e {
                    events.lock().unwrap().push(n.clone());
                }
            }))
            .unwrap();
        let mut ran = events.into_inner().unwrap();
        ran.sort();
        (ran, summary)
    }

    fn run(&self, text: &str) -> Vec<String> {
        self.run_with(text, &LoadOptions::default(), RunMode::Execute)
            .0
    }

    fn output(&self, summary: &dag_engine::RunSummary, instance: &str) -> String {
        let rec = summary
            .records
            .iter()
            .find(|r| r.instance == instance)
            .unwrap();
        String::from_utf8(self.store.read(&rec.outputs[0].1).unwrap()).unwrap()
    }
}

const CHAIN: &str = r#"
[node.a]
type = "source"
text = "hello"

[node.b]
type = "upper"
inputs = { in = "a.out" }

[node.c]
type = "source"
text = "independent"
"#;

#[test]
fn rerun_does_nothing_and_an_edit_reruns_exactly_its_downstream() {
    let env = Env::new();
    assert_eq!(env.run(CHAIN), ["a", "b", "c"]);
    assert!(env.run(CHAIN).is_empty(), "a second run executes nothing");
    let edited = CHAIN.replace("\"hello\"", "\"hi\"");
    assert_eq!(env.run(&edited), ["a", "b"]);
    let (_, s) = env.run_with(&edited, &LoadOptions::default(), RunMode::Execute);
    assert_eq!(env.output(&s, "b"), "HI");
}

#[test]
fn early_cutoff_identical_outputs_stop_propagation() {
    let env = Env::new();
    env.run(CHAIN);
    // `note` changes a's key but not its bytes: a re-executes, b stays cached.
    let noted = CHAIN.replace("text = \"hello\"", "text = \"hello\"\nnote = \"v2\"");
    assert_eq!(env.run(&noted), ["a"]);
}

#[test]
fn formatting_comments_key_order_and_number_spelling_never_change_keys() {
    let env = Env::new();
    let a = "[node.a]\ntype = \"source\"\ntext = \"x\"\nlr = 1e-4\n";
    let b =
        "# a comment\n[node.a]\nlr   =   0.000_1 # same number\ntext = 'x'\ntype = \"source\"\n";
    assert_eq!(env.run(a), ["a"]);
    assert!(env.run(b).is_empty());
    // An integer where a float is declared is the same float.
    let c = "[node.a]\ntype = \"source\"\ntext = \"x\"\nlr = 1\n";
    let d = "[node.a]\ntype = \"source\"\ntext = \"x\"\nlr = 1.0\n";
    assert_eq!(env.run(c), ["a"]);
    assert!(env.run(d).is_empty());
}

#[test]
fn a_failure_stops_downstream_and_independent_branches_finish() {
    let env = Env::new();
    let g = CHAIN.replace("\"hello\"", "\"boom\"");
    let (ran, s) = env.run_with(&g, &LoadOptions::default(), RunMode::Execute);
    assert_eq!(ran, ["a", "c"]);
    let state = |n: &str| {
        s.lines
            .iter()
            .find(|l| l.instance == n)
            .unwrap()
            .state
            .clone()
    };
    assert!(
        matches!(state("a"), NodeState::Failed { ref error } if error.contains("boom") && error.contains("hint: say something else"))
    );
    assert_eq!(
        state("b"),
        NodeState::Skipped {
            upstream: vec!["a".into()]
        }
    );
    assert_eq!(state("c"), NodeState::Ran);
    assert_eq!(s.status, dag_store::RunStatus::Failed);
    // Nothing of the failed node was cached: fixing it runs it and its downstream.
    assert_eq!(env.run(CHAIN), ["a", "b"]);
}

#[test]
fn matrix_instances_are_cached_one_by_one() {
    let env = Env::new();
    let g = r#"
[node.t]
type = "source"
text = "w"

[node.train]
type = "train"
inputs = { data = "t.out" }
steps = 1

[node.s]
type = "score"
inputs = { model = "train.checkpoints[*]" }
matrix = { layer = [1, 2] }
"#;
    assert_eq!(
        env.run(g),
        ["s[layer=1,step-1]", "s[layer=2,step-1]", "t", "train"]
    );
    let more = g.replace("[1, 2]", "[1, 2, 3]");
    assert_eq!(env.run(&more), ["s[layer=3,step-1]"]);
}

#[test]
fn dynamic_map_runs_one_cached_instance_per_checkpoint() {
    let env = Env::new();
    let g = r#"
[node.t]
type = "source"
text = "w"

[node.train]
type = "train"
inputs = { data = "t.out" }
steps = 2

[node.s]
type = "score"
inputs = { model = "train.checkpoints[*]" }
"#;
    let (ran, s) = env.run_with(g, &LoadOptions::default(), RunMode::Execute);
    assert_eq!(ran, ["s[step-1]", "s[step-2]", "t", "train"]);
    assert_eq!(
        env.output(&s, "s[step-2]"),
        "{\"weights\": \"w2\", \"layer\": 0}"
    );
    // A third checkpoint: the first two evaluations are reused.
    assert_eq!(
        env.run(&g.replace("steps = 2", "steps = 3")),
        ["s[step-3]", "train"]
    );
}

#[test]
fn a_node_reading_a_mapped_node_maps_with_it_and_a_many_port_collects_them() {
    let env = Env::new();
    let g = r#"
[node.t]
type = "source"
text = "w"

[node.train]
type = "train"
inputs = { data = "t.out" }
steps = 2

[node.s]
type = "score"
inputs = { model = "train.checkpoints[*]" }

[node.g]
type = "grade"
inputs = { metrics = "s.metrics" }

[node.all]
type = "upper"
inputs = { in = "g.out" }
"#;
    let (ran, s) = env.run_with(g, &LoadOptions::default(), RunMode::Execute);
    assert_eq!(
        ran,
        [
            "all",
            "g[step-1]",
            "g[step-2]",
            "s[step-1]",
            "s[step-2]",
            "t",
            "train"
        ]
    );
    assert!(
        env.output(&s, "g[step-2]").contains("w2"),
        "each grade reads its own element"
    );
    assert!(!env.output(&s, "g[step-2]").contains("w1"));
    let all = env.output(&s, "all");
    assert!(all.contains("W1") && all.contains("W2"), "{all}");
    // A third checkpoint: one more score and grade, and the collector.
    assert_eq!(
        env.run(&g.replace("steps = 2", "steps = 3")),
        ["all", "g[step-3]", "s[step-3]", "train"]
    );
}

#[test]
fn status_explains_why_a_node_is_stale() {
    let env = Env::new();
    env.run(CHAIN);
    let edited = CHAIN.replace(
        "[node.a]\ntype = \"source\"",
        "[node.a]\ntype = \"source\"\nlr = 2e-4",
    );
    let (ran, s) = env.run_with(&edited, &LoadOptions::default(), RunMode::DryRun);
    assert!(ran.is_empty(), "a dry run executes nothing");
    let a = s.lines.iter().find(|l| l.instance == "a").unwrap();
    assert_eq!(
        a.state,
        NodeState::Stale {
            reasons: vec!["param lr changed 0.0001 -> 0.0002".into()]
        }
    );
    let b = s.lines.iter().find(|l| l.instance == "b").unwrap();
    assert_eq!(
        b.state,
        NodeState::Waiting {
            upstream: vec!["a".into()]
        }
    );
    assert_eq!(
        s.lines.iter().find(|l| l.instance == "c").unwrap().state,
        NodeState::Cached
    );
    let fresh = CHAIN.replace(
        "[node.c]",
        "[node.d]\ntype = \"source\"\ntext = \"new\"\n\n[node.c]",
    );
    let (_, s) = env.run_with(&fresh, &LoadOptions::default(), RunMode::DryRun);
    assert_eq!(
        s.lines.iter().find(|l| l.instance == "d").unwrap().state,
        NodeState::NeverRun
    );
}

#[test]
fn profiles_and_set_override_params() {
    let env = Env::new();
    let g = format!("{CHAIN}\n[profile.dev]\na.text = \"dev\"\n");
    let dev = LoadOptions {
        profile: Some("dev".into()),
        set: vec![],
    };
    let (_, s) = env.run_with(&g, &dev, RunMode::Execute);
    assert_eq!(env.output(&s, "b"), "DEV");
    let set = LoadOptions {
        profile: Some("dev".into()),
        set: vec!["b.suffix=!".into()],
    };
    let (ran, s) = env.run_with(&g, &set, RunMode::Execute);
    assert_eq!(ran, ["b"]);
    assert_eq!(env.output(&s, "b"), "DEV!");
    let err = env
        .graph(
            &g,
            &LoadOptions {
                profile: Some("dve".into()),
                set: vec![],
            },
        )
        .unwrap_err();
    assert!(
        err.contains("unknown profile `dve`") && err.contains("did you mean `dev`?"),
        "{err}"
    );
    let err = env
        .graph(
            &g,
            &LoadOptions {
                profile: None,
                set: vec!["b.sufix=1".into()],
            },
        )
        .unwrap_err();
    assert!(err.contains("did you mean `suffix`?"), "{err}");
}

#[test]
fn resumable_items_redo_at_most_the_batch_in_flight() {
    let env = Env::new();
    let g = "[node.i]\ntype = \"items\"\nn = 7\n";
    let (_, s) = env.run_with(g, &LoadOptions::default(), RunMode::Execute);
    assert_eq!(env.output(&s, "i"), "0,1,2,3,4,5,6");
    env.items.lock().unwrap().clear();
    // Now a fresh computation that crashes mid-way, then resumes under the same key.
    let crash = "[node.i]\ntype = \"items\"\nn = 9\ndie_after = 2\n";
    let (_, s) = env.run_with(crash, &LoadOptions::default(), RunMode::Execute);
    assert!(matches!(s.lines[0].state, NodeState::Failed { .. }));
    assert_eq!(*env.items.lock().unwrap(), [0, 1, 2, 3]);
    env.items.lock().unwrap().clear();
    let (_, s) = env.run_with(crash, &LoadOptions::default(), RunMode::Execute);
    // Resumed at item 4: it saves batch 2 (items 4, 5) and "dies" again after its
    // second new batch (items 6, 7); the third attempt finishes with item 8 only.
    assert_eq!(*env.items.lock().unwrap(), [4, 5, 6, 7]);
    assert!(matches!(s.lines[0].state, NodeState::Failed { .. }));
    env.items.lock().unwrap().clear();
    let (_, s) = env.run_with(crash, &LoadOptions::default(), RunMode::Execute);
    assert_eq!(*env.items.lock().unwrap(), [8]);
    assert_eq!(env.output(&s, "i"), "0,1,2,3,4,5,6,7,8");
}

fn load_err(env: &Env, text: &str) -> String {
    env.graph(text, &LoadOptions::default()).unwrap_err()
}

#[test]
fn bad_graphs_are_rejected_with_location_and_fix() {
    let env = Env::new();
    let cases: &[(&str, &[&str])] = &[
        (
            "[node.a]\ntype = \"sorce\"\ntext = \"x\"\n",
            &[
                "g.toml:2:8",
                "unknown node type `sorce`",
                "did you mean `source`?",
            ],
        ),
        (
            "[node.a]\ntype = \"source\"\ntxt = \"x\"\n",
            &["g.toml:3:1", "unknown param `txt`", "did you mean `text`?"],
        ),
        (
            "[node.a]\ntype = \"source\"\n",
            &["g.toml:1:7", "missing the required param `text`"],
        ),
        (
            "[node.a]\ntype = \"source\"\ntext = 3\n",
            &["g.toml:3:8", "must be a string, found an integer"],
        ),
        (
            "[node.a]\ntype = \"source\"\ntext = \"x\"\ntext = \"y\"\n",
            &[
                "g.toml:4",
                "duplicate key",
                "a key may be set once per table",
            ],
        ),
        (
            "[node.a]\ntype = \"source\"\ntext = \"x\"\n[node.a]\ntype = \"source\"\n",
            &[
                "g.toml:4",
                "duplicate key",
                "each `[node.NAME]` must appear once",
            ],
        ),
        (
            "[node.a]\ntype = \"source\"\ntext = \"x\"\nlr = \"fast\"\n",
            &["g.toml:4:6", "must be a number, found a string"],
        ),
        (
            "[node.a]\ntype = \"source\"\ntext = \"x\"\n[node.a]\ntype = \"source\"\n",
            &["g.toml:4", "duplicate", "rename one of the nodes"],
        ),
        (
            "[node.a]\ntype = \"upper\"\ninputs = { in = \"b.out\" }\n[node.b]\ntype = \"upper\"\ninputs = { in = \"a.out\" }\n",
            &["the graph has a cycle: a -> b -> a"],
        ),
        (
            "[node.a]\ntype = \"upper\"\ninputs = { in = \"nope.out\" }\n",
            &["g.toml:3:17", "unknown node `nope`"],
        ),
        (
            "[node.a]\ntype = \"source\"\ntext=\"x\"\n[node.b]\ntype = \"upper\"\ninputs = { in = \"a.ot\" }\n",
            &["has no output `ot`", "did you mean `out`?"],
        ),
        (
            "[node.a]\ntype = \"source\"\ntext=\"x\"\n[node.b]\ntype = \"upper\"\ninputs = { inn = \"a.out\" }\n",
            &["unknown input port `inn`", "did you mean `in`?"],
        ),
        (
            "[node.a]\ntype = \"source\"\ntext=\"x\"\n[node.s]\ntype = \"score\"\ninputs = { model = \"a.out\" }\n",
            &["takes model, but `a.out` produces dataset"],
        ),
        (
            "[node.a]\ntype = \"source\"\ntext=\"x\"\n[node.t]\ntype = \"train\"\nsteps=1\ninputs = { data = \"a\" }\n[node.s]\ntype = \"score\"\ninputs = { model = \"t.checkpoints\" }\n",
            &[
                "produces checkpoints",
                "map over its elements with `t.checkpoints[*]`",
            ],
        ),
        (
            "[node.b]\ntype = \"upper\"\n",
            &["does not connect its required input `in`"],
        ),
        (
            "[nodes.a]\ntype = \"source\"\n",
            &["unknown top-level key `nodes`", "did you mean `node`?"],
        ),
    ];
    for (text, wants) in cases {
        let err = load_err(&env, text);
        for w in *wants {
            assert!(err.contains(w), "expected {w:?} in:\n{err}");
        }
    }
}

#[test]
fn secrets_are_names_of_environment_variables_never_values() {
    let mut reg = Registry::new();
    struct Api(NodeSpec);
    impl Node for Api {
        fn spec(&self) -> &NodeSpec {
            &self.0
        }
        fn run(&self, _: &mut RunContext<'_>) -> Result<(), NodeError> {
            Ok(())
        }
    }
    reg.register(Api(NodeSpec {
        name: "api",
        version: 1,
        doc: "",
        inputs: vec![],
        outputs: vec![],
        params: vec![ParamSpec::required(
            "api_key_env",
            ParamType::SecretEnv,
            "env var",
        )],
        resources: Resources {
            cpu: 0,
            gpu: 0,
            api: 1,
        },
    }));
    let p = Path::new("/tmp/g.toml");
    let ok = Graph::parse(
        "[node.a]\ntype = \"api\"\napi_key_env = \"OPENAI_API_KEY\"\n",
        p,
        &reg,
        &LoadOptions::default(),
    );
    assert!(ok.is_ok());
    let err = Graph::parse(
        "[node.a]\ntype = \"api\"\napi_key_env = \"sk-live-123\"\n",
        p,
        &reg,
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("secrets never go in graph files"),
        "{err}"
    );
}

#[test]
fn a_graph_file_that_is_not_utf8_names_the_byte_and_line() {
    let env = Env::new();
    let path = env.dir.path().join("latin1.toml");
    std::fs::write(&path, b"[node.a]\ntype = \"source\"\ntext = \"caf\xe9\"\n").unwrap();
    let err = Graph::load(&path, &env.reg, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not UTF-8")
            && err.contains("byte 36 (0xe9)")
            && err.contains("latin1.toml:3:12"),
        "{err}"
    );
}

#[test]
fn a_set_value_that_looks_like_toml_but_is_broken_is_an_error_not_a_string() {
    let env = Env::new();
    let g = "[node.a]\ntype = \"source\"\ntext = \"x\"\n";
    for bad in ["a.text=[1,2", "a.text={ k = ", "a.text=\"unclosed"] {
        let opts = LoadOptions {
            set: vec![bad.into()],
            ..Default::default()
        };
        let err = env.graph(g, &opts).unwrap_err();
        assert!(err.contains("is not valid TOML"), "{bad}: {err}");
    }
    // A bare word is still a string.
    let opts = LoadOptions {
        set: vec!["a.text=hello".into()],
        ..Default::default()
    };
    let g = env.graph(g, &opts).unwrap();
    assert_eq!(g.nodes[0].params["text"], Value::Str("hello".into()));
}
