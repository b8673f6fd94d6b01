//! dag-tasks
