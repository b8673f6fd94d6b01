//! Which instance of a declared node: the node, its matrix assignment, and the list element
//! of a dynamic map. Printed as `probe[layer=12,probe=lda]` or `eval[step-30]`; consumers
//! read the parts, never the printed name back.

use std::collections::BTreeMap;
use std::fmt;

use crate::Value;

/// One instance of a declared node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InstanceId {
    /// The declared node's name.
    pub node: String,
    /// Its matrix assignment, by param name, each value as printed.
    pub assignment: Vec<(String, String)>,
    /// The element of the list it maps over (a dynamic map), when it is one.
    pub element: Option<String>,
}

impl InstanceId {
    /// The instance of `node` with this assignment and element.
    pub fn new(node: &str, assignment: &BTreeMap<String, Value>, element: Option<&str>) -> Self {
        InstanceId {
            node: node.to_string(),
            assignment: assignment
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::Str(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), v)
                })
                .collect(),
            element: element.map(str::to_string),
        }
    }

    /// A declared node's only instance (no matrix, no dynamic map).
    pub fn single(node: &str) -> Self {
        InstanceId {
            node: node.to_string(),
            assignment: vec![],
            element: None,
        }
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.node)?;
        let mut parts: Vec<String> = self
            .assignment
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        parts.extend(self.element.clone());
        if !parts.is_empty() {
            write!(f, "[{}]", parts.join(","))?;
        }
        Ok(())
    }
}

/// Where an input artifact came from: the instance that produced it, its output port, and
/// the element of that list output when the input is one element of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The producing instance.
    pub producer: InstanceId,
    /// Its output port.
    pub port: String,
    /// The list element, for a dynamic map's input.
    pub element: Option<String>,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.producer, self.port)?;
        if let Some(e) = &self.element {
            write!(f, "[{e}]")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_and_sources_print_as_run_records_name_them() {
        let mut a = BTreeMap::new();
        a.insert("probe".to_string(), Value::Str("lda".into()));
        a.insert("layer".to_string(), Value::Int(12));
        let id = InstanceId::new("probe", &a, None);
        assert_eq!(id.to_string(), "probe[layer=12,probe=lda]");
        assert_eq!(
            InstanceId::new("eval", &a, Some("step-30")).to_string(),
            "eval[layer=12,probe=lda,step-30]"
        );
        let each = Source {
            producer: InstanceId::single("ft"),
            port: "checkpoints".into(),
            element: Some("step-30".into()),
        };
        assert_eq!(each.to_string(), "ft.checkpoints[step-30]");
    }
}
