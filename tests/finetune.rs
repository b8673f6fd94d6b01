//! `finetune` end to end through `dag` and `dag-worker` on the tiny random Llama: checkpoints
//! that `generate` loads, a kill -9 mid-training that resumes to bit-identical weights, and bad
//! input. Needs `dag-worker` built beside `dag` (scripts/test builds it first).

use std::path::{Path, PathBuf};

mod common;
use common::{assert_same_outputs, dag, kill_training_after, text, tiny_model, write_project};

/// A graph training the tiny Llama on `rows` statement/answer pairs, with `extra` lines
/// appended to the finetune node (and optionally more nodes after it).
fn graph(dir: &Path, rows: usize, finetune: &str, after: &str) {
    let tiny = tiny_model();
    let data: String = (0..rows)
        .map(|i| {
            format!(
                "{}\n",
                serde_json::json!({
                    "statement": format!("Statement number {i} about animals."),
                    "answer": if i % 2 == 0 { "It is morally wrong." } else { "It is acceptable." },
                })
            )
        })
        .collect();
    std::fs::write(dir.join("train.jsonl"), data).unwrap();
    write_project(
        dir,
        "g.toml",
        &format!(
            r#"
[node.rows]
type = "dataset"
path = "train.jsonl"

[node.tiny]
type = "model"
path = "{}"
device = "cpu"

[node.ft]
type = "finetune"
inputs = {{ model = "tiny.model", dataset = "rows.dataset" }}
prompt = "{{statement}}"
response = "{{answer}}"
system_prompt = "You are a test."
drop_system = true
rank = 4
alpha = 8.0
weight_decay = 0.01
warmup_steps = 2
schedule = "cosine"
batch_size = 2
grad_accum = 2
seed = 5
{finetune}
{after}
"#,
            tiny.display()
        ),
    );
}

fn export(dir: &Path, target: &str) -> PathBuf {
    let dest = dir.join(format!("export-{}", target.replace('.', "-")));
    if dest.exists() {
        return dest;
    }
    let o = dag(dir, &["export", target, dest.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    dest
}

/// Every file under `dir`, relative path to bytes.
fn files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The checkpoints of `ft` exported element by element: `name/relative path` to bytes.
fn checkpoints(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    // A list artifact exports as its JSON index of element artifacts.
    let index: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(export(dir, "ft.checkpoints")).unwrap()).unwrap();
    let mut out = std::collections::BTreeMap::new();
    for (i, item) in index.iter().enumerate() {
        let hex = item["artifact"].as_str().unwrap();
        let name = item["name"].as_str().unwrap();
        let dest = export(dir, hex);
        for (k, v) in files(&dest) {
            out.insert(format!("{i:02}-{name}/{k}"), v);
        }
    }
    out
}

/// A `generate` node mapped over the finetune node's checkpoints.
const GENERATE_FROM_EACH_CHECKPOINT: &str = r#"
[node.gen]
type = "generate"
inputs = { dataset = "rows.dataset", model = "ft.checkpoints[*]" }
prompt = "{statement}"
max_new_tokens = 4
"#;

#[test]
fn checkpoints_load_in_generate_and_the_loss_falls() {
    let d = tempfile::tempdir().unwrap();
    graph(
        d.path(),
        16,
        "epochs = 4\nsave_interval = 4\ndropout = 0.0\nlr = 0.01",
        GENERATE_FROM_EACH_CHECKPOINT,
    );
    let o = dag(d.path(), &["run", "g.toml", "-q"]);
    assert!(o.status.success(), "{}", text(&o));
    let all = checkpoints(d.path());
    let names: std::collections::BTreeSet<String> = all
        .keys()
        .filter_map(|k| k.split('/').next().map(str::to_string))
        .collect();
    // 16 rows / (2 x 2) = 4 steps an epoch, 16 steps, a checkpoint every 4.
    assert_eq!(names.len(), 4, "{names:?}");
    let first = names.iter().next().unwrap();
    for f in [
        "model.json",
        "adapter/adapter_config.json",
        "adapter/adapter_model.safetensors",
    ] {
        assert!(
            all.contains_key(&format!("{first}/{f}")),
            "{first}/{f}: {:?}",
            all.keys()
        );
    }
    let reference: serde_json::Value =
        serde_json::from_slice(&all[&format!("{first}/model.json")]).unwrap();
    assert_eq!(reference["adapter"], "adapter");
    assert_eq!(reference["step"], 4);
    let metrics = export(d.path(), "ft.metrics");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(metrics.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 16);
    let loss = |i: usize| lines[i]["loss"].as_f64().unwrap();
    assert!(
        loss(15) < 0.5 * loss(0),
        "memorising 16 short answers: loss {} -> {}",
        loss(0),
        loss(15)
    );
    assert!(
        lines[0]["lr"].as_f64().unwrap() == 0.0,
        "warmup starts at 0"
    );
    assert!(
        lines.iter().all(|l| l.get("tokens_per_s").is_none()),
        "wall-clock figures stay out of artifacts: {}",
        lines[0]
    );
    let png = std::fs::read(metrics.join("loss.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    // `final` is the last checkpoint, the same artifact as the list's last element, so a
    // node evaluating only the end of training shares its cache with the map's last one.
    let index: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(export(d.path(), "ft.checkpoints")).unwrap())
            .unwrap();
    let o = dag(d.path(), &["--json", "show", "ft.final"]);
    let shown: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        shown["artifact"],
        index.last().unwrap()["artifact"],
        "{}",
        text(&o)
    );
    // `gen` mapped over the 4 checkpoints (one instance each), all cached on a rerun.
    let o = dag(d.path(), &["run", "g.toml"]);
    assert!(text(&o).contains("0 ran, 7 cached"), "{}", text(&o));
}

#[test]
fn killed_finetune_resumes_to_bit_identical_weights() {
    let settings = "max_steps = 120\nsave_interval = 20\ndropout = 0.1\nlr = 0.001";
    let a = tempfile::tempdir().unwrap();
    graph(a.path(), 24, settings, "");
    let o = dag(a.path(), &["run", "g.toml", "-q"]);
    assert!(o.status.success(), "{}", text(&o));
    let reference = checkpoints(a.path());
    assert_eq!(reference.len(), 6 * 3, "6 checkpoints of 3 files");

    let b = tempfile::tempdir().unwrap();
    graph(b.path(), 24, settings, "");
    let saved = kill_training_after(b.path(), "step-", 2);
    assert!(saved == 2, "killed mid-training ({saved} saved)");
    let o = dag(b.path(), &["run", "g.toml"]);
    assert!(o.status.success(), "{}", text(&o));
    let log = std::fs::read_dir(b.path().join(".dag/logs"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect::<String>();
    assert!(
        log.contains("resuming from the step"),
        "the rerun resumed:\n{log}"
    );
    let resumed = checkpoints(b.path());
    assert_eq!(
        resumed.keys().collect::<Vec<_>>(),
        reference.keys().collect::<Vec<_>>()
    );
    for (k, v) in &reference {
        assert!(resumed[k] == *v, "`{k}` differs after resuming");
    }
    // The whole graph, metrics included: the same bytes in both directories.
    assert_same_outputs(a.path(), b.path());
}

#[test]
fn bad_input_fails_with_the_reason() {
    let cases = [
        (
            "target_modules = [\"q\", \"qkv\"]",
            4,
            "unknown LoRA target module `qkv`",
        ),
        ("max_len = 3", 4, "no trainable token after truncation"),
        ("max_steps = 2", 0, "The training dataset is empty"),
        (
            // Warmup makes step 1's rate 0, step 2's huge: step 3's loss is not finite.
            "lr = 1e30\nmax_steps = 4\nsave_interval = 1",
            8,
            "Training failed at step 3",
        ),
    ];
    for (extra, rows, want) in cases {
        let d = tempfile::tempdir().unwrap();
        graph(d.path(), rows, extra, "");
        let o = dag(d.path(), &["run", "g.toml"]);
        assert!(!o.status.success(), "{extra}: {}", text(&o));
        assert!(text(&o).contains(want), "{extra}: {}", text(&o));
    }
}

#[test]
fn a_diverged_run_can_stop_and_keep_its_earlier_checkpoints() {
    let d = tempfile::tempdir().unwrap();
    graph(
        d.path(),
        8,
        "lr = 1e30\nmax_steps = 4\nsave_interval = 1\non_nan = \"stop\"",
        "",
    );
    let o = dag(d.path(), &["run", "g.toml"]);
    assert!(o.status.success(), "{}", text(&o));
    let all = checkpoints(d.path());
    let names: std::collections::BTreeSet<&str> =
        all.keys().filter_map(|k| k.split('/').next()).collect();
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["00-step-1", "01-step-2"],
        "the checkpoints before the non-finite step 3"
    );
}

#[test]
fn full_finetuning_packed_and_checkpointed_exports_a_hugging_face_folder() {
    let d = tempfile::tempdir().unwrap();
    graph(
        d.path(),
        16,
        "method = \"full\"\npacking = true\nmax_len = 256\ngradient_checkpointing = true\nmax_steps = 2\nlr = 1e-3",
        GENERATE_FROM_EACH_CHECKPOINT,
    );
    let o = dag(d.path(), &["run", "g.toml", "-q"]);
    assert!(o.status.success(), "{}", text(&o));
    let all = checkpoints(d.path());
    for f in [
        "hf/config.json",
        "hf/model.safetensors",
        "hf/tokenizer.json",
        "hf/tokenizer_config.json",
        "hf/generation_config.json",
    ] {
        assert!(
            all.contains_key(&format!("00-step-2/{f}")),
            "{f}: {:?}",
            all.keys()
        );
    }
    let reference: serde_json::Value =
        serde_json::from_slice(&all["00-step-2/model.json"]).unwrap();
    assert_eq!(reference["weights"], "hf/model.safetensors");
    // 16 short examples packed into 256-token rows: fewer rows than examples.
    let o = dag(d.path(), &["show", "ft.checkpoints", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let shown: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = shown["meta"]["rows"].as_u64().unwrap();
    assert!(rows < 16, "packed rows: {rows}");

    // The folder, loaded as a plain Hugging Face model, generates what the checkpoint does.
    let index: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(export(d.path(), "ft.checkpoints")).unwrap())
            .unwrap();
    let element = export(d.path(), index[0]["artifact"].as_str().unwrap());
    let mut g = std::fs::read_to_string(d.path().join("g.toml")).unwrap();
    g.push_str(&format!(
        r#"
[node.exported]
type = "model"
path = "{}"
device = "cpu"

[node.gen_hf]
type = "generate"
inputs = {{ dataset = "rows.dataset", model = "exported.model" }}
prompt = "{{statement}}"
max_new_tokens = 4
"#,
        element.join("hf").display()
    ));
    std::fs::write(d.path().join("g.toml"), g).unwrap();
    let o = dag(d.path(), &["run", "g.toml", "-q"]);
    assert!(o.status.success(), "{}", text(&o));
    let completions = |target: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(export(d.path(), target))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["completion"].clone())
            .collect()
    };
    let from_checkpoint = completions("gen[step-2].generations");
    assert_eq!(from_checkpoint.len(), 16);
    assert_eq!(from_checkpoint, completions("gen_hf.generations"));
}
