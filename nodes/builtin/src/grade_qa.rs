//! `grade-qa`: inspect's model-graded QA as a general scorer. A judge reads each answer
//! beside its task and criterion and ends with `GRADE: C` (1.0), `P` (0.5, where allowed) or
//! `I` (0.0). A reply that does not parse strictly is unscored: counted, never a 0 or a 1.

use std::collections::BTreeMap;

use dag_engine::{
    ArtifactKind, Node, NodeError, NodeSpec, ParamError, ParamSpec, PortSpec, Resources,
    RunContext, Value,
};
use dag_judge::call_key;
use dag_judge::verdict::parse_graded_qa;
use dag_protocol::judge::{GradeQaParams, JudgeParams};
use dag_table::{self as table, Row};
use serde_json::json;

use crate::judging;

/// The model-graded-QA prompt in inspect's form.
pub const QA_TEMPLATE: &str = "You are assessing a submitted answer on a given task based on a criterion. Here is the data:

[BEGIN DATA]
***
[Task]: {question}
***
[Submission]: {answer}
***
[Criterion]: {criterion}
***
[END DATA]

Does the submission meet the criterion?

First, write out in a step by step manner your reasoning about the criterion to be sure that your conclusion is correct. Avoid simply stating the correct answers at the outset. Then, end with your answer formatted as 'GRADE: $LETTER' (without quotes) where LETTER is one of {letters}. Please choose ONE option for the grade: {choices}.";

/// The `grade-qa` node type.
pub struct GradeQa(NodeSpec);

impl GradeQa {
    /// The node type with its spec.
    pub fn new() -> Self {
        GradeQa(NodeSpec {
            name: "grade-qa",
            version: 1,
            doc: "Model-graded QA (inspect's C / P / I form): a judge model (over an OpenAI-compatible API, or a local one on `judge`) grades each \
                  answer against its row's criterion; C = 1.0, P = 0.5, I = 0.0; unparseable verdicts are unscored \
                  and counted. Every answered call is saved as it arrives and never sent again.",
            inputs: vec![
                PortSpec::new(
                    "answers",
                    ArtifactKind::Generations,
                    "rows with the task, the criterion and the model's answer",
                ),
                judging::JUDGE_PORT,
            ],
            outputs: vec![
                PortSpec::new(
                    "grades",
                    ArtifactKind::Dataset,
                    "the answers' rows with judge, verdict, value (null: unscored), why unscored and the reply",
                ),
                PortSpec::new(
                    "scores",
                    ArtifactKind::Metrics,
                    "accuracy over scored gradings (overall, per judge, per epoch), counts, agreement between judges",
                ),
            ],
            params: ParamSpec::from_params::<(GradeQaParams, JudgeParams)>(),
            resources: judging::RESOURCES,
        })
    }
}

impl Default for GradeQa {
    fn default() -> Self {
        Self::new()
    }
}

fn template(p: &GradeQaParams) -> &str {
    p.grader_template.as_deref().unwrap_or(QA_TEMPLATE)
}

fn prompt(
    p: &GradeQaParams,
    question: &str,
    answer: &str,
    criterion: &str,
) -> Result<String, String> {
    let values: Vec<(&str, &str)> = [
        ("question", question),
        ("answer", answer),
        ("criterion", criterion),
    ]
    .into_iter()
    .chain(judging::grade_letters(p.allow_partial))
    .collect();
    dag_judge::template::fill(template(p), &values)
}

impl Node for GradeQa {
    fn spec(&self) -> &NodeSpec {
        &self.0
    }

    fn resources(&self, _params: &BTreeMap<String, Value>, connected: &[&str]) -> Resources {
        judging::resources(connected)
    }

    fn check_params(&self, params: &BTreeMap<String, Value>) -> Result<(), ParamError> {
        judging::check_judge_params(params)?;
        if let Some(Value::Str(t)) = params.get("grader_template") {
            let values: Vec<(&str, &str)> =
                [("question", "x"), ("answer", "x"), ("criterion", "x")]
                    .into_iter()
                    .chain(judging::grade_letters(true))
                    .collect();
            dag_judge::template::fill(t, &values).map_err(|e| {
                ParamError::new(
                    "grader_template",
                    e,
                    "use {question}, {answer}, {criterion}, {letters}, {choices}; `{{` for a literal brace",
                )
            })?;
        }
        Ok(())
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let (p, j): (GradeQaParams, JudgeParams) = ctx.typed_params()?;
        let judges = judging::judges(ctx, &j)?;
        let names = judging::names(&judges);
        let rows = table::read_dataset(&ctx.input("answers")?.path)
            .map_err(|e| NodeError::caused("Failed to read the answers", &e))?;
        let text = |row: &Row, i: usize, column: &str, param: &str| -> Result<String, NodeError> {
            match row.get(column) {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(v) if !v.is_null() => Ok(table::as_text(v)),
                _ => Err(
                    NodeError::msg(format!("Answer row {i} has no `{column}`")).hint(format!(
                        "set `{param}` to the column holding it; the rows have {}",
                        columns(row)
                    )),
                ),
            }
        };
        // Per row: the epoch, then one grading per judge.
        let mut gradings = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let question = text(row, i, &p.question_column, "question_column")?;
            let criterion = text(row, i, &p.target_column, "target_column")?;
            let answer = text(row, i, &p.answer_column, "answer_column")?;
            let epoch = row
                .get(&p.epoch_column)
                .and_then(|v| v.as_u64())
                .unwrap_or(0) as u32;
            let prompt = prompt(&p, &question, &answer, &criterion)
                .map_err(|e| NodeError::msg(format!("Failed to fill `grader_template`: {e}")))?;
            for judge in &judges {
                let request =
                    judge.request(&j, prompt.clone(), judging::grade_choices(p.allow_partial));
                let key = call_key(&judge.id, &request, epoch);
                gradings.push((i, epoch, judge.name.clone(), key, request));
            }
        }
        let replies = judging::replies(
            ctx,
            &j,
            &judges,
            gradings
                .iter()
                .map(|(_, _, judge, key, request)| judging::Planned {
                    key: *key,
                    judge,
                    request,
                }),
        )?;

        let mut out = Vec::with_capacity(gradings.len());
        let mut verdicts: BTreeMap<usize, BTreeMap<String, char>> = BTreeMap::new();
        // (sum, scored, unscored) overall, per judge and per epoch.
        let mut overall = (0.0, 0usize, 0usize);
        let mut by_judge: BTreeMap<&str, (f64, usize, usize)> = BTreeMap::new();
        let mut by_epoch: BTreeMap<u32, (f64, usize, usize)> = BTreeMap::new();
        for (i, epoch, judge, key, _) in &gradings {
            let reply = &replies[key];
            let verdict = parse_graded_qa(&judging::verdict(&j, reply), p.allow_partial);
            let value = verdict.as_ref().ok().map(|v| v.value());
            for acc in [
                &mut overall,
                by_judge.entry(judge).or_default(),
                by_epoch.entry(*epoch).or_default(),
            ] {
                match value {
                    Some(v) => {
                        acc.0 += v;
                        acc.1 += 1;
                    }
                    None => acc.2 += 1,
                }
            }
            if let Ok(v) = &verdict {
                verdicts
                    .entry(*i)
                    .or_default()
                    .insert(judge.clone(), v.letter());
            }
            let mut row = rows[*i].clone();
            row.insert("judge".into(), json!(judge));
            row.insert("served_model".into(), json!(reply.served_model));
            row.insert(
                "verdict".into(),
                json!(verdict.as_ref().ok().map(|v| v.letter().to_string())),
            );
            row.insert("value".into(), json!(value));
            row.insert(
                "unscored".into(),
                json!(verdict.as_ref().err().map(ToString::to_string)),
            );
            row.insert("reply".into(), json!(reply.text));
            out.push(row);
        }
        table::write_jsonl(&ctx.output_path("grades"), &out)
            .map_err(|e| NodeError::caused("Failed to write the grades", &e))?;
        let summary = |(sum, n, unscored): (f64, usize, usize)| json!({ "accuracy": (n > 0).then(|| sum / n as f64), "scored": n, "unscored": unscored });
        let scores = json!({
            "convention": "C = 1.0, P = 0.5, I = 0.0; higher is better; unscored gradings are excluded",
            "overall": summary(overall),
            "judges": by_judge.into_iter().map(|(k, v)| (k.to_string(), summary(v))).collect::<serde_json::Map<_, _>>(),
            "epochs": by_epoch.into_iter().map(|(k, v)| (k.to_string(), summary(v))).collect::<serde_json::Map<_, _>>(),
            "agreement": judging::agreement(&names, &verdicts),
        });
        std::fs::write(
            ctx.output_path("scores"),
            serde_json::to_vec_pretty(&scores).expect("json"),
        )
        .map_err(|e| NodeError::caused("Failed to write the scores", &e))?;
        ctx.set_meta("grades", json!({ "rows": out.len(), "judges": names }));
        ctx.set_meta("scores", scores);
        Ok(())
    }
}

fn columns(row: &Row) -> String {
    let v: Vec<String> = row.keys().map(|k| format!("`{k}`")).collect();
    v.join(", ")
}
