//! Closed-form probes: difference of means, and LDA with shrinkage as scikit-learn's
//! `LinearDiscriminantAnalysis(solver="lsqr", shrinkage=...)` computes it.

use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};

use super::{Element, LinearProbe, Rows, check_xy};
use crate::error::{MetricError, Result, invalid};

/// Covariance shrinkage for [`fit_lda`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shrinkage {
    /// No shrinkage: the empirical covariance (`shrinkage=None`); singular when there are
    /// fewer rows than features.
    Empirical,
    /// Ledoit-Wolf on standardised features, then rescaled (`shrinkage="auto"`).
    LedoitWolf,
    /// A fixed value in [0, 1]: `(1 - a) * cov + a * trace(cov) / d * I`.
    Fixed(f64),
}

/// `sklearn.covariance.ledoit_wolf` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedoitWolf {
    /// The shrunk covariance, `d x d`, row-major.
    pub covariance: Vec<f64>,
    /// The shrinkage coefficient in [0, 1].
    pub shrinkage: f64,
}

/// Difference-of-means probe: direction `mean_pos - mean_neg`, intercept placing the
/// decision boundary at the midpoint of the two projected class means.
pub fn fit_diff_of_means<T: Element>(x: Rows<'_, T>, y: &[bool]) -> Result<LinearProbe> {
    check_xy("difference of means", &x, y)?;
    let m = x.widen("difference of means", None)?;
    let (mean_neg, mean_pos) = (class_mean(&m, y, false), class_mean(&m, y, true));
    let coef = &mean_pos - &mean_neg;
    let intercept = -0.5 * (coef.dot(&mean_pos) + coef.dot(&mean_neg));
    Ok(LinearProbe {
        coef: coef.as_slice().to_vec(),
        intercept,
    })
}

fn class_rows(y: &[bool], class: bool) -> Vec<usize> {
    (0..y.len()).filter(|&i| y[i] == class).collect()
}

fn class_mean(m: &DMatrix<f64>, y: &[bool], class: bool) -> DVector<f64> {
    let rows = class_rows(y, class);
    let mut sum = DVector::zeros(m.ncols());
    for &i in &rows {
        sum += m.row(i).transpose();
    }
    sum / rows.len() as f64
}

/// Centres the columns and returns the centred matrix and the column means.
fn centre(m: &DMatrix<f64>) -> DMatrix<f64> {
    let mut c = m.clone();
    for mut col in c.column_iter_mut() {
        let mean = col.mean();
        col.add_scalar_mut(-mean);
    }
    c
}

/// Biased (divide by n) covariance of already-centred data.
fn empirical_covariance(centred: &DMatrix<f64>) -> DMatrix<f64> {
    centred.tr_mul(centred) / centred.nrows() as f64
}

fn shrunk(cov: &DMatrix<f64>, shrinkage: f64) -> DMatrix<f64> {
    let d = cov.nrows();
    let mu = cov.trace() / d as f64;
    let mut s = cov * (1.0 - shrinkage);
    for i in 0..d {
        s[(i, i)] += shrinkage * mu;
    }
    s
}

/// `sklearn.covariance.ledoit_wolf_shrinkage(X, assume_centered=True)` on centred data.
fn ledoit_wolf_shrinkage_centred(x: &DMatrix<f64>) -> f64 {
    let (n, d) = (x.nrows() as f64, x.ncols());
    if d == 1 {
        return 0.0;
    }
    let d_f = d as f64;
    let gram = x.tr_mul(x);
    let emp_cov_trace: Vec<f64> = x.column_iter().map(|c| c.norm_squared() / n).collect();
    let trace_sum: f64 = emp_cov_trace.iter().sum();
    let mu = trace_sum / d_f;
    // sum of all entries of (X^2)^T X^2 is sum_i (sum_j x_ij^2)^2.
    let beta_: f64 = x.row_iter().map(|r| r.norm_squared().powi(2)).sum();
    let delta_: f64 = gram.iter().map(|g| g * g).sum::<f64>() / (n * n);
    let beta = 1.0 / (d_f * n) * (beta_ / n - delta_);
    let delta = (delta_ - 2.0 * mu * trace_sum + d_f * mu * mu) / d_f;
    let beta = beta.min(delta);
    if beta == 0.0 { 0.0 } else { beta / delta }
}

fn ledoit_wolf_dm(m: &DMatrix<f64>) -> (DMatrix<f64>, f64) {
    let c = centre(m);
    let shrinkage = ledoit_wolf_shrinkage_centred(&c);
    (shrunk(&empirical_covariance(&c), shrinkage), shrinkage)
}

/// `sklearn.covariance.ledoit_wolf(X)`: the Ledoit-Wolf shrunk covariance of the rows
/// (data centred first) and its shrinkage coefficient.
pub fn ledoit_wolf<T: Element>(x: Rows<'_, T>) -> Result<LedoitWolf> {
    if x.n_rows() < 2 || x.n_cols() == 0 {
        return Err(MetricError::Empty {
            what: "ledoit_wolf",
        });
    }
    let m = x.widen("ledoit_wolf", None)?;
    let (cov, shrinkage) = ledoit_wolf_dm(&m);
    Ok(LedoitWolf {
        covariance: cov.transpose().as_slice().to_vec(),
        shrinkage,
    })
}

/// One class's covariance under the chosen shrinkage (scikit-learn's `_cov`).
fn class_covariance(xg: &DMatrix<f64>, shrinkage: Shrinkage) -> DMatrix<f64> {
    match shrinkage {
        Shrinkage::Empirical => empirical_covariance(&centre(xg)),
        Shrinkage::Fixed(a) => shrunk(&empirical_covariance(&centre(xg)), a),
        Shrinkage::LedoitWolf => {
            // StandardScaler: population std, with 1 for (numerically) constant features.
            let n = xg.nrows() as f64;
            let c = centre(xg);
            let scale: Vec<f64> = c
                .column_iter()
                .zip(xg.column_iter())
                .map(|(centred, raw)| {
                    let var = centred.norm_squared() / n;
                    let mean = raw.mean();
                    let upper = n * f64::EPSILON * var + (n * mean * f64::EPSILON).powi(2);
                    if var <= upper { 1.0 } else { var.sqrt() }
                })
                .collect();
            let mut z = c;
            for (j, mut col) in z.column_iter_mut().enumerate() {
                col /= scale[j];
            }
            let (s, _) = ledoit_wolf_dm(&z);
            DMatrix::from_fn(s.nrows(), s.ncols(), |i, j| scale[i] * s[(i, j)] * scale[j])
        }
    }
}

/// Solves `a x = b` for symmetric `a`: Cholesky when positive definite, otherwise the
/// minimum-norm least-squares solution (scipy's `lstsq`) through the SVD.
fn solve_symmetric(a: &DMatrix<f64>, b: &DMatrix<f64>) -> Result<DMatrix<f64>> {
    if let Some(chol) = a.clone().cholesky() {
        return Ok(chol.solve(b));
    }
    let svd = a.clone().svd(true, true);
    let cutoff = f64::EPSILON * a.nrows() as f64 * svd.singular_values.max();
    svd.solve(b, cutoff)
        .map_err(|_| MetricError::Singular { what: "LDA" })
}

/// Binary LDA as `LinearDiscriminantAnalysis(solver="lsqr", shrinkage=...)`: the decision
/// value equals its `decision_function` (log-odds of the positive class under shared
/// covariance and class-frequency priors).
pub fn fit_lda<T: Element>(
    x: Rows<'_, T>,
    y: &[bool],
    shrinkage: Shrinkage,
) -> Result<LinearProbe> {
    check_xy("LDA", &x, y)?;
    if let Shrinkage::Fixed(a) = shrinkage
        && !(0.0..=1.0).contains(&a)
    {
        return Err(invalid(
            "shrinkage",
            a,
            "a fixed shrinkage must lie in [0, 1]",
        ));
    }
    let m = x.widen("LDA", None)?;
    let n = y.len() as f64;
    let d = m.ncols();
    let mut cov = DMatrix::zeros(d, d);
    let mut means = DMatrix::zeros(d, 2);
    let mut log_priors = [0.0; 2];
    for (k, class) in [false, true].into_iter().enumerate() {
        let rows = class_rows(y, class);
        let xg = m.select_rows(&rows);
        let prior = rows.len() as f64 / n;
        cov += class_covariance(&xg, shrinkage) * prior;
        means.set_column(k, &class_mean(&m, y, class));
        log_priors[k] = prior.ln();
    }
    let coefs = solve_symmetric(&cov, &means)?;
    let intercept = |k: usize| -0.5 * means.column(k).dot(&coefs.column(k)) + log_priors[k];
    let coef = coefs.column(1) - coefs.column(0);
    Ok(LinearProbe {
        coef: coef.as_slice().to_vec(),
        intercept: intercept(1) - intercept(0),
    })
}
