//! Why is a node stale? A diff of two cache-key pre-images, in the user's words.

use serde::Serialize;
use serde_json::Value as Json;

/// The state of one node instance as `dag status` and `dag plan` report it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum NodeState {
    /// Outputs are in the cache.
    Cached,
    /// Would run: it ran before with a different key, for these reasons.
    Stale {
        /// What changed since the last run, one line each.
        reasons: Vec<String>,
    },
    /// Would run: no earlier run of this node is known.
    NeverRun,
    /// Cannot be keyed yet: these upstream instances must run first.
    Waiting {
        /// Upstream instances that will (re)run.
        upstream: Vec<String>,
    },
    /// Ran in this run.
    Ran,
    /// Failed in this run.
    Failed {
        /// The error.
        error: String,
    },
    /// Not run because an upstream instance failed.
    Skipped {
        /// The failed upstream instances.
        upstream: Vec<String>,
    },
    /// Not run because the run was cancelled.
    Cancelled,
}

/// One line of `dag status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusLine {
    /// Instance name.
    pub instance: String,
    /// Node type.
    pub node_type: String,
    /// The key, when computable.
    pub key: Option<String>,
    /// State.
    #[serde(flatten)]
    pub state: NodeState,
}

fn short(s: &str) -> String {
    s.chars().take(12).collect()
}

fn show(v: &Json) -> String {
    match v {
        Json::Object(o) if o.len() == 1 && o["content"].is_array() => {
            let files: Vec<String> = o["content"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| short(d.as_str().unwrap_or_default()))
                .collect();
            format!("file contents [{}]", files.join(", "))
        }
        Json::Object(o) if o.len() == 1 && o.contains_key("content") => {
            format!(
                "file content {}",
                short(o["content"].as_str().unwrap_or_default())
            )
        }
        other => other.to_string(),
    }
}

fn new_or_none(v: Option<&Json>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "none".into())
}

/// What differs between the pre-image a node last ran with (`old`) and the one it
/// would run with now (`new`).
pub fn explain_change(old: &Json, new: &Json) -> Vec<String> {
    let mut out = vec![];
    if old["type"] != new["type"] || old["version"] != new["version"] {
        out.push(format!(
            "implementation changed: {} v{} -> {} v{}",
            old["type"].as_str().unwrap_or("?"),
            old["version"],
            new["type"].as_str().unwrap_or("?"),
            new["version"]
        ));
    }
    let empty = serde_json::Map::new();
    let (op, np) = (
        old["params"].as_object().unwrap_or(&empty),
        new["params"].as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<&String> = op.keys().chain(np.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        match (op.get(k), np.get(k)) {
            (Some(a), Some(b)) if a != b => {
                if a.get("content").is_some() {
                    out.push(format!(
                        "input file `{k}` changed ({} -> {})",
                        show(a),
                        show(b)
                    ));
                } else {
                    out.push(format!("param {k} changed {} -> {}", show(a), show(b)));
                }
            }
            (None, Some(b)) => out.push(format!("param {k} added ({})", show(b))),
            (Some(a), None) => out.push(format!("param {k} removed (was {})", show(a))),
            _ => {}
        }
    }
    let (oi, ni) = (
        old["inputs"].as_object().unwrap_or(&empty),
        new["inputs"].as_object().unwrap_or(&empty),
    );
    let mut ports: Vec<&String> = oi.keys().chain(ni.keys()).collect();
    ports.sort();
    ports.dedup();
    for p in ports {
        match (oi.get(p), ni.get(p)) {
            (Some(a), Some(b)) if a != b => {
                let list = |v: &Json| {
                    v.as_array()
                        .map(|a| {
                            a.iter()
                                .map(|d| short(d.as_str().unwrap_or_default()))
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .unwrap_or_default()
                };
                out.push(format!("input {p} changed ({} -> {})", list(a), list(b)));
            }
            (None, Some(_)) => out.push(format!("input {p} connected")),
            (Some(_), None) => out.push(format!("input {p} disconnected")),
            _ => {}
        }
    }
    if old.get("material") != new.get("material") {
        out.push(format!(
            "its environment changed: {} -> {}",
            new_or_none(old.get("material")),
            new_or_none(new.get("material"))
        ));
    }
    if out.is_empty() {
        out.push(
            "its last outputs are no longer in the store (gc or verify --repair removed them)"
                .into(),
        );
    }
    out
}
