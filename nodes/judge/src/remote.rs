//! An OpenAI-compatible chat-completions judge: bounded concurrency, retries of transient
//! failures, a budget of requests, and each answered call handed back as it completes so
//! the caller can persist it before anything else can go wrong.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::request::{JudgeId, JudgeReply, JudgeRequest};
use crate::retry::{RetryPolicy, is_transient, server_wait};

/// How to reach an API and how hard to try.
#[derive(Clone)]
pub struct Endpoint {
    /// The base URL, up to and including `/v1`.
    pub base_url: String,
    /// Sent as a bearer token. Never printed: `Endpoint`'s `Debug` leaves it out.
    pub api_key: Option<String>,
    /// Requests in flight at once from this caller.
    pub concurrency: usize,
    /// Connection slots to this endpoint shared with other callers (every node of a run),
    /// taken per call beside the caller's own: the bound that holds when several nodes
    /// grade against one API side by side.
    pub shared_slots: Option<Arc<Semaphore>>,
    /// One request's limit, connection included.
    pub timeout: Duration,
    /// Retries of transient failures.
    pub retry: RetryPolicy,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "(set)"))
            .field("concurrency", &self.concurrency)
            .field("shared_slots", &self.shared_slots)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish()
    }
}

/// One call to make: its key (see [`crate::call_key`]), the judge and the request.
#[derive(Debug, Clone)]
pub struct Call {
    /// The call's key.
    pub key: [u8; 32],
    /// Who is asked.
    pub judge: JudgeId,
    /// What is asked.
    pub request: JudgeRequest,
}

/// Why a call did not return a reply.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The server refused the request with a status that retrying cannot fix.
    #[error("`{model}` at {endpoint} refused the request: HTTP {status}: {body}")]
    Refused {
        /// The judge's model name.
        model: String,
        /// The endpoint.
        endpoint: String,
        /// The status.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// Transient failures outlasted the retries.
    #[error("`{model}` at {endpoint} failed {attempts} times; the last failure: {last}")]
    GaveUp {
        /// The judge's model name.
        model: String,
        /// The endpoint.
        endpoint: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// A 200 whose body is not a chat completion.
    #[error(
        "`{model}` at {endpoint} answered with something that is not a chat completion: {detail}"
    )]
    BadReply {
        /// The judge's model name.
        model: String,
        /// The endpoint.
        endpoint: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A judge pinned to a revision was answered by another model (or by one the reply does
    /// not name): the reply is not that judge's, and is not kept.
    #[error("{0}")]
    WrongModel(String),
    /// A budget of requests is spent.
    #[error("the budget of {limit} requests (`{setting}`) is spent")]
    BudgetSpent {
        /// The budget.
        limit: u64,
        /// The setting that gave it.
        setting: &'static str,
    },
    /// Not sent: the run was cancelled, or another call's failure stopped it.
    #[error("not sent: the run stopped first")]
    NotSent,
    /// The HTTP client could not be built (a TLS backend missing).
    #[error("Failed to set up the HTTP client: {0}")]
    Client(String),
}

/// Requests sent so far against an optional limit, retries included; replies found saved
/// are not requests and cost nothing. A budget may sit within a wider one (a node's within
/// its run's): a request is taken from both, and refused when either is spent.
#[derive(Debug)]
pub struct Budget {
    limit: Option<u64>,
    setting: &'static str,
    used: AtomicU64,
    within: Option<Arc<Budget>>,
}

impl Budget {
    /// At most `limit` requests (none: unlimited), as the setting named `setting` says.
    pub fn new(limit: Option<u64>, setting: &'static str) -> Self {
        Budget {
            limit,
            setting,
            used: AtomicU64::new(0),
            within: None,
        }
    }

    /// This budget, inside `wider`.
    pub fn within(mut self, wider: Arc<Budget>) -> Self {
        self.within = Some(wider);
        self
    }

    /// Takes one request from this budget and every one around it.
    fn take(&self) -> Result<(), CallError> {
        let n = self.used.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(limit) = self.limit
            && n > limit
        {
            self.used.fetch_sub(1, Ordering::SeqCst);
            return Err(CallError::BudgetSpent {
                limit,
                setting: self.setting,
            });
        }
        if let Some(wider) = &self.within
            && let Err(e) = wider.take()
        {
            self.used.fetch_sub(1, Ordering::SeqCst);
            return Err(e);
        }
        Ok(())
    }

    /// Requests sent.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::SeqCst)
    }
}

/// The bounds every caller of one run shares: connection slots per endpoint and one budget
/// of requests. A run keeps one of these, so two nodes grading against the same API side by
/// side hold `per_endpoint` connections between them, not each.
#[derive(Debug)]
pub struct SharedLimits {
    per_endpoint: usize,
    slots: std::sync::Mutex<std::collections::HashMap<String, Arc<Semaphore>>>,
    budget: Arc<Budget>,
}

impl SharedLimits {
    /// `per_endpoint` requests in flight to any one endpoint, and at most `max_requests`
    /// in all (none: unlimited), as the setting named `setting` says.
    pub fn new(per_endpoint: usize, max_requests: Option<u64>, setting: &'static str) -> Self {
        SharedLimits {
            per_endpoint: per_endpoint.max(1),
            slots: Default::default(),
            budget: Arc::new(Budget::new(max_requests, setting)),
        }
    }

    /// The slots of `endpoint` (a base URL; a trailing `/` does not make another endpoint).
    pub fn slots(&self, endpoint: &str) -> Arc<Semaphore> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .entry(endpoint.trim_end_matches('/').to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_endpoint)))
            .clone()
    }

    /// The shared budget.
    pub fn budget(&self) -> Arc<Budget> {
        self.budget.clone()
    }
}

/// Something worth telling the user while calls run: a retry and why.
#[derive(Debug, Clone)]
pub struct Retrying {
    /// The judge's model name.
    pub model: String,
    /// The retry's number (1 for the first retry).
    pub retry: u32,
    /// What failed.
    pub why: String,
    /// How long the call waits first.
    pub wait: Duration,
}

/// What one completed call reports beside its result.
#[derive(Debug, Clone, Copy)]
pub struct Attempts {
    /// Requests sent for it.
    pub sent: u32,
    /// Wall time from its first request to its result.
    pub elapsed: Duration,
}

enum Attempt {
    Reply(JudgeReply),
    Transient { why: String, wait: Option<Duration> },
    Fatal(CallError),
}

/// Makes `calls` against `endpoint`, `endpoint.concurrency` at a time, and hands each result
/// to `on_done` on the calling thread as it completes, in completion order. `on_retry` hears
/// of every retry. A call that fails for good, a spent budget or `cancel` stops new requests;
/// requests in flight still complete and are handed over, so nothing already paid for is
/// dropped. An error from `on_done` (the caller could not persist a reply) stops everything
/// and is returned inside; the outer error is an HTTP client that could not be set up.
pub fn run_calls<E>(
    endpoint: &Endpoint,
    calls: Vec<Call>,
    budget: Arc<Budget>,
    cancel: Arc<AtomicBool>,
    mut on_retry: impl FnMut(&Retrying),
    mut on_done: impl FnMut(&Call, Result<JudgeReply, CallError>, Attempts) -> Result<(), E>,
) -> Result<Result<(), E>, CallError> {
    if calls.is_empty() {
        return Ok(Ok(()));
    }
    let http = reqwest::Client::builder()
        .timeout(endpoint.timeout)
        // uvicorn-based servers (vLLM, llama-cpp-python, llmock) close idle connections
        // after 5 s; reusing one after a longer retry wait races that close and costs a
        // retry and a request of the budget. Below 5 s, an idle connection is never reused.
        .pool_idle_timeout(Duration::from_secs(4))
        .build()
        .map_err(|e| CallError::Client(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CallError::Client(e.to_string()))?;
    Ok(runtime.block_on(async move {
        let permits = Arc::new(Semaphore::new(endpoint.concurrency.max(1)));
        // Set when no new request may start: cancelled, out of budget, or a call failed
        // for good (a wrong key or model fails every other call the same way).
        let stop = Arc::new(AtomicBool::new(false));
        let (retry_tx, mut retry_rx) = mpsc::unbounded_channel();
        let mut tasks = JoinSet::new();
        for call in calls {
            let ctx = CallContext {
                http: http.clone(),
                endpoint: endpoint.clone(),
                budget: budget.clone(),
                cancel: cancel.clone(),
                stop: stop.clone(),
                retries: retry_tx.clone(),
            };
            let permits = permits.clone();
            let shared = endpoint.shared_slots.clone();
            tasks.spawn(async move {
                // Own slot first, then the shared one: every caller takes them in this
                // order, and a caller waiting for a shared slot holds none another needs.
                let _permit = permits.acquire_owned().await.expect("never closed");
                let _shared = match shared {
                    Some(s) => Some(s.acquire_owned().await.expect("never closed")),
                    None => None,
                };
                let start = Instant::now();
                let (result, sent) = ctx.call(&call).await;
                let result = result.and_then(|reply| match call.judge.refuses(&reply) {
                    Some(why) => Err(CallError::WrongModel(why)),
                    None => Ok(reply),
                });
                if matches!(
                    result,
                    Err(CallError::Refused { .. }
                        | CallError::GaveUp { .. }
                        | CallError::BudgetSpent { .. }
                        | CallError::BadReply { .. }
                        | CallError::WrongModel(_))
                ) {
                    ctx.stop.store(true, Ordering::SeqCst);
                }
                let attempts = Attempts {
                    sent,
                    elapsed: start.elapsed(),
                };
                (call, result, attempts)
            });
        }
        drop(retry_tx);
        loop {
            tokio::select! {
                Some(r) = retry_rx.recv() => on_retry(&r),
                joined = tasks.join_next() => match joined {
                    None => break,
                    Some(Ok((call, result, attempts))) => {
                        if let Err(e) = on_done(&call, result, attempts) {
                            stop.store(true, Ordering::SeqCst);
                            return Err(e);
                        }
                    }
                    Some(Err(e)) => std::panic::resume_unwind(e.into_panic()),
                },
            }
        }
        while let Ok(r) = retry_rx.try_recv() {
            on_retry(&r);
        }
        Ok(())
    }))
}

struct CallContext {
    http: reqwest::Client,
    endpoint: Endpoint,
    budget: Arc<Budget>,
    cancel: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    retries: mpsc::UnboundedSender<Retrying>,
}

impl CallContext {
    fn stopped(&self) -> bool {
        self.cancel.load(Ordering::SeqCst) || self.stop.load(Ordering::SeqCst)
    }

    /// The call's result and the requests it sent.
    async fn call(&self, call: &Call) -> (Result<JudgeReply, CallError>, u32) {
        let mut sent = 0;
        let mut retry = 0;
        loop {
            if self.stopped() {
                return (Err(CallError::NotSent), sent);
            }
            if let Err(e) = self.budget.take() {
                return (Err(e), sent);
            }
            sent += 1;
            let (why, wait) = match self.attempt(call).await {
                Attempt::Reply(r) => return (Ok(r), sent),
                Attempt::Fatal(e) => return (Err(e), sent),
                Attempt::Transient { why, wait } => (why, wait),
            };
            if retry >= self.endpoint.retry.max_retries {
                return (
                    Err(CallError::GaveUp {
                        model: call.judge.model.clone(),
                        endpoint: call.judge.endpoint.clone(),
                        attempts: sent,
                        last: why,
                    }),
                    sent,
                );
            }
            let wait = self.endpoint.retry.delay(retry, wait, &call.key);
            retry += 1;
            let _ = self.retries.send(Retrying {
                model: call.judge.model.clone(),
                retry,
                why,
                wait,
            });
            // Sleep in slices so a cancelled run does not sit out a long Retry-After.
            let until = Instant::now() + wait;
            while Instant::now() < until {
                if self.stopped() {
                    return (Err(CallError::NotSent), sent);
                }
                let left = until.saturating_duration_since(Instant::now());
                tokio::time::sleep(left.min(Duration::from_millis(50))).await;
            }
        }
    }

    async fn attempt(&self, call: &Call) -> Attempt {
        let r = &call.request;
        let mut body = json!({
            "model": call.judge.model,
            "messages": r.messages,
            "temperature": r.temperature,
            "max_tokens": r.max_tokens,
        });
        if let Some(seed) = r.seed {
            body["seed"] = json!(seed);
        }
        if let Some(f) = &r.response_format {
            body["response_format"] = f.clone();
        }
        let url = format!("{}/chat/completions", call.judge.endpoint);
        let mut req = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&body).expect("a request serialises"));
        if let Some(key) = &self.endpoint.api_key {
            req = req.bearer_auth(key);
        }
        let resp = match req.send().await {
            Ok(resp) => resp,
            // Timeouts, refused and reset connections: the server may be restarting or
            // overloaded, so they are retried like a 503.
            Err(e) => {
                return Attempt::Transient {
                    why: describe(&e),
                    wait: None,
                };
            }
        };
        let status = resp.status();
        let wait = server_wait(resp.headers(), SystemTime::now());
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Attempt::Transient {
                    why: describe(&e),
                    wait: None,
                };
            }
        };
        if !status.is_success() {
            let body: String = String::from_utf8_lossy(&bytes).chars().take(300).collect();
            if is_transient(status) {
                return Attempt::Transient {
                    why: format!("HTTP {}", status.as_u16()),
                    wait,
                };
            }
            return Attempt::Fatal(CallError::Refused {
                model: call.judge.model.clone(),
                endpoint: call.judge.endpoint.clone(),
                status: status.as_u16(),
                body,
            });
        }
        match parse_completion(&bytes) {
            Ok(reply) => Attempt::Reply(reply),
            Err(detail) => Attempt::Fatal(CallError::BadReply {
                model: call.judge.model.clone(),
                endpoint: call.judge.endpoint.clone(),
                detail,
            }),
        }
    }
}

/// A transport error with its causes (reqwest's own message is one word: "error sending
/// request"), never with the request's headers.
fn describe(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "could not connect".to_string()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    s
}

/// The first choice's text, the served model and the finish reason of a chat completion.
fn parse_completion(bytes: &[u8]) -> Result<JudgeReply, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON ({e})"))?;
    let choice = v["choices"]
        .get(0)
        .ok_or_else(|| "no `choices[0]`".to_string())?;
    // A refusal or a tool call leaves `content` null: that is a reply with no verdict in it,
    // which the scorer counts as unscored, not a failed call.
    let text = match &choice["message"]["content"] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => return Err(format!("`choices[0].message.content` is {other}, not text")),
    };
    Ok(JudgeReply {
        text,
        served_model: v["model"].as_str().map(str::to_string),
        finish_reason: choice["finish_reason"].as_str().map(str::to_string),
        logprobs: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completion_parses_and_a_null_content_is_an_empty_reply() {
        let ok = br#"{"model":"judge-a-2026","choices":[{"message":{"role":"assistant","content":"GRADE: C"},"finish_reason":"stop"}]}"#;
        let r = parse_completion(ok).unwrap();
        assert_eq!(r.text, "GRADE: C");
        assert_eq!(r.served_model.as_deref(), Some("judge-a-2026"));
        assert_eq!(r.finish_reason.as_deref(), Some("stop"));
        let refused =
            br#"{"choices":[{"message":{"content":null,"refusal":"no"},"finish_reason":"stop"}]}"#;
        assert_eq!(parse_completion(refused).unwrap().text, "");
        assert!(parse_completion(b"{}").unwrap_err().contains("choices"));
        assert!(
            parse_completion(b"<html>")
                .unwrap_err()
                .contains("not JSON")
        );
    }

    #[test]
    fn the_budget_counts_requests_and_refuses_past_its_limit() {
        let b = Budget::new(Some(2), "max_calls");
        assert!(b.take().is_ok() && b.take().is_ok());
        assert!(matches!(
            b.take(),
            Err(CallError::BudgetSpent {
                limit: 2,
                setting: "max_calls"
            })
        ));
        assert_eq!(b.used(), 2);
        let unlimited = Budget::new(None, "max_calls");
        for _ in 0..100 {
            unlimited.take().unwrap();
        }
        assert_eq!(unlimited.used(), 100);
    }

    #[test]
    fn a_budget_within_a_wider_one_is_refused_when_either_is_spent() {
        let run = Arc::new(Budget::new(Some(3), "--max-api-calls"));
        let a = Budget::new(Some(2), "max_calls").within(run.clone());
        let b = Budget::new(None, "max_calls").within(run.clone());
        assert!(a.take().is_ok() && a.take().is_ok());
        assert!(matches!(
            a.take(),
            Err(CallError::BudgetSpent {
                setting: "max_calls",
                ..
            })
        ));
        assert!(b.take().is_ok());
        assert!(matches!(
            b.take(),
            Err(CallError::BudgetSpent {
                setting: "--max-api-calls",
                ..
            })
        ));
        // A refused request is counted nowhere.
        assert_eq!((a.used(), b.used(), run.used()), (2, 1, 3));
    }

    #[test]
    fn the_key_is_never_printed() {
        let e = Endpoint {
            base_url: "http://127.0.0.1:1/v1".into(),
            api_key: Some("sk-very-secret".into()),
            concurrency: 1,
            shared_slots: None,
            timeout: Duration::from_secs(1),
            retry: RetryPolicy::default(),
        };
        assert!(!format!("{e:?}").contains("sk-very-secret"));
    }
}
