//! What a command's TARGET names: a pin, a digest prefix, or a node output of a recorded
//! (or running) run.

use super::*;

/// What a TARGET names: an artifact and, when it was named as a node output of a run, the
/// computation that produced it there and that run (for its own provenance).
pub(super) struct Resolved {
    pub(super) digest: Digest,
    pub(super) in_run: Option<(Digest, String, RunRecord)>,
}

impl Resolved {
    fn artifact(digest: Digest) -> Resolved {
        Resolved {
            digest,
            in_run: None,
        }
    }

    /// The computation that produced `d` in the run the target was found in.
    pub(super) fn producer_in_run(&self, d: &Digest) -> Option<Digest> {
        let (_, _, run) = self.in_run.as_ref()?;
        run.nodes
            .iter()
            .find(|n| n.outputs.iter().any(|(_, o)| o == d))
            .and_then(|n| n.key)
    }
}

/// The artifact a target names.
pub(super) fn resolve(store: &Store, target: &str, graph: Option<&Path>) -> Result<Digest> {
    Ok(resolve_target(store, target, graph)?.digest)
}

/// Resolves a target: a pin, a digest prefix, or `node[.port]` of the latest run.
pub(super) fn resolve_target(
    store: &Store,
    target: &str,
    graph: Option<&Path>,
) -> Result<Resolved> {
    if let Some((_, d)) = store.pins()?.into_iter().find(|(n, _)| n == target) {
        return Ok(Resolved::artifact(d));
    }
    if target.len() >= 4 && target.chars().all(|c| c.is_ascii_hexdigit()) {
        let found = store.resolve_prefix(target)?;
        match found.len() {
            1 => return Ok(Resolved::artifact(found[0])),
            0 => {}
            n => bail!("`{target}` matches {n} artifacts\n\nhint: give more hex digits"),
        }
    }
    let graph_abs = graph.map(|g| {
        std::path::absolute(g)
            .unwrap_or_else(|_| g.to_path_buf())
            .display()
            .to_string()
    });
    let mut runs = store.runs()?;
    runs.reverse();
    let (inst, port) = match target.rsplit_once('.') {
        Some((i, p)) if !i.is_empty() => (i, Some(p)),
        _ => (target, None),
    };
    for run in runs
        .iter()
        .filter(|r| graph_abs.as_ref().is_none_or(|g| &r.graph == g))
    {
        for n in &run.nodes {
            let candidates = [(target, None), (inst, port)];
            for (name, port) in candidates {
                if n.instance == name && !n.outputs.is_empty() {
                    let out = match port {
                        Some(p) => n.outputs.iter().find(|(o, _)| o == p),
                        None => n.outputs.first(),
                    };
                    if let Some((port, d)) = out {
                        return Ok(Resolved {
                            digest: *d,
                            in_run: n.key.map(|k| (k, port.clone(), run.clone())),
                        });
                    }
                }
            }
        }
        // A run in progress lists its nodes only when it ends; what it has committed so
        // far is named by the graph's head pointers.
        if run.status == RunStatus::Running {
            for (name, port) in [(target, None), (inst, port)] {
                let Some(key) = store.head(&dag_engine::head_scope(&run.graph, name))? else {
                    continue;
                };
                let outputs = store.cache_outputs(&key)?.unwrap_or_default();
                let out = match port {
                    Some(p) => outputs.iter().find(|(o, _)| o == p),
                    None => outputs.first(),
                };
                if let Some((port, d)) = out {
                    return Ok(Resolved {
                        digest: *d,
                        in_run: Some((key, port.clone(), run.clone())),
                    });
                }
            }
        }
    }
    Err(anyhow!(
        "`{target}` is not a pin, an artifact digest, or a node output of a recorded run\n\nhint: run `dag log` to see runs, or `dag status GRAPH` for node names"
    ))
}
