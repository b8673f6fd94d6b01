//! What crosses the boundary between `dag` and `dag-worker`, and nothing else: the job, the
//! reports, the node error, and the values both sides must agree on. Serde only, so the
//! worker links no engine, store or async runtime, and the engine no libtorch.

mod error;
pub mod evaluate;
pub mod finetune;
pub mod generate;
mod job;
pub mod judge;
pub mod models;
pub mod params;
pub mod probes;
mod scores;

pub use error::NodeError;
pub use job::{Job, JobInput, Report, test_hold};
pub use scores::ScoreRow;
