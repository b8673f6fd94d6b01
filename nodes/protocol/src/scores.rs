//! The `scores` artifact: one JSON object per line, a row's probability of the positive
//! class beside its label. Written by every node that scores rows (`train-probe`,
//! `classify-prompted`, `finetune-classifier`) and read by `probe-report`, all through
//! [`ScoreRow`], so the format has one definition.

use serde::Serialize;
use serde_json::{Map, Value};

/// One line of a scores file. Serialises as `split`, `row`, `label`, `score`, then the
/// node's own columns in their order, then `group`: the byte layout every existing scores
/// artifact has, so their content hashes (and the cache keys downstream) stay as they were.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreRow {
    /// The split the row belongs to (`train`, `validation`, `test`, ...).
    pub split: String,
    /// The row's index in its input.
    pub row: u64,
    /// The true label, written as 0 or 1.
    #[serde(serialize_with = "as_01")]
    pub label: bool,
    /// P(label = 1). A NaN is written as `null`, which no reader accepts as a score.
    pub score: f64,
    /// What the node adds per row (`score_by_seed`, `logprob_a`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
    /// The row's group (its `group_column` value), when the node was given one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

fn as_01<S: serde::Serializer>(label: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u8(u8::from(*label))
}

impl ScoreRow {
    /// A row with no extra columns and no group.
    pub fn new(split: impl Into<String>, row: u64, label: bool, score: f64) -> Self {
        Self {
            split: split.into(),
            row,
            label,
            score,
            extra: Map::new(),
            group: None,
        }
    }

    /// Adds a node-specific column.
    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_string(), value);
        self
    }

    /// Sets the row's group.
    pub fn in_group(mut self, group: Option<&String>) -> Self {
        self.group = group.cloned();
        self
    }

    /// The file's bytes: one line per row.
    pub fn to_jsonl(rows: &[ScoreRow]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in rows {
            serde_json::to_writer(&mut out, r).expect("a score row serialises");
            out.push(b'\n');
        }
        out
    }

    /// Parses one line, checking what a reader relies on: a string split, a label of 0 or 1
    /// (or a boolean), a score that is a probability, a string group. The error says what is
    /// wrong with the line; the caller names the file and the line number.
    pub fn parse(line: &str) -> Result<ScoreRow, String> {
        let Value::Object(mut obj) =
            serde_json::from_str(line).map_err(|e| format!("is not a JSON object: {e}"))?
        else {
            return Err("is not a JSON object".into());
        };
        let shown = |v: Option<&Value>| v.map_or("nothing".to_string(), Value::to_string);
        let split = match obj.remove("split") {
            Some(Value::String(s)) => s,
            other => return Err(format!("has split {}, not a string", shown(other.as_ref()))),
        };
        let row = match obj.remove("row") {
            Some(v) if v.as_u64().is_some() => v.as_u64().expect("checked"),
            other => {
                return Err(format!(
                    "has row {}, not a row index",
                    shown(other.as_ref())
                ));
            }
        };
        let label = match obj.remove("label") {
            Some(Value::Bool(b)) => b,
            Some(v) if v.as_f64() == Some(1.0) => true,
            Some(v) if v.as_f64() == Some(0.0) => false,
            other => return Err(format!("has label {}, not 0 or 1", shown(other.as_ref()))),
        };
        let score = match obj.remove("score") {
            Some(v) if v.as_f64().is_some_and(|s| (0.0..=1.0).contains(&s)) => {
                v.as_f64().expect("checked")
            }
            other => {
                return Err(format!(
                    "has score {}, not a probability in [0, 1]",
                    shown(other.as_ref())
                ));
            }
        };
        let group = match obj.remove("group") {
            None => None,
            Some(Value::String(g)) => Some(g),
            Some(v) => return Err(format!("has group {v}, not a string")),
        };
        Ok(ScoreRow {
            split,
            row,
            label,
            score,
            extra: obj,
            group,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn layout_is_the_one_existing_artifacts_have() {
        let rows = [
            ScoreRow::new("test", 3, true, 0.25)
                .with("logprob_a", json!(-1.5))
                .with("logprob_b", json!(-2.0))
                .in_group(Some(&"a".to_string())),
            ScoreRow::new("validation", 0, false, 0.5),
        ];
        let text = String::from_utf8(ScoreRow::to_jsonl(&rows)).unwrap();
        assert_eq!(
            text,
            "{\"split\":\"test\",\"row\":3,\"label\":1,\"score\":0.25,\"logprob_a\":-1.5,\"logprob_b\":-2.0,\"group\":\"a\"}\n\
             {\"split\":\"validation\",\"row\":0,\"label\":0,\"score\":0.5}\n"
        );
        for (line, row) in text.lines().zip(&rows) {
            assert_eq!(&ScoreRow::parse(line).unwrap(), row);
        }
    }

    #[test]
    fn a_nan_score_is_written_as_null_and_refused_on_reading() {
        let text = ScoreRow::to_jsonl(&[ScoreRow::new("test", 0, true, f64::NAN)]);
        let line = String::from_utf8(text).unwrap();
        assert!(line.contains("\"score\":null"), "{line}");
        assert_eq!(
            ScoreRow::parse(line.trim()).unwrap_err(),
            "has score null, not a probability in [0, 1]"
        );
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        let cases = [
            (r#"[1]"#, "is not a JSON object"),
            (
                r#"{"row": 0, "label": 1, "score": 0.1}"#,
                "has split nothing, not a string",
            ),
            (
                r#"{"split": "t", "row": 0, "label": 2, "score": 0.1}"#,
                "has label 2, not 0 or 1",
            ),
            (
                r#"{"split": "t", "row": 0, "label": 0, "score": 1.5}"#,
                "has score 1.5, not a probability in [0, 1]",
            ),
            (
                r#"{"split": "t", "row": 0, "label": 0, "score": 0.5, "group": 3}"#,
                "has group 3, not a string",
            ),
            (
                r#"{"split": "t", "row": -1, "label": 0, "score": 0.5}"#,
                "has row -1, not a row index",
            ),
            (
                r#"{"split": "t", "label": 0, "score": 0.5}"#,
                "has row nothing, not a row index",
            ),
        ];
        for (line, want) in cases {
            let got = ScoreRow::parse(line).unwrap_err();
            assert!(got.starts_with(want), "{line}: {got}");
        }
        assert!(
            ScoreRow::parse(r#"{"split": "t", "row": 0, "label": true, "score": 0}"#)
                .unwrap()
                .label
        );
    }
}
