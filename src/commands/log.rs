//! `dag log`: the run history, and one run's outcomes.

use super::*;

pub(super) fn find_run(store: &Store, id: &str) -> Result<RunRecord> {
    let runs = store.runs()?;
    if let Some(back) = id.strip_prefix("last") {
        let n: usize = back
            .strip_prefix('~')
            .map(str::parse)
            .transpose()?
            .unwrap_or(0);
        return runs
            .iter()
            .rev()
            .nth(n)
            .cloned()
            .ok_or_else(|| anyhow!("there are only {} runs", runs.len()));
    }
    let found: Vec<_> = runs.into_iter().filter(|r| r.id.starts_with(id)).collect();
    match found.len() {
        1 => Ok(found.into_iter().next().expect("one")),
        0 => bail!(Hinted::new(
            format!("no run `{id}`"),
            "`dag log` lists runs"
        )),
        n => bail!(Hinted::new(
            format!("`{id}` matches {n} runs"),
            "give more of the id"
        )),
    }
}

pub(super) fn log(
    explicit: Option<&Path>,
    graph: Option<&Path>,
    limit: usize,
    one: Option<&str>,
    json: bool,
) -> Result<Exit> {
    let store = open_reader(explicit, graph)?;
    if let Some(id) = one {
        let r = find_run(&store, id)?;
        if json {
            outln!("{}", serde_json::to_string_pretty(&run_json(&r))?);
        } else {
            outln!(
                "run {} of {} ({:?}) on {}, dag {}",
                r.id,
                r.graph,
                r.status,
                r.host,
                r.tool_version
            );
            let rows: Vec<Vec<String>> = r
                .nodes
                .iter()
                .map(|n| {
                    let st = match &n.status {
                        NodeRunStatus::Failed(m) => {
                            format!("failed: {}", m.lines().next().unwrap_or(""))
                        }
                        NodeRunStatus::Skipped(m) => format!("skipped: {m}"),
                        other => format!("{other:?}").to_lowercase(),
                    };
                    vec![
                        n.instance.clone(),
                        n.node_type.clone(),
                        format!("{:.2}s", n.seconds),
                        st,
                    ]
                })
                .collect();
            out!("{}", table(&rows));
        }
        return Ok(Exit::Success);
    }
    let graph_abs = graph.map(|g| {
        std::path::absolute(g)
            .unwrap_or_else(|_| g.to_path_buf())
            .display()
            .to_string()
    });
    let runs: Vec<RunRecord> = store
        .runs()?
        .into_iter()
        .filter(|r| graph_abs.as_ref().is_none_or(|g| &r.graph == g))
        .collect();
    let shown: Vec<&RunRecord> = runs.iter().rev().take(limit).collect();
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&shown.iter().map(|r| run_json(r)).collect::<Vec<_>>())?
        );
        return Ok(Exit::Success);
    }
    let mut rows = vec![vec![
        "run".into(),
        "status".into(),
        "ran".into(),
        "cached".into(),
        "failed".into(),
        "seconds".into(),
        "graph".into(),
    ]];
    for r in shown {
        let c = |f: fn(&NodeRunStatus) -> bool| {
            r.nodes.iter().filter(|n| f(&n.status)).count().to_string()
        };
        rows.push(vec![
            r.id.clone(),
            format!("{:?}", r.status).to_lowercase(),
            c(|s| matches!(s, NodeRunStatus::Ran)),
            c(|s| matches!(s, NodeRunStatus::Cached)),
            c(|s| matches!(s, NodeRunStatus::Failed(_))),
            r.finished
                .map(|f| (f.saturating_sub(r.started)).to_string())
                .unwrap_or_else(|| "-".into()),
            r.graph.clone(),
        ]);
    }
    out!("{}", table(&rows));
    Ok(Exit::Success)
}

pub(super) fn run_json(r: &RunRecord) -> serde_json::Value {
    json!({
        "id": r.id, "graph": r.graph, "profile": r.profile, "status": format!("{:?}", r.status).to_lowercase(),
        "started": r.started, "finished": r.finished, "host": r.host, "tool_version": r.tool_version,
        "nodes": r.nodes.iter().map(|n| json!({
            "instance": n.instance, "type": n.node_type, "key": n.key.map(|k| k.to_hex()),
            "status": format!("{:?}", n.status), "seconds": n.seconds,
            "params": serde_json::from_str::<serde_json::Value>(&n.params_json).unwrap_or_default(),
            "outputs": n.outputs.iter().map(|(p, d)| (p.clone(), json!(d.to_hex()))).collect::<serde_json::Map<_, _>>(),
        })).collect::<Vec<_>>(),
    })
}
