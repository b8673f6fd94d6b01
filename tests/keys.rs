//! The cache keys of the study graphs, recorded: a change to how params are declared,
//! defaulted, coerced or canonicalised (the worker protocol, a node's `Params`) must keep
//! every existing store's cache hits, so every key must stay byte-identical unless a node's
//! version is bumped on purpose. Input artifacts and path contents are fixed placeholders,
//! so the keys depend only on the graphs and the node definitions.
//!
//! After an intended change (a version bump), rewrite the record with
//! `DAG_BLESS_KEYS=1 scripts/test --test keys` and commit it with the change that explains it.

use std::collections::BTreeMap;
use std::path::Path;

use dag_engine::{Graph, LoadOptions, Preimage, Value};
use dag_store::{Digest, hash_bytes};

const RECORD: &str = "tests/fixtures/keys.json";

/// Every instance of a matrix: each combination of its params' values.
fn combinations(matrix: &[(String, Vec<Value>)]) -> Vec<Vec<(String, Value)>> {
    let mut out = vec![vec![]];
    for (param, values) in matrix {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                values.iter().map(move |v| {
                    let mut c = prefix.clone();
                    c.push((param.clone(), v.clone()));
                    c
                })
            })
            .collect();
    }
    out
}

fn placeholder(what: &str) -> Digest {
    hash_bytes(what.as_bytes())
}

/// Instance label to (key, pre-image) for one graph and profile.
fn keys(graph: &Path, profile: Option<&str>) -> BTreeMap<String, serde_json::Value> {
    let registry = dag_nodes::registry();
    let opts = LoadOptions {
        profile: profile.map(str::to_string),
        set: vec![],
    };
    let g = Graph::load(graph, &registry, &opts).unwrap();
    let mut out = BTreeMap::new();
    for decl in &g.nodes {
        let spec = decl.node.spec();
        let inputs: BTreeMap<String, Vec<Digest>> = decl
            .inputs
            .iter()
            .map(|i| {
                let ds = i
                    .sources
                    .iter()
                    .map(|s| {
                        let each = if s.each { "[*]" } else { "" };
                        placeholder(&format!("{}.{}{each}", g.nodes[s.node].name, s.port))
                    })
                    .collect();
                (i.port.to_string(), ds)
            })
            .collect();
        for combination in combinations(&decl.matrix) {
            let mut params = decl.params.clone();
            let mut label = decl.name.clone();
            if !combination.is_empty() {
                let parts: Vec<String> = combination
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.to_json()))
                    .collect();
                label = format!("{label}[{}]", parts.join(","));
            }
            params.extend(combination);
            let paths = params
                .keys()
                .filter(|k| {
                    spec.param(k)
                        .is_some_and(|p| p.ty == dag_engine::ParamType::Path)
                })
                .map(|k| (k.clone(), vec![placeholder(&format!("path:{k}"))]))
                .collect();
            let pre = Preimage::new(spec, &params, &paths, &inputs);
            out.insert(
                label,
                serde_json::json!({ "key": pre.key().to_hex(), "preimage": pre.0 }),
            );
        }
    }
    out
}

#[test]
fn the_study_graphs_keep_their_cache_keys() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut now = BTreeMap::new();
    for graph in ["ahb", "probes", "hh-probes", "propensity", "benchmarks"] {
        for profile in [None, Some("dev")] {
            let name = format!(
                "{graph}{}",
                profile
                    .map(|p| format!(" --profile {p}"))
                    .unwrap_or_default()
            );
            now.insert(
                name,
                keys(&root.join(format!("graphs/{graph}.toml")), profile),
            );
        }
    }
    let now = serde_json::to_value(&now).unwrap();
    let path = root.join(RECORD);
    if std::env::var_os("DAG_BLESS_KEYS").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&now).unwrap() + "\n").unwrap();
        return;
    }
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut changed = vec![];
    for (graph, instances) in recorded.as_object().unwrap() {
        for (instance, was) in instances.as_object().unwrap() {
            let is = &now[graph][instance];
            if is != was {
                changed.push(format!(
                    "{graph}: {instance}\n  recorded: {}\n  now:      {}",
                    was["preimage"], is["preimage"]
                ));
            }
        }
    }
    assert!(
        changed.is_empty(),
        "{} cache key(s) changed, so existing stores would rerun them:\n{}",
        changed.len(),
        changed.join("\n")
    );
    assert_eq!(
        now, recorded,
        "instances were added or removed; bless the record if intended"
    );
}
