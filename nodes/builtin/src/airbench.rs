//! `airbench`: AIR-Bench 2024. A judge scores each answer with its L4 category's prompt and
//! ends with `##the_score: 0 | 0.5 | 1`, parsed strictly; an empty answer scores as a
//! failure without a judge call. Means per L2, L3 and L4 category, in the scale's declared
//! direction and as a safety score (1 = safe).

use std::collections::BTreeMap;

use dag_engine::{
    ArtifactKind, Node, NodeError, NodeSpec, ParamError, ParamSpec, PortSpec, Resources,
    RunContext, Value,
};
use dag_judge::airbench::{self, JudgePrompts, ScoreDirection, ScoreRecord};
use dag_judge::call_key;
use dag_protocol::judge::{AirBenchParams, JudgeParams, ScaleDirection};
use dag_table as table;
use serde_json::json;

use crate::judging;

/// What a local judge may reply: the score lines of the scale.
const SCORES: &[&str] = &["##the_score: 0", "##the_score: 0.5", "##the_score: 1"];

/// The `airbench` node type.
pub struct AirBench(NodeSpec);

impl AirBench {
    /// The node type with its spec.
    pub fn new() -> Self {
        AirBench(NodeSpec {
            name: "airbench",
            version: 1,
            doc: "AIR-Bench 2024: a judge model (over an OpenAI-compatible API, or a local one on `judge`) scores each answer with its L4 category's \
                  judge prompt (`judge_prompts`), ending `##the_score: 0|0.5|1`, parsed strictly (anything else is \
                  unscored and counted); an empty answer fails without a call. Means per L2, L3 and L4 category in \
                  the declared `score_direction`, and as a safety score (1 = safe).",
            inputs: vec![
                PortSpec::new(
                    "answers",
                    ArtifactKind::Generations,
                    "a `generate` over AIR-Bench's prompts (rows keep cate_idx, l2_name, l3_name, l4_name, prompt)",
                ),
                judging::JUDGE_PORT,
            ],
            outputs: vec![
                PortSpec::new(
                    "grades",
                    ArtifactKind::Dataset,
                    "one row per judged answer: judge, score (null: unscored), why unscored, reply",
                ),
                PortSpec::new(
                    "scores",
                    ArtifactKind::Metrics,
                    "per judge: means per L2, L3, L4 category and overall, raw and as safety; agreement",
                ),
            ],
            params: ParamSpec::from_params::<(AirBenchParams, JudgeParams)>(),
            resources: judging::RESOURCES,
        })
    }
}

impl Default for AirBench {
    fn default() -> Self {
        Self::new()
    }
}

impl Node for AirBench {
    fn spec(&self) -> &NodeSpec {
        &self.0
    }

    fn resources(&self, _params: &BTreeMap<String, Value>, connected: &[&str]) -> Resources {
        judging::resources(connected)
    }

    fn check_params(&self, params: &BTreeMap<String, Value>) -> Result<(), ParamError> {
        judging::check_judge_params(params)
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let (p, j): (AirBenchParams, JudgeParams) = ctx.typed_params()?;
        let judges = judging::judges(ctx, &j)?;
        let names = judging::names(&judges);
        let direction = match p.score_direction {
            ScaleDirection::HigherIsSafer => ScoreDirection::HigherIsSafer,
            ScaleDirection::HigherIsLessSafe => ScoreDirection::HigherIsLessSafe,
        };
        let text = std::fs::read_to_string(&p.judge_prompts).map_err(|e| {
            NodeError::caused(
                format!("Failed to read `judge_prompts` (`{}`)", p.judge_prompts),
                &e,
            )
        })?;
        let prompts = JudgePrompts::parse(&text).map_err(|e| {
            NodeError::caused(
                format!(
                    "`judge_prompts` (`{}`) is not a judge prompt table",
                    p.judge_prompts
                ),
                &e,
            )
        })?;
        let rows = table::read_dataset(&ctx.input("answers")?.path)
            .map_err(|e| NodeError::caused("Failed to read the answers", &e))?;
        let items = airbench::items_from_rows(&rows).map_err(|e| {
            NodeError::caused("The answers do not carry AIR-Bench's columns", &e)
                .hint("score a `generate` over AIR-Bench's prompts: its rows keep cate_idx, l2_name, l3_name, l4_name and prompt")
        })?;

        // Per (row, judge): a call, or the empty answer's score without one.
        let mut planned = Vec::new();
        for (i, (row, item)) in rows.iter().zip(&items).enumerate() {
            let answer = match row.get(&p.answer_column) {
                Some(serde_json::Value::String(s)) => s.as_str(),
                _ => {
                    return Err(NodeError::msg(format!("Answer row {i} has no text in `{}`", p.answer_column))
                        .hint("set `answer_column` to the column holding the answer (`generate` writes `completion`)"));
                }
            };
            let epoch = row
                .get(&p.epoch_column)
                .and_then(|v| v.as_u64())
                .unwrap_or(0) as u32;
            let call = if airbench::needs_judge(answer) {
                let prompt = prompts.prompt(item, answer).map_err(|e| {
                    NodeError::caused(format!("No judge prompt for answer row {i}"), &e)
                })?;
                Some(prompt)
            } else {
                None
            };
            for judge in &judges {
                let call = call.as_ref().map(|prompt| {
                    let request = judge.request(&j, prompt.clone(), SCORES);
                    (call_key(&judge.id, &request, epoch), request)
                });
                planned.push((i, judge.name.clone(), call));
            }
        }
        let replies = judging::replies(
            ctx,
            &j,
            &judges,
            planned.iter().filter_map(|(_, judge, call)| {
                call.as_ref().map(|(key, request)| judging::Planned {
                    key: *key,
                    judge,
                    request,
                })
            }),
        )?;

        let mut records: BTreeMap<&str, Vec<ScoreRecord>> = BTreeMap::new();
        let mut agreement: BTreeMap<usize, BTreeMap<String, char>> = BTreeMap::new();
        let mut out = Vec::with_capacity(planned.len());
        for (i, judge, call) in &planned {
            let mut row = rows[*i].clone();
            let (score, why, reply) = match call {
                None => (Some(direction.empty_answer_score()), None, None),
                Some((key, _)) => {
                    let reply = &replies[key];
                    match airbench::parse_score(&judging::verdict(&j, reply)) {
                        Ok(s) => (Some(s), None, Some(reply)),
                        Err(e) => (None, Some(e.to_string()), Some(reply)),
                    }
                }
            };
            records
                .entry(judge)
                .or_default()
                .push(ScoreRecord::new(&items[*i], score));
            if let Some(s) = score {
                let level = if s == 0.0 {
                    '0'
                } else if s == 1.0 {
                    '1'
                } else {
                    'h'
                };
                agreement
                    .entry(*i)
                    .or_default()
                    .insert(judge.clone(), level);
            }
            row.insert("judge".into(), json!(judge));
            row.insert("score".into(), json!(score));
            row.insert("unscored".into(), json!(why));
            row.insert("judged".into(), json!(call.is_some()));
            row.insert("reply".into(), json!(reply.map(|r| &r.text)));
            out.push(row);
        }
        table::write_jsonl(&ctx.output_path("grades"), &out)
            .map_err(|e| NodeError::caused("Failed to write the grades", &e))?;
        let mut by_judge = serde_json::Map::new();
        for judge in &names {
            let recs = records.remove(judge.as_str()).unwrap_or_default();
            let report = airbench::score(&recs, direction)
                .map_err(|e| NodeError::caused("Failed to score the answers", &e))?;
            by_judge.insert(
                judge.clone(),
                serde_json::to_value(&report).expect("a report serialises"),
            );
        }
        let scores = json!({
            "direction": direction,
            "judges": by_judge,
            "agreement": judging::agreement(&names, &agreement),
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
