//! Binary classification metrics over scores and labels, with scikit-learn's semantics.
//!
//! Labels are `bool` (true = positive). Scores are any finite reals for the ranking
//! metrics (ROC, AUROC, TPR at FPR) and probabilities in [0, 1] for the calibration
//! metrics (Brier, ECE, calibration curve, reliability table, accuracy at 0.5).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::bootstrap::{BootstrapConfig, Interval, stratified_bootstrap};
use crate::error::{
    MetricError, Result, check_finite, check_probabilities, check_same_len, invalid,
};
use crate::util::{percentile_sorted, searchsorted_left, unit_linspace};

/// Points of a ROC curve, as `sklearn.metrics.roc_curve` returns them.
///
/// `thresholds[0]` is `+inf` (the curve starts at (0, 0) with nothing flagged); a row is
/// flagged positive at threshold `t` when its score is `>= t`. serde_json writes the
/// infinite threshold as `null`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RocCurve {
    /// False positive rate at each threshold, non-decreasing from 0 to 1.
    pub fpr: Vec<f64>,
    /// True positive rate at each threshold, non-decreasing from 0 to 1.
    pub tpr: Vec<f64>,
    /// Decreasing score thresholds; the first is `+inf`.
    pub thresholds: Vec<f64>,
}

/// TPR at a maximum FPR, with the threshold set on the negatives alone.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TprAtFpr {
    /// Fraction of positives scoring strictly above `threshold`.
    pub tpr: f64,
    /// The score a row must exceed to be flagged.
    pub threshold: f64,
    /// Fraction of negatives scoring strictly above `threshold` (at most the target).
    pub achieved_fpr: f64,
    /// The FPR that was asked for.
    pub target_fpr: f64,
}

/// How `calibration_curve` places its bin edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BinStrategy {
    /// Equal-width bins over [0, 1].
    Uniform,
    /// Edges at the quantiles of the scores, so bins hold about equal counts.
    Quantile,
}

/// `sklearn.calibration.calibration_curve` output: one entry per non-empty bin.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibrationCurve {
    /// Fraction of positives in each non-empty bin.
    pub prob_true: Vec<f64>,
    /// Mean predicted probability in each non-empty bin.
    pub prob_pred: Vec<f64>,
}

/// One equal-width bin of a reliability table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReliabilityBin {
    /// Lower edge (exclusive, except for the first bin).
    pub lower: f64,
    /// Upper edge (inclusive).
    pub upper: f64,
    /// Rows whose score falls in the bin.
    pub count: usize,
    /// Mean score of those rows; `None` for an empty bin.
    pub mean_score: Option<f64>,
    /// Fraction of positives among those rows; `None` for an empty bin.
    pub fraction_positive: Option<f64>,
}

/// Reliability table over equal-width bins, and the ECE it implies.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReliabilityTable {
    /// Every bin, empty ones included, lowest first.
    pub bins: Vec<ReliabilityBin>,
    /// Expected calibration error: sum over bins of `count / n * |fraction_positive - mean_score|`.
    pub ece: f64,
}

/// The standard probe metrics for one set of probability scores.
///
/// Ranking metrics are `None` when only one class is present (a per-dataset breakdown can
/// hit that); calibration metrics are always defined.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeMetrics {
    /// Rows scored.
    pub n: usize,
    /// Positive rows.
    pub n_positive: usize,
    /// AUROC, ties counted half (`roc_auc_score`).
    pub auroc: Option<f64>,
    /// TPR at 1% FPR, threshold on negatives only (see [`tpr_at_fpr`]).
    pub tpr_at_1pct_fpr: Option<TprAtFpr>,
    /// The Models-Under-Pressure study's TPR at the ROC point closest to 1% FPR
    /// (see [`tpr_at_fpr_closest_point`]); kept for comparison with its published numbers.
    pub tpr_at_1pct_fpr_closest_point: Option<f64>,
    /// Accuracy with a row flagged positive when its score is above 0.5.
    pub accuracy_at_half: f64,
    /// Expected calibration error over 10 equal-width bins.
    pub ece_10: f64,
    /// Brier score (`brier_score_loss`).
    pub brier: f64,
}

impl ProbeMetrics {
    /// Why AUROC (and its interval, and TPR at 1% FPR) is `None`, for a reader of the output:
    /// `None` when they are defined.
    pub fn undefined_auroc_reason(&self) -> Option<String> {
        if self.auroc.is_some() {
            return None;
        }
        let class = if self.n_positive == 0 {
            "negative"
        } else {
            "positive"
        };
        Some(format!(
            "only {class} rows ({}): AUROC, its interval and TPR at 1% FPR need both classes",
            self.n
        ))
    }
}

fn check_labels_scores(what: &'static str, scores: &[f64], labels: &[bool]) -> Result<()> {
    check_same_len("scores", scores.len(), "labels", labels.len())?;
    if scores.is_empty() {
        return Err(MetricError::Empty { what });
    }
    Ok(())
}

fn check_weights(scores: &[f64], weights: Option<&[f64]>, what: &'static str) -> Result<()> {
    if let Some(w) = weights {
        check_same_len("scores", scores.len(), "weights", w.len())?;
        check_finite(what, "weights", w)?;
        if let Some(i) = w.iter().position(|&x| x < 0.0) {
            return Err(invalid(
                "weights",
                w[i],
                "sample weights must be non-negative",
            ));
        }
    }
    Ok(())
}

fn require_both_classes(what: &'static str, labels: &[bool]) -> Result<()> {
    let n_pos = labels.iter().filter(|&&y| y).count();
    if n_pos == 0 || n_pos == labels.len() {
        return Err(MetricError::SingleClass {
            what,
            present: if n_pos == 0 { "negative" } else { "positive" },
            n: labels.len(),
        });
    }
    Ok(())
}

/// `sklearn.metrics._ranking._binary_clf_curve`: cumulative (fps, tps) at each distinct
/// score, scores in decreasing order.
fn binary_clf_curve(
    scores: &[f64],
    labels: &[bool],
    weights: Option<&[f64]>,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    // numpy: stable ascending argsort, then reversed; keeps float cumsums in the same order.
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    order.reverse();
    let mut fps = Vec::new();
    let mut tps = Vec::new();
    let mut thresholds = Vec::new();
    let (mut tp, mut fp) = (0.0f64, 0.0f64);
    for (k, &i) in order.iter().enumerate() {
        let w = weights.map_or(1.0, |w| w[i]);
        if labels[i] {
            tp += w;
        } else {
            fp += w;
        }
        let last_of_group = k + 1 == order.len() || scores[order[k + 1]] != scores[i];
        if last_of_group {
            tps.push(tp);
            fps.push(fp);
            thresholds.push(scores[i]);
        }
    }
    (fps, tps, thresholds)
}

/// ROC curve with `sklearn.metrics.roc_curve` semantics.
///
/// With `drop_intermediate`, points collinear with their neighbours are dropped (they do
/// not change the curve's shape or area), as scikit-learn's default does. A leading
/// (0, 0) point with threshold `+inf` is always added.
///
/// Errors when only one class is present (scikit-learn warns and returns NaN there).
pub fn roc_curve(
    scores: &[f64],
    labels: &[bool],
    weights: Option<&[f64]>,
    drop_intermediate: bool,
) -> Result<RocCurve> {
    const WHAT: &str = "roc_curve";
    check_labels_scores(WHAT, scores, labels)?;
    check_finite(WHAT, "scores", scores)?;
    check_weights(scores, weights, WHAT)?;
    require_both_classes(WHAT, labels)?;
    let (mut fps, mut tps, mut thresholds) = binary_clf_curve(scores, labels, weights);
    if drop_intermediate && fps.len() > 2 {
        let n = fps.len();
        let second_diff = |v: &[f64], i: usize| (v[i + 2] - v[i + 1]) - (v[i + 1] - v[i]);
        let keep: Vec<usize> = (0..n)
            .filter(|&i| {
                i == 0
                    || i == n - 1
                    || second_diff(&fps, i - 1) != 0.0
                    || second_diff(&tps, i - 1) != 0.0
            })
            .collect();
        fps = keep.iter().map(|&i| fps[i]).collect();
        tps = keep.iter().map(|&i| tps[i]).collect();
        thresholds = keep.iter().map(|&i| thresholds[i]).collect();
    }
    let (fp_total, tp_total) = (*fps.last().unwrap_or(&0.0), *tps.last().unwrap_or(&0.0));
    if fp_total <= 0.0 || tp_total <= 0.0 {
        // All weight on one class: the same undefined case as an all-one-class input.
        return Err(MetricError::SingleClass {
            what: WHAT,
            present: if fp_total <= 0.0 {
                "positive (by weight)"
            } else {
                "negative (by weight)"
            },
            n: scores.len(),
        });
    }
    let fpr = std::iter::once(0.0)
        .chain(fps.iter().map(|f| f / fp_total))
        .collect();
    let tpr = std::iter::once(0.0)
        .chain(tps.iter().map(|t| t / tp_total))
        .collect();
    let thresholds = std::iter::once(f64::INFINITY).chain(thresholds).collect();
    Ok(RocCurve {
        fpr,
        tpr,
        thresholds,
    })
}

/// Trapezoidal area under a ROC curve (`sklearn.metrics.auc`).
fn trapezoid(x: &[f64], y: &[f64]) -> f64 {
    x.windows(2)
        .zip(y.windows(2))
        .map(|(xs, ys)| (xs[1] - xs[0]) * (ys[1] + ys[0]) / 2.0)
        .sum()
}

/// AUROC with ties counted half, equal to `sklearn.metrics.roc_auc_score`.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Result<f64> {
    roc_auc_weighted(scores, labels, None)
}

/// AUROC with per-row sample weights (`roc_auc_score(..., sample_weight=w)`).
pub fn roc_auc_weighted(scores: &[f64], labels: &[bool], weights: Option<&[f64]>) -> Result<f64> {
    let curve = roc_curve(scores, labels, weights, true).map_err(|e| match e {
        MetricError::SingleClass { present, n, .. } => MetricError::SingleClass {
            what: "roc_auc",
            present,
            n,
        },
        other => other,
    })?;
    Ok(trapezoid(&curve.fpr, &curve.tpr))
}

/// TPR at a maximum FPR, with the threshold set on the negatives only.
///
/// At most `floor(max_fpr * n_negative)` negatives may be flagged; the threshold is the
/// score of the next-highest negative, and a row is flagged when its score is strictly
/// greater. So the achieved FPR never exceeds `max_fpr`, whatever the ties, and positives
/// never move the threshold. With fewer than `1 / max_fpr` negatives no negative may be
/// flagged and the threshold is the highest negative score.
pub fn tpr_at_fpr(scores: &[f64], labels: &[bool], max_fpr: f64) -> Result<TprAtFpr> {
    const WHAT: &str = "tpr_at_fpr";
    check_labels_scores(WHAT, scores, labels)?;
    check_finite(WHAT, "scores", scores)?;
    require_both_classes(WHAT, labels)?;
    if !(0.0..1.0).contains(&max_fpr) {
        return Err(invalid("max_fpr", max_fpr, "it must lie in [0, 1)"));
    }
    let mut negatives: Vec<f64> = scores
        .iter()
        .zip(labels)
        .filter(|(_, y)| !**y)
        .map(|(s, _)| *s)
        .collect();
    negatives.sort_by(|a, b| b.total_cmp(a));
    let n_neg = negatives.len();
    // The epsilon keeps e.g. 0.29 * 100 = 28.999999999999996 from losing a whole negative.
    let allowed = ((max_fpr * n_neg as f64) + 1e-9).floor() as usize;
    let threshold = negatives[allowed.min(n_neg - 1)];
    let flagged_neg = negatives.iter().filter(|&&s| s > threshold).count();
    let (mut n_pos, mut flagged_pos) = (0usize, 0usize);
    for (s, y) in scores.iter().zip(labels) {
        if *y {
            n_pos += 1;
            if *s > threshold {
                flagged_pos += 1;
            }
        }
    }
    Ok(TprAtFpr {
        tpr: flagged_pos as f64 / n_pos as f64,
        threshold,
        achieved_fpr: flagged_neg as f64 / n_neg as f64,
        target_fpr: max_fpr,
    })
}

/// The Models-Under-Pressure study's "TPR at fixed FPR": the TPR of the point on
/// scikit-learn's default ROC curve (`drop_intermediate=True`) whose FPR is closest to
/// `target_fpr`, the first such point on a tie.
///
/// Unlike [`tpr_at_fpr`] the chosen point may exceed the target FPR, and because
/// intermediate points were dropped the closest kept point can be far from the target.
/// Use it only to compare with that study's numbers.
pub fn tpr_at_fpr_closest_point(scores: &[f64], labels: &[bool], target_fpr: f64) -> Result<f64> {
    let curve = roc_curve(scores, labels, None, true)?;
    let mut best = 0;
    for (i, f) in curve.fpr.iter().enumerate() {
        if (f - target_fpr).abs() < (curve.fpr[best] - target_fpr).abs() {
            best = i;
        }
    }
    Ok(curve.tpr[best])
}

/// Accuracy with a row predicted positive when `score > threshold` (strict, as
/// scikit-learn's `predict` is `decision_function > 0`, i.e. probability above 0.5).
pub fn accuracy(scores: &[f64], labels: &[bool], threshold: f64) -> Result<f64> {
    const WHAT: &str = "accuracy";
    check_labels_scores(WHAT, scores, labels)?;
    check_finite(WHAT, "scores", scores)?;
    let correct = scores
        .iter()
        .zip(labels)
        .filter(|(s, y)| (**s > threshold) == **y)
        .count();
    Ok(correct as f64 / scores.len() as f64)
}

/// Brier score, `sklearn.metrics.brier_score_loss`: the (weighted) mean of
/// `(label - probability)^2`.
pub fn brier_score(probs: &[f64], labels: &[bool], weights: Option<&[f64]>) -> Result<f64> {
    const WHAT: &str = "brier_score";
    check_labels_scores(WHAT, probs, labels)?;
    check_probabilities(WHAT, probs)?;
    check_weights(probs, weights, WHAT)?;
    let sq = |i: usize| {
        let d = f64::from(u8::from(labels[i])) - probs[i];
        d * d
    };
    match weights {
        None => Ok((0..probs.len()).map(sq).sum::<f64>() / probs.len() as f64),
        Some(w) => {
            let total: f64 = w.iter().sum();
            if total <= 0.0 {
                return Err(invalid(
                    "weights",
                    total,
                    "sample weights must not sum to zero",
                ));
            }
            Ok((0..probs.len()).map(|i| w[i] * sq(i)).sum::<f64>() / total)
        }
    }
}

/// `sklearn.calibration.calibration_curve(labels, probs, n_bins=n_bins, strategy=...)`.
///
/// Bins are right-closed (`searchsorted` left side): a probability of exactly 0.3 falls in
/// the bin ending at 0.3. Empty bins are left out, as scikit-learn does.
pub fn calibration_curve(
    probs: &[f64],
    labels: &[bool],
    n_bins: usize,
    strategy: BinStrategy,
) -> Result<CalibrationCurve> {
    const WHAT: &str = "calibration_curve";
    check_labels_scores(WHAT, probs, labels)?;
    check_probabilities(WHAT, probs)?;
    if n_bins == 0 {
        return Err(invalid("n_bins", n_bins, "it must be at least 1"));
    }
    let edges = bin_edges(probs, n_bins, strategy);
    let inner = &edges[1..edges.len() - 1];
    let mut sums = vec![0.0; edges.len()];
    let mut trues = vec![0.0; edges.len()];
    let mut totals = vec![0usize; edges.len()];
    for (p, y) in probs.iter().zip(labels) {
        let b = searchsorted_left(inner, *p);
        sums[b] += p;
        trues[b] += f64::from(u8::from(*y));
        totals[b] += 1;
    }
    let mut curve = CalibrationCurve {
        prob_true: Vec::new(),
        prob_pred: Vec::new(),
    };
    for b in 0..edges.len() {
        if totals[b] > 0 {
            curve.prob_true.push(trues[b] / totals[b] as f64);
            curve.prob_pred.push(sums[b] / totals[b] as f64);
        }
    }
    Ok(curve)
}

fn bin_edges(probs: &[f64], n_bins: usize, strategy: BinStrategy) -> Vec<f64> {
    let uniform = unit_linspace(n_bins);
    match strategy {
        BinStrategy::Uniform => uniform,
        BinStrategy::Quantile => {
            let mut sorted = probs.to_vec();
            sorted.sort_by(f64::total_cmp);
            // np.percentile(probs, linspace(0, 1, n + 1) * 100)
            uniform
                .iter()
                .map(|q| percentile_sorted(&sorted, q * 100.0))
                .collect()
        }
    }
}

/// Reliability table over `n_bins` equal-width bins, with the ECE it implies.
///
/// Bins follow [`calibration_curve`]'s uniform strategy (right-closed, the first bin also
/// holds 0), so the non-empty rows of the table equal that curve's points.
pub fn reliability_table(
    probs: &[f64],
    labels: &[bool],
    n_bins: usize,
) -> Result<ReliabilityTable> {
    const WHAT: &str = "reliability_table";
    check_labels_scores(WHAT, probs, labels)?;
    check_probabilities(WHAT, probs)?;
    if n_bins == 0 {
        return Err(invalid("n_bins", n_bins, "it must be at least 1"));
    }
    let edges = unit_linspace(n_bins);
    let inner = &edges[1..n_bins];
    let mut sums = vec![0.0; n_bins];
    let mut trues = vec![0usize; n_bins];
    let mut counts = vec![0usize; n_bins];
    for (p, y) in probs.iter().zip(labels) {
        let b = searchsorted_left(inner, *p);
        sums[b] += p;
        trues[b] += usize::from(*y);
        counts[b] += 1;
    }
    let n = probs.len() as f64;
    let mut ece = 0.0;
    let bins = (0..n_bins)
        .map(|b| {
            let (mean_score, fraction_positive) = if counts[b] == 0 {
                (None, None)
            } else {
                let c = counts[b] as f64;
                let (m, f) = (sums[b] / c, trues[b] as f64 / c);
                ece += c / n * (f - m).abs();
                (Some(m), Some(f))
            };
            ReliabilityBin {
                lower: edges[b],
                upper: edges[b + 1],
                count: counts[b],
                mean_score,
                fraction_positive,
            }
        })
        .collect();
    Ok(ReliabilityTable { bins, ece })
}

/// Expected calibration error over `n_bins` equal-width bins (10 is the usual choice).
pub fn expected_calibration_error(probs: &[f64], labels: &[bool], n_bins: usize) -> Result<f64> {
    Ok(reliability_table(probs, labels, n_bins)?.ece)
}

/// Every standard probe metric for probability scores; see [`ProbeMetrics`].
pub fn probe_metrics(probs: &[f64], labels: &[bool]) -> Result<ProbeMetrics> {
    const WHAT: &str = "probe_metrics";
    check_labels_scores(WHAT, probs, labels)?;
    check_probabilities(WHAT, probs)?;
    let n_positive = labels.iter().filter(|&&y| y).count();
    let both = n_positive > 0 && n_positive < labels.len();
    Ok(ProbeMetrics {
        n: probs.len(),
        n_positive,
        auroc: both.then(|| roc_auc(probs, labels)).transpose()?,
        tpr_at_1pct_fpr: both.then(|| tpr_at_fpr(probs, labels, 0.01)).transpose()?,
        tpr_at_1pct_fpr_closest_point: both
            .then(|| tpr_at_fpr_closest_point(probs, labels, 0.01))
            .transpose()?,
        accuracy_at_half: accuracy(probs, labels, 0.5)?,
        ece_10: expected_calibration_error(probs, labels, 10)?,
        brier: brier_score(probs, labels, None)?,
    })
}

/// [`probe_metrics`] with a stratified bootstrap interval of the AUROC (see
/// [`stratified_bootstrap`]); the interval is `None` without a `bootstrap` config or when
/// AUROC is undefined (one class). The one composition for every node that reports probe
/// metrics, so a probe's own metrics and a report over its scores agree number for number.
pub fn probe_metrics_with_interval(
    probs: &[f64],
    labels: &[bool],
    bootstrap: Option<&BootstrapConfig>,
) -> Result<(ProbeMetrics, Option<Interval>)> {
    let metrics = probe_metrics(probs, labels)?;
    let interval = match bootstrap {
        Some(config) if metrics.auroc.is_some() => {
            Some(stratified_bootstrap(probs, labels, config, roc_auc)?)
        }
        _ => None,
    };
    Ok((metrics, interval))
}

/// [`probe_metrics`] for each group (e.g. each evaluation dataset), keyed by group name.
pub fn per_group_metrics<G: AsRef<str>>(
    probs: &[f64],
    labels: &[bool],
    groups: &[G],
) -> Result<BTreeMap<String, ProbeMetrics>> {
    Ok(
        per_group_metrics_with_interval(probs, labels, groups, None)?
            .into_iter()
            .map(|(g, (m, _))| (g, m))
            .collect(),
    )
}

/// [`probe_metrics_with_interval`] for each group, keyed by group name: the per-dataset
/// breakdown a probe node and a report both compute, so they agree number for number. Each
/// group is resampled on its own rows with the same `bootstrap` config. A group with one class
/// gets `auroc: None` and no interval (not an error): a dataset of only positives is a normal
/// thing to evaluate on, its calibration metrics are still defined.
pub fn per_group_metrics_with_interval<G: AsRef<str>>(
    probs: &[f64],
    labels: &[bool],
    groups: &[G],
    bootstrap: Option<&BootstrapConfig>,
) -> Result<BTreeMap<String, (ProbeMetrics, Option<Interval>)>> {
    check_same_len("scores", probs.len(), "groups", groups.len())?;
    check_same_len("scores", probs.len(), "labels", labels.len())?;
    let mut members: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, g) in groups.iter().enumerate() {
        members.entry(g.as_ref()).or_default().push(i);
    }
    members
        .into_iter()
        .map(|(g, idx)| {
            let p: Vec<f64> = idx.iter().map(|&i| probs[i]).collect();
            let y: Vec<bool> = idx.iter().map(|&i| labels[i]).collect();
            Ok((
                g.to_owned(),
                probe_metrics_with_interval(&p, &y, bootstrap)?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auroc_counts_ties_half() {
        // One positive and one negative with equal scores: the pair is a coin flip.
        assert_eq!(roc_auc(&[0.5, 0.5], &[true, false]).unwrap(), 0.5);
        assert_eq!(
            roc_auc(&[0.9, 0.5, 0.5, 0.1], &[true, true, false, false]).unwrap(),
            0.875
        );
    }

    #[test]
    fn probe_metrics_with_interval_is_the_two_composed() {
        let probs = [0.9, 0.7, 0.7, 0.4, 0.3, 0.2, 0.6, 0.1];
        let labels = [true, true, false, true, false, false, true, false];
        let config = BootstrapConfig {
            n_resamples: 50,
            seed: 3,
            level: 0.95,
        };
        let (m, ci) = probe_metrics_with_interval(&probs, &labels, Some(&config)).unwrap();
        assert_eq!(m, probe_metrics(&probs, &labels).unwrap());
        let expected = stratified_bootstrap(&probs, &labels, &config, roc_auc).unwrap();
        assert_eq!(ci, Some(expected));
        assert_eq!(
            probe_metrics_with_interval(&probs, &labels, None)
                .unwrap()
                .1,
            None
        );
        // One class: no AUROC, so no interval either (and no error).
        let (m, ci) =
            probe_metrics_with_interval(&probs[..2], &labels[..2], Some(&config)).unwrap();
        assert_eq!((m.auroc, ci), (None, None));
    }

    #[test]
    fn single_class_is_a_typed_error() {
        let err = roc_auc(&[0.1, 0.2], &[true, true]).unwrap_err();
        assert!(
            matches!(
                err,
                MetricError::SingleClass {
                    present: "positive",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn tpr_at_fpr_ignores_positives_when_setting_the_threshold() {
        // 100 negatives at 0..99; at 1% FPR one negative (99) may be flagged, so the
        // threshold is 98 whatever the positives look like.
        let mut scores: Vec<f64> = (0..100).map(f64::from).collect();
        let mut labels = vec![false; 100];
        scores.extend([98.0, 98.5, 200.0]);
        labels.extend([true, true, true]);
        let r = tpr_at_fpr(&scores, &labels, 0.01).unwrap();
        assert_eq!(r.threshold, 98.0);
        assert_eq!(r.achieved_fpr, 0.01);
        assert!((r.tpr - 2.0 / 3.0).abs() < 1e-15);
    }

    #[test]
    fn tpr_at_fpr_never_exceeds_the_target_with_tied_negatives() {
        // Ten tied top negatives: flagging any of them would flag all ten (10% FPR).
        let mut scores = vec![5.0; 10];
        scores.extend((0..90).map(f64::from).map(|x| x / 100.0));
        let mut labels = vec![false; 100];
        scores.push(5.0);
        labels.push(true);
        let r = tpr_at_fpr(&scores, &labels, 0.05).unwrap();
        assert_eq!(r.threshold, 5.0);
        assert_eq!(r.achieved_fpr, 0.0);
        assert_eq!(r.tpr, 0.0);
    }

    #[test]
    fn reliability_bins_match_ece_by_hand() {
        let probs = [0.05, 0.15, 0.95, 0.95];
        let labels = [false, true, true, false];
        let t = reliability_table(&probs, &labels, 10).unwrap();
        assert_eq!(t.bins.len(), 10);
        assert_eq!(t.bins[9].count, 2);
        let by_hand = 0.25 * 0.05 + 0.25 * 0.85 + 0.5 * 0.45;
        assert!((t.ece - by_hand).abs() < 1e-12);
    }

    #[test]
    fn per_group_reports_undefined_auroc_for_single_class_groups() {
        let probs = [0.9, 0.1, 0.8, 0.7];
        let labels = [true, false, true, true];
        let groups = ["a", "a", "b", "b"];
        let m = per_group_metrics(&probs, &labels, &groups).unwrap();
        assert_eq!(m["a"].auroc, Some(1.0));
        assert_eq!(m["b"].auroc, None);
        assert_eq!(m["b"].accuracy_at_half, 1.0);
        assert_eq!(
            m["b"].undefined_auroc_reason().unwrap(),
            "only positive rows (2): AUROC, its interval and TPR at 1% FPR need both classes"
        );
        assert_eq!(m["a"].undefined_auroc_reason(), None);
    }

    #[test]
    fn per_group_with_interval_is_each_group_alone() {
        let probs = [0.9, 0.1, 0.8, 0.7, 0.6, 0.3, 0.4, 0.2, 0.65];
        let labels = [true, false, true, true, false, false, true, false, true];
        let groups = ["a", "a", "b", "b", "a", "b", "a", "a", "a"];
        let config = BootstrapConfig {
            n_resamples: 50,
            seed: 1,
            level: 0.95,
        };
        let m = per_group_metrics_with_interval(&probs, &labels, &groups, Some(&config)).unwrap();
        assert_eq!(m.keys().collect::<Vec<_>>(), ["a", "b"]);
        let a: Vec<usize> = (0..9).filter(|&i| groups[i] == "a").collect();
        let (pa, ya): (Vec<f64>, Vec<bool>) = a.iter().map(|&i| (probs[i], labels[i])).unzip();
        assert_eq!(
            m["a"],
            probe_metrics_with_interval(&pa, &ya, Some(&config)).unwrap()
        );
        // Group b: positives 0.8, 0.7 against negative 0.3, all above it.
        assert_eq!(m["b"].0.auroc, Some(1.0));
        assert_eq!(
            per_group_metrics(&probs, &labels, &groups).unwrap()["a"],
            m["a"].0
        );
    }
}
