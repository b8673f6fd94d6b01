//! A borrowed row-major matrix, the one input shape every probe takes.

use nalgebra::DMatrix;

use crate::error::{MetricError, Result};

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A feature element type: `f32` (how activations are usually stored) or `f64`.
/// All arithmetic happens in `f64`.
pub trait Element: Copy + sealed::Sealed {
    /// Widens to `f64`.
    fn to_f64(self) -> f64;
}

impl Element for f32 {
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Element for f64 {
    fn to_f64(self) -> f64 {
        self
    }
}

/// A row-major `n_rows x n_cols` view of a slice (one row per example).
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a, T> {
    data: &'a [T],
    n_rows: usize,
    n_cols: usize,
}

impl<'a, T: Element> Rows<'a, T> {
    /// Views `data` as `n_rows` rows of `n_cols` values; fails unless
    /// `data.len() == n_rows * n_cols`.
    pub fn new(data: &'a [T], n_rows: usize, n_cols: usize) -> Result<Self> {
        if n_rows.checked_mul(n_cols) != Some(data.len()) {
            return Err(MetricError::Shape {
                len: data.len(),
                rows: n_rows,
                cols: n_cols,
            });
        }
        Ok(Self {
            data,
            n_rows,
            n_cols,
        })
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// Number of columns (features).
    pub fn n_cols(&self) -> usize {
        self.n_cols
    }

    /// Row `i` as a slice.
    pub fn row(&self, i: usize) -> &'a [T] {
        &self.data[i * self.n_cols..(i + 1) * self.n_cols]
    }

    /// Copies the selected rows (all when `rows` is `None`) into a column-major `f64`
    /// matrix, rejecting non-finite values.
    pub(crate) fn widen(&self, what: &'static str, rows: Option<&[usize]>) -> Result<DMatrix<f64>> {
        let all: Vec<usize>;
        let idx = match rows {
            Some(idx) => idx,
            None => {
                all = (0..self.n_rows).collect();
                &all
            }
        };
        let mut m = DMatrix::zeros(idx.len(), self.n_cols);
        for (i, &r) in idx.iter().enumerate() {
            for (j, v) in self.row(r).iter().enumerate() {
                let v = v.to_f64();
                if !v.is_finite() {
                    return Err(MetricError::NonFinite {
                        what,
                        input: "features",
                        index: r * self.n_cols + j,
                        value: v,
                    });
                }
                m[(i, j)] = v;
            }
        }
        Ok(m)
    }
}
