//! `dag nodes`: the node types, their ports and params.

use super::*;

pub(super) fn nodes(only: Option<&str>, json: bool) -> Result<()> {
    let reg = dag_nodes::registry();
    let mut all = vec![];
    for name in reg.names() {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let s = reg.get(name).expect("listed").spec();
        all.push(json!({
            "type": s.name, "version": s.version, "doc": s.doc,
            "resources": {"cpu": s.resources.cpu, "gpu": s.resources.gpu, "api": s.resources.api},
            "inputs": s.inputs.iter().map(|p| json!({"name": p.name, "kind": p.kind.name(), "many": p.many, "optional": p.optional, "doc": p.doc})).collect::<Vec<_>>(),
            "outputs": s.outputs.iter().map(|p| json!({"name": p.name, "kind": p.kind.name(), "doc": p.doc})).collect::<Vec<_>>(),
            "params": s.params.iter().map(|p| json!({"name": p.name, "type": p.ty.to_string(), "required": p.required, "default": p.default.as_ref().map(|d| d.to_json()), "doc": p.doc, "range": (!p.range.is_unbounded()).then(|| p.range.to_string()), "keyed": p.keyed})).collect::<Vec<_>>(),
        }));
    }
    if let Some(o) = only
        && all.is_empty()
    {
        bail!(Hinted::new(
            format!("no node type `{o}`"),
            "`dag nodes` lists them"
        ));
    }
    if json {
        outln!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    for n in &all {
        outln!(
            "{} (v{})\n  {}",
            n["type"].as_str().unwrap_or_default(),
            n["version"],
            n["doc"].as_str().unwrap_or_default()
        );
        for (title, key) in [("inputs", "inputs"), ("outputs", "outputs")] {
            for p in n[key].as_array().into_iter().flatten() {
                outln!(
                    "  {title:<8} {:<12} {:<12} {}",
                    p["name"].as_str().unwrap_or_default(),
                    p["kind"].as_str().unwrap_or_default(),
                    p["doc"].as_str().unwrap_or_default()
                );
            }
        }
        for p in n["params"].as_array().into_iter().flatten() {
            let dflt = if p["required"].as_bool() == Some(true) {
                "required".to_string()
            } else {
                match &p["default"] {
                    serde_json::Value::Null => "optional".into(),
                    d => format!("= {d}"),
                }
            };
            let mut ty = match p["range"].as_str() {
                Some(r) => format!("{}, {r}", p["type"].as_str().unwrap_or_default()),
                None => p["type"].as_str().unwrap_or_default().to_string(),
            };
            if p["keyed"] == false {
                // Changing it reruns nothing: say so where users choose values.
                ty.push_str("; a run setting, not in the cache key");
            }
            outln!(
                "  param    {:<18} {:<14} {}  ({ty})",
                p["name"].as_str().unwrap_or_default(),
                dflt,
                p["doc"].as_str().unwrap_or_default(),
            );
        }
        outln!("");
    }
    Ok(())
}
