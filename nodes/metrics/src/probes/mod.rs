//! Linear probes on activation features: logistic regression (scikit-learn's lbfgs fit),
//! difference of means and shrinkage LDA, plus the mask-aware token aggregations.

mod aggregate;
mod closed_form;
mod logistic;
mod matrix;

pub use aggregate::{Aggregation, TokenGrid, aggregate, masked_mean_features};
pub use closed_form::{LedoitWolf, Shrinkage, fit_diff_of_means, fit_lda, ledoit_wolf};
pub use logistic::{
    ClassWeight, LogisticConfig, LogisticCvFit, LogisticFit, balanced_class_weights, fit_logistic,
    fit_logistic_cv, stratified_kfold,
};
pub use matrix::{Element, Rows};

use serde::{Deserialize, Serialize};

use crate::error::{Result, check_same_len};

/// A fitted linear probe: `score = coef . x + intercept` (a logit for logistic regression,
/// an unnormalised log-odds for LDA, a centred projection for difference of means).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearProbe {
    /// One weight per feature.
    pub coef: Vec<f64>,
    /// Added after the dot product.
    pub intercept: f64,
}

impl LinearProbe {
    /// Decision value of every row.
    pub fn decision_function<T: Element>(&self, x: Rows<'_, T>) -> Result<Vec<f64>> {
        check_same_len("coef", self.coef.len(), "feature columns", x.n_cols())?;
        Ok((0..x.n_rows()).map(|i| self.score_row(x.row(i))).collect())
    }

    /// `sigmoid(decision_function)`: the positive-class probability for logistic probes.
    pub fn predict_proba<T: Element>(&self, x: Rows<'_, T>) -> Result<Vec<f64>> {
        Ok(self
            .decision_function(x)?
            .into_iter()
            .map(sigmoid)
            .collect())
    }

    /// Per-token decision values for activations laid out `[rows, tokens, dim]`.
    ///
    /// Padded positions are set to NaN and never computed, so an aggregation that read
    /// padding by mistake would poison its result instead of silently using it.
    pub fn token_scores<T: Element>(&self, acts: &[T], grid: TokenGrid<'_>) -> Result<Vec<f64>> {
        let dim = self.coef.len();
        check_same_len(
            "activations",
            acts.len(),
            "rows * tokens * dim",
            grid.len() * dim,
        )?;
        Ok((0..grid.len())
            .map(|k| {
                if grid.mask()[k] {
                    self.score_row(&acts[k * dim..(k + 1) * dim])
                } else {
                    f64::NAN
                }
            })
            .collect())
    }

    fn score_row<T: Element>(&self, row: &[T]) -> f64 {
        self.coef
            .iter()
            .zip(row)
            .map(|(w, x)| w * x.to_f64())
            .sum::<f64>()
            + self.intercept
    }
}

/// The logistic function, computed without overflow for large |z|.
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

pub(crate) fn check_xy<T: Element>(what: &'static str, x: &Rows<'_, T>, y: &[bool]) -> Result<()> {
    check_same_len("feature rows", x.n_rows(), "labels", y.len())?;
    if x.n_rows() == 0 || x.n_cols() == 0 {
        return Err(crate::MetricError::Empty { what });
    }
    let n_pos = y.iter().filter(|&&v| v).count();
    if n_pos == 0 || n_pos == y.len() {
        return Err(crate::MetricError::SingleClass {
            what,
            present: if n_pos == 0 { "negative" } else { "positive" },
            n: y.len(),
        });
    }
    Ok(())
}
