//! Filling a judge's prompt template: `{name}` placeholders, replaced in one pass so a
//! value that itself contains `{answer}` is never expanded again.

/// `template` with each `{name}` replaced by its value. `{{` and `}}` are literal braces. An
/// unknown name is an error naming it and the names there are.
pub fn fill(template: &str, values: &[(&str, &str)]) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("{{") {
            out.push('{');
            rest = t;
        } else if let Some(t) = tail.strip_prefix("}}") {
            out.push('}');
            rest = t;
        } else if let Some(t) = tail.strip_prefix('{') {
            let end = t.find('}').ok_or_else(|| {
                format!("`{{` at byte {i} is never closed (write `{{{{` for a literal brace)")
            })?;
            let name = &t[..end];
            let value = values
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| *v)
                .ok_or_else(|| {
                    let names: Vec<String> =
                        values.iter().map(|(k, _)| format!("{{{k}}}")).collect();
                    format!(
                        "unknown placeholder `{{{name}}}`; the template may use {}",
                        names.join(", ")
                    )
                })?;
            out.push_str(value);
            rest = &t[end + 1..];
        } else {
            // A lone `}`: kept as written, as a brace in prose.
            out.push('}');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::fill;

    #[test]
    fn placeholders_fill_once_and_braces_escape() {
        let v = [("answer", "I said {question}"), ("question", "Q")];
        assert_eq!(
            fill("{question} -> {answer} {{x}}", &v).unwrap(),
            "Q -> I said {question} {x}"
        );
        let e = fill("{nope}", &v).unwrap_err();
        assert!(
            e.contains("`{nope}`") && e.contains("{answer}, {question}"),
            "{e}"
        );
        assert!(fill("{open", &v).unwrap_err().contains("never closed"));
        assert_eq!(fill("a } b", &v).unwrap(), "a } b");
    }
}
