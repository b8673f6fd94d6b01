//! What every judge-graded node shares: the calls it plans are looked up among saved replies
//! first, the rest are sent (bounded, retried, within a budget) and each reply is saved the
//! moment it arrives, and several judges' verdicts are compared.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use dag_engine::{
    ArtifactKind, NodeError, ParamError, PortSpec, Resources, RunContext, Value as EngineValue,
};
use dag_judge::remote::{Budget, Call, CallError, Endpoint, SharedLimits, run_calls};
use dag_judge::retry::RetryPolicy;
use dag_judge::{JudgeId, JudgeReply, JudgeRequest, Message};
use dag_protocol::judge::{
    ChatMessage, JudgeParams, LOCAL_JUDGE_JOB, LocalJudgeParams, LocalJudgeReply, LocalJudgeRequest,
};
use dag_protocol::{Job, JobInput};
use dag_store::Digest;
use serde_json::{Value, json};

use crate::worker::run_job;

/// Who grades: a model at an OpenAI-compatible API, or a model the runtime loads (a
/// `model` node or a finetune checkpoint connected to the node's `judge` input), whose
/// identity is its artifact's digest.
pub(crate) struct Judge {
    /// The name scores are reported under: the API's model name, or the input's label.
    pub name: String,
    /// What the judge's calls are keyed by.
    pub id: JudgeId,
    /// The model artifact of a local judge.
    local: Option<JobInput>,
}

/// The `judge` input: any number of local judge models.
pub(crate) const JUDGE_PORT: PortSpec = PortSpec::new(
    "judge",
    ArtifactKind::Model,
    "local judge models (a `model` node or a finetune checkpoint), beside or instead of `judge_url` and `judges`",
)
.many()
.optional();

/// What a judge-graded node holds: a CPU and a connection of the scheduler's `api` class
/// (its requests are bounded per endpoint on top, see [`send`]).
pub(crate) const RESOURCES: Resources = Resources {
    cpu: 1,
    gpu: 0,
    api: 1,
};

/// [`RESOURCES`], and the GPU class when a local judge is connected: the judge is a model
/// run like `generate`'s, never beside another on the same device or cores.
pub(crate) fn resources(connected: &[&str]) -> Resources {
    if connected.contains(&JUDGE_PORT.name) {
        Resources {
            gpu: 1,
            ..RESOURCES
        }
    } else {
        RESOURCES
    }
}

/// The node's judges: its local `judge` models, then `judges` at `judge_url`. Both kinds
/// may grade side by side (a local SmolLM2 beside an API judge): each is scored on its own,
/// and their agreement is reported.
pub(crate) fn judges(ctx: &RunContext<'_>, j: &JudgeParams) -> Result<Vec<Judge>, NodeError> {
    let mut judges: Vec<Judge> = ctx
        .inputs(JUDGE_PORT.name)
        .iter()
        .map(|a| Judge {
            name: a.label.clone(),
            id: JudgeId::new("local", &a.digest.to_hex()),
            local: Some(JobInput {
                path: a.path.clone(),
                digest: a.digest.to_hex(),
                kind: a.kind.name().into(),
                meta: a.meta.clone(),
                label: a.label.clone(),
            }),
        })
        .collect();
    if let (Some(url), Some(names)) = (&j.judge_url, &j.judges) {
        let pins = j.judge_revisions.clone().unwrap_or_default();
        judges.extend(names.iter().enumerate().map(|(i, n)| Judge {
            name: n.clone(),
            id: JudgeId::new(url, n).pinned(pins.get(i).cloned()),
            local: None,
        }));
    }
    if judges.is_empty() {
        return Err(NodeError::msg("The node has no judge").hint(
            "set `judge_url` and `judges` for an API judge, or connect a model to the `judge` input for a local one",
        ));
    }
    Ok(judges)
}

impl Judge {
    /// Whether the runtime loads this judge (its replies carry log-likelihoods).
    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    /// The request for `prompt`, whose verdict is one of `choices` (the scorer's verdict
    /// grammar). A local judge's reply is constrained to exactly one of them. An API judge
    /// with `json_verdict` is asked, by JSON schema, for its reasoning and then one of them
    /// (read back by [`Judge::verdict`]); without it, the prompt alone asks. The constraint
    /// is part of the request, so of the call's key.
    pub(crate) fn request(
        &self,
        j: &JudgeParams,
        prompt: String,
        choices: &[&str],
    ) -> JudgeRequest {
        let schema = json!({
            "type": "object",
            "properties": {
                "reasoning": { "type": "string" },
                "verdict": { "type": "string", "enum": choices },
            },
            "required": ["reasoning", "verdict"],
            "additionalProperties": false,
        });
        let quoted: Vec<String> = choices.iter().map(|c| format!("{c:?}")).collect();
        let ask = format!(
            "\n\nAnswer with one JSON object: {{\"reasoning\": your reasoning, \"verdict\": one of {}}}.",
            quoted.join(", ")
        );
        self.request_shaped(j, prompt, choices, schema, &ask)
    }

    /// [`Judge::request`] for a node whose reply is itself a JSON object: an API judge with
    /// `json_verdict` is held to `schema`, and `ask` is added to the prompt when it is.
    pub(crate) fn request_shaped(
        &self,
        j: &JudgeParams,
        mut prompt: String,
        choices: &[&str],
        schema: Value,
        ask: &str,
    ) -> JudgeRequest {
        let response_format = if self.local.is_some() {
            Some(json!({ "type": "choices", "choices": choices }))
        } else if j.json_verdict {
            prompt.push_str(ask);
            Some(json!({
                "type": "json_schema",
                "json_schema": { "name": "verdict", "strict": true, "schema": schema },
            }))
        } else {
            None
        };
        JudgeRequest {
            messages: vec![Message::user(prompt)],
            temperature: j.judge_temperature,
            max_tokens: j.judge_max_tokens as u32,
            seed: j.judge_seed.map(|s| s as u64),
            response_format,
        }
    }
}

/// The verdict in a reply to [`Judge::request`], for the scorer's own strict parser: the
/// `verdict` of an API judge's JSON object when `json_verdict` asked for one, else the text.
/// A reply that is not such an object is handed on whole, so the parser reports it unscored
/// rather than this guessing. (A local judge's reply is one of the verdicts, never an object.)
pub(crate) fn verdict<'r>(j: &JudgeParams, reply: &'r JudgeReply) -> Cow<'r, str> {
    if !j.json_verdict {
        return Cow::Borrowed(&reply.text);
    }
    match serde_json::from_str::<Value>(reply.text.trim()) {
        Ok(Value::Object(o)) => match o.get("verdict") {
            Some(Value::String(v)) => Cow::Owned(v.clone()),
            _ => Cow::Borrowed(&reply.text),
        },
        _ => Cow::Borrowed(&reply.text),
    }
}

/// The judges' names, in order, as scores report them.
pub(crate) fn names(judges: &[Judge]) -> Vec<String> {
    judges.iter().map(|j| j.name.clone()).collect()
}

/// One call a node needs: its key (`dag_judge::call_key`), the judge's name and the
/// request. Several gradings may share a key (the same request in the same epoch): it is
/// sent once.
pub(crate) struct Planned<'a> {
    pub key: [u8; 32],
    pub judge: &'a str,
    pub request: &'a JudgeRequest,
}

/// The reply to every planned call, by key: saved ones reused, the others sent now and
/// saved one by one as they arrive. Fails, after saving every reply that came, if any call
/// could not be answered.
pub(crate) fn replies<'a>(
    ctx: &mut RunContext<'_>,
    j: &JudgeParams,
    judges: &[Judge],
    planned: impl IntoIterator<Item = Planned<'a>>,
) -> Result<HashMap<[u8; 32], JudgeReply>, NodeError> {
    let mut replies: HashMap<[u8; 32], JudgeReply> = HashMap::new();
    let mut queued = HashSet::new();
    let mut calls = Vec::new();
    let mut local: BTreeMap<usize, Vec<LocalJudgeRequest>> = BTreeMap::new();
    let mut judge_of: Vec<([u8; 32], &str)> = Vec::new();
    for p in planned {
        judge_of.push((p.key, p.judge));
        if replies.contains_key(&p.key) || queued.contains(&p.key) {
            continue;
        }
        let is_local = |name: &str| judges.iter().any(|x| x.name == name && x.local.is_some());
        // Saved replies first: they cost nothing and need no key. A local reply saved
        // before replies kept their log-likelihoods is asked again (locally: free).
        let saved = ctx
            .call_result::<JudgeReply>(&Digest(p.key))?
            .filter(|r| r.logprobs.is_some() || !is_local(p.judge));
        match saved {
            Some(r) => {
                replies.insert(p.key, r);
            }
            None => {
                queued.insert(p.key);
                let (index, judge) = judges
                    .iter()
                    .enumerate()
                    .find(|(_, x)| x.name == p.judge)
                    .expect("planned calls name the node's judges");
                if judge.local.is_some() {
                    local.entry(index).or_default().push(LocalJudgeRequest {
                        key: Digest(p.key).to_hex(),
                        messages: p
                            .request
                            .messages
                            .iter()
                            .map(|m| ChatMessage {
                                role: m.role.clone(),
                                content: m.content.clone(),
                            })
                            .collect(),
                        choices: p
                            .request
                            .response_format
                            .as_ref()
                            .and_then(|f| serde_json::from_value(f["choices"].clone()).ok())
                            .unwrap_or_default(),
                    });
                } else {
                    calls.push(Call {
                        key: p.key,
                        judge: judge.id.clone(),
                        request: p.request.clone(),
                    });
                }
            }
        }
    }
    let total = replies.len() + calls.len() + local.values().map(Vec::len).sum::<usize>();
    ctx.set_total(total as u64);
    ctx.advance(replies.len() as u64);
    if !replies.is_empty() {
        ctx.info(format!(
            "{} of {total} judge calls answered before; sending {}",
            replies.len(),
            total - replies.len()
        ));
    }
    if !calls.is_empty() {
        send(ctx, j, calls, &mut replies)?;
    }
    for (index, requests) in local {
        run_local(ctx, &judges[index], requests, &mut replies)?;
    }
    // The model an API serves under a name can change between calls (an alias moved to a
    // new snapshot) and is only known from a reply, so it cannot key the call; where it
    // moved, say so. Each row of the scores records the model that answered it.
    let mut served: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (key, judge) in &judge_of {
        if let Some(m) = replies.get(key).and_then(|r| r.served_model.as_deref()) {
            served.entry(judge).or_default().insert(m);
        }
    }
    for (judge, models) in served.iter().filter(|(_, m)| m.len() > 1) {
        let models: Vec<&str> = models.iter().copied().collect();
        ctx.info(format!(
            "warning: `{judge}` was answered by {} different served models ({}); its scores mix them, and each row records its `served_model`",
            models.len(),
            models.join(", ")
        ));
    }
    Ok(replies)
}

/// Answers `requests` with a local judge in `dag-worker`, saving each reply as its batch
/// arrives.
fn run_local(
    ctx: &mut RunContext<'_>,
    judge: &Judge,
    requests: Vec<LocalJudgeRequest>,
    replies: &mut HashMap<[u8; 32], JudgeReply>,
) -> Result<(), NodeError> {
    let scratch = ctx.scratch();
    let path = scratch.join(format!("judge-requests-{}.jsonl", judge.id.model));
    let mut text = String::new();
    for r in &requests {
        text.push_str(&serde_json::to_string(r).expect("a request serialises"));
        text.push('\n');
    }
    std::fs::write(&path, text)
        .map_err(|e| NodeError::caused(format!("Failed to write `{}`", path.display()), &e))?;
    let requests_input = JobInput {
        path,
        digest: String::new(),
        kind: "dataset".into(),
        meta: Value::Null,
        label: "judge requests".into(),
    };
    let model = judge.local.clone().expect("a local judge");
    let job = Job {
        node: LOCAL_JUDGE_JOB.into(),
        instance: ctx.instance().into(),
        params: dag_protocol::params::with_defaults(
            &<LocalJudgeParams as dag_protocol::params::Params>::fields(),
            serde_json::Map::new(),
        ),
        inputs: [
            ("model".to_string(), vec![model]),
            ("requests".to_string(), vec![requests_input]),
        ]
        .into(),
        outputs: Default::default(),
        scratch,
        resumed: vec![],
        work_dir: ctx.work_dir()?,
    };
    ctx.info(format!(
        "`{}` judges {} calls locally",
        judge.name,
        requests.len()
    ));
    run_job(ctx, &job, &mut |ctx, items| {
        for item in items {
            let r: LocalJudgeReply = serde_json::from_value(item)
                .map_err(|e| NodeError::caused("The local judge sent a malformed reply", &e))?;
            let key: Digest = r.key.parse().map_err(|_| {
                NodeError::msg(format!("The local judge sent a bad key `{}`", r.key))
            })?;
            let reply = JudgeReply {
                text: r.text,
                served_model: None,
                finish_reason: Some("choice".into()),
                logprobs: Some(r.logprobs),
            };
            ctx.save_call_result(&key, &reply)?;
            replies.insert(key.0, reply);
        }
        Ok(())
    })
}

/// What a local judge may reply to a model-graded-QA prompt: the verdict grammar's lines.
pub(crate) fn grade_choices(allow_partial: bool) -> &'static [&'static str] {
    if allow_partial {
        &["GRADE: C", "GRADE: P", "GRADE: I"]
    } else {
        &["GRADE: C", "GRADE: I"]
    }
}

/// The `{letters}` and `{choices}` of a model-graded-QA template: the grades a judge may give.
pub(crate) fn grade_letters(allow_partial: bool) -> [(&'static str, &'static str); 2] {
    if allow_partial {
        [
            ("letters", "C, P, or I"),
            (
                "choices",
                "either \"C\" for correct answers, \"P\" for partially correct answers, or \"I\" for incorrect answers",
            ),
        ]
    } else {
        [
            ("letters", "C or I"),
            (
                "choices",
                "either \"C\" for correct answers, or \"I\" for incorrect answers",
            ),
        ]
    }
}

/// The checks every judge-graded node makes when the graph loads.
pub(crate) fn check_judge_params(params: &BTreeMap<String, EngineValue>) -> Result<(), ParamError> {
    if let Some(EngineValue::List(judges)) = params.get("judges")
        && judges.is_empty()
    {
        return Err(ParamError::new(
            "judges",
            "no judge is named",
            "name at least one model served at `judge_url`, e.g. `judges = [\"gpt-4.1-mini\"]`",
        ));
    }
    match (
        params.contains_key("judge_url"),
        params.contains_key("judges"),
    ) {
        (true, false) => {
            return Err(ParamError::new(
                "judge_url",
                "`judge_url` names an API but `judges` names no model there",
                "add e.g. `judges = [\"gpt-4.1-mini\"]`",
            ));
        }
        (false, true) => {
            return Err(ParamError::new(
                "judges",
                "`judges` names models but `judge_url` says where they are served",
                "add e.g. `judge_url = \"http://127.0.0.1:8000/v1\"`, or connect a local model to the `judge` input instead",
            ));
        }
        _ => {}
    }
    if let Some(EngineValue::Str(url)) = params.get("judge_url")
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(ParamError::new(
            "judge_url",
            format!("`{url}` is not an http(s) URL"),
            "write the API's base URL, e.g. `judge_url = \"http://127.0.0.1:8000/v1\"`",
        ));
    }
    if let Some(EngineValue::List(pins)) = params.get("judge_revisions") {
        let judges = match params.get("judges") {
            Some(EngineValue::List(j)) => j.len(),
            _ => 0,
        };
        if pins.len() != judges {
            return Err(ParamError::new(
                "judge_revisions",
                format!("{} revisions for {judges} judges", pins.len()),
                "give one served model id per name in `judges`, in the same order",
            ));
        }
    }
    Ok(())
}

/// How far several judges agree on the same items: `items` maps an item to each judge's
/// verdict (absent where the judge's reply did not parse). Cohen's kappa for each pair of
/// judges over the items both scored, and Fleiss' kappa over the items every judge scored;
/// `null` with a reason where it is undefined (one judge, too few items, one verdict only).
pub(crate) fn agreement<K: Ord>(
    judges: &[String],
    items: &BTreeMap<K, BTreeMap<String, char>>,
) -> Value {
    if judges.len() < 2 {
        return json!({ "note": "one judge: no agreement to measure" });
    }
    let mut pairs = Vec::new();
    for (a, ja) in judges.iter().enumerate() {
        for jb in &judges[a + 1..] {
            let (xa, xb): (Vec<char>, Vec<char>) = items
                .values()
                .filter_map(|v| Some((*v.get(ja)?, *v.get(jb)?)))
                .unzip();
            let kappa = dag_metrics::cohen_kappa(&xa, &xb);
            pairs.push(json!({
                "judges": [ja, jb],
                "items": xa.len(),
                "cohen_kappa": kappa.as_ref().ok(),
                "note": kappa.err().map(|e| e.to_string()),
            }));
        }
    }
    let complete: Vec<Vec<char>> = items
        .values()
        .filter(|v| judges.iter().all(|j| v.contains_key(j)))
        .map(|v| judges.iter().map(|j| v[j]).collect())
        .collect();
    let fleiss = dag_metrics::aggregate_raters(&complete)
        .and_then(|(table, _)| dag_metrics::fleiss_kappa(&table));
    json!({
        "pairs": pairs,
        "fleiss_kappa": fleiss.as_ref().ok(),
        "fleiss_items": complete.len(),
        "fleiss_note": fleiss.err().map(|e| e.to_string()),
    })
}

/// Sends the calls, saving each reply as it arrives.
fn send(
    ctx: &RunContext<'_>,
    j: &JudgeParams,
    calls: Vec<Call>,
    replies: &mut HashMap<[u8; 32], JudgeReply>,
) -> Result<(), NodeError> {
    let api_key = match &j.api_key_env {
        None => None,
        Some(name) => Some(std::env::var(name).map_err(|_| {
            NodeError::msg(format!(
                "The environment variable `{name}` (`api_key_env`) is not set"
            ))
            .hint(format!(
                "export {name}=... before `dag run`; the key is read at run time and never stored"
            ))
        })?),
    };
    let base_url = j.judge_url.clone().unwrap_or_default();
    // Bounds shared by every node of the run: `--api-connections` per endpoint and
    // `--max-api-calls` in all, beside the node's own `concurrency` and `max_calls`.
    let run = ctx.run_shared(|l| SharedLimits::new(l.api as usize, l.api_calls, "--max-api-calls"));
    let endpoint = Endpoint {
        shared_slots: Some(run.slots(&base_url)),
        base_url,
        api_key,
        concurrency: j.concurrency as usize,
        timeout: std::time::Duration::from_secs_f64(j.timeout_s),
        retry: RetryPolicy {
            max_retries: j.max_retries as u32,
            ..RetryPolicy::default()
        },
    };
    let budget =
        Arc::new(Budget::new(j.max_calls.map(|n| n as u64), "max_calls").within(run.budget()));
    let wanted = calls.len();
    let mut first_failure: Option<CallError> = None;
    let mut not_sent = 0usize;
    let mut retries = 0u64;
    let mut saved = 0u64;
    run_calls(
        &endpoint,
        calls,
        budget.clone(),
        ctx.cancel_flag(),
        |r| {
            retries += 1;
            ctx.info(format!(
                "`{}` retry {} in {:.2} s after {}",
                r.model,
                r.retry,
                r.wait.as_secs_f64(),
                r.why
            ));
        },
        |call, result, _attempts| -> Result<(), NodeError> {
            match result {
                Ok(reply) => {
                    ctx.save_call_result(&Digest(call.key), &reply)?;
                    replies.insert(call.key, reply);
                    ctx.advance(1);
                    saved += 1;
                    hold_if_asked(saved);
                }
                Err(CallError::NotSent) => not_sent += 1,
                Err(e) => {
                    not_sent += 1;
                    first_failure.get_or_insert(e);
                }
            }
            Ok(())
        },
    )
    .map_err(|e| NodeError::caused("Failed to start the judge client", &e))??;
    ctx.info(format!(
        "{} judge requests sent ({retries} retries) for {wanted} calls",
        budget.used()
    ));
    ctx.check_cancelled()?;
    if let Some(e) = first_failure {
        let done = wanted - not_sent;
        let hint = match &e {
            CallError::BudgetSpent { setting, .. } => {
                format!("raise `{setting}` and rerun: answered calls are saved and not sent again")
            }
            CallError::Refused {
                status: 401 | 403, ..
            } => format!(
                "check the API key{}; answered calls are saved and not sent again",
                j.api_key_env
                    .as_ref()
                    .map(|n| format!(" in `{n}`"))
                    .unwrap_or_default()
            ),
            CallError::WrongModel(_) => "the name now serves another model: pin that one in `judge_revisions` (its calls are then asked again), or serve the pinned one; answered calls are saved".to_string(),
            CallError::Refused { status: 404, .. } => {
                "check `judge_url` (up to and including `/v1`) and the model names in `judges`"
                    .to_string()
            }
            _ => "rerun when the API is reachable: answered calls are saved and not sent again"
                .to_string(),
        };
        return Err(NodeError::caused(
            format!("{done} of {wanted} judge calls answered and saved; the rest were not made"),
            &e,
        )
        .hint(hint));
    }
    Ok(())
}

/// The test hook of `dag_protocol::test_hold`: after exactly N saved calls, say so and wait
/// to be killed, so a test kills a grading at a known point on a machine of any speed.
fn hold_if_asked(saved: u64) {
    if dag_protocol::test_hold::after_saves() == Some(saved) {
        if let Some(marker) = dag_protocol::test_hold::marker() {
            let _ = std::fs::write(marker, saved.to_string());
        }
        loop {
            std::thread::park();
        }
    }
}
