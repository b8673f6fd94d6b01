//! Mask-aware reductions of per-token values to one value per sequence.
//!
//! Padding never enters an aggregate: only positions whose mask is true are read, so
//! padded slots may hold anything (NaN, 1e30, stale activations) without effect. Real
//! tokens need not be contiguous (left or right padding both work); their order is kept.

use serde::{Deserialize, Serialize};

use super::Element;
use crate::error::{MetricError, Result, check_same_len, invalid};

/// How per-token scores become one score per sequence.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Aggregation {
    /// Mean over real tokens.
    Mean,
    /// Maximum over real tokens.
    Max,
    /// `sum_t softmax(s / temperature)_t * s_t` over real tokens: a smooth maximum that
    /// tends to `Max` as the temperature falls and to `Mean` as it grows.
    Softmax {
        /// Positive temperature.
        temperature: f64,
    },
    /// Mean over each window of `window` consecutive real tokens, then the maximum over
    /// windows; a sequence shorter than the window gets the mean of all its tokens.
    RollingMeanMax {
        /// Window length in real tokens (at least 1).
        window: usize,
    },
    /// The last real token's score.
    Last,
}

/// The `[rows, tokens]` attention mask that tells real tokens (true) from padding.
#[derive(Debug, Clone, Copy)]
pub struct TokenGrid<'a> {
    mask: &'a [bool],
    n_rows: usize,
    n_tokens: usize,
}

impl<'a> TokenGrid<'a> {
    /// Views a row-major `[n_rows, n_tokens]` mask.
    pub fn new(mask: &'a [bool], n_rows: usize, n_tokens: usize) -> Result<Self> {
        if n_rows.checked_mul(n_tokens) != Some(mask.len()) {
            return Err(MetricError::Shape {
                len: mask.len(),
                rows: n_rows,
                cols: n_tokens,
            });
        }
        Ok(Self {
            mask,
            n_rows,
            n_tokens,
        })
    }

    /// Number of sequences.
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// Padded length of every sequence.
    pub fn n_tokens(&self) -> usize {
        self.n_tokens
    }

    /// `n_rows * n_tokens`.
    pub fn len(&self) -> usize {
        self.mask.len()
    }

    /// True when there are no token slots at all.
    pub fn is_empty(&self) -> bool {
        self.mask.is_empty()
    }

    /// The flat mask.
    pub fn mask(&self) -> &'a [bool] {
        self.mask
    }

    /// Flat indices of row `row`'s real tokens, in order.
    fn real(&self, row: usize) -> impl Iterator<Item = usize> + '_ {
        let start = row * self.n_tokens;
        (start..start + self.n_tokens).filter(|&k| self.mask[k])
    }
}

/// Reduces per-token scores (`[rows, tokens]`, row-major) to one score per row.
pub fn aggregate(
    token_scores: &[f64],
    grid: TokenGrid<'_>,
    aggregation: Aggregation,
) -> Result<Vec<f64>> {
    check_same_len("token_scores", token_scores.len(), "mask", grid.len())?;
    match aggregation {
        Aggregation::Softmax { temperature } if !(temperature > 0.0 && temperature.is_finite()) => {
            return Err(invalid(
                "temperature",
                temperature,
                "it must be positive and finite",
            ));
        }
        Aggregation::RollingMeanMax { window: 0 } => {
            return Err(invalid("window", 0, "it must be at least 1"));
        }
        _ => {}
    }
    let mut out = Vec::with_capacity(grid.n_rows());
    let mut real = Vec::with_capacity(grid.n_tokens());
    for row in 0..grid.n_rows() {
        real.clear();
        for k in grid.real(row) {
            let v = token_scores[k];
            if !v.is_finite() {
                return Err(MetricError::NonFinite {
                    what: "aggregate",
                    input: "token_scores",
                    index: k,
                    value: v,
                });
            }
            real.push(v);
        }
        if real.is_empty() {
            return Err(MetricError::EmptySequence { row });
        }
        out.push(reduce(&real, aggregation));
    }
    Ok(out)
}

fn reduce(real: &[f64], aggregation: Aggregation) -> f64 {
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    let max = |xs: &[f64]| xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    match aggregation {
        Aggregation::Mean => mean(real),
        Aggregation::Max => max(real),
        Aggregation::Last => real[real.len() - 1],
        Aggregation::Softmax { temperature } => {
            let top = max(real);
            let weights: Vec<f64> = real
                .iter()
                .map(|s| ((s - top) / temperature).exp())
                .collect();
            let total: f64 = weights.iter().sum();
            weights.iter().zip(real).map(|(w, s)| w * s).sum::<f64>() / total
        }
        Aggregation::RollingMeanMax { window } => {
            if real.len() <= window {
                return mean(real);
            }
            real.windows(window)
                .map(mean)
                .fold(f64::NEG_INFINITY, f64::max)
        }
    }
}

/// Mean activation over each row's real tokens: `[rows, tokens, dim]` in, `[rows, dim]`
/// row-major out (the input of the mean-then-linear probe family).
pub fn masked_mean_features<T: Element>(
    acts: &[T],
    grid: TokenGrid<'_>,
    dim: usize,
) -> Result<Vec<f64>> {
    check_same_len(
        "activations",
        acts.len(),
        "rows * tokens * dim",
        grid.len() * dim,
    )?;
    let mut out = vec![0.0; grid.n_rows() * dim];
    for row in 0..grid.n_rows() {
        let acc = &mut out[row * dim..(row + 1) * dim];
        let mut count = 0usize;
        for k in grid.real(row) {
            for (j, (a, x)) in acc
                .iter_mut()
                .zip(&acts[k * dim..(k + 1) * dim])
                .enumerate()
            {
                let x = x.to_f64();
                if !x.is_finite() {
                    return Err(MetricError::NonFinite {
                        what: "masked_mean_features",
                        input: "activations",
                        index: k * dim + j,
                        value: x,
                    });
                }
                *a += x;
            }
            count += 1;
        }
        if count == 0 {
            return Err(MetricError::EmptySequence { row });
        }
        acc.iter_mut().for_each(|a| *a /= count as f64);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Aggregation; 5] = [
        Aggregation::Mean,
        Aggregation::Max,
        Aggregation::Softmax { temperature: 0.5 },
        Aggregation::RollingMeanMax { window: 2 },
        Aggregation::Last,
    ];

    #[test]
    fn padding_never_enters_any_aggregate() {
        // Row 0 right-padded, row 1 left-padded, row 2 padded in the middle.
        let mask = [
            true, true, true, false, false, //
            false, false, true, true, true, //
            true, false, true, false, true,
        ];
        let grid = TokenGrid::new(&mask, 3, 5).unwrap();
        let real = [[1.0, -2.0, 0.5], [1.0, -2.0, 0.5], [1.0, -2.0, 0.5]];
        for pad in [0.0, 1e30, -1e30, f64::NAN, f64::INFINITY] {
            let mut scores = [pad; 15];
            for (row, vals) in real.iter().enumerate() {
                let slots: Vec<usize> = (0..5).filter(|t| mask[row * 5 + t]).collect();
                for (slot, v) in slots.iter().zip(vals) {
                    scores[row * 5 + slot] = *v;
                }
            }
            for agg in ALL {
                let out = aggregate(&scores, grid, agg).unwrap();
                assert!(
                    out.iter().all(|v| v.is_finite()),
                    "{agg:?} pad {pad}: {out:?}"
                );
                assert_eq!(out[0], out[1], "{agg:?} pad {pad}");
                assert_eq!(out[0], out[2], "{agg:?} pad {pad}");
            }
        }
    }

    #[test]
    fn each_aggregation_has_its_textbook_value() {
        let s = [1.0, -2.0, 0.5, 3.0];
        let grid = TokenGrid::new(&[true; 4], 1, 4).unwrap();
        let one = |a| aggregate(&s, grid, a).unwrap()[0];
        assert_eq!(one(Aggregation::Mean), 0.625);
        assert_eq!(one(Aggregation::Max), 3.0);
        assert_eq!(one(Aggregation::Last), 3.0);
        assert_eq!(one(Aggregation::RollingMeanMax { window: 2 }), 1.75);
        assert_eq!(one(Aggregation::RollingMeanMax { window: 9 }), 0.625);
        assert!((one(Aggregation::Softmax { temperature: 1e-3 }) - 3.0).abs() < 1e-9);
        assert!((one(Aggregation::Softmax { temperature: 1e6 }) - 0.625).abs() < 1e-5);
    }

    #[test]
    fn empty_rows_and_nan_in_real_tokens_are_errors() {
        let grid = TokenGrid::new(&[true, false, false, false], 2, 2).unwrap();
        assert!(matches!(
            aggregate(&[1.0, 0.0, 0.0, 0.0], grid, Aggregation::Mean),
            Err(MetricError::EmptySequence { row: 1 })
        ));
        let grid = TokenGrid::new(&[true, true], 1, 2).unwrap();
        assert!(matches!(
            aggregate(&[1.0, f64::NAN], grid, Aggregation::Max),
            Err(MetricError::NonFinite { index: 1, .. })
        ));
    }

    #[test]
    fn masked_mean_ignores_adversarial_padding() {
        let dim = 2;
        let mask = [true, false, true, false, true, true];
        let grid = TokenGrid::new(&mask, 2, 3).unwrap();
        let acts: Vec<f32> = vec![
            1.0,
            2.0,
            f32::NAN,
            1e30,
            3.0,
            4.0,
            f32::NAN,
            f32::NAN,
            5.0,
            6.0,
            7.0,
            8.0,
        ];
        let m = masked_mean_features(&acts, grid, dim).unwrap();
        assert_eq!(m, vec![2.0, 3.0, 6.0, 7.0]);
    }
}
