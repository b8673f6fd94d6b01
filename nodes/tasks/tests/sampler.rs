//! `PyRandom` against draws CPython made (`tests/fixtures/make_fixtures.py`).

use dag_tasks::PyRandom;
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    seed: u64,
    draws: Vec<Draw>,
}

#[derive(Deserialize)]
struct Draw {
    n: usize,
    k: usize,
    sample: Vec<usize>,
}

#[test]
fn sample_matches_cpython_across_seeds_sizes_and_successive_calls() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cpython_sample.json"
    ))
    .unwrap();
    let cases: Vec<Case> = serde_json::from_str(&text).unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let mut rng = PyRandom::new(case.seed);
        for draw in case.draws {
            let got = rng.sample_indices(draw.n, draw.k).unwrap();
            assert_eq!(
                got, draw.sample,
                "seed {} n {} k {}",
                case.seed, draw.n, draw.k
            );
        }
    }
}
