//! Fixture loading for the parity tests (fixtures written by `fixtures/make_fixtures.py`).
#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::Value;

pub fn load(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("Failed to read fixture `{}`: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("Failed to parse `{}`: {e}", path.display()))
}

pub fn f(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap(),
        Value::String(s) if s == "inf" => f64::INFINITY,
        Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
        Value::String(s) if s == "nan" => f64::NAN,
        other => panic!("not a float: {other}"),
    }
}

pub fn fs(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(f)
        .collect()
}

pub fn bs(v: &Value) -> Vec<bool> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_bool().unwrap())
        .collect()
}

/// Row-major flattening of a JSON matrix.
pub fn matrix(v: &Value) -> (Vec<f64>, usize, usize) {
    let rows = v.as_array().unwrap();
    let cols = rows[0].as_array().unwrap().len();
    (rows.iter().flat_map(fs).collect(), rows.len(), cols)
}

#[track_caller]
pub fn assert_close(actual: f64, expected: f64, tol: f64, what: &str) {
    let ok = (actual == expected) || (actual - expected).abs() <= tol;
    assert!(
        ok,
        "{what}: got {actual}, expected {expected} (diff {:e}, tol {tol:e})",
        (actual - expected).abs()
    );
}

#[track_caller]
pub fn assert_all_close(actual: &[f64], expected: &[f64], tol: f64, what: &str) {
    assert_eq!(
        actual.len(),
        expected.len(),
        "{what}: length differs: {actual:?} vs {expected:?}"
    );
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert_close(*a, *e, tol, &format!("{what}[{i}]"));
    }
}
