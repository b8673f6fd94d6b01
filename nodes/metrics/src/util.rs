//! Small numeric helpers shared by the metric modules, written to follow numpy bit for bit
//! where the parity fixtures depend on it.

/// `np.percentile(sorted, q)` with numpy's default `linear` method, on ascending data.
pub(crate) fn percentile_sorted(sorted: &[f64], q_percent: f64) -> f64 {
    let n = sorted.len();
    debug_assert!(n > 0);
    // numpy divides by 100 before indexing; keeping that order keeps the same rounding.
    let quantile = q_percent / 100.0;
    let virtual_index = (n - 1) as f64 * quantile;
    let previous = virtual_index.floor();
    let gamma = virtual_index - previous;
    let lo = (previous.max(0.0) as usize).min(n - 1);
    let hi = (lo + 1).min(n - 1);
    lerp(sorted[lo], sorted[hi], gamma)
}

/// numpy's `_lerp`: interpolates from the nearer end so that t = 1 gives b exactly.
fn lerp(a: f64, b: f64, t: f64) -> f64 {
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// `np.linspace(0, 1, n + 1)`: step multiplied in, last edge set to exactly 1.
pub(crate) fn unit_linspace(n_bins: usize) -> Vec<f64> {
    let step = 1.0 / n_bins as f64;
    let mut edges: Vec<f64> = (0..=n_bins).map(|i| i as f64 * step).collect();
    edges[n_bins] = 1.0;
    edges
}

/// `np.searchsorted(edges, x, side="left")`: the number of edges strictly below `x`.
pub(crate) fn searchsorted_left(edges: &[f64], x: f64) -> usize {
    edges.partition_point(|&e| e < x)
}

pub(crate) fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Sample standard deviation (ddof = 1), summed in order as lm-eval's Python does.
pub(crate) fn sample_std(xs: &[f64]) -> f64 {
    let mu = mean(xs);
    (xs.iter().map(|x| (x - mu) * (x - mu)).sum::<f64>() / (xs.len() as f64 - 1.0)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_numpy_linear() {
        let xs = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile_sorted(&xs, 0.0), 1.0);
        assert_eq!(percentile_sorted(&xs, 100.0), 4.0);
        assert!((percentile_sorted(&xs, 50.0) - 2.5).abs() < 1e-15);
        assert!((percentile_sorted(&xs, 2.5) - 1.075).abs() < 1e-12);
    }

    #[test]
    fn searchsorted_left_puts_edges_in_the_lower_bin() {
        let edges = [0.1, 0.2, 0.3];
        assert_eq!(searchsorted_left(&edges, 0.1), 0);
        assert_eq!(searchsorted_left(&edges, 0.15), 1);
        assert_eq!(searchsorted_left(&edges, 0.9), 3);
    }
}
