//! Learned probes (`per-token` with an aggregate, and `attention`), trained on tch.

use dag_metrics::Aggregation;
use dag_protocol::NodeError;
use tch::{Device, Kind, Tensor, nn, nn::OptimizerConfig};

use super::Split;
use crate::failure::caused;
use crate::scores::metric_err;

/// A learned probe family.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Learned {
    /// A linear score per token, then an aggregate.
    PerToken(Aggregation),
    /// A learned query scores tokens (softmax over real tokens); a value projection gives
    /// each token's contribution to the sequence logit.
    Attention,
}

/// Training settings of a learned probe.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Maximum epochs.
    pub epochs: usize,
    /// Rows per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per step.
    pub grad_accum: usize,
    /// Fraction of steps spent warming up.
    pub warmup: f64,
    /// Epochs without improvement before stopping.
    pub patience: usize,
    /// Balanced class weights in the loss.
    pub balanced: bool,
}

/// A learned probe's weights: feature standardisation (from training tokens) and the
/// parameters.
pub struct LearnedProbe {
    /// The family.
    pub family: Learned,
    /// `[d]` mean of real training tokens.
    pub mean: Tensor,
    /// `[d]` standard deviation of real training tokens (floored).
    pub std: Tensor,
    /// `[d]` per-token direction (the value projection for attention).
    pub w: Tensor,
    /// `[d]` attention query (zeros for per-token probes).
    pub q: Tensor,
    /// `[1]` bias.
    pub b: Tensor,
}

impl LearnedProbe {
    /// Sequence logits `[n]` for `x` `[n, T, d]` with `mask` `[n, T]`.
    pub fn logits(&self, x: &Tensor, mask: &Tensor) -> Tensor {
        let z = ((x - &self.mean) / &self.std).masked_fill(&mask.logical_not().unsqueeze(-1), 0.0);
        let s = z.matmul(&self.w.unsqueeze(-1)).squeeze_dim(-1);
        let agg = match self.family {
            Learned::PerToken(a) => aggregate(&s, mask, a),
            Learned::Attention => {
                let a = z
                    .matmul(&self.q.unsqueeze(-1))
                    .squeeze_dim(-1)
                    .masked_fill(&mask.logical_not(), f64::NEG_INFINITY)
                    .softmax(-1, Kind::Float);
                (a * s.masked_fill(&mask.logical_not(), 0.0)).sum_dim_intlist(
                    -1,
                    false,
                    Kind::Float,
                )
            }
        };
        agg + &self.b
    }

    pub(super) fn params(&self) -> [&Tensor; 3] {
        [&self.w, &self.q, &self.b]
    }
}

/// Mask-aware reduction of token scores `s` `[n, T]` to `[n]`; padded positions never
/// contribute (they are filled with a neutral value before each reduction).
pub fn aggregate(s: &Tensor, mask: &Tensor, a: Aggregation) -> Tensor {
    let pad = mask.logical_not();
    let count = mask
        .to_kind(Kind::Float)
        .sum_dim_intlist(-1, false, Kind::Float);
    let zeroed = s.masked_fill(&pad, 0.0);
    let mean = zeroed.sum_dim_intlist(-1, false, Kind::Float) / &count;
    match a {
        Aggregation::Mean => mean,
        Aggregation::Max => s.masked_fill(&pad, f64::NEG_INFINITY).amax(-1, false),
        Aggregation::Softmax { temperature } => {
            let w = (s / temperature)
                .masked_fill(&pad, f64::NEG_INFINITY)
                .softmax(-1, Kind::Float);
            (w * zeroed).sum_dim_intlist(-1, false, Kind::Float)
        }
        Aggregation::RollingMeanMax { window } => {
            let t = s.size()[1];
            let w = window as i64;
            if w > t {
                return mean;
            }
            // Real tokens are a prefix (storage is right-padded): a window is real when
            // its last token is.
            let cs = Tensor::cat(
                &[
                    Tensor::zeros([s.size()[0], 1], (Kind::Float, s.device())),
                    zeroed.cumsum(-1, Kind::Float),
                ],
                1,
            );
            let win = (cs.narrow(1, w, t - w + 1) - cs.narrow(1, 0, t - w + 1)) / w as f64;
            let valid = mask.narrow(1, w - 1, t - w + 1);
            let best = win
                .masked_fill(&valid.logical_not(), f64::NEG_INFINITY)
                .amax(-1, false);
            let short = count.lt(w as f64);
            best.where_self(&short.logical_not(), &mean)
        }
        Aggregation::Last => {
            let last = (count.to_kind(Kind::Int64) - 1).clamp_min(0).unsqueeze(-1);
            zeroed.gather(-1, &last, false).squeeze_dim(-1)
        }
    }
}

/// Keeps a deep copy of the best epoch's parameters and decides when to stop.
pub struct EarlyStopping {
    patience: usize,
    /// Best validation AUROC so far.
    pub best_auroc: f64,
    /// Epoch (0-based) of the best AUROC.
    pub best_epoch: usize,
    best: Vec<Tensor>,
    since: usize,
}

impl EarlyStopping {
    /// Stops after `patience` epochs without improvement.
    pub fn new(patience: usize) -> Self {
        EarlyStopping {
            patience,
            best_auroc: f64::NEG_INFINITY,
            best_epoch: 0,
            best: vec![],
            since: 0,
        }
    }

    /// Records an epoch; returns whether training should stop.
    pub fn observe(&mut self, epoch: usize, auroc: f64, params: &[&Tensor]) -> bool {
        if auroc > self.best_auroc {
            self.best_auroc = auroc;
            self.best_epoch = epoch;
            // `copy` allocates new storage: a shallow clone would follow later updates,
            // the bug that made the seed study keep its last weights.
            self.best = params.iter().map(|p| p.detach().copy()).collect();
            self.since = 0;
        } else {
            self.since += 1;
        }
        self.since >= self.patience
    }

    /// Writes the best parameters back into `params`.
    pub fn restore(&self, params: &[&Tensor]) {
        tch::no_grad(|| {
            for (p, b) in params.iter().zip(&self.best) {
                let mut p = p.shallow_clone();
                p.copy_(b);
            }
        });
    }
}

/// One epoch's record.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Epoch {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f64,
    /// Validation AUROC after the epoch.
    pub val_auroc: f64,
}

pub(super) fn sigmoid_vec(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.sigmoid().to_kind(Kind::Double)).expect("1-d scores")
}

pub(super) fn auroc(scores: &[f64], y: &[bool]) -> Result<f64, NodeError> {
    dag_metrics::roc_auc(scores, y)
        .map_err(|e| metric_err("Failed to compute the validation AUROC", &e))
}

/// Trains one learned probe with one seed. Returns the probe (best epoch's weights) and
/// the per-epoch curve.
pub fn train_learned(
    family: Learned,
    train: &Split,
    val: &Split,
    cfg: &TrainConfig,
    seed: i64,
) -> Result<(LearnedProbe, Vec<Epoch>, usize), NodeError> {
    tch::manual_seed(seed);
    let d = train.dim();
    let n = train.n() as i64;
    // Standardise with statistics of real training tokens only.
    // Padding is exactly zero (see `Split::new`), so plain sums count real tokens only.
    let count = train.mask.sum(Kind::Float).clamp_min(1.0);
    // `[1, d]` per block of rows, so that the blocks concatenate to `[blocks, d]`.
    let token_sum = |t: &Tensor| {
        t.sum_dim_intlist([0i64, 1].as_slice(), false, Kind::Float)
            .unsqueeze(0)
    };
    let mean = train
        .by_rows(|x, _| token_sum(x))
        .sum_dim_intlist(0, false, Kind::Float)
        / &count;
    let var = train
        .by_rows(|x, m| token_sum(&((x - &mean).square() * m.unsqueeze(-1))))
        .sum_dim_intlist(0, false, Kind::Float)
        / &count;
    let std = var.sqrt().clamp_min(1e-6);
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let scale = 1.0 / (d as f64).sqrt();
    let w = root.var(
        "w",
        &[d],
        nn::Init::Randn {
            mean: 0.0,
            stdev: scale,
        },
    );
    let q = match family {
        Learned::Attention => root.var(
            "q",
            &[d],
            nn::Init::Randn {
                mean: 0.0,
                stdev: scale,
            },
        ),
        Learned::PerToken(_) => root.zeros_no_train("q", &[d]),
    };
    let b = root.var("b", &[1], nn::Init::Const(0.0));
    let probe = LearnedProbe {
        family,
        mean,
        std,
        w,
        q,
        b,
    };
    let mut opt = nn::AdamW {
        wd: cfg.weight_decay,
        ..Default::default()
    }
    .build(&vs, cfg.lr)
    .map_err(|e| caused("Failed to build the optimizer", &e))?;
    let pos = train.y.iter().filter(|&&y| y).count() as f64;
    let neg = n as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return Err(NodeError::msg("The training split has one class only")
            .hint("check the label column and the split"));
    }
    let (wn, wp) = if cfg.balanced {
        dag_metrics::balanced_class_weights(neg as usize, pos as usize)
    } else {
        (1.0, 1.0)
    };
    let y_all = Tensor::from_slice(
        &train
            .y
            .iter()
            .map(|&y| f32::from(u8::from(y)))
            .collect::<Vec<_>>(),
    );
    let bs = cfg.batch_size.max(1) as i64;
    let accum = cfg.grad_accum.max(1);
    let micro = (n + bs - 1) / bs;
    let steps_per_epoch = (micro as usize).div_ceil(accum);
    let total = (steps_per_epoch * cfg.epochs).max(1);
    let warm = ((total as f64) * cfg.warmup).round() as usize;
    let lr_at = |step: usize| {
        if step < warm {
            cfg.lr * (step + 1) as f64 / warm as f64
        } else {
            let p = (step - warm) as f64 / (total - warm).max(1) as f64;
            cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
        }
    };
    let mut stop = EarlyStopping::new(cfg.patience.max(1));
    let mut curve = Vec::new();
    let mut step = 0usize;
    for epoch in 0..cfg.epochs {
        let perm = Tensor::randperm(n, (Kind::Int64, Device::Cpu));
        let mut loss_sum = 0.0;
        opt.zero_grad();
        for i in 0..micro {
            let idx = perm.narrow(0, i * bs, bs.min(n - i * bs));
            let x = train.x.index_select(0, &idx);
            let mk = train.mask.index_select(0, &idx);
            let y = y_all.index_select(0, &idx);
            let weight = &y * (wp - wn) + wn;
            let logits = probe.logits(&x, &mk);
            let loss = logits.binary_cross_entropy_with_logits::<&Tensor>(
                &y,
                Some(&weight),
                None,
                tch::Reduction::Mean,
            );
            loss_sum += loss.double_value(&[]) * idx.size()[0] as f64;
            (loss / accum as f64).backward();
            let last = i == micro - 1;
            if (i as usize + 1).is_multiple_of(accum) || last {
                opt.set_lr(lr_at(step));
                opt.clip_grad_norm(1.0);
                opt.step();
                opt.zero_grad();
                step += 1;
            }
        }
        let val_scores = tch::no_grad(|| sigmoid_vec(&val.by_rows(|x, m| probe.logits(x, m))));
        let val_auroc = auroc(&val_scores, &val.y)?;
        curve.push(Epoch {
            epoch: epoch + 1,
            train_loss: loss_sum / n as f64,
            val_auroc,
        });
        if stop.observe(epoch, val_auroc, &probe.params()) {
            break;
        }
    }
    stop.restore(&probe.params());
    Ok((probe, curve, stop.best_epoch + 1))
}
