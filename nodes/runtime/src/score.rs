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
            return Err(Error::EmptyContext);
        }
        let whole = tok.encode(&format!("{trimmed}{continuation}"), true)?;
        if whole.len() <= ctx.len() {
            return Err(Error::EmptyContinuation { continuation });
        }
        Ok((whole[..ctx.len()].to_vec(), whole[ctx.len()..].to_vec()))
    }

    /// Scores every continuation of every request. The context (tokens shared by all its
    /// continuations) is computed once per request.
    pub fn score(&self, requests: &[ScoreRequest]) -> Result<Vec<Vec<ContinuationScore>>> {
        let mut groups = Vec::with_capacity(requests.len());
        for req in requests {
            let mut pairs = Vec::with_capacity(req.continuations.len());
            for c in &req.continuations {
                pairs.push(self.split_tokens(&req.context, c)?);
            }
            groups.push(pairs);
        }
        self.score_tokens(&groups, 1)
    }

    /// Scores token-level `(context, continuation)` pairs. Pairs in one group share a KV
    /// prefix (their contexts' common prefix is computed once); up to `batch_size` groups run
    /// together, longest first so padding stays small. Results come back in input order and
    /// do not depend on `batch_size` beyond floating-point summation order (padding never
    /// enters attention).
    pub fn score_tokens(
        &self,
        groups: &[Vec<(Vec<u32>, Vec<u32>)>],
        batch_size: usize,
    ) -> Result<Vec<Vec<ContinuationScore>>> {
        for (ctx, cont) in groups.iter().flatten() {
            if ctx.is_empty() || cont.is_empty() {
                return Err(Error::EmptyInput {
                    action: "score",
                    what: "a pair's context or continuation",
                });
            }
        }
        let max_len = self.config().max_position_embeddings as usize;
        let mut order: Vec<usize> = (0..groups.len()).collect();
        let total = |g: &Vec<(Vec<u32>, Vec<u32>)>| {
            g.iter().map(|(c, t)| c.len() + t.len()).max().unwrap_or(0)
        };
        order.sort_by_key(|&i| std::cmp::Reverse(total(&groups[i])));
        let mut out: Vec<Vec<ContinuationScore>> = vec![Vec::new(); groups.len()];
        for chunk in order.chunks(batch_size.max(1)) {
            let batch: Vec<Vec<(Vec<u32>, Vec<u32>)>> = chunk
                .iter()
                .map(|&i| {
                    groups[i]
                        .iter()
                        .map(|(ctx, cont)| truncate_left(ctx, cont, max_len))
                        .collect()
                })
                .collect();
            let scores = self.score_batch(&batch)?;
            for (&i, s) in chunk.iter().zip(scores) {
                out[i] = s;
            }
        }
        Ok(out)
    }

    fn score_batch(
        &self,
        groups: &[Vec<(Vec<u32>, Vec<u32>)>],
    ) -> Result<Vec<Vec<ContinuationScore>>> {
        let _guard = tch::no_grad_guard();
        let device = self.device();
        // Context tokens can differ between a group's continuations when a merge crosses the
        // boundary; the shared prefix is what is cached. At least one token of each
        // continuation's scored span must be predicted from a position inside the suffix
        // batch, so the last shared token stays out of the cache.
        let cached: Vec<&[u32]> = groups
            .iter()
            .map(|pairs| {
                let shared = pairs
                    .iter()
                    .map(|(ctx, _)| ctx.as_slice())
                    .reduce(|a, b| {
                        let n = a.iter().zip(b).take_while(|(x, y)| x == y).count();
                        &a[..n]
                    })
                    .unwrap_or(&[]);
                &shared[..shared.len().saturating_sub(1)]
            })
            .collect();
        // One row per continuation: its group, the uncached suffix, and where scoring starts.
        let mut rows: Vec<(usize, Vec<u32>, usize)> = Vec::new();
        for (g, pairs) in groups.iter().enumerate() {
            for (ctx, cont) in pairs {
                let mut s = ctx[cached[g].len()..].to_vec();
                let n_ctx = s.len();
                s.extend_from_slice(cont);
                rows.push((g, s, n_ctx));
            }
        }
        if rows.is_empty() {
            return Ok(groups.iter().map(|_| Vec::new()).collect());
        }
        let n = rows.len() as i64;
        let prefix_width = cached.iter().map(|c| c.len()).max().unwrap_or(0) as i64;
        let longest = rows.iter().map(|(_, s, _)| s.len()).max().unwrap_or(0) as i64;
        let cfg = self.config();
        let mut cache = KvCache::new(
            cfg,
            groups.len() as i64,
            prefix_width + longest,
            self.dtype().kind(),
            device,
        );
        let prefix = left_pad(&cached, self.pad_token_id, device);
        if prefix_width > 0 {
            self.transformer.forward(
                &prefix.ids,
                &prefix.positions,
                &prefix.valid,
                Some(&mut cache),
                &[],
                Logits::None,
            );
        }
        let group_of: Vec<i64> = rows.iter().map(|(g, _, _)| *g as i64).collect();
        let group_of = Tensor::from_slice(&group_of).to_device(device);
        cache.select_rows(&group_of);
        // Right-pad the suffixes: causal attention keeps real tokens from seeing the padding
        // after them, so their logits are exact. Positions continue each row's own prefix.
        let mut ids = Vec::with_capacity((n * longest) as usize);
        let mut positions = Vec::with_capacity((n * longest) as usize);
        for (g, s, _) in &rows {
            ids.extend(s.iter().map(|&t| i64::from(t)));
            ids.extend(std::iter::repeat_n(
                i64::from(self.pad_token_id),
                longest as usize - s.len(),
            ));
            let start = cached[*g].len() as i64;
            positions.extend(start..start + longest);
        }
        let ids = Tensor::from_slice(&ids)
            .view([n, longest])
            .to_device(device);
        let positions = Tensor::from_slice(&positions)
            .view([n, longest])
            .to_device(device);
        let valid = Tensor::cat(
            &[
                prefix.valid.index_select(0, &group_of),
                Tensor::ones([n, longest], (Kind::Bool, device)),
            ],
            1,
        );
        let (logits, _) =
            self.transformer
                .forward(&ids, &positions, &valid, Some(&mut cache), &[], Logits::All);
        let logprobs = logits
            .expect("asked for logits")
            .log_softmax(-1, Kind::Float);
        // Gather each scored token's log-probability and the argmax on the device, then move
        // only those numbers.
        let targets = ids.roll([-1], [1]);
        let picked = logprobs
            .gather(-1, &targets.unsqueeze(-1), false)
            .squeeze_dim(-1)
            .to_kind(Kind::Double)
            .to_device(Device::Cpu);
        let greedy = logprobs
            .argmax(-1, false)
            .eq_tensor(&targets)
            .to_device(Device::Cpu);
        let picked: Vec<f64> = Vec::try_from(picked.flatten(0, -1)).expect("f64 logprobs");
        let greedy: Vec<bool> = Vec::try_from(greedy.flatten(0, -1)).expect("bool matches");
        let mut out: Vec<Vec<ContinuationScore>> = groups.iter().map(|_| Vec::new()).collect();
        for (row, (g, s, n_ctx)) in rows.iter().enumerate() {
            let base = row * longest as usize;
            // The token at suffix index t is predicted by position t - 1.
            let span = base + n_ctx - 1..base + s.len() - 1;
            out[*g].push(ContinuationScore {
                logprob: picked[span.clone()].iter().sum(),
                is_greedy: greedy[span].iter().all(|&b| b),
                tokens: s.len() - n_ctx,
            });
        }
        Ok(out)
    }
}

/// lm-eval's truncation: keep the last `max_len + 1` tokens of context + continuation (the
/// model sees all but the last), dropping from the front of the context.
fn truncate_left(ctx: &[u32], cont: &[u32], max_len: usize) -> (Vec<u32>, Vec<u32>) {
    let whole = ctx.len() + cont.len();
    let drop = whole
        .saturating_sub(max_len + 1)
        .min(ctx.len().saturating_sub(1));
    (ctx[drop..].to_vec(), cont.to_vec())
}
