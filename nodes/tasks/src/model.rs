//! The boundary with the model runtime: what a model must answer, and a fake for tests.

use crate::error::{Error, Result};
use crate::task::{GenerateRequest, LoglikelihoodRequest, PreparedDoc, Request};

/// The answer to a [`LoglikelihoodRequest`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Loglikelihood {
    /// Sum of the log-probabilities of the continuation's tokens (natural log).
    pub logprob: f64,
    /// Whether greedy decoding from the context would produce exactly these tokens.
    pub is_greedy: bool,
}

/// What the model side implements.
///
/// Contract, as lm-eval's Hugging Face backend behaves:
/// - `loglikelihood`: the continuation's tokens are `tokenize(context + continuation)` with the
///   first `tokenize(context).len()` tokens removed ([`encode_pair`]); an empty context is
///   replaced by the model's prefix token (BOS or end-of-text). Results come back in request
///   order and must not depend on how the implementation batches them.
/// - `generate`: decode from `context` and cut the text before the first stop sequence
///   ([`truncate_at_stop`]); results in request order.
/// - `tokenize`: the plain encoding without special tokens added.
pub trait LanguageModel {
    /// The implementation's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Token ids of `text`, without special tokens.
    fn tokenize(&self, text: &str) -> std::result::Result<Vec<u32>, Self::Error>;

    /// Score each continuation given its context.
    fn loglikelihood(
        &mut self,
        requests: &[LoglikelihoodRequest],
    ) -> std::result::Result<Vec<Loglikelihood>, Self::Error>;

    /// Generate one completion per request.
    fn generate(
        &mut self,
        requests: &[GenerateRequest],
    ) -> std::result::Result<Vec<String>, Self::Error>;
}

/// lm-eval's token split of a log-likelihood request: `(context tokens, continuation tokens)`,
/// where the continuation's tokens are the tail of encoding the whole string, so a token that
/// straddles the boundary counts as the continuation's. `prefix_token` stands in for an empty
/// context.
pub fn encode_pair<M: LanguageModel + ?Sized>(
    model: &M,
    request: &LoglikelihoodRequest,
    prefix_token: u32,
) -> std::result::Result<(Vec<u32>, Vec<u32>), M::Error> {
    if request.context.is_empty() {
        return Ok((vec![prefix_token], model.tokenize(&request.continuation)?));
    }
    let whole = model.tokenize(&format!("{}{}", request.context, request.continuation))?;
    let context = model.tokenize(&request.context)?;
    let split = context.len().min(whole.len());
    Ok((context, whole[split..].to_vec()))
}

/// Cut generated text before the first occurrence of any stop sequence (lm-eval splits on each
/// stop string in turn and keeps the head, which amounts to the earliest one).
pub fn truncate_at_stop<'a>(text: &'a str, until: &[String]) -> &'a str {
    let end = until
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
        .unwrap_or(text.len());
    &text[..end]
}

/// A model's answers for one document, in the order of its requests.
#[derive(Clone, Debug, PartialEq)]
pub enum DocResponse {
    /// One per choice.
    Loglikelihoods(Vec<Loglikelihood>),
    /// One per repeat.
    Generations(Vec<String>),
}

/// Send every request of `docs` to `model`, `batch_size` at a time, and regroup the answers
/// per document. The runtime's own scheduler can replace this; results must be the same.
pub fn run_requests<M: LanguageModel>(
    task_name: &str,
    model: &mut M,
    docs: &[PreparedDoc],
    batch_size: usize,
) -> Result<Vec<DocResponse>> {
    let batch_size = batch_size.max(1);
    let model_err = |e: M::Error| Error::Model {
        task: task_name.to_string(),
        source: Box::new(e),
    };
    let mut ll_requests = Vec::new();
    let mut gen_requests = Vec::new();
    for doc in docs {
        for request in &doc.requests {
            match request {
                Request::Loglikelihood(r) => ll_requests.push(r.clone()),
                Request::Generate(r) => gen_requests.push(r.clone()),
            }
        }
    }
    let mut lls = Vec::with_capacity(ll_requests.len());
    for chunk in ll_requests.chunks(batch_size) {
        let answers = model.loglikelihood(chunk).map_err(model_err)?;
        if answers.len() != chunk.len() {
            return Err(Error::Model {
                task: task_name.to_string(),
                source: format!(
                    "loglikelihood returned {} answers for {} requests",
                    answers.len(),
                    chunk.len()
                )
                .into(),
            });
        }
        lls.extend(answers);
    }
    let mut gens = Vec::with_capacity(gen_requests.len());
    for chunk in gen_requests.chunks(batch_size) {
        let answers = model.generate(chunk).map_err(model_err)?;
        if answers.len() != chunk.len() {
            return Err(Error::Model {
                task: task_name.to_string(),
                source: format!(
                    "generate returned {} answers for {} requests",
                    answers.len(),
                    chunk.len()
                )
                .into(),
            });
        }
        gens.extend(answers);
    }
    let mut lls = lls.into_iter();
    let mut gens = gens.into_iter();
    Ok(docs
        .iter()
        .map(|doc| match doc.requests.first() {
            Some(Request::Generate(_)) => {
                DocResponse::Generations(gens.by_ref().take(doc.requests.len()).collect())
            }
            _ => DocResponse::Loglikelihoods(lls.by_ref().take(doc.requests.len()).collect()),
        })
        .collect())
}

type ScoreFn = Box<dyn Fn(&str, &str) -> f64 + Send>;
type GenerateFn = Box<dyn Fn(&GenerateRequest) -> String + Send>;

/// A deterministic stand-in model for tests.
///
/// Tokens are Unicode scalar values. By default a continuation's log-likelihood is a hash of
/// `(context, continuation)` mapped into `[-20, 0)`, and generation returns an empty string;
/// both can be replaced with closures.
pub struct FakeModel {
    score: ScoreFn,
    generate: GenerateFn,
    /// How many requests of each kind were answered, and in how many calls.
    pub calls: FakeCalls,
}

/// Call counters of a [`FakeModel`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FakeCalls {
    /// `loglikelihood` calls.
    pub loglikelihood_batches: usize,
    /// Log-likelihood requests answered.
    pub loglikelihood_requests: usize,
    /// `generate` calls.
    pub generate_batches: usize,
    /// Generation requests answered.
    pub generate_requests: usize,
}

impl std::fmt::Debug for FakeModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeModel")
            .field("calls", &self.calls)
            .finish()
    }
}

impl Default for FakeModel {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeModel {
    /// Hash-based scores, empty generations.
    pub fn new() -> Self {
        Self {
            score: Box::new(|context, continuation| {
                let h = fnv1a(
                    context.as_bytes(),
                    fnv1a(continuation.as_bytes(), 0xcbf2_9ce4_8422_2325),
                );
                -((h % 20_000) as f64) / 1000.0 - 0.001
            }),
            generate: Box::new(|_| String::new()),
            calls: FakeCalls::default(),
        }
    }

    /// Score continuations with `f(context, continuation)` (a log-likelihood).
    pub fn with_scores(mut self, f: impl Fn(&str, &str) -> f64 + Send + 'static) -> Self {
        self.score = Box::new(f);
        self
    }

    /// Generate with `f(request)`; the output is then cut at the request's stop sequences.
    pub fn with_generations(
        mut self,
        f: impl Fn(&GenerateRequest) -> String + Send + 'static,
    ) -> Self {
        self.generate = Box::new(f);
        self
    }
}

fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    bytes.iter().fold(seed, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The fake model never fails; this error type has no values.
#[derive(Debug, thiserror::Error)]
#[error("the fake model cannot fail")]
pub enum FakeError {}

impl LanguageModel for FakeModel {
    type Error = FakeError;

    fn tokenize(&self, text: &str) -> std::result::Result<Vec<u32>, FakeError> {
        Ok(text.chars().map(u32::from).collect())
    }

    fn loglikelihood(
        &mut self,
        requests: &[LoglikelihoodRequest],
    ) -> std::result::Result<Vec<Loglikelihood>, FakeError> {
        self.calls.loglikelihood_batches += 1;
        self.calls.loglikelihood_requests += requests.len();
        Ok(requests
            .iter()
            .map(|r| Loglikelihood {
                logprob: (self.score)(&r.context, &r.continuation),
                is_greedy: false,
            })
            .collect())
    }

    fn generate(
        &mut self,
        requests: &[GenerateRequest],
    ) -> std::result::Result<Vec<String>, FakeError> {
        self.calls.generate_batches += 1;
        self.calls.generate_requests += requests.len();
        Ok(requests
            .iter()
            .map(|r| truncate_at_stop(&(self.generate)(r), &r.until).to_string())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_tokens_are_the_tail_of_the_whole_encoding() {
        let model = FakeModel::new();
        let req = LoglikelihoodRequest {
            context: "Q: 2+2?\nA:".into(),
            continuation: " 4".into(),
        };
        let (ctx, cont) = encode_pair(&model, &req, 0).unwrap();
        assert_eq!(ctx.len(), 10);
        assert_eq!(cont, vec![u32::from(' '), u32::from('4')]);
        let empty = LoglikelihoodRequest {
            context: String::new(),
            continuation: "x".into(),
        };
        assert_eq!(encode_pair(&model, &empty, 7).unwrap().0, vec![7]);
    }

    #[test]
    fn stops_at_the_earliest_stop_sequence() {
        let until = vec!["Question:".to_string(), "\n\n".to_string()];
        assert_eq!(truncate_at_stop("42\n\nQuestion: x", &until), "42");
        assert_eq!(truncate_at_stop("no stop", &until), "no stop");
    }
}

/// One task run end to end: prepared documents, lint warnings and scores.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// The rendered documents and their requests.
    pub prepared: Vec<PreparedDoc>,
    /// Lint warnings (errors stop the run before the model is called).
    pub warnings: Vec<crate::LintIssue>,
    /// The scores.
    pub scores: crate::TaskScores,
}

/// Prepare (with `options`: system instruction, chat template), lint (stopping on errors
/// before any model call), run and score one task.
pub fn evaluate<M: LanguageModel>(
    task: &crate::Task,
    docs: &crate::TaskDocs,
    model: &mut M,
    limit: Option<usize>,
    batch_size: usize,
    options: &crate::PromptOptions<'_>,
) -> Result<Evaluation> {
    let prepared = task.prepare_with(docs, limit, options)?;
    let warnings = task.lint(docs, &prepared).into_result()?;
    let responses = run_requests(task.name(), model, &prepared, batch_size)?;
    let scores = task.score(&prepared, &responses)?;
    Ok(Evaluation {
        prepared,
        warnings,
        scores,
    })
}
