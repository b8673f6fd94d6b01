//! `extract-activations`: residual-stream states of one layer, written shard by shard.
//!
//! A graph fans this node out over layers (`matrix = { layer = [...] }`), so every layer is
//! its own artifact and cache key. One forward pass still serves several layers: the cell
//! that runs first computes every layer of `layers` that is not stored yet into a *pass
//! directory* in the store's work area, named by everything that determines the states
//! except the layer (model, dataset, rendering, truncation, batch, dtype, shard size); its
//! siblings, and later cells after `layers` grew, find their layer there and only link it.
//! Shards are written atomically (tmp, then rename) and a finished shard is never redone, so a
//! kill -9 costs at most the shard in flight. `dag gc` removes pass directories.
//!
//! The layout (per layer, documented for numpy/torch users in `docs/probes.md`):
//! `meta.json`, and per shard `shard-NNNNN.safetensors` (`activations` `[n, T, d]` right-padded
//! to the shard's longest row, `attention_mask` `[n, T]` u8, `input_ids` `[n, T]` i64, `row`
//! `[n]` i64) with `shard-NNNNN.jsonl` (one line per row: `row`, `tokens`, `truncated`, and the
//! dataset's other `columns`). Truncation keeps the *last* `max_len` tokens by default: in a
//! dialogue the final turn is what tells the classes apart.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use dag_protocol::NodeError;
use dag_protocol::probes::{ExtractActivationsParams, Truncation};
use dag_protocol::{Job, Report};
use dag_runtime::Model;
use dag_table::{self as table, Row};
use serde_json::{Value, json};
use tch::{Device, Kind, Tensor};

use crate::Reporter;
use crate::failure::caused;
use crate::model::load_model;
use crate::prompt::{Render, truncate};

/// Version of the stored layout (in meta.json).
pub const FORMAT: u32 = 1;

fn io_err(what: &str, path: &Path, e: &std::io::Error) -> NodeError {
    caused(format!("Failed to {what} `{}`", path.display()), e)
}

fn tch_err(what: &str, e: &tch::TchError) -> NodeError {
    caused(what.to_string(), e)
}

/// The storage dtype of activations.
fn storage_kind(name: &str) -> Result<Kind, NodeError> {
    match name {
        "f32" => Ok(Kind::Float),
        "bf16" => Ok(Kind::BFloat16),
        "f16" => Ok(Kind::Half),
        other => Err(
            NodeError::msg(format!("Unknown activation dtype `{other}`"))
                .hint("use `f32`, `bf16` or `f16`"),
        ),
    }
}

/// Writes `bytes` to `path` atomically.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), NodeError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| io_err("write", &tmp, &e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err("rename into", path, &e))
}

fn shard_name(s: usize) -> String {
    format!("shard-{s:05}")
}

/// The directory of the forward pass this job belongs to (see the module doc).
fn pass_dir(job: &Job) -> PathBuf {
    let input = |p: &str| {
        job.inputs
            .get(p)
            .and_then(|v| v.first())
            .map(|i| i.digest.clone())
    };
    let mut determined = serde_json::Map::new();
    determined.insert("format".into(), json!(FORMAT));
    determined.insert("model".into(), json!(input("model")));
    determined.insert("dataset".into(), json!(input("dataset")));
    for (k, v) in &job.params {
        if k != "layer" && k != "layers" {
            determined.insert(k.clone(), v.clone());
        }
    }
    let mut h = blake3::Hasher::new_derive_key("dag extract-activations pass v1");
    h.update(Value::Object(determined).to_string().as_bytes());
    let name = format!("activations-pass-{}", &h.finalize().to_hex()[..32]);
    match job.work_dir.parent() {
        Some(parent) => parent.join(name),
        None => job.work_dir.join(name),
    }
}

/// Runs the node.
pub fn run(job: &Job, rep: &Reporter) -> Result<(), NodeError> {
    let (p, rendering): ExtractActivationsParams = job.params()?;
    let layer = p.layer;
    let mut wanted: BTreeSet<i64> = p.layers.iter().flatten().copied().collect();
    wanted.insert(layer);
    let kind = storage_kind(p.dtype.as_str())?;
    // The engine has checked every range when the graph loaded.
    let (max_len, batch_size, shard_rows) = (
        rendering.max_len as usize,
        p.batch_size as usize,
        p.shard_rows as usize,
    );
    let render = Render::new(&rendering)?;
    let keep_end = rendering.truncation_side == Truncation::Left;
    let out = &job.outputs["activations"];
    let pass = pass_dir(job);
    let layer_dir = |l: i64| pass.join(format!("layer-{l}"));
    let complete = |l: i64| layer_dir(l).join("meta.json").exists();

    if !complete(layer) {
        let dataset = &job.inputs["dataset"][0];
        let rows = table::read_dataset(&dataset.path)
            .map_err(|e| caused("Failed to read the dataset", &e))?;
        if rows.is_empty() {
            return Err(NodeError::msg("The dataset has no rows")
                .hint("check the dataset node's filters and splits"));
        }
        let model = load_model(&job.inputs["model"][0].path)?;
        let n_layers = model.config().num_hidden_layers;
        if let Some(bad) = wanted.iter().find(|&&l| l < 0 || l > n_layers) {
            return Err(NodeError::msg(format!(
                "Layer {bad} does not exist: the model has {n_layers} blocks"
            ))
            .hint(format!(
                "use 0 (embeddings) to {n_layers} (final-normed output); i is the input of block i"
            )));
        }
        let todo: Vec<i64> = wanted.iter().copied().filter(|&l| !complete(l)).collect();
        for &l in &todo {
            let d = layer_dir(l);
            std::fs::create_dir_all(&d).map_err(|e| io_err("create", &d, &e))?;
        }
        if todo.len() > 1 {
            rep.send(Report::Info(format!(
                "one forward pass writes layers {todo:?}"
            )));
        }
        let n_shards = rows.len().div_ceil(shard_rows);
        rep.send(Report::Total(rows.len() as u64));
        let column = render.column().to_string();
        let mut reused = 0;
        for s in 0..n_shards {
            let lo = s * shard_rows;
            let hi = (lo + shard_rows).min(rows.len());
            let missing: Vec<i64> = todo
                .iter()
                .copied()
                .filter(|&l| {
                    !layer_dir(l)
                        .join(format!("{}.safetensors", shard_name(s)))
                        .exists()
                })
                .collect();
            if !missing.is_empty() {
                let shard = extract_shard(
                    &model,
                    &rows[lo..hi],
                    lo,
                    &render,
                    (max_len, keep_end),
                    batch_size,
                    &missing,
                    kind,
                )?;
                for (l, acts) in missing.iter().zip(&shard.activations) {
                    write_shard(&layer_dir(*l), s, acts, &shard, &rows[lo..hi], lo, &column)?;
                }
                rep.send(Report::SaveItems(vec![
                    json!({ "shard": s, "layers": missing }),
                ]));
            } else {
                reused += 1;
            }
            rep.send(Report::Advance((hi - lo) as u64));
        }
        if reused > 0 {
            rep.send(Report::Info(format!(
                "resumed: {reused} of {n_shards} shards were already stored"
            )));
        }
        for &l in &todo {
            finish_layer(
                job,
                &model,
                &layer_dir(l),
                l,
                n_shards,
                rows.len(),
                &render,
                max_len,
            )?;
        }
    } else {
        rep.send(Report::Info(format!(
            "layer {layer} was computed by a sibling's forward pass"
        )))
    }
    link_layer(&layer_dir(layer), out)?;
    let meta: Value = serde_json::from_slice(
        &std::fs::read(out.join("meta.json"))
            .map_err(|e| io_err("read", &out.join("meta.json"), &e))?,
    )
    .map_err(|e| caused("Failed to parse meta.json", &e))?;
    rep.send(Report::Meta {
        port: "activations".into(),
        value: meta,
    });
    Ok(())
}

/// One shard's forward results.
struct Shard {
    /// Per requested layer, `[n, T, d]` in the storage dtype (zeros on padding).
    activations: Vec<Tensor>,
    /// `[n, T]` u8.
    mask: Tensor,
    /// `[n, T]` i64 (0 on padding).
    ids: Tensor,
    /// Real tokens per row, and whether the row was cut at `max_len`.
    lengths: Vec<(usize, bool)>,
}

#[allow(clippy::too_many_arguments)]
fn extract_shard(
    model: &Model,
    rows: &[Row],
    offset: usize,
    render: &Render,
    (max_len, keep_end): (usize, bool),
    batch_size: usize,
    layers: &[i64],
    kind: Kind,
) -> Result<Shard, NodeError> {
    let mut seqs = Vec::with_capacity(rows.len());
    let mut lengths = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let mut ids = render.tokens(model, row, offset + i)?;
        let cut = truncate(&mut ids, max_len, keep_end);
        lengths.push((ids.len(), cut));
        seqs.push(ids);
    }
    let t = seqs.iter().map(Vec::len).max().unwrap_or(1);
    let d = model.config().hidden_size;
    let n = rows.len() as i64;
    let activations: Vec<Tensor> = layers
        .iter()
        .map(|_| Tensor::zeros([n, t as i64, d], (kind, Device::Cpu)))
        .collect();
    let mut mask = vec![0u8; rows.len() * t];
    let mut ids = vec![0i64; rows.len() * t];
    for (i, s) in seqs.iter().enumerate() {
        for (j, &tok) in s.iter().enumerate() {
            mask[i * t + j] = 1;
            ids[i * t + j] = i64::from(tok);
        }
    }
    // Rows of similar length share a batch, so little compute goes to padding; the
    // results are placed back in dataset order.
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(seqs[i].len()));
    let capture: Vec<usize> = layers.iter().map(|&l| l as usize).collect();
    for chunk in order.chunks(batch_size) {
        let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| seqs[i].clone()).collect();
        let states = model
            .hidden_states(&batch, &capture)
            .map_err(|e| caused("Failed to run the model", &e))?;
        for (h, dst) in states.iter().zip(&activations) {
            let h = h.to_device(Device::Cpu).to_kind(kind);
            for (b, &i) in chunk.iter().enumerate() {
                let len = seqs[i].len() as i64;
                dst.get(i as i64)
                    .narrow(0, 0, len)
                    .copy_(&h.get(b as i64).narrow(0, 0, len));
            }
        }
    }
    Ok(Shard {
        activations,
        mask: Tensor::from_slice(&mask).view([n, t as i64]),
        ids: Tensor::from_slice(&ids).view([n, t as i64]),
        lengths,
    })
}

fn write_shard(
    dir: &Path,
    s: usize,
    acts: &Tensor,
    shard: &Shard,
    rows: &[Row],
    offset: usize,
    text_column: &str,
) -> Result<(), NodeError> {
    let name = shard_name(s);
    let mut lines = Vec::new();
    for (i, (row, &(tokens, truncated))) in rows.iter().zip(&shard.lengths).enumerate() {
        let mut columns = row.clone();
        columns.remove(text_column);
        let line = json!({ "row": offset + i, "tokens": tokens, "truncated": truncated, "columns": columns });
        lines.extend(serde_json::to_vec(&line).expect("rows serialise"));
        lines.push(b'\n');
    }
    write_atomic(&dir.join(format!("{name}.jsonl")), &lines)?;
    let row_ids: Vec<i64> = (offset..offset + rows.len()).map(|r| r as i64).collect();
    let tensors = [
        ("activations", acts.shallow_clone()),
        ("attention_mask", shard.mask.shallow_clone()),
        ("input_ids", shard.ids.shallow_clone()),
        ("row", Tensor::from_slice(&row_ids)),
    ];
    // The safetensors file is written last: its presence marks the shard finished.
    let path = dir.join(format!("{name}.safetensors"));
    let tmp = dir.join(format!("{name}.safetensors.tmp"));
    Tensor::write_safetensors(&tensors, &tmp)
        .map_err(|e| tch_err(&format!("Failed to write `{}`", tmp.display()), &e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io_err("rename into", &path, &e))
}

#[allow(clippy::too_many_arguments)]
fn finish_layer(
    job: &Job,
    model: &Model,
    dir: &Path,
    layer: i64,
    n_shards: usize,
    n_rows: usize,
    render: &Render,
    max_len: usize,
) -> Result<(), NodeError> {
    let (p, rendering): ExtractActivationsParams = job.params()?;
    let mut truncated = 0usize;
    let mut tokens = 0usize;
    let mut columns: BTreeSet<String> = BTreeSet::new();
    for s in 0..n_shards {
        let p = dir.join(format!("{}.jsonl", shard_name(s)));
        let text = std::fs::read_to_string(&p).map_err(|e| io_err("read", &p, &e))?;
        for line in text.lines() {
            let v: Value = serde_json::from_str(line)
                .map_err(|e| caused(format!("Failed to parse `{}`", p.display()), &e))?;
            truncated += usize::from(v["truncated"].as_bool().unwrap_or(false));
            tokens += v["tokens"].as_u64().unwrap_or(0) as usize;
            if let Some(c) = v["columns"].as_object() {
                columns.extend(c.keys().cloned());
            }
        }
    }
    let cfg = model.config();
    let site = if layer == cfg.num_hidden_layers {
        "final-norm output (hidden_states[num_layers])"
    } else {
        "residual stream entering the block (hidden_states[layer])"
    };
    let meta = json!({
        "format": FORMAT,
        "model": model.identity(),
        "model_artifact": job.inputs["model"][0].digest,
        "dataset_artifact": job.inputs["dataset"][0].digest,
        "layer": layer,
        "num_layers": cfg.num_hidden_layers,
        "hidden_size": cfg.hidden_size,
        "site": site,
        "dtype": p.dtype.as_str(),
        "rows": n_rows,
        "tokens": tokens,
        "shards": n_shards,
        "max_len": max_len,
        "truncation_side": rendering.truncation_side.as_str(),
        "truncated_rows": truncated,
        "text_column": render.column(),
        "columns": columns,
    });
    write_atomic(
        &dir.join("meta.json"),
        &serde_json::to_vec_pretty(&meta).expect("serialises"),
    )
}

/// Puts a stored layer's files into the output directory: hard links (the files are
/// immutable once renamed into place), or copies across file systems.
fn link_layer(from: &Path, to: &Path) -> Result<(), NodeError> {
    std::fs::create_dir_all(to).map_err(|e| io_err("create", to, &e))?;
    let entries = std::fs::read_dir(from).map_err(|e| io_err("list", from, &e))?;
    for e in entries {
        let e = e.map_err(|e| io_err("list", from, &e))?;
        let name = e.file_name();
        if name.to_string_lossy().ends_with(".tmp") {
            continue;
        }
        let dst = to.join(&name);
        if std::fs::hard_link(e.path(), &dst).is_err() {
            std::fs::copy(e.path(), &dst).map_err(|err| io_err("copy into", &dst, &err))?;
        }
    }
    Ok(())
}

/// One layer's stored activations, loaded whole (for probe training).
pub struct Layer {
    /// `[rows, T, d]` f32, zeros on padding, T the longest row over all shards.
    pub activations: Tensor,
    /// `[rows, T]` bool.
    pub mask: Tensor,
    /// Per row: the dataset row index and its carried columns.
    pub rows: Vec<(usize, serde_json::Map<String, Value>)>,
    /// The producer's meta.json.
    pub meta: Value,
}

/// Reads a layer directory written by this node.
pub fn read_layer(dir: &Path) -> Result<Layer, NodeError> {
    let meta_path = dir.join("meta.json");
    let meta: Value = serde_json::from_slice(
        &std::fs::read(&meta_path).map_err(|e| io_err("read", &meta_path, &e))?,
    )
    .map_err(|e| caused(format!("Failed to parse `{}`", meta_path.display()), &e))?;
    if meta["format"].as_u64() != Some(u64::from(FORMAT)) {
        return Err(NodeError::msg(format!(
            "`{}` is not an activations layout this build reads (format {}, expected {FORMAT})",
            meta_path.display(),
            meta["format"]
        ))
        .hint("rerun the extract-activations node with this build"));
    }
    let n_shards = meta["shards"].as_u64().unwrap_or(0) as usize;
    // The row lists come first: their token counts size the padded tensor, so each shard is
    // copied into place and dropped, and the layer is held once (not once as shards and
    // again whole), which is what bounds the memory of probe training.
    let mut rows = Vec::new();
    let mut longest = 0i64;
    let mut shard_rows = Vec::with_capacity(n_shards);
    for s in 0..n_shards {
        let jp = dir.join(format!("{}.jsonl", shard_name(s)));
        let text = std::fs::read_to_string(&jp).map_err(|e| io_err("read", &jp, &e))?;
        let before = rows.len();
        for line in text.lines() {
            let v: Value = serde_json::from_str(line)
                .map_err(|e| caused(format!("Failed to parse `{}`", jp.display()), &e))?;
            longest = longest.max(v["tokens"].as_i64().unwrap_or(0));
            let row = v["row"].as_u64().unwrap_or(0) as usize;
            let cols = v["columns"].as_object().cloned().unwrap_or_default();
            rows.push((row, cols));
        }
        shard_rows.push(rows.len() - before);
    }
    let hidden = meta["hidden_size"].as_i64().unwrap_or(0);
    let n = rows.len() as i64;
    let activations = Tensor::zeros([n, longest, hidden], (Kind::Float, Device::Cpu));
    let mask = Tensor::zeros([n, longest], (Kind::Bool, Device::Cpu));
    let mut offset = 0i64;
    for (s, &listed) in shard_rows.iter().enumerate() {
        let p = dir.join(format!("{}.safetensors", shard_name(s)));
        let tensors = Tensor::read_safetensors(&p)
            .map_err(|e| tch_err(&format!("Failed to read `{}`", p.display()), &e))?;
        let get = |name: &str| {
            tensors
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.shallow_clone())
                .ok_or_else(|| NodeError::msg(format!("`{}` has no tensor `{name}`", p.display())))
        };
        let (acts, shard_mask) = (get("activations")?, get("attention_mask")?);
        let size = acts.size();
        if size.len() != 3 || size[0] != listed as i64 || size[1] > longest || size[2] != hidden {
            return Err(NodeError::msg(format!(
                "`{}` holds activations of shape {size:?}, but its row list and meta.json say \
                 {listed} rows of at most {longest} tokens of width {hidden}",
                p.display()
            ))
            .hint("the layer directory is damaged: rerun the extract-activations node"));
        }
        let (rows_here, tokens_here) = (size[0], size[1]);
        let place = |t: &Tensor| t.narrow(0, offset, rows_here).narrow(1, 0, tokens_here);
        place(&activations).copy_(&acts);
        place(&mask).copy_(&shard_mask);
        offset += rows_here;
    }
    Ok(Layer {
        activations,
        mask,
        rows,
        meta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dag_protocol::params::Params;
    use dag_protocol::probes::Rendering;

    /// A layer directory of shards `[rows, tokens]`, each row's real length given, with
    /// activation value `32 * row + 4 * token + channel` (exact in bf16 below 256) and padding `-7`.
    fn layer_dir(dir: &Path, shards: &[&[i64]], hidden: i64) {
        let mut row = 0i64;
        for (s, lengths) in shards.iter().enumerate() {
            let t = *lengths.iter().max().unwrap();
            let n = lengths.len() as i64;
            let mut acts = vec![-7f32; (n * t * hidden) as usize];
            let mut mask = vec![0u8; (n * t) as usize];
            let mut lines = String::new();
            for (i, &len) in lengths.iter().enumerate() {
                for tok in 0..len {
                    mask[(i as i64 * t + tok) as usize] = 1;
                    for c in 0..hidden {
                        acts[((i as i64 * t + tok) * hidden + c) as usize] =
                            (32 * (row + i as i64) + 4 * tok + c) as f32;
                    }
                }
                lines += &format!(
                    "{{\"row\": {}, \"tokens\": {len}, \"columns\": {{}}}}\n",
                    row + i as i64
                );
            }
            row += n;
            let acts = Tensor::from_slice(&acts)
                .view([n, t, hidden])
                .to_kind(Kind::BFloat16);
            let mask = Tensor::from_slice(&mask).view([n, t]);
            let name = shard_name(s);
            std::fs::write(dir.join(format!("{name}.jsonl")), lines).unwrap();
            Tensor::write_safetensors(
                &[("activations", acts), ("attention_mask", mask)],
                dir.join(format!("{name}.safetensors")),
            )
            .unwrap();
        }
        let meta = json!({ "format": FORMAT, "hidden_size": hidden, "shards": shards.len() });
        std::fs::write(dir.join("meta.json"), meta.to_string()).unwrap();
    }

    #[test]
    fn shards_of_different_lengths_read_into_one_padded_f32_layer() {
        let d = tempfile::tempdir().unwrap();
        layer_dir(d.path(), &[&[3, 1], &[5], &[2, 4]], 2);
        let layer = read_layer(d.path()).unwrap();
        assert_eq!(layer.activations.size(), [5, 5, 2]);
        assert_eq!(layer.activations.kind(), Kind::Float);
        let rows: Vec<usize> = layer.rows.iter().map(|(r, _)| *r).collect();
        assert_eq!(rows, [0, 1, 2, 3, 4]);
        for (r, len) in [3i64, 1, 5, 2, 4].into_iter().enumerate() {
            for tok in 0..5 {
                let real = tok < len;
                assert_eq!(layer.mask.int64_value(&[r as i64, tok]) == 1, real);
                for c in 0..2 {
                    let v = layer.activations.double_value(&[r as i64, tok, c]);
                    // Real tokens carry their value; beyond each shard's width, zeros (the
                    // shard's own padding, -7, is whatever the writer left, and the mask
                    // marks it).
                    if real {
                        assert_eq!(v, (32 * r as i64 + 4 * tok + c) as f64);
                    } else if tok >= [3, 3, 5, 4, 4][r] {
                        assert_eq!(v, 0.0, "row {r} token {tok}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_shard_that_disagrees_with_its_row_list_is_reported_as_damaged() {
        let d = tempfile::tempdir().unwrap();
        layer_dir(d.path(), &[&[3, 1], &[5]], 2);
        let jsonl = d.path().join(format!("{}.jsonl", shard_name(0)));
        let mut text = std::fs::read_to_string(&jsonl).unwrap();
        text += "{\"row\": 9, \"tokens\": 2, \"columns\": {}}\n";
        std::fs::write(&jsonl, text).unwrap();
        let err = read_layer(d.path()).err().unwrap().to_string();
        assert!(
            err.contains("its row list") && err.contains("3 rows"),
            "{err}"
        );
    }

    /// Rendering params: `p`, then the defaults of the rest.
    fn rendering(p: Value) -> Rendering {
        let all = dag_protocol::params::with_defaults(
            &Rendering::fields(),
            p.as_object().unwrap().clone(),
        );
        Rendering::from_map(&all).unwrap()
    }

    fn job(params: Value) -> Job {
        serde_json::from_value(json!({
            "node": "extract-activations", "instance": "t", "params": params, "inputs": {},
            "outputs": {}, "scratch": "/tmp", "resumed": [], "work_dir": "/tmp/work/k",
        }))
        .unwrap()
    }

    #[test]
    fn rendering_params_are_checked() {
        let err = |p: Value| match Render::new(&rendering(p)) {
            Err(e) => e,
            Ok(_) => panic!("accepted"),
        };
        assert!(
            err(json!({}))
                .message
                .contains("neither `text_column` nor `messages_column`")
        );
        assert!(
            err(json!({ "text_column": "a", "messages_column": "b" }))
                .message
                .contains("Both")
        );
        let e = err(json!({ "text_column": "a", "system_prompt": "s" }));
        assert!(e.hint.is_some_and(|h| h.contains("chat = true")));
        assert!(
            matches!(Render::new(&rendering(json!({ "text_column": "a" }))), Ok(Render::Text(c)) if c == "a")
        );
        assert!(matches!(
            Render::new(&rendering(json!({ "messages_column": "m", "system_prompt": "s" }))),
            Ok(Render::Messages(c, Some(s))) if c == "m" && s == "s"
        ));
        assert!(storage_kind("f8").unwrap_err().to_string().contains("`f8`"));
    }

    #[test]
    fn the_pass_directory_ignores_the_layer_only() {
        let base = json!({ "layer": 6, "layers": [6, 15], "text_column": "t", "max_len": 64 });
        let a = pass_dir(&job(base.clone()));
        let mut other_layer = base.clone();
        other_layer["layer"] = json!(15);
        other_layer["layers"] = json!([6, 15, 20]);
        assert_eq!(pass_dir(&job(other_layer)), a, "siblings share the pass");
        let mut other_len = base;
        other_len["max_len"] = json!(65);
        assert_ne!(
            pass_dir(&job(other_len)),
            a,
            "anything that changes the states changes the pass"
        );
        assert_eq!(
            a.parent().unwrap(),
            Path::new("/tmp/work"),
            "in the store's work area"
        );
    }
}
