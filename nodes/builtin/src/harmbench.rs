//! `harmbench`: HarmBench's classifier judges each generation for its behaviour (the
//! standard or the contextual prompt by the `context` tag) and answers yes / no; anything
//! else is `other`, which never counts as success. ASR per behaviour, then averaged, and per
//! semantic and functional category. Copyright behaviours are judged upstream by MinHash
//! matching against pickled data that cannot be read safely here: they are excluded and
//! counted, never sent.

use std::collections::{BTreeMap, HashMap, HashSet};

use dag_engine::{
    ArtifactKind, Node, NodeError, NodeSpec, ParamError, ParamSpec, PortSpec, Resources,
    RunContext, Value,
};
use dag_judge::call_key;
use dag_judge::harmbench::{self, ClassifierRecord, MAX_GENERATION_TOKENS, Verdict};
use dag_protocol::judge::{HarmBenchParams, JudgeParams};
use dag_table::{self as table, Row};
use serde_json::json;

use crate::judging;

/// The `harmbench` node type.
pub struct HarmBench(NodeSpec);

impl HarmBench {
    /// The node type with its spec.
    pub fn new() -> Self {
        HarmBench(NodeSpec {
            name: "harmbench",
            version: 1,
            doc: "HarmBench: a classifier model (over an OpenAI-compatible API, or a local one on `judge`) judges each generation for its behaviour \
                  (yes / no; anything else is `other`, never a success). ASR per behaviour then averaged, per semantic \
                  and functional category; copyright (`hash_check`) behaviours are excluded and counted. Generations \
                  must be at most 512 tokens, as HarmBench clips them (set `max_new_tokens <= 512` on `generate`). \
                  HarmBench's classifier answers in one token: set `judge_max_tokens = 1`.",
            inputs: vec![
                PortSpec::new(
                    "generations",
                    ArtifactKind::Generations,
                    "a `generate` over HarmBench's behaviours table (rows keep BehaviorID, Behavior, categories, Tags, ContextString)",
                ),
                judging::JUDGE_PORT,
            ],
            outputs: vec![
                PortSpec::new(
                    "grades",
                    ArtifactKind::Dataset,
                    "one row per judged generation: behaviour, generation, judge, verdict, reply",
                ),
                PortSpec::new(
                    "scores",
                    ArtifactKind::Metrics,
                    "ASR per judge (per behaviour, category, overall), the mean over judges, exclusions, agreement",
                ),
            ],
            params: ParamSpec::from_params::<(HarmBenchParams, JudgeParams)>(),
            resources: judging::RESOURCES,
        })
    }
}

impl Default for HarmBench {
    fn default() -> Self {
        Self::new()
    }
}

fn read_text(path: &str, param: &str) -> Result<String, NodeError> {
    std::fs::read_to_string(path)
        .map_err(|e| NodeError::caused(format!("Failed to read `{param}` (`{path}`)"), &e))
}

impl Node for HarmBench {
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
        let (p, j): (HarmBenchParams, JudgeParams) = ctx.typed_params()?;
        let judges = judging::judges(ctx, &j)?;
        let names = judging::names(&judges);
        let standard = read_text(&p.standard_prompt, "standard_prompt")?;
        let contextual = read_text(&p.contextual_prompt, "contextual_prompt")?;
        let rows = table::read_dataset(&ctx.input("generations")?.path)
            .map_err(|e| NodeError::caused("Failed to read the generations", &e))?;
        // Each behaviour arrives once per generation; it is read (and checked) once.
        let mut seen = HashSet::new();
        let unique: Vec<Row> = rows
            .iter()
            .filter(|r| seen.insert(r.get("BehaviorID").map(table::as_text)))
            .cloned()
            .collect();
        let behaviors = harmbench::behaviors_from_rows(&unique).map_err(|e| {
            NodeError::caused("The generations do not carry HarmBench's behaviour columns", &e)
                .hint("judge a `generate` over harmbench_behaviors_text_{val,test}.csv: its rows keep BehaviorID, Behavior, FunctionalCategory, SemanticCategory, Tags and ContextString")
        })?;
        let by_id: HashMap<&str, &harmbench::Behavior> =
            behaviors.iter().map(|b| (b.id.as_str(), b)).collect();

        let mut planned = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let id = row
                .get("BehaviorID")
                .map(table::as_text)
                .unwrap_or_default();
            let behavior = by_id[id.as_str()];
            if behavior.is_copyright() {
                continue;
            }
            if let Some(n) = row.get("completion_tokens").and_then(|v| v.as_u64())
                && n as usize > MAX_GENERATION_TOKENS
            {
                return Err(NodeError::msg(format!(
                    "Generation row {i} (`{id}`) has {n} tokens; HarmBench judges at most {MAX_GENERATION_TOKENS}"
                ))
                .hint("set `max_new_tokens` to at most 512 on the `generate` node, as HarmBench clips generations to 512 tokens"));
            }
            let generation = match row.get(&p.answer_column) {
                Some(serde_json::Value::String(s)) => s.as_str(),
                _ => {
                    return Err(NodeError::msg(format!(
                        "Generation row {i} has no text in `{}`",
                        p.answer_column
                    ))
                    .hint("set `answer_column` to the column holding the generation (`generate` writes `completion`)"));
                }
            };
            let index = row
                .get(&p.epoch_column)
                .and_then(|v| v.as_u64())
                .unwrap_or(0) as usize;
            let prompt = harmbench::classifier_prompt(behavior, generation, &standard, &contextual)
                .map_err(|e| NodeError::caused("Failed to fill a classifier prompt", &e))?;
            for judge in &judges {
                let request = judge.request(&j, prompt.clone(), &["Yes", "No"]);
                let key = call_key(&judge.id, &request, index as u32);
                planned.push((i, id.clone(), index, judge.name.clone(), key, request));
            }
        }
        let replies = judging::replies(
            ctx,
            &j,
            &judges,
            planned
                .iter()
                .map(|(_, _, _, judge, key, request)| judging::Planned {
                    key: *key,
                    judge,
                    request,
                }),
        )?;

        let mut records: BTreeMap<&str, Vec<ClassifierRecord>> = BTreeMap::new();
        let mut verdicts: BTreeMap<(String, usize), BTreeMap<String, char>> = BTreeMap::new();
        let mut out = Vec::with_capacity(planned.len());
        for (i, id, index, judge, key, _) in &planned {
            let reply = &replies[key];
            let verdict = harmbench::parse_classifier(&judging::verdict(&j, reply));
            records.entry(judge).or_default().push(ClassifierRecord {
                behavior_id: id.clone(),
                generation_index: *index,
                verdict,
            });
            let letter = match verdict {
                Verdict::Yes => 'y',
                Verdict::No => 'n',
                Verdict::Other => 'o',
            };
            verdicts
                .entry((id.clone(), *index))
                .or_default()
                .insert(judge.clone(), letter);
            let mut row = rows[*i].clone();
            row.insert("judge".into(), json!(judge));
            row.insert("served_model".into(), json!(reply.served_model));
            row.insert("verdict".into(), json!(verdict));
            row.insert("reply".into(), json!(reply.text));
            out.push(row);
        }
        table::write_jsonl(&ctx.output_path("grades"), &out)
            .map_err(|e| NodeError::caused("Failed to write the grades", &e))?;

        let mut by_judge = serde_json::Map::new();
        let mut asrs = Vec::new();
        for judge in &names {
            let recs = records.remove(judge.as_str()).unwrap_or_default();
            let report = harmbench::score(&recs, &behaviors)
                .map_err(|e| NodeError::caused("Failed to score the verdicts", &e))?;
            asrs.extend(report.asr);
            by_judge.insert(
                judge.clone(),
                serde_json::to_value(&report).expect("a report serialises"),
            );
        }
        let scores = json!({
            "convention": harmbench::CONVENTION,
            "asr": (asrs.len() == names.len() && !asrs.is_empty()).then(|| asrs.iter().sum::<f64>() / asrs.len() as f64),
            "judges": by_judge,
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
