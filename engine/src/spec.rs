//! What a node type declares: its ports with artifact kinds, its params, its resources.

use std::fmt;

use crate::Value;

/// The kind of an artifact, checked at every edge before anything runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArtifactKind {
    /// Rows of JSON objects (JSONL).
    Dataset,
    /// A model: a folder or file a runtime can load (base, merged, or base + adapter).
    Model,
    /// An ordered list of model checkpoints (a list artifact whose elements are models).
    Checkpoints,
    /// Model generations: one row per sample.
    Generations,
    /// Stored activations of one layer.
    Activations,
    /// A trained probe.
    Probe,
    /// Per-row scores.
    Scores,
    /// Metric tables.
    Metrics,
    /// A human-readable report (plots, tables).
    Report,
    /// Bytes no node type interprets: a user step's file or directory (a plot, a binary, a
    /// cache). Only user steps (`command`) read it.
    File,
}

impl ArtifactKind {
    /// The name used in graph files and messages.
    pub fn name(self) -> &'static str {
        match self {
            ArtifactKind::Dataset => "dataset",
            ArtifactKind::Model => "model",
            ArtifactKind::Checkpoints => "checkpoints",
            ArtifactKind::Generations => "generations",
            ArtifactKind::Activations => "activations",
            ArtifactKind::Probe => "probe",
            ArtifactKind::Scores => "scores",
            ArtifactKind::Metrics => "metrics",
            ArtifactKind::Report => "report",
            ArtifactKind::File => "file",
        }
    }

    /// Every kind.
    pub const ALL: [ArtifactKind; 10] = [
        ArtifactKind::Dataset,
        ArtifactKind::Model,
        ArtifactKind::Checkpoints,
        ArtifactKind::Generations,
        ArtifactKind::Activations,
        ArtifactKind::Probe,
        ArtifactKind::Scores,
        ArtifactKind::Metrics,
        ArtifactKind::Report,
        ArtifactKind::File,
    ];

    /// Whether its content is rows (JSONL, one object per line), shown as a table.
    pub fn is_rows(self) -> bool {
        matches!(
            self,
            ArtifactKind::Dataset | ArtifactKind::Generations | ArtifactKind::Scores
        )
    }

    /// For a list kind, the kind of its elements (what `node.port[*]` maps over).
    pub fn element(self) -> Option<ArtifactKind> {
        match self {
            ArtifactKind::Checkpoints => Some(ArtifactKind::Model),
            _ => None,
        }
    }

    /// Whether an output of kind `self` may feed an input declared as `input`.
    /// Generations are rows and may be read as a dataset (the distillation step trains
    /// on them); everything else must match exactly.
    pub fn feeds(self, input: ArtifactKind) -> bool {
        self == input || (self == ArtifactKind::Generations && input == ArtifactKind::Dataset)
    }
}

impl std::str::FromStr for ArtifactKind {
    type Err = String;

    /// The kind a store record names (`ArtifactRecord::kind`).
    fn from_str(s: &str) -> Result<Self, String> {
        ArtifactKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("`{s}` is not an artifact kind"))
    }
}

impl fmt::Display for ArtifactKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One input or output port.
#[derive(Debug, Clone)]
pub struct PortSpec {
    /// Port name.
    pub name: &'static str,
    /// Artifact kind.
    pub kind: ArtifactKind,
    /// Inputs: accepts several artifacts (a list of references or a fanned-out node).
    pub many: bool,
    /// Inputs: may be left unconnected.
    pub optional: bool,
    /// Outputs: a directory (tree artifact) rather than one file.
    pub dir: bool,
    /// One line for `dag` help and errors.
    pub doc: &'static str,
}

impl PortSpec {
    /// A required single input, or a single-file output.
    pub const fn new(name: &'static str, kind: ArtifactKind, doc: &'static str) -> Self {
        PortSpec {
            name,
            kind,
            many: false,
            optional: false,
            dir: false,
            doc,
        }
    }
    /// Accepts several artifacts.
    pub const fn many(mut self) -> Self {
        self.many = true;
        self
    }
    /// May be left unconnected.
    pub const fn optional(mut self) -> Self {
        self.optional = true;
        self
    }
    /// Written as a directory.
    pub const fn dir(mut self) -> Self {
        self.dir = true;
        self
    }
}

/// The type of a parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamType {
    /// A string.
    Str,
    /// An integer.
    Int,
    /// A float (integers are accepted and converted).
    Float,
    /// A boolean.
    Bool,
    /// One of a fixed set of strings.
    Enum(&'static [&'static str]),
    /// A local file or directory, relative to the graph file. Its *content* digest
    /// enters the cache key (through the store's stat cache), not its name.
    Path,
    /// A list of values of one type.
    List(Box<ParamType>),
    /// A table of string keys to values of one type.
    Map(Box<ParamType>),
    /// The *name* of an environment variable holding a secret. Only the name enters keys
    /// and records; the value is read by the node at run time.
    SecretEnv,
    /// Any TOML value, taken as written: a user step's own params, which only its script
    /// interprets.
    Any,
}

impl ParamType {
    /// A path, or a list of paths: resolved against the graph's directory at load, and
    /// entering keys by content.
    pub fn is_paths(&self) -> bool {
        match self {
            ParamType::Path => true,
            ParamType::List(inner) => **inner == ParamType::Path,
            _ => false,
        }
    }
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamType::Str => f.write_str("a string"),
            ParamType::Int => f.write_str("an integer"),
            ParamType::Float => f.write_str("a number"),
            ParamType::Bool => f.write_str("a boolean"),
            ParamType::Enum(vs) => write!(
                f,
                "one of {}",
                vs.iter()
                    .map(|v| format!("\"{v}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            ParamType::Path => f.write_str("a path (string)"),
            ParamType::List(t) => write!(f, "a list of {t}"),
            ParamType::Map(t) => write!(f, "a table of {t}"),
            ParamType::SecretEnv => f.write_str("the name of an environment variable"),
            ParamType::Any => f.write_str("any value"),
        }
    }
}

/// One parameter.
#[derive(Debug, Clone)]
pub struct ParamSpec {
    /// Name as written in the graph.
    pub name: &'static str,
    /// Type.
    pub ty: ParamType,
    /// Must the graph give it?
    pub required: bool,
    /// Value used when not given; `None` on an optional param leaves it out of the
    /// node's params (and so out of its key).
    pub default: Option<Value>,
    /// One line for help and errors.
    pub doc: &'static str,
    /// The values a number (or each number of a list) may take, checked at load.
    pub range: Range,
    /// Whether the param enters the cache key. False for settings of how a node runs
    /// (concurrency, retries, timeouts, a call budget) that cannot change its outputs.
    pub keyed: bool,
}

/// Bounds on a numeric param, checked when the graph loads (with the file and line) and
/// shown by `dag nodes`. Unbounded by default; non-finite numbers are refused regardless.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Range {
    /// Lower bound and whether it is excluded.
    pub min: Option<(f64, bool)>,
    /// Upper bound and whether it is excluded.
    pub max: Option<(f64, bool)>,
}

impl Range {
    /// Whether `x` lies within the bounds.
    pub fn contains(&self, x: f64) -> bool {
        let above = match self.min {
            Some((m, true)) => x > m,
            Some((m, false)) => x >= m,
            None => true,
        };
        let below = match self.max {
            Some((m, true)) => x < m,
            Some((m, false)) => x <= m,
            None => true,
        };
        above && below
    }

    /// Unbounded?
    pub fn is_unbounded(&self) -> bool {
        self.min.is_none() && self.max.is_none()
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.min, self.max) {
            (None, None) => f.write_str("any number"),
            (Some((m, ex)), None) => write!(f, "{} {m}", if ex { ">" } else { ">=" }),
            (None, Some((m, ex))) => write!(f, "{} {m}", if ex { "<" } else { "<=" }),
            (Some((a, aex)), Some((b, bex))) => write!(
                f,
                "in {}{a}, {b}{}",
                if aex { "(" } else { "[" },
                if bex { ")" } else { "]" }
            ),
        }
    }
}

impl ParamSpec {
    /// A setting of how the node runs, kept out of the cache key (see [`ParamSpec::keyed`]).
    pub fn run_setting(mut self) -> Self {
        self.keyed = false;
        self
    }

    /// Values must be at least `x`.
    pub fn min(mut self, x: f64) -> Self {
        self.range.min = Some((x, false));
        self
    }
    /// Values must be greater than `x`.
    pub fn above(mut self, x: f64) -> Self {
        self.range.min = Some((x, true));
        self
    }
    /// Values must be at most `x`.
    pub fn max(mut self, x: f64) -> Self {
        self.range.max = Some((x, false));
        self
    }
    /// Values must be less than `x`.
    pub fn below(mut self, x: f64) -> Self {
        self.range.max = Some((x, true));
        self
    }

    /// The specs of a node's params struct, in its field order (see `dag_protocol::params!`):
    /// how a model node's params are declared, once for both sides of the worker boundary.
    pub fn from_params<P: dag_protocol::params::Params>() -> Vec<ParamSpec> {
        P::fields().iter().map(ParamSpec::from_field).collect()
    }

    /// The spec of one field of a params struct.
    pub fn from_field(f: &dag_protocol::params::Field) -> ParamSpec {
        use dag_protocol::params::Default;
        let ty = param_type(f.kind);
        let mut spec = match &f.default {
            Default::Required => ParamSpec::required(f.name, ty, f.doc),
            Default::Optional => ParamSpec::optional(f.name, ty, f.doc),
            Default::Value(v) => {
                let value = match (Value::from_json(v), &ty) {
                    (Some(Value::Int(i)), ParamType::Float) => Value::Float(i as f64),
                    (Some(value), _) => value,
                    (None, _) => panic!("param `{}` has a null default", f.name),
                };
                ParamSpec::with_default(f.name, ty, value, f.doc)
            }
        };
        spec.range = Range {
            min: f.bounds.min,
            max: f.bounds.max,
        };
        spec.keyed = !f.bounds.run_setting;
        spec
    }

    /// A required param.
    pub fn required(name: &'static str, ty: ParamType, doc: &'static str) -> Self {
        ParamSpec {
            name,
            ty,
            required: true,
            default: None,
            doc,
            range: Range {
                min: None,
                max: None,
            },
            keyed: true,
        }
    }
    /// A param with a default.
    pub fn with_default(
        name: &'static str,
        ty: ParamType,
        default: Value,
        doc: &'static str,
    ) -> Self {
        ParamSpec {
            name,
            ty,
            required: false,
            default: Some(default),
            doc,
            range: Range {
                min: None,
                max: None,
            },
            keyed: true,
        }
    }
    /// A param that may be absent (the node decides what absence means).
    pub fn optional(name: &'static str, ty: ParamType, doc: &'static str) -> Self {
        ParamSpec {
            name,
            ty,
            required: false,
            default: None,
            doc,
            range: Range {
                min: None,
                max: None,
            },
            keyed: true,
        }
    }
}

fn param_type(kind: dag_protocol::params::Kind) -> ParamType {
    use dag_protocol::params::Kind;
    match kind {
        Kind::Str => ParamType::Str,
        Kind::Int => ParamType::Int,
        Kind::Float => ParamType::Float,
        Kind::Bool => ParamType::Bool,
        Kind::Path => ParamType::Path,
        Kind::Enum(values) => ParamType::Enum(values),
        Kind::List(k) => ParamType::List(Box::new(param_type(*k))),
        Kind::SecretEnv => ParamType::SecretEnv,
    }
}

/// Resources one instance of a node type holds while running; the scheduler bounds
/// their sum by the run's [`crate::Limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resources {
    /// CPU slots.
    pub cpu: u32,
    /// GPU slots.
    pub gpu: u32,
    /// Concurrent connections to a remote API.
    pub api: u32,
}

impl Resources {
    /// One CPU slot: light nodes.
    pub const CPU: Resources = Resources {
        cpu: 1,
        gpu: 0,
        api: 0,
    };
    /// One GPU slot (and a CPU to drive it).
    pub const GPU: Resources = Resources {
        cpu: 1,
        gpu: 1,
        api: 0,
    };
}

/// Everything the engine needs to know about a node type.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Type name used in graphs (`generate`).
    pub name: &'static str,
    /// Implementation version: bump it when outputs would change for the same inputs,
    /// and every cached result of this type is invalidated.
    pub version: u32,
    /// One paragraph for `dag` help.
    pub doc: &'static str,
    /// Input ports.
    pub inputs: Vec<PortSpec>,
    /// Output ports.
    pub outputs: Vec<PortSpec>,
    /// Params.
    pub params: Vec<ParamSpec>,
    /// Resources held while running.
    pub resources: Resources,
}

impl NodeSpec {
    /// Whether param `name` is a path, or a list of paths, whose content enters the key.
    pub fn is_path_param(&self, name: &str) -> bool {
        self.param(name).is_some_and(|p| p.ty.is_paths())
    }
    /// The input port named `name`.
    pub fn input(&self, name: &str) -> Option<&PortSpec> {
        self.inputs.iter().find(|p| p.name == name)
    }
    /// The output port named `name`.
    pub fn output(&self, name: &str) -> Option<&PortSpec> {
        self.outputs.iter().find(|p| p.name == name)
    }
    /// The param named `name`.
    pub fn param(&self, name: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }
}

#[cfg(test)]
mod kind_tests {
    use super::*;

    #[test]
    fn every_kind_parses_back_from_its_stored_name() {
        for k in ArtifactKind::ALL {
            assert_eq!(k.name().parse::<ArtifactKind>(), Ok(k));
        }
        assert!("rows".parse::<ArtifactKind>().is_err());
    }
}
