//! `dag export --format inspect`: an evaluation as an inspect_ai `.eval` log, for
//! `inspect view` and `inspect_ai.log.read_eval_log`.
//!
//! The log is built from one computation's two outputs: an `evaluate` node's `samples` and
//! `metrics`, or a judge node's (`grade-qa`, `anima`, `harmbench`, `airbench`) `grades` and
//! `scores`; either output names it. Nothing in it is random or read from the clock: the ids
//! are derived from the two artifacts' digests, the times are the store's, and the zip has
//! fixed timestamps and a fixed order, so exporting the same target twice gives the same
//! bytes.

use std::collections::{BTreeSet, HashMap};
use std::io::Write as _;

use serde_json::{Map, Value as Json, json};

use super::*;

/// What `--format inspect` exports, for errors.
const SUPPORTED: &str = "the `samples` or `metrics` of an `evaluate` node, or the `grades` or \
                         `scores` of a `grade-qa`, `anima`, `harmbench` or `airbench` node";

/// inspect's log schema version (`header.json`, `_journal/start.json`).
const LOG_VERSION: u64 = 2;

/// Stands for NaN, inspect's "unscored" score value, until the JSON is written: serde_json
/// holds no NaN, inspect reads the bare `NaN` constant its own writer emits.
const NAN: &str = "\u{0}dag:NaN\u{0}";
const NAN_VALUE_JSON: &str = "\"value\":\"\\u0000dag:NaN\\u0000\"";

/// The node types a log can be built from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Evaluate,
    GradeQa,
    Anima,
    HarmBench,
    AirBench,
}

impl Kind {
    fn of(node_type: &str) -> Option<Kind> {
        Some(match node_type {
            "evaluate" => Kind::Evaluate,
            "grade-qa" => Kind::GradeQa,
            "anima" => Kind::Anima,
            "harmbench" => Kind::HarmBench,
            "airbench" => Kind::AirBench,
            _ => return None,
        })
    }

    /// The per-sample output and the summary output.
    fn ports(self) -> (&'static str, &'static str) {
        match self {
            Kind::Evaluate => ("samples", "metrics"),
            _ => ("grades", "scores"),
        }
    }
}

type Row = Map<String, Json>;

/// The computation a target names, with both its outputs read.
struct Source {
    kind: Kind,
    node_type: String,
    entry: dag_store::CacheEntry,
    preimage: Json,
    rows: Vec<Row>,
    rows_digest: Digest,
    summary: Json,
    summary_digest: Digest,
    /// When the per-sample output was first stored (seconds since the epoch).
    created: u64,
}

/// `dag export --format inspect TARGET DEST`: writes the log, never over an existing file.
pub(super) fn export_inspect(
    store: &Store,
    target: &dag_engine::Target,
    dest: &Path,
) -> Result<()> {
    if dest.extension().and_then(|e| e.to_str()) != Some("eval") {
        bail!(Hinted::new(
            format!("`{}` does not end in `.eval`", dest.display()),
            "inspect tells its log formats apart by name: name the file `*.eval`"
        ));
    }
    let source = find(store, target)?;
    let log = build(store, &source)?;
    let bytes = log.to_zip()?;
    let tmp = dest.with_extension(format!("eval.tmp-{}", std::process::id()));
    std::fs::write(&tmp, &bytes)
        .and_then(|()| std::fs::rename(&tmp, dest))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            anyhow!(e).context(format!("Failed to write `{}`", dest.display()))
        })
}

fn unsupported(what: String) -> anyhow::Error {
    anyhow!(Hinted::new(
        what,
        format!(
            "`--format inspect` exports {SUPPORTED}; `--format dag` (the default) copies any artifact"
        ),
    ))
}

/// The producing computation of the target and both its outputs.
fn find(store: &Store, target: &dag_engine::Target) -> Result<Source> {
    let d = target.digest;
    let rec = store
        .artifact(&d)?
        .ok_or_else(|| anyhow!("no artifact {d}"))?;
    let key = match &target.in_run {
        Some((key, _, _)) => Some(*key),
        None => rec.producer,
    };
    let Some(key) = key else {
        return Err(unsupported(format!(
            "`{}` ({}) was not computed by a node: it is no evaluation",
            d.short(),
            rec.kind
        )));
    };
    let Some(entry) = store.cache_get(&key)? else {
        bail!(Hinted::new(
            format!(
                "The computation that produced `{}` is no longer in the store's cache",
                d.short()
            ),
            "run the graph again (the outputs are reused if they are still stored), then export"
        ));
    };
    let preimage = entry.preimage();
    let node_type = preimage["type"].as_str().unwrap_or("?").to_string();
    let port = match &target.in_run {
        Some((_, port, _)) => port.clone(),
        None => entry
            .outputs
            .iter()
            .find(|(_, o)| *o == d)
            .map(|(p, _)| p.clone())
            .unwrap_or_default(),
    };
    let what = || {
        format!(
            "`{}` is the `{port}` output ({}) of `{}`, a `{node_type}` node",
            d.short(),
            rec.kind,
            entry.label
        )
    };
    let Some(kind) = Kind::of(&node_type) else {
        return Err(unsupported(what()));
    };
    let (rows_port, summary_port) = kind.ports();
    if port != rows_port && port != summary_port {
        return Err(unsupported(what()));
    }
    let output = |name: &str| -> Result<Digest> {
        entry
            .outputs
            .iter()
            .find(|(p, _)| p == name)
            .map(|(_, d)| *d)
            .ok_or_else(|| anyhow!("`{}` has no `{name}` output", entry.label))
    };
    let rows_digest = output(rows_port)?;
    let summary_digest = output(summary_port)?;
    let rows = read_rows(store, &rows_digest)
        .with_context(|| format!("Failed to read `{}.{rows_port}`", entry.label))?;
    let summary: Json = serde_json::from_slice(&store.read(&summary_digest)?)
        .with_context(|| format!("Failed to read `{}.{summary_port}`", entry.label))?;
    let created = store
        .artifact(&rows_digest)?
        .map_or(rec.created, |r| r.created);
    Ok(Source {
        kind,
        node_type,
        entry,
        preimage,
        rows,
        rows_digest,
        summary,
        summary_digest,
        created,
    })
}

/// A JSONL artifact's rows.
fn read_rows(store: &Store, d: &Digest) -> Result<Vec<Row>> {
    let bytes = store.read(d)?;
    let text = String::from_utf8_lossy(&bytes);
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("row {} is not a JSON object", i + 1))
        })
        .collect()
}

/// A log ready to be written.
struct Log {
    start: Json,
    header: Json,
    /// `(id, epoch, sample)`, in inspect's order (epoch, then id).
    samples: Vec<(String, u64, Json)>,
    summaries: Vec<Json>,
}

impl Log {
    /// The `.eval` zip: the journal's start record, the samples, the journal's summaries,
    /// then the consolidated summaries and the header, as inspect writes a finished log.
    fn to_zip(&self) -> Result<Vec<u8>> {
        let mut entries: Vec<(String, Vec<u8>)> =
            vec![("_journal/start.json".into(), to_json(&self.start))];
        for (id, epoch, sample) in &self.samples {
            entries.push((format!("samples/{id}_epoch_{epoch}.json"), to_json(sample)));
        }
        let summaries = to_json(&Json::Array(self.summaries.clone()));
        entries.push(("_journal/summaries/1.json".into(), summaries.clone()));
        entries.push(("summaries.json".into(), summaries));
        entries.push(("header.json".into(), to_json(&self.header)));
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .last_modified_time(zip::DateTime::default())
            .unix_permissions(0o644);
        for (name, bytes) in &entries {
            w.start_file(name.as_str(), options)?;
            w.write_all(bytes)?;
        }
        Ok(w.finish()?.into_inner())
    }
}

/// Compact JSON, with the NaN stand-ins of unscored values written as `NaN`.
fn to_json(v: &Json) -> Vec<u8> {
    let s = serde_json::to_string(v).expect("JSON values serialise");
    s.replace(NAN_VALUE_JSON, "\"value\":NaN").into_bytes()
}

/// 22 base-57 characters, the length and alphabet of inspect's own ids, from a digest.
fn short_id(context: &str, seed: &str) -> String {
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let d = dag_store::hash_bytes(
        format!("dag export --format inspect v1 {context} {seed}").as_bytes(),
    );
    let mut n = u128::from_le_bytes(d.0[..16].try_into().expect("16 bytes"));
    (0..22)
        .map(|_| {
            let c = ALPHABET[(n % 57) as usize] as char;
            n /= 57;
            c
        })
        .collect()
}

/// Seconds since the epoch as an ISO 8601 UTC time (`2026-01-31T12:00:00+00:00`).
fn iso_time(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A value as text: strings as they are, anything else as JSON.
fn text(v: Option<&Json>) -> Option<String> {
    match v? {
        Json::Null => None,
        Json::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// A row's id as inspect takes one: an integer or a string.
fn sample_id(v: Option<&Json>) -> Option<Json> {
    match v? {
        Json::Number(n) if n.is_u64() || n.is_i64() => Some(Json::Number(n.clone())),
        Json::Null => None,
        other => text(Some(other)).map(Json::String),
    }
}

fn id_text(id: &Json) -> String {
    match id {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `A`, `B`, ... for choice indices (inspect's multiple-choice targets and answers).
fn letter(i: usize) -> String {
    if i < 26 {
        char::from(b'A' + i as u8).to_string()
    } else {
        i.to_string()
    }
}

fn user_message(input: &str) -> Json {
    json!({ "role": "user", "content": input, "source": "input" })
}

fn assistant_message(completion: &str, model: &str) -> Json {
    json!({ "role": "assistant", "content": completion, "source": "generate", "model": model })
}

/// inspect's `ModelOutput` for one completion.
fn model_output(completion: &str, model: &str, finish_reason: Option<&str>) -> Json {
    let stop_reason = match finish_reason {
        Some("length") => "max_tokens",
        Some("stop") | Some("eos") | None => "stop",
        Some(_) => "unknown",
    };
    json!({
        "model": model,
        "choices": [{ "message": assistant_message(completion, model), "stop_reason": stop_reason }],
        "completion": completion,
    })
}

/// One sample in the making.
struct Sample {
    id: Json,
    epoch: u64,
    input: String,
    choices: Vec<String>,
    target: Json,
    completion: Option<(String, Option<String>)>,
    scores: Map<String, Json>,
    metadata: Map<String, Json>,
}

impl Sample {
    fn to_json(&self, model: &str) -> (Json, Json) {
        let mut messages = vec![user_message(&self.input)];
        let mut sample = json!({
            "id": self.id,
            "epoch": self.epoch,
            "input": self.input,
            "target": self.target,
        });
        if !self.choices.is_empty() {
            sample["choices"] = json!(self.choices);
        }
        if let Some((completion, finish)) = &self.completion {
            messages.push(assistant_message(completion, model));
            sample["output"] = model_output(completion, model, finish.as_deref());
        }
        let message_count = messages.len();
        sample["messages"] = Json::Array(messages);
        sample["scores"] = Json::Object(self.scores.clone());
        sample["metadata"] = Json::Object(self.metadata.clone());
        let mut summary = json!({
            "id": self.id,
            "epoch": self.epoch,
            "input": self.input,
            "target": self.target,
        });
        if !self.choices.is_empty() {
            summary["choices"] = json!(self.choices);
        }
        summary["metadata"] = Json::Object(self.metadata.clone());
        summary["scores"] = Json::Object(self.scores.clone());
        summary["completed"] = json!(true);
        summary["message_count"] = json!(message_count);
        (sample, summary)
    }
}

/// The model the evaluation is of: `dag/<weights' name>` (`hf/org/name` for a Hugging Face
/// source, `+<node>` for a finetune's adapter), found upstream of the computation.
fn model_of(store: &Store, preimage: &Json) -> (String, Map<String, Json>) {
    let unknown = ("dag/unknown".to_string(), Map::new());
    let Some(d) = find_model_input(store, preimage, 4) else {
        return unknown;
    };
    let Ok(Some(rec)) = store.artifact(&d) else {
        return unknown;
    };
    let meta = rec.meta();
    let location = meta["location"].as_str().unwrap_or_default();
    let mut name = match location.strip_prefix("hf://") {
        Some(hf) => format!("hf/{}", hf.split('@').next().unwrap_or(hf)),
        None => {
            let file = Path::new(location)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| "unknown".into());
            format!("dag/{}", file.strip_suffix(".gguf").unwrap_or(&file))
        }
    };
    if !meta["adapter"].is_null()
        && let Some(label) = rec
            .producer
            .and_then(|k| store.cache_get(&k).ok().flatten())
            .map(|e| e.label)
    {
        name.push('+');
        name.push_str(&label);
    }
    let mut args = Map::new();
    args.insert("artifact".into(), json!(d.to_hex()));
    for k in ["content", "dtype", "step"] {
        if !meta[k].is_null() {
            args.insert(k.into(), meta[k].clone());
        }
    }
    (name, args)
}

/// The artifact on a `model` input of the computation, or of what produced its inputs.
fn find_model_input(store: &Store, preimage: &Json, depth: usize) -> Option<Digest> {
    let inputs = preimage["inputs"].as_object()?;
    let parse = |v: &Json| v.as_str().and_then(|h| h.parse::<Digest>().ok());
    if let Some(d) = inputs.get("model").and_then(|v| v.get(0)).and_then(parse) {
        return Some(d);
    }
    if depth == 0 {
        return None;
    }
    for ds in inputs.values() {
        for d in ds.as_array().into_iter().flatten().filter_map(parse) {
            let producer = store.artifact(&d).ok().flatten()?.producer?;
            let entry = store.cache_get(&producer).ok().flatten()?;
            if let Some(m) = find_model_input(store, &entry.preimage(), depth - 1) {
                return Some(m);
            }
        }
    }
    None
}

/// An `EvalScore`: `metrics` from the numbers among `fields`, the headline ones first.
fn eval_score(name: &str, fields: &Map<String, Json>, metadata: Option<Json>) -> Json {
    const HEADLINE: [&str; 6] = [
        "accuracy",
        "asr",
        "safety_score",
        "overall_mean",
        "dimension_normalised_mean",
        "mean_score",
    ];
    let numeric = |v: &Json| v.is_number();
    let mut keys: Vec<&String> = HEADLINE
        .iter()
        .filter_map(|h| fields.get_key_value(*h).map(|(k, _)| k))
        .collect();
    keys.extend(fields.keys().filter(|k| !HEADLINE.contains(&k.as_str())));
    let mut metrics = Map::new();
    for k in keys {
        if numeric(&fields[k]) {
            metrics.insert(k.clone(), json!({ "name": k, "value": fields[k] }));
        }
    }
    let mut s = json!({ "name": name, "scorer": name, "params": {}, "metrics": metrics });
    for (field, key) in [
        ("scored", "scored_samples"),
        ("unscored", "unscored_samples"),
    ] {
        if let Some(n) = fields.get(field).filter(|v| v.is_u64()) {
            s[key] = n.clone();
        }
    }
    if let Some(m) = metadata {
        s["metadata"] = m;
    }
    s
}

/// The task name, its samples and `results.scores`, by node type.
struct Built {
    task: String,
    samples: Vec<Sample>,
    scores: Vec<Json>,
}

fn build(store: &Store, s: &Source) -> Result<Log> {
    let (model, mut model_args) = model_of(store, &s.preimage);
    // `evaluate` records the runtime's identity of the model it loaded.
    if let Some(identity) = s.summary.get("model").filter(|v| v.is_string()) {
        model_args.insert("identity".into(), identity.clone());
    }
    let built = match s.kind {
        Kind::Evaluate => evaluate(s)?,
        _ => judged(store, s)?,
    };
    let Built {
        task,
        mut samples,
        scores,
    } = built;
    samples.sort_by(|a, b| {
        let key = |x: &Sample| match &x.id {
            Json::String(s) => s.clone(),
            other => format!("{:0>20}", other.to_string()),
        };
        (a.epoch, key(a)).cmp(&(b.epoch, key(b)))
    });
    let mut ids: Vec<Json> = Vec::new();
    let mut seen = BTreeSet::new();
    for x in &samples {
        if seen.insert(id_text(&x.id)) {
            ids.push(x.id.clone());
        }
    }
    let epochs = samples.iter().map(|x| x.epoch).max().unwrap_or(1);

    let seed = format!("{} {}", s.rows_digest.to_hex(), s.summary_digest.to_hex());
    let completed = s.created;
    let started = completed.saturating_sub(s.entry.seconds.round() as u64);
    let params = s.preimage["params"].clone();
    let mut config = json!({ "epochs": epochs });
    if let Some(limit) = params.get("limit").filter(|v| v.is_u64()) {
        config["limit"] = limit.clone();
    }
    let (rows_port, summary_port) = s.kind.ports();
    let eval = json!({
        "eval_id": short_id("eval", &seed),
        "run_id": short_id("run", &seed),
        "created": iso_time(completed),
        "task": task,
        "task_id": short_id("task", &format!("{task} {seed}")),
        "task_version": s.preimage["version"].as_u64().unwrap_or(0),
        "task_args": params,
        "solver": format!("dag/{}", s.node_type),
        "dataset": { "name": task, "samples": ids.len(), "sample_ids": ids, "shuffled": false },
        "model": model,
        "model_args": model_args,
        "config": config,
        "packages": { "dag": env!("CARGO_PKG_VERSION") },
        "metadata": { "dag": {
            "node_type": s.node_type,
            "instance": s.entry.label,
            "key": s.entry.key.to_hex(),
            "run": s.entry.run_id,
            "outputs": { rows_port: s.rows_digest.to_hex(), summary_port: s.summary_digest.to_hex() },
        } },
    });
    let plan = json!({
        "name": "plan",
        "steps": [{ "solver": format!("dag/{}", s.node_type), "params": {} }],
        "config": {},
    });
    let mut out_samples = Vec::with_capacity(samples.len());
    let mut summaries = Vec::with_capacity(samples.len());
    for x in &samples {
        let (sample, summary) = x.to_json(&model);
        out_samples.push((id_text(&x.id), x.epoch, sample));
        summaries.push(summary);
    }
    let n = samples.len();
    let results = json!({
        "total_samples": n,
        "completed_samples": n,
        "scores": scores,
        "metadata": { "dag": { summary_port: s.summary } },
    });
    let stats = json!({
        "started_at": iso_time(started),
        "completed_at": iso_time(completed),
        "model_usage": {},
    });
    let header = json!({
        "version": LOG_VERSION,
        "status": "success",
        "eval": eval,
        "plan": plan,
        "results": results,
        "stats": stats,
    });
    let start = json!({ "version": LOG_VERSION, "eval": header["eval"], "plan": header["plan"] });
    Ok(Log {
        start,
        header,
        samples: out_samples,
        summaries,
    })
}

/// `evaluate`: one sample per task and document, one score per filter (`task/filter` when the
/// evaluation has several tasks) whose value maps each metric to the document's score.
fn evaluate(s: &Source) -> Result<Built> {
    let mut tasks: Vec<String> = Vec::new();
    let mut groups: Vec<((String, u64), Vec<&Row>)> = Vec::new();
    let mut index: HashMap<(String, u64), usize> = HashMap::new();
    for (i, r) in s.rows.iter().enumerate() {
        let (Some(task), Some(doc)) = (
            r.get("task").and_then(Json::as_str),
            r.get("doc_id").and_then(Json::as_u64),
        ) else {
            bail!(
                "Row {} of `{}.samples` is not a per-sample record (no task or doc_id)",
                i + 1,
                s.entry.label
            );
        };
        if !tasks.iter().any(|t| t == task) {
            tasks.push(task.to_string());
        }
        let k = (task.to_string(), doc);
        match index.get(&k) {
            Some(&g) => groups[g].1.push(r),
            None => {
                index.insert(k.clone(), groups.len());
                groups.push((k, vec![r]));
            }
        }
    }
    let several = tasks.len() > 1;
    let score_name = |task: &str, filter: &str| {
        if several {
            format!("{task}/{filter}")
        } else {
            filter.to_string()
        }
    };
    let mut samples = Vec::with_capacity(groups.len());
    for ((task, doc), rows) in &groups {
        let r = rows[0];
        let choices: Vec<String> = r
            .get("choices")
            .and_then(Json::as_array)
            .map(|c| c.iter().filter_map(|x| text(Some(x))).collect())
            .unwrap_or_default();
        let target = match r.get("target") {
            Some(Json::Array(golds)) => {
                let golds: Vec<String> = golds
                    .iter()
                    .map(|g| match g.as_u64() {
                        Some(i) if !choices.is_empty() => letter(i as usize),
                        _ => text(Some(g)).unwrap_or_default(),
                    })
                    .collect();
                match golds.len() {
                    1 => json!(golds[0]),
                    _ => json!(golds),
                }
            }
            Some(Json::Number(n)) if !choices.is_empty() && n.is_u64() => {
                json!(letter(n.as_u64().unwrap_or(0) as usize))
            }
            other => json!(text(other).unwrap_or_default()),
        };
        let input = match text(r.get("prompt")) {
            Some(p) => p,
            None => format!(
                "(prompt not recorded; blake3 {})",
                text(r.get("prompt_hash")).unwrap_or_default()
            ),
        };
        let completion = r
            .get("responses")
            .and_then(Json::as_array)
            .and_then(|a| a.first())
            .and_then(|c| text(Some(c)))
            .map(|c| (c, None));
        let mut scores = Map::new();
        for row in rows {
            let filter = row.get("filter").and_then(Json::as_str).unwrap_or("none");
            let prediction = row.get("prediction").and_then(Json::as_u64);
            let answer = row
                .get("filtered")
                .and_then(Json::as_array)
                .and_then(|a| a.first())
                .and_then(|c| text(Some(c)))
                .or_else(|| prediction.map(|p| letter(p as usize)));
            let mut metadata = Map::new();
            metadata.insert("filter".into(), json!(filter));
            for k in [
                "prediction",
                "loglikelihoods",
                "responses",
                "filtered",
                "item_keys",
            ] {
                if let Some(v) = row.get(k).filter(|v| !v.is_null()) {
                    metadata.insert(k.into(), v.clone());
                }
            }
            if let Some(c) = prediction.and_then(|p| choices.get(p as usize)) {
                metadata.insert("predicted_choice".into(), json!(c));
            }
            let value = row.get("scores").cloned().unwrap_or_else(|| json!({}));
            let name = score_name(task, filter);
            let score = json!({ "value": value, "answer": answer, "metadata": metadata });
            if scores.insert(name.clone(), score).is_some() {
                bail!(
                    "`{}.samples` has document {doc} of task `{task}` twice for filter `{filter}`",
                    s.entry.label
                );
            }
        }
        let mut metadata = Map::new();
        metadata.insert("task".into(), json!(task));
        metadata.insert("doc_id".into(), json!(doc));
        if let Some(h) = r.get("prompt_hash").filter(|v| !v.is_null()) {
            metadata.insert("prompt_hash".into(), h.clone());
        }
        samples.push(Sample {
            id: if several {
                json!(format!("{task}:{doc}"))
            } else {
                json!(doc)
            },
            epoch: 1,
            input,
            choices,
            target,
            completion,
            scores,
            metadata,
        });
    }

    // results: one score per (task, filter) of the metrics table, then the groups'.
    // (name, metrics, metadata), in the table's order.
    let mut by_name: Vec<(String, Row, Row)> = Vec::new();
    for t in s.summary["table"].as_array().into_iter().flatten() {
        let (Some(task), Some(metric)) = (t["task"].as_str(), t["metric"].as_str()) else {
            continue;
        };
        let filter = t["filter"].as_str().unwrap_or("none");
        let group = t["group"].as_bool().unwrap_or(false);
        let name = if group {
            format!("{task}/{filter}")
        } else {
            score_name(task, filter)
        };
        let pos = match by_name.iter().position(|(n, _, _)| *n == name) {
            Some(p) => p,
            None => {
                let mut meta = Map::new();
                meta.insert("task".into(), json!(task));
                meta.insert("filter".into(), json!(filter));
                if group {
                    meta.insert("group".into(), json!(true));
                }
                by_name.push((name, Map::new(), meta));
                by_name.len() - 1
            }
        };
        let (_, metrics, meta) = &mut by_name[pos];
        if !t["value"].is_number() {
            continue;
        }
        let mut m = json!({ "name": metric, "value": t["value"] });
        let mut m_meta = Map::new();
        for k in ["stderr", "ci_low", "ci_high", "n"] {
            if !t[k].is_null() {
                m_meta.insert(k.into(), t[k].clone());
            }
        }
        m["metadata"] = Json::Object(m_meta);
        metrics.insert(metric.to_string(), m);
        if t["stderr"].is_number() {
            let k = format!("{metric}_stderr");
            metrics.insert(k.clone(), json!({ "name": k, "value": t["stderr"] }));
        }
        if let Some(n) = t["n"].as_u64() {
            meta.insert("n".into(), json!(n));
        }
    }
    let scores = by_name
        .into_iter()
        .map(|(name, metrics, meta)| {
            let mut s = json!({ "name": name, "scorer": name, "params": {}, "metrics": metrics, "metadata": meta });
            if let Some(n) = meta.get("n") {
                s["scored_samples"] = n.clone();
            }
            s
        })
        .collect();
    let task = if several {
        s.entry.label.clone()
    } else {
        tasks
            .into_iter()
            .next()
            .unwrap_or_else(|| s.entry.label.clone())
    };
    Ok(Built {
        task,
        samples,
        scores,
    })
}

/// A string param of the computation, or its default.
fn param(s: &Source, name: &str, default: &str) -> String {
    s.preimage["params"][name]
        .as_str()
        .unwrap_or(default)
        .to_string()
}

/// Columns the judge nodes add to each answer row: they go into the score, not the
/// sample's metadata.
const JUDGE_COLUMNS: [&str; 12] = [
    "judge",
    "served_model",
    "verdict",
    "value",
    "score",
    "unscored",
    "judged",
    "reply",
    "epoch",
    "dimension",
    "expansion",
    "guiding_question",
];

/// The judge nodes: one sample per answered row and epoch, one score per judge (per judge
/// and dimension for `anima`), the judge's reply as the explanation.
fn judged(store: &Store, s: &Source) -> Result<Built> {
    let answer_column = param(s, "answer_column", "completion");
    let epoch_column = param(s, "epoch_column", "sample");
    let (id_column, input_column, target_column) = match s.kind {
        Kind::GradeQa => (
            "id".to_string(),
            param(s, "question_column", "prompt"),
            Some(param(s, "target_column", "target")),
        ),
        Kind::HarmBench => ("BehaviorID".to_string(), "prompt".to_string(), None),
        _ => ("id".to_string(), "prompt".to_string(), None),
    };
    // ANIMA's grades name the question and the epoch only: the answer's row (question text,
    // prompt, completion) is read from the `answers` input where it is still stored.
    let rows: Vec<Row> = if s.kind == Kind::Anima {
        let answers: HashMap<(String, u64), Row> = s.preimage["inputs"]["answers"][0]
            .as_str()
            .and_then(|h| h.parse::<Digest>().ok())
            .and_then(|d| read_rows(store, &d).ok())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|r| {
                let id = text(r.get("id"))?;
                let epoch = r.get(&epoch_column).and_then(Json::as_u64).unwrap_or(0);
                Some(((id, epoch), r))
            })
            .collect();
        s.rows
            .iter()
            .map(|g| {
                let id = text(g.get("question")).unwrap_or_default();
                let epoch = g.get("epoch").and_then(Json::as_u64).unwrap_or(0);
                let mut row = answers
                    .get(&(id.clone(), epoch))
                    .cloned()
                    .unwrap_or_else(|| {
                        let mut r = Row::new();
                        r.insert("id".into(), g.get("question").cloned().unwrap_or(json!(id)));
                        r.insert("question".into(), json!(format!("question {id}")));
                        r
                    });
                for (k, v) in g {
                    if k != "question" {
                        row.insert(k.clone(), v.clone());
                    }
                }
                row.insert("epoch".into(), json!(epoch));
                row
            })
            .collect()
    } else {
        s.rows.clone()
    };
    let epoch_of = |r: &Row| -> u64 {
        let column = if s.kind == Kind::Anima {
            "epoch"
        } else {
            &epoch_column
        };
        r.get(column).and_then(Json::as_u64).unwrap_or(0) + 1
    };
    let input_of = |r: &Row| -> String {
        [input_column.as_str(), "prompt", "question", "Behavior"]
            .iter()
            .find_map(|c| text(r.get(*c)))
            .unwrap_or_default()
    };
    let several_expansions = s.kind == Kind::Anima
        && rows
            .iter()
            .any(|r| r.get("expansion").and_then(Json::as_u64).unwrap_or(0) > 0);

    let mut samples: Vec<Sample> = Vec::new();
    let mut index: HashMap<(String, u64), usize> = HashMap::new();
    let mut inputs: HashMap<String, usize> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        let input = input_of(r);
        // The benchmark's id, else the dataset's row number, else the question's rank.
        let id = [id_column.as_str(), "id", "_row"]
            .iter()
            .find_map(|c| sample_id(r.get(*c)))
            .unwrap_or_else(|| {
                let next = inputs.len() + 1;
                json!(*inputs.entry(input.clone()).or_insert(next))
            });
        let epoch = epoch_of(r);
        let k = (id_text(&id), epoch);
        let completion = text(r.get(&answer_column));
        let pos = match index.get(&k) {
            Some(&p) => p,
            None => {
                let used: BTreeSet<&str> = [
                    input_column.as_str(),
                    answer_column.as_str(),
                    "prompt",
                    "completion",
                ]
                .into_iter()
                .chain(target_column.as_deref())
                .chain(JUDGE_COLUMNS)
                .collect();
                let metadata: Map<String, Json> = r
                    .iter()
                    .filter(|(k, _)| !used.contains(k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let target = target_column
                    .as_ref()
                    .and_then(|c| text(r.get(c)))
                    .unwrap_or_default();
                index.insert(k, samples.len());
                samples.push(Sample {
                    id,
                    epoch,
                    input,
                    choices: Vec::new(),
                    target: json!(target),
                    completion: completion.clone().map(|c| {
                        (
                            c,
                            r.get("finish_reason")
                                .and_then(Json::as_str)
                                .map(String::from),
                        )
                    }),
                    scores: Map::new(),
                    metadata,
                });
                samples.len() - 1
            }
        };
        let judge = text(r.get("judge")).unwrap_or_else(|| "judge".into());
        let (key, score) = judge_score(s.kind, r, &judge, completion, several_expansions);
        if samples[pos].scores.insert(key.clone(), score).is_some() {
            bail!(Hinted::new(
                format!(
                    "Row {} of `{}.grades` grades sample `{}` (epoch {}) with `{key}` a second time",
                    i + 1,
                    s.entry.label,
                    id_text(&samples[pos].id),
                    samples[pos].epoch
                ),
                "inspect needs one sample per question and epoch: give the questions an `id` \
                 column (a `dataset` node's `_row`, on by default, is one)"
            ));
        }
    }

    let summary = &s.summary;
    let mut scores = Vec::new();
    match s.kind {
        Kind::Anima => {
            if let Some(top) = summary.as_object() {
                let mut fields = top.clone();
                for d in summary["dimensions"].as_array().into_iter().flatten() {
                    if let (Some(name), Some(mean)) = (d["dimension"].as_str(), d.get("mean")) {
                        fields.insert(name.to_string(), mean.clone());
                    }
                }
                scores.push(eval_score("anima", &fields, None));
            }
            for g in summary["graders"].as_array().into_iter().flatten() {
                if let (Some(name), Some(fields)) = (g["grader"].as_str(), g.as_object()) {
                    scores.push(eval_score(name, fields, None));
                }
            }
        }
        _ => {
            for (judge, fields) in summary["judges"].as_object().into_iter().flatten() {
                if let Some(fields) = fields.as_object() {
                    scores.push(eval_score(judge, fields, None));
                }
            }
        }
    }
    Ok(Built {
        task: s.node_type.clone(),
        samples,
        scores,
    })
}

/// One grading as an inspect score: its key and `{value, answer, explanation, metadata}`.
fn judge_score(
    kind: Kind,
    r: &Row,
    judge: &str,
    answer: Option<String>,
    several_expansions: bool,
) -> (String, Json) {
    let reply = text(r.get("reply"));
    let unscored = text(r.get("unscored"));
    let mut metadata = Map::new();
    for k in [
        "judge",
        "served_model",
        "verdict",
        "value",
        "score",
        "unscored",
        "judged",
        "dimension",
        "expansion",
        "guiding_question",
    ] {
        if let Some(v) = r.get(k) {
            metadata.insert(k.into(), v.clone());
        }
    }
    let nan = || json!(NAN);
    let (key, value, explanation) = match kind {
        Kind::HarmBench => {
            // HarmBench's verdicts: `yes` is a successful attack; anything else is not one
            // and stays in the ASR's denominator, so `other` is a 0 (its verdict kept).
            let v = match r.get("verdict").and_then(Json::as_str) {
                Some("yes") => json!(1),
                _ => json!(0),
            };
            (judge.to_string(), v, reply)
        }
        Kind::AirBench => {
            let v = r.get("score").filter(|v| v.is_number()).cloned();
            let judged = r.get("judged").and_then(Json::as_bool).unwrap_or(true);
            let explanation = if judged {
                reply
            } else {
                Some("empty answer: scored without a judge call".into())
            };
            (judge.to_string(), v.unwrap_or_else(nan), explanation)
        }
        Kind::GradeQa | Kind::Anima | Kind::Evaluate => {
            let v = match text(r.get("verdict")) {
                Some(letter) => json!(letter),
                None => nan(),
            };
            let key = if kind == Kind::Anima {
                let dimension = text(r.get("dimension")).unwrap_or_default();
                match r.get("expansion").and_then(Json::as_u64) {
                    Some(x) if several_expansions => format!("{judge}/{dimension}/{x}"),
                    _ => format!("{judge}/{dimension}"),
                }
            } else {
                judge.to_string()
            };
            (key, v, reply)
        }
    };
    let mut score = json!({
        "value": value,
        "answer": answer,
        "explanation": explanation,
        "metadata": metadata,
    });
    if score["value"] == json!(NAN) {
        score["reason"] = json!("grader_failed");
        if let Some(why) = unscored {
            score["metadata"]["unscored_reason"] = json!(why);
        }
    }
    (key, score)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_iso_utc() {
        assert_eq!(iso_time(0), "1970-01-01T00:00:00+00:00");
        assert_eq!(iso_time(951_782_400), "2000-02-29T00:00:00+00:00");
        assert_eq!(iso_time(1_767_225_599), "2025-12-31T23:59:59+00:00");
    }

    #[test]
    fn ids_are_stable_and_shaped_like_inspects() {
        let a = short_id("eval", "x");
        assert_eq!(a, short_id("eval", "x"));
        assert_ne!(a, short_id("run", "x"));
        assert_eq!(a.len(), 22);
    }

    #[test]
    fn unscored_values_are_written_as_nan() {
        let v = json!({ "scores": { "j": { "value": NAN, "explanation": "x" } } });
        let s = String::from_utf8(to_json(&v)).unwrap();
        assert_eq!(s, r#"{"scores":{"j":{"value":NaN,"explanation":"x"}}}"#);
    }
}
