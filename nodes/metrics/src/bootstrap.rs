//! Seeded bootstrap percentile intervals.
//!
//! Resampling uses ChaCha8 seeded from a `u64` and `rand`'s portable integer sampling, so
//! the same seed gives the same interval on every platform and every run.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{MetricError, Result, check_same_len, invalid};
use crate::util::percentile_sorted;

/// How many resamples to draw, from which seed, and for which confidence level.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BootstrapConfig {
    /// Number of bootstrap resamples.
    pub n_resamples: usize,
    /// Seed of the resampling generator.
    pub seed: u64,
    /// Two-sided confidence level, e.g. 0.95.
    pub level: f64,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        Self {
            n_resamples: 2000,
            seed: 0,
            level: 0.95,
        }
    }
}

impl BootstrapConfig {
    fn validate(&self) -> Result<()> {
        if self.n_resamples < 2 {
            return Err(invalid(
                "n_resamples",
                self.n_resamples,
                "it must be at least 2",
            ));
        }
        if !(self.level > 0.0 && self.level < 1.0) {
            return Err(invalid(
                "level",
                self.level,
                "it must lie strictly between 0 and 1",
            ));
        }
        Ok(())
    }
}

/// A point estimate with a bootstrap percentile interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    /// The statistic on the full data.
    pub estimate: f64,
    /// Lower percentile of the resampled statistics (2.5th for a 95% level).
    pub lower: f64,
    /// Upper percentile of the resampled statistics (97.5th for a 95% level).
    pub upper: f64,
    /// Confidence level.
    pub level: f64,
    /// Resamples drawn.
    pub n_resamples: usize,
    /// Seed used.
    pub seed: u64,
}

pub(crate) fn percentile_interval(
    estimate: f64,
    mut replicates: Vec<f64>,
    config: &BootstrapConfig,
) -> Result<Interval> {
    if let Some(i) = replicates.iter().position(|x| x.is_nan()) {
        return Err(MetricError::NonFinite {
            what: "bootstrap",
            input: "replicates",
            index: i,
            value: replicates[i],
        });
    }
    replicates.sort_by(f64::total_cmp);
    let tail = (1.0 - config.level) / 2.0 * 100.0;
    Ok(Interval {
        estimate,
        lower: percentile_sorted(&replicates, tail),
        upper: percentile_sorted(&replicates, 100.0 - tail),
        level: config.level,
        n_resamples: config.n_resamples,
        seed: config.seed,
    })
}

pub(crate) fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Percentile interval of `statistic` over items resampled with replacement.
pub fn bootstrap_interval<F>(
    values: &[f64],
    config: &BootstrapConfig,
    mut statistic: F,
) -> Result<Interval>
where
    F: FnMut(&[f64]) -> f64,
{
    config.validate()?;
    if values.is_empty() {
        return Err(MetricError::Empty {
            what: "bootstrap_interval",
        });
    }
    let mut rng = rng(config.seed);
    let mut sample = vec![0.0; values.len()];
    let replicates = (0..config.n_resamples)
        .map(|_| {
            for s in sample.iter_mut() {
                *s = values[rng.random_range(0..values.len())];
            }
            statistic(&sample)
        })
        .collect();
    percentile_interval(statistic(values), replicates, config)
}

/// Percentile interval of a classification metric, resampling positives and negatives
/// separately so that every resample keeps the original class counts (and so AUROC is
/// defined in every resample).
pub fn stratified_bootstrap<F>(
    scores: &[f64],
    labels: &[bool],
    config: &BootstrapConfig,
    mut metric: F,
) -> Result<Interval>
where
    F: FnMut(&[f64], &[bool]) -> Result<f64>,
{
    config.validate()?;
    check_same_len("scores", scores.len(), "labels", labels.len())?;
    let estimate = metric(scores, labels)?;
    let pos: Vec<f64> = scores
        .iter()
        .zip(labels)
        .filter(|(_, y)| **y)
        .map(|(s, _)| *s)
        .collect();
    let neg: Vec<f64> = scores
        .iter()
        .zip(labels)
        .filter(|(_, y)| !**y)
        .map(|(s, _)| *s)
        .collect();
    let resampled_labels: Vec<bool> = std::iter::repeat_n(true, pos.len())
        .chain(std::iter::repeat_n(false, neg.len()))
        .collect();
    let mut rng = rng(config.seed);
    let mut sample = vec![0.0; scores.len()];
    let mut replicates = Vec::with_capacity(config.n_resamples);
    for _ in 0..config.n_resamples {
        let (pos_part, neg_part) = sample.split_at_mut(pos.len());
        for slot in pos_part {
            *slot = pos[rng.random_range(0..pos.len())];
        }
        for slot in neg_part {
            *slot = neg[rng.random_range(0..neg.len())];
        }
        replicates.push(metric(&sample, &resampled_labels)?);
    }
    percentile_interval(estimate, replicates, config)
}

/// Percentile interval of `metric(scores_a) - metric(scores_b)` for two systems scored on
/// the same rows (e.g. a probe against a prompted baseline): each resample draws the same
/// rows for both, stratified by class as in [`stratified_bootstrap`], so the interval
/// reflects the paired design rather than two independent spreads.
pub fn paired_stratified_bootstrap<F>(
    scores_a: &[f64],
    scores_b: &[f64],
    labels: &[bool],
    config: &BootstrapConfig,
    mut metric: F,
) -> Result<Interval>
where
    F: FnMut(&[f64], &[bool]) -> Result<f64>,
{
    config.validate()?;
    check_same_len("scores_a", scores_a.len(), "labels", labels.len())?;
    check_same_len("scores_b", scores_b.len(), "labels", labels.len())?;
    let estimate = metric(scores_a, labels)? - metric(scores_b, labels)?;
    let pos: Vec<usize> = (0..labels.len()).filter(|&i| labels[i]).collect();
    let neg: Vec<usize> = (0..labels.len()).filter(|&i| !labels[i]).collect();
    let resampled_labels: Vec<bool> = std::iter::repeat_n(true, pos.len())
        .chain(std::iter::repeat_n(false, neg.len()))
        .collect();
    let mut rng = rng(config.seed);
    let (mut a, mut b) = (vec![0.0; labels.len()], vec![0.0; labels.len()]);
    let mut replicates = Vec::with_capacity(config.n_resamples);
    for _ in 0..config.n_resamples {
        for (k, pool) in std::iter::repeat_n(&pos, pos.len())
            .chain(std::iter::repeat_n(&neg, neg.len()))
            .enumerate()
        {
            let i = pool[rng.random_range(0..pool.len())];
            a[k] = scores_a[i];
            b[k] = scores_b[i];
        }
        replicates.push(metric(&a, &resampled_labels)? - metric(&b, &resampled_labels)?);
    }
    percentile_interval(estimate, replicates, config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classification::roc_auc;

    #[test]
    fn same_seed_same_interval_and_other_seed_differs() {
        let scores: Vec<f64> = (0..200).map(|i| ((i * 37) % 101) as f64 / 101.0).collect();
        let labels: Vec<bool> = (0..200)
            .map(|i| (i * 37) % 101 > 40 || i % 7 == 0)
            .collect();
        let c = BootstrapConfig {
            n_resamples: 300,
            seed: 11,
            level: 0.95,
        };
        let a = stratified_bootstrap(&scores, &labels, &c, roc_auc).unwrap();
        let b = stratified_bootstrap(&scores, &labels, &c, roc_auc).unwrap();
        assert_eq!(a, b);
        let other = stratified_bootstrap(
            &scores,
            &labels,
            &BootstrapConfig { seed: 12, ..c },
            roc_auc,
        )
        .unwrap();
        assert_ne!(a.lower, other.lower);
        assert!(a.lower <= a.estimate && a.estimate <= a.upper);
    }

    #[test]
    fn mean_interval_covers_mean_and_narrows_with_more_data() {
        let small: Vec<f64> = (0..50).map(|i| f64::from(i % 2)).collect();
        let large: Vec<f64> = (0..5000).map(|i| f64::from(i % 2)).collect();
        let c = BootstrapConfig::default();
        let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
        let s = bootstrap_interval(&small, &c, mean).unwrap();
        let l = bootstrap_interval(&large, &c, mean).unwrap();
        assert!(s.lower < 0.5 && s.upper > 0.5);
        assert!(l.upper - l.lower < (s.upper - s.lower) / 5.0);
    }

    #[test]
    fn paired_interval_is_tighter_than_the_independent_spreads() {
        // System b is system a plus small row-level noise: their AUROCs move together
        // across resamples, so the paired difference interval is narrow.
        let n = 400;
        let labels: Vec<bool> = (0..n).map(|i| i % 2 == 0).collect();
        let a: Vec<f64> = (0..n)
            .map(|i| f64::from(u8::from(labels[i])) * 0.6 + ((i * 7919) % 1000) as f64 / 1000.0)
            .collect();
        let b: Vec<f64> = a
            .iter()
            .enumerate()
            .map(|(i, x)| x + ((i * 104_729) % 100) as f64 / 5000.0)
            .collect();
        let c = BootstrapConfig {
            n_resamples: 500,
            seed: 1,
            level: 0.95,
        };
        let diff = paired_stratified_bootstrap(&a, &b, &labels, &c, roc_auc).unwrap();
        let alone = stratified_bootstrap(&a, &labels, &c, roc_auc).unwrap();
        assert!(diff.lower <= diff.estimate && diff.estimate <= diff.upper);
        assert!(
            (diff.upper - diff.lower) * 4.0 < alone.upper - alone.lower,
            "{diff:?} vs {alone:?}"
        );
        let same = paired_stratified_bootstrap(&a, &a, &labels, &c, roc_auc).unwrap();
        assert_eq!((same.lower, same.estimate, same.upper), (0.0, 0.0, 0.0));
    }
}
