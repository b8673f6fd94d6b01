//! Strict parsers that turn a grader's reply into a [`Grade`], in inspect's model-graded-QA
//! form (`GRADE: C` / `GRADE: P` / `GRADE: I`) or as a JSON object for constrained decoding.
//!
//! A reply that does not parse is an [`Unscored`], never a grade: callers drop it and count
//! it, so a grader's formatting failure can never pass for a 0 or a 1. The text parser is
//! deliberately narrower than inspect's own `GRADE\s*:\s*([CPI])` search, which reads
//! `GRADE: CI` as C and finds a grade in "... a downgrade: I think".

use std::fmt;

use dag_diagnostic::Hint;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A grader's verdict on one criterion. Higher is better: see [`Grade::value`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Grade {
    /// `C`: the submission meets the criterion.
    Correct,
    /// `P`: it partly meets it (only where the grading instructions allow partial credit).
    Partial,
    /// `I`: it does not meet it.
    Incorrect,
}

impl Grade {
    /// The numeric value inspect's `value_to_float` gives the letter: C = 1.0, P = 0.5,
    /// I = 0.0.
    pub fn value(self) -> f64 {
        match self {
            Grade::Correct => 1.0,
            Grade::Partial => 0.5,
            Grade::Incorrect => 0.0,
        }
    }

    /// The upper-case letter of the grade: `'C'`, `'P'` or `'I'` (a handy label for
    /// agreement statistics such as `dag_metrics::cohen_kappa`).
    pub fn letter(self) -> char {
        match self {
            Grade::Correct => 'C',
            Grade::Partial => 'P',
            Grade::Incorrect => 'I',
        }
    }

    /// The grade a letter stands for, either case; `None` for any other character.
    pub fn from_letter(letter: char) -> Option<Grade> {
        match letter.to_ascii_uppercase() {
            'C' => Some(Grade::Correct),
            'P' => Some(Grade::Partial),
            'I' => Some(Grade::Incorrect),
            _ => None,
        }
    }
}

impl fmt::Display for Grade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.letter())
    }
}

/// Why a grader's reply yielded no grade. The reply must be dropped (and counted), never
/// scored. Its message is the plain reason (it is written into the grades as "why
/// unscored"); what the grader should do instead is its [`Hint`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Unscored {
    /// No line of the reply starts with `GRADE:`.
    #[error("the reply has no grade line")]
    NoGrade,
    /// The last `GRADE:` line starts with a grade letter but holds more than that one letter
    /// (`GRADE: CI`, `GRADE: C or I`, `GRADE: Correct`), so which grade is meant is unclear.
    #[error(
        "the last grade line `{line}` holds more than one grade letter; it is ambiguous and \
         not scored"
    )]
    Ambiguous {
        /// The offending line, zero-width characters removed and trimmed.
        line: String,
    },
    /// The last `GRADE:` line has no value, or its value is not C, P or I.
    #[error("the last grade line `{line}` holds no grade letter")]
    NotAGrade {
        /// The offending line, zero-width characters removed and trimmed.
        line: String,
    },
    /// The reply grades `P` but this criterion allows only C or I.
    #[error("the reply grades P (partial) but partial credit is not allowed here")]
    PartialNotAllowed,
    /// The reply is not one JSON object (after trimming surrounding whitespace).
    #[error("the reply is not a JSON object: {error}")]
    InvalidJson {
        /// serde_json's message, with the position of the problem.
        error: String,
    },
    /// The reply is a JSON object, but its `grade` is missing, repeated, or not one of the
    /// strings "C", "P", "I".
    #[error("the JSON verdict {problem}")]
    BadJsonGrade {
        /// What is wrong with the `grade` key.
        problem: String,
    },
}

impl Hint for Unscored {
    fn hint(&self) -> Option<String> {
        let hint = match self {
            Unscored::NoGrade => {
                "the grader must end with a line `GRADE: C`, `GRADE: I` (or `GRADE: P` where \
                 partial credit is allowed); check its instructions and max_tokens (a truncated \
                 reply loses its last line)"
            }
            Unscored::Ambiguous { .. } | Unscored::NotAGrade { .. } => {
                "the grade must be exactly one of C, P, I"
            }
            Unscored::PartialNotAllowed => {
                "enable partial credit for this scorer or tell the grader to answer C or I only"
            }
            Unscored::InvalidJson { .. } => {
                "the constrained backend must return exactly one object such as \
                 {\"grade\": \"C\"}, without code fences or prose"
            }
            Unscored::BadJsonGrade { .. } => {
                "it needs exactly one key \"grade\" whose value is the string \"C\", \"P\" or \"I\""
            }
        };
        Some(hint.to_owned())
    }
}

/// The zero-width characters a reply may hide inside or around its grade line.
const ZERO_WIDTH: [char; 5] = ['\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}'];

fn strip_zero_width(reply: &str) -> String {
    reply.chars().filter(|c| !ZERO_WIDTH.contains(c)).collect()
}

fn is_padding(c: char) -> bool {
    c.is_whitespace() || c == '*' || c == '_'
}

fn check_partial(grade: Grade, allow_partial: bool) -> Result<Grade, Unscored> {
    if grade == Grade::Partial && !allow_partial {
        Err(Unscored::PartialNotAllowed)
    } else {
        Ok(grade)
    }
}

/// `None` when the line is no grade line at all; otherwise what its value says.
fn grade_line(line: &str) -> Option<Result<Grade, Unscored>> {
    let rest = line.trim_start_matches(is_padding);
    if !rest.get(..5)?.eq_ignore_ascii_case("grade") {
        return None;
    }
    // `**GRADE**: C` and `GRADE : C` put emphasis or a space before the colon; anything else
    // there (`GRADES:`, `GRADE LEVEL:`) makes it some other line.
    let value = rest[5..]
        .trim_start_matches(is_padding)
        .strip_prefix(':')?
        .trim_start_matches(is_padding);
    let trimmed = line.trim().to_owned();
    let mut chars = value.chars();
    let Some(grade) = chars.next().and_then(Grade::from_letter) else {
        return Some(Err(Unscored::NotAGrade { line: trimmed }));
    };
    let tail = chars.as_str();
    let clean_tail = tail.chars().all(|c| is_padding(c) || c == '.')
        && tail.chars().filter(|&c| c == '.').count() <= 1;
    Some(if clean_tail {
        Ok(grade)
    } else {
        Err(Unscored::Ambiguous { line: trimmed })
    })
}

/// Parses a model-graded-QA reply: the grade is the LAST line of the form `GRADE: X`.
///
/// Zero-width characters (U+200B, U+200C, U+200D, U+2060, U+FEFF) are removed first. A grade
/// line starts, after optional whitespace and markdown emphasis (`*`, `_`), with the word
/// GRADE in any case, then optional whitespace or emphasis, a `:`, and exactly one letter C,
/// P or I in either case, followed by nothing but whitespace, emphasis and at most one `.`
/// (`**GRADE:** C`, `__grade: c.__`). A `GRADE` inside a sentence or after another prefix
/// (a list dash, a quote `>`, a heading `#`, "downgrade:") is not a grade line.
///
/// When the last grade line is malformed the reply is unscored even if an earlier line is
/// well formed: the grader's final word is the one that counts, and it is unclear.
/// `GRADE: P` is accepted only with `allow_partial`; otherwise it is
/// [`Unscored::PartialNotAllowed`].
pub fn parse_graded_qa(reply: &str, allow_partial: bool) -> Result<Grade, Unscored> {
    let reply = strip_zero_width(reply);
    let last = reply.lines().rev().find_map(grade_line);
    check_partial(last.unwrap_or(Err(Unscored::NoGrade))?, allow_partial)
}

/// The `grade` member of a JSON verdict, every other member skipped unread.
struct GradeMember(Result<Option<Value>, &'static str>);

impl<'de> Deserialize<'de> for GradeMember {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MemberVisitor;

        impl<'de> Visitor<'de> for MemberVisitor {
            type Value = GradeMember;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<GradeMember, A::Error> {
                let mut grade = None;
                let mut repeated = false;
                while let Some(key) = map.next_key::<String>()? {
                    if key == "grade" {
                        // serde_json keeps the last duplicate silently; a verdict that says
                        // two things must not be read as either.
                        repeated |= grade.is_some();
                        grade = Some(map.next_value::<Value>()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(GradeMember(if repeated {
                    Err("has the key \"grade\" more than once")
                } else {
                    Ok(grade)
                }))
            }
        }

        deserializer.deserialize_map(MemberVisitor)
    }
}

/// Parses a verdict from a constrained (JSON-mode) backend: exactly one JSON object whose
/// key `"grade"` is the string `"C"`, `"P"` or `"I"` (either case, nothing else inside the
/// string), e.g. `{"grade": "C", "reason": "..."}`. Whitespace around and inside the object
/// and other keys are allowed; zero-width characters are removed first, as for
/// [`parse_graded_qa`]. Anything else (prose, code fences, an array, a missing, repeated or
/// non-string `grade`) is unscored, and `"P"` needs `allow_partial`.
pub fn parse_json_grade(reply: &str, allow_partial: bool) -> Result<Grade, Unscored> {
    let reply = strip_zero_width(reply);
    let member = serde_json::from_str::<GradeMember>(reply.trim())
        .map_err(|e| Unscored::InvalidJson {
            error: e.to_string(),
        })?
        .0
        .map_err(|problem| Unscored::BadJsonGrade {
            problem: problem.to_owned(),
        })?;
    let bad = |problem: String| Unscored::BadJsonGrade { problem };
    let grade = match member {
        None => return Err(bad("has no key \"grade\"".to_owned())),
        Some(Value::String(s)) => {
            let mut chars = s.chars();
            match (chars.next().and_then(Grade::from_letter), chars.next()) {
                (Some(grade), None) => grade,
                _ => return Err(bad(format!("has \"grade\": {s:?}, not one letter C, P, I"))),
            }
        }
        Some(other) => return Err(bad(format!("has \"grade\": {other}, not a string"))),
    };
    check_partial(grade, allow_partial)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qa(reply: &str) -> Result<Grade, Unscored> {
        parse_graded_qa(reply, true)
    }

    #[test]
    fn plain_grades_and_values() {
        assert_eq!(qa("Reasoning.\nGRADE: C"), Ok(Grade::Correct));
        assert_eq!(qa("Reasoning.\nGRADE: I"), Ok(Grade::Incorrect));
        assert_eq!(qa("Reasoning.\nGRADE: P"), Ok(Grade::Partial));
        assert_eq!(Grade::Correct.value(), 1.0);
        assert_eq!(Grade::Partial.value(), 0.5);
        assert_eq!(Grade::Incorrect.value(), 0.0);
        assert_eq!(Grade::Partial.to_string(), "P");
    }

    #[test]
    fn two_letters_are_ambiguous_never_c() {
        assert!(matches!(qa("GRADE: CI"), Err(Unscored::Ambiguous { .. })));
        assert!(matches!(
            qa("GRADE: C or I"),
            Err(Unscored::Ambiguous { .. })
        ));
        assert!(matches!(qa("GRADE: C/I"), Err(Unscored::Ambiguous { .. })));
        assert!(matches!(
            qa("GRADE: Correct"),
            Err(Unscored::Ambiguous { .. })
        ));
        assert!(matches!(qa("GRADE: C.."), Err(Unscored::Ambiguous { .. })));
    }

    #[test]
    fn grade_inside_a_sentence_is_not_a_grade() {
        assert_eq!(
            qa("The submission earns a downgrade: I would not accept it."),
            Err(Unscored::NoGrade)
        );
        assert_eq!(
            qa("the answer deserves a downgrade:\nI think it misses the point."),
            Err(Unscored::NoGrade)
        );
        assert_eq!(qa("Downgrade: I"), Err(Unscored::NoGrade));
        assert_eq!(qa("GRADES: C"), Err(Unscored::NoGrade));
        assert_eq!(qa("- GRADE: C"), Err(Unscored::NoGrade));
    }

    #[test]
    fn case_insensitive_word_and_letter() {
        assert_eq!(qa("grade: c"), Ok(Grade::Correct));
        assert_eq!(qa("Grade: i"), Ok(Grade::Incorrect));
    }

    #[test]
    fn zero_width_characters_are_ignored() {
        assert_eq!(qa("GRADE:\u{200b} C"), Ok(Grade::Correct));
        assert_eq!(qa("\u{feff}GR\u{200d}ADE: I\u{2060}"), Ok(Grade::Incorrect));
        assert!(matches!(
            qa("GRADE: C\u{200c}I"),
            Err(Unscored::Ambiguous { .. })
        ));
    }

    #[test]
    fn markdown_emphasis_and_final_period() {
        assert_eq!(qa("**GRADE: C**"), Ok(Grade::Correct));
        assert_eq!(qa("**GRADE:** C"), Ok(Grade::Correct));
        assert_eq!(qa("**GRADE**: I"), Ok(Grade::Incorrect));
        assert_eq!(qa("__GRADE__: *P*"), Ok(Grade::Partial));
        assert_eq!(qa("  *GRADE: C.*  "), Ok(Grade::Correct));
        assert_eq!(qa("GRADE: I."), Ok(Grade::Incorrect));
        assert_eq!(qa("GRADE : C\r\n"), Ok(Grade::Correct));
    }

    #[test]
    fn no_grade_is_unscored() {
        assert_eq!(qa(""), Err(Unscored::NoGrade));
        assert_eq!(qa("The answer is fine."), Err(Unscored::NoGrade));
        assert!(matches!(qa("GRADE:"), Err(Unscored::NotAGrade { .. })));
        assert!(matches!(qa("GRADE: X"), Err(Unscored::NotAGrade { .. })));
        assert!(matches!(qa("GRADE:\nC"), Err(Unscored::NotAGrade { .. })));
    }

    #[test]
    fn partial_needs_permission() {
        assert_eq!(
            parse_graded_qa("GRADE: P", false),
            Err(Unscored::PartialNotAllowed)
        );
        assert_eq!(parse_graded_qa("GRADE: C", false), Ok(Grade::Correct));
        assert_eq!(parse_graded_qa("GRADE: P", true), Ok(Grade::Partial));
    }

    #[test]
    fn last_grade_line_wins() {
        let reply = "At first sight GRADE: I seems right.\nGRADE: I\n\
                     On reflection the answer covers it.\nGRADE: C";
        assert_eq!(qa(reply), Ok(Grade::Correct));
        let reply = "GRADE: C\nHmm, or rather\nGRADE: C/I";
        assert!(matches!(qa(reply), Err(Unscored::Ambiguous { .. })));
        // Text after the last grade line does not hide it.
        assert_eq!(qa("GRADE: I\n\nThat is my verdict."), Ok(Grade::Incorrect));
    }

    #[test]
    fn unscored_messages_explain() {
        let e = qa("GRADE: CI").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("`GRADE: CI`") && !msg.contains("hint"),
            "{msg}"
        );
        assert!(
            e.hint()
                .is_some_and(|h| h.contains("exactly one of C, P, I"))
        );
        assert_eq!(Unscored::NoGrade.to_string(), "the reply has no grade line");
        assert!(
            Unscored::NoGrade
                .hint()
                .is_some_and(|h| h.contains("GRADE: C"))
        );
        let e = parse_json_grade("```json\n{\"grade\": \"C\"}\n```", true).unwrap_err();
        assert!(!e.to_string().contains("hint"), "{e}");
        assert!(e.hint().is_some_and(|h| h.contains(r#"{"grade": "C"}"#)));
    }

    #[test]
    fn json_verdicts() {
        let j = |s: &str| parse_json_grade(s, true);
        assert_eq!(j(r#"{"grade": "C"}"#), Ok(Grade::Correct));
        assert_eq!(j(" {\n \"grade\":\"I\" } \n"), Ok(Grade::Incorrect));
        assert_eq!(
            j(r#"{"reason": "covers the welfare of the animals", "grade": "p"}"#),
            Ok(Grade::Partial)
        );
        assert_eq!(
            parse_json_grade(r#"{"grade": "P"}"#, false),
            Err(Unscored::PartialNotAllowed)
        );
        for bad in [
            r#"{"grade": "CI"}"#,
            r#"{"grade": " C"}"#,
            r#"{"grade": "X"}"#,
            r#"{"grade": 1}"#,
            r#"{"grade": null}"#,
            r#"{"Grade": "C"}"#,
            r#"{"reason": "fine"}"#,
            r#"{"grade": "C", "grade": "I"}"#,
        ] {
            assert!(
                matches!(j(bad), Err(Unscored::BadJsonGrade { .. })),
                "{bad}: {:?}",
                j(bad)
            );
        }
        for bad in [
            "GRADE: C",
            "```json\n{\"grade\": \"C\"}\n```",
            r#"{"grade": "C"} extra"#,
            r#"[{"grade": "C"}]"#,
            r#""C""#,
            "",
        ] {
            assert!(
                matches!(j(bad), Err(Unscored::InvalidJson { .. })),
                "{bad}: {:?}",
                j(bad)
            );
        }
    }
}
