//! Evaluation statistics: standard errors as lm-evaluation-harness computes them,
//! t-based intervals and tests (scipy's semantics), paired comparisons of two systems on
//! the same items, and the unbiased pass@k estimator.

use rand::Rng;
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::bootstrap::{BootstrapConfig, Interval, bootstrap_interval, rng};
use crate::error::{MetricError, Result, check_finite, check_same_len, invalid};
use crate::pyrandom::PyRandom;
use crate::util::{mean, sample_std};

/// Which way a test looks for a difference (scipy's `alternative`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Alternative {
    /// The means differ.
    TwoSided,
    /// The first mean is greater.
    Greater,
    /// The first mean is smaller.
    Less,
}

/// Result of a t-test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TTest {
    /// The t statistic (first sample minus second).
    pub statistic: f64,
    /// Degrees of freedom (fractional for Welch).
    pub df: f64,
    /// p-value under the chosen alternative.
    pub p_value: f64,
    /// The alternative tested.
    pub alternative: Alternative,
}

/// A Student-t confidence interval for a mean (e.g. over epochs or seeds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TInterval {
    /// Sample mean.
    pub mean: f64,
    /// Sample standard deviation (ddof = 1).
    pub sd: f64,
    /// Number of values.
    pub n: usize,
    /// `mean - t * sd / sqrt(n)`.
    pub lower: f64,
    /// `mean + t * sd / sqrt(n)`.
    pub upper: f64,
    /// Confidence level.
    pub level: f64,
}

/// Two systems scored on the same items.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PairedComparison {
    /// Number of paired items.
    pub n: usize,
    /// Mean score of system A.
    pub mean_a: f64,
    /// Mean score of system B.
    pub mean_b: f64,
    /// Mean of `a - b` with a bootstrap percentile interval over items.
    pub difference: Interval,
    /// Two-sided p-value of the paired sign-flip (permutation) test on the mean difference.
    pub sign_flip_p_value: f64,
    /// True when the sign-flip p-value enumerated all `2^n` sign patterns (n <= 20);
    /// otherwise it is a Monte Carlo estimate `(1 + hits) / (1 + resamples)`.
    pub sign_flip_exact: bool,
    /// Paired t-test (scipy's `ttest_rel`, two-sided).
    pub t_test: TTest,
}

fn check_values(what: &'static str, xs: &[f64], min: usize) -> Result<()> {
    if xs.len() < min {
        return Err(if xs.is_empty() {
            MetricError::Empty { what }
        } else {
            invalid("n", xs.len(), "this statistic needs at least two values")
        });
    }
    check_finite(what, "values", xs)
}

/// lm-evaluation-harness `mean_stderr`: sample standard deviation (ddof = 1) over sqrt(n).
pub fn mean_stderr(values: &[f64]) -> Result<f64> {
    check_values("mean_stderr", values, 2)?;
    Ok(sample_std(values) / (values.len() as f64).sqrt())
}

/// lm-evaluation-harness `bootstrap_stderr(f, xs, iters)`: the sample standard deviation
/// of `statistic` over `iters` resamples, drawn exactly as lm-eval draws them (chunks of
/// up to 1000 resamples, chunk `i` from Python's `random.Random(i)`), so the same values
/// give the same number lm-eval prints. lm-eval uses 100000 iterations by default.
pub fn lm_eval_bootstrap_stderr<F>(values: &[f64], iters: usize, mut statistic: F) -> Result<f64>
where
    F: FnMut(&[f64]) -> f64,
{
    check_values("lm_eval_bootstrap_stderr", values, 1)?;
    let chunk = iters.min(1000);
    if chunk == 0 || iters / chunk < 1 {
        return Err(invalid("iters", iters, "it must be at least 1"));
    }
    let chunks =
        u32::try_from(iters / chunk).map_err(|_| invalid("iters", iters, "too many iterations"))?;
    let mut sample = vec![0.0; values.len()];
    let mut replicates = Vec::with_capacity(chunk * chunks as usize);
    for seed in 0..chunks {
        let mut rnd = PyRandom::new(u64::from(seed));
        for _ in 0..chunk {
            for s in sample.iter_mut() {
                *s = values[rnd.choice_index(values.len())];
            }
            replicates.push(statistic(&sample));
        }
    }
    if replicates.len() < 2 {
        return Err(invalid("iters", iters, "it must be at least 2"));
    }
    Ok(sample_std(&replicates))
}

/// lm-evaluation-harness `pooled_sample_stderr`: combines subtask standard errors into a
/// group's, weighting by subtask size.
pub fn pooled_sample_stderr(stderrs: &[f64], sizes: &[usize]) -> Result<f64> {
    check_same_len("stderrs", stderrs.len(), "sizes", sizes.len())?;
    let total: usize = sizes.iter().sum();
    if stderrs.is_empty() || total <= sizes.len() {
        return Err(invalid(
            "sizes",
            total,
            "the subtasks need more items than there are subtasks",
        ));
    }
    let pooled_var = stderrs
        .iter()
        .zip(sizes)
        .map(|(se, &n)| (n as f64 - 1.0) * se * se * n as f64)
        .sum::<f64>()
        / (total - sizes.len()) as f64;
    Ok((pooled_var / total as f64).sqrt())
}

fn t_dist(df: f64) -> Result<StudentsT> {
    StudentsT::new(0.0, 1.0, df)
        .map_err(|_| invalid("df", df, "degrees of freedom must be positive"))
}

fn p_value(t: f64, df: f64, alternative: Alternative) -> Result<f64> {
    let dist = t_dist(df)?;
    Ok(match alternative {
        Alternative::TwoSided => (2.0 * dist.sf(t.abs())).min(1.0),
        Alternative::Greater => dist.sf(t),
        Alternative::Less => dist.cdf(t),
    })
}

/// Student-t interval for the mean: `mean +- t(1 - (1 - level) / 2, n - 1) * sd / sqrt(n)`.
pub fn t_interval(values: &[f64], level: f64) -> Result<TInterval> {
    check_values("t_interval", values, 2)?;
    if !(level > 0.0 && level < 1.0) {
        return Err(invalid(
            "level",
            level,
            "it must lie strictly between 0 and 1",
        ));
    }
    let n = values.len();
    let (m, sd) = (mean(values), sample_std(values));
    let t = t_dist((n - 1) as f64)?.inverse_cdf(0.5 + level / 2.0);
    let half = t * sd / (n as f64).sqrt();
    Ok(TInterval {
        mean: m,
        sd,
        n,
        lower: m - half,
        upper: m + half,
        level,
    })
}

fn variance(xs: &[f64]) -> f64 {
    let s = sample_std(xs);
    s * s
}

/// Welch's unequal-variance t-test of `mean(a)` against `mean(b)`
/// (scipy `ttest_ind(a, b, equal_var=False, alternative=...)`).
pub fn welch_t_test(a: &[f64], b: &[f64], alternative: Alternative) -> Result<TTest> {
    check_values("welch_t_test", a, 2)?;
    check_values("welch_t_test", b, 2)?;
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (va, vb) = (variance(a) / na, variance(b) / nb);
    let df = (va + vb).powi(2) / (va * va / (na - 1.0) + vb * vb / (nb - 1.0));
    let statistic = (mean(a) - mean(b)) / (va + vb).sqrt();
    Ok(TTest {
        statistic,
        df,
        p_value: p_value(statistic, df, alternative)?,
        alternative,
    })
}

/// Student's pooled-variance t-test (scipy `ttest_ind(a, b, equal_var=True, ...)`).
pub fn student_t_test(a: &[f64], b: &[f64], alternative: Alternative) -> Result<TTest> {
    check_values("student_t_test", a, 2)?;
    check_values("student_t_test", b, 2)?;
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let df = na + nb - 2.0;
    let pooled = ((na - 1.0) * variance(a) + (nb - 1.0) * variance(b)) / df;
    let statistic = (mean(a) - mean(b)) / (pooled * (1.0 / na + 1.0 / nb)).sqrt();
    Ok(TTest {
        statistic,
        df,
        p_value: p_value(statistic, df, alternative)?,
        alternative,
    })
}

/// Paired t-test on `a - b` (scipy `ttest_rel(a, b, alternative=...)`).
pub fn paired_t_test(a: &[f64], b: &[f64], alternative: Alternative) -> Result<TTest> {
    check_same_len("a", a.len(), "b", b.len())?;
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    check_values("paired_t_test", &d, 2)?;
    let df = d.len() as f64 - 1.0;
    let statistic = mean(&d) / (sample_std(&d) / (d.len() as f64).sqrt());
    Ok(TTest {
        statistic,
        df,
        p_value: p_value(statistic, df, alternative)?,
        alternative,
    })
}

/// Two-sided sign-flip test of a zero mean difference: under the null each difference is
/// as likely to have either sign. Returns the p-value and whether it was exact.
fn sign_flip_p_value(d: &[f64], config: &BootstrapConfig) -> (f64, bool) {
    let observed = d.iter().sum::<f64>().abs();
    // Sums reached by different sign orders can differ in the last bits.
    let at_least = |s: f64| s.abs() >= observed - 1e-12 * observed.max(1.0);
    if d.len() <= 20 {
        let total = 1u64 << d.len();
        let hits = (0..total)
            .filter(|mask| {
                at_least(
                    d.iter()
                        .enumerate()
                        .map(|(i, x)| if mask >> i & 1 == 1 { -x } else { *x })
                        .sum(),
                )
            })
            .count();
        (hits as f64 / total as f64, true)
    } else {
        let mut rng = rng(config.seed ^ 0x5167_6e5f_666c_6970);
        let hits = (0..config.n_resamples)
            .filter(|_| {
                at_least(
                    d.iter()
                        .map(|x| if rng.random::<bool>() { -x } else { *x })
                        .sum(),
                )
            })
            .count();
        ((1 + hits) as f64 / (1 + config.n_resamples) as f64, false)
    }
}

/// Compares two systems scored on the same items (per-item scores in the same order):
/// mean difference `a - b` with a seeded bootstrap percentile interval, a two-sided
/// paired sign-flip permutation p-value, and the paired t-test.
pub fn paired_comparison(
    a: &[f64],
    b: &[f64],
    config: &BootstrapConfig,
) -> Result<PairedComparison> {
    check_same_len("a", a.len(), "b", b.len())?;
    check_values("paired_comparison", a, 2)?;
    check_values("paired_comparison", b, 2)?;
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let difference = bootstrap_interval(&d, config, mean)?;
    let (sign_flip_p_value, sign_flip_exact) = sign_flip_p_value(&d, config);
    let t_test = if d.iter().all(|x| *x == d[0]) {
        // No spread: scipy returns NaN; the difference is either exactly zero or certain.
        let statistic = if d[0] == 0.0 {
            f64::NAN
        } else {
            d[0].signum() * f64::INFINITY
        };
        TTest {
            statistic,
            df: d.len() as f64 - 1.0,
            p_value: if d[0] == 0.0 { 1.0 } else { 0.0 },
            alternative: Alternative::TwoSided,
        }
    } else {
        paired_t_test(a, b, Alternative::TwoSided)?
    };
    Ok(PairedComparison {
        n: d.len(),
        mean_a: mean(a),
        mean_b: mean(b),
        difference,
        sign_flip_p_value,
        sign_flip_exact,
        t_test,
    })
}

/// Unbiased pass@k (Chen et al. 2021): the probability that at least one of `k` samples
/// drawn without replacement from `n` generations, `c` of them correct, is correct:
/// `1 - C(n - c, k) / C(n, k)`, computed as a stable product.
pub fn pass_at_k(n: usize, c: usize, k: usize) -> Result<f64> {
    if n == 0 || k == 0 || k > n {
        return Err(invalid(
            "k",
            k,
            "it must lie in 1..=n, with n >= 1 generations",
        ));
    }
    if c > n {
        return Err(invalid("c", c, "correct generations cannot exceed n"));
    }
    if n - c < k {
        return Ok(1.0);
    }
    let miss: f64 = (n - c + 1..=n).map(|i| 1.0 - k as f64 / i as f64).product();
    Ok(1.0 - miss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_random_matches_cpython() {
        // random.Random(0).random() and random.Random(7).random() in CPython.
        assert_eq!(PyRandom::new(0).random(), 0.8444218515250481);
        assert_eq!(PyRandom::new(7).random(), 0.32383276483316237);
    }

    #[test]
    fn sign_flip_is_exact_for_small_n_and_symmetric() {
        let c = BootstrapConfig::default();
        let (p, exact) = sign_flip_p_value(&[1.0, 1.0, 1.0], &c);
        // Only all-plus and all-minus reach |sum| = 3: p = 2/8.
        assert!(exact);
        assert_eq!(p, 0.25);
        let (p0, _) = sign_flip_p_value(&[0.0; 5], &c);
        assert_eq!(p0, 1.0);
    }

    #[test]
    fn pass_at_k_edge_cases() {
        assert_eq!(pass_at_k(5, 0, 1).unwrap(), 0.0);
        assert_eq!(pass_at_k(5, 5, 5).unwrap(), 1.0);
        assert!((pass_at_k(10, 3, 1).unwrap() - 0.3).abs() < 1e-15);
        assert!(pass_at_k(3, 1, 4).is_err());
    }
}
