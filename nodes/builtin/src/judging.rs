//! What every judge-graded node shares: the calls it plans are looked up among saved replies
//! first, the rest are sent (bounded, retried, within a budget) and each reply is saved the
//! moment it arrives, and several judges' verdicts are compared.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use dag_engine::{NodeError, ParamError, RunContext, Value as EngineValue};
use dag_judge::remote::{Budget, Call, CallError, Endpoint, run_calls};
use dag_judge::retry::RetryPolicy;
use dag_judge::{JudgeId, JudgeReply, JudgeRequest};
use dag_protocol::judge::JudgeParams;
use dag_store::Digest;
use serde_json::{Value, json};

/// One call a node needs: its key (`dag_judge::call_key`), the judge's model name and the
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
    ctx: &RunContext<'_>,
    j: &JudgeParams,
    planned: impl IntoIterator<Item = Planned<'a>>,
) -> Result<HashMap<[u8; 32], JudgeReply>, NodeError> {
    let mut replies: HashMap<[u8; 32], JudgeReply> = HashMap::new();
    let mut queued = HashSet::new();
    let mut calls = Vec::new();
    for p in planned {
        if replies.contains_key(&p.key) || queued.contains(&p.key) {
            continue;
        }
        // Saved replies first: they cost nothing and need no key.
        match ctx.call_result::<JudgeReply>(&Digest(p.key))? {
            Some(r) => {
                replies.insert(p.key, r);
            }
            None => {
                queued.insert(p.key);
                calls.push(Call {
                    key: p.key,
                    judge: JudgeId::new(&j.judge_url, p.judge),
                    request: p.request.clone(),
                });
            }
        }
    }
    let total = replies.len() + calls.len();
    ctx.set_total(total as u64);
    ctx.advance(replies.len() as u64);
    if !replies.is_empty() {
        ctx.info(format!(
            "{} of {total} judge calls answered before; sending {}",
            replies.len(),
            calls.len()
        ));
    }
    if !calls.is_empty() {
        send(ctx, j, calls, &mut replies)?;
    }
    Ok(replies)
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
    if let Some(EngineValue::Str(url)) = params.get("judge_url")
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(ParamError::new(
            "judge_url",
            format!("`{url}` is not an http(s) URL"),
            "write the API's base URL, e.g. `judge_url = \"http://127.0.0.1:8000/v1\"`",
        ));
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
    let endpoint = Endpoint {
        base_url: j.judge_url.clone(),
        api_key,
        concurrency: j.concurrency as usize,
        timeout: std::time::Duration::from_secs_f64(j.timeout_s),
        retry: RetryPolicy {
            max_retries: j.max_retries as u32,
            ..RetryPolicy::default()
        },
    };
    let budget = Arc::new(Budget::new(j.max_calls.map(|n| n as u64)));
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
            CallError::BudgetSpent { .. } => {
                "raise `max_calls` and rerun: answered calls are saved and not sent again"
                    .to_string()
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
