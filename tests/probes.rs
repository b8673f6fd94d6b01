//! Activations and probes end to end through `dag` and `dag-worker`: SmolLM2 activations
//! against transformers' `hidden_states`, one forward pass per group of layers and only the
//! new layer computed when one is added, a kill -9 during extraction that resumes per shard
//! to the same bytes, the HH-RLHF probes graph's dev profile, and the Models Under Pressure
//! study graph (`graphs/probes.toml`) end to end on the tiny model with a new-layer edit.
//! Needs `dag-worker` built beside `dag` (scripts/test builds it first).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::SafeTensors;
use serde_json::Value;

mod common;
use common::{
    assert_same_outputs, dag, kill_training_after, root, start_held_after_saves, text, tiny_model,
    write_project,
};

/// The five probe families every layer of the probes graphs trains.
const PROBES: [&str; 5] = [
    "mean-logistic",
    "diff-of-means",
    "lda",
    "per-token",
    "attention",
];

fn show(dir: &Path, target: &str) -> Value {
    let o = dag(dir, &["--json", "show", target]);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)))
}

fn export(dir: &Path, target: &str) -> PathBuf {
    let dest = dir
        .join("export")
        .join(target.replace(['[', ']', '=', ','], "_"));
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let o = dag(dir, &["export", target, dest.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    dest
}

fn logs(dir: &Path) -> String {
    std::fs::read_dir(dir.join(".dag/logs"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect()
}

fn f32s(st: &SafeTensors<'_>, name: &str) -> (Vec<usize>, Vec<f32>) {
    let t = st.tensor(name).unwrap();
    assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}");
    let v = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    (t.shape().to_vec(), v)
}

fn i64s(st: &SafeTensors<'_>, name: &str) -> Vec<i64> {
    st.tensor(name)
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn smollm2_graph(dir: &Path, layers: &[usize]) {
    let fx: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/probes/smollm2_activations.json"))
            .unwrap(),
    )
    .unwrap();
    let mut data = String::new();
    for (i, t) in fx["texts"].as_array().unwrap().iter().enumerate() {
        data += &serde_json::json!({ "text": t["text"], "label": i % 2, "id": format!("t{i}") })
            .to_string();
        data.push('\n');
    }
    std::fs::write(dir.join("texts.jsonl"), data).unwrap();
    let list = format!("{layers:?}");
    write_project(
        dir,
        "g.toml",
        &format!(
            r#"
[node.texts]
type = "dataset"
path = "texts.jsonl"

[node.base]
type = "model"
source = "smollm2"

[node.acts]
type = "extract-activations"
inputs = {{ model = "base.model", dataset = "texts.dataset" }}
matrix = {{ layer = {list} }}
layers = {list}
text_column = "text"
batch_size = 2
shard_rows = 2
"#
        ),
    );
}

/// SmolLM2's magnitudes reach ~400 at middle layers, where one f32 ulp is 3e-5: the bound is
/// 1e-4 absolute, relative above magnitude 1.
const TOLERANCE: f64 = 1e-4;

#[test]
fn smollm2_activations_equal_transformers_and_layers_share_one_pass() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let layers = [0, 6, 15, 24, 30];
    smollm2_graph(d, &layers);
    let o = dag(d, &["run", "g.toml"]);
    assert!(o.status.success(), "{}", text(&o));
    let log = logs(d);
    assert_eq!(
        log.matches("one forward pass writes layers [0, 6, 15, 24, 30]")
            .count(),
        1,
        "the first cell computes every layer:\n{log}"
    );
    assert_eq!(
        log.matches("computed by a sibling's forward pass").count(),
        4,
        "{log}"
    );

    let fx: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/probes/smollm2_activations.json"))
            .unwrap(),
    )
    .unwrap();
    let stride = fx["stride"].as_u64().unwrap() as usize;
    let texts = fx["texts"].as_array().unwrap();
    let mut digests = BTreeMap::new();
    let mut worst: f64 = 0.0;
    for l in layers {
        let target = format!("acts[layer={l}]");
        let shown = show(d, &target);
        digests.insert(l, shown["artifact"].as_str().unwrap().to_string());
        assert_eq!(shown["meta"]["layer"], l);
        assert_eq!(shown["meta"]["rows"], 3);
        assert_eq!(shown["meta"]["shards"], 2);
        assert_eq!(shown["meta"]["truncated_rows"], 0);
        let out = export(d, &target);
        let mut row = 0;
        for s in 0..2 {
            let bytes = std::fs::read(out.join(format!("shard-{s:05}.safetensors"))).unwrap();
            let st = SafeTensors::deserialize(&bytes).unwrap();
            let (shape, acts) = f32s(&st, "activations");
            let (n, t, dim) = (shape[0], shape[1], shape[2]);
            let mask = st.tensor("attention_mask").unwrap().data().to_vec();
            let ids = i64s(&st, "input_ids");
            assert_eq!(i64s(&st, "row"), (row..row + n as i64).collect::<Vec<_>>());
            let carried: Vec<Value> =
                std::fs::read_to_string(out.join(format!("shard-{s:05}.jsonl")))
                    .unwrap()
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect();
            for i in 0..n {
                let r = &texts[row as usize + i];
                assert_eq!(
                    carried[i]["columns"]["id"],
                    format!("t{}", row as usize + i)
                );
                assert!(
                    carried[i]["columns"].get("text").is_none(),
                    "the text column is not carried"
                );
                let want_ids: Vec<i64> = r["input_ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_i64().unwrap())
                    .collect();
                let len = want_ids.len();
                assert_eq!(
                    &ids[i * t..i * t + len],
                    want_ids.as_slice(),
                    "input ids, row {i}"
                );
                assert!(mask[i * t..i * t + len].iter().all(|&m| m == 1));
                assert!(
                    mask[i * t + len..(i + 1) * t].iter().all(|&m| m == 0),
                    "right padding"
                );
                let want = &r["hidden_states"][l.to_string()];
                for tok in 0..t {
                    for k in 0..dim {
                        let ours = acts[(i * t + tok) * dim + k] as f64;
                        if tok >= len {
                            assert_eq!(ours, 0.0, "padding is stored as zeros");
                        } else if k % stride == 0 {
                            let theirs = want[tok][k / stride].as_f64().unwrap();
                            let err = (ours - theirs).abs() / theirs.abs().max(1.0);
                            worst = worst.max(err);
                            assert!(
                                err < TOLERANCE,
                                "layer {l} row {i} token {tok} dim {k}: {ours} vs {theirs}"
                            );
                        }
                    }
                }
            }
            row += n as i64;
        }
    }
    eprintln!("worst activation difference against transformers: {worst:.2e}");

    // Adding a layer computes that layer alone; the stored ones keep their bytes, so
    // whatever reads them stays cached.
    smollm2_graph(d, &[0, 3, 6, 15, 24, 30]);
    let o = dag(d, &["run", "g.toml"]);
    assert!(o.status.success(), "{}", text(&o));
    let log = logs(d);
    assert_eq!(
        log.matches("one forward pass writes layers").count(),
        1,
        "no second multi-layer pass:\n{log}"
    );
    assert_eq!(
        log.matches("computed by a sibling's forward pass").count(),
        4 + 5,
        "{log}"
    );
    for (l, dg) in digests {
        assert_eq!(
            show(d, &format!("acts[layer={l}]"))["artifact"]
                .as_str()
                .unwrap(),
            dg,
            "layer {l}"
        );
    }
    assert_eq!(show(d, "acts[layer=3]")["meta"]["layer"], 3);
}

fn tiny_graph(dir: &Path) {
    let tiny = tiny_model();
    let data = root().join("../shared/data/speciesismbench/speciesism_benchmark_final.csv");
    write_project(
        dir,
        "g.toml",
        &format!(
            r#"
[node.rows]
type = "dataset"
path = "{}"
limit = 400

[node.tiny]
type = "model"
path = "{}"

[node.acts]
type = "extract-activations"
inputs = {{ dataset = "rows.dataset", model = "tiny.model" }}
layer = 1
text_column = "statement"
shard_rows = 20
batch_size = 8
dtype = "bf16"
"#,
            data.display(),
            tiny.display()
        ),
    );
}

#[test]
fn killed_extraction_resumes_per_shard_to_the_same_bytes() {
    let a = tempfile::tempdir().unwrap();
    tiny_graph(a.path());
    let o = dag(a.path(), &["run", "g.toml", "-q"]);
    assert!(o.status.success(), "{}", text(&o));
    let reference = show(a.path(), "acts");
    assert_eq!(reference["meta"]["rows"], 400);
    assert_eq!(reference["meta"]["shards"], 20);
    assert_eq!(reference["meta"]["dtype"], "bf16");

    let b = tempfile::tempdir().unwrap();
    tiny_graph(b.path());
    let mut child = start_held_after_saves(b.path(), 2);
    child.kill().unwrap();
    child.wait().unwrap();
    let o = dag(b.path(), &["run", "g.toml", "-q"]);
    assert!(o.status.success(), "{}", text(&o));
    let log = logs(b.path());
    assert!(
        log.contains("resumed: 2 of 20 shards were already stored"),
        "the rerun reused stored shards:\n{log}"
    );
    let resumed = show(b.path(), "acts");
    assert_eq!(
        resumed["artifact"], reference["artifact"],
        "byte-identical to an uninterrupted run"
    );
    assert!(dag(b.path(), &["verify"]).status.success());
}

/// The finetuned-classifier baseline alone on the tiny model: HH-RLHF pairs unpivoted into
/// rejected (1) and chosen (0) rows, enough steps to be killed between saved states.
fn classifier_graph(dir: &Path) {
    let tiny = tiny_model();
    let data = root().join("../shared/data/hh-rlhf/harmless-base/test.jsonl.gz");
    write_project(
        dir,
        "g.toml",
        &format!(
            r#"
[node.pairs]
type = "dataset"
path = "{}"
limit = 24
held_out_fraction = 0.5
seed = 0

[node.train_rows]
type = "relabel"
inputs = {{ dataset = "pairs.dataset" }}
unpivot = {{ rejected = 1, chosen = 0 }}

[node.eval_rows]
type = "relabel"
inputs = {{ dataset = "pairs.held_out" }}
unpivot = {{ rejected = 1, chosen = 0 }}

[node.tiny]
type = "model"
path = "{}"

[node.clf]
type = "finetune-classifier"
inputs = {{ model = "tiny.model", train = "train_rows.dataset", validation = "eval_rows.dataset" }}
text_column = "text"
max_len = 48
batch_size = 2
max_steps = 120
save_interval = 20
lr = 1e-3
dropout = 0.1
bootstrap = 20
"#,
            data.display(),
            tiny.display()
        ),
    );
}

/// What must not change when training resumes: the scores and the trained tensors.
fn classifier_outputs(dir: &Path) -> (Value, Vec<u8>, Vec<u8>) {
    let out = export(dir, "clf.classifier");
    (
        show(dir, "clf.scores")["artifact"].clone(),
        std::fs::read(out.join("head.safetensors")).unwrap(),
        std::fs::read(out.join("adapter/adapter_model.safetensors")).unwrap(),
    )
}

#[test]
fn killed_classifier_training_resumes_to_identical_scores_and_weights() {
    let a = tempfile::tempdir().unwrap();
    classifier_graph(a.path());
    let o = dag(a.path(), &["run", "g.toml", "-q"]);
    assert!(o.status.success(), "{}", text(&o));
    let reference = classifier_outputs(a.path());

    let b = tempfile::tempdir().unwrap();
    classifier_graph(b.path());
    let saved = kill_training_after(b.path(), "state-", 2);
    assert!(saved == 2, "killed mid-training ({saved} saved)");

    let o = dag(b.path(), &["run", "g.toml"]);
    assert!(o.status.success(), "{}", text(&o));
    let log = logs(b.path());
    assert!(
        log.contains("resuming training at step"),
        "the rerun resumed:\n{log}"
    );
    let resumed = classifier_outputs(b.path());
    assert_eq!(resumed.0, reference.0, "the scores artifact");
    assert!(resumed.1 == reference.1, "head.safetensors differs");
    assert!(resumed.2 == reference.2, "the adapter differs");
}

/// A graph of the repository with its data paths made absolute, `model` (a path) in place
/// of SmolLM2 and `layers` in place of 6, 15, 24, written to `dir/probes.toml`.
fn repo_graph_on(dir: &Path, graph: &str, model: &Path, layers: &str) {
    let graph = std::fs::read_to_string(root().join("graphs").join(graph))
        .unwrap()
        .replace(
            "../../shared/data/",
            &format!("{}/", root().join("../shared/data").display()),
        )
        .replace(
            "source = \"smollm2\"",
            &format!("path = \"{}\"", model.display()),
        )
        .replace("[6, 15, 24]", layers);
    assert!(graph.contains("tiny-llama") && graph.contains(layers));
    write_project(dir, "probes.toml", &graph);
}

/// `graphs/hh-probes.toml` itself, with the tiny random model in place of SmolLM2 (its layers
/// 0, 1, 2 for 6, 15, 24) so the whole graph runs in seconds; the dev profile, shrunk further.
fn probes_graph_on_the_tiny_model(dir: &Path) {
    repo_graph_on(dir, "hh-probes.toml", &tiny_model(), "[0, 1, 2]");
}

#[test]
fn probes_graph_dev_profile_runs_and_reports_sane_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    probes_graph_on_the_tiny_model(d);
    let args = [
        "run",
        "probes.toml",
        "--profile",
        "dev",
        "-q",
        "--set",
        "pairs.sample=20",
        "--set",
        "probe.epochs=3",
    ];
    let o = dag(d, &args);
    assert!(o.status.success(), "{}", text(&o));
    // Every node type of the study, run again in another directory: the same bytes.
    let elsewhere = tempfile::tempdir().unwrap();
    probes_graph_on_the_tiny_model(elsewhere.path());
    let o = dag(elsewhere.path(), &args);
    assert!(o.status.success(), "{}", text(&o));
    assert_same_outputs(d, elsewhere.path());
    let at = |t: &str| show(d, t);
    let rows = |split: &str| at(split)["meta"]["rows"].as_u64().unwrap();
    let (n_train, n_val, n_test) = (
        rows("train_rows.dataset"),
        rows("eval_rows.dataset"),
        rows("eval_rows.held_out"),
    );
    assert_eq!(n_train + n_val + n_test, 40, "20 pairs, two rows each");
    assert!(n_val % 2 == 0 && n_test % 2 == 0, "pairs stay whole");
    for layer in [0, 1, 2] {
        for probe in PROBES {
            let name = format!("probe[layer={layer},probe={probe}]");
            let meta = &at(&format!("{name}.probe"))["meta"];
            assert_eq!(meta["layer"], layer);
            for split in ["validation", "test"] {
                let auroc = meta[split]["auroc"]
                    .as_f64()
                    .unwrap_or_else(|| panic!("{name} {split}: {meta}"));
                assert!((0.0..=1.0).contains(&auroc), "{name} {split} auroc {auroc}");
                let ci = meta[split]["auroc_ci"].as_array().unwrap();
                assert!(
                    ci[0].as_f64().unwrap() <= auroc && auroc <= ci[1].as_f64().unwrap(),
                    "{name}: {ci:?}"
                );
                for k in ["ece", "brier", "accuracy"] {
                    let v = meta[split][k].as_f64().unwrap();
                    assert!((0.0..=1.0).contains(&v), "{name} {split} {k} = {v}");
                }
            }
            let scores = at(&format!("{name}.scores"));
            assert_eq!(
                scores["meta"]["rows"].as_u64().unwrap(),
                n_train + n_val + n_test
            );
            if probe == "attention" {
                let out = export(d, &format!("{name}.probe"));
                let png = std::fs::read(out.join("curve.png")).unwrap();
                assert_eq!(&png[..4], b"\x89PNG", "training curve plotted");
                let cfg: Value = serde_json::from_str(
                    &std::fs::read_to_string(out.join("config.json")).unwrap(),
                )
                .unwrap();
                assert_eq!(
                    cfg["seeds"].as_array().unwrap().len(),
                    2,
                    "the dev profile trains two seeds"
                );
                assert!(meta["validation"]["auroc"].is_number());
            }
        }
    }
    // The finetuned-classifier baseline scores every split with the same metrics.
    let finetuned = at("finetuned.scores");
    for split in ["train", "validation", "test"] {
        let m = &finetuned["meta"]["metrics"][split];
        assert!(
            (0.0..=1.0).contains(&m["auroc"].as_f64().unwrap()),
            "{split}: {m}"
        );
    }
    let lines = std::fs::read_to_string(export(d, "finetuned.scores")).unwrap();
    assert_eq!(lines.lines().count() as u64, n_train + n_val + n_test);
    let out = export(d, "finetuned.classifier");
    for f in [
        "adapter/adapter_config.json",
        "adapter/adapter_model.safetensors",
        "head.safetensors",
        "config.json",
        "metrics.json",
        "loss.png",
    ] {
        assert!(out.join(f).is_file(), "finetuned.classifier lacks {f}");
    }
    let head = std::fs::read(out.join("head.safetensors")).unwrap();
    let head = SafeTensors::deserialize(&head).unwrap();
    assert_eq!(
        f32s(&head, "score.weight").0,
        vec![1, 64],
        "one logit over d = 64"
    );
    let prompted = at("prompted");
    let m = &prompted["meta"]["metrics"]["test"];
    assert_eq!(prompted["meta"]["rows"].as_u64().unwrap(), n_test);
    assert!((0.0..=1.0).contains(&m["auroc"].as_f64().unwrap()), "{m}");
    // The report: a test row per probe cell and the baseline, plots per layer beside it, and
    // `dag show` prints the table.
    let files: Vec<String> = at("report")["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    for f in [
        "results.md",
        "results.json",
        "roc-test-layer-0.png",
        "reliability-validation-layer-2.png",
    ] {
        assert!(files.iter().any(|p| p == f), "{f} not in {files:?}");
    }
    let md = std::fs::read_to_string(export(d, "report").join("results.md")).unwrap();
    let test = md.split_once("## test").unwrap().1;
    for layer in [0, 1, 2] {
        for probe in PROBES {
            let row = format!("| probe | {layer} | {probe} | ");
            assert_eq!(test.matches(&row).count(), 1, "{row} in\n{md}");
        }
    }
    let baseline = format!("| prompted | - | - | {n_test} (");
    assert!(test.contains(&baseline), "{baseline} in\n{md}");
    let finetuned = format!("| finetuned | - | - | {n_test} (");
    assert!(test.contains(&finetuned), "{finetuned} in\n{md}");
    let shown = text(&dag(d, &["show", "report"]));
    assert!(
        shown.contains("## test") && shown.contains(&baseline),
        "{shown}"
    );
    // Nothing reruns.
    let o = dag(
        d,
        &[
            "run",
            "probes.toml",
            "--profile",
            "dev",
            "--set",
            "pairs.sample=20",
            "--set",
            "probe.epochs=3",
        ],
    );
    assert!(text(&o).contains("0 ran"), "{}", text(&o));
}

/// `graphs/probes.toml` (Models Under Pressure, the paper's way) with the tiny random model
/// writing, judging and being probed: its layers 0 and 1 for 6, 15, 24, so adding layer 2
/// is an edit the test can make.
/// The tiny random Llama with a longer context, under `dir`: the judge reads the whole
/// rubric, thousands of the tiny tokenizer's tokens (RoPE has no learned positions to
/// outgrow). One copy serves every project of a test: a `model` node's reference names its
/// path.
fn long_context_tiny_model(dir: &Path) -> PathBuf {
    let tiny = dir.join("tiny-llama-long");
    std::fs::create_dir_all(&tiny).unwrap();
    for f in std::fs::read_dir(tiny_model()).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, tiny.join(f.file_name().unwrap())).unwrap();
    }
    let config = tiny.join("config.json");
    let mut c: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    c["max_position_embeddings"] = 8192.into();
    std::fs::write(&config, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    tiny
}

fn mup_graph_on_the_tiny_model(dir: &Path, tiny: &Path, layers: &str) {
    repo_graph_on(dir, "probes.toml", tiny, layers);
}

fn statuses(dir: &Path) -> BTreeMap<String, String> {
    common::run_statuses(&dag(dir, &["--json", "log", "-n", "1"]))
}

#[test]
fn the_mup_graph_labels_its_own_data_reports_in_and_out_of_distribution_and_a_new_layer_runs_only_its_cells()
 {
    let models = tempfile::tempdir().unwrap();
    let tiny = long_context_tiny_model(models.path());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    mup_graph_on_the_tiny_model(d, &tiny, "[0, 1]");
    let args = [
        "run",
        "probes.toml",
        "--profile",
        "dev",
        "--set",
        "probe.epochs=3",
    ];
    let o = dag(d, &args);
    assert!(o.status.success(), "{}", text(&o));
    let printed = text(&o);
    let at = |t: &str| show(d, t);

    // The data the graph wrote: 40 drawn combinations, each asked for as a high- and a
    // low-stakes situation, one message each.
    let factors = at("factors");
    assert_eq!(factors["meta"]["rows"], 80);
    assert_eq!(factors["meta"]["combinations"], 40);
    assert_eq!(
        factors["meta"]["factors"],
        serde_json::json!({"role_of_user": 10, "impact_factor": 20, "topic": 24,
            "prompt_style": 5, "tone": 4, "language": 4, "length": 4})
    );
    assert_eq!(at("prompts")["meta"]["rows"], 80);
    // Every row labelled by the rubric, both labels used (the calibrated local judge), and
    // the agreement with the intended stakes reported.
    for (node, rows, compared) in [("labelled", 80, "stakes"), ("hh_labelled", 40, "harmful")] {
        let m = &at(&format!("{node}.metrics"))["meta"];
        assert_eq!(m["rows"], rows, "{node}: {m}");
        assert_eq!(
            m["unlabelled"], 0,
            "a local judge always picks a label: {m}"
        );
        let (low, high) = (
            m["counts"]["Low Stakes"].as_u64().unwrap(),
            m["counts"]["High Stakes"].as_u64().unwrap(),
        );
        assert_eq!(low + high, rows);
        assert!(low > 0 && high > 0, "{node}: {m}");
        assert_eq!(m["agreement_with_existing"]["column"], compared);
        assert_eq!(
            m["calibration"]["content_free"],
            serde_json::json!(["N/A", "", "[MASK]"])
        );
    }
    // Balanced, then split by combination: the three splits partition the balanced rows.
    let balanced = at("balanced")["meta"].clone();
    let after = balanced["after"].as_object().unwrap();
    assert_eq!(after["0"], after["1"], "{balanced}");
    let rows = |t: &str| at(t)["meta"]["rows"].as_u64().unwrap();
    let (train, val, test) = (
        rows("splits.train"),
        rows("splits.validation"),
        rows("splits.test"),
    );
    assert_eq!(train + val + test, balanced["rows"].as_u64().unwrap());
    assert!(train > 0 && val > 0 && test > 0);
    let test_rows = at("test_rows")["meta"].clone();
    assert_eq!(
        test_rows["rows"].as_u64().unwrap(),
        test + rows("hh_balanced"),
        "{test_rows}"
    );
    // The report, printed by `dag run`: every probe cell and both baselines, with the test
    // split broken down by source dataset.
    for header in ["test AUROC", "test `synthetic`", "test `hh-rlhf`"] {
        assert!(printed.contains(header), "{header} in\n{printed}");
    }
    for layer in [0, 1] {
        for probe in PROBES {
            let row = format!("| probe | {layer} | {probe} | ");
            assert_eq!(printed.matches(&row).count(), 1, "{row} in\n{printed}");
        }
    }
    assert!(printed.contains("| prompted | - | - | - |"), "{printed}");
    assert!(printed.contains("| finetuned | - | - | "), "{printed}");
    let md = std::fs::read_to_string(export(d, "report").join("results.md")).unwrap();
    assert!(md.contains("### test: per group"), "{md}");

    // Another directory, the same bytes: generation, judging, splits and probes are
    // functions of their inputs.
    let elsewhere = tempfile::tempdir().unwrap();
    mup_graph_on_the_tiny_model(elsewhere.path(), &tiny, "[0, 1]");
    let o = dag(elsewhere.path(), &args);
    assert!(o.status.success(), "{}", text(&o));
    assert_same_outputs(d, elsewhere.path());

    // Adding a layer: every extraction's key changes (`layers` is a param), but the stored
    // layers come back with the same bytes, so only the new layer's probes and the report run.
    let before = common::last_run_outputs(d);
    mup_graph_on_the_tiny_model(d, &tiny, "[0, 1, 2]");
    let o = dag(d, &args);
    assert!(o.status.success(), "{}", text(&o));
    let st = statuses(d);
    let ran: Vec<&str> = st
        .iter()
        .filter(|(_, s)| *s == "Ran")
        .map(|(n, _)| n.as_str())
        .collect();
    let mut expected: Vec<String> = ["acts_train", "acts_val", "acts_test"]
        .iter()
        .flat_map(|a| (0..3).map(move |l| format!("{a}[layer={l}]")))
        .chain(PROBES.iter().map(|p| format!("probe[layer=2,probe={p}]")))
        .chain(["report".to_string()])
        .collect();
    expected.sort();
    assert_eq!(ran, expected, "{st:?}");
    for (instance, outputs) in &before {
        if instance.starts_with("acts_") {
            assert_eq!(
                &common::last_run_outputs(d)[instance],
                outputs,
                "{instance} keeps its bytes"
            );
        }
    }
}
