//! Pure metric, probe and statistics math for dag's `train-probe` and `evaluate` nodes.
//!
//! Everything takes plain slices and returns typed, `serde::Serialize` results, and agrees
//! with scikit-learn / scipy / lm-evaluation-harness on the committed fixtures in
//! `tests/fixtures/` (see `docs/metrics.md`).
//!
//! ```
//! use dag_metrics::{roc_auc, stratified_bootstrap, BootstrapConfig};
//!
//! let scores = [0.9, 0.8, 0.35, 0.6, 0.1];
//! let labels = [true, true, false, true, false];
//! assert_eq!(roc_auc(&scores, &labels)?, 1.0);
//! let ci = stratified_bootstrap(&scores, &labels, &BootstrapConfig::default(), roc_auc)?;
//! assert!(ci.lower <= ci.estimate && ci.estimate <= ci.upper);
//! # Ok::<(), dag_metrics::MetricError>(())
//! ```
#![deny(missing_docs)]

mod agreement;
mod bootstrap;
mod classification;
mod error;
mod plot;
mod probes;
mod pyrandom;
mod stats;
mod util;

pub use agreement::{aggregate_raters, cohen_kappa, fleiss_kappa};
pub use bootstrap::{
    BootstrapConfig, Interval, bootstrap_interval, paired_stratified_bootstrap,
    stratified_bootstrap,
};
pub use classification::{
    BinStrategy, CalibrationCurve, ProbeMetrics, ReliabilityBin, ReliabilityTable, RocCurve,
    TprAtFpr, accuracy, brier_score, calibration_curve, expected_calibration_error,
    per_group_metrics, per_group_metrics_with_interval, probe_metrics, probe_metrics_with_interval,
    reliability_table, roc_auc, roc_auc_weighted, roc_curve, tpr_at_fpr, tpr_at_fpr_closest_point,
};
pub use error::{MetricError, Result};
pub use plot::{
    DISTINCT_COLOURS, Estimate, dot_whisker_png, line_plot_png, reliability_plot_png, roc_plot_png,
};
pub use probes::{
    Aggregation, ClassWeight, Element, LedoitWolf, LinearProbe, LogisticConfig, LogisticCvFit,
    LogisticFit, Rows, Shrinkage, TokenGrid, aggregate, balanced_class_weights, fit_diff_of_means,
    fit_lda, fit_logistic, fit_logistic_cv, ledoit_wolf, masked_mean_features, sigmoid,
    stratified_kfold,
};
pub use pyrandom::PyRandom;
pub use stats::{
    Alternative, PairedComparison, TInterval, TTest, lm_eval_bootstrap_stderr, mean_stderr,
    paired_comparison, paired_t_test, pass_at_k, pooled_sample_stderr, student_t_test, t_interval,
    welch_t_test,
};
