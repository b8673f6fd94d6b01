//! Params are checked when a graph loads: declared ranges (`min`, `above`, `max`, `below`),
//! finite numbers, and each node type's `check_params` (a `url` must be https and pinned by
//! a sha256 or blake3 checksum, ...). Every refusal names the file, line and column of the
//! offending value and the param, before any node runs.

use std::path::{Path, PathBuf};

use dag_engine::{Graph, LoadOptions, ParamType, Range, Value};

/// A directory with `data.jsonl` (one row) and `g.toml` holding the graph text.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(graph: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("data.jsonl"),
            "{\"text\": \"hi\", \"label\": 1}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("g.toml"), graph).unwrap();
        Project { dir }
    }

    fn graph(&self) -> PathBuf {
        self.dir.path().join("g.toml")
    }

    fn load(&self, opts: &LoadOptions) -> Result<Graph, String> {
        Graph::load(&self.graph(), &dag_nodes::registry(), opts).map_err(|e| e.to_string())
    }
}

/// A model and a one-row dataset for the model nodes to take as inputs.
const INPUTS: &str = r#"
[node.data]
type = "dataset"
path = "data.jsonl"

[node.base]
type = "model"
source = "smollm2"
"#;

/// `file:line:col` of the first occurrence of `value` on the first line of `graph` that
/// contains `line`.
fn location(file: &Path, graph: &str, line: &str, value: &str) -> String {
    let (i, text) = graph
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(line))
        .unwrap_or_else(|| panic!("no line holds `{line}`"));
    let col = text.find(value).expect("the value is on the line") + 1;
    format!("{}:{}:{col}", file.display(), i + 1)
}

/// Loads `graph`, which must fail at `value` on the line holding `line`, with an error that
/// names `param` and says `what`.
fn refused(graph: &str, line: &str, value: &str, param: &str, what: &str) -> String {
    let p = Project::new(graph);
    let err = p
        .load(&LoadOptions::default())
        .map(|_| ())
        .expect_err("the graph must not load");
    let at = location(&p.graph(), graph, line, value);
    assert!(
        err.contains(&format!("--> {at}\n")),
        "expected {at} in:\n{err}"
    );
    assert!(
        err.contains(&format!("`{param}`")),
        "expected `{param}` in:\n{err}"
    );
    assert!(err.contains(what), "expected {what:?} in:\n{err}");
    err
}

fn loads(graph: &str) -> Graph {
    let p = Project::new(graph);
    p.load(&LoadOptions::default())
        .unwrap_or_else(|e| panic!("the graph must load:\n{e}"))
}

fn dataset(params: &str) -> String {
    format!("[node.d]\ntype = \"dataset\"\n{params}\n")
}

const SHA256: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

#[test]
fn a_negative_limit_is_refused_at_its_line() {
    let g = dataset("path = \"data.jsonl\"\nlimit = -5");
    let err = refused(&g, "limit = -5", "-5", "limit", "must be >= 1, found -5");
    assert!(
        err.contains("hint: `limit`: keep the first N rows"),
        "the hint is the param's doc:\n{err}"
    );
}

#[test]
fn a_negative_sample_is_refused_at_its_line() {
    let g = dataset("path = \"data.jsonl\"\nsample = -1");
    refused(&g, "sample = -1", "-1", "sample", "must be >= 1, found -1");
}

#[test]
fn a_held_out_fraction_above_one_is_refused_at_load() {
    let g = dataset("path = \"data.jsonl\"\nheld_out_fraction = 1.5");
    refused(
        &g,
        "held_out_fraction",
        "1.5",
        "held_out_fraction",
        "must be in (0, 1), found 1.5",
    );
    let g = "[node.r]\ntype = \"relabel\"\ninputs = { dataset = \"d.dataset\" }\nmap = { a = 1 }\nheld_out_fraction = 0.0\n"
        .to_string()
        + &dataset("path = \"data.jsonl\"");
    refused(
        &g,
        "held_out_fraction",
        "0.0",
        "held_out_fraction",
        "must be in (0, 1), found 0",
    );
}

#[test]
fn a_negative_max_steps_is_refused_at_load() {
    let g = format!(
        "{INPUTS}\n[node.train]\ntype = \"finetune\"\ninputs = {{ model = \"base.model\", dataset = \"data.dataset\" }}\nmax_steps = -1\n"
    );
    refused(
        &g,
        "max_steps = -1",
        "-1",
        "max_steps",
        "must be >= 0, found -1",
    );
}

#[test]
fn a_zero_batch_size_on_a_model_node_is_refused_at_load() {
    let g = format!(
        "{INPUTS}\n[node.gen]\ntype = \"generate\"\ninputs = {{ model = \"base.model\", dataset = \"data.dataset\" }}\nprompt = \"{{text}}\"\nbatch_size = 0\n"
    );
    refused(
        &g,
        "batch_size = 0",
        "0",
        "batch_size",
        "must be >= 1, found 0",
    );
    let g = format!(
        "{INPUTS}\n[node.acts]\ntype = \"extract-activations\"\ninputs = {{ model = \"base.model\", dataset = \"data.dataset\" }}\nlayer = 1\ntext_column = \"text\"\nbatch_size = 0\n"
    );
    refused(
        &g,
        "batch_size = 0",
        "0",
        "batch_size",
        "must be >= 1, found 0",
    );
}

#[test]
fn a_nan_learning_rate_is_refused_at_load() {
    let g = format!(
        "{INPUTS}\n[node.train]\ntype = \"finetune\"\ninputs = {{ model = \"base.model\", dataset = \"data.dataset\" }}\nlr = nan\n"
    );
    refused(&g, "lr = nan", "nan", "lr", "numbers must be finite");
}

#[test]
fn an_infinite_temperature_is_refused_at_load() {
    let g = format!(
        "{INPUTS}\n[node.gen]\ntype = \"generate\"\ninputs = {{ model = \"base.model\", dataset = \"data.dataset\" }}\nprompt = \"{{text}}\"\ntemperature = inf\n"
    );
    refused(
        &g,
        "temperature = inf",
        "inf",
        "temperature",
        "numbers must be finite",
    );
}

#[test]
fn a_top_p_above_one_is_refused_at_load() {
    let g = format!(
        "{INPUTS}\n[node.gen]\ntype = \"generate\"\ninputs = {{ model = \"base.model\", dataset = \"data.dataset\" }}\nprompt = \"{{text}}\"\ntop_p = 1.5\n"
    );
    refused(
        &g,
        "top_p = 1.5",
        "1.5",
        "top_p",
        "must be in (0, 1], found 1.5",
    );
}

#[test]
fn out_of_range_list_elements_and_matrix_values_are_refused_at_their_place() {
    let g = format!(
        "{INPUTS}\n[node.acts]\ntype = \"extract-activations\"\ninputs = {{ model = \"base.model\", dataset = \"data.dataset\" }}\nmatrix = {{ layer = [6, -1] }}\nlayers = [6, -1]\ntext_column = \"text\"\n"
    );
    let p = Project::new(&g);
    let err = p.load(&LoadOptions::default()).unwrap_err();
    // The matrix value at its own column, and the list at the list.
    let matrix = location(&p.graph(), &g, "matrix =", "-1");
    let list = location(&p.graph(), &g, "layers =", "[6, -1]");
    assert!(err.contains(&format!("--> {matrix}\n")), "{err}");
    assert!(err.contains(&format!("--> {list}\n")), "{err}");
    assert!(err.contains("must be >= 0, found -1"), "{err}");
}

#[test]
fn a_plain_http_url_to_another_host_is_refused_at_load() {
    let g = dataset(&format!(
        "url = \"http://example.com/x.csv\"\nchecksum = \"{SHA256}\""
    ));
    refused(
        &g,
        "url =",
        "\"http://example.com/x.csv\"",
        "url",
        "is plain http",
    );
    // Nor a host hidden behind userinfo or a backslash.
    for url in [
        "http://localhost@example.com/x.csv",
        "http://example.com\\\\@127.0.0.1/x.csv",
        "ftp://example.com/x.csv",
        "https:///x.csv",
    ] {
        let g = dataset(&format!("url = \"{url}\"\nchecksum = \"{SHA256}\""));
        refused(&g, "url =", "\"", "url", "");
    }
}

#[test]
fn https_and_loopback_http_urls_load() {
    for url in [
        "https://example.com/x.csv",
        "HTTPS://example.com/x.csv?raw=1",
        "http://127.0.0.1:8080/x.csv",
        "http://localhost/x.csv",
        "http://[::1]:9000/x.csv",
    ] {
        loads(&dataset(&format!(
            "url = \"{url}\"\nchecksum = \"{SHA256}\""
        )));
    }
    let blake3 = format!("blake3:{}", blake3::hash(b"x").to_hex());
    loads(&dataset(&format!(
        "url = \"https://example.com/x.csv\"\nchecksum = \"{blake3}\""
    )));
}

#[test]
fn an_md5_checksum_is_refused_at_load() {
    let g = dataset(
        "url = \"https://example.com/x.csv\"\nchecksum = \"md5:d41d8cd98f00b204e9800998ecf8427e\"",
    );
    refused(
        &g,
        "checksum =",
        "\"md5:",
        "checksum",
        "`md5` is not an accepted checksum algorithm",
    );
    for bad in [
        "sha256:abc",
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    ] {
        let g = dataset(&format!(
            "url = \"https://example.com/x.csv\"\nchecksum = \"{bad}\""
        ));
        refused(&g, "checksum =", "\"", "checksum", "");
    }
}

#[test]
fn a_url_without_checksum_or_beside_a_path_is_refused_at_load() {
    let g = dataset("url = \"https://example.com/x.csv\"");
    refused(&g, "url =", "\"https", "url", "has no `checksum`");
    let g = dataset(&format!(
        "path = \"data.jsonl\"\nurl = \"https://example.com/x.csv\"\nchecksum = \"{SHA256}\""
    ));
    refused(
        &g,
        "url =",
        "\"https",
        "url",
        "`path` and `url` are both set",
    );
    let g = dataset(&format!("path = \"data.jsonl\"\nchecksum = \"{SHA256}\""));
    refused(
        &g,
        "checksum =",
        "\"sha256",
        "checksum",
        "only a `url` download is checked",
    );
}

#[test]
fn a_split_by_values_and_by_fraction_at_once_is_refused() {
    let g =
        dataset("path = \"data.jsonl\"\nheld_out = { label = [\"1\"] }\nheld_out_fraction = 0.5");
    refused(
        &g,
        "held_out_fraction",
        "0.5",
        "held_out_fraction",
        "`held_out` and `held_out_fraction` are both set",
    );
}

#[test]
fn model_sources_and_devices_are_checked_at_load() {
    let g = "[node.m]\ntype = \"model\"\nsource = \"smollm3\"\n";
    refused(
        g,
        "source =",
        "\"smollm3\"",
        "source",
        "unknown model source",
    );
    let g = "[node.m]\ntype = \"model\"\nsource = \"smollm2\"\ndevice = \"gpu\"\n";
    refused(g, "device =", "\"gpu\"", "device", "unknown device `gpu`");
    for device in ["auto", "cpu", "cuda", "cuda:1"] {
        loads(&format!(
            "[node.m]\ntype = \"model\"\nsource = \"hf://org/name@main\"\ndevice = \"{device}\"\n"
        ));
    }
}

#[test]
fn worker_node_rules_are_checked_at_load() {
    let node = |ty: &str, params: &str| {
        format!(
            "{INPUTS}\n[node.x]\ntype = \"{ty}\"\ninputs = {{ model = \"base.model\", dataset = \"data.dataset\" }}\n{params}\n"
        )
    };
    let g = node(
        "classify-prompted",
        "template = \"{text}\"\nanswers = [\"Yes\", \"Yes\"]",
    );
    refused(&g, "answers =", "[", "answers", "two different strings");
    let g = node(
        "extract-activations",
        "layer = 1\ntext_column = \"text\"\nmessages_column = \"messages\"",
    );
    refused(
        &g,
        "messages_column =",
        "\"messages\"",
        "messages_column",
        "both set",
    );
    let g = node(
        "extract-activations",
        "layer = 1\ntext_column = \"text\"\nsystem_prompt = \"Be brief.\"",
    );
    refused(
        &g,
        "system_prompt =",
        "\"Be",
        "system_prompt",
        "not rendered with the chat template",
    );
    let g = node("finetune", "target_modules = [\"q\", \"qkv\"]");
    refused(
        &g,
        "target_modules =",
        "[",
        "target_modules",
        "unknown LoRA target module `qkv`",
    );
    // Full finetuning does not read target_modules.
    loads(&node(
        "finetune",
        "method = \"full\"\ntarget_modules = [\"qkv\"]",
    ));
    let probe = |params: &str| {
        format!(
            "{}\n[node.acts]\ntype = \"extract-activations\"\ninputs = {{ model = \"base.model\", dataset = \"data.dataset\" }}\nlayer = 1\ntext_column = \"text\"\n\n[node.x]\ntype = \"train-probe\"\ninputs = {{ train = \"acts.activations\", validation = \"acts.activations\" }}\nprobe = \"mean-logistic\"\n{params}\n",
            INPUTS
        )
    };
    refused(
        &probe("cv = 1"),
        "cv = 1",
        "1",
        "cv",
        "not a cross-validation",
    );
    refused(
        &probe("cv = 5\nCs = []"),
        "Cs = []",
        "[]",
        "Cs",
        "`Cs` is empty",
    );
    refused(
        &probe("seeds = []"),
        "seeds = []",
        "[]",
        "seeds",
        "`seeds` is empty",
    );
    refused(
        &probe("Cs = [1.0, 0.0]"),
        "Cs =",
        "[1.0",
        "Cs",
        "must be > 0, found 0",
    );
    loads(&probe("cv = 5"));
}

#[test]
fn set_overrides_are_range_checked() {
    let p = Project::new(&dataset("path = \"data.jsonl\""));
    let err = p
        .load(&LoadOptions {
            profile: None,
            set: vec!["d.limit=-5".into()],
        })
        .unwrap_err();
    assert!(
        err.contains("--set d.limit") && err.contains("found -5"),
        "{err}"
    );
}

/// Whether `v`, and every number inside it, lies in `range`.
fn within(v: &Value, range: &Range) -> bool {
    match v {
        Value::Int(i) => range.contains(*i as f64),
        Value::Float(f) => f.is_finite() && range.contains(*f),
        Value::List(items) => items.iter().all(|i| within(i, range)),
        Value::Table(t) => t.values().all(|i| within(i, range)),
        _ => true,
    }
}

fn numeric(ty: &ParamType) -> bool {
    match ty {
        ParamType::Int | ParamType::Float => true,
        ParamType::List(t) | ParamType::Map(t) => numeric(t),
        _ => false,
    }
}

#[test]
fn every_default_lies_in_its_declared_range() {
    let registry = dag_nodes::registry();
    let mut checked = 0;
    for name in registry.names() {
        let spec = registry.get(name).unwrap().spec();
        for p in &spec.params {
            if let Some(d) = &p.default {
                assert!(
                    within(d, &p.range),
                    "`{name}.{}`: default {d:?} is not {}",
                    p.name,
                    p.range
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 50, "only {checked} defaults");
}

#[test]
fn every_numeric_param_declares_a_range() {
    // Labels are any integers: `relabel` writes what it is given.
    let unbounded = [("relabel", "unpivot"), ("relabel", "map")];
    let registry = dag_nodes::registry();
    for name in registry.names() {
        for p in &registry.get(name).unwrap().spec().params {
            if numeric(&p.ty) && !unbounded.contains(&(name, p.name)) {
                assert!(
                    !p.range.is_unbounded(),
                    "`{name}.{}` ({}) declares no range",
                    p.name,
                    p.ty
                );
            }
        }
    }
}

#[test]
fn every_default_passes_its_node_checks() {
    let registry = dag_nodes::registry();
    for name in registry.names() {
        let node = registry.get(name).unwrap();
        let params = node
            .spec()
            .params
            .iter()
            .filter_map(|p| Some((p.name.to_string(), p.default.clone()?)))
            .collect();
        // A user step is its command: with none given there is nothing to run.
        if name == "command" {
            let e = node
                .check_params(&params)
                .expect_err("a step without a command");
            assert_eq!(e.param, "run");
            continue;
        }
        if let Err(e) = node.check_params(&params) {
            panic!("`{name}` refuses its defaults: {}: {}", e.param, e.message);
        }
    }
}

#[test]
fn the_real_graphs_still_load_with_and_without_the_dev_profile() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../graphs");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        for profile in [None, Some("dev".to_string())] {
            let opts = LoadOptions {
                profile: profile.clone(),
                set: vec![],
            };
            if let Err(e) = Graph::load(&path, &dag_nodes::registry(), &opts) {
                panic!(
                    "{} (profile {profile:?}) does not load:\n{e}",
                    path.display()
                );
            }
        }
        n += 1;
    }
    assert!(n >= 3, "found {n} graphs in {}", dir.display());
}

/// Every model node is declared to the worker (`dag_protocol::models::WORKER_NODES`, which
/// the worker's own test holds to its dispatch), and every declared one is registered.
#[test]
fn the_registered_model_nodes_are_the_workers_nodes() {
    let in_worker = dag_nodes::model_nodes().names();
    let all = dag_nodes::registry().names();
    assert!(in_worker.iter().all(|n| all.contains(n)));
    let mut declared = dag_protocol::models::WORKER_NODES.to_vec();
    declared.sort();
    assert_eq!(in_worker, declared);
}

/// A job holding `spec`'s defaults, with a placeholder for each required param.
fn job_of_defaults(
    spec: &dag_engine::NodeSpec,
    placeholder: serde_json::Value,
) -> dag_protocol::Job {
    let mut params = serde_json::Map::new();
    for p in &spec.params {
        match (&p.default, p.required) {
            (Some(v), _) => {
                params.insert(p.name.into(), v.to_json());
            }
            (None, true) => {
                params.insert(p.name.into(), placeholder.clone());
            }
            (None, false) => {}
        }
    }
    dag_protocol::Job {
        node: spec.name.into(),
        instance: "t".into(),
        params,
        inputs: Default::default(),
        outputs: Default::default(),
        scratch: "/tmp".into(),
        resumed: vec![],
        work_dir: "/tmp".into(),
    }
}

/// A params struct's spec: every default deserialises into the struct (with the required
/// params given), and a misspelt param is an error, never a default.
#[test]
fn spec_defaults_deserialise_into_the_params_and_a_misspelt_param_is_refused() {
    use dag_protocol::evaluate::{EvaluateParams, Lint};
    use dag_protocol::generate::{GenerateParams, OnLength};
    let nodes = dag_nodes::model_nodes();
    let spec = |name| nodes.get(name).unwrap().spec();

    let mut job = job_of_defaults(spec("generate"), "Q: {q}".into());
    let p: GenerateParams = job.params().unwrap();
    assert_eq!((p.max_new_tokens, p.on_length), (256, OnLength::Warn));
    job.params.insert("max_new_token".into(), 5.into());
    let err = job.params::<GenerateParams>().unwrap_err().to_string();
    assert!(
        err.contains("`max_new_token`, which the `generate` node does not have"),
        "{err}"
    );

    let job = job_of_defaults(spec("evaluate"), serde_json::json!(["gsm8k"]));
    let p: EvaluateParams = job.params().unwrap();
    assert_eq!(
        (p.tasks, p.lint, p.limit),
        (vec!["gsm8k".to_string()], Lint::Error, None)
    );
}

/// Every model node's spec is its worker params (names, types, defaults, ranges, docs, in
/// order), and a job of the spec's defaults decodes on the worker's side.
#[test]
fn every_model_nodes_spec_is_its_worker_params() {
    let nodes = dag_nodes::model_nodes();
    for name in dag_protocol::models::WORKER_NODES {
        let spec = nodes.get(name).unwrap().spec();
        let fields = dag_protocol::models::worker_params(name).unwrap();
        let show = |p: &dag_engine::ParamSpec| {
            format!(
                "{} {} {:?} {} {:?} {}",
                p.name, p.ty, p.default, p.required, p.range, p.doc
            )
        };
        let derived: Vec<String> = fields
            .iter()
            .map(|f| show(&dag_engine::ParamSpec::from_field(f)))
            .collect();
        assert_eq!(
            spec.params.iter().map(show).collect::<Vec<_>>(),
            derived,
            "{name}"
        );
        // Required params get a value of their type.
        let mut job = job_of_defaults(spec, serde_json::Value::Null);
        for p in spec.params.iter().filter(|p| p.required) {
            let v = match &p.ty {
                ParamType::Int => serde_json::json!(1),
                ParamType::List(_) => serde_json::json!(["a", "b"]),
                ParamType::Enum(values) => serde_json::json!(values[0]),
                _ => serde_json::json!("x"),
            };
            job.params.insert(p.name.into(), v);
        }
        dag_protocol::models::check_job_params(&job).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
