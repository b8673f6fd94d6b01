//! `dag status` and `dag plan`: what would run and why, without running it.

use super::*;

pub(super) fn status(
    explicit: Option<&Path>,
    g: &GraphArgs,
    json: bool,
    plan_only: bool,
) -> Result<Exit> {
    // As `dag run`: an unchanged graph over an unchanged store is answered from its memo.
    let key = super::run::memo_key(g);
    let early = key.and_then(|_| open_reader(explicit, Some(&g.graph)).ok());
    let memoised = match (&early, &key) {
        (Some(store), Some(key)) => Memo::lookup(store, key).map(|m| m.lines()),
        _ => None,
    };
    let all = match memoised {
        Some(lines) => lines,
        None => {
            let graph = Arc::new(load(g)?);
            let store = Arc::new(match early {
                Some(s) => s,
                None => open_reader(explicit, Some(&g.graph))?,
            });
            let opts = RunOptions {
                mode: RunMode::DryRun,
                targets: g.only.clone(),
                ..Default::default()
            };
            let runner = Runner::new(store, graph, opts);
            runtime()?.block_on(runner.run(&|_| {}))?.lines
        }
    };
    let lines: Vec<_> = all
        .iter()
        .filter(|l| !plan_only || !matches!(l.state, NodeState::Cached))
        .collect();
    if json {
        outln!("{}", serde_json::to_string_pretty(&lines)?);
        return Ok(Exit::Success);
    }
    let mut rows = vec![];
    for l in &lines {
        let (state, why) = match &l.state {
            NodeState::Cached => ("cached", String::new()),
            NodeState::Stale { reasons } => ("stale", reasons.join("; ")),
            NodeState::NeverRun => ("never run", String::new()),
            NodeState::Waiting { upstream } => {
                ("pending", format!("after {}", upstream.join(", ")))
            }
            other => ("?", format!("{other:?}")),
        };
        let state = if plan_only && state != "pending" {
            "will run"
        } else {
            state
        };
        rows.push(vec![
            state.to_string(),
            l.instance.clone(),
            l.node_type.clone(),
            why,
        ]);
    }
    if plan_only && rows.is_empty() {
        outln!("nothing to run: every node is cached");
    } else {
        out!("{}", table(&rows));
    }
    Ok(Exit::Success)
}
