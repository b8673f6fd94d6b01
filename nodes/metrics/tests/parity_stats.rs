//! scipy / lm-evaluation-harness parity of the evaluation statistics (`fixtures/stats.json`).

mod common;

use common::{assert_close, f, fs, load};
use dag_metrics::{
    Alternative, BootstrapConfig, lm_eval_bootstrap_stderr, mean_stderr, paired_comparison,
    paired_t_test, pass_at_k, pooled_sample_stderr, student_t_test, t_interval, welch_t_test,
};

#[test]
fn t_tests_match_scipy() {
    let fx = load("stats.json");
    let (x1, x2) = (fs(&fx["x1"]), fs(&fx["x2"]));
    for case in fx["ttest_ind"].as_array().unwrap() {
        let alt = match case["alternative"].as_str().unwrap() {
            "two-sided" => Alternative::TwoSided,
            "greater" => Alternative::Greater,
            _ => Alternative::Less,
        };
        let equal_var = case["equal_var"].as_bool().unwrap();
        let ours = if equal_var {
            student_t_test(&x1, &x2, alt)
        } else {
            welch_t_test(&x1, &x2, alt)
        }
        .unwrap();
        let what = format!("ttest_ind equal_var={equal_var} {alt:?}");
        assert_close(ours.statistic, f(&case["statistic"]), 1e-12, &what);
        assert_close(ours.p_value, f(&case["pvalue"]), 1e-10, &what);
    }
    let (a, b) = (fs(&fx["a"]), fs(&fx["b"]));
    let rel = paired_t_test(&a, &b, Alternative::TwoSided).unwrap();
    assert_close(
        rel.statistic,
        f(&fx["ttest_rel"]["statistic"]),
        1e-12,
        "ttest_rel t",
    );
    assert_close(
        rel.p_value,
        f(&fx["ttest_rel"]["pvalue"]),
        1e-10,
        "ttest_rel p",
    );
}

#[test]
fn t_intervals_match_scipy_ppf() {
    let fx = load("stats.json");
    for case in fx["t_intervals"].as_array().unwrap() {
        let ci = t_interval(&fs(&case["x"]), 0.95).unwrap();
        assert_close(ci.mean, f(&case["mean"]), 1e-14, "mean");
        assert_close(ci.lower, f(&case["lower"]), 1e-9, "lower");
        assert_close(ci.upper, f(&case["upper"]), 1e-9, "upper");
    }
}

#[test]
fn lm_eval_stderrs_match_python() {
    let fx = load("stats.json");
    let acc = fs(&fx["acc"]);
    assert_close(
        mean_stderr(&acc).unwrap(),
        f(&fx["mean_stderr_acc"]),
        1e-15,
        "mean_stderr",
    );
    let boot = &fx["lm_eval_bootstrap"];
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    // Same draws as Python's random.Random, so agreement is to rounding, not to sampling error.
    let ours = lm_eval_bootstrap_stderr(&acc, 2000, mean).unwrap();
    assert_close(
        ours,
        f(&boot["mean_iters2000"]),
        1e-14,
        "bootstrap_stderr(mean)",
    );
    let sorted_median = |xs: &[f64]| {
        let mut v = xs.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let a = fs(&fx["a"]);
    let ours = lm_eval_bootstrap_stderr(&a, 3000, sorted_median).unwrap();
    assert_close(
        ours,
        f(&boot["sorted_median_iters3000"]),
        1e-14,
        "bootstrap_stderr(median)",
    );
}

#[test]
fn pooled_stderr_of_identical_subtasks_is_the_stderr_of_their_union() {
    // Two copies of one subtask: pooled variance equals the subtask's, over twice the items.
    let se = 0.05;
    let pooled = pooled_sample_stderr(&[se, se], &[100, 100]).unwrap();
    let expected = (99.0 * se * se * 100.0 * 2.0 / 198.0 / 200.0f64).sqrt();
    assert_close(pooled, expected, 1e-15, "pooled");
}

#[test]
fn pass_at_k_matches_chen_et_al_and_the_exact_ratio() {
    let fx = load("stats.json");
    for case in fx["pass_at_k"].as_array().unwrap() {
        let (n, c, k) = ["n", "c", "k"]
            .map(|key| case[key].as_u64().unwrap() as usize)
            .into();
        let ours = pass_at_k(n, c, k).unwrap();
        assert_close(
            ours,
            f(&case["value"]),
            1e-15,
            &format!("pass@{k} n={n} c={c}"),
        );
        assert_close(
            ours,
            f(&case["exact"]),
            1e-12,
            &format!("exact pass@{k} n={n} c={c}"),
        );
    }
}

#[test]
fn paired_comparison_is_reproducible_and_detects_a_real_shift() {
    let fx = load("stats.json");
    let (a, b) = (fs(&fx["a"]), fs(&fx["b"]));
    let config = BootstrapConfig {
        n_resamples: 4000,
        seed: 3,
        level: 0.95,
    };
    let cmp = paired_comparison(&a, &b, &config).unwrap();
    assert_eq!(cmp, paired_comparison(&a, &b, &config).unwrap());
    assert!(!cmp.sign_flip_exact);
    assert_close(
        cmp.t_test.p_value,
        f(&fx["ttest_rel"]["pvalue"]),
        1e-10,
        "t p",
    );
    // b = a - 0.05 + noise(0.1) over 40 items: the shift is real and both tests see it.
    assert!(cmp.difference.lower > 0.0, "{cmp:?}");
    assert!(
        cmp.sign_flip_p_value < 0.05 && cmp.t_test.p_value < 0.05,
        "{cmp:?}"
    );
    // Identical systems: no difference, p = 1.
    let same = paired_comparison(&a, &a, &config).unwrap();
    assert_eq!(same.difference.estimate, 0.0);
    assert_eq!(same.sign_flip_p_value, 1.0);
}
