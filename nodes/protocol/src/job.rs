//! The job `dag` hands `dag-worker`, and the reports the worker sends back.
//!
//! `dag` writes a [`Job`] as JSON and runs `dag-worker JOB.json`; the worker writes its
//! outputs where the job says and reports on stdout, one JSON [`Report`] per line.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One input artifact in a job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobInput {
    /// Read-only path (file or directory).
    pub path: PathBuf,
    /// Digest, hex.
    pub digest: String,
    /// Artifact kind.
    pub kind: String,
    /// Producer's metadata.
    pub meta: serde_json::Value,
    /// Where it came from.
    pub label: String,
}

/// What the worker is asked to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// Node type.
    pub node: String,
    /// Instance name, for messages.
    pub instance: String,
    /// Params as canonical JSON (paths absolute).
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Inputs by port.
    pub inputs: BTreeMap<String, Vec<JobInput>>,
    /// Output port to the path to write (a file, or an existing directory).
    pub outputs: BTreeMap<String, PathBuf>,
    /// A scratch directory.
    pub scratch: PathBuf,
    /// Items saved by earlier attempts, in order.
    pub resumed: Vec<serde_json::Value>,
    /// A directory that survives killed attempts (see `RunContext::work_dir`): large
    /// resumable state lives here and is recorded with `SaveItems`.
    pub work_dir: PathBuf,
}

impl Job {
    /// The params as the node's params struct (or tuple of groups). The engine has filled
    /// every default and checked every type and range, so this fails only when `dag` and
    /// `dag-worker` disagree on the node's params (a param renamed on one side, builds of
    /// two versions): an unknown or misspelt param is an error, never a silent default.
    pub fn params<P: crate::params::Params>(&self) -> Result<P, crate::NodeError> {
        let hint = "dag and dag-worker come from different builds; rebuild both with `cargo build --release --workspace --bins`";
        let fields = P::fields();
        if let Some(unknown) = self
            .params
            .keys()
            .find(|k| !fields.iter().any(|f| f.name == k.as_str()))
        {
            return Err(crate::NodeError::msg(format!(
                "The job gives the param `{unknown}`, which the `{}` node does not have",
                self.node
            ))
            .hint(hint));
        }
        P::from_map(&self.params).map_err(|e| {
            crate::NodeError::caused(
                format!(
                    "The job's params do not fit the `{}` node's params",
                    self.node
                ),
                &e,
            )
            .hint(hint)
        })
    }
}

/// One line the worker prints on stdout.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Report {
    /// Total number of items, for the progress bar.
    Total(u64),
    /// Items finished since the last report.
    Advance(u64),
    /// A line for the user.
    Info(String),
    /// Completed items to persist (resumability).
    SaveItems(Vec<serde_json::Value>),
    /// Metadata of an output port.
    Meta {
        /// Port.
        port: String,
        /// Metadata.
        value: serde_json::Value,
    },
    /// The node failed.
    Error {
        /// What went wrong.
        message: String,
        /// Causes, outermost first.
        causes: Vec<String>,
        /// What to do.
        hint: Option<String>,
    },
}

/// A test hook for interrupting a model node at a known point. With
/// `DAG_TEST_HOLD_AFTER_SAVES=N` in the environment, `dag-worker` stops after sending its
/// N-th `SaveItems` report and waits to be killed; `dag`, once it has persisted those
/// items, creates the file named by `DAG_TEST_HOLD_MARKER`. A test waits for the marker and
/// then kills: the kill lands after exactly N saved items, on a machine of any speed.
pub mod test_hold {
    /// N, when the hook is on.
    pub fn after_saves() -> Option<u64> {
        std::env::var("DAG_TEST_HOLD_AFTER_SAVES")
            .ok()?
            .parse()
            .ok()
    }

    /// The marker `dag` creates once N saves are persisted.
    pub fn marker() -> Option<std::path::PathBuf> {
        std::env::var_os("DAG_TEST_HOLD_MARKER").map(std::path::PathBuf::from)
    }
}
