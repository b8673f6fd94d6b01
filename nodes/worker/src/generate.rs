//! `generate`: prompts built from dataset rows, batched generation, resumable per row.

use dag_protocol::NodeError;
use dag_protocol::generate::{GenerateParams, OnLength};
use dag_protocol::{Job, Report};
use dag_runtime::{GenerateRequest, Message, Prompt, SamplingParams};
use dag_table as table;
use serde_json::{Value, json};

use crate::Reporter;
use crate::failure::caused;
use crate::model::load_model;
use crate::prompt::fill;

/// Runs the node.
pub fn run(job: &Job, rep: &Reporter) -> Result<(), NodeError> {
    let dataset = &job.inputs["dataset"][0];
    let rows =
        table::read_dataset(&dataset.path).map_err(|e| caused("Failed to read the dataset", &e))?;
    let model = load_model(&job.inputs["model"][0].path)?;
    let p: GenerateParams = job.params()?;
    let template = p.prompt.as_str();
    let system = p.system_prompt.as_deref();
    if p.chat && !model.has_chat_template() {
        return Err(NodeError::msg("The model has no chat template")
            .hint("set `chat = false` to prompt with raw text"));
    }
    // The engine has checked every range when the graph loaded.
    let params = SamplingParams {
        max_new_tokens: p.max_new_tokens as usize,
        temperature: p.temperature,
        top_p: p.top_p,
        top_k: p.top_k as usize,
        n: p.n as usize,
        seed: p.seed as u64,
        stop: p.stop.clone(),
        ignore_eos: false,
        batch_size: p.batch_size as usize,
    };
    // Earlier attempts' rows, keyed by row index.
    let mut done: std::collections::BTreeMap<usize, Value> = std::collections::BTreeMap::new();
    for item in &job.resumed {
        if let Some(i) = item["row"].as_u64() {
            done.insert(i as usize, item.clone());
        }
    }
    rep.send(Report::Total(rows.len() as u64));
    if !done.is_empty() {
        rep.send(Report::Advance(done.len() as u64));
    }
    let todo: Vec<usize> = (0..rows.len()).filter(|i| !done.contains_key(i)).collect();
    let chunk = (params.batch_size / params.n).max(1);
    for rows_idx in todo.chunks(chunk) {
        let mut requests = Vec::with_capacity(rows_idx.len());
        for &i in rows_idx {
            let user = fill(template, &rows[i])?;
            let prompt = if p.chat {
                let mut m = vec![];
                if let Some(s) = system {
                    m.push(Message::new("system", s));
                }
                m.push(Message::new("user", user));
                Prompt::Chat(m)
            } else {
                Prompt::Text(match system {
                    Some(s) => format!("{s}\n\n{user}"),
                    None => user,
                })
            };
            // Seed from the row's position so a row's samples never depend on which
            // other rows share its batch, or on where a resumed run restarted.
            let mut req = GenerateRequest::new(prompt);
            req.seed = Some(
                params
                    .seed
                    .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                    .wrapping_add(i as u64),
            );
            requests.push(req);
        }
        let results = model
            .generate(&requests, &params, &mut |_| rep.send(Report::Advance(1)))
            .map_err(|e| caused("Failed to generate", &e))?;
        let mut batch = vec![];
        for (r, &i) in results.iter().zip(rows_idx) {
            let samples: Vec<Value> = r
                .completions
                .iter()
                .map(|c| json!({ "sample": c.sample, "completion": c.text, "finish_reason": c.finish_reason.as_str(), "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens }))
                .collect();
            let item = json!({ "row": i, "prompt": r.prompt, "samples": samples });
            done.insert(i, item.clone());
            batch.push(item);
        }
        rep.send(Report::SaveItems(batch));
    }
    let mut out = vec![];
    let mut cut = vec![];
    for (i, item) in &done {
        for s in item["samples"].as_array().into_iter().flatten() {
            let mut row = rows[*i].clone();
            row.insert("prompt".into(), item["prompt"].clone());
            for k in [
                "sample",
                "completion",
                "finish_reason",
                "prompt_tokens",
                "completion_tokens",
            ] {
                row.insert(k.into(), s[k].clone());
            }
            if s["finish_reason"] == "length" {
                cut.push(*i);
            }
            out.push(row);
        }
    }
    if !cut.is_empty() {
        cut.dedup();
        let msg = format!(
            "{} completion(s) reached max_new_tokens = {} (rows {:?}{})",
            cut.len(),
            params.max_new_tokens,
            &cut[..cut.len().min(10)],
            if cut.len() > 10 { ", ..." } else { "" }
        );
        if p.on_length == OnLength::Error {
            return Err(NodeError::msg(msg).hint("raise `max_new_tokens`, or set `on_length = \"warn\"` to keep truncated completions"));
        }
        rep.send(Report::Info(format!("warning: {msg}")));
    }
    let path = &job.outputs["generations"];
    table::write_jsonl(path, &out)
        .map_err(|e| caused(format!("Failed to write `{}`", path.display()), &e))?;
    rep.send(Report::Meta {
        port: "generations".into(),
        value: json!({ "rows": out.len(), "source_rows": rows.len(), "truncated": cut.len(), "model": model.identity() }),
    });
    Ok(())
}
