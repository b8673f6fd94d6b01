//! Supervised finetuning: chat examples with an assistant-only loss, AdamW, a warmup-then-decay
//! schedule, gradient accumulation and clipping, over LoRA adapters or every weight.
//!
//! The optimizer and data order follow Hugging Face's `Trainer` so a run can be compared with
//! one: AdamW as `torch.optim.AdamW` (decoupled weight decay, bias-corrected moments; biases
//! and norm gains are not decayed in full finetuning), the learning rate of optimizer step `s`
//! (0-based) is `get_linear_schedule_with_warmup` / `get_cosine_schedule_with_warmup` at `s`,
//! and with accumulation the loss is the summed token loss divided by the trainable tokens of
//! the whole optimizer step (what `Trainer` does with `num_items_in_batch`).
//!
//! Short examples can be packed several to a row (first-fit over decreasing lengths, once,
//! before shuffling); each keeps its own positions and attends only to itself, so packing
//! changes throughput and not the loss. Gradient checkpointing recomputes each block during
//! the backward pass instead of keeping its activations.
//!
//! The same loop trains a sequence classifier ([`Objective::Classify`]): a linear head on the
//! final hidden state of each example's last token, with a class-weighted binary cross-entropy,
//! as transformers' `LlamaForSequenceClassification` with one logit.
//!
//! Every source of randomness is a function of the seed and the step: rows are shuffled per
//! epoch from `(seed, epoch)`, and libtorch's generator (adapter dropout) is reseeded from
//! `(seed, step, pass, layer)` before each block. A [`TrainState`] (trainable tensors, both AdamW moments and
//! the step) therefore resumes a run exactly: on the CPU a resumed run ends bit-identical to an
//! uninterrupted one.

use std::path::Path;
use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use tch::{Kind, Tensor};

use crate::chat::Message;
use crate::error::{Error, Result};
use crate::llama::{TrainBatch, Transformer};
use crate::lora::{read_safetensors, write_safetensors};
use crate::model::Model;

/// One tokenised training example: `trainable[i]` says whether token `i` is a target
/// (predicted from the tokens before it and counted in the loss).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// Token ids.
    pub ids: Vec<u32>,
    /// Loss mask, same length as `ids`.
    pub trainable: Vec<bool>,
}

impl Example {
    /// Tokens that count in the loss (the first token never does: nothing predicts it).
    pub fn trainable_tokens(&self) -> usize {
        self.trainable.iter().skip(1).filter(|&&t| t).count()
    }
}

/// Renders `messages` with the model's chat template and marks the assistant turns' tokens
/// (their content and end-of-turn marker) as trainable; everything else (system, user, the
/// template's headers) is masked out. Returns the example, truncated to `max_len` tokens, and
/// whether it was truncated.
///
/// A turn spans the characters between the conversation rendered up to its assistant header
/// (`add_generation_prompt`) and rendered through the turn; a token is trainable when it
/// starts inside a span. Both renders must be text prefixes of the whole conversation, which
/// holds for chat templates that render each message independently of later ones.
pub fn encode_chat(model: &Model, messages: &[Message], max_len: usize) -> Result<(Example, bool)> {
    let full = model.render_chat(messages, false)?;
    let enc = model
        .tokenizer()
        .inner()
        .encode(full.as_str(), false)
        .map_err(Error::tokenizer("encode"))?;
    let ids = enc.get_ids().to_vec();
    let mut spans = vec![];
    for (i, m) in messages.iter().enumerate() {
        if m.role != "assistant" {
            continue;
        }
        let before = model.render_chat(&messages[..i], true)?;
        let through = model.render_chat(&messages[..=i], false)?;
        if !full.starts_with(&before) || !full.starts_with(&through) {
            return Err(Error::TurnNotPrefix { turn: i });
        }
        spans.push(before.len()..through.len());
    }
    let trainable: Vec<bool> = enc
        .get_offsets()
        .iter()
        .map(|&(start, _)| spans.iter().any(|s| s.contains(&start)))
        .collect();
    let truncated = ids.len() > max_len;
    let n = ids.len().min(max_len);
    Ok((
        Example {
            ids: ids[..n].to_vec(),
            trainable: trainable[..n].to_vec(),
        },
        truncated,
    ))
}

/// Learning-rate decay after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Constant after warmup.
    Constant,
    /// Linear to zero at the last step.
    Linear,
    /// Half a cosine to zero at the last step.
    Cosine,
}

impl std::str::FromStr for Schedule {
    type Err = Error;

    fn from_str(s: &str) -> Result<Schedule> {
        match s {
            "constant" => Ok(Schedule::Constant),
            "linear" => Ok(Schedule::Linear),
            "cosine" => Ok(Schedule::Cosine),
            other => Err(Error::UnknownName {
                what: "schedule",
                name: other.to_string(),
                expected: &["constant", "linear", "cosine"],
            }),
        }
    }
}

/// What a run minimises.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Objective {
    /// Next-token cross-entropy over each example's trainable tokens (SFT).
    #[default]
    NextToken,
    /// Binary classification of whole examples: a linear head (`score.weight` `[1, hidden]`,
    /// `score.bias` `[1]`, f32, trained with the model) reads the final hidden state of each
    /// example's last token. The loss is binary cross-entropy weighted by the class's weight
    /// (`(negative, positive)`), divided by the step's summed weight.
    Classify {
        /// Class of each example (true = positive).
        labels: Vec<bool>,
        /// Loss weight of negatives and positives.
        class_weights: (f64, f64),
    },
}

/// Optimisation settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// AdamW betas.
    pub betas: (f64, f64),
    /// AdamW epsilon.
    pub eps: f64,
    /// Optimizer steps of linear warmup from 0.
    pub warmup_steps: usize,
    /// Decay after warmup.
    pub schedule: Schedule,
    /// Rows per forward pass (a row is one example, or several when packing).
    pub batch_size: usize,
    /// Forward passes per optimizer step.
    pub grad_accum: usize,
    /// Global gradient-norm clip (0 = off).
    pub max_grad_norm: f64,
    /// Passes over the data (ignored when `max_steps` is set).
    pub epochs: usize,
    /// Optimizer steps in total, overriding `epochs` when set.
    pub max_steps: Option<usize>,
    /// Seed of the data order and of dropout.
    pub seed: u64,
    /// Pack examples into rows of at most this many tokens (`None`: one example per row).
    pub pack: Option<usize>,
    /// Recompute each block's activations in the backward pass instead of storing them.
    pub gradient_checkpointing: bool,
    /// The loss.
    pub objective: Objective,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            lr: 2e-4,
            weight_decay: 0.0,
            betas: (0.9, 0.999),
            eps: 1e-8,
            warmup_steps: 0,
            schedule: Schedule::Linear,
            batch_size: 4,
            grad_accum: 1,
            max_grad_norm: 1.0,
            epochs: 1,
            max_steps: None,
            seed: 0,
            pack: None,
            gradient_checkpointing: false,
            objective: Objective::NextToken,
        }
    }
}

/// What one optimizer step measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepMetrics {
    /// 1-based optimizer step.
    pub step: usize,
    /// Epoch the step's examples came from (0-based).
    pub epoch: usize,
    /// Mean token loss over the step's trainable tokens.
    pub loss: f64,
    /// Learning rate used for the update.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Trainable (loss) tokens in the step; examples, for a classifier.
    pub loss_tokens: usize,
    /// All real tokens processed in the step.
    pub tokens: usize,
    /// `tokens` per second of wall time for the step. Never serialised: a wall-clock figure
    /// is not a function of the inputs, and metrics files are artifacts (the worker logs it).
    #[serde(skip)]
    pub tokens_per_s: f64,
}

/// What is trained.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// The attached LoRA adapter only (attach one with [`Model::attach_lora`] first).
    Lora,
    /// Every weight of the model.
    Full,
}

/// An SFT run over a fixed example set, one optimizer step at a time.
#[derive(Debug)]
pub struct Trainer {
    params: Vec<(String, Tensor)>,
    /// f32 copies of parameters stored in lower precision (full finetuning of a bf16/f16
    /// model): updates accumulate here and are rounded into the model after each step, so
    /// steps smaller than the low-precision spacing are not lost.
    masters: Vec<Option<Tensor>>,
    decay: Vec<bool>,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    step: usize,
    cfg: TrainConfig,
    examples: Vec<Example>,
    /// The examples of each row, fixed for the run; epochs shuffle rows.
    rows: Vec<Vec<usize>>,
    pad: i64,
    last_grad_norms: Vec<(String, f64)>,
}

/// Packs examples of these lengths into rows of at most `capacity` tokens: first fit, longest
/// first (ties in index order), so the packing is a pure function of the lengths. An example
/// longer than `capacity` gets a row of its own.
pub fn pack(lengths: &[usize], capacity: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    let mut rows: Vec<(usize, Vec<usize>)> = vec![];
    for i in order {
        match rows
            .iter_mut()
            .find(|(used, _)| used + lengths[i] <= capacity)
        {
            Some((used, row)) => {
                *used += lengths[i];
                row.push(i);
            }
            None => rows.push((lengths[i], vec![i])),
        }
    }
    rows.into_iter().map(|(_, r)| r).collect()
}

impl Trainer {
    /// Prepares training `model` on `examples`. Fails on an empty set, on examples with no
    /// trainable token, or in LoRA mode without an adapter.
    pub fn new(
        model: &Model,
        mode: Mode,
        examples: Vec<Example>,
        cfg: TrainConfig,
    ) -> Result<Trainer> {
        if examples.is_empty() {
            return Err(Error::EmptyInput {
                action: "train",
                what: "the set of training examples",
            });
        }
        let classify = matches!(cfg.objective, Objective::Classify { .. });
        if let Objective::Classify { labels, .. } = &cfg.objective {
            if labels.len() != examples.len() {
                return Err(Error::LabelCount {
                    labels: labels.len(),
                    examples: examples.len(),
                });
            }
            if cfg.pack.is_some() {
                return Err(Error::ClassifierPacking);
            }
        }
        let empty: Vec<usize> = examples
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                if classify {
                    e.ids.is_empty()
                } else {
                    e.trainable_tokens() == 0
                }
            })
            .map(|(i, _)| i)
            .collect();
        if !empty.is_empty() {
            return Err(Error::NoTrainableTokens { examples: empty });
        }
        for (setting, value) in [
            ("batch_size", cfg.batch_size),
            ("grad_accum", cfg.grad_accum),
        ] {
            if value == 0 {
                return Err(Error::Setting {
                    action: "train",
                    setting,
                    value: 0.0,
                    allowed: "at least 1",
                });
            }
        }
        let mut params: Vec<(String, Tensor)> = match mode {
            Mode::Lora => model
                .lora()
                .ok_or(Error::NoAdapter {
                    action: "train in LoRA mode",
                })?
                .parameters(),
            Mode::Full => {
                let mut vars: Vec<(String, Tensor)> =
                    model.var_store().variables().into_iter().collect();
                vars.sort_by(|a, b| a.0.cmp(&b.0));
                for (_, v) in &vars {
                    let _ = v.set_requires_grad(true);
                }
                vars
            }
        };
        if classify {
            // transformers initialises the score head from N(0, 0.02); seeded here so the same
            // seed gives the same head.
            tch::manual_seed(cfg.seed as i64 & i64::MAX);
            let d = model.config().hidden_size;
            let opts = (Kind::Float, model.device());
            params.push((
                "score.weight".into(),
                (Tensor::randn([1, d], opts) * 0.02).set_requires_grad(true),
            ));
            params.push((
                "score.bias".into(),
                Tensor::zeros([1], opts).set_requires_grad(true),
            ));
        }
        let decay = params
            .iter()
            .map(|(n, _)| {
                !((mode == Mode::Full || n == "score.bias")
                    && (n.ends_with(".bias") || n.contains("norm")))
            })
            .collect();
        let zeros = |(_, p): &(String, Tensor)| p.zeros_like().to_kind(Kind::Float);
        let masters = params
            .iter()
            .map(|(_, p)| (p.kind() != Kind::Float).then(|| p.detach().to_kind(Kind::Float)))
            .collect();
        let rows = match cfg.pack {
            Some(capacity) => {
                let lengths: Vec<usize> = examples.iter().map(|e| e.ids.len()).collect();
                pack(&lengths, capacity)
            }
            None => (0..examples.len()).map(|i| vec![i]).collect(),
        };
        Ok(Trainer {
            masters,
            exp_avg: params.iter().map(zeros).collect(),
            exp_avg_sq: params.iter().map(zeros).collect(),
            decay,
            params,
            step: 0,
            cfg,
            examples,
            rows,
            pad: i64::from(model.pad_token_id),
            last_grad_norms: vec![],
        })
    }

    /// Optimizer steps per epoch.
    pub fn steps_per_epoch(&self) -> usize {
        self.rows
            .len()
            .div_ceil(self.cfg.batch_size * self.cfg.grad_accum)
    }

    /// Rows after packing (the number of examples without it).
    pub fn rows(&self) -> usize {
        self.rows.len()
    }

    /// Optimizer steps the run takes in all.
    pub fn total_steps(&self) -> usize {
        self.cfg
            .max_steps
            .unwrap_or(self.cfg.epochs * self.steps_per_epoch())
    }

    /// Optimizer steps taken so far.
    pub fn step(&self) -> usize {
        self.step
    }

    /// The trained tensors under their names (adapter PEFT names, or HF weight names), in
    /// full precision: the f32 masters where the model holds lower-precision copies.
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .zip(&self.masters)
            .map(|((n, p), m)| (n.clone(), m.as_ref().unwrap_or(p).shallow_clone()))
            .collect()
    }

    /// Per-tensor gradient norms of the last step (before clipping), for tensors that had a
    /// gradient.
    pub fn last_grad_norms(&self) -> &[(String, f64)] {
        &self.last_grad_norms
    }

    /// The learning rate of 0-based optimizer step `s`.
    pub fn lr_at(&self, s: usize) -> f64 {
        let (w, total) = (self.cfg.warmup_steps, self.total_steps());
        if s < w {
            return self.cfg.lr * s as f64 / w.max(1) as f64;
        }
        let progress = (s - w) as f64 / (total.saturating_sub(w)).max(1) as f64;
        match self.cfg.schedule {
            Schedule::Constant => self.cfg.lr,
            Schedule::Linear => self.cfg.lr * (1.0 - progress).max(0.0),
            Schedule::Cosine => {
                self.cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()).max(0.0)
            }
        }
    }

    /// The row indices of 0-based optimizer step `s`, one inner list per forward pass.
    fn batches(&self, s: usize) -> (usize, Vec<Vec<usize>>) {
        let spe = self.steps_per_epoch();
        let (epoch, k) = (s / spe, s % spe);
        let mut order: Vec<usize> = (0..self.rows.len()).collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
            self.cfg.seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        order.shuffle(&mut rng);
        let per_step = self.cfg.batch_size * self.cfg.grad_accum;
        let slice = &order[k * per_step..((k + 1) * per_step).min(order.len())];
        (
            epoch,
            slice
                .chunks(self.cfg.batch_size)
                .map(<[usize]>::to_vec)
                .collect(),
        )
    }

    /// Runs one optimizer step (all its accumulated forward/backward passes, clipping and the
    /// AdamW update). A non-finite loss is an error naming the step, raised before the update
    /// so the weights stay as they were.
    pub fn train_step(&mut self, model: &Model) -> Result<StepMetrics> {
        let start = Instant::now();
        let s = self.step;
        let (epoch, batches) = self.batches(s);
        if let Some(l) = model.lora() {
            l.set_training(true);
        }
        let step_examples: Vec<usize> = batches
            .iter()
            .flatten()
            .flat_map(|&r| self.rows[r].iter().copied())
            .collect();
        let (loss_tokens, norm) = match &self.cfg.objective {
            Objective::NextToken => {
                let n: usize = step_examples
                    .iter()
                    .map(|&i| self.examples[i].trainable_tokens())
                    .sum();
                (n, n as f64)
            }
            Objective::Classify {
                labels,
                class_weights: (neg, pos),
            } => (
                step_examples.len(),
                step_examples
                    .iter()
                    .map(|&i| if labels[i] { *pos } else { *neg })
                    .sum(),
            ),
        };
        let mut tokens = 0usize;
        let mut loss_sum = 0f64;
        let device = model.device();
        for (pass, batch) in batches.iter().enumerate() {
            let rows: Vec<Vec<&Example>> = batch
                .iter()
                .map(|&r| self.rows[r].iter().map(|&i| &self.examples[i]).collect())
                .collect();
            tokens += rows.iter().flatten().map(|e| e.ids.len()).sum::<usize>();
            let examples: Vec<usize> = batch.iter().map(|&r| self.rows[r][0]).collect();
            let lasts: Vec<i64> = rows
                .iter()
                .map(|r| r.iter().map(|e| e.ids.len() as i64).sum::<i64>() - 1)
                .collect();
            let (batch, labels) = collate(&rows, self.pad, device);
            let dropout_seed = (self.cfg.seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
                ^ (s as u64).wrapping_mul(0x1000_0000_01b3)
                ^ pass as u64) as i64;
            let mut nll_sum = 0f64;
            model.transformer.train_pass(
                &batch,
                self.cfg.gradient_checkpointing,
                dropout_seed,
                |t, hidden| {
                    let nll = match &self.cfg.objective {
                        Objective::NextToken => token_nll(t, hidden, &labels),
                        Objective::Classify {
                            labels: classes,
                            class_weights: (neg, pos),
                        } => {
                            let y: Vec<f32> = examples
                                .iter()
                                .map(|&i| f32::from(u8::from(classes[i])))
                                .collect();
                            let w: Vec<f32> = examples
                                .iter()
                                .map(|&i| if classes[i] { *pos as f32 } else { *neg as f32 })
                                .collect();
                            let to = |v: &[f32]| Tensor::from_slice(v).to_device(device);
                            self.head_logits(hidden, &lasts)
                                .binary_cross_entropy_with_logits::<Tensor>(
                                    &to(&y),
                                    Some(to(&w)),
                                    None,
                                    tch::Reduction::Sum,
                                )
                        }
                    };
                    nll_sum = nll.double_value(&[]);
                    nll / norm
                },
            );
            loss_sum += nll_sum;
        }
        if let Some(l) = model.lora() {
            l.set_training(false);
        }
        let loss = loss_sum / norm;
        if !loss.is_finite() {
            self.zero_grad();
            return Err(Error::NonFiniteLoss { step: s + 1, loss });
        }
        let grad_norm = {
            let _g = tch::no_grad_guard();
            let mut sq = 0f64;
            self.last_grad_norms.clear();
            for (name, p) in &self.params {
                let g = p.grad();
                if g.defined() {
                    let s = g
                        .to_kind(Kind::Float)
                        .square()
                        .sum(Kind::Double)
                        .double_value(&[]);
                    self.last_grad_norms.push((name.clone(), s.sqrt()));
                    sq += s;
                }
            }
            sq.sqrt()
        };
        let lr = self.lr_at(s);
        self.update(lr, grad_norm);
        self.zero_grad();
        self.step += 1;
        let secs = start.elapsed().as_secs_f64();
        Ok(StepMetrics {
            step: self.step,
            epoch,
            loss,
            lr,
            grad_norm,
            loss_tokens,
            tokens,
            tokens_per_s: tokens as f64 / secs.max(1e-9),
        })
    }

    /// The classifier head's logit (`[rows]`, f32) at position `lasts[r]` of each row of
    /// final hidden states.
    fn head_logits(&self, hidden: &Tensor, lasts: &[i64]) -> Tensor {
        // `Trainer::new` pushes the head last: `score.weight`, then `score.bias`.
        let n = self.params.len();
        let (w, b) = (&self.params[n - 2].1, &self.params[n - 1].1);
        let device = hidden.device();
        let rows = Tensor::arange(lasts.len() as i64, (Kind::Int64, device));
        let at = Tensor::from_slice(lasts).to_device(device);
        let h = hidden.index(&[Some(rows), Some(at)]).to_kind(Kind::Float);
        (h.matmul(&w.tr()) + b).squeeze_dim(1)
    }

    /// A classifier's probability of the positive class for each example (no gradient, in
    /// batches of `batch_size`, adapter dropout off).
    pub fn predict(
        &self,
        model: &Model,
        examples: &[Example],
        batch_size: usize,
    ) -> Result<Vec<f64>> {
        if !matches!(self.cfg.objective, Objective::Classify { .. }) {
            return Err(Error::NotAClassifier);
        }
        let _g = tch::no_grad_guard();
        let mut out = Vec::with_capacity(examples.len());
        for chunk in examples.chunks(batch_size.max(1)) {
            let rows: Vec<Vec<&Example>> = chunk.iter().map(|e| vec![e]).collect();
            let lasts: Vec<i64> = chunk.iter().map(|e| e.ids.len() as i64 - 1).collect();
            let (batch, _) = collate(&rows, self.pad, model.device());
            let hidden = model.transformer.forward_train(&batch);
            let p: Vec<f32> = Vec::try_from(self.head_logits(&hidden, &lasts).sigmoid())
                .map_err(Error::torch("read probabilities"))?;
            out.extend(p.into_iter().map(f64::from));
        }
        Ok(out)
    }

    fn update(&mut self, lr: f64, grad_norm: f64) {
        let _g = tch::no_grad_guard();
        let clip = if self.cfg.max_grad_norm > 0.0 {
            (self.cfg.max_grad_norm / (grad_norm + 1e-6)).min(1.0)
        } else {
            1.0
        };
        let (b1, b2) = self.cfg.betas;
        let t = (self.step + 1) as i32;
        let bc1 = 1.0 - b1.powi(t);
        let bc2 = 1.0 - b2.powi(t);
        for (i, (_, p)) in self.params.iter().enumerate() {
            let g = p.grad();
            if !g.defined() {
                continue;
            }
            let mut g = g.to_kind(Kind::Float);
            if clip < 1.0 {
                g *= clip;
            }
            let mut p32 = match &self.masters[i] {
                Some(m) => m.shallow_clone(),
                None => p.to_kind(Kind::Float),
            };
            if self.decay[i] && self.cfg.weight_decay > 0.0 {
                p32 *= 1.0 - lr * self.cfg.weight_decay;
            }
            let m = &mut self.exp_avg[i];
            *m *= b1;
            *m += &g * (1.0 - b1);
            let v = &mut self.exp_avg_sq[i];
            *v *= b2;
            *v += g.square() * (1.0 - b2);
            let denom = v.sqrt() / bc2.sqrt() + self.cfg.eps;
            p32 -= (&*m / denom) * (lr / bc1);
            let mut p = p.shallow_clone();
            p.copy_(&p32);
        }
    }

    fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            p.zero_grad();
        }
    }

    /// Writes the resumable state (trained tensors, both AdamW moments, the step) into `dir`.
    pub fn save_state(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
        let mut tensors = Vec::with_capacity(self.params.len() * 3);
        for (i, (name, p)) in self.parameters().into_iter().enumerate() {
            tensors.push((format!("param.{name}"), p.shallow_clone()));
            tensors.push((format!("exp_avg.{name}"), self.exp_avg[i].shallow_clone()));
            tensors.push((
                format!("exp_avg_sq.{name}"),
                self.exp_avg_sq[i].shallow_clone(),
            ));
        }
        write_safetensors(&dir.join("trainer.safetensors"), &tensors)?;
        let path = dir.join("trainer.json");
        let json = serde_json::json!({ "step": self.step, "seed": self.cfg.seed });
        std::fs::write(&path, serde_json::to_vec_pretty(&json).expect("json"))
            .map_err(Error::io(&path))
    }

    /// Restores a state written by [`Trainer::save_state`] for the same model and settings.
    pub fn load_state(&mut self, dir: &Path) -> Result<()> {
        let path = dir.join("trainer.json");
        let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| Error::Json { path, source })?;
        let tensors_path = dir.join("trainer.safetensors");
        let mut stored = read_safetensors(&tensors_path)?;
        let _g = tch::no_grad_guard();
        let mut take = |key: String, dst: &mut Tensor| -> Result<()> {
            let src = stored.remove(&key).ok_or_else(|| Error::MissingTensor {
                name: key.clone(),
                path: tensors_path.clone(),
            })?;
            if src.size() != dst.size() {
                return Err(Error::ShapeMismatch {
                    name: key,
                    expected: dst.size(),
                    found: src.size(),
                });
            }
            dst.f_copy_(&src)
                .map_err(Error::torch(format!("restore `{key}`")))
        };
        for i in 0..self.params.len() {
            let name = self.params[i].0.clone();
            let mut p = self.params[i].1.shallow_clone();
            match &mut self.masters[i] {
                Some(m) => {
                    take(format!("param.{name}"), m)?;
                    p.copy_(m);
                }
                None => take(format!("param.{name}"), &mut p)?,
            }
            take(format!("exp_avg.{name}"), &mut self.exp_avg[i])?;
            take(format!("exp_avg_sq.{name}"), &mut self.exp_avg_sq[i])?;
        }
        self.step = json["step"].as_u64().unwrap_or(0) as usize;
        Ok(())
    }
}

/// Lays rows (each one or more examples end to end) out as a right-padded [`TrainBatch`],
/// with labels: the token id where it is trainable, -100 elsewhere. An example's first token
/// is never a label: in a packed row it would be predicted from the previous example.
pub fn collate(rows: &[Vec<&Example>], pad: i64, device: tch::Device) -> (TrainBatch, Tensor) {
    let len = |r: &Vec<&Example>| r.iter().map(|e| e.ids.len()).sum::<usize>();
    let t = rows.iter().map(len).max().unwrap_or(1).max(1);
    let b = rows.len();
    let mut ids = vec![pad; b * t];
    let mut labels = vec![-100i64; b * t];
    let mut positions = vec![0i64; b * t];
    let mut segments = vec![0i64; b * t];
    for (r, row) in rows.iter().enumerate() {
        let mut at = r * t;
        for (k, e) in row.iter().enumerate() {
            for (j, (&id, &tr)) in e.ids.iter().zip(&e.trainable).enumerate() {
                ids[at] = i64::from(id);
                positions[at] = j as i64;
                segments[at] = k as i64 + 1;
                if tr && j > 0 {
                    labels[at] = i64::from(id);
                }
                at += 1;
            }
        }
    }
    let tensor = |v: &[i64]| {
        Tensor::from_slice(v)
            .view([b as i64, t as i64])
            .to_device(device)
    };
    (
        TrainBatch {
            ids: tensor(&ids),
            positions: tensor(&positions),
            segments: tensor(&segments),
            packed: rows.iter().any(|r| r.len() > 1),
        },
        tensor(&labels),
    )
}

/// Summed next-token cross-entropy of final-normed `hidden` states (`[batch, seq, hidden]`)
/// against `labels` (`[batch, seq]`, -100 = not counted).
///
/// Only positions whose next token is a target reach the LM head: prompt and padding
/// positions would add nothing to the loss, yet their logits (`vocab` wide, 49152 for
/// SmolLM2) and cross-entropy cost as much as a target's, forward and backward.
fn token_nll(model: &Transformer, hidden: &Tensor, labels: &Tensor) -> Tensor {
    let (_, t, d) = hidden
        .size3()
        .expect("hidden states are [batch, seq, hidden]");
    let targets = labels.narrow(1, 1, t - 1).reshape([-1]);
    let kept = targets.ne(-100).nonzero().squeeze_dim(1);
    let hidden = hidden
        .narrow(1, 0, t - 1)
        .reshape([-1, d])
        .index_select(0, &kept);
    model.logits(&hidden).cross_entropy_loss::<Tensor>(
        &targets.index_select(0, &kept),
        None,
        tch::Reduction::Sum,
        -100,
        0.0,
    )
}

/// Mean log-likelihood per trainable token of `example` under `model` (no gradient): the
/// quantity SFT raises, for checking that training moved a held-out target.
pub fn target_logprob(model: &Model, example: &Example) -> Result<f64> {
    let _g = tch::no_grad_guard();
    let (batch, labels) = collate(&[vec![example]], 0, model.device());
    let t = &model.transformer;
    let nll = token_nll(t, &t.forward_train(&batch), &labels);
    Ok(-nll.double_value(&[]) / example.trainable_tokens().max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trainer without a model or parameters, one example per row: enough for the
    /// schedule and the data order.
    fn bare(cfg: TrainConfig, examples: Vec<Example>) -> Trainer {
        Trainer {
            params: vec![],
            masters: vec![],
            decay: vec![],
            exp_avg: vec![],
            exp_avg_sq: vec![],
            step: 0,
            cfg,
            rows: (0..examples.len()).map(|i| vec![i]).collect(),
            examples,
            pad: 0,
            last_grad_norms: vec![],
        }
    }

    #[test]
    fn schedules_follow_transformers() {
        let cfg = TrainConfig {
            lr: 1.0,
            warmup_steps: 2,
            max_steps: Some(6),
            ..TrainConfig::default()
        };
        let ex = vec![Example {
            ids: vec![1, 2],
            trainable: vec![false, true],
        }];
        let model_free = |cfg: TrainConfig| bare(cfg, ex.clone());
        let t = model_free(cfg.clone());
        let lrs: Vec<f64> = (0..6).map(|s| t.lr_at(s)).collect();
        assert_eq!(lrs, vec![0.0, 0.5, 1.0, 0.75, 0.5, 0.25]);
        let t = model_free(TrainConfig {
            schedule: Schedule::Cosine,
            ..cfg
        });
        assert!((t.lr_at(4) - 0.5).abs() < 1e-12);
        assert!((t.lr_at(2) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn batches_cover_each_epoch_once_in_a_seeded_order() {
        let examples: Vec<Example> = (0..7)
            .map(|i| Example {
                ids: vec![1, i],
                trainable: vec![false, true],
            })
            .collect();
        let t = bare(
            TrainConfig {
                batch_size: 2,
                grad_accum: 2,
                epochs: 2,
                seed: 3,
                ..TrainConfig::default()
            },
            examples,
        );
        assert_eq!(t.steps_per_epoch(), 2);
        assert_eq!(t.total_steps(), 4);
        let mut seen: Vec<usize> = (0..2).flat_map(|s| t.batches(s).1.concat()).collect();
        seen.sort();
        assert_eq!(seen, (0..7).collect::<Vec<_>>());
        assert_eq!(t.batches(1).1.len(), 2, "3 left: a batch of 2 and one of 1");
        assert_eq!(t.batches(2).0, 1);
        assert_ne!(t.batches(0).1, t.batches(2).1, "epochs reshuffle");
    }
}
