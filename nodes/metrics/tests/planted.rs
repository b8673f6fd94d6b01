//! Planted-signal checks: each probe and aggregation recovers a signal where theory says.

use dag_metrics::{
    Aggregation, LinearProbe, LogisticConfig, Rows, Shrinkage, TokenGrid, aggregate,
    fit_diff_of_means, fit_lda, fit_logistic, masked_mean_features, roc_auc,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn gauss(rng: &mut ChaCha8Rng) -> f64 {
    // Box-Muller; enough for test data.
    let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// Sequences of `tokens` noise vectors; positives carry `direction` on `k` random tokens.
fn planted(
    n: usize,
    tokens: usize,
    dim: usize,
    k: usize,
    seed: u64,
) -> (Vec<f32>, Vec<bool>, Vec<bool>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut acts = vec![0f32; n * tokens * dim];
    let mut mask = vec![false; n * tokens];
    let labels: Vec<bool> = (0..n).map(|i| i % 2 == 0).collect();
    for row in 0..n {
        // Random right padding, filled with garbage that must never matter.
        let len = rng.random_range(tokens / 2..=tokens);
        for t in 0..tokens {
            let slot = row * tokens + t;
            mask[slot] = t < len;
            for j in 0..dim {
                acts[slot * dim + j] = if t < len {
                    gauss(&mut rng) as f32
                } else {
                    1e30
                };
            }
        }
        if labels[row] {
            for _ in 0..k {
                let t = rng.random_range(0..len);
                acts[(row * tokens + t) * dim] += 4.0;
            }
        }
    }
    (acts, mask, labels)
}

#[test]
fn max_finds_a_single_token_and_mean_needs_many() {
    let (n, tokens, dim) = (400, 40, 8);
    let probe = LinearProbe {
        coef: (0..dim).map(|j| f64::from(u8::from(j == 0))).collect(),
        intercept: 0.0,
    };
    let auc = |k: usize, agg: Aggregation| {
        let (acts, mask, labels) = planted(n, tokens, dim, k, 7);
        let grid = TokenGrid::new(&mask, n, tokens).unwrap();
        let scores = aggregate(&probe.token_scores(&acts, grid).unwrap(), grid, agg).unwrap();
        roc_auc(&scores, &labels).unwrap()
    };
    let single_max = auc(1, Aggregation::Max);
    let single_mean = auc(1, Aggregation::Mean);
    let many_mean = auc(15, Aggregation::Mean);
    assert!(single_max > 0.95, "max on one planted token: {single_max}");
    assert!(
        single_mean < 0.85,
        "mean should dilute one token over ~30: {single_mean}"
    );
    assert!(
        many_mean > 0.97,
        "mean over many planted tokens: {many_mean}"
    );
    assert!(auc(1, Aggregation::Softmax { temperature: 0.5 }) > single_mean);
    assert!(auc(1, Aggregation::RollingMeanMax { window: 3 }) > single_mean);
}

#[test]
fn fitted_probes_recover_the_planted_direction_from_f32_features() {
    let (n, tokens, dim) = (300, 12, 6);
    let (acts, mask, labels) = planted(n, tokens, dim, 8, 3);
    let grid = TokenGrid::new(&mask, n, tokens).unwrap();
    let feats = masked_mean_features(&acts, grid, dim).unwrap();
    let x = Rows::new(&feats, n, dim).unwrap();
    let probes = [
        (
            "logistic",
            fit_logistic(x, &labels, None, &LogisticConfig::default())
                .unwrap()
                .probe,
        ),
        ("diff of means", fit_diff_of_means(x, &labels).unwrap()),
        ("lda", fit_lda(x, &labels, Shrinkage::LedoitWolf).unwrap()),
    ];
    for (name, p) in probes {
        let norm = p.coef.iter().map(|w| w * w).sum::<f64>().sqrt();
        let cosine = p.coef[0] / norm;
        assert!(
            cosine > 0.9,
            "{name}: cosine with the planted axis {cosine}"
        );
        let auc = roc_auc(&p.decision_function(x).unwrap(), &labels).unwrap();
        assert!(auc > 0.95, "{name}: AUROC {auc}");
    }
}

#[test]
fn diff_of_means_puts_the_boundary_at_the_midpoint() {
    let x = [2.0f32, 0.0, 4.0, 2.0, 0.0, 0.0, -2.0, 2.0];
    let y = [true, true, false, false];
    let p = fit_diff_of_means(Rows::new(&x, 4, 2).unwrap(), &y).unwrap();
    // mean_pos = (3, 1), mean_neg = (-1, 1): direction (4, 0), midpoint (1, 1).
    assert_eq!(p.coef, vec![4.0, 0.0]);
    let mid = p
        .decision_function(Rows::new(&[1.0f64, 1.0], 1, 2).unwrap())
        .unwrap()[0];
    assert_eq!(mid, 0.0);
}
