//! Chat-templated and system-instruction prompts against lm-eval 0.4.13's
//! `--apply_chat_template` / `--fewshot_as_multiturn` / `--system_instruction`
//! (`tests/fixtures/make_fixtures.py`, same ChatML-style template in both).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dag_tasks::{
    ChatMessage, ChatOptions, PreparedDoc, PromptOptions, Request, Task, TaskSpec, load_builtin,
    split_whitespace,
};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn builtin(name: &str) -> Vec<TaskSpec> {
    load_builtin(name, &root().join("../shared/data"))
        .unwrap()
        .unwrap()
        .tasks
}

fn chatml(messages: &[ChatMessage]) -> String {
    let mut out: String = messages
        .iter()
        .map(|m| format!("<|im_start|>{}\n{}<|im_end|>\n", m.role, m.content))
        .collect();
    out.push_str("<|im_start|>assistant\n");
    out
}

fn reference() -> BTreeMap<String, Value> {
    serde_json::from_str(&std::fs::read_to_string(fixture("lm_eval_chat.json")).unwrap()).unwrap()
}

fn assert_same(ours: &[PreparedDoc], reference: &Value) {
    let reference = reference.as_array().unwrap();
    assert_eq!(ours.len(), reference.len());
    for (doc, r) in ours.iter().zip(reference) {
        let requests = r["requests"].as_array().unwrap();
        assert_eq!(doc.requests.len(), requests.len());
        for (req, rr) in doc.requests.iter().zip(requests) {
            let context = rr["context"].as_str().unwrap();
            assert_eq!(doc.prompt, context);
            match req {
                Request::Loglikelihood(ll) => assert_eq!(
                    ll,
                    &split_whitespace(context, rr["continuation"].as_str().unwrap())
                ),
                Request::Generate(g) => assert_eq!(g.context, context),
            }
        }
    }
}

fn chat(multiturn: bool) -> ChatOptions<'static> {
    ChatOptions {
        fewshot_as_multiturn: multiturn,
        render: &chatml,
    }
}

#[test]
fn gsm8k_chat_single_and_multi_turn_match_lm_eval() {
    let reference = reference();
    for multiturn in [false, true] {
        let mut spec = builtin("gsm8k").remove(0);
        spec.set_split("train", root().join("../shared/data/gsm8k/test.jsonl"));
        spec.fewshot.num = 3;
        let task = Task::new(spec).unwrap();
        let docs = task.load_docs().unwrap();
        let options = PromptOptions {
            system_instruction: Some("You are a careful solver.".into()),
            chat: Some(chat(multiturn)),
        };
        let prepared = task.prepare_with(&docs, Some(3), &options).unwrap();
        assert_same(
            &prepared,
            &reference[&format!(
                "gsm8k_multiturn_{}",
                if multiturn { "True" } else { "False" }
            )],
        );
        let roles: Vec<&str> = prepared[0]
            .messages
            .iter()
            .map(|m| m.role.as_str())
            .collect();
        if multiturn {
            assert_eq!(
                roles,
                [
                    "system",
                    "user",
                    "assistant",
                    "user",
                    "assistant",
                    "user",
                    "assistant",
                    "user"
                ]
            );
        } else {
            assert_eq!(roles, ["system", "user"]);
        }
    }
}

#[test]
fn multiple_choice_chat_drops_the_target_delimiter_as_lm_eval_does() {
    let reference = reference();
    let mut spec = builtin("mmlu").remove(0);
    spec.set_split("test", fixture("mmlu_test.jsonl"));
    spec.set_split("dev", fixture("mmlu_dev.jsonl"));
    spec.fewshot.num = 2;
    let task = Task::new(spec).unwrap();
    let docs = task.load_docs().unwrap();
    let options = PromptOptions {
        system_instruction: Some("Be brief.".into()),
        chat: Some(chat(false)),
    };
    let prepared = task.prepare_with(&docs, Some(2), &options).unwrap();
    assert_same(&prepared, &reference["mmlu_singleturn"]);

    let risk = builtin("advanced_ai_risk")
        .into_iter()
        .find(|t| t.name.ends_with("survival-instinct"))
        .unwrap();
    let task = Task::new(risk).unwrap();
    let docs = task.load_docs().unwrap();
    let options = PromptOptions {
        system_instruction: None,
        chat: Some(chat(false)),
    };
    let prepared = task.prepare_with(&docs, Some(2), &options).unwrap();
    assert_same(&prepared, &reference["advanced_ai_risk_survival_instinct"]);
}

#[test]
fn a_system_instruction_without_chat_is_prepended_with_the_fewshot_delimiter() {
    let mut spec = builtin("mmlu").remove(0);
    spec.set_split("test", fixture("mmlu_test.jsonl"));
    spec.set_split("dev", fixture("mmlu_dev.jsonl"));
    spec.fewshot.num = 1;
    let task = Task::new(spec).unwrap();
    let docs = task.load_docs().unwrap();
    let options = PromptOptions {
        system_instruction: Some("Be brief.".into()),
        chat: None,
    };
    let prepared = task.prepare_with(&docs, Some(1), &options).unwrap();
    assert_same(&prepared, &reference()["mmlu_plain_system"]);
    assert!(prepared[0].messages.is_empty());
}
