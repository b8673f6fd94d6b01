//! dag-runtime
