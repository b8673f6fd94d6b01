//! TARGET arguments, resolved by the engine ([`dag_engine::Target`]).

use super::*;

/// The artifact a target names.
pub(super) fn resolve(store: &Store, target: &str, graph: Option<&Path>) -> Result<Digest> {
    Ok(dag_engine::Target::resolve(store, target, graph)?.digest)
}
