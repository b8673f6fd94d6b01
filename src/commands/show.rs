//! `dag show`: an artifact's record, provenance and content.

use super::*;

pub(super) fn show(
    store: &Store,
    target: &dag_engine::Target,
    rows: usize,
    json: bool,
) -> Result<()> {
    let d = &target.digest;
    let rec = store
        .artifact(d)?
        .ok_or_else(|| anyhow!("no artifact {d}"))?;
    // Named as a node's output: that computation's provenance and metadata, which differ
    // from the record's (its first producer's) when identical content came from elsewhere.
    let (producer_key, own_meta) = match &target.in_run {
        Some((key, port, _)) => (Some(*key), store.output_meta(key, port)?),
        None => (rec.producer, None),
    };
    let producer = producer_key.and_then(|k| store.cache_get(&k).ok().flatten());
    let meta = own_meta.unwrap_or_else(|| rec.meta());
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "artifact": d.to_hex(), "kind": rec.kind, "size": rec.size, "meta": meta,
                "producer": producer.as_ref().map(|p| json!({"instance": p.label, "run": p.run_id, "preimage": p.preimage()})),
                "files": rec.entries.iter().map(|e| json!({"path": e.path, "size": e.size, "blob": e.digest.to_hex()})).collect::<Vec<_>>(),
            }))?
        );
        return Ok(());
    }
    outln!("artifact  {}", d.to_hex());
    outln!("kind      {}", rec.kind);
    outln!("size      {} bytes", rec.size);
    if let Some(p) = &producer {
        outln!("produced  by {} in run {}", p.label, p.run_id);
    }
    if !meta.is_null() {
        outln!("meta      {meta}");
    }
    outln!("");
    match rec.layout {
        Layout::Tree => {
            let r: Vec<Vec<String>> = rec
                .entries
                .iter()
                .map(|e| vec![e.size.to_string(), e.path.clone()])
                .collect();
            out!("{}", table(&r));
            // A report is read, not listed: its table is the point, the plots sit beside it.
            if rec.kind == "report"
                && let Some(md) = rec.entries.iter().find(|e| e.path == "results.md")
            {
                outln!("");
                out!("{}", String::from_utf8_lossy(&store.read(&md.digest)?));
            }
        }
        Layout::File if !rec.children.is_empty() || rec.kind == "checkpoints" => {
            for (name, d) in store.read_list(d)? {
                outln!("{}  {name}", d.short());
            }
        }
        Layout::File => {
            let bytes = store.read(d)?;
            let text = String::from_utf8_lossy(&bytes);
            let parsed: Vec<serde_json::Map<String, serde_json::Value>> = text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .take(rows + 1)
                .collect();
            // Row artifacts are JSONL; everything else is shown as JSON or text.
            let kind = rec.kind.parse::<dag_engine::ArtifactKind>().ok();
            if kind.is_some_and(dag_engine::ArtifactKind::is_rows) {
                let cols: Vec<String> = parsed
                    .first()
                    .map(|r| r.keys().cloned().collect())
                    .unwrap_or_default();
                let mut t = vec![cols.clone()];
                for r in parsed.iter().take(rows) {
                    t.push(
                        cols.iter()
                            .map(|c| {
                                cell(
                                    &dag_table::as_text(
                                        r.get(c).unwrap_or(&serde_json::Value::Null),
                                    ),
                                    40,
                                )
                            })
                            .collect(),
                    );
                }
                out!("{}", table(&t));
                let total = text.lines().count();
                if total > rows {
                    outln!("... {} more rows (--rows N to see more)", total - rows);
                }
            } else if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                match v.get("table").and_then(|t| t.as_array()) {
                    Some(t) if kind == Some(dag_engine::ArtifactKind::Metrics) => {
                        out!("{}", metrics_table(t))
                    }
                    _ => outln!("{}", serde_json::to_string_pretty(&v)?),
                }
            } else {
                out!("{}", text.chars().take(4000).collect::<String>());
            }
        }
    }
    Ok(())
}

/// A metrics artifact's `table` rows: the columns every row has, in first-seen order, numbers
/// to four decimals, and `ci_low`/`ci_high` shown as one interval column.
pub(super) fn metrics_table(rows: &[serde_json::Value]) -> String {
    let mut cols: Vec<String> = Vec::new();
    for r in rows {
        for k in r.as_object().into_iter().flat_map(|o| o.keys()) {
            if !cols.contains(k) && k != "ci_high" {
                cols.push(k.clone());
            }
        }
    }
    let fmt = |v: &serde_json::Value| match v {
        serde_json::Value::Number(n) if n.is_f64() => {
            format!("{:.4}", n.as_f64().unwrap_or(f64::NAN))
        }
        serde_json::Value::Null => "-".to_string(),
        other => dag_table::as_text(other),
    };
    let header = cols
        .iter()
        .map(|c| {
            if c == "ci_low" {
                "95% CI".to_string()
            } else {
                c.clone()
            }
        })
        .collect();
    let mut t = vec![header];
    for r in rows {
        t.push(
            cols.iter()
                .map(|c| match (c.as_str(), r.get("ci_high")) {
                    ("ci_low", Some(hi)) if !hi.is_null() => {
                        format!("[{}, {}]", fmt(&r[c.as_str()]), fmt(hi))
                    }
                    _ => cell(&fmt(r.get(c).unwrap_or(&serde_json::Value::Null)), 60),
                })
                .collect(),
        );
    }
    table(&t)
}

/// `dag show TARGET`.
pub(super) fn show_command(
    explicit: Option<&Path>,
    a: &crate::cli::ShowArgs,
    json: bool,
) -> Result<Exit> {
    let store = open_reader(explicit, a.graph.as_deref())?;
    let t = dag_engine::Target::resolve(&store, &a.target, a.graph.as_deref())?;
    show(&store, &t, a.rows, json)?;
    Ok(Exit::Success)
}
