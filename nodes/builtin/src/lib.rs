//! Node implementations for `dag`.
//!
//! Each node type is one module: its [`dag_engine::NodeSpec`] (ports, params, doc) and
//! its `run`. [`registry`] lists the types a graph may use. Reading and writing tables
//! (JSONL, JSON, CSV, Parquet, gzip) lives in `dag-table`, shared by every node that
//! takes rows.
#![deny(missing_docs)]

pub mod ahb_report;
pub mod airbench;
pub mod anima;
pub mod anima_compare;
mod balance;
pub mod bench_report;
mod combinations;
mod command;
mod concat;
mod dataset;
pub mod evaluate;
pub mod finetune;
pub mod grade_qa;
pub mod harmbench;
mod judging;
pub mod models;
mod noop;
pub mod probes;
mod relabel;
pub mod report;
pub mod rubric;
mod split;
pub mod worker;

pub use ahb_report::AhbReport;
pub use airbench::AirBench;
pub use anima::Anima;
pub use anima_compare::AnimaCompare;
pub use balance::Balance;
pub use bench_report::BenchmarkReport;
pub use combinations::Combinations;
pub use command::CommandStep;
pub use concat::Concat;
pub use dataset::Dataset;
pub use evaluate::CompareEvals;
pub use grade_qa::GradeQa;
pub use harmbench::HarmBench;
pub use models::ModelRef;
pub use noop::Noop;
pub use relabel::Relabel;
pub use report::ProbeReport;
pub use rubric::RubricLabel;
pub use split::Split;

/// Row `i`'s value in column `col`, or an error naming the row and the columns it has.
pub(crate) fn column<'r>(
    row: &'r dag_table::Row,
    col: &str,
    i: usize,
) -> Result<&'r serde_json::Value, dag_engine::NodeError> {
    row.get(col).ok_or_else(|| {
        dag_engine::NodeError::msg(format!("Row {i} has no column `{col}`")).hint(format!(
            "columns are: {}",
            row.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    })
}

/// Every node type this build provides.
pub fn registry() -> dag_engine::Registry {
    let mut r = dag_engine::Registry::new();
    r.register(Dataset::new());
    r.register(Balance::new());
    r.register(Split::new());
    r.register(Concat::new());
    r.register(Combinations::new());
    r.register(ModelRef::new());
    r.register(Noop::new());
    r.register(CommandStep::new());
    r.register(Relabel::new());
    r.register(CompareEvals::new());
    r.register(ProbeReport::new());
    r.register(Anima::new());
    r.register(AnimaCompare::new());
    r.register(GradeQa::new());
    r.register(HarmBench::new());
    r.register(AirBench::new());
    r.register(RubricLabel::new());
    r.register(AhbReport::new());
    r.register(BenchmarkReport::new());
    register_model_nodes(&mut r);
    r
}

/// The model nodes alone: those that run in `dag-worker`, which dispatches exactly these
/// (`dag_protocol::models::WORKER_NODES`; tests on both sides hold each to that list).
pub fn model_nodes() -> dag_engine::Registry {
    let mut r = dag_engine::Registry::new();
    register_model_nodes(&mut r);
    r
}

fn register_model_nodes(r: &mut dag_engine::Registry) {
    r.register(models::generate());
    r.register(evaluate::evaluate());
    r.register(finetune::finetune());
    r.register(probes::extract_activations());
    r.register(probes::train_probe());
    r.register(probes::classify_prompted());
    r.register(probes::finetune_classifier());
}
