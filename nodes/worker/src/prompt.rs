//! Prompts from dataset rows: `{column}` templates.

use dag_protocol::NodeError;
use dag_table::{self as table, Row};

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
        let err = fill("{statment}", &row).unwrap_err().to_string();
        assert!(
            err.contains("`{statment}`") && err.contains("statement, n"),
            "{err}"
        );
    }
}
