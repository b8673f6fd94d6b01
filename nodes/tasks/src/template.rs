//! Jinja rendering with lm-eval's environment, and Python literal values.
//!
//! lm-eval renders `doc_to_*` templates with Jinja2 (`StrictUndefined`,
//! `keep_trailing_newline=True`, a `regex_replace` filter) and then reads some results back
//! with `ast.literal_eval`, so a list rendered by `{{[a, b]}}` must print as Python prints it.
//! MiniJinja with the `pycompat` method table (`.strip()`, `.split()`...) and a formatter that
//! writes Python reprs gives the same strings.

use std::collections::HashSet;
use std::sync::Mutex;

use minijinja::value::{Value, ValueKind};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde_json::Value as Json;

use crate::regex::PyRegex;

/// A Jinja environment configured like lm-eval's, with a cache of compiled templates.
pub(crate) struct Templates {
    env: Environment<'static>,
    compiled: HashSet<String>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("compiled", &self.compiled.len())
            .finish()
    }
}

impl Templates {
    pub(crate) fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            .expect("the default Jinja delimiters are valid");
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("regex_replace", regex_replace);
        env.set_formatter(|out, _state, value| {
            if let Some(s) = value.as_str() {
                out.write_str(s)?;
            } else {
                out.write_str(&py_str(value))?;
            }
            Ok(())
        });
        Self {
            env,
            compiled: HashSet::new(),
        }
    }

    /// Compile `source` (once) so later renders are cheap; reports syntax errors early.
    pub(crate) fn compile(&mut self, source: &str) -> Result<(), minijinja::Error> {
        if !self.compiled.contains(source) {
            self.env
                .add_template_owned(source.to_string(), source.to_string())?;
            self.compiled.insert(source.to_string());
        }
        Ok(())
    }

    /// Render a template compiled before against one document.
    pub(crate) fn render(
        &self,
        source: &str,
        doc: &serde_json::Map<String, Json>,
    ) -> Result<String, minijinja::Error> {
        let template = self.env.get_template(source)?;
        template.render(Value::from(minijinja::value::Serde(doc)))
    }
}

/// The `regex_replace(pattern, repl, count=0)` filter lm-eval registers: Python `re.sub`.
fn regex_replace(
    value: String,
    pattern: String,
    repl: String,
    count: Option<usize>,
) -> Result<String, minijinja::Error> {
    static CACHE: Mutex<Vec<(String, PyRegex)>> = Mutex::new(Vec::new());
    let regex = {
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        match cache.iter().find(|(p, _)| *p == pattern) {
            Some((_, r)) => r.clone(),
            None => {
                let r = PyRegex::new(&pattern).map_err(|e| {
                    minijinja::Error::new(
                        minijinja::ErrorKind::InvalidOperation,
                        format!("regex_replace: bad pattern `{pattern}`: {e}"),
                    )
                })?;
                cache.push((pattern.clone(), r.clone()));
                r
            }
        }
    };
    regex.sub(&repl, &value, count.unwrap_or(0)).map_err(|e| {
        minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("regex_replace: `{pattern}` failed: {e}"),
        )
    })
}

/// `str(value)` of a JSON value as Python prints it.
pub(crate) fn py_str_json(value: &Json) -> String {
    py_str(&Value::from(minijinja::value::Serde(value)))
}

/// `str(value)` as Python prints it (strings bare, containers as reprs).
fn py_str(value: &Value) -> String {
    match value.as_str() {
        Some(s) => s.to_string(),
        None => py_repr(value),
    }
}

/// `repr(value)` as Python prints it.
fn py_repr(value: &Value) -> String {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => "None".to_string(),
        ValueKind::Bool => if value.is_true() { "True" } else { "False" }.to_string(),
        ValueKind::String => py_repr_str(value.as_str().unwrap_or_default()),
        ValueKind::Number => {
            if value.is_integer() {
                value.to_string()
            } else {
                let f = f64::try_from(value.clone()).unwrap_or(f64::NAN);
                py_float(f)
            }
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<String> = match value.try_iter() {
                Ok(iter) => iter.map(|v| py_repr(&v)).collect(),
                Err(_) => Vec::new(),
            };
            format!("[{}]", items.join(", "))
        }
        ValueKind::Map => {
            let mut parts = Vec::new();
            if let Ok(keys) = value.try_iter() {
                for key in keys {
                    let item = value.get_item(&key).unwrap_or(Value::UNDEFINED);
                    parts.push(format!("{}: {}", py_repr(&key), py_repr(&item)));
                }
            }
            format!("{{{}}}", parts.join(", "))
        }
        _ => value.to_string(),
    }
}

fn py_float(f: f64) -> String {
    if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf".into() } else { "-inf".into() }
    } else if f == f.trunc() && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

/// Python's `repr(str)`: single quotes unless the text has `'` and no `"`.
pub(crate) fn py_repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// `ast.literal_eval` for the literals task templates produce: strings, numbers, booleans,
/// `None`, lists, tuples and dicts. `None` when the text is not such a literal.
pub(crate) fn literal_eval(text: &str) -> Option<Json> {
    let mut parser = Literal {
        chars: text.trim().chars().collect(),
        pos: 0,
    };
    let value = parser.value()?;
    parser.skip_ws();
    (parser.pos == parser.chars.len()).then_some(value)
}

struct Literal {
    chars: Vec<char>,
    pos: usize,
}

impl Literal {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Option<Json> {
        self.skip_ws();
        match self.peek()? {
            '[' => self.sequence('[', ']'),
            '(' => self.sequence('(', ')'),
            '{' => self.dict(),
            '\'' | '"' => {
                // Adjacent string literals concatenate, as in Python.
                let mut s = self.string()?;
                loop {
                    self.skip_ws();
                    match self.peek() {
                        Some('\'' | '"') => s.push_str(&self.string()?),
                        _ => break,
                    }
                }
                Some(Json::String(s))
            }
            _ => self.atom(),
        }
    }

    fn sequence(&mut self, open: char, close: char) -> Option<Json> {
        self.eat(open).then_some(())?;
        let mut items = Vec::new();
        loop {
            if self.eat(close) {
                return Some(Json::Array(items));
            }
            items.push(self.value()?);
            if !self.eat(',') {
                return self.eat(close).then_some(Json::Array(items));
            }
        }
    }

    fn dict(&mut self) -> Option<Json> {
        self.eat('{').then_some(())?;
        let mut map = serde_json::Map::new();
        loop {
            if self.eat('}') {
                return Some(Json::Object(map));
            }
            let key = match self.value()? {
                Json::String(s) => s,
                other => other.to_string(),
            };
            self.eat(':').then_some(())?;
            map.insert(key, self.value()?);
            if !self.eat(',') {
                return self.eat('}').then_some(Json::Object(map));
            }
        }
    }

    fn string(&mut self) -> Option<String> {
        let quote = self.peek()?;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let c = self.peek()?;
            self.pos += 1;
            if c == quote {
                return Some(out);
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            let e = self.peek()?;
            self.pos += 1;
            match e {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                '0' => out.push('\0'),
                '\\' | '\'' | '"' => out.push(e),
                '\n' => {}
                'x' | 'u' | 'U' => {
                    let width = match e {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let hex: String = self.chars.get(self.pos..self.pos + width)?.iter().collect();
                    self.pos += width;
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => {
                    out.push('\\');
                    out.push(other);
                }
            }
        }
    }

    fn atom(&mut self) -> Option<Json> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_alphanumeric() || matches!(c, '-' | '+' | '.' | '_'))
        {
            self.pos += 1;
        }
        let word: String = self.chars[start..self.pos].iter().collect();
        match word.as_str() {
            "True" => Some(Json::Bool(true)),
            "False" => Some(Json::Bool(false)),
            "None" => Some(Json::Null),
            w => {
                let clean = w.replace('_', "");
                if let Ok(i) = clean.parse::<i64>() {
                    Some(Json::from(i))
                } else {
                    clean
                        .parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                        .map(Json::Number)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: Json) -> serde_json::Map<String, Json> {
        v.as_object().unwrap().clone()
    }

    fn render(src: &str, d: Json) -> String {
        let mut t = Templates::new();
        t.compile(src).unwrap();
        t.render(src, &doc(d)).unwrap()
    }

    #[test]
    fn renders_lists_as_python_reprs() {
        let out = render("{{[a, b]}}", json!({"a": " (A)", "b": "it's \"x\""}));
        assert_eq!(out, r#"[' (A)', 'it\'s "x"']"#);
        assert_eq!(literal_eval(&out).unwrap(), json!([" (A)", "it's \"x\""]));
    }

    #[test]
    fn python_methods_filters_and_trailing_newline() {
        assert_eq!(
            render("{{question.strip()}}\nA.\n", json!({"question": "  q? "})),
            "q?\nA.\n"
        );
        assert_eq!(
            render(
                "{{ answer.split('#### ')[-1] }}",
                json!({"answer": "x\n#### 42"})
            ),
            "42"
        );
        assert_eq!(
            render(
                "{{ text | regex_replace('\\\\s+', ' ') }}",
                json!({"text": "a  b\n c"})
            ),
            "a b c"
        );
        assert_eq!(
            render("{{ flag }} {{ n }}", json!({"flag": true, "n": 1.5})),
            "True 1.5"
        );
    }

    #[test]
    fn strict_undefined_is_an_error() {
        let mut t = Templates::new();
        t.compile("{{ missing }}").unwrap();
        assert!(t.render("{{ missing }}", &doc(json!({}))).is_err());
    }

    #[test]
    fn literal_eval_reads_python_literals() {
        assert_eq!(literal_eval("3").unwrap(), json!(3));
        assert_eq!(
            literal_eval("['a', \"b\", ('c', 1), None, True]").unwrap(),
            json!(["a", "b", ["c", 1], null, true])
        );
        assert_eq!(
            literal_eval("{'k': [1, 2.5]}").unwrap(),
            json!({"k": [1, 2.5]})
        );
        assert_eq!(literal_eval("'\\x41\\n'").unwrap(), json!("A\n"));
        assert!(literal_eval("[1, 2").is_none());
        assert!(literal_eval("hello").is_none());
    }
}
