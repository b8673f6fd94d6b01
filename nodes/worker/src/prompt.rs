//! Rows into prompts and token ids: `{column}` templates, the rendering params (raw text, a
//! text as one chat turn, a conversation column) and truncation to a token budget.

use dag_protocol::NodeError;
use dag_protocol::probes::Rendering;
use dag_runtime::{Message, Model};
use dag_table::{self as table, Row};

use crate::failure::caused;

/// Fills `{column}` placeholders from a row; `{{` and `}}` are literal braces.
pub fn fill(template: &str, row: &Row) -> Result<String, NodeError> {
    let mut out = String::with_capacity(template.len());
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let name: String = chars.by_ref().take_while(|&c| c != '}').collect();
                let v = row.get(&name).ok_or_else(|| {
                    let cols: Vec<&str> = row.keys().map(String::as_str).collect();
                    NodeError::msg(format!("The prompt template names column `{{{name}}}`, which the dataset does not have"))
                        .hint(format!("columns are: {}; write `{{{{` for a literal brace", cols.join(", ")))
                })?;
                out.push_str(&table::as_text(v));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// How a row becomes text for the model.
pub enum Render {
    /// A raw text column, tokenised with the tokenizer's special tokens (as `tokenizer(text)`).
    Text(String),
    /// A text column as one user turn of the chat template.
    ChatText(String, Option<String>),
    /// A conversation column (list of `{role, content}`) through the chat template.
    Messages(String, Option<String>),
}

impl Render {
    /// From the rendering params (`text_column`, `messages_column`, `chat`,
    /// `system_prompt`).
    pub fn new(r: &Rendering) -> Result<Render, NodeError> {
        let chat = r.chat;
        let system = r.system_prompt.clone();
        match (r.text_column.clone(), r.messages_column.clone()) {
            (Some(t), None) if chat => Ok(Render::ChatText(t, system)),
            (Some(_), None) if system.is_some() => Err(NodeError::msg(
                "`system_prompt` is set but the text is not rendered with the chat template",
            )
            .hint("set `chat = true`, or drop `system_prompt`")),
            (Some(t), None) => Ok(Render::Text(t)),
            (None, Some(m)) => Ok(Render::Messages(m, system)),
            (Some(_), Some(_)) => Err(NodeError::msg(
                "Both `text_column` and `messages_column` are set",
            )
            .hint("keep one: raw text, or a conversation rendered with the chat template")),
            (None, None) => Err(NodeError::msg(
                "No text to read: neither `text_column` nor `messages_column` is set",
            )
            .hint("add `text_column = \"text\"` (or `messages_column` for conversations)")),
        }
    }

    /// The column the text comes from.
    pub fn column(&self) -> &str {
        match self {
            Render::Text(c) | Render::ChatText(c, _) | Render::Messages(c, _) => c,
        }
    }

    /// Token ids of one row.
    pub fn tokens(&self, model: &Model, row: &Row, index: usize) -> Result<Vec<u32>, NodeError> {
        let col = self.column();
        let v = row.get(col).ok_or_else(|| {
            let cols: Vec<&str> = row.keys().map(String::as_str).collect();
            NodeError::msg(format!("Row {index} has no column `{col}`"))
                .hint(format!("columns are: {}", cols.join(", ")))
        })?;
        let chat = |messages: Vec<Message>| {
            model.render_chat(&messages, false).map_err(|e| {
                caused(
                    format!("Failed to render row {index} with the chat template"),
                    &e,
                )
            })
        };
        let (text, special) = match self {
            Render::Text(_) => (table::as_text(v), true),
            Render::ChatText(_, system) => {
                let mut m = vec![];
                if let Some(s) = system {
                    m.push(Message::new("system", s.as_str()));
                }
                m.push(Message::new("user", table::as_text(v)));
                (chat(m)?, false)
            }
            Render::Messages(_, system) => {
                let turns = v.as_array().ok_or_else(|| {
                    NodeError::msg(format!("Row {index}: column `{col}` is not a list of messages"))
                        .hint("expected `[{\"role\": \"user\", \"content\": \"...\"}, ...]`; use `text_column` for plain text")
                })?;
                let mut m = vec![];
                if let Some(s) = system {
                    m.push(Message::new("system", s.as_str()));
                }
                for t in turns {
                    match (t["role"].as_str(), t["content"].as_str()) {
                        (Some(r), Some(c)) => m.push(Message::new(r, c)),
                        _ => {
                            return Err(NodeError::msg(format!(
                                "Row {index}: a message in `{col}` lacks a string `role` or `content`"
                            ))
                            .hint("each message must be `{\"role\": ..., \"content\": ...}`"));
                        }
                    }
                }
                (chat(m)?, false)
            }
        };
        let ids = model
            .tokenizer()
            .encode(&text, special)
            .map_err(|e| caused(format!("Failed to tokenise row {index}"), &e))?;
        if ids.is_empty() {
            return Err(NodeError::msg(format!("Row {index} encodes to no tokens"))
                .hint("drop empty texts with the dataset node's `exclude`"));
        }
        Ok(ids)
    }
}

/// Cuts `ids` to `max_len` tokens, keeping the last ones when `keep_end` (a dialogue's final
/// turn) and the first ones otherwise. Returns whether anything was cut.
pub fn truncate(ids: &mut Vec<u32>, max_len: usize, keep_end: bool) -> bool {
    let cut = ids.len() > max_len;
    if cut && keep_end {
        ids.drain(..ids.len() - max_len);
    } else {
        ids.truncate(max_len);
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_columns_and_keep_escaped_braces() {
        let row: Row = serde_json::from_str(r#"{"statement": "Fur is warm.", "n": 3}"#).unwrap();
        assert_eq!(
            fill(
                "\"{statement}\"\nIs this statement morally acceptable or morally wrong?",
                &row
            )
            .unwrap(),
            "\"Fur is warm.\"\nIs this statement morally acceptable or morally wrong?"
        );
        assert_eq!(fill("{{literal}} {n}", &row).unwrap(), "{literal} 3");
        let err = fill("{statment}", &row).unwrap_err();
        assert!(
            err.message.contains("`{statment}`")
                && err
                    .hint
                    .as_deref()
                    .is_some_and(|h| h.contains("statement, n")),
            "{err:?}"
        );
    }
}
