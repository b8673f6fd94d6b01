//! Turning a task definition and its documents into model requests, as lm-eval builds them.

use serde_json::Value as Json;

use crate::data::{Doc, read_docs};
use crate::error::{Error, Result};
use crate::score::Scoring;
use crate::spec::{DocField, OutputType, SamplerKind, TaskSpec};
use crate::template::{Templates, literal_eval, py_str_json};
use dag_metrics::PyRandom;

/// The documents a task runs on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskDocs {
    /// The evaluated split, in order; a document's id is its index here.
    pub eval: Vec<Doc>,
    /// The few-shot pool, in order (`None` when the task is zero-shot).
    pub fewshot: Option<Vec<Doc>>,
}

/// The gold answer of one document, as the definition gives it.
#[derive(Clone, Debug, PartialEq)]
pub enum Gold {
    /// An index into the choices (may be out of range; lint reports it).
    Index(i64),
    /// Several acceptable indices.
    Indices(Vec<i64>),
    /// A string (for multiple choice it must be one of the choices).
    Text(String),
    /// Several acceptable strings (NaturalQuestions).
    Texts(Vec<String>),
}

/// A log-likelihood question: how likely is `continuation` after `context`?
///
/// The model side must score exactly the continuation's tokens, taken as the tail of encoding
/// `context + continuation` (see [`crate::encode_pair`]); trailing whitespace of the context has
/// already been moved to the front of the continuation, as lm-eval does.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LoglikelihoodRequest {
    /// Everything before the answer.
    pub context: String,
    /// The answer, with the target delimiter in front.
    pub continuation: String,
}

/// A generation request.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateRequest {
    /// The prompt, used as is.
    pub context: String,
    /// Stop sequences; the output is cut before the first one found.
    pub until: Vec<String>,
    /// Sample instead of greedy decoding.
    pub do_sample: bool,
    /// Sampling temperature.
    pub temperature: f64,
    /// Most new tokens.
    pub max_gen_toks: usize,
    /// Other decoding settings from the definition, untouched.
    pub extra: std::collections::BTreeMap<String, Json>,
    /// Which repeat this is (0-based); sampled decoding should seed on it.
    pub repeat: usize,
}

/// One request to the model.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// Score a continuation.
    Loglikelihood(LoglikelihoodRequest),
    /// Generate text.
    Generate(GenerateRequest),
}

/// A document ready for the model: its rendered prompt, choices, gold and requests.
#[derive(Clone, Debug, PartialEq)]
pub struct PreparedDoc {
    /// Index of the document in the evaluated split.
    pub doc_id: usize,
    /// The full prompt as lm-eval renders it (description, few-shot examples, question).
    pub prompt: String,
    /// The question alone (`doc_to_text`), for lint.
    pub question: String,
    /// The chat messages the prompt was rendered from (empty without a chat template).
    pub messages: Vec<ChatMessage>,
    /// The choices (multiple choice, or the list a generation target indexes).
    pub choices: Vec<String>,
    /// The gold answer.
    pub gold: Gold,
    /// One log-likelihood request per choice, or `repeats` generation requests.
    pub requests: Vec<Request>,
}

/// One chat turn, as handed to a chat template.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// Renders chat messages into the model's prompt text with the generation prompt appended
/// (the tokenizer's chat template, `add_generation_prompt=True`).
pub type ChatRenderer<'a> = &'a (dyn Fn(&[ChatMessage]) -> String + Sync);

/// Chat-template settings.
#[derive(Clone, Copy)]
pub struct ChatOptions<'a> {
    /// Keep few-shot examples as separate user/assistant turns; otherwise everything after the
    /// system turn is one user message.
    pub fewshot_as_multiturn: bool,
    /// The chat template.
    pub render: ChatRenderer<'a>,
}

impl std::fmt::Debug for ChatOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatOptions")
            .field("fewshot_as_multiturn", &self.fewshot_as_multiturn)
            .finish_non_exhaustive()
    }
}

/// How prompts are framed beyond the task definition.
#[derive(Clone, Debug, Default)]
pub struct PromptOptions<'a> {
    /// Text before the description (joined with the few-shot delimiter); with a chat template
    /// it is the system message.
    pub system_instruction: Option<String>,
    /// Render through a chat template.
    pub chat: Option<ChatOptions<'a>>,
}

/// lm-eval's `maybe_delimit`: join with `delimiter` unless either side already has whitespace
/// at the boundary.
fn maybe_delimit(prefix: &str, suffix: &str, delimiter: &str) -> String {
    if prefix.is_empty() {
        return suffix.to_string();
    }
    if suffix.is_empty() {
        return prefix.to_string();
    }
    let ws_boundary = prefix.chars().last().is_some_and(is_py_whitespace)
        || suffix.chars().next().is_some_and(is_py_whitespace);
    if ws_boundary {
        format!("{prefix}{suffix}")
    } else {
        format!("{prefix}{delimiter}{suffix}")
    }
}

/// lm-eval's chat message list: every turn as is (`fewshot_as_multiturn`), or the system turn
/// and one user turn holding the rest in plain-text form (`multiturn_to_singleturn`).
fn chat_messages(turns: &[(&str, String, &str)], multiturn: bool) -> Vec<ChatMessage> {
    let message = |role: &str, content: String| ChatMessage {
        role: role.to_string(),
        content,
    };
    if multiturn {
        return turns
            .iter()
            .map(|(role, content, _)| message(role, content.clone()))
            .collect();
    }
    let (system, rest) = match turns.first() {
        Some(("system", content, _)) => (Some(content.clone()), &turns[1..]),
        _ => (None, turns),
    };
    let last = rest.len().saturating_sub(1);
    let user: String = rest
        .iter()
        .enumerate()
        .map(|(i, (_, content, delim))| {
            if i == last {
                content.clone()
            } else {
                format!("{content}{delim}")
            }
        })
        .collect();
    system
        .map(|s| message("system", s))
        .into_iter()
        .chain(std::iter::once(message("user", user)))
        .collect()
}

/// A task definition with its templates compiled.
#[derive(Debug)]
pub struct Task {
    spec: TaskSpec,
    templates: Templates,
    scoring: Scoring,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Text,
    Choice,
    Target,
    Description,
}

impl Role {
    fn key(self) -> &'static str {
        match self {
            Role::Text => "doc_to_text",
            Role::Choice => "doc_to_choice",
            Role::Target => "doc_to_target",
            Role::Description => "description",
        }
    }
}

impl Task {
    /// Check the definition and compile its templates.
    pub fn new(spec: TaskSpec) -> Result<Self> {
        spec.validate()?;
        let mut templates = Templates::new();
        let mut sources = vec![(Role::Description, spec.description.clone())];
        for (role, field) in [
            (Role::Text, Some(&spec.doc_to_text)),
            (Role::Choice, spec.doc_to_choice.as_ref()),
            (Role::Target, Some(&spec.doc_to_target)),
        ] {
            if let Some(
                DocField::Template(s)
                | DocField::FieldOrTemplate {
                    field_or_template: s,
                },
            ) = field
            {
                sources.push((role, s.clone()));
            }
        }
        for (role, source) in sources {
            templates
                .compile(&source)
                .map_err(|source| Error::TemplateSyntax {
                    task: spec.name.clone(),
                    field: role.key().to_string(),
                    source,
                })?;
        }
        let scoring = Scoring::compile(&spec)?;
        Ok(Self {
            spec,
            templates,
            scoring,
        })
    }

    /// The definition.
    pub fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    pub(crate) fn scoring(&self) -> &Scoring {
        &self.scoring
    }

    /// The task's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Read the evaluated split and the few-shot split from the files named in `splits`.
    ///
    /// A missing few-shot file is an error unless `fewshot.optional` is set, in which case the
    /// task runs zero-shot.
    pub fn load_docs(&self) -> Result<TaskDocs> {
        let spec = &self.spec;
        let eval_split = spec.eval_split().ok_or_else(|| Error::MissingData {
            task: spec.name.clone(),
            message: "neither `test_split` nor `validation_split` is set".into(),
            hint: "set `test_split = \"test\"` and `[task.splits] test = \"path.jsonl\"`".into(),
        })?;
        let eval_path = spec.splits.get(eval_split).ok_or_else(|| Error::MissingData {
            task: spec.name.clone(),
            message: format!("split `{eval_split}` has no data file"),
            hint: format!("point it at a file: `task.set_split(\"{eval_split}\", path)` or `[task.splits] {eval_split} = \"...\"`"),
        })?;
        let eval = read_docs(eval_path)?;
        let mut fewshot = None;
        if spec.fewshot.num > 0 {
            let split = spec.fewshot_split().unwrap_or(eval_split);
            match spec.splits.get(split) {
                Some(path) if path == eval_path => fewshot = Some(eval.clone()),
                Some(path) => fewshot = Some(read_docs(path)?),
                None if spec.fewshot.optional => {}
                None => {
                    return Err(Error::MissingData {
                        task: spec.name.clone(),
                        message: format!(
                            "{}-shot needs the few-shot split `{split}`, which has no data file",
                            spec.fewshot.num
                        ),
                        hint: format!(
                            "point it at a file (`[task.splits] {split} = \"...\"`) or set `fewshot.num = 0`"
                        ),
                    });
                }
            }
        }
        Ok(TaskDocs { eval, fewshot })
    }

    /// Render every document (or the first `limit`) into prompts and requests.
    ///
    /// Few-shot examples are drawn in document order from one generator seeded with
    /// `fewshot.seed`, as lm-eval does, so the first `limit` documents get the same examples as
    /// lm-eval's `--limit`.
    pub fn prepare(&self, docs: &TaskDocs, limit: Option<usize>) -> Result<Vec<PreparedDoc>> {
        self.prepare_with(docs, limit, &PromptOptions::default())
    }

    /// [`Task::prepare`] with a system instruction and/or a chat template, as lm-eval's
    /// `--system_instruction`, `--apply_chat_template` and `--fewshot_as_multiturn` do.
    pub fn prepare_with(
        &self,
        docs: &TaskDocs,
        limit: Option<usize>,
        options: &PromptOptions<'_>,
    ) -> Result<Vec<PreparedDoc>> {
        let spec = &self.spec;
        let n = limit.map_or(docs.eval.len(), |l| l.min(docs.eval.len()));
        let shots = match &docs.fewshot {
            Some(_) => spec.fewshot.num,
            None => 0,
        };
        let pool: &[Doc] = docs.fewshot.as_deref().unwrap_or(&[]);
        let mut rng = PyRandom::new(spec.fewshot.seed);
        let mut out = Vec::with_capacity(n);
        for (doc_id, doc) in docs.eval.iter().take(n).enumerate() {
            let examples = self.pick_examples(doc, doc_id, pool, shots, &mut rng)?;
            out.push(self.prepare_doc(doc_id, doc, &examples, options)?);
        }
        Ok(out)
    }

    fn pick_examples<'a>(
        &self,
        doc: &Doc,
        doc_id: usize,
        pool: &'a [Doc],
        shots: usize,
        rng: &mut PyRandom,
    ) -> Result<Vec<&'a Doc>> {
        if shots == 0 {
            return Ok(Vec::new());
        }
        let spec = &self.spec;
        let candidates: Vec<&Doc> = match &spec.fewshot.same_field {
            Some(field) => pool
                .iter()
                .filter(|d| d.get(field) == doc.get(field))
                .collect(),
            None => pool.iter().collect(),
        };
        let exclude = spec.excludes_eval_doc();
        let too_few = |have: usize| Error::Document {
            task: spec.name.clone(),
            doc_id,
            field: "num_fewshot".into(),
            message: format!(
                "{shots}-shot needs {} examples but the few-shot pool has {have}",
                shots + usize::from(exclude)
            ),
            source: None,
        };
        match spec.fewshot.sampler {
            SamplerKind::FirstN => {
                let kept: Vec<&Doc> = candidates
                    .into_iter()
                    .filter(|d| !exclude || *d != doc)
                    .collect();
                if kept.len() < shots {
                    return Err(too_few(kept.len()));
                }
                Ok(kept.into_iter().take(shots).collect())
            }
            SamplerKind::Random => {
                let draw = shots + usize::from(exclude);
                let idx = rng
                    .sample_indices(candidates.len(), draw)
                    .ok_or_else(|| too_few(candidates.len()))?;
                let picked: Vec<&Doc> = idx
                    .into_iter()
                    .map(|i| candidates[i])
                    .filter(|d| !exclude || *d != doc)
                    .take(shots)
                    .collect();
                if picked.len() == shots {
                    return Ok(picked);
                }
                // Several pool rows equal the evaluated document and more than one was drawn:
                // lm-eval then draws again from the pool without any copy of it.
                let pool: Vec<&Doc> = candidates.into_iter().filter(|d| *d != doc).collect();
                let idx = rng
                    .sample_indices(pool.len(), shots)
                    .ok_or_else(|| too_few(pool.len()))?;
                Ok(idx.into_iter().map(|i| pool[i]).collect())
            }
        }
    }

    fn prepare_doc(
        &self,
        doc_id: usize,
        doc: &Doc,
        examples: &[&Doc],
        options: &PromptOptions<'_>,
    ) -> Result<PreparedDoc> {
        let spec = &self.spec;
        let fs_target_delim = spec
            .fewshot
            .target_delimiter
            .as_deref()
            .unwrap_or(&spec.target_delimiter);
        let fs_delim = spec
            .fewshot
            .fewshot_delimiter
            .as_deref()
            .unwrap_or(&spec.fewshot_delimiter);

        // lm-eval builds a list of turns, each with the delimiter that follows it in plain
        // text; plain prompts concatenate them, chat prompts hand them to the chat template.
        let mut turns: Vec<(&'static str, String, &str)> = Vec::new();
        let description = self.description(doc, doc_id)?;
        let system = maybe_delimit(
            options.system_instruction.as_deref().unwrap_or(""),
            &description,
            &spec.fewshot_delimiter,
        );
        if !system.is_empty() {
            turns.push(("system", system, ""));
        }
        for example in examples {
            let question = self.text(example, doc_id)?;
            let choices = self.choices(example, doc_id)?;
            match self.answer_text(example, doc_id, &choices)? {
                Some(answer) => {
                    turns.push(("user", question, fs_target_delim));
                    turns.push(("assistant", answer, fs_delim));
                }
                None => turns.push(("user", question, "")),
            }
        }
        let question = self.text(doc, doc_id)?;
        turns.push(("user", question.clone(), ""));

        let (prompt, messages) = match &options.chat {
            None => (
                turns
                    .iter()
                    .map(|(_, content, delim)| format!("{content}{delim}"))
                    .collect::<String>(),
                Vec::new(),
            ),
            Some(chat) => {
                let messages = chat_messages(&turns, chat.fewshot_as_multiturn);
                ((chat.render)(&messages), messages)
            }
        };

        // With a chat template the answer starts its own assistant turn, so lm-eval drops the
        // target delimiter (it keeps it only after a generation prefix, which we do not have).
        let target_delimiter = if options.chat.is_some() {
            ""
        } else {
            spec.target_delimiter.as_str()
        };
        let choices = self.choices(doc, doc_id)?.unwrap_or_default();
        let gold = self.gold(doc, doc_id)?;
        let requests = match spec.output_type {
            OutputType::MultipleChoice => choices
                .iter()
                .map(|choice| {
                    Request::Loglikelihood(split_whitespace(
                        &prompt,
                        &format!("{target_delimiter}{choice}"),
                    ))
                })
                .collect(),
            OutputType::GenerateUntil => (0..spec.repeats)
                .map(|repeat| {
                    Request::Generate(GenerateRequest {
                        context: prompt.clone(),
                        until: spec.generation.until.clone(),
                        do_sample: spec.generation.do_sample,
                        temperature: spec.generation.temperature,
                        max_gen_toks: spec.generation.max_gen_toks,
                        extra: spec.generation.extra.clone(),
                        repeat,
                    })
                })
                .collect(),
        };
        Ok(PreparedDoc {
            doc_id,
            prompt,
            question,
            messages,
            choices,
            gold,
            requests,
        })
    }

    fn doc_error(&self, doc_id: usize, role: Role, message: String) -> Error {
        Error::Document {
            task: self.spec.name.clone(),
            doc_id,
            field: role.key().to_string(),
            message,
            source: None,
        }
    }

    /// Resolve a field spec to a value by lm-eval's rules for that role.
    fn resolve(&self, field: &DocField, doc: &Doc, doc_id: usize, role: Role) -> Result<Json> {
        let has_choices = self.spec.doc_to_choice.is_some();
        match field {
            DocField::Index(i) => Ok(Json::from(*i)),
            DocField::List(items) => Ok(Json::from(items.clone())),
            DocField::Field { field } => doc.get(field).cloned().ok_or_else(|| {
                self.doc_error(doc_id, role, format!("the document has no field `{field}`"))
            }),
            DocField::Fields { fields } => fields
                .iter()
                .map(|f| {
                    doc.get(f).cloned().ok_or_else(|| {
                        self.doc_error(doc_id, role, format!("the document has no field `{f}`"))
                    })
                })
                .collect::<Result<Vec<_>>>()
                .map(Json::Array),
            DocField::FieldOrTemplate {
                field_or_template: name,
            } if doc.contains_key(name) => Ok(doc[name].clone()),
            DocField::Template(source)
            | DocField::FieldOrTemplate {
                field_or_template: source,
            } => {
                let text = self
                    .templates
                    .render(source, doc)
                    .map_err(|e| Error::Document {
                        task: self.spec.name.clone(),
                        doc_id,
                        field: role.key().to_string(),
                        message: e.to_string(),
                        source: Some(e),
                    })?;
                let is_digits = !text.is_empty() && text.chars().all(|c| c.is_ascii_digit());
                Ok(match role {
                    Role::Text | Role::Target if is_digits && has_choices => {
                        literal_eval(&text).unwrap_or(Json::String(text))
                    }
                    Role::Target
                        if text.len() >= 2 && text.starts_with('[') && text.ends_with(']') =>
                    {
                        literal_eval(&text).unwrap_or(Json::String(text))
                    }
                    Role::Choice => literal_eval(&text).ok_or_else(|| {
                        self.doc_error(
                            doc_id,
                            role,
                            format!(
                                "the template rendered `{text}`, which is not a Python list literal"
                            ),
                        )
                    })?,
                    _ => Json::String(text),
                })
            }
        }
    }

    fn description(&self, doc: &Doc, doc_id: usize) -> Result<String> {
        if self.spec.description.is_empty() {
            return Ok(String::new());
        }
        let value = self.resolve(
            &DocField::FieldOrTemplate {
                field_or_template: self.spec.description.clone(),
            },
            doc,
            doc_id,
            Role::Description,
        )?;
        Ok(json_to_text(&value))
    }

    fn text(&self, doc: &Doc, doc_id: usize) -> Result<String> {
        match self.resolve(&self.spec.doc_to_text, doc, doc_id, Role::Text)? {
            Json::String(s) => Ok(s),
            Json::Number(n) if self.spec.doc_to_choice.is_some() => Err(self.doc_error(
                doc_id,
                Role::Text,
                format!("it resolved to the index {n}: multiple-input tasks (one context per choice, as Winogrande) are not supported"),
            )),
            other => Ok(json_to_text(&other)),
        }
    }

    fn choices(&self, doc: &Doc, doc_id: usize) -> Result<Option<Vec<String>>> {
        let Some(field) = &self.spec.doc_to_choice else {
            return Ok(None);
        };
        let value = self.resolve(field, doc, doc_id, Role::Choice)?;
        let items = match value {
            Json::Array(items) => items,
            Json::Object(map) => map.into_iter().map(|(_, v)| v).collect(),
            other => {
                return Err(self.doc_error(
                    doc_id,
                    Role::Choice,
                    format!("expected a list of choices, found `{other}`"),
                ));
            }
        };
        items
            .into_iter()
            .map(|item| match item {
                Json::String(s) => Ok(s),
                other => Err(self.doc_error(
                    doc_id,
                    Role::Choice,
                    format!("choice `{other}` is not a string"),
                )),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    fn gold(&self, doc: &Doc, doc_id: usize) -> Result<Gold> {
        let value = self.resolve(&self.spec.doc_to_target, doc, doc_id, Role::Target)?;
        let bad = |v: &Json| {
            self.doc_error(
                doc_id,
                Role::Target,
                format!("expected an index, a string or a list of them, found `{v}`"),
            )
        };
        match &value {
            Json::Number(n) => n.as_i64().map(Gold::Index).ok_or_else(|| bad(&value)),
            Json::String(s) => Ok(Gold::Text(s.clone())),
            Json::Array(items) if items.iter().all(Json::is_i64) => Ok(Gold::Indices(
                items.iter().filter_map(Json::as_i64).collect(),
            )),
            Json::Array(items) => Ok(Gold::Texts(items.iter().map(json_to_text).collect())),
            Json::Bool(b) => Ok(Gold::Text(if *b { "True" } else { "False" }.into())),
            _ => Err(bad(&value)),
        }
    }

    /// The answer shown after a few-shot example's question (`None` when it has none).
    fn answer_text(
        &self,
        doc: &Doc,
        doc_id: usize,
        choices: &Option<Vec<String>>,
    ) -> Result<Option<String>> {
        let gold = self.gold(doc, doc_id)?;
        let from_index = |i: i64| -> Result<String> {
            let choices = choices.as_ref().ok_or_else(|| {
                self.doc_error(
                    doc_id,
                    Role::Target,
                    format!(
                        "a few-shot example's target is the index {i} but the task has no choices"
                    ),
                )
            })?;
            usize::try_from(i)
                .ok()
                .and_then(|i| choices.get(i).cloned())
                .ok_or_else(|| {
                    self.doc_error(
                        doc_id,
                        Role::Target,
                        format!(
                            "a few-shot example's target index {i} is outside its {} choices",
                            choices.len()
                        ),
                    )
                })
        };
        let text = match gold {
            Gold::Index(i) => from_index(i)?,
            Gold::Indices(v) => match v.first() {
                Some(&i) => from_index(i)?,
                None => String::new(),
            },
            Gold::Text(s) => s,
            Gold::Texts(v) => v.into_iter().next().unwrap_or_default(),
        };
        Ok((!text.is_empty()).then_some(text))
    }
}

/// Python's `str(value)` for JSON values that end up in text.
fn json_to_text(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        Json::Null => "None".into(),
        Json::Bool(b) => if *b { "True" } else { "False" }.into(),
        Json::Number(n) => n.to_string(),
        other => py_str_json(other),
    }
}

/// lm-eval's context/continuation split: trailing whitespace of the context (Python's
/// `str.rstrip`) moves to the front of the continuation, so that tokenizers which attach a
/// space to the following word see it where the answer begins.
pub fn split_whitespace(context: &str, continuation: &str) -> LoglikelihoodRequest {
    let trimmed = context.trim_end_matches(is_py_whitespace);
    let moved = &context[trimmed.len()..];
    LoglikelihoodRequest {
        context: trimmed.to_string(),
        continuation: format!("{moved}{continuation}"),
    }
}

/// Python's `str.isspace` for one character.
pub(crate) fn is_py_whitespace(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\u{1c}'..='\u{1f}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_moves_to_the_continuation() {
        let r = split_whitespace("Answer: \n", " A");
        assert_eq!(r.context, "Answer:");
        assert_eq!(r.continuation, " \n A");
        let r = split_whitespace("Assistant:", " (A)");
        assert_eq!(r.context, "Assistant:");
        assert_eq!(r.continuation, " (A)");
    }
}
