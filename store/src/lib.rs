//! dag-store
