//! The PNG plots render (with embedded fonts) and are real images.

use std::path::PathBuf;

use dag_metrics::{reliability_plot_png, reliability_table, roc_auc, roc_curve, roc_plot_png};

fn out_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dag-metrics-plots-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn synthetic(n: usize, shift: f64) -> (Vec<f64>, Vec<bool>) {
    let labels: Vec<bool> = (0..n).map(|i| i % 3 == 0).collect();
    let scores = (0..n)
        .map(|i| {
            let noise = ((i * 7919) % 1000) as f64 / 1000.0 - 0.5;
            let logit = if labels[i] { shift } else { -shift } + 2.0 * noise;
            1.0 / (1.0 + (-logit).exp())
        })
        .collect();
    (scores, labels)
}

fn assert_png(path: &std::path::Path) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "not a PNG: {}",
        path.display()
    );
    assert!(
        bytes.len() > 10_000,
        "suspiciously small plot: {} bytes",
        bytes.len()
    );
}

#[test]
fn roc_and_reliability_plots_are_written() {
    let dir = out_dir();
    let (s1, y1) = synthetic(600, 0.8);
    let (s2, y2) = synthetic(600, 0.3);
    let c1 = roc_curve(&s1, &y1, None, true).unwrap();
    let c2 = roc_curve(&s2, &y2, None, true).unwrap();
    let l1 = format!("strong (AUROC {:.3})", roc_auc(&s1, &y1).unwrap());
    let l2 = format!("weak (AUROC {:.3})", roc_auc(&s2, &y2).unwrap());
    let roc_path = dir.join("roc.png");
    roc_plot_png(&roc_path, "ROC", &[(&l1, &c1), (&l2, &c2)]).unwrap();
    assert_png(&roc_path);

    let t1 = reliability_table(&s1, &y1, 10).unwrap();
    let t2 = reliability_table(&s2, &y2, 10).unwrap();
    let rel_path = dir.join("reliability.png");
    reliability_plot_png(&rel_path, "Reliability", &[("strong", &t1), ("weak", &t2)]).unwrap();
    assert_png(&rel_path);
    if std::env::var_os("DAG_METRICS_KEEP_PLOTS").is_none() {
        std::fs::remove_dir_all(&dir).unwrap();
    } else {
        eprintln!("plots kept in {}", dir.display());
    }
}

#[test]
fn unwritable_path_is_a_typed_error() {
    let (s, y) = synthetic(50, 1.0);
    let c = roc_curve(&s, &y, None, true).unwrap();
    let path = PathBuf::from("/nonexistent-dir-for-dag-metrics/roc.png");
    let err = roc_plot_png(&path, "ROC", &[("x", &c)]).unwrap_err();
    assert!(
        err.to_string().contains("nonexistent-dir-for-dag-metrics"),
        "{err}"
    );
}
