//! dag-engine
