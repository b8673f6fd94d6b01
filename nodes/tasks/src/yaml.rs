//! Import of lm-evaluation-harness task YAML, as lm-eval reads it.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value};

use crate::error::{Error, Result};
use crate::spec::{
    AggregateSpec, DocField, FilterSpec, FilterStep, GenerationSpec, GroupSpec, MetricKind,
    MetricSpec, OutputType, SamplerKind, TaskSet, TaskSpec,
};

/// Import one lm-eval YAML file: a task, or a group whose member tasks are looked up among
/// the YAML files of the same directory (and inline member definitions).
///
/// `include:` files are merged first, local keys winning. Splits are resolved to local files
/// when `dataset_path` is `json`/`csv` with `dataset_kwargs.data_files` (paths relative to the
/// YAML file) or a local directory holding `<split>.jsonl|json|csv`; for a Hub data set the
/// splits stay empty and the caller points them at files with [`TaskSpec::set_split`].
pub fn import_lm_eval_yaml(path: &Path) -> Result<TaskSet> {
    let (cfg, origin) = load(path, &mut HashSet::new())?;
    let base = path.parent().unwrap_or(Path::new("."));
    if cfg.contains_key("group") {
        let mut set = TaskSet::default();
        let group = convert_group(&cfg, &origin, base, &mut set)?;
        set.groups.push(group);
        Ok(set)
    } else {
        Ok(TaskSet {
            tasks: vec![convert_task(&cfg, &origin, base)?],
            groups: Vec::new(),
        })
    }
}

/// Import every `*.yaml` task and group file of a directory (not recursive). Files without a
/// `task:` or `group:` key (shared templates meant for `include:`) are skipped.
pub fn import_lm_eval_dir(dir: &Path) -> Result<TaskSet> {
    let mut set = TaskSet::default();
    for (cfg, origin) in scan_dir(dir)? {
        if cfg.contains_key("group") {
            let group = convert_group(&cfg, &origin, dir, &mut TaskSet::default())?;
            set.groups.push(group);
        } else if cfg.contains_key("task") {
            let task = convert_task(&cfg, &origin, dir)?;
            if set.task(&task.name).is_none() {
                set.tasks.push(task);
            }
        }
    }
    Ok(set)
}

/// The merged configurations of the directory's YAML files, in file name order.
fn scan_dir(dir: &Path) -> Result<Vec<(Mapping, PathBuf)>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    entries.sort();
    entries
        .iter()
        .map(|path| load(path, &mut HashSet::new()))
        .collect()
}

/// Read a YAML file, refuse Python hooks, and merge its `include:` chain.
fn load(path: &Path, seen: &mut HashSet<PathBuf>) -> Result<(Mapping, PathBuf)> {
    let canonical = std::fs::canonicalize(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !seen.insert(canonical.clone()) {
        return Err(Error::IncludeCycle {
            path: path.to_path_buf(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let value: Value = serde_yaml_ng::from_str(&text).map_err(|source| Error::Yaml {
        path: path.to_path_buf(),
        source,
    })?;
    let Value::Mapping(mut cfg) = value else {
        return Err(Error::Unsupported {
            path: path.to_path_buf(),
            key: "<document>".into(),
            message: "is not a mapping".into(),
            hint: "an lm-eval task file is a YAML mapping of task keys".into(),
        });
    };
    refuse_tags(&Value::Mapping(cfg.clone()), "", path)?;
    let Some(includes) = cfg.remove("include") else {
        return Ok((cfg, path.to_path_buf()));
    };
    let includes: Vec<String> = match includes {
        Value::String(s) => vec![s],
        Value::Sequence(items) => items
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => {
            return Err(Error::Unsupported {
                path: path.to_path_buf(),
                key: "include".into(),
                message: "is neither a file name nor a list of them".into(),
                hint: "write `include: _template_yaml`".into(),
            });
        }
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let mut merged = Mapping::new();
    for inc in includes {
        let inc_path = if Path::new(&inc).is_absolute() {
            PathBuf::from(&inc)
        } else {
            base.join(&inc)
        };
        let (mut inc_cfg, _) = load(&inc_path, seen)?;
        inc_cfg.remove("task_list");
        for (k, v) in inc_cfg {
            merged.insert(k, v);
        }
    }
    for (k, v) in cfg {
        merged.insert(k, v);
    }
    Ok((merged, path.to_path_buf()))
}

/// Find `!function` (and any other tag) anywhere in the file and report it with its key.
fn refuse_tags(value: &Value, key: &str, path: &Path) -> Result<()> {
    match value {
        Value::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let target = tagged.value.as_str().unwrap_or_default().to_string();
            if tag == "!function" {
                Err(Error::PythonHook {
                    path: path.to_path_buf(),
                    key: key.to_string(),
                    function: target,
                    hint: hook_hint(key),
                })
            } else {
                Err(Error::Unsupported {
                    path: path.to_path_buf(),
                    key: key.to_string(),
                    message: format!("carries the YAML tag `{tag}`"),
                    hint: "remove the tag; only plain YAML values can be imported".into(),
                })
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map {
                let name = match k {
                    Value::String(s) => s.clone(),
                    other => serde_yaml_ng::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                let child = if key.is_empty() {
                    name
                } else {
                    format!("{key}.{name}")
                };
                refuse_tags(v, &child, path)?;
            }
            Ok(())
        }
        Value::Sequence(items) => {
            for (i, v) in items.iter().enumerate() {
                refuse_tags(v, &format!("{key}[{i}]"), path)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The TOML way to say what a Python hook did, by key.
fn hook_hint(key: &str) -> String {
    let top = key.split(['.', '[']).next().unwrap_or(key);
    match top {
        "doc_to_text" => "write the prompt as a Jinja template in the TOML task: `doc_to_text = \"Question: {{ question.strip() }}\\nAnswer:\"` (Python string methods and `regex_replace` work in templates)".into(),
        "doc_to_choice" => "list the choices in the TOML task: `doc_to_choice = [\"A\", \"B\"]`, `doc_to_choice = { fields = [\"a\", \"b\"] }`, or a template that renders a Python list: `doc_to_choice = \"{{ [a, b] }}\"`".into(),
        "doc_to_target" => "name the gold in the TOML task: `doc_to_target = { field = \"label\" }`, an index `doc_to_target = 0`, or a template `doc_to_target = \"{{ answer.split('#### ')[-1] }}\"`".into(),
        "process_docs" => "reshape the rows before the task instead (a `relabel` node in the graph), then refer to the new fields in the TOML task's templates".into(),
        "process_results" | "metric_list" => format!(
            "use built-in metrics in the TOML task: `metrics = [{{ metric = \"exact_match\", ignore_case = true, regexes_to_ignore = [\",\"] }}]`; available: {}",
            MetricKind::ALL.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ")
        ),
        "filter_list" => "use built-in filter steps in the TOML task: `filters = [{ name = \"strict-match\", steps = [{ function = \"regex\", regex_pattern = \"#### (\\\\-?[0-9\\\\.\\\\,]+)\" }, { function = \"take_first\" }] }]`".into(),
        "custom_dataset" | "dataset_kwargs" => "load the rows with a dataset node and pass them to the task, or set `[task.splits] test = \"path.jsonl\"` in the TOML task".into(),
        _ => "write the task in TOML (docs/tasks.md) with templates, built-in metrics and filters instead of Python".into(),
    }
}

fn unsupported(
    path: &Path,
    key: &str,
    message: impl Into<String>,
    hint: impl Into<String>,
) -> Error {
    Error::Unsupported {
        path: path.to_path_buf(),
        key: key.to_string(),
        message: message.into(),
        hint: hint.into(),
    }
}

fn get<'a>(cfg: &'a Mapping, key: &str) -> Option<&'a Value> {
    cfg.get(key).filter(|v| !v.is_null())
}

fn get_str(cfg: &Mapping, key: &str, path: &Path) -> Result<Option<String>> {
    match get(cfg, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(_) => Err(unsupported(
            path,
            key,
            "is not a string",
            "write it as a quoted string",
        )),
    }
}

fn to_json(value: &Value) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

const TASK_KEYS: &[&str] = &[
    "task",
    "task_alias",
    "tag",
    "group",
    "dataset_path",
    "dataset_name",
    "dataset_kwargs",
    "training_split",
    "validation_split",
    "test_split",
    "fewshot_split",
    "description",
    "doc_to_text",
    "doc_to_choice",
    "doc_to_target",
    "target_delimiter",
    "fewshot_delimiter",
    "fewshot_config",
    "num_fewshot",
    "output_type",
    "generation_kwargs",
    "filter_list",
    "metric_list",
    "repeats",
    "metadata",
    "should_decontaminate",
    "doc_to_decontamination_query",
    "unsafe_code",
];

fn convert_task(cfg: &Mapping, path: &Path, base: &Path) -> Result<TaskSpec> {
    for (k, v) in cfg {
        let key = k.as_str().unwrap_or_default();
        if v.is_null() {
            continue;
        }
        if !TASK_KEYS.contains(&key) {
            let hint = match key {
                "process_docs" | "process_results" | "custom_dataset" => hook_hint(key),
                "gen_prefix" => "put the prefix at the end of `doc_to_text` instead".into(),
                "use_prompt" => {
                    "write the promptsource prompt as `doc_to_text`/`doc_to_target` templates"
                        .into()
                }
                "doc_to_image" | "doc_to_audio" => "multimodal tasks are not supported".into(),
                _ => "remove the key, or write the task in TOML (docs/tasks.md)".into(),
            };
            return Err(unsupported(
                path,
                key,
                "is not a task key dag imports",
                hint,
            ));
        }
    }
    if get(cfg, "unsafe_code").is_some_and(|v| v.as_bool() == Some(true)) {
        return Err(unsupported(
            path,
            "unsafe_code",
            "asks to execute model-written code",
            "code-execution tasks are not supported",
        ));
    }
    let name = get_str(cfg, "task", path)?.ok_or_else(|| {
        unsupported(
            path,
            "task",
            "is missing",
            "give the task a name: `task: my_task`",
        )
    })?;
    let output_type = match get_str(cfg, "output_type", path)?.as_deref() {
        None | Some("generate_until") => OutputType::GenerateUntil,
        Some("multiple_choice") => OutputType::MultipleChoice,
        Some(other) => {
            return Err(unsupported(
                path,
                "output_type",
                format!("is `{other}`, which dag does not evaluate"),
                "use `multiple_choice` or `generate_until`",
            ));
        }
    };
    let doc_field = |key: &str| -> Result<Option<DocField>> {
        Ok(match get(cfg, key) {
            None => None,
            Some(Value::Number(n)) => Some(DocField::Index(n.as_i64().ok_or_else(|| {
                unsupported(path, key, "is a non-integer number", "use an integer index")
            })?)),
            Some(Value::String(s)) => Some(DocField::FieldOrTemplate {
                field_or_template: s.clone(),
            }),
            Some(Value::Sequence(items)) => Some(DocField::List(
                items
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => Ok(s.clone()),
                        Value::Number(n) => Ok(n.to_string()),
                        _ => Err(unsupported(
                            path,
                            key,
                            "holds a non-string item",
                            "list strings only",
                        )),
                    })
                    .collect::<Result<_>>()?,
            )),
            Some(Value::Mapping(map)) if key == "doc_to_choice" => Some(DocField::List(
                map.values()
                    .map(|v| {
                        v.as_str().map(str::to_string).ok_or_else(|| {
                            unsupported(
                                path,
                                key,
                                "maps to a non-string choice",
                                "use string choices",
                            )
                        })
                    })
                    .collect::<Result<_>>()?,
            )),
            Some(_) => {
                return Err(unsupported(
                    path,
                    key,
                    "has a form dag cannot import",
                    "use a field name, an index, a list or a Jinja template",
                ));
            }
        })
    };
    let doc_to_text = doc_field("doc_to_text")?.ok_or_else(|| {
        unsupported(
            path,
            "doc_to_text",
            "is missing",
            "add `doc_to_text: \"{{question}}\"`",
        )
    })?;
    let doc_to_target = doc_field("doc_to_target")?.ok_or_else(|| {
        unsupported(
            path,
            "doc_to_target",
            "is missing",
            "add `doc_to_target: answer`",
        )
    })?;
    let doc_to_choice = doc_field("doc_to_choice")?;

    let target_delimiter = get_str(cfg, "target_delimiter", path)?.unwrap_or_else(|| " ".into());
    let fewshot_delimiter =
        get_str(cfg, "fewshot_delimiter", path)?.unwrap_or_else(|| "\n\n".into());
    let test_split = get_str(cfg, "test_split", path)?;
    let validation_split = get_str(cfg, "validation_split", path)?;
    let training_split = get_str(cfg, "training_split", path)?;
    let mut fewshot = crate::spec::FewshotSpec {
        num: match get(cfg, "num_fewshot") {
            None => 0,
            Some(v) => v.as_u64().ok_or_else(|| {
                unsupported(
                    path,
                    "num_fewshot",
                    "is not a non-negative integer",
                    "write `num_fewshot: 5`",
                )
            })? as usize,
        },
        split: get_str(cfg, "fewshot_split", path)?,
        ..Default::default()
    };
    if let Some(fc) = get(cfg, "fewshot_config") {
        let fc = fc.as_mapping().ok_or_else(|| {
            unsupported(
                path,
                "fewshot_config",
                "is not a mapping",
                "write `fewshot_config: {sampler: first_n}`",
            )
        })?;
        for (k, v) in fc {
            let key = format!("fewshot_config.{}", k.as_str().unwrap_or_default());
            match k.as_str().unwrap_or_default() {
                "sampler" => {
                    fewshot.sampler = match v.as_str() {
                        Some("first_n") => SamplerKind::FirstN,
                        Some("default") => SamplerKind::Random,
                        other => {
                            return Err(unsupported(
                                path,
                                &key,
                                format!("is `{}`", other.unwrap_or("?")),
                                "use `first_n` or `default`",
                            ));
                        }
                    }
                }
                "split" => fewshot.split = v.as_str().map(str::to_string),
                "target_delimiter" => fewshot.target_delimiter = v.as_str().map(str::to_string),
                "fewshot_delimiter" => fewshot.fewshot_delimiter = v.as_str().map(str::to_string),
                _ if v.is_null() => {}
                other => {
                    return Err(unsupported(
                        path,
                        &key,
                        format!("(`{other}`) is not imported"),
                        "few-shot examples can set `sampler`, `split` and the delimiters; write the task in TOML for more",
                    ));
                }
            }
        }
    }
    // lm-eval drops the evaluated document from its own examples when the configured few-shot
    // split name equals the test split name, two unset names included.
    fewshot.exclude_eval_doc = Some(fewshot.split == test_split);

    let generation = match get(cfg, "generation_kwargs") {
        None => GenerationSpec {
            until: vec![fewshot_delimiter.clone()],
            ..Default::default()
        },
        Some(Value::Mapping(g)) => {
            let mut spec = GenerationSpec::default();
            let mut until = None;
            for (k, v) in g {
                let key = k.as_str().unwrap_or_default();
                match key {
                    "until" => {
                        until = Some(match v {
                            Value::String(s) => vec![s.clone()],
                            Value::Sequence(items) => items
                                .iter()
                                .filter_map(|i| i.as_str().map(str::to_string))
                                .collect(),
                            _ => {
                                return Err(unsupported(
                                    path,
                                    "generation_kwargs.until",
                                    "is not a string or list",
                                    "write `until: [\"\\n\\n\"]`",
                                ));
                            }
                        })
                    }
                    "do_sample" => spec.do_sample = v.as_bool().unwrap_or(false),
                    "temperature" => spec.temperature = v.as_f64().unwrap_or(0.0),
                    "max_gen_toks" => spec.max_gen_toks = v.as_u64().unwrap_or(256) as usize,
                    other => {
                        spec.extra.insert(other.to_string(), to_json(v));
                    }
                }
            }
            spec.until = until.unwrap_or_else(|| vec![fewshot_delimiter.clone()]);
            spec
        }
        Some(_) => {
            return Err(unsupported(
                path,
                "generation_kwargs",
                "is not a mapping",
                "write `generation_kwargs: {until: [\"\\n\"]}`",
            ));
        }
    };

    let mut filters = Vec::new();
    if let Some(list) = get(cfg, "filter_list") {
        let list = list.as_sequence().ok_or_else(|| {
            unsupported(
                path,
                "filter_list",
                "is not a list",
                "write a list of `{name, filter}` entries",
            )
        })?;
        for (i, entry) in list.iter().enumerate() {
            let name = entry
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("none")
                .to_string();
            let steps_v = entry
                .get("filter")
                .and_then(Value::as_sequence)
                .ok_or_else(|| {
                    unsupported(
                        path,
                        &format!("filter_list[{i}].filter"),
                        "is missing or not a list",
                        "list the filter steps",
                    )
                })?;
            let mut steps = Vec::new();
            for (j, step) in steps_v.iter().enumerate() {
                let key = format!("filter_list[{i}].filter[{j}]");
                let parsed: FilterStep = serde_json::from_value(to_json(step)).map_err(|e| {
                    unsupported(
                        path,
                        &key,
                        format!("is not a filter dag has: {e}"),
                        "use regex, remove_whitespace, lowercase, uppercase, take_first, take_first_k or majority_vote",
                    )
                })?;
                steps.push(parsed);
            }
            filters.push(FilterSpec { name, steps });
        }
    }

    let mut metrics = Vec::new();
    if let Some(list) = get(cfg, "metric_list") {
        let list = list.as_sequence().ok_or_else(|| {
            unsupported(
                path,
                "metric_list",
                "is not a list",
                "write a list of `{metric: ...}` entries",
            )
        })?;
        for (i, entry) in list.iter().enumerate() {
            let key = format!("metric_list[{i}]");
            let map = entry.as_mapping().ok_or_else(|| {
                unsupported(path, &key, "is not a mapping", "write `- metric: acc`")
            })?;
            let name = map
                .get("metric")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let metric = MetricKind::from_name(name).ok_or_else(|| {
                unsupported(
                    path,
                    &format!("{key}.metric"),
                    format!("is `{name}`, which dag does not compute"),
                    format!(
                        "use one of {}",
                        MetricKind::ALL
                            .iter()
                            .map(|m| m.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?;
            if let Some(agg) = map.get("aggregation").and_then(Value::as_str)
                && agg != "mean"
            {
                return Err(unsupported(
                    path,
                    &format!("{key}.aggregation"),
                    format!("is `{agg}`"),
                    "only `mean` aggregation is imported",
                ));
            }
            let mut spec = MetricSpec::plain(metric);
            for (k, v) in map {
                match k.as_str().unwrap_or_default() {
                    "metric" | "aggregation" | "higher_is_better" => {}
                    "ignore_case" => spec.ignore_case = v.as_bool().unwrap_or(false),
                    "ignore_punctuation" => spec.ignore_punctuation = v.as_bool().unwrap_or(false),
                    "ignore_numbers" => spec.ignore_numbers = v.as_bool().unwrap_or(false),
                    "regexes_to_ignore" => {
                        spec.regexes_to_ignore = v
                            .as_sequence()
                            .map(|s| {
                                s.iter()
                                    .filter_map(|x| x.as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default()
                    }
                    other => {
                        return Err(unsupported(
                            path,
                            &format!("{key}.{other}"),
                            "is not a metric option dag knows",
                            "use ignore_case, ignore_punctuation, ignore_numbers or regexes_to_ignore",
                        ));
                    }
                }
            }
            metrics.push(spec);
        }
    }

    let repeats = match get(cfg, "repeats") {
        None => 1,
        Some(v) => v.as_u64().ok_or_else(|| {
            unsupported(
                path,
                "repeats",
                "is not a positive integer",
                "write `repeats: 1`",
            )
        })? as usize,
    };
    let splits = resolve_splits(
        cfg,
        path,
        base,
        &[
            &test_split,
            &validation_split,
            &training_split,
            &fewshot.split,
        ],
    )?;
    let spec = TaskSpec {
        name,
        output_type,
        splits,
        test_split,
        validation_split,
        training_split,
        description: get_str(cfg, "description", path)?.unwrap_or_default(),
        doc_to_text,
        doc_to_choice,
        doc_to_target,
        target_delimiter,
        fewshot_delimiter,
        fewshot,
        generation,
        filters,
        metrics,
        repeats,
        reducer: crate::spec::Reducer::Mean,
    };
    spec.validate()?;
    Ok(spec)
}

/// Map split names to local files, as `datasets.load_dataset` would find them.
fn resolve_splits(
    cfg: &Mapping,
    path: &Path,
    base: &Path,
    wanted: &[&Option<String>],
) -> Result<BTreeMap<String, PathBuf>> {
    let mut splits = BTreeMap::new();
    let dataset_path = get_str(cfg, "dataset_path", path)?.unwrap_or_default();
    let local = |p: &str| {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    if matches!(dataset_path.as_str(), "json" | "csv" | "parquet" | "text") {
        let files = get(cfg, "dataset_kwargs")
            .and_then(|k| k.get("data_files"))
            .ok_or_else(|| {
                unsupported(
                    path,
                    "dataset_kwargs.data_files",
                    format!("is missing for `dataset_path: {dataset_path}`"),
                    "add `dataset_kwargs: {data_files: {test: path/to/test.jsonl}}`",
                )
            })?;
        let one = |v: &Value, key: &str| -> Result<PathBuf> {
            match v {
                Value::String(s) => Ok(local(s)),
                Value::Sequence(items) if items.len() == 1 && items[0].is_string() => {
                    Ok(local(items[0].as_str().unwrap_or_default()))
                }
                _ => Err(unsupported(
                    path,
                    key,
                    "is not one file path",
                    "give one file per split; concatenate shards first",
                )),
            }
        };
        match files {
            Value::Mapping(map) => {
                for (k, v) in map {
                    let split = k.as_str().unwrap_or_default().to_string();
                    let p = one(v, &format!("dataset_kwargs.data_files.{split}"))?;
                    splits.insert(split, p);
                }
            }
            other => {
                splits.insert(
                    "train".to_string(),
                    one(other, "dataset_kwargs.data_files")?,
                );
            }
        }
    } else if !dataset_path.is_empty() {
        let mut dir = local(&dataset_path);
        if let Some(name) = get_str(cfg, "dataset_name", path)?
            && dir.join(&name).is_dir()
        {
            dir = dir.join(name);
        }
        if dir.is_dir() {
            for split in wanted.iter().filter_map(|s| s.as_deref()) {
                for ext in ["jsonl", "json", "csv"] {
                    let candidate = dir.join(format!("{split}.{ext}"));
                    if candidate.is_file() {
                        splits.insert(split.to_string(), candidate);
                        break;
                    }
                }
            }
        }
        // A Hub data set: splits stay empty; the caller points them at local files.
    }
    Ok(splits)
}

fn convert_group(cfg: &Mapping, path: &Path, base: &Path, set: &mut TaskSet) -> Result<GroupSpec> {
    let name = get_str(cfg, "group", path)?.unwrap_or_default();
    let members = match get(cfg, "task") {
        Some(Value::Sequence(items)) => items.clone(),
        Some(Value::String(s)) => vec![Value::String(s.clone())],
        _ => {
            return Err(unsupported(
                path,
                "task",
                "is missing from the group",
                "list the member tasks: `task: [a, b]`",
            ));
        }
    };
    let mut tasks = Vec::new();
    // Member tasks are looked up among sibling files; nested groups are only named.
    let mut siblings: Option<Vec<(Mapping, PathBuf)>> = None;
    for (i, member) in members.iter().enumerate() {
        match member {
            Value::String(task_name) => {
                if siblings.is_none() {
                    siblings = Some(scan_dir(base)?);
                }
                let named = |key: &str| {
                    siblings.iter().flatten().find(|(c, _)| {
                        get(c, key).and_then(Value::as_str) == Some(task_name.as_str())
                            && (key == "group" || !c.contains_key("group"))
                    })
                };
                if let Some((cfg_t, origin_t)) = named("task") {
                    if set.task(task_name).is_none() {
                        set.tasks.push(convert_task(cfg_t, origin_t, base)?);
                    }
                } else if named("group").is_none() {
                    return Err(unsupported(
                        path,
                        &format!("task[{i}]"),
                        format!(
                            "names `{task_name}`, which no YAML file in `{}` defines",
                            base.display()
                        ),
                        "put the member task files next to the group file",
                    ));
                }
                tasks.push(task_name.clone());
            }
            Value::Mapping(inline) => {
                let t = convert_task(inline, path, base)?;
                tasks.push(t.name.clone());
                set.tasks.push(t);
            }
            _ => {
                return Err(unsupported(
                    path,
                    &format!("task[{i}]"),
                    "is neither a task name nor a task mapping",
                    "list task names",
                ));
            }
        }
    }
    let mut aggregate = Vec::new();
    if let Some(list) = get(cfg, "aggregate_metric_list") {
        let items: Vec<Value> = match list {
            Value::Sequence(items) => items.clone(),
            other => vec![other.clone()],
        };
        for (i, item) in items.iter().enumerate() {
            let key = format!("aggregate_metric_list[{i}]");
            let metric_name = item
                .get("metric")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let metric = MetricKind::from_name(metric_name).ok_or_else(|| {
                unsupported(
                    path,
                    &format!("{key}.metric"),
                    format!("is `{metric_name}`"),
                    "aggregate a metric dag computes",
                )
            })?;
            if let Some(agg) = item.get("aggregation").and_then(Value::as_str)
                && agg != "mean"
            {
                return Err(unsupported(
                    path,
                    &format!("{key}.aggregation"),
                    format!("is `{agg}`"),
                    "only `mean` is supported, as in lm-eval",
                ));
            }
            let filters: Vec<String> = match item.get("filter_list") {
                Some(Value::String(s)) => vec![s.clone()],
                Some(Value::Sequence(v)) => v
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect(),
                _ => vec!["none".to_string()],
            };
            let weight_by_size = item
                .get("weight_by_size")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            for filter in filters {
                aggregate.push(AggregateSpec {
                    metric,
                    weight_by_size,
                    filter,
                });
            }
        }
    }
    Ok(GroupSpec {
        name,
        tasks,
        aggregate,
    })
}
