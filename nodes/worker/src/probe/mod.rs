//! `train-probe`: a probe on one layer's activations, per-row scores and metrics.
//!
//! Closed-form and logistic probes go through `dag-metrics` (scikit-learn parity) on the
//! mean of each row's real tokens. Learned probes (`per-token` with an aggregate, and
//! `attention`) train here on tch with AdamW, linear warmup then cosine decay, gradient
//! accumulation, clipping at norm 1 and early stopping on validation AUROC; the best epoch's
//! weights are *copied* (not aliased) and restored at the end.
//!
//! Padding never enters anything: activations are zeroed outside the attention mask when
//! loaded (so even NaN padding cannot reach a gradient through `0 * NaN`), and every aggregate
//! masks padded positions out.

mod learned;
mod split;

use std::path::Path;

use dag_metrics::{Aggregation, ClassWeight, LinearProbe, LogisticConfig, Rows, Shrinkage};
use dag_protocol::NodeError;
use dag_protocol::probes::{
    Aggregate, ClassWeight as ParamClassWeight, Probe, TrainProbe, TrainProbeParams,
};
use dag_protocol::{Job, Report, ScoreRow};
use serde_json::{Map, Value, json};
use tch::{Kind, Tensor};

use crate::Reporter;
use crate::activations::read_layer;
use crate::failure::caused;
use crate::scores::{group_metrics, metric_err, split_metrics};

use learned::*;
use split::Split;

/// A fitted probe of any family.
enum Fitted {
    Linear(LinearProbe, Value),
    Learned(Vec<(i64, LearnedProbe, Vec<Epoch>, usize)>),
}

fn to_rows(features: &[f64], n: usize, d: usize) -> Result<Rows<'_, f64>, NodeError> {
    Rows::new(features, n, d).map_err(|e| metric_err("Failed to shape features", &e))
}

/// How a per-token probe's token scores become a row score (the engine has checked the
/// temperature and window ranges when the graph loaded).
fn aggregation(p: &TrainProbe) -> Aggregation {
    match p.aggregate {
        Aggregate::Mean => Aggregation::Mean,
        Aggregate::Max => Aggregation::Max,
        Aggregate::Softmax => Aggregation::Softmax {
            temperature: p.temperature,
        },
        Aggregate::RollingMax => Aggregation::RollingMeanMax {
            window: p.window as usize,
        },
        Aggregate::Last => Aggregation::Last,
    }
}

/// Scores of a split under a fitted probe: per seed (learned) or one list.
fn score(fitted: &Fitted, split: &Split) -> Result<Vec<Vec<f64>>, NodeError> {
    Ok(match fitted {
        Fitted::Linear(p, _) => {
            let f = split.mean_features()?;
            let d = split.dim() as usize;
            let z = p
                .decision_function(to_rows(&f, split.n(), d)?)
                .map_err(|e| metric_err("Failed to score", &e))?;
            vec![z.into_iter().map(dag_metrics::sigmoid).collect()]
        }
        Fitted::Learned(runs) => runs
            .iter()
            .map(|(_, p, _, _)| tch::no_grad(|| sigmoid_vec(&split.by_rows(|x, m| p.logits(x, m)))))
            .collect(),
    })
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// Runs the node.
pub fn run(job: &Job, rep: &Reporter) -> Result<(), NodeError> {
    let (p, grouping): TrainProbeParams = job.params()?;
    let label = p.label_column.clone();
    let group_column = grouping.group_column.as_deref();
    let family = p.probe.as_str();
    let mut splits = Vec::new();
    let mut layer_meta = Value::Null;
    for name in ["train", "validation", "test"] {
        if let Some(input) = job.inputs.get(name).and_then(|v| v.first()) {
            let layer = read_layer(&input.path)?;
            if name == "train" {
                layer_meta = layer.meta.clone();
            } else if layer.meta["layer"] != layer_meta["layer"]
                || layer.meta["model"] != layer_meta["model"]
            {
                return Err(NodeError::msg(format!(
                    "The {name} activations come from layer {} of `{}`, the train activations from layer {} of `{}`",
                    layer.meta["layer"], layer.meta["model"], layer_meta["layer"], layer_meta["model"]
                ))
                .hint("connect activations of the same model and layer (a matrix over `layer` pairs them)"));
            }
            splits.push(Split::from_layer(name, layer, &label, group_column)?);
        }
    }
    if let Some(l) = p.layer
        && layer_meta["layer"].as_i64() != Some(l)
    {
        return Err(NodeError::msg(format!(
            "`layer = {l}` but the train activations are of layer {}",
            layer_meta["layer"]
        ))
        .hint(
            "give this node's matrix the same `layer` values as the extract-activations node's",
        ));
    }
    let (train, val) = (&splits[0], &splits[1]);
    rep.send(Report::Info(format!(
        "{family} probe on layer {}: {} train, {} validation rows, d = {}",
        layer_meta["layer"],
        train.n(),
        val.n(),
        train.dim()
    )));
    let resamples = p.bootstrap as usize;
    let fitted = fit(&p, train, val, rep)?;
    let out = &job.outputs["probe"];
    std::fs::create_dir_all(out)
        .map_err(|e| caused(format!("Failed to create `{}`", out.display()), &e))?;

    // Scores and metrics per split.
    let mut score_rows = Vec::new();
    let mut metrics = serde_json::Map::new();
    for split in &splits {
        let per_seed = score(&fitted, split)?;
        let n = split.n();
        let mean: Vec<f64> = (0..n)
            .map(|i| per_seed.iter().map(|s| s[i]).sum::<f64>() / per_seed.len() as f64)
            .collect();
        let mut m = split_metrics(&mean, &split.y, resamples)?;
        if per_seed.len() > 1 {
            let aurocs: Vec<f64> = per_seed
                .iter()
                .filter_map(|s| dag_metrics::roc_auc(s, &split.y).ok())
                .collect();
            let (mu, sd) = mean_std(&aurocs);
            m["seeds"] = json!({ "auroc": aurocs, "auroc_mean": mu, "auroc_std": sd });
        }
        if let Some(groups) = &split.groups {
            m["by_group"] = group_metrics(&mean, &split.y, groups, resamples)?;
        }
        metrics.insert(split.name.clone(), m);
        for i in 0..n {
            let mut r = ScoreRow::new(&split.name, split.rows[i] as u64, split.y[i], mean[i]);
            if per_seed.len() > 1 {
                let by_seed: Vec<f64> = per_seed.iter().map(|s| s[i]).collect();
                r = r.with("score_by_seed", json!(by_seed));
            }
            score_rows.push(r.in_group(split.groups.as_ref().map(|g| &g[i])));
        }
    }
    let scores_path = &job.outputs["scores"];
    std::fs::write(scores_path, ScoreRow::to_jsonl(&score_rows))
        .map_err(|e| caused(format!("Failed to write `{}`", scores_path.display()), &e))?;

    let config = write_probe(out, family, &fitted, &layer_meta, job)?;
    let metrics = Value::Object(metrics);
    std::fs::write(
        out.join("metrics.json"),
        serde_json::to_vec_pretty(&metrics).expect("serialises"),
    )
    .map_err(|e| caused("Failed to write metrics.json", &e))?;
    let headline = |split: &str| {
        metrics.get(split).map(|m| {
            let mut h = json!({
                "auroc": m["auroc"], "auroc_ci": m["auroc_ci"], "tpr_at_1pct_fpr": m["tpr_at_1pct_fpr"]["tpr"],
                "accuracy": m["accuracy_at_half"], "ece": m["ece_10"], "brier": m["brier"],
            });
            // Per group, what `dag show` needs to compare datasets at a glance.
            if let Some(by) = m.get("by_group").and_then(Value::as_object) {
                h["by_group"] = by
                    .iter()
                    .map(|(g, m)| (g.clone(), json!({ "n": m["n"], "auroc": m["auroc"], "auroc_ci": m["auroc_ci"] })))
                    .collect::<Map<_, _>>()
                    .into();
            }
            h
        })
    };
    // The fit's wall time goes to the run log, not into the probe's metadata.
    if let Fitted::Linear(_, info) = &fitted
        && let Some(secs) = info["fit_seconds"].as_f64()
    {
        rep.send(Report::Info(format!("fitted {family} in {secs:.3} s")));
    }
    let summary = json!({
        "probe": family, "layer": layer_meta["layer"], "config": config,
        "validation": headline("validation"), "test": headline("test"), "train": headline("train"),
    });
    rep.send(Report::Meta {
        port: "probe".into(),
        value: summary.clone(),
    });
    let mut scores_meta = json!({ "rows": score_rows.len(), "metrics": metrics, "probe": family, "layer": layer_meta["layer"] });
    if let Some(column) = group_column {
        // So `dag show` says which column the groups are values of.
        scores_meta["group_column"] = json!(column);
    }
    rep.send(Report::Meta {
        port: "scores".into(),
        value: scores_meta,
    });
    Ok(())
}

/// A closed-form or logistic fit on mean features: the probe and what to record of the fit.
type LinearFit<'a> = &'a dyn Fn(Rows<'_, f64>) -> Result<(LinearProbe, Value), NodeError>;

fn fit(p: &TrainProbe, train: &Split, val: &Split, rep: &Reporter) -> Result<Fitted, NodeError> {
    let d = train.dim() as usize;
    let closed = |f: LinearFit<'_>| -> Result<Fitted, NodeError> {
        let feats = train.mean_features()?;
        let start = std::time::Instant::now();
        let (p, mut info) = f(to_rows(&feats, train.n(), d)?)?;
        info["fit_seconds"] = json!(start.elapsed().as_secs_f64());
        Ok(Fitted::Linear(p, info))
    };
    // The engine has checked every range (and `cv`, `Cs` and `seeds`) when the graph loaded.
    match p.probe {
        Probe::DiffOfMeans => closed(&|x| {
            let p = dag_metrics::fit_diff_of_means(x, &train.y)
                .map_err(|e| metric_err("Failed to fit difference of means", &e))?;
            Ok((p, json!({})))
        }),
        Probe::Lda => closed(&|x| {
            let (shrink, info) = match p.shrinkage {
                Some(a) => (Shrinkage::Fixed(a), json!({ "shrinkage": a })),
                None => (Shrinkage::LedoitWolf, json!({ "shrinkage": "ledoit-wolf" })),
            };
            let p = dag_metrics::fit_lda(x, &train.y, shrink)
                .map_err(|e| metric_err("Failed to fit LDA", &e))?;
            Ok((p, info))
        }),
        Probe::MeanLogistic => closed(&|x| {
            let balanced = p.class_weight == ParamClassWeight::Balanced;
            let mut cfg = LogisticConfig {
                c: p.C,
                class_weight: if balanced {
                    ClassWeight::Balanced
                } else {
                    ClassWeight::None
                },
                ..LogisticConfig::default()
            };
            cfg.max_iter = cfg.max_iter.max(1000);
            let cv = p.cv;
            if cv >= 2 {
                let fit = dag_metrics::fit_logistic_cv(x, &train.y, &p.Cs, cv as usize, &cfg)
                    .map_err(|e| metric_err("Failed to cross-validate the logistic probe", &e))?;
                rep.send(Report::Info(format!(
                    "cross-validation chose C = {}",
                    fit.best_c
                )));
                Ok((
                    fit.fit.probe,
                    json!({ "C": fit.best_c, "cv": cv, "Cs": fit.cs, "cv_auroc": fit.mean_auroc, "n_iter": fit.fit.n_iter, "converged": fit.fit.converged }),
                ))
            } else {
                let fit = dag_metrics::fit_logistic(x, &train.y, None, &cfg)
                    .map_err(|e| metric_err("Failed to fit the logistic probe", &e))?;
                if !fit.converged {
                    rep.send(Report::Info(format!(
                        "warning: lbfgs stopped after {} iterations without converging",
                        fit.n_iter
                    )));
                }
                Ok((
                    fit.probe,
                    json!({ "C": cfg.c, "n_iter": fit.n_iter, "converged": fit.converged }),
                ))
            }
        }),
        Probe::PerToken | Probe::Attention => {
            let fam = if p.probe == Probe::Attention {
                Learned::Attention
            } else {
                Learned::PerToken(aggregation(p))
            };
            let cfg = TrainConfig {
                lr: p.lr,
                weight_decay: p.weight_decay,
                epochs: p.epochs as usize,
                batch_size: p.batch_size as usize,
                grad_accum: p.grad_accum as usize,
                warmup: p.warmup,
                patience: p.patience as usize,
                balanced: p.class_weight == ParamClassWeight::Balanced,
            };
            if p.seeds.is_empty() {
                return Err(NodeError::msg("`seeds` is empty")
                    .hint("give at least one seed, e.g. `seeds = [0]`"));
            }
            let mut runs = Vec::new();
            for &s in &p.seeds {
                let (p, curve, best) = train_learned(fam, train, val, &cfg, s)?;
                rep.send(Report::Info(format!(
                    "seed {s}: best validation AUROC {:.4} at epoch {best} of {}",
                    curve[best - 1].val_auroc,
                    curve.len()
                )));
                runs.push((s, p, curve, best));
            }
            Ok(Fitted::Learned(runs))
        }
    }
}

/// Writes weights.safetensors, config.json and (learned probes) curve.png; returns the config.
fn write_probe(
    out: &Path,
    family: &str,
    fitted: &Fitted,
    layer_meta: &Value,
    job: &Job,
) -> Result<Value, NodeError> {
    let weights = out.join("weights.safetensors");
    let save = |tensors: &[(String, Tensor)]| {
        Tensor::write_safetensors(tensors, &weights)
            .map_err(|e| caused(format!("Failed to write `{}`", weights.display()), &e))
    };
    let mut config = json!({
        "probe": family,
        "layer": layer_meta["layer"],
        "model": layer_meta["model"],
        "hidden_size": layer_meta["hidden_size"],
        "params": Value::Object(job.params.clone()),
    });
    match fitted {
        Fitted::Linear(p, info) => {
            save(&[
                (
                    "coef".into(),
                    Tensor::from_slice(&p.coef).to_kind(Kind::Float),
                ),
                (
                    "intercept".into(),
                    Tensor::from_slice(&[p.intercept]).to_kind(Kind::Float),
                ),
            ])?;
            // Timing goes to the artifact's meta only: the files stay byte-reproducible.
            let mut info = info.clone();
            if let Some(o) = info.as_object_mut() {
                o.remove("fit_seconds");
            }
            config["fit"] = info;
            config["apply"] = json!("score = sigmoid(mean_over_real_tokens(h) . coef + intercept)");
        }
        Fitted::Learned(runs) => {
            let mut tensors = Vec::new();
            let mut seeds = Vec::new();
            let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
            for (s, p, curve, best) in runs {
                for (name, t) in [
                    ("mean", &p.mean),
                    ("std", &p.std),
                    ("w", &p.w),
                    ("q", &p.q),
                    ("b", &p.b),
                ] {
                    tensors.push((format!("seed{s}.{name}"), t.detach().copy()));
                }
                seeds.push(json!({ "seed": s, "best_epoch": best, "curve": curve }));
                series.push((
                    format!("seed {s} validation AUROC"),
                    curve
                        .iter()
                        .map(|e| (e.epoch as f64, e.val_auroc))
                        .collect(),
                ));
                series.push((
                    format!("seed {s} train loss"),
                    curve
                        .iter()
                        .map(|e| (e.epoch as f64, e.train_loss))
                        .collect(),
                ));
            }
            save(&tensors)?;
            config["seeds"] = json!(seeds);
            config["apply"] = json!(match family {
                "attention" =>
                    "z = (h - mean) / std; a = softmax over real tokens of z . q; logit = sum_t a_t (z_t . w) + b",
                _ =>
                    "z = (h - mean) / std; s_t = z_t . w; logit = aggregate over real tokens of s_t + b",
            });
            let refs: Vec<(&str, &[(f64, f64)])> = series
                .iter()
                .map(|(l, s)| (l.as_str(), s.as_slice()))
                .collect();
            let png = out.join("curve.png");
            dag_metrics::line_plot_png(
                &png,
                &format!("{family} probe, layer {}", layer_meta["layer"]),
                ("epoch", "AUROC / loss"),
                &refs,
            )
            .map_err(|e| metric_err("Failed to plot the training curve", &e))?;
        }
    }
    std::fs::write(
        out.join("config.json"),
        serde_json::to_vec_pretty(&config).expect("serialises"),
    )
    .map_err(|e| caused("Failed to write config.json", &e))?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scores::parse_label;
    use tch::Device;

    const D: i64 = 8;
    const T: i64 = 16;

    /// Synthetic activations: noise everywhere, lengths 8..=16, and for positive rows the
    /// signal `strength` added to dimension 0 of `tokens` random real tokens (all of them
    /// when `tokens` is `None`). Padding holds `pad`.
    fn planted(n: usize, strength: f64, tokens: Option<usize>, pad: f64, seed: i64) -> Split {
        // A local generator: tch's is process-global, and tests run in parallel threads, so
        // another test's draws could land between a seed and these.
        use rand::seq::SliceRandom;
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed as u64);
        let mut normal = || {
            // Box-Muller.
            let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        };
        let mut xs: Vec<f32> = (0..n * (T * D) as usize).map(|_| normal()).collect();
        let mut mask = vec![false; n * T as usize];
        let mut y = vec![];
        for i in 0..n {
            let positive = i % 2 == 0;
            y.push(positive);
            let len = rng.random_range(8..=T);
            for t in 0..len {
                mask[i * T as usize + t as usize] = true;
            }
            if positive {
                let mut picks: Vec<i64> = (0..len).collect();
                if let Some(k) = tokens {
                    picks.shuffle(&mut rng);
                    picks.truncate(k);
                }
                for t in picks {
                    xs[(i * T as usize + t as usize) * D as usize] += strength as f32;
                }
            }
            for t in len..T {
                let row = (i * T as usize + t as usize) * D as usize;
                xs[row..row + D as usize].fill(pad as f32);
            }
        }
        let x = Tensor::from_slice(&xs).view([n as i64, T, D]);
        let mask = Tensor::from_slice(&mask).view([n as i64, T]);
        Split::new("s", x, mask, y, (0..n).collect())
    }

    fn cfg() -> TrainConfig {
        TrainConfig {
            lr: 0.05,
            weight_decay: 0.0,
            epochs: 40,
            batch_size: 32,
            grad_accum: 1,
            warmup: 0.1,
            patience: 10,
            balanced: true,
        }
    }

    fn val_auroc(agg: Aggregation, train: &Split, val: &Split) -> f64 {
        let (p, curve, best) =
            train_learned(Learned::PerToken(agg), train, val, &cfg(), 0).unwrap();
        let scores = tch::no_grad(|| sigmoid_vec(&p.logits(&val.x, &val.mask)));
        let a = auroc(&scores, &val.y).unwrap();
        // The restored weights are the best epoch's: they reproduce its AUROC exactly.
        assert_eq!(a, curve[best - 1].val_auroc);
        assert_eq!(
            a,
            curve.iter().map(|e| e.val_auroc).fold(f64::MIN, f64::max)
        );
        a
    }

    #[test]
    fn max_finds_a_single_token_and_mean_needs_many() {
        let (train, val) = (
            planted(300, 4.0, Some(1), 0.0, 1),
            planted(200, 4.0, Some(1), 0.0, 2),
        );
        let max1 = val_auroc(Aggregation::Max, &train, &val);
        let mean1 = val_auroc(Aggregation::Mean, &train, &val);
        assert!(max1 > 0.9, "max on a single planted token: {max1}");
        assert!(
            max1 > mean1 + 0.1,
            "max {max1} vs mean {mean1} on a single token"
        );
        let (train, val) = (
            planted(300, 0.7, None, 0.0, 3),
            planted(200, 0.7, None, 0.0, 4),
        );
        let mean_all = val_auroc(Aggregation::Mean, &train, &val);
        let max_all = val_auroc(Aggregation::Max, &train, &val);
        assert!(
            mean_all > 0.9,
            "mean with the signal in every token: {mean_all}"
        );
        assert!(
            mean_all > max_all,
            "mean {mean_all} vs max {max_all} with a diffuse signal"
        );
        let soft = val_auroc(
            Aggregation::Softmax { temperature: 0.1 },
            &planted(300, 4.0, Some(1), 0.0, 1),
            &planted(200, 4.0, Some(1), 0.0, 2),
        );
        assert!(soft > 0.85, "a cold softmax behaves like max: {soft}");
    }

    #[test]
    fn padding_never_enters_an_aggregate_or_a_gradient() {
        let clean = planted(40, 3.0, Some(1), 0.0, 5);
        let aggs = [
            Aggregation::Mean,
            Aggregation::Max,
            Aggregation::Softmax { temperature: 0.5 },
            Aggregation::RollingMeanMax { window: 3 },
            Aggregation::RollingMeanMax { window: 12 },
            Aggregation::Last,
        ];
        for pad in [f64::NAN, 1e30, -1e30, f64::INFINITY] {
            let dirty = planted(40, 3.0, Some(1), pad, 5);
            assert_eq!(
                Vec::<f64>::try_from(dirty.x.flatten(0, -1).to_kind(Kind::Double)).unwrap(),
                Vec::<f64>::try_from(clean.x.flatten(0, -1).to_kind(Kind::Double)).unwrap(),
                "padding {pad} survived loading"
            );
            assert_eq!(
                dirty.mean_features().unwrap(),
                clean.mean_features().unwrap()
            );
            // Raw (unsanitised) tensors through the probe: the mask alone must keep padding out.
            let raw = clean
                .x
                .masked_fill(&clean.mask.logical_not().unsqueeze(-1), pad);
            for family in aggs
                .map(Learned::PerToken)
                .into_iter()
                .chain([Learned::Attention])
            {
                let (p, _, _) = train_learned(
                    family,
                    &dirty,
                    &dirty,
                    &TrainConfig { epochs: 2, ..cfg() },
                    0,
                )
                .unwrap();
                for t in p.params() {
                    assert!(
                        bool::try_from(t.isfinite().all()).unwrap(),
                        "{family:?}: non-finite weights after training on {pad} padding"
                    );
                }
                let a = Vec::<f64>::try_from(p.logits(&raw, &clean.mask).to_kind(Kind::Double))
                    .unwrap();
                let b = Vec::<f64>::try_from(p.logits(&clean.x, &clean.mask).to_kind(Kind::Double))
                    .unwrap();
                assert_eq!(a, b, "{family:?} with {pad} padding");
            }
        }
    }

    #[test]
    fn aggregates_match_their_definitions_on_a_small_case() {
        // Row 0: scores 1, 3, 2 then padding; row 1: 5 then padding.
        let s = Tensor::from_slice(&[1.0f32, 3.0, 2.0, 99.0, 5.0, -99.0, 99.0, 99.0]).view([2, 4]);
        let m =
            Tensor::from_slice(&[true, true, true, false, true, false, false, false]).view([2, 4]);
        let get = |a| Vec::<f64>::try_from(aggregate(&s, &m, a).to_kind(Kind::Double)).unwrap();
        assert_eq!(get(Aggregation::Mean), [2.0, 5.0]);
        assert_eq!(get(Aggregation::Max), [3.0, 5.0]);
        assert_eq!(get(Aggregation::Last), [2.0, 5.0]);
        assert_eq!(get(Aggregation::RollingMeanMax { window: 2 }), [2.5, 5.0]);
        let soft = get(Aggregation::Softmax { temperature: 1.0 });
        let e = [1f64.exp(), 3f64.exp(), 2f64.exp()];
        let want = (e[0] + 3.0 * e[1] + 2.0 * e[2]) / e.iter().sum::<f64>();
        assert!(
            (soft[0] - want).abs() < 1e-6 && (soft[1] - 5.0).abs() < 1e-6,
            "{soft:?}"
        );
    }

    #[test]
    fn early_stopping_restores_a_deep_copy_of_the_peak_weights() {
        // Weights updated in place each epoch, as an optimizer does; validation AUROC peaks
        // at epoch 2 (0-based) and then falls.
        let w = Tensor::zeros([4], (Kind::Float, Device::Cpu));
        let mut stop = EarlyStopping::new(2);
        let aurocs = [0.6, 0.8, 0.9, 0.85, 0.7, 0.65];
        let mut last = 0;
        for (epoch, &a) in aurocs.iter().enumerate() {
            tch::no_grad(|| {
                let _ = w.shallow_clone().fill_(epoch as f64);
            });
            last = epoch;
            if stop.observe(epoch, a, &[&w]) {
                break;
            }
        }
        assert_eq!(last, 4, "stops after `patience` epochs without improvement");
        assert_eq!(stop.best_epoch, 2);
        assert_eq!(
            Vec::<f32>::try_from(&w).unwrap(),
            [4.0; 4],
            "the live weights moved on"
        );
        stop.restore(&[&w]);
        assert_eq!(
            Vec::<f32>::try_from(&w).unwrap(),
            [2.0; 4],
            "the peak epoch's weights are back"
        );
    }

    /// `split` written as one activations shard under `dir`, with each row's `label` and
    /// `dataset` columns (`only-pos` every fourth row, all positive there; `mixed` otherwise).
    fn write_layer(dir: &Path, split: &Split) -> std::path::PathBuf {
        let out = dir.join(&split.name);
        std::fs::create_dir_all(&out).unwrap();
        let meta = json!({ "format": crate::activations::FORMAT, "layer": 3, "model": "planted", "hidden_size": D, "shards": 1 });
        std::fs::write(out.join("meta.json"), meta.to_string()).unwrap();
        let tensors = [
            ("activations", split.x.shallow_clone()),
            ("attention_mask", split.mask.to_kind(Kind::Uint8)),
        ];
        Tensor::write_safetensors(&tensors, out.join("shard-00000.safetensors")).unwrap();
        let lines: String = split
            .y
            .iter()
            .enumerate()
            .map(|(i, y)| {
                let dataset = if i % 4 == 0 { "only-pos" } else { "mixed" };
                let columns = json!({ "label": u8::from(*y), "dataset": dataset });
                format!("{}\n", json!({ "row": i, "tokens": T, "columns": columns }))
            })
            .collect();
        std::fs::write(out.join("shard-00000.jsonl"), lines).unwrap();
        out
    }

    /// Runs the node on planted activations; returns its scores lines and metrics.json.
    fn run_node(dir: &Path, params: Value) -> Result<(Vec<Value>, Value), NodeError> {
        let input = |split: Split| json!([{ "path": write_layer(dir, &split), "digest": "0", "kind": "activations", "meta": null, "label": split.name }]);
        let named = |name: &str, mut s: Split| {
            s.name = name.into();
            s
        };
        let out = dir.join(format!(
            "out-{}",
            params["group_column"].as_str().unwrap_or("none")
        ));
        let fields = dag_protocol::models::worker_params("train-probe").unwrap();
        let params =
            dag_protocol::params::with_defaults(&fields, params.as_object().unwrap().clone());
        let job: Job = serde_json::from_value(json!({
            "node": "train-probe", "instance": "t", "params": params,
            "inputs": {
                "train": input(named("train", planted(40, 3.0, None, 0.0, 11))),
                "validation": input(named("validation", planted(16, 3.0, None, 0.0, 12))),
                "test": input(named("test", planted(24, 1.0, None, 0.0, 13))),
            },
            "outputs": { "probe": out.join("probe"), "scores": out.join("scores.jsonl") },
            "scratch": dir, "resumed": [], "work_dir": dir.join("work"),
        }))
        .unwrap();
        run(&job, &crate::Reporter)?;
        let scores = std::fs::read_to_string(out.join("scores.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let metrics =
            serde_json::from_slice(&std::fs::read(out.join("probe/metrics.json")).unwrap())
                .unwrap();
        Ok((scores, metrics))
    }

    /// Equal JSON but for numbers within 1e-12: the scores lines hold the node's scores to
    /// the last digit serde_json writes, and this build parses them back within an ulp.
    fn assert_close(a: &Value, b: &Value) {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                assert!((x - y).abs() < 1e-12, "{x} != {y}");
            }
            (Value::Object(x), Value::Object(y)) => {
                assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>());
                for (k, v) in x {
                    assert_close(v, &y[k]);
                }
            }
            (Value::Array(x), Value::Array(y)) => {
                assert_eq!(x.len(), y.len());
                x.iter().zip(y).for_each(|(x, y)| assert_close(x, y));
            }
            _ => assert_eq!(a, b),
        }
    }

    #[test]
    fn group_column_adds_groups_and_changes_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let params = json!({ "probe": "diff-of-means", "bootstrap": 50 });
        let (plain, plain_metrics) = run_node(dir.path(), params.clone()).unwrap();
        let mut with = params.clone();
        with["group_column"] = json!("dataset");
        let (scores, metrics) = run_node(dir.path(), with).unwrap();
        // Each line gains `group` (last), and nothing else moves.
        assert_eq!(scores.len(), plain.len());
        for (g, p) in scores.iter().zip(&plain) {
            let mut g = g.clone();
            let group = g.as_object_mut().unwrap().shift_remove("group").unwrap();
            assert_eq!(&g, p);
            let row = g["row"].as_u64().unwrap();
            assert_eq!(group, if row % 4 == 0 { "only-pos" } else { "mixed" });
        }
        assert_eq!(
            scores[0].as_object().unwrap().keys().collect::<Vec<_>>(),
            ["split", "row", "label", "score", "group"]
        );
        // Each split's metrics gain `by_group` (last), and nothing else moves.
        let mut stripped = metrics.clone();
        for split in ["train", "validation", "test"] {
            let m = stripped[split].as_object_mut().unwrap();
            assert_eq!(m.keys().next_back().unwrap(), "by_group");
            m.shift_remove("by_group");
        }
        assert_eq!(stripped, plain_metrics);
        // A group's metrics are dag-metrics on its rows alone, with the split's bootstrap.
        let rows = |group: &str| -> (Vec<f64>, Vec<bool>) {
            scores
                .iter()
                .filter(|r| r["split"] == "test" && r["group"] == group)
                .map(|r| (r["score"].as_f64().unwrap(), r["label"] == 1))
                .unzip()
        };
        let (p, y) = rows("mixed");
        let mixed = &metrics["test"]["by_group"]["mixed"];
        assert_close(mixed, &split_metrics(&p, &y, 50).unwrap());
        assert!(mixed["auroc_ci"].is_array());
        // A one-class group reports no AUROC and says why, rather than failing the node.
        let (p, y) = rows("only-pos");
        let only = &metrics["test"]["by_group"]["only-pos"];
        assert_eq!(only["n"], 6);
        assert!(only["auroc"].is_null() && only.get("auroc_ci").is_none());
        assert_eq!(
            only["note"],
            "only positive rows (6): AUROC, its interval and TPR at 1% FPR need both classes"
        );
        assert_close(&only["brier"], &split_metrics(&p, &y, 50).unwrap()["brier"]);
    }

    #[test]
    fn a_missing_group_column_is_named_with_the_columns_there_are() {
        let dir = tempfile::tempdir().unwrap();
        let params = json!({ "probe": "diff-of-means", "bootstrap": 0, "group_column": "source" });
        let err = run_node(dir.path(), params).unwrap_err();
        assert!(
            err.message.contains(
                "Row 0 of the train activations has no column `source` (the `group_column`)"
            ) && err
                .hint
                .as_deref()
                .is_some_and(|h| h.contains("columns available: `label`, `dataset`")),
            "{err:?}"
        );
    }

    #[test]
    fn labels_are_binary_or_refused() {
        assert_eq!(parse_label(&json!(1)), Some(true));
        assert_eq!(parse_label(&json!(0.0)), Some(false));
        assert_eq!(parse_label(&json!(true)), Some(true));
        assert_eq!(parse_label(&json!("0")), Some(false));
        assert_eq!(parse_label(&json!(2)), None);
        assert_eq!(parse_label(&json!("yes")), None);
    }
}
