//! `evaluate`: dag-tasks' lm-eval semantics on the tch runtime.
//!
//! dag-tasks renders prompts, lints them and scores answers; this file answers its requests
//! with [`RuntimeModel`] and writes the artifacts. Every answered request is an item whose key
//! hashes the model identity (weights, adapter, tokenizer, chat template, dtype), the exact
//! token ids and the decoding settings. Items are saved as they finish, so a killed
//! evaluation resumes, and a resumed answer is only ever reused under the same key: another
//! model, another prompt or other settings can never pick it up.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use dag_metrics::{BootstrapConfig, bootstrap_interval};
use dag_protocol::NodeError;
use dag_protocol::evaluate::{EvaluateParams, Lint};
use dag_protocol::{Job, Report};
use dag_runtime::{
    ChatTemplate, GenerateRequest as RtGenerate, Message, Model, Prompt, SamplingParams,
};
use dag_tasks::{
    ChatMessage, ChatOptions, DocResponse, GenerateRequest, GroupScores, LanguageModel,
    Loglikelihood, LoglikelihoodRequest, PreparedDoc, PromptOptions, Request, Task, TaskScores,
    TaskSet, TaskSpec, aggregate_group, encode_pair,
};
use rand::{Rng, SeedableRng};
use serde_json::{Value as Json, json};

use crate::Reporter;
use crate::failure::caused;
use crate::model::load_model;

/// How many contexts' answers are saved together (a kill loses at most this many).
const SAVE_EVERY: usize = 64;

/// The runtime model behind dag-tasks' [`LanguageModel`] trait.
pub struct RuntimeModel<'a> {
    model: &'a Model,
    batch_size: usize,
    prefix_token: u32,
    seed: u64,
    /// Answers by item key: resumed from earlier attempts, then filled as items finish.
    answers: HashMap<String, Json>,
    /// Item key of each request answered, by (context, continuation or repeat).
    keys: HashMap<(String, String), String>,
    rep: Option<&'a Reporter>,
}

/// The runtime's error, as dag-tasks carries it.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ModelError(#[from] dag_runtime::Error);

/// Transparent, so the runtime error is not in the chain on its own: its hint is this one's.
impl dag_diagnostic::Hint for ModelError {
    fn hint(&self) -> Option<String> {
        dag_diagnostic::Hint::hint(&self.0)
    }
}

impl<'a> RuntimeModel<'a> {
    /// Wraps `model`; `resumed` holds items saved by earlier attempts.
    pub fn new(
        model: &'a Model,
        batch_size: usize,
        seed: u64,
        resumed: &[Json],
        rep: Option<&'a Reporter>,
    ) -> Self {
        let tok = model.tokenizer();
        // lm-eval's prefix token for an empty context: BOS when the tokenizer has one, else
        // end-of-text.
        let prefix_token = tok
            .special
            .bos
            .as_deref()
            .and_then(|b| tok.token_to_id(b))
            .or_else(|| model.eos_token_ids().first().copied())
            .unwrap_or(0);
        let answers = resumed
            .iter()
            .filter_map(|item| Some((item.get("k")?.as_str()?.to_string(), item.get("a")?.clone())))
            .collect();
        RuntimeModel {
            model,
            batch_size: batch_size.max(1),
            prefix_token,
            seed,
            answers,
            keys: HashMap::new(),
            rep,
        }
    }

    fn item_key(&self, parts: &[&[u8]]) -> String {
        let mut h = blake3::Hasher::new_derive_key("dag evaluate item v1");
        h.update(self.model.identity().as_bytes());
        for p in parts {
            h.update(&(p.len() as u64).to_le_bytes());
            h.update(p);
        }
        h.finalize().to_hex().to_string()
    }

    fn save(&self, items: Vec<Json>) {
        if let Some(rep) = self.rep
            && !items.is_empty()
        {
            let n = items.len() as u64;
            rep.send(Report::SaveItems(items));
            rep.send(Report::Advance(n));
        }
    }

    /// The item key that answered `(context, continuation-or-repeat)`.
    pub fn key_of(&self, context: &str, second: &str) -> Option<&str> {
        self.keys
            .get(&(context.to_string(), second.to_string()))
            .map(String::as_str)
    }
}

fn token_bytes(ids: &[u32]) -> Vec<u8> {
    ids.iter().flat_map(|t| t.to_le_bytes()).collect()
}

impl LanguageModel for RuntimeModel<'_> {
    type Error = ModelError;

    fn tokenize(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        // lm-eval's Hugging Face backend encodes without special tokens.
        Ok(self.model.tokenizer().encode(text, false)?)
    }

    fn loglikelihood(
        &mut self,
        requests: &[LoglikelihoodRequest],
    ) -> Result<Vec<Loglikelihood>, ModelError> {
        let mut keyed = Vec::with_capacity(requests.len());
        for r in requests {
            let (ctx, cont) = encode_pair(self, r, self.prefix_token)?;
            let key = self.item_key(&[b"loglikelihood", &token_bytes(&ctx), &token_bytes(&cont)]);
            self.keys
                .insert((r.context.clone(), r.continuation.clone()), key.clone());
            keyed.push((key, ctx, cont, r.context.as_str()));
        }
        // Misses, grouped by context so each context is computed once for all its choices.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut last_context: Option<&str> = None;
        let mut resumed = 0u64;
        for (i, (key, _, _, context)) in keyed.iter().enumerate() {
            if self.answers.contains_key(key) {
                resumed += 1;
                continue;
            }
            match groups.last_mut() {
                Some(g) if last_context == Some(*context) => g.push(i),
                _ => groups.push(vec![i]),
            }
            last_context = Some(context);
        }
        if let Some(rep) = self.rep
            && resumed > 0
        {
            rep.send(Report::Advance(resumed));
        }
        // Longest first across the whole call (not only within a saved chunk), so each batch
        // holds contexts of similar length and padding stays small.
        let length = |g: &Vec<usize>| {
            g.iter()
                .map(|&i| keyed[i].1.len() + keyed[i].2.len())
                .max()
                .unwrap_or(0)
        };
        groups.sort_by_key(|g| std::cmp::Reverse(length(g)));
        for chunk in groups.chunks(SAVE_EVERY.max(self.batch_size)) {
            let token_groups: Vec<Vec<(Vec<u32>, Vec<u32>)>> = chunk
                .iter()
                .map(|g| {
                    g.iter()
                        .map(|&i| (keyed[i].1.clone(), keyed[i].2.clone()))
                        .collect()
                })
                .collect();
            let scores = self.model.score_tokens(&token_groups, self.batch_size)?;
            let mut saved = Vec::new();
            for (g, s) in chunk.iter().zip(scores) {
                for (&i, score) in g.iter().zip(s) {
                    let answer = json!([score.logprob, score.is_greedy]);
                    saved.push(json!({"k": keyed[i].0, "a": answer}));
                    self.answers.insert(keyed[i].0.clone(), answer);
                }
            }
            self.save(saved);
        }
        Ok(keyed
            .iter()
            .map(|(key, ..)| {
                let a = &self.answers[key];
                Loglikelihood {
                    logprob: a[0].as_f64().unwrap_or(f64::NAN),
                    is_greedy: a[1].as_bool().unwrap_or(false),
                }
            })
            .collect())
    }

    fn generate(&mut self, requests: &[GenerateRequest]) -> Result<Vec<String>, ModelError> {
        let max_len = self.model.config().max_position_embeddings as usize;
        let mut keyed = Vec::with_capacity(requests.len());
        for r in requests {
            let mut ids = self.tokenize(&r.context)?;
            // lm-eval keeps the last `max_length - max_gen_toks` prompt tokens.
            let room = max_len.saturating_sub(r.max_gen_toks).max(1);
            if ids.len() > room {
                ids.drain(..ids.len() - room);
            }
            let temperature = if r.do_sample { r.temperature } else { 0.0 };
            let settings = json!({
                "until": r.until, "max_gen_toks": r.max_gen_toks, "temperature": temperature,
                "extra": r.extra, "repeat": r.repeat, "seed": if r.do_sample { Some(self.seed) } else { None },
            })
            .to_string();
            let key = self.item_key(&[b"generate", &token_bytes(&ids), settings.as_bytes()]);
            self.keys
                .insert((r.context.clone(), r.repeat.to_string()), key.clone());
            keyed.push((key, ids, temperature, r));
        }
        let misses: Vec<usize> = (0..keyed.len())
            .filter(|&i| !self.answers.contains_key(&keyed[i].0))
            .collect();
        if let Some(rep) = self.rep
            && misses.len() < keyed.len()
        {
            rep.send(Report::Advance((keyed.len() - misses.len()) as u64));
        }
        // Requests of one task share their decoding settings; batch runs of equal settings.
        let same = |a: usize, b: usize| {
            let (x, y) = (keyed[a].3, keyed[b].3);
            x.until == y.until && x.max_gen_toks == y.max_gen_toks && keyed[a].2 == keyed[b].2
        };
        let mut start = 0;
        while start < misses.len() {
            let mut end = start + 1;
            while end < misses.len() && end - start < SAVE_EVERY && same(misses[start], misses[end])
            {
                end += 1;
            }
            let run = &misses[start..end];
            let first = keyed[run[0]].3;
            let params = SamplingParams {
                max_new_tokens: first.max_gen_toks,
                temperature: keyed[run[0]].2,
                stop: first.until.clone(),
                seed: self.seed,
                batch_size: self.batch_size,
                ..SamplingParams::default()
            };
            let reqs: Vec<RtGenerate> = run
                .iter()
                .map(|&i| RtGenerate {
                    prompt: Prompt::Tokens(keyed[i].1.clone()),
                    // Each item samples from its own stream, whatever it is batched with.
                    seed: Some(u64::from_le_bytes(
                        blake3::hash(keyed[i].0.as_bytes()).as_bytes()[..8]
                            .try_into()
                            .expect("8 bytes"),
                    )),
                })
                .collect();
            let results = self.model.generate(&reqs, &params, &mut |_| {})?;
            let mut saved = Vec::new();
            for (&i, result) in run.iter().zip(results) {
                let text = result
                    .completions
                    .first()
                    .map(|c| dag_tasks::truncate_at_stop(&c.text, &first.until).to_string())
                    .unwrap_or_default();
                saved.push(json!({"k": keyed[i].0, "a": text}));
                self.answers.insert(keyed[i].0.clone(), json!(text));
            }
            self.save(saved);
            start = end;
        }
        Ok(keyed
            .iter()
            .map(|(key, ..)| self.answers[key].as_str().unwrap_or_default().to_string())
            .collect())
    }
}

/// The definitions the `tasks` names are looked up in.
fn definitions(p: &EvaluateParams) -> Result<Vec<TaskSet>, NodeError> {
    let fail = |p: &Path, e: dag_tasks::Error| {
        caused(
            format!("Failed to read the task definitions `{}`", p.display()),
            &e,
        )
    };
    if let Some(p) = &p.definitions {
        let p = PathBuf::from(p);
        let set = if p.is_dir() {
            dag_tasks::import_lm_eval_dir(&p)
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            dag_tasks::import_lm_eval_yaml(&p)
        } else {
            TaskSet::from_toml_file(&p)
        }
        .map_err(|e| fail(&p, e))?;
        return Ok(vec![set]);
    }
    // Without `data`, paths stay relative; `select` reports the ones a task still needs.
    let data = p.data.as_ref().map(PathBuf::from).unwrap_or_default();
    dag_tasks::builtin_names()
        .map(|name| {
            dag_tasks::load_builtin(name, &data)
                .expect("listed builtin")
                .map_err(|e| fail(&data, e))
        })
        .collect()
}

/// The tasks to run (in request order, each once) and the groups to aggregate.
fn select(p: &EvaluateParams) -> Result<(Vec<TaskSpec>, Vec<dag_tasks::GroupSpec>), NodeError> {
    let sets = definitions(p)?;
    let names = &p.tasks;
    if names.is_empty() {
        return Err(NodeError::msg("`tasks` is empty").hint("name at least one task or group"));
    }
    let find_task = |n: &str| sets.iter().find_map(|s| s.task(n)).cloned();
    let mut tasks: Vec<TaskSpec> = Vec::new();
    let mut groups = Vec::new();
    for name in names {
        if let Some(g) = sets
            .iter()
            .flat_map(|s| &s.groups)
            .find(|g| &g.name == name)
        {
            for member in &g.tasks {
                let spec = find_task(member).ok_or_else(|| {
                    NodeError::msg(format!(
                        "Group `{name}` names task `{member}`, which no definition has"
                    ))
                    .hint("define the task in the same file as its group")
                })?;
                if !tasks.iter().any(|t| t.name == spec.name) {
                    tasks.push(spec);
                }
            }
            groups.push(g.clone());
        } else if let Some(spec) = find_task(name) {
            if !tasks.iter().any(|t| t.name == spec.name) {
                tasks.push(spec);
            }
        } else {
            let mut known: Vec<&str> = sets
                .iter()
                .flat_map(|s| {
                    s.groups
                        .iter()
                        .map(|g| g.name.as_str())
                        .chain(s.tasks.iter().map(|t| t.name.as_str()))
                })
                .collect();
            // A likely typo is named alone, as the graph loader names one; otherwise the
            // nearest few of what may be hundreds of imported names.
            let hint = match dag_diagnostic::did_you_mean(name, known.iter().copied()) {
                Some(meant) => format!("did you mean `{meant}`?"),
                None => {
                    known.sort_by_key(|k| strsim::levenshtein(k, name));
                    known.truncate(5);
                    format!("the closest names are: {}", known.join(", "))
                }
            };
            return Err(NodeError::msg(format!("No task or group is named `{name}`")).hint(hint));
        }
    }
    if let Some(n) = p.num_fewshot {
        for t in &mut tasks {
            t.fewshot.num = n as usize;
        }
    }
    if let Some(f) = p.test_file.as_deref() {
        for t in &mut tasks {
            let split = t.eval_split().unwrap_or("test").to_string();
            t.set_split(&split, f);
        }
    }
    if let Some(f) = p.fewshot_file.as_deref() {
        for t in tasks.iter_mut().filter(|t| t.fewshot.num > 0) {
            let split = t.fewshot_split().unwrap_or("train").to_string();
            t.set_split(&split, f);
        }
    }
    for t in &tasks {
        if let Some(rel) = t.splits.values().find(|p| p.is_relative()) {
            return Err(NodeError::msg(format!(
                "Task `{}` reads `{}` relative to the data directory, and `data` is not set",
                t.name,
                rel.display()
            ))
            .hint("add `data = \"../shared/data\"` (relative to the graph file) to the evaluate node, or name the file with `test_file`/`fewshot_file`"));
        }
    }
    Ok((tasks, groups))
}

/// Percentile interval of the mean over documents.
fn interval(values: &[f64], config: &BootstrapConfig) -> Option<(f64, f64)> {
    bootstrap_interval(values, config, |s| s.iter().sum::<f64>() / s.len() as f64)
        .ok()
        .map(|i| (i.lower, i.upper))
}

/// A group's interval: resample documents within each member task (keeping task sizes), then
/// aggregate as the group does (size-weighted, or the plain mean of task means).
fn group_interval(
    members: &[Vec<f64>],
    weight_by_size: bool,
    config: &BootstrapConfig,
) -> Option<(f64, f64)> {
    let members: Vec<&Vec<f64>> = members.iter().filter(|m| !m.is_empty()).collect();
    if members.is_empty() {
        return None;
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(config.seed);
    let mut reps: Vec<f64> = (0..config.n_resamples)
        .map(|_| {
            let (mut num, mut den) = (0.0, 0.0);
            for m in &members {
                let mean = (0..m.len())
                    .map(|_| m[rng.random_range(0..m.len())])
                    .sum::<f64>()
                    / m.len() as f64;
                let w = if weight_by_size { m.len() as f64 } else { 1.0 };
                num += w * mean;
                den += w;
            }
            num / den
        })
        .collect();
    reps.sort_by(f64::total_cmp);
    let at = |q: f64| reps[((q * (reps.len() - 1) as f64).round() as usize).min(reps.len() - 1)];
    Some((at(0.025), at(0.975)))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), NodeError> {
    std::fs::write(path, bytes)
        .map_err(|e| caused(format!("Failed to write `{}`", path.display()), &e))
}

/// One task's per-sample records.
fn sample_rows(
    task: &str,
    prepared: &[PreparedDoc],
    scores: &TaskScores,
    model: &RuntimeModel<'_>,
) -> Vec<Json> {
    let by_id: HashMap<usize, &PreparedDoc> = prepared.iter().map(|d| (d.doc_id, d)).collect();
    scores
        .samples
        .iter()
        .map(|s| {
            let doc = by_id.get(&s.doc_id);
            let item_keys: Vec<&str> = doc
                .map(|d| {
                    d.requests
                        .iter()
                        .filter_map(|r| match r {
                            Request::Loglikelihood(r) => model.key_of(&r.context, &r.continuation),
                            Request::Generate(r) => model.key_of(&r.context, &r.repeat.to_string()),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let target = if s.gold_indices.is_empty() {
                json!(s.golds)
            } else {
                json!(s.gold_indices)
            };
            json!({
                "task": task,
                "doc_id": s.doc_id,
                "filter": s.filter,
                "prompt_hash": doc.map(|d| blake3::hash(d.prompt.as_bytes()).to_hex().to_string()),
                "prompt": doc.map(|d| d.prompt.as_str()),
                "item_keys": item_keys,
                "choices": doc.map(|d| d.choices.clone()).unwrap_or_default(),
                "loglikelihoods": s.loglikelihoods,
                "prediction": s.prediction,
                "target": target,
                "responses": s.responses,
                "filtered": s.filtered,
                "scores": s.scores.iter().map(|(m, v)| (m.name().to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            })
        })
        .collect()
}

/// Runs the node.
pub fn run(job: &Job, rep: &Reporter) -> Result<(), NodeError> {
    let p: EvaluateParams = job.params()?;
    let (specs, groups) = select(&p)?;
    let loading = std::time::Instant::now();
    let model = load_model(&job.inputs["model"][0].path)?;
    let load_seconds = loading.elapsed().as_secs_f64();
    let chat = p.chat;
    if chat && !model.has_chat_template() {
        return Err(
            NodeError::msg("`chat = true`, but the model has no chat template")
                .hint("set `chat = false`, or use a model whose tokenizer carries a chat template"),
        );
    }
    // The engine has checked every range when the graph loaded.
    let lint_warn = p.lint == Lint::Warn;
    let limit = p.limit.map(|n| n as usize);
    let seed = p.seed as u64;
    let config = BootstrapConfig {
        n_resamples: p.bootstrap_iters as usize,
        seed,
        level: 0.95,
    };
    // The renderer must be shareable across threads, which the model is not: build the
    // template on its own from the tokenizer's source.
    let tok = model.tokenizer();
    let template = match (&tok.chat_template, chat) {
        (Some(source), true) => Some(
            ChatTemplate::new(source, tok.special.clone())
                .map_err(|e| caused("Failed to compile the model's chat template", &e))?,
        ),
        _ => None,
    };
    let render_error: Mutex<Option<String>> = Mutex::new(None);
    let render = |messages: &[ChatMessage]| -> String {
        let Some(template) = &template else {
            return String::new();
        };
        let msgs: Vec<Message> = messages
            .iter()
            .map(|m| Message::new(&m.role, &m.content))
            .collect();
        template.render(&msgs, true).unwrap_or_else(|e| {
            let mut slot = render_error.lock().expect("not poisoned");
            slot.get_or_insert_with(|| e.to_string());
            String::new()
        })
    };
    let options = PromptOptions {
        system_instruction: p.system_prompt.clone(),
        chat: chat.then_some(ChatOptions {
            fewshot_as_multiturn: p.fewshot_as_multiturn,
            render: &render,
        }),
    };

    // Prepare and lint every task before the first forward pass.
    let mut prepared_tasks = Vec::with_capacity(specs.len());
    let mut warnings = Vec::new();
    for spec in &specs {
        let task_fail =
            |e: dag_tasks::Error| caused(format!("Failed to prepare task `{}`", spec.name), &e);
        let task = Task::new(spec.clone()).map_err(task_fail)?;
        let docs = task.load_docs().map_err(task_fail)?;
        let prepared = task
            .prepare_with(&docs, limit, &options)
            .map_err(task_fail)?;
        if let Some(e) = render_error.lock().expect("not poisoned").take() {
            let mut err = NodeError::msg(format!(
                "Failed to render task `{}` with the chat template",
                spec.name
            ))
            .hint("check the model's chat template, or set `chat = false`");
            err.causes.push(e);
            return Err(err);
        }
        let report = task.lint(&docs, &prepared);
        let errors: Vec<String> = report
            .errors()
            .map(|i| format!("{}: {i}", spec.name))
            .collect();
        if !errors.is_empty() && !lint_warn {
            let mut e = NodeError::msg(format!(
                "Task `{}` fails its template lint ({} problem{})",
                spec.name,
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            ));
            e.causes.extend(errors.iter().take(10).cloned());
            return Err(
                e.hint("fix the definition; set `lint = \"warn\"` on the node to run anyway")
            );
        }
        for w in report
            .warnings()
            .map(|i| format!("{}: {i}", spec.name))
            .chain(errors)
        {
            rep.send(Report::Info(w.clone()));
            warnings.push(w);
        }
        prepared_tasks.push((task, prepared));
    }
    let total: usize = prepared_tasks
        .iter()
        .flat_map(|(_, p)| p.iter().map(|d| d.requests.len()))
        .sum();
    rep.send(Report::Total(total as u64));

    let evaluating = std::time::Instant::now();
    let batch_size = p.batch_size as usize;
    let mut lm = RuntimeModel::new(&model, batch_size, seed, &job.resumed, Some(rep));
    let mut results: Vec<TaskScores> = Vec::new();
    let mut samples = Vec::new();
    for (task, prepared) in &prepared_tasks {
        let fail =
            |e: dag_tasks::Error| caused(format!("Failed to evaluate task `{}`", task.name()), &e);
        // All of a task's requests at once: the runtime model batches and saves by itself.
        let responses: Vec<DocResponse> =
            dag_tasks::run_requests(task.name(), &mut lm, prepared, usize::MAX).map_err(fail)?;
        let scores = task.score(prepared, &responses).map_err(fail)?;
        samples.extend(sample_rows(task.name(), prepared, &scores, &lm));
        results.push(scores);
    }

    let seconds = evaluating.elapsed().as_secs_f64();
    let n_docs: usize = prepared_tasks.iter().map(|(_, p)| p.len()).sum();
    // The benchmark (benches/evaluate.rs) reads this line from the run log.
    rep.send(Report::Info(format!(
        "evaluated {n_docs} documents ({total} requests) in {seconds:.2} s: {:.2} documents/s; model loaded in {load_seconds:.2} s",
        n_docs as f64 / seconds
    )));

    // Metrics with intervals, then groups.
    let mut per_task = serde_json::Map::new();
    let mut table = Vec::new();
    let values_of = |r: &TaskScores, metric: dag_tasks::MetricKind, filter: &str| -> Vec<f64> {
        r.samples
            .iter()
            .filter(|s| s.filter == filter)
            .filter_map(|s| s.scores.iter().find(|(m, _)| *m == metric).map(|(_, v)| *v))
            .collect()
    };
    for r in &results {
        let mut entry = serde_json::Map::new();
        for m in &r.metrics {
            let ci = interval(&values_of(r, m.metric, &m.filter), &config);
            entry.insert(m.key(), json!(m.value));
            entry.insert(
                format!("{}_stderr,{}", m.metric.name(), m.filter),
                json!(m.stderr),
            );
            table.push(json!({
                "task": r.task, "metric": m.metric.name(), "filter": m.filter, "value": m.value,
                "stderr": m.stderr, "ci_low": ci.map(|c| c.0), "ci_high": ci.map(|c| c.1), "n": m.n,
            }));
        }
        entry.insert("n".into(), json!(r.n_docs));
        per_task.insert(r.task.clone(), Json::Object(entry));
    }
    let mut per_group = serde_json::Map::new();
    for g in &groups {
        let members: Vec<TaskScores> = g
            .tasks
            .iter()
            .filter_map(|t| results.iter().find(|r| &r.task == t).cloned())
            .collect();
        let agg: GroupScores = aggregate_group(g, &members)
            .map_err(|e| caused(format!("Failed to aggregate group `{}`", g.name), &e))?;
        let mut entry = serde_json::Map::new();
        for m in &agg.metrics {
            let member_values: Vec<Vec<f64>> = members
                .iter()
                .map(|r| values_of(r, m.metric, &m.filter))
                .collect();
            let ci = group_interval(&member_values, m.weight_by_size, &config);
            let key = format!("{},{}", m.metric.name(), m.filter);
            entry.insert(key, json!(m.value));
            entry.insert(
                format!("{}_stderr,{}", m.metric.name(), m.filter),
                json!(m.stderr),
            );
            table.push(json!({
                "task": g.name, "group": true, "metric": m.metric.name(), "filter": m.filter,
                "value": m.value, "stderr": m.stderr, "ci_low": ci.map(|c| c.0),
                "ci_high": ci.map(|c| c.1), "n": m.n, "weight_by_size": m.weight_by_size,
            }));
        }
        entry.insert("n".into(), json!(agg.metrics.first().map_or(0, |m| m.n)));
        per_group.insert(g.name.clone(), Json::Object(entry));
    }
    let metrics = json!({
        "model": model.identity(),
        "tasks": per_task,
        "groups": per_group,
        "table": table,
        "lint_warnings": warnings,
        "bootstrap": { "iters": config.n_resamples, "seed": config.seed, "level": config.level },
    });
    write_file(
        &job.outputs["metrics"],
        &serde_json::to_vec_pretty(&metrics).expect("serialises"),
    )?;
    let mut lines = Vec::new();
    for s in &samples {
        lines.extend(serde_json::to_vec(s).expect("serialises"));
        lines.push(b'\n');
    }
    write_file(&job.outputs["samples"], &lines)?;
    rep.send(Report::Meta {
        port: "metrics".into(),
        value: json!({ "tasks": per_task.len(), "groups": per_group.len(), "model": model.identity() }),
    });
    rep.send(Report::Meta {
        port: "samples".into(),
        value: json!({ "rows": samples.len() }),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn select_error(tasks: &[&str]) -> NodeError {
        let p: EvaluateParams = serde_json::from_value(json!({
            "tasks": tasks, "batch_size": 16, "chat": false, "fewshot_as_multiturn": false,
            "bootstrap_iters": 1000, "seed": 1, "lint": "error",
        }))
        .unwrap();
        select(&p).map(|_| ()).unwrap_err()
    }

    #[test]
    fn an_unknown_task_is_a_typo_fix_or_the_closest_names() {
        let e = select_error(&["gsm8kk"]);
        assert_eq!(e.message, "No task or group is named `gsm8kk`");
        assert_eq!(e.hint.as_deref(), Some("did you mean `gsm8k`?"));
        let e = select_error(&["zzzzzzzz"]);
        let hint = e.hint.unwrap_or_default();
        assert!(hint.starts_with("the closest names are: "), "{hint}");
        assert_eq!(hint.matches(", ").count(), 4, "{hint}");
    }

    #[test]
    fn group_interval_brackets_the_weighted_mean() {
        let members = vec![vec![1.0; 30], [0.0, 1.0].repeat(20)];
        let config = BootstrapConfig {
            n_resamples: 500,
            seed: 1,
            level: 0.95,
        };
        let (lo, hi) = group_interval(&members, true, &config).unwrap();
        let weighted = (30.0 + 20.0) / 70.0;
        assert!(lo < weighted && weighted < hi, "{lo} {weighted} {hi}");
        // Same seed, same interval.
        assert_eq!(group_interval(&members, true, &config), Some((lo, hi)));
        // Unweighted: the mean of task means (1.0 and 0.5) sits inside.
        let (lo, hi) = group_interval(&members, false, &config).unwrap();
        assert!(lo < 0.75 && 0.75 < hi);
    }
}
