//! TARGET arguments, resolved by the engine ([`dag_engine::Target`]).

use super::*;

/// What a TARGET names.
pub(super) type Resolved = dag_engine::Target;

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
    Ok(dag_engine::Target::resolve(store, target, graph)?)
}
