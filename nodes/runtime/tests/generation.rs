//! Generation behaviour on the tiny fixture models: sampling reproducibility, `n`, stop strings,
//! EOS from generation_config.json, the scorer, identities and load errors.

use std::path::{Path, PathBuf};

use dag_runtime::{
    DType, DeviceSpec, Error, FinishReason, GenerateRequest, LoadOptions, Model, ModelSource,
    Prompt, SamplingParams, ScoreRequest,
};

fn tiny(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn cpu() -> LoadOptions {
    LoadOptions {
        device: DeviceSpec::Cpu,
        dtype: None,
    }
}

fn load(name: &str) -> Model {
    Model::load(&ModelSource::HfDir(tiny(name)), cpu()).unwrap()
}

fn text(p: &str) -> GenerateRequest {
    GenerateRequest::new(Prompt::Text(p.into()))
}

/// A copy of a fixture folder whose `file` is rewritten by `edit`.
fn edited_copy(name: &str, file: &str, edit: impl Fn(&mut serde_json::Value)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(tiny(name)).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    let path = dir.path().join(file);
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut json);
    std::fs::write(&path, json.to_string()).unwrap();
    dir
}

#[test]
fn samples_depend_on_the_item_seed_not_on_the_batch() {
    let model = load("tiny-llama");
    let params = SamplingParams {
        max_new_tokens: 12,
        temperature: 1.0,
        top_p: 0.95,
        top_k: 50,
        n: 3,
        ignore_eos: true,
        ..SamplingParams::default()
    };
    let alone = model
        .generate(&[text("Pigs are")], &params, &mut |_| {})
        .unwrap();
    let mixed = model
        .generate(
            &[
                text("The quick brown fox jumps"),
                text("Pigs are"),
                text("1, 2,"),
            ],
            &params,
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(alone[0].completions, mixed[1].completions);
    let samples: Vec<&Vec<u32>> = alone[0].completions.iter().map(|c| &c.token_ids).collect();
    assert_eq!(samples.len(), 3);
    assert!(
        samples[0] != samples[1] || samples[1] != samples[2],
        "n samples all identical"
    );
    // An explicit seed changes the draw.
    let seeded = GenerateRequest {
        seed: Some(99),
        ..text("Pigs are")
    };
    let other = model.generate(&[seeded], &params, &mut |_| {}).unwrap();
    assert_ne!(other[0].completions, alone[0].completions);
}

#[test]
fn stop_strings_cut_the_completion() {
    let model = load("tiny-llama");
    let mut params = SamplingParams {
        max_new_tokens: 32,
        ignore_eos: true,
        ..SamplingParams::default()
    };
    let full = model
        .generate(&[text("Hello world")], &params, &mut |_| {})
        .unwrap();
    let full = &full[0].completions[0];
    let chars: Vec<char> = full.text.chars().collect();
    assert!(chars.len() > 12, "{:?}", full.text);
    let stop: String = chars[8..11].iter().collect();
    let cut = full.text.find(&stop).unwrap();
    params.stop = vec![stop.clone(), "never appears \u{1F980}".into()];
    let out = model
        .generate(&[text("Hello world")], &params, &mut |_| {})
        .unwrap();
    let c = &out[0].completions[0];
    assert_eq!(c.text, full.text[..cut], "stop {stop:?}");
    assert_eq!(c.finish_reason, FinishReason::Stop);
    assert!(c.completion_tokens < 32);
    assert_eq!(c.token_ids, full.token_ids[..c.completion_tokens]);
}

#[test]
fn eos_from_generation_config_stops_with_reason_stop() {
    let model = load("tiny-llama");
    let params = SamplingParams {
        max_new_tokens: 20,
        ignore_eos: true,
        ..SamplingParams::default()
    };
    let prompt = "Animals such as pigs";
    let free = model
        .generate(&[text(prompt)], &params, &mut |_| {})
        .unwrap();
    let ids = free[0].completions[0].token_ids.clone();
    let eos = ids[5];
    let first = ids.iter().position(|&t| t == eos).unwrap();
    let dir = edited_copy("tiny-llama", "generation_config.json", |g| {
        g["eos_token_id"] = serde_json::json!([eos, 100_000]);
    });
    let model = Model::load(&ModelSource::HfDir(dir.path().into()), cpu()).unwrap();
    assert_eq!(model.eos_token_ids(), &[eos, 100_000]);
    let params = SamplingParams {
        ignore_eos: false,
        ..params
    };
    let out = model
        .generate(&[text(prompt), text("Hello")], &params, &mut |_| {})
        .unwrap();
    let c = &out[0].completions[0];
    assert_eq!(c.token_ids, ids[..=first]);
    assert_eq!(c.finish_reason, FinishReason::Stop);
    assert_eq!(c.completion_tokens, first + 1);
    assert_eq!(
        c.prompt_tokens,
        model.tokenizer().encode(prompt, true).unwrap().len()
    );
}

#[test]
fn scores_equal_log_softmax_of_a_full_forward_pass() {
    let model = load("tiny-qwen3");
    let context = "The capital of France is ";
    let continuations = ["Paris", "a city in Europe", "1234"];
    let scores = model
        .score(&[ScoreRequest {
            context: context.into(),
            continuations: continuations.iter().map(|s| s.to_string()).collect(),
        }])
        .unwrap();
    let tok = model.tokenizer();
    let ctx_len = tok.encode(context.trim_end(), true).unwrap().len();
    for (cont, score) in continuations.iter().zip(&scores[0]) {
        let whole = tok
            .encode(
                &format!("{}{}", context.trim_end(), format_args!(" {cont}")),
                true,
            )
            .unwrap();
        let out = model
            .forward(std::slice::from_ref(&whole), &[], true)
            .unwrap();
        let logprobs = out
            .logits
            .unwrap()
            .get(0)
            .log_softmax(-1, tch::Kind::Double);
        let mut expected = 0.0;
        let mut greedy = true;
        for (t, &token) in whole.iter().enumerate().skip(ctx_len) {
            let row = logprobs.get(t as i64 - 1);
            expected += row.double_value(&[i64::from(token)]);
            greedy &= row.argmax(0, false).int64_value(&[]) == i64::from(token);
        }
        assert_eq!(score.tokens, whole.len() - ctx_len, "{cont}");
        assert!(
            (score.logprob - expected).abs() < 1e-4,
            "{cont}: {} vs {expected}",
            score.logprob
        );
        assert_eq!(score.is_greedy, greedy, "{cont}");
    }
}

/// Many contexts of different lengths, each with 1-4 continuations, some sharing a prefix
/// and some not: the scores must not depend on how many contexts run together.
#[test]
fn scores_do_not_depend_on_batch_size() {
    let model = load("tiny-llama");
    let tok = model.tokenizer();
    let mut groups = Vec::new();
    for i in 0..40usize {
        let context = format!(
            "Question {i}: {} Answer:",
            "is it true that the sky is blue ".repeat(1 + i % 5)
        );
        let ctx = tok.encode(&context, false).unwrap();
        let pairs: Vec<(Vec<u32>, Vec<u32>)> = (0..1 + i % 4)
            .map(|c| {
                let cont = tok
                    .encode(&format!(" choice {c} {}", "x".repeat(c * 3)), false)
                    .unwrap();
                (ctx.clone(), cont)
            })
            .collect();
        groups.push(pairs);
    }
    let at = |b: usize| model.score_tokens(&groups, b).unwrap();
    let one = at(1);
    for b in [7, 32] {
        let other = at(b);
        for (g, (x, y)) in one.iter().zip(&other).enumerate() {
            assert_eq!(x.len(), y.len());
            for (a, c) in x.iter().zip(y) {
                assert!(
                    (a.logprob - c.logprob).abs() < 1e-5,
                    "group {g} at batch {b}: {} vs {}",
                    a.logprob,
                    c.logprob
                );
                assert_eq!(a.tokens, c.tokens);
                assert_eq!(a.is_greedy, c.is_greedy);
            }
        }
    }
    // And a batch of one group equals the unbatched full-sequence computation.
    let full = groups[3][1]
        .0
        .iter()
        .chain(&groups[3][1].1)
        .copied()
        .collect::<Vec<_>>();
    let out = model
        .forward(std::slice::from_ref(&full), &[], true)
        .unwrap();
    let logprobs = out
        .logits
        .unwrap()
        .get(0)
        .log_softmax(-1, tch::Kind::Double);
    let n_ctx = groups[3][1].0.len();
    let expected: f64 = (n_ctx..full.len())
        .map(|t| {
            logprobs
                .get(t as i64 - 1)
                .double_value(&[i64::from(full[t])])
        })
        .sum();
    assert!((one[3][1].logprob - expected).abs() < 1e-4);
}

#[test]
fn identity_covers_weights_and_dtype() {
    let a = load("tiny-llama");
    assert_eq!(a.identity(), load("tiny-llama").identity());
    assert_ne!(a.identity(), load("tiny-qwen3").identity());
    let bf16 = Model::load(
        &ModelSource::HfDir(tiny("tiny-llama")),
        LoadOptions {
            device: DeviceSpec::Cpu,
            dtype: Some(DType::Bf16),
        },
    )
    .unwrap();
    assert_ne!(a.identity(), bf16.identity());
    assert_eq!(a.dtype(), DType::F32);
}

#[test]
fn unsupported_architecture_lists_the_supported_ones() {
    let dir = edited_copy("tiny-llama", "config.json", |c| {
        c["architectures"] = serde_json::json!(["MistralForCausalLM"]);
    });
    let err = Model::load(&ModelSource::HfDir(dir.path().into()), cpu()).unwrap_err();
    assert!(matches!(err, Error::UnsupportedArchitecture { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("MistralForCausalLM") && msg.contains("Qwen3ForCausalLM"),
        "{msg}"
    );
}

#[test]
fn pickled_weights_are_refused() {
    let dir = edited_copy("tiny-llama", "config.json", |_| {});
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    std::fs::write(dir.path().join("pytorch_model.bin"), b"pickle").unwrap();
    let err = Model::load(&ModelSource::HfDir(dir.path().into()), cpu()).unwrap_err();
    assert!(matches!(err, Error::PickleRefused { .. }), "{err:?}");
}

#[test]
fn over_long_requests_and_bad_hidden_indices_are_errors() {
    let model = load("tiny-llama");
    let params = SamplingParams {
        max_new_tokens: 1000,
        ..SamplingParams::default()
    };
    let err = model
        .generate(&[text("Hi")], &params, &mut |_| {})
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ContextOverflow {
                context: 256,
                max_new_tokens: 1000,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("context of 256 tokens"), "{err}");
    let err = model.forward(&[vec![1, 2]], &[3], false).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NoSuchHiddenState {
                index: 3,
                layers: 2
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("valid: 0..=2"), "{err}");
    let err = model.forward(&[vec![]], &[], true).unwrap_err();
    assert!(matches!(err, Error::EmptyInput { .. }), "{err:?}");
    let hot = SamplingParams {
        top_p: 0.0,
        ..SamplingParams::default()
    };
    let err = model
        .generate(&[text("Hi")], &hot, &mut |_| {})
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Setting {
                setting: "top_p",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "Failed to generate: `top_p` must be in (0, 1], got 0"
    );
}

#[test]
fn chat_prompts_render_with_the_template() {
    let model = load("tiny-qwen3");
    let messages = dag_runtime::chat::user_turn(Some("Be brief."), "Hi");
    let rendered = model.render_chat(&messages, true).unwrap();
    assert_eq!(
        rendered,
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    let (prompt, ids) = model.encode_prompt(&Prompt::Chat(messages)).unwrap();
    assert_eq!(prompt, rendered);
    assert_eq!(ids, model.tokenizer().encode(&rendered, false).unwrap());
}
