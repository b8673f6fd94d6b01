//! `dag diff`: two runs compared, params and every metric that moved.

use super::*;

/// One number of a metrics or report artifact, with the interval stored beside it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Number {
    pub value: f64,
    pub interval: Option<(f64, f64)>,
}

/// Every number in a JSON document, keyed by its path (`tasks.gsm8k.acc,none`,
/// `rows.3.auroc`), each with its interval where one sits beside it: `<name>_ci` or
/// `interval` as a pair, or `ci_low` and `ci_high`. The intervals' own ends are not listed
/// apart, and a metrics file's top-level `table` (a display copy of the same numbers) is
/// skipped.
pub(super) fn json_numbers(prefix: &str, v: &serde_json::Value) -> Vec<(String, Number)> {
    fn pair(v: Option<&serde_json::Value>) -> Option<(f64, f64)> {
        match v?.as_array()?.as_slice() {
            [a, b] => Some((a.as_f64()?, b.as_f64()?)),
            _ => None,
        }
    }
    fn walk(prefix: &str, v: &serde_json::Value, top: bool, out: &mut Vec<(String, Number)>) {
        let join = |k: &str| {
            if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            }
        };
        match v {
            serde_json::Value::Object(o) => {
                let lows = (o.get("ci_low"), o.get("ci_high"));
                // An object's `interval` (or `ci_low`, `ci_high`) belongs to its estimate.
                let estimate = ["value", "mean", "overall", "difference"]
                    .into_iter()
                    .find(|k| o.get(*k).is_some_and(serde_json::Value::is_number));
                for (k, x) in o {
                    let an_interval_end =
                        k == "interval" || k == "ci_low" || k == "ci_high" || k.ends_with("_ci");
                    if (top && k == "table") || an_interval_end {
                        continue;
                    }
                    if let Some(value) = x.as_f64() {
                        let of_estimate = estimate == Some(k.as_str());
                        let interval = pair(o.get(&format!("{k}_ci")))
                            .or_else(|| pair(o.get("interval")).filter(|_| of_estimate))
                            .or_else(|| match lows {
                                (Some(l), Some(h)) if of_estimate => {
                                    Some((l.as_f64()?, h.as_f64()?))
                                }
                                _ => None,
                            });
                        out.push((join(k), Number { value, interval }));
                    } else {
                        walk(&join(k), x, false, out);
                    }
                }
            }
            serde_json::Value::Array(items) => {
                for (i, x) in items.iter().enumerate() {
                    // An element that names itself is found by its name, not its position,
                    // so a row added before it does not make every later number "move".
                    let name = ["label", "name", "model", "task", "dimension", "node"]
                        .iter()
                        .find_map(|k| x.get(k).and_then(serde_json::Value::as_str));
                    let key = match name {
                        Some(n) => format!("[{n}]"),
                        None => i.to_string(),
                    };
                    match x.as_f64() {
                        Some(value) => out.push((
                            join(&key),
                            Number {
                                value,
                                interval: None,
                            },
                        )),
                        None => walk(&join(&key), x, false, out),
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = vec![];
    match v.as_f64() {
        Some(value) => out.push((
            prefix.to_string(),
            Number {
                value,
                interval: None,
            },
        )),
        None => walk(prefix, v, true, &mut out),
    }
    out
}

/// The numbers of a metrics artifact (a JSON file) or of a report (every `.json` file in
/// its tree, each path prefixed by the file's name and `:`); none for other kinds.
pub(super) fn artifact_numbers(store: &Store, d: &Digest) -> Vec<(String, Number)> {
    let Ok(Some(rec)) = store.artifact(d) else {
        return vec![];
    };
    let parse = |d: &Digest| {
        store
            .read(d)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
    };
    match rec.kind.as_str() {
        "metrics" => parse(d).map(|v| json_numbers("", &v)).unwrap_or_default(),
        "report" => rec
            .entries
            .iter()
            .filter(|e| e.path.ends_with(".json"))
            .filter_map(|e| parse(&e.digest).map(|v| json_numbers(&format!("{}:", e.path), &v)))
            .flatten()
            .map(|(k, n)| (k.replacen(":.", ":", 1), n))
            .collect(),
        _ => vec![],
    }
}

fn shown(n: &Number) -> String {
    match n.interval {
        Some((lo, hi)) => format!("{:.6} [{lo:.6}, {hi:.6}]", n.value),
        None => format!("{:.6}", n.value),
    }
}

pub(super) fn diff(explicit: Option<&Path>, a: &str, b: &str, json: bool) -> Result<Exit> {
    let store = open_reader(explicit, None)?;
    let (ra, rb) = (find_run(&store, a)?, find_run(&store, b)?);
    let mut names: Vec<&str> = ra
        .nodes
        .iter()
        .chain(&rb.nodes)
        .map(|n| n.instance.as_str())
        .collect();
    names.sort();
    names.dedup();
    let mut out = vec![];
    for name in names {
        let na = ra.nodes.iter().find(|n| n.instance == name);
        let nb = rb.nodes.iter().find(|n| n.instance == name);
        let pa: serde_json::Value = na
            .map(|n| serde_json::from_str(&n.params_json).unwrap_or_default())
            .unwrap_or_default();
        let pb: serde_json::Value = nb
            .map(|n| serde_json::from_str(&n.params_json).unwrap_or_default())
            .unwrap_or_default();
        let mut changes = vec![];
        if let (Some(oa), Some(ob)) = (pa.as_object(), pb.as_object()) {
            let mut keys: Vec<&String> = oa.keys().chain(ob.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                if oa.get(k) != ob.get(k) {
                    changes.push(json!({"param": k, "a": oa.get(k), "b": ob.get(k)}));
                }
            }
        } else if na.is_none() || nb.is_none() {
            changes.push(json!({"node": if na.is_none() { "only in b" } else { "only in a" }}));
        }
        let oa = na.map(|n| n.outputs.clone()).unwrap_or_default();
        let ob = nb.map(|n| n.outputs.clone()).unwrap_or_default();
        for (port, da) in &oa {
            let db = ob.iter().find(|(p, _)| p == port).map(|(_, d)| *d);
            if Some(*da) != db {
                let kind = store
                    .artifact(da)
                    .ok()
                    .flatten()
                    .map(|r| r.kind)
                    .unwrap_or_default();
                let mut entry =
                    json!({"output": port, "a": da.short(), "b": db.map(|d| d.short())});
                if (kind == "metrics" || kind == "report")
                    && let Some(db) = db
                {
                    let ma = artifact_numbers(&store, da);
                    let mb = artifact_numbers(&store, &db);
                    let moved: Vec<_> = ma
                        .iter()
                        .filter_map(|(k, x)| {
                            let (_, y) = mb.iter().find(|(k2, _)| k2 == k)?;
                            // Every number that moved, and every interval that did.
                            (x != y).then(|| {
                                json!({
                                    "metric": k, "a": x.value, "b": y.value, "delta": y.value - x.value,
                                    "a_interval": x.interval.map(|(l, h)| [l, h]),
                                    "b_interval": y.interval.map(|(l, h)| [l, h]),
                                    "shown": [shown(x), shown(y)],
                                })
                            })
                        })
                        .collect();
                    entry["metrics"] = json!(moved);
                }
                changes.push(entry);
            }
        }
        if !changes.is_empty() {
            out.push(json!({"node": name, "changes": changes}));
        }
    }
    if json {
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else if out.is_empty() {
        outln!(
            "runs {} and {} have the same params and outputs",
            ra.id,
            rb.id
        );
    } else {
        outln!("a = {}\nb = {}\n", ra.id, rb.id);
        for n in &out {
            outln!("{}", n["node"].as_str().unwrap_or_default());
            for c in n["changes"].as_array().into_iter().flatten() {
                if let Some(p) = c.get("param") {
                    outln!(
                        "  param {}: {} -> {}",
                        p.as_str().unwrap_or_default(),
                        c["a"],
                        c["b"]
                    );
                } else if let Some(o) = c.get("output") {
                    outln!(
                        "  output {}: {} -> {}",
                        o.as_str().unwrap_or_default(),
                        c["a"].as_str().unwrap_or("-"),
                        c["b"].as_str().unwrap_or("-")
                    );
                    for m in c
                        .get("metrics")
                        .and_then(|m| m.as_array())
                        .into_iter()
                        .flatten()
                    {
                        outln!(
                            "    {:<56} {:>32} -> {:<32} {:>+12.6}",
                            m["metric"].as_str().unwrap_or_default(),
                            m["shown"][0].as_str().unwrap_or_default(),
                            m["shown"][1].as_str().unwrap_or_default(),
                            m["delta"].as_f64().unwrap_or(f64::NAN)
                        );
                    }
                } else {
                    outln!("  {c}");
                }
            }
        }
    }
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn numbers_come_with_the_interval_beside_them() {
        let v = json!({
            "table": [{"x": 1}],
            "rows": [{"auroc": 0.7, "auroc_ci": [0.6, 0.8], "n": 40}],
            "overall": 0.5, "interval": [0.4, 0.6], "questions": 3,
            "tasks": {"gsm8k": {"value": 0.25, "stderr": 0.01, "ci_low": 0.2, "ci_high": 0.3}},
            "epochs": [0.1, 0.2],
            "models": [{"model": "pre", "mean": 0.5}],
        });
        let got: BTreeMap<String, Number> = json_numbers("", &v).into_iter().collect();
        let n = |value, interval| Number { value, interval };
        assert_eq!(got["rows.0.auroc"], n(0.7, Some((0.6, 0.8))));
        assert_eq!(got["rows.0.n"], n(40.0, None));
        assert_eq!(got["overall"], n(0.5, Some((0.4, 0.6))));
        assert_eq!(got["questions"], n(3.0, None));
        assert_eq!(got["tasks.gsm8k.value"], n(0.25, Some((0.2, 0.3))));
        assert_eq!(got["tasks.gsm8k.stderr"], n(0.01, None));
        assert_eq!(got["epochs.1"], n(0.2, None));
        assert_eq!(got["models.[pre].mean"], n(0.5, None), "found by name");
        assert_eq!(
            got.len(),
            9,
            "no interval ends or display table apart: {got:?}"
        );
        let top = json_numbers("", &json!({"table": [1], "a": {"table": 2}}));
        assert_eq!(top, vec![("a.table".to_string(), n(2.0, None))]);
    }
}
