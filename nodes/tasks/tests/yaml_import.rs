//! Import of lm-eval task YAML: field forms, includes, groups, local data, and every refusal.
//! The YAML here is written for these tests in lm-eval's schema.

use std::path::{Path, PathBuf};

use dag_diagnostic::Hint;
use dag_tasks::{
    Error, MetricKind, OutputType, Request, SamplerKind, Task, import_lm_eval_dir,
    import_lm_eval_yaml,
};

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("dag-tasks-yaml-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(rel)
}

fn gsm8k_yaml(test: &Path) -> String {
    format!(
        r#####"task: gsm8k_local
dataset_path: json
dataset_kwargs:
  data_files:
    test: {test}
    train: {test}
output_type: generate_until
training_split: train
fewshot_split: train
test_split: test
doc_to_text: "Question: {{{{question}}}}\nAnswer:"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    ignore_case: true
    ignore_punctuation: false
    regexes_to_ignore: [",", "\\$", "(?s).*#### ", "\\.$"]
generation_kwargs:
  until: ["Question:", "</s>", "<|im_end|>"]
  do_sample: false
  temperature: 0.0
repeats: 1
num_fewshot: 5
filter_list:
  - name: strict-match
    filter:
      - function: regex
        regex_pattern: "#### (\\-?[0-9\\.\\,]+)"
      - function: take_first
  - name: flexible-extract
    filter:
      - function: regex
        group_select: -1
        regex_pattern: "(-?[$0-9.,]{{2,}})|(-?[0-9]+)"
      - function: take_first
metadata:
  version: 3.0
"#####,
        test = test.display()
    )
}

#[test]
fn imported_gsm8k_yaml_builds_the_same_requests_as_lm_eval() {
    let dir = TempDir::new("gsm8k");
    let path = dir.write("gsm8k.yaml", &gsm8k_yaml(&shared("gsm8k/test.jsonl")));
    let set = import_lm_eval_yaml(&path).unwrap();
    let spec = &set.tasks[0];
    assert_eq!(spec.output_type, OutputType::GenerateUntil);
    assert_eq!(spec.fewshot.num, 5);
    assert_eq!(spec.fewshot.sampler, SamplerKind::Random);
    assert_eq!(spec.filters.len(), 2);
    assert!(!spec.excludes_eval_doc());
    let task = Task::new(spec.clone()).unwrap();
    let data = task.load_docs().unwrap();
    let prepared = task.prepare(&data, Some(8)).unwrap();
    let reference: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lm_eval_gsm8k.json"),
        )
        .unwrap(),
    )
    .unwrap();
    for (doc, r) in prepared.iter().zip(&reference) {
        let Request::Generate(g) = &doc.requests[0] else {
            panic!("generation task")
        };
        assert_eq!(g.context, r["requests"][0]["context"].as_str().unwrap());
    }
}

#[test]
fn include_template_python_list_choices_and_group() {
    let dir = TempDir::new("group");
    let data = shared("anthropic-advanced-ai-risk/human_generated_evals");
    dir.write(
        "_template_yaml",
        r#"dataset_path: json
output_type: multiple_choice
validation_split: validation
target_delimiter: ""
doc_to_text: "Human: {{question}}\n\nAssistant:"
doc_to_target: 0
doc_to_choice: "{{[answer_matching_behavior, answer_not_matching_behavior]}}"
should_decontaminate: true
doc_to_decontamination_query: "{{sentence_good}} {{sentence_bad}}"
metric_list:
  - metric: acc
"#,
    );
    for cat in ["coordinate-itself", "survival-instinct"] {
        dir.write(
            &format!("{cat}.yaml"),
            &format!(
                "include: _template_yaml\ntask: risk-{cat}\ndataset_kwargs:\n  data_files:\n    validation: {}\n",
                data.join(format!("{cat}.jsonl")).display()
            ),
        );
    }
    let group = dir.write(
        "_group.yaml",
        "group: risk\ntask:\n  - risk-coordinate-itself\n  - risk-survival-instinct\naggregate_metric_list:\n  - metric: acc\n    weight_by_size: True\n",
    );
    let set = import_lm_eval_yaml(&group).unwrap();
    assert_eq!(
        set.groups[0].tasks,
        ["risk-coordinate-itself", "risk-survival-instinct"]
    );
    assert_eq!(set.groups[0].aggregate[0].metric, MetricKind::Acc);
    assert!(set.groups[0].aggregate[0].weight_by_size);
    assert_eq!(set.tasks.len(), 2);
    let task = Task::new(set.task("risk-coordinate-itself").unwrap().clone()).unwrap();
    let docs = task.load_docs().unwrap();
    let prepared = task.prepare(&docs, Some(2)).unwrap();
    assert_eq!(prepared[0].choices, [" (A)", " (B)"]);
    let Request::Loglikelihood(ll) = &prepared[0].requests[1] else {
        panic!("multiple choice")
    };
    assert!(ll.context.ends_with("\n\nAssistant:"));
    assert_eq!(ll.continuation, " (B)");
    let all = import_lm_eval_dir(&dir.0).unwrap();
    assert_eq!((all.tasks.len(), all.groups.len()), (2, 1));
}

#[test]
fn function_hooks_are_refused_with_key_file_and_toml_hint() {
    let dir = TempDir::new("hooks");
    dir.write("base.yaml", "process_docs: !function utils.process_docs\n");
    let cases = [
        (
            "text.yaml",
            "task: t\ndoc_to_text: !function utils.doc_to_text\ndoc_to_target: a\n",
            "doc_to_text",
            "doc_to_text = ",
        ),
        (
            "metric.yaml",
            "task: t\ndoc_to_text: q\ndoc_to_target: a\nmetric_list:\n  - metric: acc\n    aggregation: !function utils.agg\n",
            "metric_list[0].aggregation",
            "metrics = ",
        ),
        (
            "inc.yaml",
            "include: base.yaml\ntask: t\ndoc_to_text: q\ndoc_to_target: a\n",
            "process_docs",
            "relabel",
        ),
    ];
    for (file, text, key, hint) in cases {
        let path = dir.write(file, text);
        let err = import_lm_eval_yaml(&path).unwrap_err();
        let Error::PythonHook {
            path: at,
            key: k,
            function,
            ..
        } = &err
        else {
            panic!("{file}: {err}")
        };
        assert_eq!(k, key);
        assert!(function.starts_with("utils."));
        // The hook inside an included file is reported against that file.
        let expected_file = if file == "inc.yaml" {
            "base.yaml"
        } else {
            file
        };
        assert!(at.ends_with(expected_file), "{}", at.display());
        let message = err.to_string();
        assert!(
            err.hint().is_some_and(|h| h.contains(hint)),
            "{message}: {:?}",
            err.hint()
        );
        assert!(message.contains(&format!("`{key}`")), "{message}");
    }
}

#[test]
fn other_unimportable_keys_are_named() {
    let dir = TempDir::new("unsupported");
    let cases = [
        (
            "a.yaml",
            "task: t\noutput_type: loglikelihood_rolling\ndoc_to_text: q\ndoc_to_target: a\n",
            "output_type",
        ),
        (
            "b.yaml",
            "task: t\ndoc_to_text: q\ndoc_to_target: a\nfilter_list:\n  - name: x\n    filter:\n      - function: custom_python\n",
            "filter_list[0].filter[0]",
        ),
        (
            "c.yaml",
            "task: t\ndoc_to_text: q\ndoc_to_target: a\nmetric_list:\n  - metric: bleu\n",
            "metric_list[0].metric",
        ),
        (
            "d.yaml",
            "task: t\ndoc_to_text: q\ndoc_to_target: a\nuse_prompt: promptsource:x\n",
            "use_prompt",
        ),
        (
            "e.yaml",
            "task: t\ndataset_path: json\ndoc_to_text: q\ndoc_to_target: a\n",
            "dataset_kwargs.data_files",
        ),
    ];
    for (file, text, key) in cases {
        let path = dir.write(file, text);
        match import_lm_eval_yaml(&path).unwrap_err() {
            Error::Unsupported { key: k, .. } => assert_eq!(k, key, "{file}"),
            other => panic!("{file}: {other}"),
        }
    }
    let cycle = dir.write("loop.yaml", "include: loop.yaml\ntask: t\n");
    assert!(matches!(
        import_lm_eval_yaml(&cycle).unwrap_err(),
        Error::IncludeCycle { .. }
    ));
}

#[test]
fn hub_datasets_import_without_files_and_say_how_to_add_them() {
    let dir = TempDir::new("hub");
    let path = dir.write(
        "nq.yaml",
        "task: nq\ndataset_path: some-org/nq_open\noutput_type: generate_until\nvalidation_split: validation\ndoc_to_text: \"Q: {{question}}?\\nA:\"\ndoc_to_target: \"{{answer}}\"\n",
    );
    let mut spec = import_lm_eval_yaml(&path).unwrap().tasks.remove(0);
    assert!(spec.splits.is_empty());
    // No generation_kwargs: lm-eval stops at the few-shot delimiter.
    assert_eq!(spec.generation.until, ["\n\n"]);
    let err = Task::new(spec.clone()).unwrap().load_docs().unwrap_err();
    assert!(
        err.to_string().contains("`validation` has no data file")
            && err.hint().is_some_and(|h| h.contains("set_split")),
        "{err}: {:?}",
        err.hint()
    );
    let file = dir.write(
        "v.jsonl",
        "{\"question\": \"who\", \"answer\": [\"a\", \"b\"]}\n",
    );
    spec.set_split("validation", file);
    let task = Task::new(spec).unwrap();
    let prepared = task.prepare(&task.load_docs().unwrap(), None).unwrap();
    // `{{answer}}` renders a Python list and is read back as several golds, as in lm-eval.
    assert_eq!(
        prepared[0].gold,
        dag_tasks::Gold::Texts(vec!["a".into(), "b".into()])
    );
}
