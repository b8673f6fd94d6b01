//! `rubric-label`: a judge applies a rubric to each row (the Models Under Pressure study
//! labels its situations high- or low-stakes this way) and answers with a JSON object:
//! `{"label": ..., "confidence": 1-10, "explanation": ...}`. The row gains the label's
//! number, the label, the confidence and the explanation; a row the judge could not label is
//! kept, marked with why, and never given a label. Agreement with existing labels, if any,
//! is reported. A separate node rather than a mode of `relabel`: its judge params have
//! defaults, which in `relabel` would change the cache key of every existing graph.

use std::collections::BTreeMap;

use dag_engine::{
    ArtifactKind, Node, NodeError, NodeSpec, ParamError, ParamSpec, PortSpec, Resources,
    RunContext, Value,
};
use dag_judge::call_key;
use dag_protocol::judge::{JudgeParams, RubricLabelParams};
use dag_table::{self as table, Row};
use serde_json::{Value as Json, json};

use crate::judging;

/// The `rubric-label` node type.
pub struct RubricLabel(NodeSpec);

impl RubricLabel {
    /// The node type with its spec.
    pub fn new() -> Self {
        RubricLabel(NodeSpec {
            name: "rubric-label",
            version: 1,
            doc: "A judge model applies a rubric file to each row and writes the label's number, the label, a confidence \
                  (1-10) and an explanation; rows it could not label are kept and marked, never labelled. Reports the \
                  label counts and agreement with an existing label column. Every answered call is saved as it arrives.",
            inputs: vec![
                PortSpec::new("dataset", ArtifactKind::Dataset, "rows to label"),
                judging::JUDGE_PORT,
            ],
            outputs: vec![
                PortSpec::new(
                    "dataset",
                    ArtifactKind::Dataset,
                    "every row, with `label_column`, `<label_column>_name`, `_confidence`, `_explanation` and `_unlabelled` (why, or null)",
                ),
                PortSpec::new(
                    "metrics",
                    ArtifactKind::Metrics,
                    "label counts, unlabelled rows, agreement with `compare_column` and between judges",
                ),
            ],
            params: ParamSpec::from_params::<(RubricLabelParams, JudgeParams)>(),
            resources: judging::RESOURCES,
        })
    }
}

impl Default for RubricLabel {
    fn default() -> Self {
        Self::new()
    }
}

/// What the judge is asked: the rubric, the text, and the exact answer form.
fn prompt(rubric: &str, labels: &[String], text: &str) -> String {
    let names: Vec<String> = labels.iter().map(|l| format!("\"{l}\"")).collect();
    format!(
        "{rubric}\n\n---\n\nApply the rubric above to this text:\n\n[BEGIN TEXT]\n{text}\n[END TEXT]\n\n\
         Answer with one JSON object and nothing else: {{\"label\": one of {}, \"confidence\": an integer from 1 (a guess) \
         to 10 (certain), \"explanation\": one or two sentences}}.",
        names.join(", ")
    )
}

/// A judge's labelling of one row.
#[derive(Debug, PartialEq)]
struct Labelled {
    index: usize,
    confidence: Option<i64>,
    explanation: Option<String>,
}

/// Reads a reply strictly: one JSON object (alone, or alone inside one ```json fence) whose
/// `label` is exactly one of `labels`, whose `confidence`, where given, is an integer in
/// 1..=10, and whose `explanation`, where given, is text. Anything else is why the row is
/// unlabelled.
fn parse_reply(reply: &str, labels: &[String]) -> Result<Labelled, String> {
    let t = reply.trim();
    let body = match t.strip_prefix("```json").or_else(|| t.strip_prefix("```")) {
        Some(rest) => rest
            .strip_suffix("```")
            .ok_or("an unclosed code fence")?
            .trim(),
        None => t,
    };
    let v: Json = serde_json::from_str(body).map_err(|e| format!("not one JSON object ({e})"))?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    let label = obj
        .get("label")
        .and_then(Json::as_str)
        .ok_or("no `label` text")?;
    let index = labels
        .iter()
        .position(|l| l == label)
        .ok_or_else(|| format!("label {label:?} is not one of the rubric's labels"))?;
    let confidence = match obj.get("confidence") {
        None | Some(Json::Null) => None,
        Some(c) => Some(
            c.as_i64()
                .filter(|c| (1..=10).contains(c))
                .ok_or_else(|| format!("confidence {c} is not an integer from 1 to 10"))?,
        ),
    };
    let explanation = match obj.get("explanation") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => Some(s.clone()),
        Some(other) => return Err(format!("explanation {other} is not text")),
    };
    Ok(Labelled {
        index,
        confidence,
        explanation,
    })
}

impl Node for RubricLabel {
    fn spec(&self) -> &NodeSpec {
        &self.0
    }

    fn resources(&self, _params: &BTreeMap<String, Value>, connected: &[&str]) -> Resources {
        judging::resources(connected)
    }

    fn check_params(&self, params: &BTreeMap<String, Value>) -> Result<(), ParamError> {
        judging::check_judge_params(params)?;
        if let Some(Value::List(labels)) = params.get("labels") {
            let names: Vec<&str> = labels.iter().filter_map(Value::as_str).collect();
            let mut unique = names.clone();
            unique.sort_unstable();
            unique.dedup();
            if names.len() < 2 || unique.len() != names.len() {
                return Err(ParamError::new(
                    "labels",
                    "the rubric needs at least two different labels",
                    "e.g. `labels = [\"Low Stakes\", \"High Stakes\"]`: the n-th is written as n",
                ));
            }
        }
        Ok(())
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let (p, j): (RubricLabelParams, JudgeParams) = ctx.typed_params()?;
        let judges = judging::judges(ctx, &j)?;
        let names = judging::names(&judges);
        let labeller = match &p.label_judge {
            None => names[0].clone(),
            Some(n) if names.contains(n) => n.clone(),
            Some(n) => {
                return Err(NodeError::msg(format!(
                    "`label_judge = {n:?}` is not one of this node's judges"
                ))
                .hint(format!(
                    "the judges are {}",
                    names
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        };
        let rubric = std::fs::read_to_string(&p.rubric).map_err(|e| {
            NodeError::caused(format!("Failed to read the rubric `{}`", p.rubric), &e)
        })?;
        let rows = table::read_dataset(&ctx.input("dataset")?.path)
            .map_err(|e| NodeError::caused("Failed to read the rows", &e))?;
        // A local judge may answer only a labelling, one object per label.
        let choices: Vec<String> = p
            .labels
            .iter()
            .map(|l| json!({ "label": l }).to_string())
            .collect();
        let choices: Vec<&str> = choices.iter().map(String::as_str).collect();
        // An API judge with `json_verdict` is held to the object the prompt asks for.
        let schema = json!({
            "type": "object",
            "properties": {
                "label": { "type": "string", "enum": p.labels },
                "confidence": { "type": "integer", "minimum": 1, "maximum": 10 },
                "explanation": { "type": "string" },
            },
            "required": ["label", "confidence", "explanation"],
            "additionalProperties": false,
        });
        let mut planned = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let text = match row.get(&p.text_column) {
                Some(Json::String(s)) => s.clone(),
                _ => {
                    let have: Vec<String> = row.keys().map(|k| format!("`{k}`")).collect();
                    return Err(NodeError::msg(format!(
                        "Row {i} has no text in `{}`",
                        p.text_column
                    ))
                    .hint(format!("set `text_column` to one of {}", have.join(", "))));
                }
            };
            let prompt = prompt(&rubric, &p.labels, &text);
            for judge in &judges {
                let request =
                    judge.request_shaped(&j, prompt.clone(), &choices, schema.clone(), "");
                planned.push((
                    i,
                    judge.name.clone(),
                    call_key(&judge.id, &request, 0),
                    request,
                ));
            }
        }
        // Contextual calibration: each local judge labels the content-free texts too.
        let calibration_texts = p.calibrate_with.clone().unwrap_or_default();
        let mut baseline_calls = Vec::new();
        for judge in judges.iter().filter(|j| j.is_local()) {
            for t in &calibration_texts {
                let request = judge.request_shaped(
                    &j,
                    prompt(&rubric, &p.labels, t),
                    &choices,
                    schema.clone(),
                    "",
                );
                baseline_calls.push((
                    judge.name.clone(),
                    call_key(&judge.id, &request, 0),
                    request,
                ));
            }
        }
        let replies = judging::replies(
            ctx,
            &j,
            &judges,
            planned
                .iter()
                .map(|(_, judge, key, request)| (judge, key, request))
                .chain(
                    baseline_calls
                        .iter()
                        .map(|(judge, key, request)| (judge, key, request)),
                )
                .map(|(judge, key, request)| judging::Planned {
                    key: *key,
                    judge,
                    request,
                }),
        )?;
        let baselines: BTreeMap<&str, Vec<f64>> = judges
            .iter()
            .filter(|j| j.is_local() && !calibration_texts.is_empty())
            .map(|judge| {
                let logprobs: Vec<&[f64]> = baseline_calls
                    .iter()
                    .filter(|(name, _, _)| *name == judge.name)
                    .map(|(_, key, _)| replies[key].logprobs.as_deref().unwrap_or_default())
                    .collect();
                (judge.name.as_str(), content_free_baseline(&logprobs))
            })
            .collect();

        // One judge labels the rows; every judge's labels enter the agreement.
        let col = &p.label_column;
        let mut out: Vec<Row> = rows.clone();
        let mut by_judge: BTreeMap<usize, BTreeMap<String, char>> = BTreeMap::new();
        let mut counts = vec![0usize; p.labels.len()];
        let mut unlabelled = 0usize;
        let mut compared: (Vec<usize>, Vec<usize>) = (vec![], vec![]);
        for (i, judge, key, _) in &planned {
            let reply = &replies[key];
            let parsed = match (baselines.get(judge.as_str()), &reply.logprobs) {
                (Some(baseline), Some(logprobs)) => Ok(calibrated(logprobs, baseline)),
                _ => parse_reply(&reply.text, &p.labels),
            };
            if let Ok(l) = &parsed {
                let letter = char::from_digit(l.index as u32, 36).unwrap_or('?');
                by_judge
                    .entry(*i)
                    .or_default()
                    .insert(judge.clone(), letter);
            }
            if *judge != labeller {
                continue;
            }
            let row = &mut out[*i];
            match parsed {
                Ok(l) => {
                    counts[l.index] += 1;
                    row.insert(col.clone(), json!(l.index));
                    row.insert(format!("{col}_name"), json!(p.labels[l.index]));
                    row.insert(format!("{col}_confidence"), json!(l.confidence));
                    row.insert(format!("{col}_explanation"), json!(l.explanation));
                    row.insert(format!("{col}_unlabelled"), Json::Null);
                    if let Some(c) = &p.compare_column
                        && let Some(existing) = rows[*i].get(c).and_then(Json::as_u64)
                    {
                        compared.0.push(existing as usize);
                        compared.1.push(l.index);
                    }
                }
                Err(why) => {
                    unlabelled += 1;
                    row.insert(col.clone(), Json::Null);
                    row.insert(format!("{col}_name"), Json::Null);
                    row.insert(format!("{col}_confidence"), Json::Null);
                    row.insert(format!("{col}_explanation"), Json::Null);
                    row.insert(format!("{col}_unlabelled"), json!(why));
                }
            }
        }
        table::write_jsonl(&ctx.output_path("dataset"), &out)
            .map_err(|e| NodeError::caused("Failed to write the labelled rows", &e))?;
        let existing = p.compare_column.as_ref().map(|c| {
            let (a, b) = &compared;
            let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
            let kappa = dag_metrics::cohen_kappa(a, b);
            json!({
                "column": c,
                "rows": a.len(),
                "accuracy": (!a.is_empty()).then(|| same as f64 / a.len() as f64),
                "cohen_kappa": kappa.as_ref().ok(),
                "note": kappa.err().map(|e| e.to_string()),
            })
        });
        let metrics = json!({
            "rows": rows.len(),
            "labelled_by": labeller,
            "counts": p.labels.iter().zip(&counts).map(|(l, n)| (l.clone(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "unlabelled": unlabelled,
            "agreement_with_existing": existing,
            "agreement": judging::agreement(&names, &by_judge),
            "calibration": (!baselines.is_empty()).then(|| json!({
                "content_free": calibration_texts,
                "label_probabilities": baselines.iter().map(|(j, b)| (j.to_string(), json!(b.iter().map(|l| l.exp()).collect::<Vec<_>>()))).collect::<serde_json::Map<_, _>>(),
            })),
        });
        std::fs::write(
            ctx.output_path("metrics"),
            serde_json::to_vec_pretty(&metrics).expect("json"),
        )
        .map_err(|e| NodeError::caused("Failed to write the metrics", &e))?;
        ctx.set_meta(
            "dataset",
            json!({ "rows": out.len(), "unlabelled": unlabelled }),
        );
        ctx.set_meta("metrics", metrics);
        Ok(())
    }
}

/// The label probabilities a judge gives content-free texts, averaged (as logs): what it
/// leans to whatever the text (Zhao et al. 2021, "Calibrate before use").
fn content_free_baseline(logprobs: &[&[f64]]) -> Vec<f64> {
    let k = logprobs.first().map_or(0, |l| l.len());
    let mut mean = vec![0.0; k];
    for l in logprobs {
        for (m, p) in mean.iter_mut().zip(softmax(l)) {
            *m += p / logprobs.len() as f64;
        }
    }
    mean.iter().map(|p| p.ln()).collect()
}

fn softmax(logprobs: &[f64]) -> Vec<f64> {
    let max = logprobs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = logprobs.iter().map(|l| (l - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|x| x / sum).collect()
}

/// The label with the highest probability once divided by the content-free baseline, with
/// its calibrated probability, in percent, as the explanation.
fn calibrated(logprobs: &[f64], baseline: &[f64]) -> Labelled {
    let p = softmax(logprobs);
    let adjusted: Vec<f64> = p.iter().zip(baseline).map(|(p, b)| p.ln() - b).collect();
    let q = softmax(&adjusted);
    // The first of equals wins, as the uncalibrated choice does.
    let index = (0..q.len()).fold(0, |b, i| if q[i] > q[b] { i } else { b });
    Labelled {
        index,
        confidence: None,
        explanation: Some(format!(
            "calibrated probability {:.3} (uncalibrated {:.3})",
            q[index], p[index]
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_divides_out_the_judges_lean() {
        // The judge gives "High" e^2 times the odds of "Low" on content-free texts (on
        // average): a row it favours "High" on by less than that is "Low" once calibrated.
        let baseline = content_free_baseline(&[&[-3.0, -1.0], &[-2.5, -0.5]]);
        let p = softmax(&baseline);
        assert!((p[1] / p[0] - 2f64.exp()).abs() < 1e-9, "{p:?}");
        let leaning_less = calibrated(&[-2.0, -1.0], &baseline);
        assert_eq!(leaning_less.index, 0);
        let leaning_more = calibrated(&[-4.0, -1.0], &baseline);
        assert_eq!(leaning_more.index, 1);
        assert!(
            leaning_more
                .explanation
                .unwrap()
                .starts_with("calibrated probability 0.731"),
            "e^3 / e^2 = e: p = e / (1 + e)"
        );
        // Without a lean nothing changes.
        let flat = content_free_baseline(&[&[-1.0, -1.0]]);
        assert_eq!(calibrated(&[-1.0, -1.2], &flat).index, 0);
        assert_eq!(calibrated(&[-1.2, -1.0], &flat).index, 1);
    }

    #[test]
    fn replies_parse_strictly() {
        let labels = vec!["Low Stakes".to_string(), "High Stakes".to_string()];
        let ok = parse_reply(
            r#"{"label": "High Stakes", "confidence": 9, "explanation": "Violence."}"#,
            &labels,
        )
        .unwrap();
        assert_eq!(
            ok,
            Labelled {
                index: 1,
                confidence: Some(9),
                explanation: Some("Violence.".into())
            }
        );
        let fenced = "```json\n{\"label\": \"Low Stakes\"}\n```";
        assert_eq!(parse_reply(fenced, &labels).unwrap().index, 0);
        for (reply, why) in [
            ("High Stakes", "not one JSON object"),
            (
                r#"{"label": "high stakes"}"#,
                "is not one of the rubric's labels",
            ),
            (
                r#"{"label": "Low Stakes", "confidence": 11}"#,
                "from 1 to 10",
            ),
            (
                r#"{"label": "Low Stakes", "confidence": 7.5}"#,
                "from 1 to 10",
            ),
            (r#"{"confidence": 3}"#, "no `label`"),
            (r#"{"label": "Low Stakes"} and more"#, "not one JSON object"),
            (
                "```json\n{\"label\": \"Low Stakes\"}",
                "unclosed code fence",
            ),
            (r#"["Low Stakes"]"#, "not a JSON object"),
        ] {
            let e = parse_reply(reply, &labels).unwrap_err();
            assert!(e.contains(why), "{reply}: {e}");
        }
    }
}
