//! scikit-learn parity of the probes on `fixtures/logistic.json` and `fixtures/lda.json`.

mod common;

use common::{assert_all_close, assert_close, bs, f, fs, load, matrix};
use dag_metrics::{
    ClassWeight, LogisticConfig, Rows, Shrinkage, fit_lda, fit_logistic, fit_logistic_cv,
    ledoit_wolf, stratified_kfold,
};

fn class_weight(v: &serde_json::Value) -> ClassWeight {
    if v.is_null() {
        ClassWeight::None
    } else {
        ClassWeight::Balanced
    }
}

#[test]
fn logistic_matches_sklearn_lbfgs_at_the_optimum() {
    let fx = load("logistic.json");
    let mut checked = 0;
    let mut worst = 0.0f64;
    for fit in fx["fits"].as_array().unwrap() {
        if f(&fit["tol"]) > 1e-8 {
            continue;
        }
        let name = fit["dataset"].as_str().unwrap();
        let data = &fx["datasets"][name];
        let (x, n, d) = matrix(&data["X"]);
        let y = bs(&data["y"]);
        let config = LogisticConfig {
            c: f(&fit["C"]),
            tol: 1e-10,
            max_iter: 10_000,
            class_weight: class_weight(&fit["class_weight"]),
        };
        let ours = fit_logistic(Rows::new(&x, n, d).unwrap(), &y, None, &config).unwrap();
        let what = format!("{name} C={} cw={}", config.c, fit["class_weight"]);
        assert!(ours.converged, "{what}");
        assert_all_close(
            &ours.probe.coef,
            &fs(&fit["coef"]),
            1e-5,
            &format!("{what} coef"),
        );
        assert_close(
            ours.probe.intercept,
            f(&fit["intercept"]),
            1e-5,
            &format!("{what} intercept"),
        );
        let proba = ours
            .probe
            .predict_proba(Rows::new(&x[..10 * d], 10, d).unwrap())
            .unwrap();
        assert_all_close(
            &proba,
            &fs(&fit["proba_head"]),
            1e-6,
            &format!("{what} proba"),
        );
        for (a, b) in ours.probe.coef.iter().zip(fs(&fit["coef"])) {
            worst = worst.max((a - b).abs());
        }
        checked += 1;
    }
    assert_eq!(checked, 30);
    eprintln!("worst |coef - sklearn| at tol 1e-10: {worst:e}");
    assert!(worst < 1e-5);
}

#[test]
fn logistic_with_default_tol_stays_near_sklearn_default() {
    // At tol=1e-4 both solvers stop early, at different points near the optimum: on the
    // ill-conditioned set (d=20, n=60, C=100) scikit-learn's own default fit is 1.2e-2
    // from its tol=1e-10 fit. So the 1e-4 parity contract is checked at the optimum
    // (above); here the early stops must agree to the accuracy tol=1e-4 allows.
    let fx = load("logistic.json");
    let mut worst_conditioned = 0.0f64;
    let mut worst_ill = 0.0f64;
    for fit in fx["fits"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f_| f(&f_["tol"]) > 1e-8)
    {
        let name = fit["dataset"].as_str().unwrap();
        let data = &fx["datasets"][name];
        let (x, n, d) = matrix(&data["X"]);
        let y = bs(&data["y"]);
        let config = LogisticConfig {
            c: f(&fit["C"]),
            class_weight: class_weight(&fit["class_weight"]),
            ..LogisticConfig::default()
        };
        let ours = fit_logistic(Rows::new(&x, n, d).unwrap(), &y, None, &config).unwrap();
        assert!(ours.converged);
        let theirs = fs(&fit["coef"]).into_iter().chain([f(&fit["intercept"])]);
        let mine = ours
            .probe
            .coef
            .iter()
            .copied()
            .chain([ours.probe.intercept]);
        let diff = mine
            .zip(theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        if name.starts_with("wide") {
            worst_ill = worst_ill.max(diff);
        } else {
            worst_conditioned = worst_conditioned.max(diff);
        }
    }
    eprintln!(
        "default tol: worst diff {worst_conditioned:e} (well conditioned), {worst_ill:e} (ill conditioned)"
    );
    assert!(worst_conditioned < 1e-3, "{worst_conditioned:e}");
    assert!(worst_ill < 1e-2, "{worst_ill:e}");
}

#[test]
fn logistic_sample_weights_match_sklearn() {
    let fx = load("logistic.json");
    let w = &fx["weighted"];
    let data = &fx["datasets"][w["dataset"].as_str().unwrap()];
    let (x, n, d) = matrix(&data["X"]);
    let y = bs(&data["y"]);
    let sw = fs(&w["sample_weight"]);
    let config = LogisticConfig {
        c: f(&w["C"]),
        tol: 1e-10,
        max_iter: 10_000,
        ..Default::default()
    };
    let ours = fit_logistic(Rows::new(&x, n, d).unwrap(), &y, Some(&sw), &config).unwrap();
    assert_all_close(&ours.probe.coef, &fs(&w["coef"]), 1e-6, "weighted coef");
    assert_close(
        ours.probe.intercept,
        f(&w["intercept"]),
        1e-6,
        "weighted intercept",
    );
}

#[test]
fn stratified_folds_and_cv_choice_match_sklearn() {
    let fx = load("logistic.json");
    for (name, data) in fx["datasets"].as_object().unwrap() {
        let y = bs(&data["y"]);
        let theirs: Vec<usize> = fx["stratified_kfold_5"][name]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(stratified_kfold(&y, 5).unwrap(), theirs, "{name} folds");

        let cv = &fx["cv"][name];
        let (x, n, d) = matrix(&data["X"]);
        let config = LogisticConfig {
            tol: 1e-10,
            max_iter: 10_000,
            ..Default::default()
        };
        let ours =
            fit_logistic_cv(Rows::new(&x, n, d).unwrap(), &y, &fs(&cv["Cs"]), 5, &config).unwrap();
        assert_all_close(
            &ours.mean_auroc,
            &fs(&cv["mean_scores"]),
            1e-9,
            &format!("{name} cv scores"),
        );
        assert_eq!(ours.best_c, f(&cv["C"]), "{name} best C");
    }
}

#[test]
fn ledoit_wolf_and_lda_match_sklearn() {
    let fx = load("lda.json");
    for (name, set) in fx["sets"].as_object().unwrap() {
        let (x, n, d) = matrix(&set["X"]);
        let rows = Rows::new(&x, n, d).unwrap();
        let y = bs(&set["y"]);
        let lw = ledoit_wolf(rows).unwrap();
        assert_close(
            lw.shrinkage,
            f(&set["ledoit_wolf_shrinkage"]),
            1e-12,
            &format!("{name} shrinkage"),
        );
        let (cov, _, _) = matrix(&set["ledoit_wolf_covariance"]);
        assert_all_close(
            &lw.covariance,
            &cov,
            1e-12,
            &format!("{name} LW covariance"),
        );
        for (key, shrinkage) in [
            ("lda_auto", Shrinkage::LedoitWolf),
            ("lda_fixed_0.3", Shrinkage::Fixed(0.3)),
            ("lda_none", Shrinkage::Empirical),
        ] {
            let Some(theirs) = set.get(key) else { continue };
            let probe = fit_lda(rows, &y, shrinkage).unwrap();
            let what = format!("{name} {key}");
            assert_all_close(
                &probe.coef,
                &fs(&theirs["coef"]),
                1e-8,
                &format!("{what} coef"),
            );
            assert_close(
                probe.intercept,
                f(&theirs["intercept"]),
                1e-8,
                &format!("{what} intercept"),
            );
            let decision = probe.decision_function(rows).unwrap();
            assert_all_close(
                &decision,
                &fs(&theirs["decision"]),
                1e-8,
                &format!("{what} decision"),
            );
        }
    }
}
