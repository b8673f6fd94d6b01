//! Lineage: where an artifact came from, and what used it.

use dag_store::{Digest, Store};
use serde::Serialize;

/// One artifact in a lineage tree.
#[derive(Debug, Clone, Serialize)]
pub struct LineageNode {
    /// The artifact.
    pub artifact: String,
    /// Its kind.
    pub kind: String,
    /// The node instance that produced it (`None` for external inputs).
    pub producer: Option<Producer>,
    /// Upstream (for [`upstream`]) or downstream (for [`downstream`]) artifacts.
    pub next: Vec<LineageNode>,
}

/// A producing computation.
#[derive(Debug, Clone, Serialize)]
pub struct Producer {
    /// Instance that first computed it.
    pub instance: String,
    /// Node type and version, params, inputs: the cache key's pre-image.
    pub preimage: serde_json::Value,
    /// The cache key.
    pub key: String,
    /// The run that computed it.
    pub run_id: String,
}

fn producer(
    store: &Store,
    key: &Digest,
) -> Result<Option<(Producer, dag_store::CacheEntry)>, dag_store::Error> {
    Ok(store.cache_get(key)?.map(|e| {
        (
            Producer {
                instance: e.label.clone(),
                preimage: e.preimage(),
                key: key.to_hex(),
                run_id: e.run_id.clone(),
            },
            e,
        )
    }))
}

impl LineageNode {
    fn leaf(d: &Digest, rec: Option<&dag_store::ArtifactRecord>) -> LineageNode {
        LineageNode {
            artifact: d.to_hex(),
            kind: rec
                .map(|r| r.kind.clone())
                .unwrap_or_else(|| "unknown".into()),
            producer: None,
            next: vec![],
        }
    }
}

/// The full upstream tree of an artifact: each producer and, recursively, its inputs.
pub fn upstream(store: &Store, d: &Digest) -> Result<LineageNode, dag_store::Error> {
    upstream_in(store, d, &|_| None)
}

/// [`upstream`] as one run computed it: `producer_in_run` names the computation (cache key)
/// that produced an artifact in that run. Identical content can come from several
/// computations (an empty table from two graphs); the artifact's record names only the
/// first, so lineage read through a run follows that run's own producers, and falls back
/// to the record's for what the run did not produce.
pub fn upstream_in(
    store: &Store,
    d: &Digest,
    producer_in_run: &dyn Fn(&Digest) -> Option<Digest>,
) -> Result<LineageNode, dag_store::Error> {
    let rec = store.artifact(d)?;
    let mut node = LineageNode::leaf(d, rec.as_ref());
    if let Some(key) = producer_in_run(d).or_else(|| rec.and_then(|r| r.producer))
        && let Some((p, entry)) = producer(store, &key)?
    {
        node.producer = Some(p);
        for i in &entry.inputs {
            node.next.push(upstream_in(store, i, producer_in_run)?);
        }
    }
    Ok(node)
}

/// Everything computed from an artifact, recursively ("what used this dataset?").
pub fn downstream(store: &Store, d: &Digest) -> Result<LineageNode, dag_store::Error> {
    let mut seen = std::collections::HashSet::new();
    down(store, d, &mut seen)
}

fn down(
    store: &Store,
    d: &Digest,
    seen: &mut std::collections::HashSet<Digest>,
) -> Result<LineageNode, dag_store::Error> {
    let rec = store.artifact(d)?;
    let mut node = LineageNode::leaf(d, rec.as_ref());
    if !seen.insert(*d) {
        return Ok(node);
    }
    for key in store.consumers(d)? {
        if let Some((p, entry)) = producer(store, &key)? {
            for (_, out) in &entry.outputs {
                let mut child = down(store, out, seen)?;
                child.producer = Some(p.clone());
                node.next.push(child);
            }
        }
    }
    Ok(node)
}
