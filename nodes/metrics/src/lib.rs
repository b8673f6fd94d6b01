//! dag-metrics
