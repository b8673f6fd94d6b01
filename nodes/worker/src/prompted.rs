//! `classify-prompted`: the prompted-classifier baseline. Each row's question is scored
//! with the two answers as continuations; the row's score is
//! `P(A) / (P(A) + P(B)) = sigmoid(log P(A) - log P(B))` from the continuations' summed
//! log-likelihoods. Resumable per batch of rows.

use std::collections::BTreeMap;

use dag_engine::NodeError;
use dag_nodes::table;
use dag_nodes::worker::{Job, Report};
use dag_runtime::{Message, ScoreRequest};
use serde_json::{Value, json};

use crate::Reporter;
use crate::generate::{fill, load_model};
use crate::probe::{parse_label, split_metrics};

const BATCH: usize = 16;

/// The row with every string longer than `max_chars` cut to its last `max_chars`
/// characters (a dialogue's end is what the question is about).
fn clip(row: &table::Row, max_chars: Option<usize>) -> table::Row {
    let Some(n) = max_chars else {
        return row.clone();
    };
    row.iter()
        .map(|(k, v)| match v.as_str() {
            Some(s) if s.chars().count() > n => {
                let skip = s.chars().count() - n;
                (k.clone(), Value::String(s.chars().skip(skip).collect()))
            }
            _ => (k.clone(), v.clone()),
        })
        .collect()
}

/// Runs the node.
pub fn run(job: &Job, rep: &Reporter) -> Result<(), NodeError> {
    let p = |k: &str| job.params.get(k);
    let template = p("template").and_then(Value::as_str).unwrap_or_default();
    let answers: Vec<String> = p("answers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if answers.len() != 2 || answers[0] == answers[1] {
        return Err(NodeError::msg(format!(
            "`answers` must be two different strings, not {answers:?}"
        ))
        .hint("e.g. `answers = [\"Yes\", \"No\"]`: the first means label 1"));
    }
    let chat = p("chat").and_then(Value::as_bool).unwrap_or(true);
    let system = p("system_prompt").and_then(Value::as_str);
    let label_column = p("label_column").and_then(Value::as_str).unwrap_or("label");
    let split = p("split").and_then(Value::as_str).unwrap_or("test");
    let resamples = p("bootstrap")
        .and_then(Value::as_i64)
        .unwrap_or(1000)
        .max(0) as usize;
    let max_chars = p("max_chars")
        .and_then(Value::as_i64)
        .map(|n| n.max(1) as usize);
    let rows = table::read_dataset(&job.inputs["dataset"][0].path)
        .map_err(|e| NodeError::caused("Failed to read the dataset", &e))?;
    let mut labels = Vec::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        let v = r.get(label_column).ok_or_else(|| {
            NodeError::msg(format!("Row {i} has no label column `{label_column}`"))
                .hint("set `label_column`")
        })?;
        labels.push(parse_label(v).ok_or_else(|| {
            NodeError::msg(format!("Row {i}: label `{v}` is not 0/1 or a boolean"))
                .hint("map labels to 0/1 with the relabel node's `map`")
        })?);
    }
    let model = load_model(&job.inputs["model"][0].path)?;
    if chat && !model.has_chat_template() {
        return Err(NodeError::msg("The model has no chat template")
            .hint("set `chat = false` to prompt with raw text"));
    }
    let mut done: BTreeMap<usize, Value> = BTreeMap::new();
    for item in &job.resumed {
        if let Some(i) = item["row"].as_u64() {
            done.insert(i as usize, item.clone());
        }
    }
    rep.send(Report::Total(rows.len() as u64));
    rep.send(Report::Advance(done.len() as u64));
    let todo: Vec<usize> = (0..rows.len()).filter(|i| !done.contains_key(i)).collect();
    for chunk in todo.chunks(BATCH) {
        let mut requests = Vec::with_capacity(chunk.len());
        for &i in chunk {
            let question = fill(template, &clip(&rows[i], max_chars))?;
            let context = if chat {
                let mut m = vec![];
                if let Some(s) = system {
                    m.push(Message::new("system", s));
                }
                m.push(Message::new("user", question));
                model
                    .render_chat(&m, true)
                    .map_err(|e| NodeError::caused(format!("Failed to render row {i}"), &e))?
            } else {
                question
            };
            requests.push(ScoreRequest {
                context,
                continuations: answers.clone(),
            });
        }
        let scored = model
            .score(&requests)
            .map_err(|e| NodeError::caused("Failed to score the answers", &e))?;
        let mut batch = Vec::with_capacity(chunk.len());
        for (s, &i) in scored.iter().zip(chunk) {
            let (a, b) = (s[0].logprob, s[1].logprob);
            let item = json!({ "row": i, "logprob_a": a, "logprob_b": b, "score": dag_metrics::sigmoid(a - b) });
            done.insert(i, item.clone());
            batch.push(item);
        }
        rep.send(Report::SaveItems(batch));
        rep.send(Report::Advance(chunk.len() as u64));
    }
    let scores: Vec<f64> = (0..rows.len())
        .map(|i| done[&i]["score"].as_f64().unwrap_or(f64::NAN))
        .collect();
    let mut lines = Vec::new();
    for (i, item) in &done {
        let r = json!({
            "split": split, "row": i, "label": u8::from(labels[*i]), "score": item["score"],
            "logprob_a": item["logprob_a"], "logprob_b": item["logprob_b"],
        });
        lines.extend(serde_json::to_vec(&r).expect("serialises"));
        lines.push(b'\n');
    }
    let path = &job.outputs["scores"];
    std::fs::write(path, &lines)
        .map_err(|e| NodeError::caused(format!("Failed to write `{}`", path.display()), &e))?;
    let metrics = split_metrics(&scores, &labels, resamples)?;
    rep.send(Report::Meta {
        port: "scores".into(),
        value: json!({ "rows": rows.len(), "max_chars": max_chars, "probe": "prompted", "answers": answers, "model": model.identity(), "metrics": { split: metrics } }),
    });
    Ok(())
}
