//! Times the logistic-regression probe fit on synthetic activation-like features and
//! writes those features so `bench/logistic_sklearn.py` can time scikit-learn on the
//! very same matrix.
//!
//! `cargo run --release -p dag-metrics --example logistic_bench -- OUT_DIR [N] [D]`

use std::io::Write;
use std::time::Instant;

use dag_metrics::{LogisticConfig, Rows, fit_logistic, roc_auc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let out = std::path::PathBuf::from(args.get(1).ok_or("usage: logistic_bench OUT_DIR [N] [D]")?);
    let n: usize = args.get(2).map_or(Ok(4000), |s| s.parse())?;
    let d: usize = args.get(3).map_or(Ok(576), |s| s.parse())?;
    std::fs::create_dir_all(&out)?;

    // Features with a weak planted direction plus correlated noise, like residual-stream
    // means: the fit takes a realistic number of iterations.
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut gauss = move || {
        let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    };
    let direction: Vec<f64> = (0..d).map(|_| gauss()).collect();
    let labels: Vec<bool> = (0..n).map(|i| i % 2 == 0).collect();
    let mut x = vec![0f32; n * d];
    for i in 0..n {
        let shared = gauss();
        let sign = if labels[i] { 1.0 } else { -1.0 };
        for j in 0..d {
            x[i * d + j] = (gauss() + 0.5 * shared + 0.05 * sign * direction[j]) as f32;
        }
    }
    let mut f = std::fs::File::create(out.join("x.f32"))?;
    f.write_all(&x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())?;
    std::fs::write(
        out.join("y.u8"),
        labels.iter().map(|&b| u8::from(b)).collect::<Vec<u8>>(),
    )?;

    let (train, test) = (n * 3 / 4, n - n * 3 / 4);
    let x_train = Rows::new(&x[..train * d], train, d)?;
    let x_test = Rows::new(&x[train * d..], test, d)?;
    for c in [0.01, 1.0] {
        let config = LogisticConfig {
            c,
            max_iter: 1000,
            ..LogisticConfig::default()
        };
        let start = Instant::now();
        let fit = fit_logistic(x_train, &labels[..train], None, &config)?;
        let secs = start.elapsed().as_secs_f64();
        let auc = roc_auc(&fit.probe.decision_function(x_test)?, &labels[train..])?;
        println!(
            "dag-metrics  n={train} d={d} C={c}: fit {secs:.3} s, {} iterations, test AUROC {auc:.4}",
            fit.n_iter
        );
    }
    Ok(())
}
