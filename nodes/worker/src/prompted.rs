//! `classify-prompted`: the prompted-classifier baseline. Each row's question is scored
//! with the two answers as continuations; the row's score is
//! `P(A) / (P(A) + P(B)) = sigmoid(log P(A) - log P(B))` from the continuations' summed
//! log-likelihoods. Resumable per batch of rows.

use std::collections::BTreeMap;

use dag_protocol::NodeError;
use dag_protocol::probes::ClassifyPromptedParams;
use dag_protocol::{Job, Report, ScoreRow};
use dag_runtime::{Message, ScoreRequest};
use dag_table as table;
use serde_json::{Value, json};

use crate::Reporter;
use crate::failure::caused;
use crate::model::load_model;
use crate::prompt::fill;
use crate::scores::{group_metrics, group_of, parse_label, split_metrics};

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
    let (p, grouping): ClassifyPromptedParams = job.params()?;
    let template = p.template.as_str();
    let answers = &p.answers;
    if answers.len() != 2 || answers[0] == answers[1] {
        return Err(NodeError::msg(format!(
            "`answers` must be two different strings, not {answers:?}"
        ))
        .hint("e.g. `answers = [\"Yes\", \"No\"]`: the first means label 1"));
    }
    // The engine has checked every range when the graph loaded.
    let chat = p.chat;
    let system = p.system_prompt.as_deref();
    let label_column = p.label_column.as_str();
    let split = p.split.as_str();
    let resamples = p.bootstrap as usize;
    let max_chars = p.max_chars.map(|n| n as usize);
    let rows = table::read_dataset(&job.inputs["dataset"][0].path)
        .map_err(|e| caused("Failed to read the dataset", &e))?;
    // Before the model loads: a wrong column fails in milliseconds, not after the scoring.
    let group_column = grouping.group_column.as_deref();
    let groups = group_column
        .map(|column| {
            rows.iter()
                .enumerate()
                .map(|(i, r)| group_of(r, column, &format!("Row {i} of the dataset")))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
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
                    .map_err(|e| caused(format!("Failed to render row {i}"), &e))?
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
            .map_err(|e| caused("Failed to score the answers", &e))?;
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
    let lines: Vec<ScoreRow> = done
        .iter()
        .map(|(&i, item)| {
            ScoreRow::new(split, i as u64, labels[i], scores[i])
                .with("logprob_a", item["logprob_a"].clone())
                .with("logprob_b", item["logprob_b"].clone())
                .in_group(groups.as_ref().map(|g| &g[i]))
        })
        .collect();
    let path = &job.outputs["scores"];
    std::fs::write(path, ScoreRow::to_jsonl(&lines))
        .map_err(|e| caused(format!("Failed to write `{}`", path.display()), &e))?;
    let mut metrics = split_metrics(&scores, &labels, resamples)?;
    if let Some(groups) = &groups {
        metrics["by_group"] = group_metrics(&scores, &labels, groups, resamples)?;
    }
    let mut meta = json!({ "rows": rows.len(), "max_chars": max_chars, "probe": "prompted", "answers": answers, "model": model.identity(), "metrics": { split: metrics } });
    if let Some(column) = group_column {
        meta["group_column"] = json!(column);
    }
    rep.send(Report::Meta {
        port: "scores".into(),
        value: meta,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{job, rows, scores, tiny_model};

    #[test]
    fn group_column_puts_each_rows_source_in_its_score_line() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let inputs = json!({ "model": [{ "path": tiny_model(d), "digest": "0", "kind": "model", "meta": null, "label": "tiny" }], "dataset": rows(d, "rows") });
        let params = json!({ "template": "Harmful? {text}", "answers": ["Yes", "No"], "chat": false, "bootstrap": 0 });
        let mut grouped = params.clone();
        grouped["group_column"] = json!("source");
        run(
            &job(d, "classify-prompted", grouped, inputs.clone(), json!({})),
            &crate::Reporter,
        )
        .unwrap();
        let lines = scores(d);
        assert_eq!(lines.len(), 8);
        for (i, l) in lines.iter().enumerate() {
            assert_eq!(l["group"], ["web", "chat"][i % 4 / 2], "{l}");
        }
        // Without the param, the lines are exactly those less `group`.
        run(
            &job(
                d,
                "classify-prompted",
                params.clone(),
                inputs.clone(),
                json!({}),
            ),
            &crate::Reporter,
        )
        .unwrap();
        for (mut g, p) in lines.into_iter().zip(scores(d)) {
            g.as_object_mut().unwrap().shift_remove("group");
            assert_eq!(g, p);
        }
        // A column the rows lack fails before the model loads, naming the columns there are.
        let mut wrong = params;
        wrong["group_column"] = json!("dataset");
        let err = run(
            &job(d, "classify-prompted", wrong, inputs, json!({})),
            &crate::Reporter,
        )
        .unwrap_err();
        assert!(
            err.message
                .contains("Row 0 of the dataset has no column `dataset`")
                && err
                    .hint
                    .as_deref()
                    .is_some_and(|h| h.contains("`text`, `label`, `source`")),
            "{err:?}"
        );
    }
}
