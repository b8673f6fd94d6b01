//! Parameter values and their canonical encoding.
//!
//! TOML formatting never reaches a cache key: values are parsed, coerced to the type the
//! node declares (so `lr = 1` and `lr = 1.0` are the same float), and encoded as JSON with
//! sorted keys and shortest round-trip floats.

use std::collections::BTreeMap;
use std::fmt;

/// A parameter value after coercion to its declared type.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `true` / `false`.
    Bool(bool),
    /// A 64-bit integer.
    Int(i64),
    /// A finite or non-finite float.
    Float(f64),
    /// A string.
    Str(String),
    /// A list.
    List(Vec<Value>),
    /// A table with sorted keys.
    Table(BTreeMap<String, Value>),
}

impl Value {
    /// The canonical JSON form used in keys, pre-images and run records.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Bool(b) => (*b).into(),
            Value::Int(i) => (*i).into(),
            Value::Float(f) => match serde_json::Number::from_f64(*f) {
                Some(n) => serde_json::Value::Number(n),
                // JSON has no NaN or infinity; spell them so they still hash distinctly.
                None => serde_json::Value::String(format!("{f}")),
            },
            Value::Str(s) => s.clone().into(),
            Value::List(l) => l.iter().map(Value::to_json).collect(),
            Value::Table(t) => {
                let mut m = serde_json::Map::new();
                for (k, v) in t {
                    m.insert(k.clone(), v.to_json());
                }
                serde_json::Value::Object(m)
            }
        }
    }

    /// Converts JSON (a `--set` value or a stored pre-image) back to a value.
    pub fn from_json(v: &serde_json::Value) -> Option<Value> {
        Some(match v {
            serde_json::Value::Null => return None,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64()?),
            },
            serde_json::Value::String(s) => Value::Str(s.clone()),
            serde_json::Value::Array(a) => {
                Value::List(a.iter().map(Value::from_json).collect::<Option<_>>()?)
            }
            serde_json::Value::Object(o) => Value::Table(
                o.iter()
                    .map(|(k, v)| Some((k.clone(), Value::from_json(v)?)))
                    .collect::<Option<_>>()?,
            ),
        })
    }

    /// The name of this value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::List(_) => "a list",
            Value::Table(_) => "a table",
        }
    }

    /// The string inside, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => write!(f, "{s:?}"),
            other => write!(f, "{}", other.to_json()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_canonical_whatever_their_spelling() {
        let a = Value::Float("1e-4".parse().unwrap()).to_json().to_string();
        let b = Value::Float("0.000_1".replace('_', "").parse().unwrap())
            .to_json()
            .to_string();
        assert_eq!(a, b);
        let t: BTreeMap<String, Value> =
            [("b".into(), Value::Int(1)), ("a".into(), Value::Int(2))].into();
        assert_eq!(Value::Table(t).to_json().to_string(), r#"{"a":2,"b":1}"#);
        assert_eq!(Value::Float(f64::NAN).to_json(), serde_json::json!("NaN"));
    }
}
