//! Batched generation, the plain forward pass and the left-padding they share.
//!
//! A group of prompts is left-padded into one batch and prefilled once into a preallocated
//! [`KvCache`]; each prompt's cache rows are then fanned out to its `n` samples, so no prefix is
//! computed twice. Every decode step feeds one token per live row; rows that finish are dropped
//! from the batch (and the cache) so later steps only pay for live rows.
//!
//! Sampling follows transformers' order (temperature, top-k, top-p). Each sample draws from
//! its own ChaCha8 stream (seed = the item's seed, stream = the sample index), so an item's
//! samples do not depend on which other items share its batch (up to float rounding of the
//! logits, which batch shape can move in the last bits).

use std::collections::HashMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use crate::chat::Message;
use crate::error::{Error, Result};
use crate::llama::{KvCache, Logits};
use crate::model::Model;

/// What to continue.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// Raw text, encoded with the tokenizer's special tokens (e.g. BOS) as transformers'
    /// `tokenizer(text)` does.
    Text(String),
    /// Chat messages, rendered with the model's chat template plus the generation prompt and
    /// encoded without adding special tokens (the template writes them).
    Chat(Vec<Message>),
    /// Token ids, used as given.
    Tokens(Vec<u32>),
}

/// One prompt to generate for.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    /// The prompt.
    pub prompt: Prompt,
    /// Seed of this item's sampling streams; `None` derives one from
    /// [`SamplingParams::seed`] and the prompt's tokens.
    pub seed: Option<u64>,
}

impl GenerateRequest {
    /// A request for `prompt` with a derived seed.
    pub fn new(prompt: Prompt) -> GenerateRequest {
        GenerateRequest { prompt, seed: None }
    }
}

/// Decoding settings shared by a call.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// Tokens to generate at most per sample.
    pub max_new_tokens: usize,
    /// 0 = greedy (argmax); otherwise logits are divided by it before sampling.
    pub temperature: f64,
    /// Nucleus mass in (0, 1]; 1 = off.
    pub top_p: f64,
    /// Keep only the `top_k` most likely tokens; 0 = off.
    pub top_k: usize,
    /// Samples per prompt.
    pub n: usize,
    /// Base seed for items without their own.
    pub seed: u64,
    /// Stop when the decoded completion contains one of these; the completion is cut before it.
    pub stop: Vec<String>,
    /// Keep generating past EOS tokens (for benchmarks and parity tests).
    pub ignore_eos: bool,
    /// Sequences (prompts × n) decoded together at most.
    pub batch_size: usize,
}

impl Default for SamplingParams {
    fn default() -> SamplingParams {
        SamplingParams {
            max_new_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            n: 1,
            seed: 0,
            stop: Vec::new(),
            ignore_eos: false,
            batch_size: 32,
        }
    }
}

/// Why a sample ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// An EOS token or a stop string.
    Stop,
    /// `max_new_tokens` reached.
    Length,
}

impl FinishReason {
    /// `stop` or `length`.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// One generated sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// Sample index within its item (0..n).
    pub sample: usize,
    /// Decoded text without special tokens, cut before a matched stop string.
    pub text: String,
    /// Generated ids, including a final EOS or the token that completed a stop string.
    pub token_ids: Vec<u32>,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated (= `token_ids.len()`).
    pub completion_tokens: usize,
}

/// All samples of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemResult {
    /// Index of the request in the call.
    pub index: usize,
    /// The prompt as text (the rendered chat for [`Prompt::Chat`]).
    pub prompt: String,
    /// `n` samples, in sample order.
    pub completions: Vec<Completion>,
}

/// Output of [`Model::forward`]. Rows are left-padded to the longest input.
#[derive(Debug)]
pub struct ForwardOutput {
    /// `[batch, seq, vocab]` f32 logits, when asked for.
    pub logits: Option<Tensor>,
    /// `[batch, seq, hidden]` residual stream states, one per requested index, in the model's
    /// dtype (see [`Model::forward`]).
    pub hidden_states: Vec<Tensor>,
    /// `[batch, seq]` bool, false on left padding.
    pub attention_mask: Tensor,
}

/// A left-padded batch on a device.
pub(crate) struct Padded {
    pub ids: Tensor,
    pub positions: Tensor,
    pub valid: Tensor,
}

/// Left-pads `rows` with `pad`; positions count real tokens only (as transformers derives them
/// from the attention mask).
pub(crate) fn left_pad(rows: &[&[u32]], pad: u32, device: Device) -> Padded {
    let width = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(rows.len() * width);
    let mut positions = Vec::with_capacity(rows.len() * width);
    let mut valid = Vec::with_capacity(rows.len() * width);
    for row in rows {
        let pad_len = width - row.len();
        ids.extend(std::iter::repeat_n(i64::from(pad), pad_len));
        ids.extend(row.iter().map(|&t| i64::from(t)));
        positions.extend(std::iter::repeat_n(0i64, pad_len));
        positions.extend(0..row.len() as i64);
        valid.extend(std::iter::repeat_n(false, pad_len));
        valid.extend(std::iter::repeat_n(true, row.len()));
    }
    let shape = [rows.len() as i64, width as i64];
    Padded {
        ids: Tensor::from_slice(&ids).view(shape).to_device(device),
        positions: Tensor::from_slice(&positions).view(shape).to_device(device),
        valid: Tensor::from_slice(&valid).view(shape).to_device(device),
    }
}

/// Samples one token id from `logits` (one row, f32).
fn sample(logits: &[f32], p: &SamplingParams, rng: &mut ChaCha8Rng) -> u32 {
    let inv_t = 1.0 / p.temperature as f32;
    let mut cand: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i as u32, l * inv_t))
        .collect();
    let by_logit_desc = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1);
    if p.top_k > 0 && p.top_k < cand.len() {
        cand.select_nth_unstable_by(p.top_k - 1, by_logit_desc);
        cand.truncate(p.top_k);
    }
    if p.top_p < 1.0 {
        cand.sort_unstable_by(by_logit_desc);
    }
    let max = cand.iter().map(|c| c.1).fold(f32::NEG_INFINITY, f32::max);
    let mut probs: Vec<f64> = cand.iter().map(|c| f64::from(c.1 - max).exp()).collect();
    let total: f64 = probs.iter().sum();
    if p.top_p < 1.0 {
        // Keep the smallest most-likely prefix whose mass reaches top_p (at least one token).
        let mut mass = 0.0;
        let mut keep = 0;
        for q in &probs {
            keep += 1;
            mass += q / total;
            if mass >= p.top_p {
                break;
            }
        }
        probs.truncate(keep);
        cand.truncate(keep);
    }
    let total: f64 = probs.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (c, q) in cand.iter().zip(&probs) {
        if u < *q {
            return c.0;
        }
        u -= q;
    }
    cand.last().expect("at least one candidate").0
}

fn derive_seed(base: u64, ids: &[u32]) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(&base.to_le_bytes());
    for id in ids {
        h.update(&id.to_le_bytes());
    }
    u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"))
}

struct Row {
    item: usize,
    sample: usize,
    rng: ChaCha8Rng,
    tokens: Vec<u32>,
    text: Option<String>,
    finish: Option<FinishReason>,
}

struct Item {
    index: usize,
    prompt: String,
    ids: Vec<u32>,
    seed: u64,
}

impl Model {
    /// Encodes a prompt; returns its text and ids.
    pub fn encode_prompt(&self, prompt: &Prompt) -> Result<(String, Vec<u32>)> {
        let tok = self.tokenizer();
        match prompt {
            Prompt::Text(t) => Ok((t.clone(), tok.encode(t, true)?)),
            Prompt::Chat(messages) => {
                let text = self.render_chat(messages, true)?;
                let ids = tok.encode(&text, false)?;
                Ok((text, ids))
            }
            Prompt::Tokens(ids) => Ok((tok.decode(ids, false)?, ids.clone())),
        }
    }

    /// Generates `params.n` samples for every request.
    ///
    /// `on_item` is called once per request as soon as all its samples are finished (in
    /// completion order, not request order), so callers can persist results incrementally.
    /// The returned vector is in request order.
    pub fn generate(
        &self,
        requests: &[GenerateRequest],
        params: &SamplingParams,
        on_item: &mut dyn FnMut(&ItemResult),
    ) -> Result<Vec<ItemResult>> {
        for (setting, value) in [("n", params.n), ("batch_size", params.batch_size)] {
            if value == 0 {
                return Err(Error::Setting {
                    action: "generate",
                    setting,
                    value: 0.0,
                    allowed: "at least 1",
                });
            }
        }
        if params.temperature < 0.0 {
            return Err(Error::Setting {
                action: "generate",
                setting: "temperature",
                value: params.temperature,
                allowed: ">= 0",
            });
        }
        if !(params.top_p > 0.0 && params.top_p <= 1.0) {
            return Err(Error::Setting {
                action: "generate",
                setting: "top_p",
                value: params.top_p,
                allowed: "in (0, 1]",
            });
        }
        let mut items = Vec::with_capacity(requests.len());
        for (index, r) in requests.iter().enumerate() {
            let (prompt, ids) = self.encode_prompt(&r.prompt)?;
            if ids.is_empty() {
                return Err(Error::EmptyPrompt { index });
            }
            let seed = r.seed.unwrap_or_else(|| derive_seed(params.seed, &ids));
            items.push(Item {
                index,
                prompt,
                ids,
                seed,
            });
        }
        // Similar lengths together waste less compute on padding.
        items.sort_by_key(|it| std::cmp::Reverse(it.ids.len()));
        let per_group = (params.batch_size / params.n).max(1);
        let mut results: Vec<Option<ItemResult>> = vec![None; requests.len()];
        for group in items.chunks(per_group) {
            for result in self.generate_group(group, params, on_item)? {
                let i = result.index;
                results[i] = Some(result);
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("every item generated"))
            .collect())
    }

    fn generate_group(
        &self,
        items: &[Item],
        p: &SamplingParams,
        on_item: &mut dyn FnMut(&ItemResult),
    ) -> Result<Vec<ItemResult>> {
        let _guard = tch::no_grad_guard();
        let device = self.device();
        let cfg = self.config();
        let rows_ids: Vec<&[u32]> = items.iter().map(|it| it.ids.as_slice()).collect();
        let batch = left_pad(&rows_ids, self.pad_token_id, device);
        let width = batch.ids.size()[1];
        let capacity = width + p.max_new_tokens as i64;
        if capacity > cfg.max_position_embeddings {
            return Err(Error::ContextOverflow {
                prompt_tokens: width,
                max_new_tokens: p.max_new_tokens,
                context: cfg.max_position_embeddings,
            });
        }
        let mut cache = KvCache::new(
            cfg,
            items.len() as i64,
            capacity,
            self.dtype().kind(),
            device,
        );
        let (logits, _) = self.transformer.forward(
            &batch.ids,
            &batch.positions,
            &batch.valid,
            Some(&mut cache),
            &[],
            Logits::Last,
        );
        let mut logits = logits.expect("asked for logits").squeeze_dim(1);
        // Fan each prompt out to its n samples.
        let fan: Vec<i64> = (0..items.len() as i64)
            .flat_map(|i| std::iter::repeat_n(i, p.n))
            .collect();
        let fan = Tensor::from_slice(&fan).to_device(device);
        cache.select_rows(&fan);
        logits = logits.index_select(0, &fan);
        let mut valid = batch.valid.index_select(0, &fan);
        let mut next_pos = batch
            .positions
            .narrow(1, width - 1, 1)
            .index_select(0, &fan)
            + 1;
        let mut rows: Vec<Row> = items
            .iter()
            .enumerate()
            .flat_map(|(i, it)| {
                (0..p.n).map(move |s| {
                    let mut rng = ChaCha8Rng::seed_from_u64(it.seed);
                    rng.set_stream(s as u64);
                    Row {
                        item: i,
                        sample: s,
                        rng,
                        tokens: Vec::new(),
                        text: None,
                        finish: None,
                    }
                })
            })
            .collect();
        let mut live: Vec<usize> = (0..rows.len()).collect();
        let mut pending: Vec<usize> = vec![p.n; items.len()];
        let mut done: HashMap<usize, ItemResult> = HashMap::new();
        let eos: Vec<u32> = if p.ignore_eos {
            Vec::new()
        } else {
            self.eos_token_ids().to_vec()
        };
        let tok = self.tokenizer();
        loop {
            let next: Vec<u32> = if p.temperature == 0.0 {
                Vec::<i64>::try_from(logits.argmax(-1, false).to_device(Device::Cpu))
                    .map_err(Error::torch("read greedy tokens"))?
                    .into_iter()
                    .map(|t| t as u32)
                    .collect()
            } else {
                let cpu = logits.to_device(Device::Cpu).contiguous();
                let vocab = cpu.size()[1] as usize;
                let flat = Vec::<f32>::try_from(cpu.flatten(0, -1))
                    .map_err(Error::torch("read logits"))?;
                live.iter()
                    .zip(flat.chunks_exact(vocab))
                    .map(|(&r, row)| sample(row, p, &mut rows[r].rng))
                    .collect()
            };
            let mut keep = Vec::with_capacity(live.len());
            for (slot, (&r, &token)) in live.iter().zip(&next).enumerate() {
                let row = &mut rows[r];
                row.tokens.push(token);
                if eos.contains(&token) {
                    row.finish = Some(FinishReason::Stop);
                } else if !p.stop.is_empty() {
                    let text = tok.decode(&row.tokens, true)?;
                    if let Some(cut) = p.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
                        row.text = Some(text[..cut].to_string());
                        row.finish = Some(FinishReason::Stop);
                    }
                }
                if row.finish.is_none() && row.tokens.len() >= p.max_new_tokens {
                    row.finish = Some(FinishReason::Length);
                }
                if row.finish.is_none() {
                    keep.push(slot);
                    continue;
                }
                let item = row.item;
                pending[item] -= 1;
                if pending[item] == 0 {
                    let result = self.collect_item(&items[item], &rows, item)?;
                    on_item(&result);
                    done.insert(item, result);
                }
            }
            if keep.is_empty() {
                break;
            }
            let step_tokens: Vec<i64> = keep.iter().map(|&s| i64::from(next[s])).collect();
            if keep.len() < live.len() {
                let idx = Tensor::from_slice(&keep.iter().map(|&s| s as i64).collect::<Vec<_>>())
                    .to_device(device);
                cache.select_rows(&idx);
                valid = valid.index_select(0, &idx);
                next_pos = next_pos.index_select(0, &idx);
                live = keep.iter().map(|&s| live[s]).collect();
            }
            let n_live = live.len() as i64;
            let ids = Tensor::from_slice(&step_tokens)
                .view([n_live, 1])
                .to_device(device);
            valid = Tensor::cat(
                &[&valid, &Tensor::ones([n_live, 1], (Kind::Bool, device))],
                1,
            );
            let (l, _) = self.transformer.forward(
                &ids,
                &next_pos,
                &valid,
                Some(&mut cache),
                &[],
                Logits::Last,
            );
            logits = l.expect("asked for logits").squeeze_dim(1);
            next_pos += 1;
        }
        let mut out: Vec<ItemResult> = done.into_values().collect();
        out.sort_by_key(|r| r.index);
        Ok(out)
    }

    fn collect_item(&self, item: &Item, rows: &[Row], local: usize) -> Result<ItemResult> {
        let mut completions = Vec::new();
        for row in rows.iter().filter(|r| r.item == local) {
            let text = match &row.text {
                Some(t) => t.clone(),
                None => self.tokenizer().decode(&row.tokens, true)?,
            };
            completions.push(Completion {
                sample: row.sample,
                text,
                token_ids: row.tokens.clone(),
                finish_reason: row.finish.expect("finished rows only"),
                prompt_tokens: item.ids.len(),
                completion_tokens: row.tokens.len(),
            });
        }
        completions.sort_by_key(|c| c.sample);
        Ok(ItemResult {
            index: item.index,
            prompt: item.prompt.clone(),
            completions,
        })
    }

    /// Residual-stream states of a batch of token sequences, right-padded together
    /// (`[batch, longest, hidden]` each; token `t` of a row at index `t`), numbered as in
    /// [`Model::forward`]. Faster than `forward` for this: right padding needs no attention
    /// mask, and blocks after the deepest requested state do not run.
    pub fn hidden_states(&self, batch: &[Vec<u32>], states: &[usize]) -> Result<Vec<Tensor>> {
        let layers = self.config().num_hidden_layers as usize;
        if let Some(&bad) = states.iter().find(|&&i| i > layers) {
            return Err(Error::NoSuchHiddenState { index: bad, layers });
        }
        if batch.is_empty() || batch.iter().any(Vec::is_empty) {
            return Err(Error::EmptyInput {
                action: "run the model",
                what: "the batch or one of its sequences",
            });
        }
        let examples: Vec<crate::train::Example> = batch
            .iter()
            .map(|ids| crate::train::Example {
                ids: ids.clone(),
                trainable: vec![false; ids.len()],
            })
            .collect();
        let rows: Vec<Vec<&crate::train::Example>> = examples.iter().map(|e| vec![e]).collect();
        let (b, _) = crate::train::collate(&rows, i64::from(self.pad_token_id), self.device());
        Ok(self.transformer.states(&b, states))
    }

    /// Runs the model on a batch of token sequences (left-padded together).
    ///
    /// `hidden_states` selects residual-stream states by transformers' `hidden_states[i]`
    /// numbering: `0..num_hidden_layers` is the input of block `i` (0 = embeddings),
    /// `num_hidden_layers` the final-normed output. Tensors stay on the model's device.
    pub fn forward(
        &self,
        batch: &[Vec<u32>],
        hidden_states: &[usize],
        logits: bool,
    ) -> Result<ForwardOutput> {
        let layers = self.config().num_hidden_layers as usize;
        if let Some(&bad) = hidden_states.iter().find(|&&i| i > layers) {
            return Err(Error::NoSuchHiddenState { index: bad, layers });
        }
        if batch.is_empty() || batch.iter().any(Vec::is_empty) {
            return Err(Error::EmptyInput {
                action: "run the model",
                what: "the batch or one of its sequences",
            });
        }
        let rows: Vec<&[u32]> = batch.iter().map(Vec::as_slice).collect();
        let padded = left_pad(&rows, self.pad_token_id, self.device());
        let (logits, hidden) = self.transformer.forward(
            &padded.ids,
            &padded.positions,
            &padded.valid,
            None,
            hidden_states,
            if logits { Logits::All } else { Logits::None },
        );
        Ok(ForwardOutput {
            logits,
            hidden_states: hidden,
            attention_mask: padded.valid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f64, top_k: usize, top_p: f64) -> SamplingParams {
        SamplingParams {
            temperature,
            top_k,
            top_p,
            ..SamplingParams::default()
        }
    }

    #[test]
    fn top_k_one_and_tiny_top_p_are_greedy() {
        let logits = [0.1f32, 2.0, 1.9, -1.0];
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..50 {
            assert_eq!(sample(&logits, &params(1.0, 1, 1.0), &mut rng), 1);
            assert_eq!(sample(&logits, &params(1.0, 0, 0.01), &mut rng), 1);
        }
    }

    #[test]
    fn top_k_two_never_picks_the_tail_and_sampling_matches_probabilities() {
        let logits = [0.0f32, 1.0, 1.0f32.ln() + 1.0 - (2.0f32).ln(), -5.0];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut counts = [0usize; 4];
        for _ in 0..20_000 {
            counts[sample(&logits, &params(1.0, 2, 1.0), &mut rng) as usize] += 1;
        }
        assert_eq!(counts[0] + counts[3], 0);
        // Kept logits 1.0 and 1.0 - ln 2: probabilities 2/3 and 1/3.
        let frac = counts[1] as f64 / 20_000.0;
        assert!((frac - 2.0 / 3.0).abs() < 0.02, "{frac}");
    }

    #[test]
    fn same_seed_and_stream_reproduce() {
        let logits: Vec<f32> = (0..100).map(|i| (i as f32 * 0.37).sin()).collect();
        let draw = |stream| {
            let mut rng = ChaCha8Rng::seed_from_u64(42);
            rng.set_stream(stream);
            (0..20)
                .map(|_| sample(&logits, &params(0.8, 0, 0.9), &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(0), draw(0));
        assert_ne!(draw(0), draw(1));
    }

    #[test]
    fn left_pad_counts_positions_from_first_real_token() {
        let p = left_pad(&[&[5, 6, 7], &[9]], 0, Device::Cpu);
        assert_eq!(
            Vec::<i64>::try_from(p.ids.flatten(0, -1)).unwrap(),
            [5, 6, 7, 0, 0, 9]
        );
        assert_eq!(
            Vec::<i64>::try_from(p.positions.flatten(0, -1)).unwrap(),
            [0, 1, 2, 0, 0, 0]
        );
        assert_eq!(
            Vec::<bool>::try_from(p.valid.flatten(0, -1)).unwrap(),
            [true, true, true, false, false, true]
        );
    }
}
