//! scikit-learn parity of the classification metrics on `fixtures/classification.json`.

mod common;

use common::{assert_all_close, assert_close, bs, f, fs, load};
use dag_metrics::{
    BinStrategy, MetricError, accuracy, brier_score, calibration_curve, reliability_table,
    roc_auc_weighted, roc_curve, tpr_at_fpr_closest_point,
};

#[test]
fn every_case_matches_sklearn() {
    let fixture = load("classification.json");
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 8);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let scores = fs(&case["scores"]);
        let labels = bs(&case["labels"]);
        let weights = case.get("weights").map(fs);
        let w = weights.as_deref();

        let auc = roc_auc_weighted(&scores, &labels, w);
        // scikit-learn raises (older) or warns and returns NaN (1.9) on one class.
        if case["roc_auc_error"].is_string() || f(&case["roc_auc"]).is_nan() {
            assert!(
                matches!(auc, Err(MetricError::SingleClass { .. })),
                "{name}: sklearn gave {} / {}, we gave {auc:?}",
                case["roc_auc_error"],
                case["roc_auc"]
            );
            assert!(roc_curve(&scores, &labels, w, true).is_err());
        } else {
            assert_close(
                auc.unwrap(),
                f(&case["roc_auc"]),
                1e-12,
                &format!("{name} roc_auc"),
            );
            for (key, drop) in [("roc_curve", true), ("roc_curve_full", false)] {
                let ours = roc_curve(&scores, &labels, w, drop).unwrap();
                let theirs = &case[key];
                assert_all_close(
                    &ours.fpr,
                    &fs(&theirs["fpr"]),
                    1e-12,
                    &format!("{name} {key} fpr"),
                );
                assert_all_close(
                    &ours.tpr,
                    &fs(&theirs["tpr"]),
                    1e-12,
                    &format!("{name} {key} tpr"),
                );
                assert_all_close(
                    &ours.thresholds,
                    &fs(&theirs["thresholds"]),
                    0.0,
                    &format!("{name} {key} thresholds"),
                );
            }
        }
        if let Some(v) = case.get("mup_tpr_at_1pct_fpr") {
            assert_eq!(
                tpr_at_fpr_closest_point(&scores, &labels, 0.01).unwrap(),
                f(v),
                "{name}"
            );
            let v5 = f(&case["mup_tpr_at_5pct_fpr"]);
            assert_eq!(
                tpr_at_fpr_closest_point(&scores, &labels, 0.05).unwrap(),
                v5,
                "{name}"
            );
        }
        if let Some(v) = case.get("brier") {
            assert_close(
                brier_score(&scores, &labels, w).unwrap(),
                f(v),
                1e-14,
                &format!("{name} brier"),
            );
        }
        if let Some(v) = case.get("accuracy_at_half") {
            assert_close(
                accuracy(&scores, &labels, 0.5).unwrap(),
                f(v),
                0.0,
                &format!("{name} acc"),
            );
        }
        if let Some(cal) = case.get("calibration") {
            for (strategy, key) in [
                (BinStrategy::Uniform, "uniform"),
                (BinStrategy::Quantile, "quantile"),
            ] {
                for n_bins in [5, 10] {
                    let k = format!("{key}_{n_bins}");
                    let ours = calibration_curve(&scores, &labels, n_bins, strategy).unwrap();
                    assert_all_close(
                        &ours.prob_true,
                        &fs(&cal[&k]["prob_true"]),
                        1e-12,
                        &format!("{name} {k} true"),
                    );
                    assert_all_close(
                        &ours.prob_pred,
                        &fs(&cal[&k]["prob_pred"]),
                        1e-12,
                        &format!("{name} {k} pred"),
                    );
                }
            }
            // The reliability table's non-empty bins are calibration_curve's points.
            let table = reliability_table(&scores, &labels, 10).unwrap();
            let filled: Vec<f64> = table
                .bins
                .iter()
                .filter_map(|b| b.fraction_positive)
                .collect();
            assert_all_close(
                &filled,
                &fs(&cal["uniform_10"]["prob_true"]),
                1e-12,
                &format!("{name} table"),
            );
        }
    }
}

#[test]
fn probabilities_outside_unit_interval_are_rejected() {
    let err = brier_score(&[0.2, 1.5], &[true, false], None).unwrap_err();
    assert!(
        matches!(err, MetricError::NotAProbability { index: 1, .. }),
        "{err}"
    );
    let err = calibration_curve(&[f64::NAN], &[true], 5, BinStrategy::Uniform).unwrap_err();
    assert!(matches!(err, MetricError::NonFinite { .. }), "{err}");
}
