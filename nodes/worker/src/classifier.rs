//! `finetune-classifier`: the finetuned-classifier baseline of the probes study. A linear head
//! reads the final hidden state of each row's last token (transformers'
//! `LlamaForSequenceClassification` with one logit) and trains with a LoRA adapter, or every
//! weight, through the finetune node's trainer (`Objective::Classify`). Every row of every
//! split is scored, in train-probe's format, so the report compares it with the probes.
//!
//! Every `save_interval` optimizer steps the trainer's state (adapter, head, AdamW moments,
//! step) is written to the job's work directory and recorded; a rerun after a kill restores the
//! last one and continues, to the same weights (data order and dropout derive from the seed
//! and the step).

use std::path::Path;

use dag_protocol::NodeError;
use dag_protocol::{Job, Report, ScoreRow};
use dag_runtime::Model;
use dag_runtime::train::{Example, Mode, Objective, Trainer};
use dag_table::{self as table, Row};
use serde_json::json;

use dag_protocol::finetune::Method;
use dag_protocol::models::ModelRef;
use dag_protocol::probes::{ClassWeight, FinetuneClassifierParams, Truncation};

use crate::Reporter;
use crate::failure::caused;
use crate::finetune::{lora_config, plot_loss, train_config};
use crate::model::load_model;
use crate::prompt::{Render, truncate};
use crate::scores::{group_metrics, group_of, parse_label, split_metrics};

/// One input dataset, tokenised.
struct Split {
    name: &'static str,
    examples: Vec<Example>,
    labels: Vec<bool>,
    /// Each row's `group_column` value, when the node has one.
    groups: Option<Vec<String>>,
    truncated: usize,
}

/// What reading a split takes from the params.
struct Reading<'a> {
    render: Render,
    label_column: &'a str,
    max_len: usize,
    keep_end: bool,
    group_column: Option<&'a str>,
}

fn read_split(
    job: &Job,
    name: &'static str,
    model: &Model,
    reading: &Reading<'_>,
) -> Result<Option<Split>, NodeError> {
    let render = &reading.render;
    let Some(input) = job.inputs.get(name).and_then(|v| v.first()) else {
        return Ok(None);
    };
    let rows: Vec<Row> = table::read_dataset(&input.path)
        .map_err(|e| caused(format!("Failed to read the `{name}` dataset"), &e))?;
    if rows.is_empty() {
        return Err(NodeError::msg(format!("The `{name}` dataset is empty"))
            .hint("check the dataset node's filters, limit and split"));
    }
    let (label_column, max_len, keep_end) =
        (reading.label_column, reading.max_len, reading.keep_end);
    let mut split = Split {
        name,
        examples: Vec::with_capacity(rows.len()),
        labels: Vec::with_capacity(rows.len()),
        groups: reading.group_column.map(|_| Vec::with_capacity(rows.len())),
        truncated: 0,
    };
    for (i, row) in rows.iter().enumerate() {
        let v = row.get(label_column).ok_or_else(|| {
            NodeError::msg(format!(
                "Row {i} of `{name}` has no label column `{label_column}`"
            ))
            .hint("set `label_column`")
        })?;
        split.labels.push(parse_label(v).ok_or_else(|| {
            NodeError::msg(format!(
                "Row {i} of `{name}`: label `{v}` is not 0/1 or a boolean"
            ))
            .hint("map labels to 0/1 with the relabel node's `map`")
        })?);
        if let (Some(column), Some(groups)) = (reading.group_column, &mut split.groups) {
            groups.push(group_of(row, column, &format!("Row {i} of `{name}`"))?);
        }
        let mut ids = render.tokens(model, row, i)?;
        split.truncated += usize::from(truncate(&mut ids, max_len, keep_end));
        split.examples.push(Example {
            trainable: vec![false; ids.len()],
            ids,
        });
    }
    Ok(Some(split))
}

/// Writes the trainer's state as `state-NNNNNN/` in the work directory (built under a
/// `.tmp` name and renamed, so a kill never leaves half of one) and records it.
fn save_state(
    job: &Job,
    trainer: &Trainer,
    metrics: &[dag_runtime::train::StepMetrics],
    rep: &Reporter,
) -> Result<(), NodeError> {
    let name = format!("state-{:06}", trainer.step());
    let dir = job.work_dir.join(&name);
    let tmp = dir.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    let fail = |e: &(dyn std::error::Error + 'static)| {
        caused(
            format!(
                "Failed to save the training state at step {}",
                trainer.step()
            ),
            e,
        )
    };
    trainer.save_state(&tmp).map_err(|e| fail(&e))?;
    write(
        &tmp.join("metrics.json"),
        &serde_json::to_vec(metrics).expect("json"),
    )?;
    std::fs::rename(&tmp, &dir).map_err(|e| fail(&e))?;
    rep.send(Report::SaveItems(vec![json!({ "dir": name })]));
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), NodeError> {
    std::fs::write(path, bytes)
        .map_err(|e| caused(format!("Failed to write `{}`", path.display()), &e))
}

/// Runs the node.
pub fn run(job: &Job, rep: &Reporter) -> Result<(), NodeError> {
    let (own, rendering, grouping, adapter, opt): FinetuneClassifierParams = job.params()?;
    // The engine has checked every range when the graph loaded.
    let reading = Reading {
        render: Render::new(&rendering)?,
        label_column: &own.label_column,
        max_len: rendering.max_len as usize,
        keep_end: rendering.truncation_side == Truncation::Left,
        group_column: grouping.group_column.as_deref(),
    };
    let mut model = load_model(&job.inputs["model"][0].path)?;
    let mut splits = vec![];
    for name in ["train", "validation", "test"] {
        if let Some(s) = read_split(job, name, &model, &reading)? {
            splits.push(s);
        }
    }
    let train = &splits[0];
    let positives = train.labels.iter().filter(|&&y| y).count();
    let n = train.labels.len();
    if positives == 0 || positives == n {
        return Err(NodeError::msg(format!(
            "The training rows are all of one class ({positives} positive of {n})"
        ))
        .hint("a classifier needs both labels; check the relabel node and the split"));
    }
    let truncated: usize = splits.iter().map(|s| s.truncated).sum();
    if truncated > 0 {
        rep.send(Report::Info(format!(
            "warning: {truncated} rows were cut to max_len tokens"
        )));
    }
    let class_weights = if own.class_weight == ClassWeight::None {
        (1.0, 1.0)
    } else {
        dag_metrics::balanced_class_weights(n - positives, positives)
    };
    let mut cfg = train_config(&opt, own.lr, own.seed, None)?;
    cfg.objective = Objective::Classify {
        labels: train.labels.clone(),
        class_weights,
    };
    let method = if adapter.method == Method::Full {
        Mode::Full
    } else {
        model
            .attach_lora(lora_config(&adapter)?, cfg.seed)
            .map_err(|e| caused("Failed to attach the adapter", &e))?;
        Mode::Lora
    };
    let batch_size = cfg.batch_size;
    let mut trainer = Trainer::new(&model, method.clone(), train.examples.clone(), cfg)
        .map_err(|e| caused("Failed to set up training", &e))?;
    let total = trainer.total_steps();
    let scored: usize = splits.iter().map(|s| s.examples.len()).sum();
    rep.send(Report::Total((total + scored.div_ceil(batch_size)) as u64));
    let interval = own.save_interval as usize;
    let mut metrics = Vec::with_capacity(total);
    if let Some(state) = job
        .resumed
        .iter()
        .filter_map(|item| item["dir"].as_str())
        .map(|d| job.work_dir.join(d))
        .rfind(|d| d.is_dir())
    {
        trainer
            .load_state(&state)
            .map_err(|e| caused(format!("Failed to resume from `{}`", state.display()), &e))?;
        let text = std::fs::read_to_string(state.join("metrics.json")).unwrap_or_default();
        metrics = serde_json::from_str(&text).unwrap_or_default();
        rep.send(Report::Info(format!(
            "resuming training at step {}",
            trainer.step()
        )));
        rep.send(Report::Advance(trainer.step() as u64));
    }
    while trainer.step() < total {
        let m = trainer.train_step(&model).map_err(|e| {
            caused(
                format!("Training failed at step {}", trainer.step() + 1),
                &e,
            )
            .hint("lower `lr` or raise `warmup_steps`")
        })?;
        metrics.push(m);
        rep.send(Report::Advance(1));
        let s = trainer.step();
        if interval > 0 && s % interval == 0 && s < total {
            save_state(job, &trainer, &metrics, rep)?;
        }
    }

    let mut rows = Vec::new();
    let mut per_split = serde_json::Map::new();
    let resamples = own.bootstrap as usize;
    for split in &splits {
        let scores = trainer
            .predict(&model, &split.examples, batch_size)
            .map_err(|e| caused(format!("Failed to score `{}`", split.name), &e))?;
        rep.send(Report::Advance(
            split.examples.len().div_ceil(batch_size) as u64
        ));
        for (i, (s, y)) in scores.iter().zip(&split.labels).enumerate() {
            let group = split.groups.as_ref().map(|g| &g[i]);
            rows.push(ScoreRow::new(split.name, i as u64, *y, *s).in_group(group));
        }
        let mut m = split_metrics(&scores, &split.labels, resamples)?;
        if let Some(groups) = &split.groups {
            m["by_group"] = group_metrics(&scores, &split.labels, groups, resamples)?;
        }
        per_split.insert(split.name.to_string(), m);
    }
    write(&job.outputs["scores"], &ScoreRow::to_jsonl(&rows))?;

    let out = &job.outputs["classifier"];
    std::fs::create_dir_all(out)
        .map_err(|e| caused(format!("Failed to create `{}`", out.display()), &e))?;
    // The base as its model node recorded it (PEFT's adapter config names it).
    let reference = ModelRef::read(&job.inputs["model"][0].path)?;
    let base = json!({ "location": reference.location, "identity": model.identity() });
    if let Some(lora) = model.lora() {
        lora.save(
            &out.join("adapter"),
            base["location"].as_str().unwrap_or_default(),
        )
        .map_err(|e| caused("Failed to save the adapter", &e))?;
    }
    let params = trainer.parameters();
    let head: Vec<(String, tch::Tensor)> = params
        .iter()
        .filter(|(n, _)| n.starts_with("score."))
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    dag_runtime::lora::write_safetensors(&out.join("head.safetensors"), &head)
        .map_err(|e| caused("Failed to save the head", &e))?;
    if method == Mode::Full {
        model
            .save_hf_dir(&out.join("hf"))
            .map_err(|e| caused("Failed to save the finetuned model", &e))?;
    }
    let config = json!({
        "family": "finetuned-classifier",
        "method": if method == Mode::Lora { "lora" } else { "full" },
        "base_model": base,
        "apply": "p = sigmoid(score.weight · h + score.bias), h = the final-normed hidden state \
                  (transformers' hidden_states[-1]) at the row's last token, under the adapter \
                  (adapter/, PEFT) or the finetuned weights (hf/)",
        "class_weights": [class_weights.0, class_weights.1],
        "params": job.params,
        "truncated_rows": truncated,
        "steps": metrics.len(),
        "losses": metrics.iter().map(|m| m.loss).collect::<Vec<_>>(),
    });
    write(
        &out.join("config.json"),
        &serde_json::to_vec_pretty(&config).expect("json"),
    )?;
    write(
        &out.join("metrics.json"),
        &serde_json::to_vec_pretty(&per_split).expect("json"),
    )?;
    plot_loss(&out.join("loss.png"), &metrics)?;
    let mut summary =
        json!({ "probe": "finetuned-classifier", "model": model.identity(), "metrics": per_split });
    if let Some(column) = reading.group_column {
        summary["group_column"] = json!(column);
    }
    rep.send(Report::Meta {
        port: "scores".into(),
        value: summary.clone(),
    });
    rep.send(Report::Meta {
        port: "classifier".into(),
        value: summary,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{job, rows, scores, tiny_model};

    #[test]
    fn group_column_adds_groups_to_scores_and_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let inputs = json!({
            "model": [{ "path": tiny_model(d), "digest": "0", "kind": "model", "meta": null, "label": "tiny" }],
            "train": rows(d, "train"), "test": rows(d, "test"),
        });
        let params = json!({ "text_column": "text", "max_len": 16, "max_steps": 1, "rank": 2, "target_modules": ["q", "v"], "bootstrap": 20, "group_column": "source" });
        let outputs = json!({ "classifier": d.join("classifier") });
        run(
            &job(d, "finetune-classifier", params, inputs, outputs),
            &crate::Reporter,
        )
        .unwrap();
        let lines = scores(d);
        assert_eq!(lines.len(), 16, "train and test");
        for l in &lines {
            let i = l["row"].as_u64().unwrap() as usize;
            assert_eq!(l["group"], ["web", "chat"][i % 4 / 2], "{l}");
        }
        let metrics: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.join("classifier/metrics.json")).unwrap())
                .unwrap();
        for split in ["train", "test"] {
            let by = &metrics[split]["by_group"];
            assert_eq!(
                by.as_object().unwrap().keys().collect::<Vec<_>>(),
                ["chat", "web"]
            );
            assert_eq!(by["web"]["n"], 4);
            assert!(by["web"]["auroc_ci"].is_array(), "{by}");
        }
    }
}
