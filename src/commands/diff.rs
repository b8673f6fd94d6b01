//! `dag diff`: two runs compared, params and every metric that moved.

use super::*;

/// Every number in a metrics JSON artifact, keyed by its path (`tasks.gsm8k.acc,none`); the
/// `table` array repeats them for display and is skipped.
pub(super) fn metric_numbers(store: &Store, d: &Digest) -> Vec<(String, f64)> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, f64)>) {
        let join = |k: &str| {
            if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            }
        };
        match v {
            serde_json::Value::Number(n) => out.extend(n.as_f64().map(|x| (prefix.to_string(), x))),
            serde_json::Value::Object(o) => {
                for (k, v) in o {
                    if !(prefix.is_empty() && k == "table") {
                        walk(&join(k), v, out);
                    }
                }
            }
            _ => {}
        }
    }
    let Ok(bytes) = store.read(d) else {
        return vec![];
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return vec![];
    };
    let mut out = vec![];
    walk("", &v, &mut out);
    out
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
                if kind == "metrics"
                    && let Some(db) = db
                {
                    let ma = metric_numbers(&store, da);
                    let mb = metric_numbers(&store, &db);
                    let rows: Vec<_> = ma
                        .iter()
                        .filter_map(|(k, x)| {
                            mb.iter()
                                .find(|(k2, _)| k2 == k)
                                .map(|(_, y)| json!({"metric": k, "a": x, "b": y, "delta": y - x}))
                        })
                        .collect();
                    entry["metrics"] = json!(rows);
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
                            "    {:<64} {:>12.6} {:>12.6} {:>+12.6}",
                            m["metric"].as_str().unwrap_or_default(),
                            m["a"].as_f64().unwrap_or(f64::NAN),
                            m["b"].as_f64().unwrap_or(f64::NAN),
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
