//! Continuation log-likelihoods (the `loglikelihood` request of evaluation harnesses).
//!
//! Tokenisation follows lm-evaluation-harness: the context is encoded alone (with special
//! tokens), context + continuation is encoded whole, and the continuation tokens are the tail
//! of the whole encoding past the context's length, so merges across the boundary are scored
//! as the model would see them. Trailing spaces of the context move to the continuation first.
//!
//! The context is prefilled once into a KV cache; the cache rows are then fanned out to all
//! continuations of that context, which are scored together in one right-padded batch.

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::generate::left_pad;
use crate::llama::{KvCache, Logits};
use crate::model::Model;

/// A context and the continuations to score after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoreRequest {
    /// Text the continuations follow.
    pub context: String,
    /// Candidate continuations.
    pub continuations: Vec<String>,
}

/// The score of one continuation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContinuationScore {
    /// Sum of the log-probabilities of the continuation's tokens.
    pub logprob: f64,
    /// Whether every continuation token is the argmax at its position.
    pub is_greedy: bool,
    /// Number of continuation tokens.
    pub tokens: usize,
}

impl Model {
    fn split_tokens(&self, context: &str, continuation: &str) -> Result<(Vec<u32>, Vec<u32>)> {
        let trimmed = context.trim_end_matches(' ');
        let moved = &context[trimmed.len()..];
        let continuation = format!("{moved}{continuation}");
        let tok = self.tokenizer();
        let ctx = tok.encode(trimmed, true)?;
        if ctx.is_empty() {
            return Err(Error::Request(
                "the context encodes to no tokens, so the first continuation token has nothing to be predicted from; give a non-empty context".into(),
            ));
        }
        let whole = tok.encode(&format!("{trimmed}{continuation}"), true)?;
        if whole.len() <= ctx.len() {
            return Err(Error::Request(format!(
                "continuation `{continuation}` adds no tokens to its context"
            )));
        }
        Ok((whole[..ctx.len()].to_vec(), whole[ctx.len()..].to_vec()))
    }

    /// Scores every continuation of every request. The context (tokens shared by all its
    /// continuations) is computed once per request.
    pub fn score(&self, requests: &[ScoreRequest]) -> Result<Vec<Vec<ContinuationScore>>> {
        let _guard = tch::no_grad_guard();
        let device = self.device();
        let mut out = Vec::with_capacity(requests.len());
        for req in requests {
            if req.continuations.is_empty() {
                out.push(Vec::new());
                continue;
            }
            let mut splits = Vec::with_capacity(req.continuations.len());
            for c in &req.continuations {
                splits.push(self.split_tokens(&req.context, c)?);
            }
            // Context tokens can differ between continuations when a merge crosses the
            // boundary; the shared prefix is what is cached.
            let shared = splits
                .iter()
                .map(|(ctx, _)| ctx.as_slice())
                .reduce(|a, b| {
                    let n = a.iter().zip(b).take_while(|(x, y)| x == y).count();
                    &a[..n]
                })
                .unwrap_or(&[]);
            // At least one token of each continuation's scored span must be predicted from a
            // position inside the suffix batch, so keep the last shared token out of the cache.
            let cached = shared.len().saturating_sub(1);
            let suffixes: Vec<(Vec<u32>, usize)> = splits
                .iter()
                .map(|(ctx, cont)| {
                    let mut s = ctx[cached..].to_vec();
                    let n_ctx = s.len();
                    s.extend_from_slice(cont);
                    (s, n_ctx)
                })
                .collect();
            let n = suffixes.len() as i64;
            let longest = suffixes.iter().map(|(s, _)| s.len()).max().unwrap_or(0) as i64;
            let cfg = self.config();
            let mut cache =
                KvCache::new(cfg, 1, cached as i64 + longest, self.dtype().kind(), device);
            if cached > 0 {
                let prefix = left_pad(&[&shared[..cached]], self.pad_token_id, device);
                self.transformer.forward(
                    &prefix.ids,
                    &prefix.positions,
                    &prefix.valid,
                    Some(&mut cache),
                    &[],
                    Logits::None,
                );
            }
            cache.select_rows(&Tensor::zeros([n], (Kind::Int64, device)));
            // Right-pad the suffixes: causal attention keeps real tokens from seeing the
            // padding after them, so their logits are exact.
            let mut ids = Vec::with_capacity((n * longest) as usize);
            for (s, _) in &suffixes {
                ids.extend(s.iter().map(|&t| i64::from(t)));
                ids.extend(std::iter::repeat_n(
                    i64::from(self.pad_token_id),
                    longest as usize - s.len(),
                ));
            }
            let ids = Tensor::from_slice(&ids)
                .view([n, longest])
                .to_device(device);
            let positions = (Tensor::arange(longest, (Kind::Int64, device)) + cached as i64)
                .unsqueeze(0)
                .repeat([n, 1]);
            let valid = Tensor::ones([n, cached as i64 + longest], (Kind::Bool, device));
            let (logits, _) = self.transformer.forward(
                &ids,
                &positions,
                &valid,
                Some(&mut cache),
                &[],
                Logits::All,
            );
            let logprobs = logits
                .expect("asked for logits")
                .log_softmax(-1, Kind::Float)
                .to_device(Device::Cpu);
            let greedy = logprobs.argmax(-1, false);
            let mut scores = Vec::with_capacity(suffixes.len());
            for (row, (s, n_ctx)) in suffixes.iter().enumerate() {
                let mut logprob = 0.0;
                let mut is_greedy = true;
                // The token at suffix index t is predicted by position t - 1.
                for (t, &token) in s.iter().enumerate().skip(*n_ctx) {
                    let target = i64::from(token);
                    let (r, pos) = (row as i64, (t - 1) as i64);
                    logprob += logprobs.double_value(&[r, pos, target]);
                    is_greedy &= greedy.int64_value(&[r, pos]) == target;
                }
                scores.push(ContinuationScore {
                    logprob,
                    is_greedy,
                    tokens: s.len() - n_ctx,
                });
            }
            out.push(scores);
        }
        Ok(out)
    }
}
