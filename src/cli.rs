//! Command-line arguments: what was typed, nothing more.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Run AI-safety research pipelines as cached, resumable dataflow graphs.
#[derive(Debug, Parser)]
#[command(name = "dag", version, about, max_term_width = 100)]
pub struct Cli {
    /// Artifact store directory (default: `.dag/` at the project root).
    #[arg(long, global = true, env = "DAG_STORE")]
    pub store: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a graph: compute what is not cached.
    Run(RunArgs),
    /// Per node: cached, stale (and why), or never run.
    Status(GraphArgs),
    /// What `run` would execute, and why.
    Plan(GraphArgs),
    /// Where an artifact came from (or, with --down, what used it).
    Lineage(LineageArgs),
    /// Print an artifact: dataset rows, metrics, metadata.
    Show(ShowArgs),
    /// Run history.
    Log(LogArgs),
    /// Compare two runs: params and metrics.
    Diff(DiffArgs),
    /// Copy an artifact out of the store.
    Export(ExportArgs),
    /// Re-hash every blob; report (and with --repair, quarantine) corrupt ones.
    Verify(VerifyArgs),
    /// Remove artifacts no pin and no recent run references.
    Gc(GcArgs),
    /// Pin an artifact under a name so gc keeps it.
    Pin(PinArgs),
    /// Remove a pin.
    Unpin(UnpinArgs),
    /// List node types with their ports and params.
    Nodes(NodesArgs),
}

/// A graph and how to load it.
#[derive(Debug, Args)]
pub struct GraphArgs {
    /// The graph file (TOML).
    pub graph: PathBuf,
    /// Apply the `[profile.NAME]` overrides (e.g. `dev`: tiny data, tiny settings).
    #[arg(long)]
    pub profile: Option<String>,
    /// Override a param: `--set node.param=value` (value in TOML syntax).
    #[arg(long = "set", value_name = "NODE.PARAM=VALUE")]
    pub set: Vec<String>,
    /// Only these nodes and what they need.
    #[arg(long = "only", value_name = "NODE")]
    pub only: Vec<String>,
}

/// `dag run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The graph.
    #[command(flatten)]
    pub graph: GraphArgs,
    /// CPU slots (default: number of cores).
    #[arg(long, short = 'j')]
    pub jobs: Option<u32>,
    /// GPU slots.
    #[arg(long, default_value_t = 1)]
    pub gpus: u32,
    /// Concurrent API connections: requests in flight to any one endpoint, across every
    /// node of the run.
    #[arg(long, default_value_t = 8)]
    pub api_connections: u32,
    /// Requests to APIs the whole run may send, retries included (default: no limit).
    /// Calls answered in an earlier run are reused and cost nothing.
    #[arg(long, value_name = "N")]
    pub max_api_calls: Option<u64>,
    /// Stop starting nodes after the first failure (default: independent branches finish).
    #[arg(long)]
    pub fail_fast: bool,
    /// No progress bars.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// Output formats of `lineage`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LineageFormat {
    /// Indented tree.
    Text,
    /// JSON tree.
    Json,
    /// Graphviz.
    Dot,
}

/// `dag lineage`.
#[derive(Debug, Args)]
pub struct LineageArgs {
    /// An artifact digest (prefix), a pin, or a node instance (`node`, `node.port`) of the latest run.
    pub target: String,
    /// Resolve node names in the latest run of this graph.
    #[arg(long)]
    pub graph: Option<PathBuf>,
    /// Downstream: everything computed from it.
    #[arg(long)]
    pub down: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = LineageFormat::Text)]
    pub format: LineageFormat,
}

/// `dag show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// An artifact digest (prefix), a pin, or a node instance (`node`, `node.port`) of the latest run.
    pub target: String,
    /// Resolve node names in the latest run of this graph.
    #[arg(long)]
    pub graph: Option<PathBuf>,
    /// Rows of a dataset to print.
    #[arg(long, short = 'n', default_value_t = 10)]
    pub rows: usize,
}

/// `dag log`.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Only runs of this graph.
    #[arg(long)]
    pub graph: Option<PathBuf>,
    /// How many runs.
    #[arg(long, short = 'n', default_value_t = 20)]
    pub limit: usize,
    /// Show one run in detail.
    #[arg(long)]
    pub run: Option<String>,
}

/// `dag diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// First run id (or `last`, `last~1`, ...).
    pub a: String,
    /// Second run id.
    pub b: String,
}

/// Formats of `export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// The artifact as stored: a file or a directory.
    Dag,
    /// An evaluation as an inspect_ai log (`DEST.eval`), for `inspect view`.
    Inspect,
}

/// `dag export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// What to export.
    pub target: String,
    /// Destination file or directory (must not exist).
    pub dest: PathBuf,
    /// Resolve node names in the latest run of this graph.
    #[arg(long)]
    pub graph: Option<PathBuf>,
    /// `dag`: the artifact as stored; `inspect`: an evaluation (`evaluate` samples or
    /// metrics, judge grades or scores) as an inspect_ai `.eval` log.
    #[arg(long, value_enum, default_value_t = ExportFormat::Dag)]
    pub format: ExportFormat,
}

/// `dag verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Quarantine corrupt blobs and drop what needs them (it is recomputed on the next run).
    #[arg(long)]
    pub repair: bool,
    /// Rebuild the index from the store's journal (the index found is moved aside, never
    /// deleted), then verify and repair: for an index that cannot be read.
    #[arg(long, conflicts_with = "repair")]
    pub rebuild_index: bool,
}

/// `dag gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// Report, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep what the latest N runs of each graph used.
    #[arg(long, default_value_t = 3)]
    pub keep_runs: usize,
}

/// `dag pin`.
#[derive(Debug, Args)]
pub struct PinArgs {
    /// What to pin.
    pub target: String,
    /// The pin's name.
    pub name: String,
    /// Resolve node names in the latest run of this graph.
    #[arg(long)]
    pub graph: Option<PathBuf>,
}

/// `dag unpin`.
#[derive(Debug, Args)]
pub struct UnpinArgs {
    /// The pin's name.
    pub name: String,
}

/// `dag nodes`.
#[derive(Debug, Args)]
pub struct NodesArgs {
    /// Only this type.
    pub name: Option<String>,
}
