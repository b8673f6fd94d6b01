//! What a command-line TARGET names: a pin, a digest prefix, or `node[.port]`: a node
//! output of the latest recorded run (or of the run in progress, through its graph's head
//! pointers).

use std::path::Path;

use dag_diagnostic::Hint;
use dag_store::{Digest, RunRecord, RunStatus, Store};

use crate::run::head_scope;

/// An artifact a target names and, when it was named as a node output of a run, the
/// computation that produced it there and that run (for its own provenance and metadata,
/// which differ from the artifact record's first producer's when identical content came from
/// elsewhere).
#[derive(Debug, Clone)]
pub struct Target {
    /// The artifact.
    pub digest: Digest,
    /// The producing computation's key, the output port, and the run it was found in.
    pub in_run: Option<(Digest, String, RunRecord)>,
}

/// Why a target names nothing.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// A digest prefix shared by several artifacts.
    #[error("`{target}` matches {matches} artifacts")]
    Ambiguous {
        /// The prefix.
        target: String,
        /// How many artifacts it matches.
        matches: usize,
    },
    /// Neither a pin, nor a digest, nor a node output.
    #[error("`{0}` is not a pin, an artifact digest, or a node output of a recorded run")]
    Unknown(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] dag_store::Error),
}

impl Hint for TargetError {
    fn hint(&self) -> Option<String> {
        match self {
            TargetError::Ambiguous { .. } => Some("give more hex digits".into()),
            TargetError::Unknown(_) => {
                Some("run `dag log` to see runs, or `dag status GRAPH` for node names".into())
            }
            // Transparent: the store error is not a cause of its own in the chain.
            TargetError::Store(e) => e.hint(),
        }
    }
}

impl Target {
    /// A target that names an artifact directly (a pin or a digest).
    pub fn artifact(digest: Digest) -> Target {
        Target {
            digest,
            in_run: None,
        }
    }

    /// Resolves `target`, among the runs of `graph` when one is given.
    pub fn resolve(
        store: &Store,
        target: &str,
        graph: Option<&Path>,
    ) -> Result<Target, TargetError> {
        if let Some((_, d)) = store.pins()?.into_iter().find(|(n, _)| n == target) {
            return Ok(Target::artifact(d));
        }
        if target.len() >= 4 && target.chars().all(|c| c.is_ascii_hexdigit()) {
            let found = store.resolve_prefix(target)?;
            match found.len() {
                1 => return Ok(Target::artifact(found[0])),
                0 => {}
                n => {
                    return Err(TargetError::Ambiguous {
                        target: target.to_string(),
                        matches: n,
                    });
                }
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
                            return Ok(Target {
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
                    let Some(key) = store.head(&head_scope(&run.graph, name))? else {
                        continue;
                    };
                    let outputs = store.cache_outputs(&key)?.unwrap_or_default();
                    let out = match port {
                        Some(p) => outputs.iter().find(|(o, _)| o == p),
                        None => outputs.first(),
                    };
                    if let Some((port, d)) = out {
                        return Ok(Target {
                            digest: *d,
                            in_run: Some((key, port.clone(), run.clone())),
                        });
                    }
                }
            }
        }
        Err(TargetError::Unknown(target.to_string()))
    }

    /// The computation that produced `d` in the run the target was found in.
    pub fn producer_in_run(&self, d: &Digest) -> Option<Digest> {
        let (_, _, run) = self.in_run.as_ref()?;
        run.nodes
            .iter()
            .find(|n| n.outputs.iter().any(|(_, o)| o == d))
            .and_then(|n| n.key)
    }
}
