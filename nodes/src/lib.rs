//! dag-nodes
