//! L2-regularised logistic regression, fitted as scikit-learn's
//! `LogisticRegression(solver="lbfgs")` fits it, plus `C` chosen by stratified k-fold
//! cross-validation on AUROC.
//!
//! scikit-learn minimises `1/S * sum_i s_i * logloss_i + 1/(2 C S) * |w|^2` with
//! `S = sum_i s_i` (sample weight times class weight) and the intercept left out of the
//! penalty. Its minimiser is that of `C * sum_i s_i * logloss_i + |w|^2 / 2`, the textbook
//! definition of `C`. We minimise the same scaled objective with argmin's L-BFGS (history
//! 10 like scipy's default, More-Thuente line search) from zeros, so `tol` is read on the
//! same scale: we stop when the L2 norm of the gradient is below `tol`, which implies
//! scipy's stopping rule (largest gradient component below `tol`).

use argmin::core::{CostFunction, Executor, Gradient, State, TerminationReason, TerminationStatus};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};

use super::{Element, LinearProbe, Rows, check_xy, sigmoid};
use crate::classification::roc_auc;
use crate::error::{MetricError, Result, check_finite, check_same_len, invalid};

/// Per-class weights, as scikit-learn's `class_weight`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassWeight {
    /// Every row weighs 1 (times its sample weight).
    #[default]
    None,
    /// `n / (2 * n_class)` for each class, so both classes weigh the same in total.
    Balanced,
}

/// Settings of a logistic-regression fit; the defaults are scikit-learn's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogisticConfig {
    /// Inverse L2 strength, as scikit-learn's `C` (default 1.0).
    pub c: f64,
    /// Gradient tolerance on the scaled objective (default 1e-4).
    pub tol: f64,
    /// Maximum L-BFGS iterations (default 100).
    pub max_iter: u64,
    /// Class weighting (default none).
    pub class_weight: ClassWeight,
}

impl Default for LogisticConfig {
    fn default() -> Self {
        Self {
            c: 1.0,
            tol: 1e-4,
            max_iter: 100,
            class_weight: ClassWeight::None,
        }
    }
}

/// A fitted logistic-regression probe and how the fit went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogisticFit {
    /// The probe; its decision value is the logit.
    pub probe: LinearProbe,
    /// The `C` it was fitted with.
    pub c: f64,
    /// L-BFGS iterations used.
    pub n_iter: u64,
    /// False when `max_iter` was reached first (scikit-learn's `ConvergenceWarning`).
    pub converged: bool,
    /// Final value of the scaled objective.
    pub objective: f64,
}

/// Result of choosing `C` by cross-validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogisticCvFit {
    /// Candidate values, in the order given.
    pub cs: Vec<f64>,
    /// Mean held-out AUROC over folds for each candidate.
    pub mean_auroc: Vec<f64>,
    /// The candidate with the highest summed fold AUROC (the first on a tie).
    pub best_c: f64,
    /// Refit on all rows with `best_c`.
    pub fit: LogisticFit,
}

struct Objective<'a> {
    x: &'a DMatrix<f64>,
    y: &'a [f64],
    sw: &'a [f64],
    inv_s: f64,
    l2: f64,
}

impl Objective<'_> {
    fn logits(&self, p: &[f64]) -> DVector<f64> {
        let d = self.x.ncols();
        let w = DVector::from_column_slice(&p[..d]);
        let mut z = self.x * w;
        z.add_scalar_mut(p[d]);
        z
    }
}

fn softplus(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

impl CostFunction for Objective<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, p: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        let d = self.x.ncols();
        let z = self.logits(p);
        let loss: f64 = z
            .iter()
            .zip(self.y)
            .zip(self.sw)
            .map(|((z, y), s)| s * (softplus(*z) - y * z))
            .sum();
        let w2: f64 = p[..d].iter().map(|w| w * w).sum();
        Ok(loss * self.inv_s + 0.5 * self.l2 * w2)
    }
}

impl Gradient for Objective<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    fn gradient(&self, p: &Vec<f64>) -> Result<Vec<f64>, argmin::core::Error> {
        let d = self.x.ncols();
        let z = self.logits(p);
        let r = DVector::from_iterator(
            z.len(),
            z.iter()
                .zip(self.y)
                .zip(self.sw)
                .map(|((z, y), s)| s * (sigmoid(*z) - y) * self.inv_s),
        );
        let gw = self.x.tr_mul(&r);
        let mut g: Vec<f64> = gw
            .iter()
            .zip(&p[..d])
            .map(|(g, w)| g + self.l2 * w)
            .collect();
        g.push(r.sum());
        Ok(g)
    }
}

fn class_weights(y: &[bool], rows: &[usize], mode: ClassWeight) -> (f64, f64) {
    match mode {
        ClassWeight::None => (1.0, 1.0),
        ClassWeight::Balanced => {
            let n_pos = rows.iter().filter(|&&i| y[i]).count();
            balanced_class_weights(rows.len() - n_pos, n_pos)
        }
    }
}

/// scikit-learn's `class_weight="balanced"` for two classes: `n / (2 n_class)` each, as
/// `(negative, positive)`. Every node that weights its loss by class uses this one.
pub fn balanced_class_weights(negatives: usize, positives: usize) -> (f64, f64) {
    let n = (negatives + positives) as f64;
    (n / (2.0 * negatives as f64), n / (2.0 * positives as f64))
}

fn validate(config: &LogisticConfig) -> Result<()> {
    if !(config.c > 0.0 && config.c.is_finite()) {
        return Err(invalid(
            "C",
            config.c,
            "it must be a positive finite number",
        ));
    }
    if config.tol.is_nan() || config.tol < 0.0 {
        return Err(invalid("tol", config.tol, "it must be non-negative"));
    }
    if config.max_iter == 0 {
        return Err(invalid(
            "max_iter",
            config.max_iter,
            "it must be at least 1",
        ));
    }
    Ok(())
}

/// Fits on the given rows of an already-widened matrix.
fn fit_rows(
    x_all: &DMatrix<f64>,
    y: &[bool],
    sample_weight: Option<&[f64]>,
    rows: &[usize],
    config: &LogisticConfig,
) -> Result<LogisticFit> {
    validate(config)?;
    let x = if rows.len() == x_all.nrows() {
        x_all.clone()
    } else {
        x_all.select_rows(rows)
    };
    let (w_neg, w_pos) = class_weights(y, rows, config.class_weight);
    let targets: Vec<f64> = rows.iter().map(|&i| f64::from(u8::from(y[i]))).collect();
    let sw: Vec<f64> = rows
        .iter()
        .map(|&i| sample_weight.map_or(1.0, |w| w[i]) * if y[i] { w_pos } else { w_neg })
        .collect();
    let s_total: f64 = sw.iter().sum();
    if s_total <= 0.0 {
        return Err(invalid(
            "sample_weight",
            s_total,
            "the weights must not sum to zero",
        ));
    }
    let problem = Objective {
        x: &x,
        y: &targets,
        sw: &sw,
        inv_s: 1.0 / s_total,
        l2: 1.0 / (config.c * s_total),
    };
    let d = x.ncols();
    let linesearch = MoreThuenteLineSearch::new();
    let solver = LBFGS::new(linesearch, 10)
        .with_tolerance_grad(config.tol)
        .and_then(|s| s.with_tolerance_cost(64.0 * f64::EPSILON))
        .map_err(|e| MetricError::Optimizer {
            what: "logistic regression",
            message: e.to_string(),
        })?;
    let result = Executor::new(problem, solver)
        .configure(|state| state.param(vec![0.0; d + 1]).max_iters(config.max_iter))
        .run()
        .map_err(|e| MetricError::Optimizer {
            what: "logistic regression",
            message: e.to_string(),
        })?;
    let state = result.state();
    let param = state
        .get_best_param()
        .ok_or_else(|| MetricError::Optimizer {
            what: "logistic regression",
            message: "no parameters".into(),
        })?;
    let converged = !matches!(
        state.get_termination_status(),
        TerminationStatus::Terminated(TerminationReason::MaxItersReached)
    );
    Ok(LogisticFit {
        probe: LinearProbe {
            coef: param[..d].to_vec(),
            intercept: param[d],
        },
        c: config.c,
        n_iter: state.get_iter(),
        converged,
        objective: state.get_best_cost(),
    })
}

fn check_sample_weight(n: usize, sample_weight: Option<&[f64]>) -> Result<()> {
    if let Some(w) = sample_weight {
        check_same_len("feature rows", n, "sample_weight", w.len())?;
        check_finite("logistic regression", "sample_weight", w)?;
        if let Some(i) = w.iter().position(|&v| v < 0.0) {
            return Err(invalid(
                "sample_weight",
                w[i],
                "sample weights must be non-negative",
            ));
        }
    }
    Ok(())
}

/// Fits `LogisticRegression(C, class_weight, tol, max_iter, solver="lbfgs")` on rows `x`
/// with labels `y` and optional per-row sample weights.
pub fn fit_logistic<T: Element>(
    x: Rows<'_, T>,
    y: &[bool],
    sample_weight: Option<&[f64]>,
    config: &LogisticConfig,
) -> Result<LogisticFit> {
    check_xy("logistic regression", &x, y)?;
    check_sample_weight(x.n_rows(), sample_weight)?;
    let m = x.widen("logistic regression", None)?;
    let rows: Vec<usize> = (0..x.n_rows()).collect();
    fit_rows(&m, y, sample_weight, &rows, config)
}

/// Test-fold index of every row under scikit-learn's `StratifiedKFold(n_splits)` (no
/// shuffle): each class's rows, in order, are dealt to folds in contiguous blocks whose
/// sizes come from a round robin over the sorted labels.
pub fn stratified_kfold(y: &[bool], n_splits: usize) -> Result<Vec<usize>> {
    if n_splits < 2 {
        return Err(invalid("n_splits", n_splits, "it must be at least 2"));
    }
    let n_pos = y.iter().filter(|&&v| v).count();
    let n_neg = y.len() - n_pos;
    if n_pos.min(n_neg) < n_splits {
        return Err(invalid(
            "n_splits",
            n_splits,
            "every fold needs both classes: use at most as many folds as the rarer class has rows",
        ));
    }
    // Classes are numbered in order of first appearance, as scikit-learn does.
    let first = y[0];
    let counts = [
        y.iter().filter(|&&v| v == first).count(),
        y.iter().filter(|&&v| v != first).count(),
    ];
    let mut allocation = vec![[0usize; 2]; n_splits];
    for (pos, fold) in (0..y.len()).map(|p| (p, p % n_splits)) {
        let class = usize::from(pos >= counts[0]);
        allocation[fold][class] += 1;
    }
    let mut folds = vec![0; y.len()];
    for class in 0..2 {
        let mut blocks = allocation
            .iter()
            .enumerate()
            .flat_map(|(f, counts)| std::iter::repeat_n(f, counts[class]));
        for (i, v) in y.iter().enumerate() {
            if usize::from(*v != first) == class {
                folds[i] = blocks.next().unwrap_or(0);
            }
        }
    }
    Ok(folds)
}

/// Chooses `C` from `cs` by `n_splits`-fold stratified cross-validation on held-out AUROC
/// (folds as [`stratified_kfold`], as `LogisticRegressionCV(cv=StratifiedKFold(k),
/// scoring="roc_auc")`), then refits on every row. `config.c` is ignored; class weights
/// are computed on each training fold.
pub fn fit_logistic_cv<T: Element>(
    x: Rows<'_, T>,
    y: &[bool],
    cs: &[f64],
    n_splits: usize,
    config: &LogisticConfig,
) -> Result<LogisticCvFit> {
    check_xy("logistic regression CV", &x, y)?;
    if cs.is_empty() {
        return Err(invalid("cs", "[]", "give at least one candidate C"));
    }
    let m = x.widen("logistic regression CV", None)?;
    let folds = stratified_kfold(y, n_splits)?;
    let mut sums = vec![0.0; cs.len()];
    for fold in 0..n_splits {
        let train: Vec<usize> = (0..y.len()).filter(|&i| folds[i] != fold).collect();
        let test: Vec<usize> = (0..y.len()).filter(|&i| folds[i] == fold).collect();
        let x_test = m.select_rows(&test);
        let y_test: Vec<bool> = test.iter().map(|&i| y[i]).collect();
        for (k, &c) in cs.iter().enumerate() {
            let fit = fit_rows(&m, y, None, &train, &LogisticConfig { c, ..*config })?;
            let w = DVector::from_column_slice(&fit.probe.coef);
            let scores: Vec<f64> = (&x_test * w)
                .iter()
                .map(|z| z + fit.probe.intercept)
                .collect();
            sums[k] += roc_auc(&scores, &y_test)?;
        }
    }
    let best = (0..cs.len()).fold(0, |b, k| if sums[k] > sums[b] { k } else { b });
    let rows: Vec<usize> = (0..y.len()).collect();
    let fit = fit_rows(
        &m,
        y,
        None,
        &rows,
        &LogisticConfig {
            c: cs[best],
            ..*config
        },
    )?;
    Ok(LogisticCvFit {
        cs: cs.to_vec(),
        mean_auroc: sums.iter().map(|s| s / n_splits as f64).collect(),
        best_c: cs[best],
        fit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separable_data_with_weak_penalty_stops_cleanly() {
        // Perfectly separable: the unpenalised optimum is at infinity, so only C bounds it.
        let x: Vec<f64> = (0..40).map(|i| f64::from(i) - 19.5).collect();
        let y: Vec<bool> = (0..40).map(|i| i >= 20).collect();
        for c in [1.0, 1e4] {
            let config = LogisticConfig {
                c,
                max_iter: 50,
                ..LogisticConfig::default()
            };
            let fit = fit_logistic(Rows::new(&x, 40, 1).unwrap(), &y, None, &config).unwrap();
            assert!(
                fit.probe.coef[0] > 0.0 && fit.probe.coef[0].is_finite(),
                "{fit:?}"
            );
        }
    }

    #[test]
    fn constant_and_duplicate_columns_do_not_break_the_fit() {
        let n = 60;
        let x: Vec<f32> = (0..n)
            .flat_map(|i| {
                let v = ((i * 37) % 17) as f32 / 17.0 + if i % 2 == 0 { 0.3 } else { 0.0 };
                [v, v, 5.0]
            })
            .collect();
        let y: Vec<bool> = (0..n).map(|i| i % 2 == 0).collect();
        let fit = fit_logistic(
            Rows::new(&x, n, 3).unwrap(),
            &y,
            None,
            &LogisticConfig::default(),
        )
        .unwrap();
        assert!(fit.converged);
        // The duplicated columns share the weight equally (the L2 optimum is symmetric).
        assert!(
            (fit.probe.coef[0] - fit.probe.coef[1]).abs() < 1e-6,
            "{fit:?}"
        );
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let x = [0.0f64, 1.0, f64::NAN, 3.0];
        let y = [true, false, true, false];
        let err = fit_logistic(
            Rows::new(&x, 4, 1).unwrap(),
            &y,
            None,
            &LogisticConfig::default(),
        )
        .unwrap_err();
        assert!(
            matches!(err, MetricError::NonFinite { index: 2, .. }),
            "{err}"
        );
        let x = [0.0f64, 1.0, 2.0, 3.0];
        let bad_c = LogisticConfig {
            c: 0.0,
            ..LogisticConfig::default()
        };
        assert!(fit_logistic(Rows::new(&x, 4, 1).unwrap(), &y, None, &bad_c).is_err());
        assert!(matches!(
            stratified_kfold(&y, 3),
            Err(MetricError::InvalidParameter { .. })
        ));
        assert!(matches!(
            Rows::new(&x, 3, 1),
            Err(MetricError::Shape { .. })
        ));
    }

    #[test]
    fn zero_tolerance_runs_to_the_floating_point_floor() {
        let n = 200;
        let x: Vec<f64> = (0..n * 3)
            .map(|k| ((k * 7919) % 1009) as f64 / 1009.0 - 0.5)
            .collect();
        let y: Vec<bool> = (0..n)
            .map(|i| x[i * 3] + 0.3 * x[i * 3 + 1] > 0.05 * ((i % 5) as f64 - 2.0))
            .collect();
        let config = LogisticConfig {
            tol: 0.0,
            max_iter: 10_000,
            ..LogisticConfig::default()
        };
        let fit = fit_logistic(Rows::new(&x, n, 3).unwrap(), &y, None, &config);
        assert!(fit.unwrap().converged);
    }
}
