//! Judge models: what a grading call asks and how it is keyed, the OpenAI-compatible client
//! that makes it reliably, the strict parsers that turn a reply into a verdict, and the
//! scorers built on verdicts. Knows nothing of the engine or the store: a node drives it and
//! persists each completed call.

pub mod airbench;
pub mod anima;
mod cell;
pub mod harmbench;
pub mod remote;
mod request;
pub mod retry;
pub mod template;
pub mod verdict;

pub use request::{JudgeId, JudgeReply, JudgeRequest, Message, call_key};
