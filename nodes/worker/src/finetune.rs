//! `finetune`: SFT of a model on dataset rows, LoRA or full, with checkpoints that resume.
//!
//! Every `save_interval` optimizer steps (and at the last one) the worker writes a checkpoint
//! into the job's work directory, `step-NNNNNN/` (built as `step-NNNNNN.tmp/` and renamed, so
//! a kill never leaves half of one), holding the trained tensors with both AdamW moments
//! (`trainer.safetensors`), the metrics so far, and the checkpoint as users get it (a PEFT
//! adapter, or the full weights). Each one is then recorded with a `SaveItems` report. A rerun
//! after a kill restores the last recorded checkpoint and continues; since data order and
//! dropout derive from the seed and the step, the result is the uninterrupted run's.
//! At the end every checkpoint is linked into the `checkpoints` list output, in step order.

use std::path::{Path, PathBuf};

use dag_protocol::NodeError;
use dag_protocol::{Job, Report};
use dag_runtime::train::{self, Example, Mode, StepMetrics, TrainConfig, Trainer};
use dag_runtime::{LoraConfig, Message, Model};
use dag_table::{self as table, Row};
use serde_json::{Value, json};

use dag_protocol::finetune::{Adapter, Finetune, FinetuneParams, Method, OnNan, Optimizer};
use dag_protocol::models::ModelRef;

use crate::Reporter;
use crate::failure::caused;
use crate::model::load_model;
use crate::prompt::fill;

/// The conversation of one row: its `messages` column, or the templated user/assistant turns.
fn conversation(p: &Finetune, row: &Row, index: usize) -> Result<Vec<Message>, NodeError> {
    let mut messages = match &p.prompt {
        Some(prompt) => {
            let mut m = vec![];
            if let Some(s) = &p.system_prompt {
                m.push(Message::new("system", s));
            }
            m.push(Message::new("user", fill(prompt, row)?));
            m.push(Message::new("assistant", fill(&p.response, row)?));
            m
        }
        None => {
            let col = p.messages.as_str();
            let v = row.get(col).ok_or_else(|| {
                let cols: Vec<&str> = row.keys().map(String::as_str).collect();
                NodeError::msg(format!("Row {index} has no `{col}` column of conversations"))
                    .hint(format!("columns are: {}; set `messages` to the conversation column, or `prompt` and `response` templates", cols.join(", ")))
            })?;
            let parsed: Vec<Message> = serde_json::from_value(v.clone()).map_err(|e| {
                caused(
                    format!("Row {index}: `{col}` is not a list of {{role, content}} messages"),
                    &e,
                )
            })?;
            parsed
        }
    };
    if p.drop_system {
        messages.retain(|m| m.role != "system");
    }
    if !messages.iter().any(|m| m.role == "assistant") {
        return Err(
            NodeError::msg(format!("Row {index} has no assistant message to train on"))
                .hint("the loss covers assistant turns only; give each conversation at least one"),
        );
    }
    Ok(messages)
}

/// The LoRA params (`rank`, `alpha`, `dropout`, `target_modules`).
pub(crate) fn lora_config(a: &Adapter) -> Result<LoraConfig, NodeError> {
    LoraConfig::new(a.rank, a.alpha, a.dropout, &a.target_modules).map_err(|e| {
        caused("Bad LoRA settings", &e).hint("`target_modules` takes q, k, v, o, gate, up, down")
    })
}

/// The optimisation params shared by `finetune` and `finetune-classifier`, with the node's
/// own learning rate, seed and packing length. The engine has checked every range.
pub(crate) fn train_config(
    o: &Optimizer,
    lr: f64,
    seed: i64,
    pack: Option<usize>,
) -> Result<TrainConfig, NodeError> {
    Ok(TrainConfig {
        lr,
        weight_decay: o.weight_decay,
        warmup_steps: o.warmup_steps as usize,
        schedule: o
            .schedule
            .as_str()
            .parse()
            .map_err(|e| caused("Bad `schedule`", &e))?,
        batch_size: o.batch_size as usize,
        grad_accum: o.grad_accum as usize,
        max_grad_norm: o.max_grad_norm,
        epochs: o.epochs as usize,
        max_steps: (o.max_steps > 0).then_some(o.max_steps as usize),
        seed: seed as u64,
        pack,
        gradient_checkpointing: o.gradient_checkpointing,
        ..TrainConfig::default()
    })
}

/// A checkpoint recorded by this or an earlier attempt.
#[derive(Debug, Clone)]
struct Saved {
    step: usize,
    dir: PathBuf,
}

fn step_dir(work: &Path, step: usize) -> PathBuf {
    work.join(format!("step-{step:06}"))
}

/// Links `src` (a file) to `dst`, copying when linking is not possible.
fn link_or_copy(src: &Path, dst: &Path) -> Result<(), NodeError> {
    if std::fs::hard_link(src, dst).is_ok() {
        return Ok(());
    }
    std::fs::copy(src, dst).map(|_| ()).map_err(|e| {
        caused(
            format!("Failed to copy `{}` to `{}`", src.display(), dst.display()),
            &e,
        )
    })
}

fn link_tree(src: &Path, dst: &Path) -> Result<(), NodeError> {
    let fail =
        |p: &Path, e: std::io::Error| caused(format!("Failed to read `{}`", p.display()), &e);
    std::fs::create_dir_all(dst).map_err(|e| fail(dst, e))?;
    for entry in std::fs::read_dir(src).map_err(|e| fail(src, e))? {
        let entry = entry.map_err(|e| fail(src, e))?;
        let to = dst.join(entry.file_name());
        if entry.path().is_dir() {
            link_tree(&entry.path(), &to)?;
        } else {
            link_or_copy(&entry.path(), &to)?;
        }
    }
    Ok(())
}

fn write_metrics(path: &Path, metrics: &[StepMetrics]) -> Result<(), NodeError> {
    let mut text = String::new();
    for m in metrics {
        text.push_str(&serde_json::to_string(m).expect("metrics serialise"));
        text.push('\n');
    }
    std::fs::write(path, text)
        .map_err(|e| caused(format!("Failed to write `{}`", path.display()), &e))
}

fn read_metrics(path: &Path) -> Result<Vec<StepMetrics>, NodeError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| caused(format!("Failed to read `{}`", path.display()), &e))?;
    text.lines()
        .map(|l| {
            serde_json::from_str(l)
                .map_err(|e| caused(format!("Failed to parse `{}`", path.display()), &e))
        })
        .collect()
}

/// What a checkpoint needs to describe itself.
struct Run<'a> {
    job: &'a Job,
    base_reference: ModelRef,
    method: Mode,
    merge: bool,
}

impl Run<'_> {
    /// Writes checkpoint `step` into the work directory atomically and records it.
    fn save(
        &self,
        model: &Model,
        trainer: &Trainer,
        metrics: &[StepMetrics],
        rep: &Reporter,
    ) -> Result<Saved, NodeError> {
        let step = trainer.step();
        let dir = step_dir(&self.job.work_dir, step);
        let tmp = dir.with_extension("tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        let fail = |what: &str, e: &(dyn std::error::Error + 'static)| {
            caused(
                format!("Failed to save the step {step} checkpoint ({what})"),
                e,
            )
        };
        let state = tmp.join("state");
        trainer
            .save_state(&state)
            .map_err(|e| fail("optimizer state", &e))?;
        write_metrics(&state.join("metrics.jsonl"), metrics)?;
        let model_dir = tmp.join("model");
        std::fs::create_dir_all(&model_dir).map_err(|e| fail("folder", &e))?;
        let mut reference = self.base_reference.clone();
        reference.step = Some(step as u64);
        match self.method {
            Mode::Lora => {
                let lora = model.lora().expect("LoRA runs attach an adapter");
                lora.save(&model_dir.join("adapter"), &self.base_reference.location)
                    .map_err(|e| fail("adapter", &e))?;
                reference.adapter = Some("adapter".into());
                if self.merge {
                    model
                        .save_hf_dir(&model_dir.join("merged"))
                        .map_err(|e| fail("merged model folder", &e))?;
                }
            }
            Mode::Full => {
                // The checkpoint is a Hugging Face folder; `model.json` points at its weights
                // so this runtime applies them over the same base tokenizer and config.
                model
                    .save_hf_dir(&model_dir.join("hf"))
                    .map_err(|e| fail("model folder", &e))?;
                reference.weights = Some("hf/model.safetensors".into());
            }
        }
        std::fs::write(
            model_dir.join("model.json"),
            serde_json::to_vec_pretty(&reference).expect("json"),
        )
        .map_err(|e| fail("model.json", &e))?;
        std::fs::rename(&tmp, &dir).map_err(|e| fail("rename", &e))?;
        rep.send(Report::SaveItems(vec![
            json!({ "step": step, "dir": dir.file_name().unwrap_or_default().to_string_lossy() }),
        ]));
        Ok(Saved { step, dir })
    }
}

/// Runs the node.
pub fn run(job: &Job, rep: &Reporter) -> Result<(), NodeError> {
    let (f, adapter, opt): FinetuneParams = job.params()?;
    let model_dir = &job.inputs["model"][0].path;
    let base_reference = ModelRef::read(model_dir)?;
    if base_reference.is_checkpoint() {
        return Err(NodeError::msg("The input model is a finetune checkpoint; finetuning a checkpoint again is not supported")
            .hint("train from the base `model` node with more steps, or resume this run"));
    }
    let mut model = load_model(model_dir)?;
    if !model.has_chat_template() {
        return Err(NodeError::msg("The model has no chat template").hint(
            "finetune renders conversations with the model's chat template; use an instruct model",
        ));
    }
    let rows = table::read_dataset(&job.inputs["dataset"][0].path)
        .map_err(|e| caused("Failed to read the dataset", &e))?;
    if rows.is_empty() {
        return Err(NodeError::msg("The training dataset is empty")
            .hint("check the dataset node's filters, limit and split"));
    }
    let max_len = f.max_len as usize;
    let mut examples = Vec::with_capacity(rows.len());
    let mut truncated = 0usize;
    let mut empty = vec![];
    for (i, row) in rows.iter().enumerate() {
        let messages = conversation(&f, row, i)?;
        let (ex, cut): (Example, bool) = train::encode_chat(&model, &messages, max_len)
            .map_err(|e| caused(format!("Failed to encode row {i}"), &e))?;
        truncated += usize::from(cut);
        if ex.trainable_tokens() == 0 {
            empty.push(i);
        }
        examples.push(ex);
    }
    if !empty.is_empty() {
        return Err(NodeError::msg(format!(
            "{} row(s) have no trainable token after truncation to max_len = {max_len} (rows {:?}{})",
            empty.len(),
            &empty[..empty.len().min(10)],
            if empty.len() > 10 { ", ..." } else { "" }
        ))
        .hint("raise `max_len`, or filter out rows whose prompt alone is longer"));
    }
    if truncated > 0 {
        rep.send(Report::Info(format!(
            "warning: {truncated} of {} examples were cut to max_len = {max_len} tokens",
            rows.len()
        )));
    }
    let method = match adapter.method {
        Method::Full => Mode::Full,
        Method::Lora => Mode::Lora,
    };
    let cfg = train_config(&opt, f.lr, f.seed, f.packing.then_some(max_len))?;
    let merge = f.merge;
    if method == Mode::Full || merge {
        // Checked before training, not at the first checkpoint.
        model.config().to_hf_json().map_err(|e| {
            caused("This model cannot be written as a Hugging Face folder", &e)
                .hint("full finetuning and `merge` write one; train a LoRA adapter without `merge`, or load the model from its Hugging Face folder")
        })?;
    }
    if method == Mode::Lora {
        model
            .attach_lora(lora_config(&adapter)?, cfg.seed)
            .map_err(|e| caused("Failed to attach the adapter", &e))?;
    }
    let mut trainer = Trainer::new(&model, method.clone(), examples, cfg)
        .map_err(|e| caused("Failed to set up training", &e))?;
    let total = trainer.total_steps();
    let interval = f.save_interval as usize;
    let run = Run {
        job,
        base_reference: base_reference.clone(),
        method: method.clone(),
        merge,
    };

    // Earlier attempts' checkpoints, in step order.
    let mut saved: Vec<Saved> = job
        .resumed
        .iter()
        .filter_map(|item| {
            let step = item["step"].as_u64()? as usize;
            let dir = job.work_dir.join(item["dir"].as_str()?);
            dir.is_dir().then_some(Saved { step, dir })
        })
        .collect();
    saved.sort_by_key(|s| s.step);
    saved.dedup_by_key(|s| s.step);
    let mut metrics = vec![];
    if let Some(last) = saved.last() {
        trainer.load_state(&last.dir.join("state")).map_err(|e| {
            caused(
                format!("Failed to resume from `{}`", last.dir.display()),
                &e,
            )
        })?;
        metrics = read_metrics(&last.dir.join("state/metrics.jsonl"))?;
        rep.send(Report::Info(format!(
            "resuming from the step {} checkpoint",
            last.step
        )));
    }
    rep.send(Report::Total(total as u64));
    rep.send(Report::Advance(trainer.step() as u64));
    let mut stopped = None;
    while trainer.step() < total {
        match trainer.train_step(&model) {
            Ok(m) => {
                metrics.push(m);
                rep.send(Report::Advance(1));
            }
            Err(e @ dag_runtime::Error::NonFiniteLoss { .. }) if f.on_nan == OnNan::Stop => {
                rep.send(Report::Info(format!(
                    "warning: {e}; keeping the {} checkpoint(s) saved before it",
                    saved.len()
                )));
                stopped = Some(trainer.step() + 1);
                break;
            }
            Err(e) => {
                let kept = saved.last().map_or("none was saved yet".to_string(), |s| {
                    format!("the last saved one is step {}", s.step)
                });
                return Err(caused(format!("Training failed at step {}", trainer.step() + 1), &e)
                    .hint(format!("lower `lr` or raise `warmup_steps`; checkpoints are kept ({kept}), or set `on_nan = \"stop\"` to output them")));
            }
        }
        let s = trainer.step();
        if (interval > 0 && s % interval == 0) || s == total {
            saved.push(run.save(&model, &trainer, &metrics, rep)?);
        }
    }
    if saved.is_empty() {
        return Err(NodeError::msg(format!(
            "Training stopped at step {} before any checkpoint was saved",
            stopped.unwrap_or(0)
        ))
        .hint("set `save_interval` lower, or lower `lr`"));
    }

    let out = &job.outputs["checkpoints"];
    std::fs::create_dir_all(out)
        .map_err(|e| caused(format!("Failed to create `{}`", out.display()), &e))?;
    for (i, s) in saved.iter().enumerate() {
        link_tree(
            &s.dir.join("model"),
            &out.join(format!("{i:06}-step-{}", s.step)),
        )?;
    }
    // The model after training, for nodes that evaluate only the end of it.
    let last = saved
        .last()
        .expect("at least one checkpoint, checked above");
    link_tree(&last.dir.join("model"), &job.outputs["final"])?;
    let mdir = &job.outputs["metrics"];
    std::fs::create_dir_all(mdir)
        .map_err(|e| caused(format!("Failed to create `{}`", mdir.display()), &e))?;
    write_metrics(&mdir.join("metrics.jsonl"), &metrics)?;
    plot_loss(&mdir.join("loss.png"), &metrics)?;
    let last = metrics.last();
    rep.send(Report::Meta {
        port: "checkpoints".into(),
        value: json!({
            "steps": saved.iter().map(|s| s.step).collect::<Vec<_>>(),
            "method": if method == Mode::Lora { "lora" } else { "full" },
            "examples": rows.len(),
            "rows": trainer.rows(),
            "truncated": truncated,
            "base_model": model_identity_of_base(&base_reference),
            "stopped_at_nan_step": stopped,
        }),
    });
    rep.send(Report::Meta {
        port: "metrics".into(),
        value: json!({
            "steps": metrics.len(),
            "first_loss": metrics.first().map(|m| m.loss),
            "final_loss": last.map(|m| m.loss),
        }),
    });
    // Throughput goes to the run log, never into an artifact or its metadata. Steps resumed
    // from a saved state were not timed in this attempt.
    let timed: Vec<f64> = metrics
        .iter()
        .map(|m| m.tokens_per_s)
        .filter(|t| *t > 0.0)
        .collect();
    if !timed.is_empty() {
        rep.send(Report::Info(format!(
            "trained {} steps in this attempt at {:.1} tokens/s (mean over steps)",
            timed.len(),
            timed.iter().sum::<f64>() / timed.len() as f64
        )));
    }
    Ok(())
}

fn model_identity_of_base(reference: &ModelRef) -> Value {
    json!({ "location": reference.location, "content": reference.content })
}

/// Loss per optimizer step, as a PNG (dag-metrics draws every plot the project writes).
pub(crate) fn plot_loss(path: &Path, metrics: &[StepMetrics]) -> Result<(), NodeError> {
    let points: Vec<(f64, f64)> = metrics.iter().map(|m| (m.step as f64, m.loss)).collect();
    dag_metrics::line_plot_png(
        path,
        "training loss",
        ("optimizer step", "loss (assistant tokens)"),
        &[("loss", &points)],
    )
    .map_err(|e| caused(format!("Failed to plot `{}`", path.display()), &e))
}
