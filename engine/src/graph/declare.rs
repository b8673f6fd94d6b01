//! Nodes that declare their own ports and params (user steps, `command`):
//!
//! ```toml
//! [node.plot]
//! type = "command"
//! inputs = { answers = "generate.generations" }          # any name, the source's kind
//! outputs = { plot = { kind = "report", dir = true }, summary = "metrics" }
//! params = { bins = 20 }                                 # any values, the step's own
//! matrix = { bins = [10, 20] }                           # a matrix variable is a param too
//! ```
//!
//! The loader turns these into the node's own [`NodeSpec`] (the type's params, plus the
//! declared ports and params), so everything downstream (kind checks at edges, profiles,
//! `--set`, matrix, keys) treats a user step exactly like a built-in node.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, OnceLock};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{Loader, de_to_value, suggest};
use crate::Value;
use crate::spec::{ArtifactKind, NodeSpec, ParamSpec, ParamType, PortSpec};

/// The one `&'static str` of a declared name. Specs name ports and params with static
/// strings (a type's are literals); a graph's names live for the process too, each
/// distinct name once, so 100,000 steps with an `out` port hold one `"out"`.
pub(crate) fn intern(name: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(n) = names.get(name) {
        return n;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    leaked
}

/// What a declared param is documented as in `dag nodes` and errors.
const DECLARED_PARAM_DOC: &str = "a param of this step, passed to its command";

impl Loader<'_> {
    /// The spec node `node_name` declares in its table `t`: its type's, plus the outputs,
    /// params and matrix variables it names. Declared param values go into `params`.
    pub(super) fn declare(
        &mut self,
        node_name: &str,
        type_spec: &NodeSpec,
        t: &DeTable<'_>,
        params: &mut BTreeMap<String, (Value, std::ops::Range<usize>)>,
    ) -> NodeSpec {
        let mut spec = type_spec.clone();
        if let Some(outputs) = t.get("outputs") {
            self.declare_outputs(node_name, outputs, &mut spec);
        }
        let mut declare_param = |cx: &mut Self, name: &Spanned<std::borrow::Cow<'_, str>>| {
            let n = name.get_ref().as_ref();
            if type_spec.param(n).is_some() {
                cx.err(
                    name.span(),
                    format!(
                        "`{n}` of node `{node_name}` is a param of `{}` itself",
                        type_spec.name
                    ),
                    Some(format!(
                        "give your own param another name; `{}` already means: {}",
                        n,
                        type_spec.param(n).map(|p| p.doc).unwrap_or_default()
                    )),
                );
                return false;
            }
            if !cx.port_name_ok(n, name.span(), "param") {
                return false;
            }
            if spec.param(n).is_none() {
                spec.params.push(ParamSpec::optional(
                    intern(n),
                    ParamType::Any,
                    DECLARED_PARAM_DOC,
                ));
            }
            true
        };
        if let Some(ps) = t.get("params") {
            match ps.get_ref() {
                DeValue::Table(pt) => {
                    for (k, v) in pt.iter() {
                        if !declare_param(self, k) {
                            continue;
                        }
                        match de_to_value(v.get_ref()) {
                            Ok(val) => {
                                params.insert(k.get_ref().to_string(), (val, v.span()));
                            }
                            Err(msg) => self.err(
                                v.span(),
                                format!("param `{}` of node `{node_name}`: {msg}", k.get_ref()),
                                None,
                            ),
                        }
                    }
                }
                _ => self.err(
                    ps.span(),
                    "`params` must be a table of the step's own params",
                    Some("e.g. `params = { bins = 20, title = \"lengths\" }`".into()),
                ),
            }
        }
        // A matrix variable that is not one of the type's params is the step's own.
        if let Some(m) = t.get("matrix")
            && let DeValue::Table(mt) = m.get_ref()
        {
            for (k, _) in mt.iter() {
                if type_spec.param(k.get_ref()).is_none() {
                    declare_param(self, k);
                }
            }
        }
        spec
    }

    fn declare_outputs(&mut self, node_name: &str, v: &Spanned<DeValue<'_>>, spec: &mut NodeSpec) {
        let example =
            "e.g. `outputs = { table = \"dataset\", plot = { kind = \"report\", dir = true } }`";
        let DeValue::Table(t) = v.get_ref() else {
            self.err(
                v.span(),
                format!("`outputs` of node `{node_name}` must be a table of `name = \"kind\"`"),
                Some(example.into()),
            );
            return;
        };
        for (name, decl) in t.iter() {
            let n = name.get_ref().as_ref();
            if !self.port_name_ok(n, name.span(), "output") {
                continue;
            }
            let (kind_value, dir) = match decl.get_ref() {
                DeValue::String(_) => (decl, None),
                DeValue::Table(dt) => {
                    let mut kind = None;
                    let mut dir = None;
                    for (k, kv) in dt.iter() {
                        match (k.get_ref().as_ref(), kv.get_ref()) {
                            ("kind", _) => kind = Some(kv),
                            ("dir", DeValue::Boolean(b)) => dir = Some(*b),
                            ("dir", _) => {
                                self.err(kv.span(), "`dir` must be `true` or `false`", None)
                            }
                            (other, _) => {
                                let hint = suggest(other, "an output takes", &["kind", "dir"]);
                                self.err(
                                    k.span(),
                                    format!("unknown key `{other}` in output `{n}`"),
                                    hint,
                                )
                            }
                        }
                    }
                    let Some(kind) = kind else {
                        self.err(
                            decl.span(),
                            format!("output `{n}` of node `{node_name}` has no `kind`"),
                            Some(example.into()),
                        );
                        continue;
                    };
                    (kind, dir)
                }
                _ => {
                    self.err(
                        decl.span(),
                        format!("output `{n}` of node `{node_name}` must be a kind or a table"),
                        Some(example.into()),
                    );
                    continue;
                }
            };
            let kinds: Vec<&str> = ArtifactKind::ALL.iter().map(|k| k.name()).collect();
            let Some(kind_name) = kind_value.get_ref().as_str() else {
                self.err(
                    kind_value.span(),
                    "an output's `kind` must be a string",
                    None,
                );
                continue;
            };
            let Ok(kind) = kind_name.parse::<ArtifactKind>() else {
                let hint = suggest(kind_name, "kinds are", &kinds);
                self.err(
                    kind_value.span(),
                    format!("output `{n}` of node `{node_name}` has unknown kind `{kind_name}`"),
                    hint,
                );
                continue;
            };
            if kind.element().is_some() && dir == Some(false) {
                self.err(
                    decl.span(),
                    format!(
                        "output `{n}` is a list of {}: a directory of one directory per element",
                        kind.element().map(|k| k.name()).unwrap_or_default()
                    ),
                    Some("drop `dir = false`".into()),
                );
                continue;
            }
            let mut port = PortSpec::new(intern(n), kind, "");
            port.dir = dir.unwrap_or(false);
            spec.outputs.push(port);
        }
    }

    /// Whether `name` may name a declared port or param: it becomes an environment
    /// variable's suffix (`DAG_IN_ANSWERS`), so letters, digits and `_`.
    pub(super) fn port_name_ok(
        &mut self,
        name: &str,
        span: std::ops::Range<usize>,
        what: &str,
    ) -> bool {
        let ok = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            self.err(
                span,
                format!("`{name}` cannot name an {what}"),
                Some("use letters, digits and `_`, starting with a letter".into()),
            );
        }
        ok
    }
}
