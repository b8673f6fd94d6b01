//! Cache keys: blake3 over a canonical pre-image of a node instance.

use std::collections::BTreeMap;

use dag_store::Digest;
use serde_json::{Value as Json, json};

use crate::spec::ParamType;
use crate::{NodeSpec, Value};

/// Everything that determines a node instance's outputs, in canonical form. The key
/// is its hash; the pre-image itself is stored with the cache entry so that "why did
/// this rerun?" is answered by a diff, never a guess.
#[derive(Debug, Clone, PartialEq)]
pub struct Preimage(pub Json);

impl Preimage {
    /// Builds the pre-image. `path_digests` holds the content digests of every
    /// [`ParamType::Path`] param (one) and list of paths (one per path, in order): a path
    /// enters the key by content, not by name, so moving a data file does not invalidate
    /// anything and editing it does.
    pub fn new(
        spec: &NodeSpec,
        params: &BTreeMap<String, Value>,
        path_digests: &BTreeMap<String, Vec<Digest>>,
        inputs: &BTreeMap<String, Vec<Digest>>,
    ) -> Preimage {
        let mut p = serde_json::Map::new();
        for (k, v) in params {
            if spec.param(k).is_some_and(|s| !s.keyed) {
                continue;
            }
            let ty = spec.param(k).map(|s| &s.ty);
            let j = match (ty, path_digests.get(k)) {
                (Some(ParamType::Path), Some(d)) if d.len() == 1 => {
                    json!({ "content": d[0].to_hex() })
                }
                (Some(t), Some(d)) if t.is_paths() => {
                    json!({ "content": d.iter().map(|d| d.to_hex()).collect::<Vec<_>>() })
                }
                _ => v.to_json(),
            };
            p.insert(k.clone(), j);
        }
        let mut i = serde_json::Map::new();
        for (port, ds) in inputs {
            i.insert(
                port.clone(),
                ds.iter().map(|d| Json::String(d.to_hex())).collect(),
            );
        }
        Preimage(json!({
            "type": spec.name,
            "version": spec.version,
            "params": p,
            "inputs": i,
        }))
    }

    /// Adds what the node type itself says its outputs depend on beyond params and inputs
    /// ([`crate::Node::key_material`]: a user step's interpreter version). Absent for every
    /// other type, so their keys are what they were.
    pub fn with_material(mut self, material: Option<Json>) -> Preimage {
        if let (Some(m), Json::Object(o)) = (material, &mut self.0) {
            o.insert("material".into(), m);
        }
        self
    }

    /// The key.
    pub fn key(&self) -> Digest {
        let mut h = blake3::Hasher::new_derive_key("dag node cache key v1");
        h.update(self.0.to_string().as_bytes());
        h.finalize().into()
    }
}

/// The key of a node instance (see [`Preimage::new`]).
pub fn node_key(
    spec: &NodeSpec,
    params: &BTreeMap<String, Value>,
    path_digests: &BTreeMap<String, Vec<Digest>>,
    inputs: &BTreeMap<String, Vec<Digest>>,
) -> Digest {
    Preimage::new(spec, params, path_digests, inputs).key()
}
