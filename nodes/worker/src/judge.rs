//! The local judge (`dag_protocol::judge::LOCAL_JUDGE_JOB`): a model the runtime loads
//! answers judge calls constrained to a fixed set of replies (the verdict grammar's whole
//! language: `GRADE: C` or `GRADE: I`). Each reply is the choice with the highest summed
//! log-likelihood after the rendered conversation, so it always parses, and greedy choice
//! makes it deterministic. Batched; every batch is saved as it completes (`dag` keeps each
//! reply under its call's key, so a killed grading resumes with the calls not yet answered).

use dag_protocol::judge::{LocalJudgeParams, LocalJudgeReply, LocalJudgeRequest};
use dag_protocol::{Job, NodeError, Report};
use dag_runtime::{Message, ScoreRequest};

use crate::Reporter;
use crate::failure::caused;
use crate::model::load_model;

/// Runs the job.
pub fn run(job: &Job, rep: &Reporter) -> Result<(), NodeError> {
    let p: LocalJudgeParams = job.params()?;
    let path = &job
        .inputs
        .get("requests")
        .and_then(|v| v.first())
        .ok_or_else(|| NodeError::msg("The local judge's job has no `requests` input"))?
        .path;
    let text = std::fs::read_to_string(path)
        .map_err(|e| caused(format!("Failed to read `{}`", path.display()), &e))?;
    let requests: Vec<LocalJudgeRequest> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .map_err(|e| caused("Failed to decode the local judge's requests", &e))?;
    let model_input = job
        .inputs
        .get("model")
        .and_then(|v| v.first())
        .ok_or_else(|| NodeError::msg("The local judge's job has no `model` input"))?;
    let model = load_model(&model_input.path)?;
    rep.send(Report::Total(requests.len() as u64));
    for chunk in requests.chunks(p.batch_size as usize) {
        let mut batch = Vec::with_capacity(chunk.len());
        for r in chunk {
            if r.choices.is_empty() {
                return Err(NodeError::msg(format!(
                    "Judge call {} allows no reply",
                    r.key
                )));
            }
            let messages: Vec<Message> = r
                .messages
                .iter()
                .map(|m| Message::new(m.role.clone(), m.content.clone()))
                .collect();
            let context = model
                .render_chat(&messages, true)
                .map_err(|e| caused("Failed to render a judge prompt", &e))?;
            batch.push(ScoreRequest {
                context,
                continuations: r.choices.clone(),
            });
        }
        let scored = model
            .score(&batch)
            .map_err(|e| caused("Failed to score the judge's choices", &e))?;
        let items: Vec<serde_json::Value> = chunk
            .iter()
            .zip(scored)
            .map(|(r, s)| {
                let logprobs: Vec<f64> = s.iter().map(|c| c.logprob).collect();
                // The first of equals wins: ties resolve the same way on every run.
                let best = logprobs
                    .iter()
                    .enumerate()
                    .fold(0, |b, (i, lp)| if *lp > logprobs[b] { i } else { b });
                serde_json::to_value(LocalJudgeReply {
                    key: r.key.clone(),
                    text: r.choices[best].clone(),
                    logprobs,
                })
                .expect("a reply serialises")
            })
            .collect();
        rep.send(Report::SaveItems(items));
        rep.send(Report::Advance(chunk.len() as u64));
    }
    Ok(())
}
