//! The engine of `dag`: typed graphs loaded from TOML, canonical cache keys, an
//! incremental scheduler with early cutoff, item-level resumability and lineage.
//!
//! The engine knows nothing of models. Node *types* are plugged in through the
//! [`Node`] trait and a [`Registry`]; the engine checks a graph against their
//! [`NodeSpec`]s (ports, kinds, params) before anything runs, derives each node
//! instance's key from its type, version, canonical params and input digests, and runs
//! only instances whose key has no cached outputs.
//!
//! Rules, each tested by snapshotting the execution log (`tests/engine.rs`):
//! - a node runs only when its key has no cached outputs;
//! - a re-executed node that produces byte-identical outputs does not make its
//!   downstream rerun (early cutoff falls out of keys over input *digests*);
//! - a failing node stops its downstream only; independent branches finish;
//! - outputs are committed only after a node succeeds: nothing partial is ever cached.
#![deny(missing_docs)]

mod explain;
mod graph;
mod instance;
mod key;
mod lineage;
mod memo;
mod node;
mod run;
mod spec;
mod target;
mod value;

pub use dag_protocol::NodeError;
pub use explain::{NodeState, StatusLine, explain_change};
pub use graph::{Graph, GraphError, LoadOptions, NodeDecl};
pub use instance::{InstanceId, Source};
pub use key::{Preimage, node_key};
pub use lineage::{LineageNode, downstream, upstream, upstream_in};
pub use memo::{Fingerprint, Memo, MemoKey};
pub use node::{InputArtifact, Node, ParamError, Registry, RunContext, store_failure};
pub use run::{Event, Limits, RunMode, RunOptions, RunSummary, Runner, replay_memo};
pub use spec::{ArtifactKind, NodeSpec, ParamSpec, ParamType, PortSpec, Range, Resources};
pub use target::{Target, TargetError};
pub use value::Value;

/// The engine's version, recorded in every run.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
