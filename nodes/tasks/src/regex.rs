//! Python `re` behaviour on top of `fancy-regex` (which, unlike `regex`, has look-around).

use fancy_regex::{Captures, Regex};

/// A compiled Python-style regular expression.
#[derive(Clone, Debug)]
pub(crate) struct PyRegex {
    regex: Regex,
    pattern: String,
}

impl PyRegex {
    pub(crate) fn new(pattern: &str) -> Result<Self, fancy_regex::Error> {
        // Python spells end-of-text `\Z`; Rust spells it `\z`.
        let translated = pattern.replace(r"\Z", r"\z");
        Ok(Self {
            regex: Regex::new(&translated)?,
            pattern: pattern.to_string(),
        })
    }

    pub(crate) fn pattern(&self) -> &str {
        &self.pattern
    }

    /// `re.findall`: whole matches without groups, the group with one, tuples with several
    /// (as `Vec`, a group that did not take part is `""`).
    pub(crate) fn findall(&self, text: &str) -> Result<Vec<Vec<String>>, fancy_regex::Error> {
        let groups = self.regex.captures_len() - 1;
        let mut out = Vec::new();
        for caps in self.regex.captures_iter(text) {
            let caps = caps?;
            let group = |i: usize| {
                caps.get(i)
                    .map_or(String::new(), |m| m.as_str().to_string())
            };
            out.push(match groups {
                0 => vec![group(0)],
                _ => (1..=groups).map(group).collect(),
            });
        }
        Ok(out)
    }

    /// `re.sub(pattern, repl, text, count)`; `count == 0` replaces all. `repl` uses Python's
    /// `\1` / `\g<name>` references.
    pub(crate) fn sub(
        &self,
        repl: &str,
        text: &str,
        count: usize,
    ) -> Result<String, fancy_regex::Error> {
        let template = python_repl_to_rust(repl);
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for (n, caps) in self.regex.captures_iter(text).enumerate() {
            if count != 0 && n == count {
                break;
            }
            let caps: Captures<'_, str> = caps?;
            let whole = caps.get(0).expect("group 0 always exists");
            out.push_str(&text[last..whole.start()]);
            caps.expand(&template, &mut out);
            last = whole.end();
        }
        out.push_str(&text[last..]);
        Ok(out)
    }
}

/// Turn Python replacement syntax into `fancy-regex`'s (`$` escaped, `\1` -> `${1}`).
fn python_repl_to_rust(repl: &str) -> String {
    let mut out = String::with_capacity(repl.len());
    let mut chars = repl.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.peek().copied() {
                Some(d) if d.is_ascii_digit() => {
                    let mut num = String::new();
                    while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                        num.push(d);
                        chars.next();
                    }
                    out.push_str(&format!("${{{num}}}"));
                }
                Some('g') => {
                    chars.next();
                    if chars.peek() == Some(&'<') {
                        chars.next();
                        let name: String = chars.by_ref().take_while(|&c| c != '>').collect();
                        out.push_str(&format!("${{{name}}}"));
                    } else {
                        out.push_str("\\g");
                    }
                }
                Some('n') => {
                    chars.next();
                    out.push('\n');
                }
                Some('t') => {
                    chars.next();
                    out.push('\t');
                }
                Some('\\') => {
                    chars.next();
                    out.push('\\');
                }
                _ => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findall_follows_python_group_rules() {
        let strict = PyRegex::new(r"#### (\-?[0-9\.\,]+)").unwrap();
        assert_eq!(
            strict.findall("so #### 1,234.\n").unwrap(),
            vec![vec!["1,234.".to_string()]]
        );
        let flexible = PyRegex::new(r"(-?[$0-9.,]{2,})|(-?[0-9]+)").unwrap();
        assert_eq!(
            flexible.findall("3 apples and $18.").unwrap(),
            vec![
                vec![String::new(), "3".to_string()],
                vec!["$18.".to_string(), String::new()]
            ]
        );
        let plain = PyRegex::new(r"\d").unwrap();
        assert_eq!(plain.findall("a1b2").unwrap().len(), 2);
    }

    #[test]
    fn sub_matches_python() {
        let r = PyRegex::new(r"(?s).*#### ").unwrap();
        assert_eq!(r.sub("", "a\nb #### 72", 0).unwrap(), "72");
        let r = PyRegex::new(r"(\w+)@(\w+)").unwrap();
        assert_eq!(
            r.sub(r"\2 at \1 $", "x@y, p@q", 1).unwrap(),
            "y at x $, p@q"
        );
        let r = PyRegex::new(r"\b(?:The |the |An |A |The |a |an )").unwrap();
        assert_eq!(r.sub("", "the Eiffel tower", 0).unwrap(), "Eiffel tower");
    }
}
