//! The one error type of this crate.

use std::path::PathBuf;

use dag_diagnostic::Hint;

/// Why a metric, probe fit or statistic could not be computed.
///
/// Every variant names what was wrong with the input and, through [`Hint`], how to fix it;
/// none of them is a transient failure, so retrying with the same input gives the same error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricError {
    /// Two inputs that must pair up element by element have different lengths.
    #[error("Failed to pair `{left}` ({left_len} values) with `{right}` ({right_len} values)")]
    LengthMismatch {
        /// Name of the first input.
        left: &'static str,
        /// Its length.
        left_len: usize,
        /// Name of the second input.
        right: &'static str,
        /// Its length.
        right_len: usize,
    },
    /// The input has no rows (or no rows left after masking).
    #[error("Failed to compute `{what}`: the input is empty")]
    Empty {
        /// What was being computed.
        what: &'static str,
    },
    /// Only one class occurs in the labels, so the metric is undefined (scikit-learn raises
    /// `ValueError: Only one class is present in y_true` here).
    #[error("Failed to compute `{what}`: only {present} labels are present ({n} rows)")]
    SingleClass {
        /// What was being computed.
        what: &'static str,
        /// Which class is present: "positive" or "negative".
        present: &'static str,
        /// Number of rows.
        n: usize,
    },
    /// A value is NaN or infinite where a finite number is required.
    #[error("Failed to compute `{what}`: `{input}[{index}]` is {value}")]
    NonFinite {
        /// What was being computed.
        what: &'static str,
        /// Which input holds the value.
        input: &'static str,
        /// Position of the value.
        index: usize,
        /// The value itself.
        value: f64,
    },
    /// A probability lies outside [0, 1].
    #[error("Failed to compute `{what}`: `{input}[{index}]` = {value} is not a probability")]
    NotAProbability {
        /// What was being computed.
        what: &'static str,
        /// Which input holds the value.
        input: &'static str,
        /// Position of the value.
        index: usize,
        /// The value itself.
        value: f64,
    },
    /// A parameter is out of its valid range.
    #[error("Failed to use `{name}` = {value}: {reason}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// The value given, rendered as text.
        value: String,
        /// What the valid range is.
        reason: &'static str,
    },
    /// A matrix view's buffer does not hold `rows * cols` values.
    #[error("Failed to view {len} values as a {rows} x {cols} matrix")]
    Shape {
        /// Buffer length.
        len: usize,
        /// Requested rows.
        rows: usize,
        /// Requested columns.
        cols: usize,
    },
    /// A sequence has no real (unmasked) token, so no aggregate exists for it.
    #[error("Failed to aggregate row {row}: its mask has no real token")]
    EmptySequence {
        /// Row index.
        row: usize,
    },
    /// The optimiser behind a probe fit failed.
    #[error("Failed to fit `{what}`: {message}")]
    Optimizer {
        /// Which fit.
        what: &'static str,
        /// The optimiser's own message.
        message: String,
    },
    /// A linear system could not be solved (singular covariance).
    #[error("Failed to solve for `{what}`: the covariance is singular")]
    Singular {
        /// Which fit.
        what: &'static str,
    },
    /// Writing a plot failed.
    #[error("Failed to draw the plot `{}`: {message}", path.display())]
    Plot {
        /// Where the PNG was to be written.
        path: PathBuf,
        /// The plotting backend's message.
        message: String,
    },
}

impl Hint for MetricError {
    fn hint(&self) -> Option<String> {
        let hint = match self {
            MetricError::LengthMismatch { .. } => "pass one value per row in both",
            MetricError::Empty { .. } => "pass at least one row",
            MetricError::SingleClass { .. } => {
                "it needs both positive and negative rows, report it as undefined for this group"
            }
            MetricError::NonFinite { .. } => "drop or fix non-finite values before scoring",
            MetricError::NotAProbability { .. } => {
                "pass probabilities in [0, 1] (apply a sigmoid to logits first)"
            }
            MetricError::Shape { .. } => {
                "the buffer must be row-major with exactly rows * cols values"
            }
            MetricError::EmptySequence { .. } => "drop empty rows or check the attention mask",
            MetricError::Optimizer { .. } => "standardise the features or lower `C`",
            MetricError::Singular { .. } => "use shrinkage (Ledoit-Wolf or a fixed value)",
            MetricError::InvalidParameter { .. } | MetricError::Plot { .. } => return None,
        };
        Some(hint.to_string())
    }
}

/// Result alias used throughout this crate.
pub type Result<T, E = MetricError> = std::result::Result<T, E>;

pub(crate) fn check_same_len(
    left: &'static str,
    left_len: usize,
    right: &'static str,
    right_len: usize,
) -> Result<()> {
    if left_len == right_len {
        Ok(())
    } else {
        Err(MetricError::LengthMismatch {
            left,
            left_len,
            right,
            right_len,
        })
    }
}

pub(crate) fn check_finite(what: &'static str, input: &'static str, xs: &[f64]) -> Result<()> {
    match xs.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(index) => Err(MetricError::NonFinite {
            what,
            input,
            index,
            value: xs[index],
        }),
    }
}

pub(crate) fn check_probabilities(what: &'static str, xs: &[f64]) -> Result<()> {
    check_finite(what, "scores", xs)?;
    match xs.iter().position(|x| !(0.0..=1.0).contains(x)) {
        None => Ok(()),
        Some(index) => Err(MetricError::NotAProbability {
            what,
            input: "scores",
            index,
            value: xs[index],
        }),
    }
}

pub(crate) fn invalid(
    name: &'static str,
    value: impl ToString,
    reason: &'static str,
) -> MetricError {
    MetricError::InvalidParameter {
        name,
        value: value.to_string(),
        reason,
    }
}
