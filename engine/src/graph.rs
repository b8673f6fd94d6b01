//! Graph files: TOML in, a validated, typed, acyclic graph out.
//!
//! ```toml
//! [graph]
//! name = "ahb"
//!
//! [node.statements]
//! type = "dataset"
//! path = "../shared/data/speciesismbench/speciesism_benchmark_final.csv"
//!
//! [node.answers]
//! type = "generate"
//! inputs = { dataset = "statements.dataset", model = "base.model" }
//! max_new_tokens = 256
//!
//! [profile.dev]
//! statements.limit = 10
//! ```
//!
//! Every mistake is reported with file, line and column and, where we can guess, the
//! fix. Nothing here runs a node: a graph that loads is a graph whose ports connect,
//! whose kinds agree, whose params have the declared types, and that has no cycle.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dag_diagnostic::{Hint, did_you_mean};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::spec::{ParamSpec, ParamType};
use crate::{ArtifactKind, Node, NodeSpec, PortSpec, Registry, Value};

mod declare;

/// Where a problem is, and what to do about it.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    /// What is wrong.
    pub message: String,
    /// `file:line:col`, or `--set` for command-line overrides.
    pub location: String,
    /// The source line, when there is one.
    pub source_line: Option<(usize, String, usize, usize)>,
    /// The fix, when we can suggest one.
    pub hint: Option<String>,
}

/// A graph that failed to load: every problem found, in file order.
#[derive(Debug, Clone)]
pub struct GraphError {
    /// The problems.
    pub diagnostics: Vec<Diagnostic>,
}

impl std::error::Error for GraphError {}

impl Hint for Diagnostic {
    fn hint(&self) -> Option<String> {
        self.hint.clone()
    }
}

/// A graph error has no hint of its own: each diagnostic's hint is part of its rustc-style
/// report, under the caret it is about, and a graph may have several.
impl Hint for GraphError {
    fn hint(&self) -> Option<String> {
        None
    }
}

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "{}", d.message)?;
            writeln!(f, "  --> {}", d.location)?;
            if let Some((line, text, col, width)) = &d.source_line {
                let gutter = line.to_string().len();
                writeln!(f, "{:gutter$} |", "")?;
                writeln!(f, "{line} | {text}")?;
                writeln!(
                    f,
                    "{:gutter$} | {}{}",
                    "",
                    " ".repeat(col - 1),
                    "^".repeat((*width).max(1))
                )?;
            }
            if let Some(h) = d.hint() {
                writeln!(f, "hint: {h}")?;
            }
        }
        Ok(())
    }
}

/// How to load a graph.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `[profile.NAME]` overrides to apply.
    pub profile: Option<String>,
    /// `--set node.param=value` overrides, applied last.
    pub set: Vec<String>,
}

/// One input port's connections.
#[derive(Debug, Clone)]
pub struct InputDecl {
    /// The port.
    pub port: &'static str,
    /// Where its artifacts come from.
    pub sources: Vec<SourceRef>,
}

/// A reference to another node's output.
#[derive(Debug, Clone)]
pub struct SourceRef {
    /// Index of the producing node in [`Graph::nodes`].
    pub node: usize,
    /// Its output port.
    pub port: &'static str,
    /// `node.port[*]`: map over the elements of a list artifact, one instance each.
    pub each: bool,
}

/// A node as declared: type, params after profiles and overrides, inputs, matrix.
#[derive(Clone)]
pub struct NodeDecl {
    /// Node name.
    pub name: String,
    /// Its type's implementation.
    pub node: Arc<dyn Node>,
    /// Params, coerced, with defaults filled in.
    pub params: BTreeMap<String, Value>,
    /// Static fan-out: one instance per combination of these params' values.
    pub matrix: Vec<(String, Vec<Value>)>,
    /// Inputs by port.
    pub inputs: Vec<InputDecl>,
    /// Line of its `[node.NAME]` header.
    pub line: usize,
    /// The spec the node declares itself, for a type that [`Node::declares_ports`].
    pub declared: Option<Arc<NodeSpec>>,
}

impl NodeDecl {
    /// The spec this node runs under: the one it declares (a user step's ports and
    /// params), or its type's.
    pub fn spec(&self) -> &NodeSpec {
        self.declared.as_deref().unwrap_or_else(|| self.node.spec())
    }
}

impl fmt::Debug for NodeDecl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeDecl")
            .field("name", &self.name)
            .field("type", &self.node.spec().name)
            .finish()
    }
}

/// A validated graph.
#[derive(Debug, Clone)]
pub struct Graph {
    /// Absolute path of the graph file.
    pub path: PathBuf,
    /// `[graph] name`, or the file stem.
    pub name: String,
    /// The selected profile.
    pub profile: Option<String>,
    /// Nodes in file order.
    pub nodes: Vec<NodeDecl>,
    /// Node indices in a topological order.
    pub order: Vec<usize>,
}

impl Graph {
    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// The directory relative paths in the graph are resolved against.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// Loads and validates the graph file at `path`.
    pub fn load(path: &Path, registry: &Registry, opts: &LoadOptions) -> Result<Graph, GraphError> {
        let bytes = std::fs::read(path).map_err(|e| GraphError {
            diagnostics: vec![Diagnostic {
                message: format!(
                    "error: Failed to read the graph file `{}`: {e}",
                    path.display()
                ),
                location: path.display().to_string(),
                source_line: None,
                hint: Some("check the path; graph files usually live in `graphs/`".into()),
            }],
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            let before = &e.as_bytes()[..at];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let col = at - before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) + 1;
            GraphError {
                diagnostics: vec![Diagnostic {
                    message: format!(
                        "error: the graph file is not UTF-8: byte {at} (0x{:02x}) is not valid UTF-8",
                        e.as_bytes()[at]
                    ),
                    location: format!("{}:{line}:{col}", path.display()),
                    source_line: None,
                    hint: Some("save the file as UTF-8 (TOML files must be UTF-8)".into()),
                }],
            }
        })?;
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        Self::parse(&text, &abs, registry, opts)
    }

    /// Validates graph text as if it were the file `path`.
    pub fn parse(
        text: &str,
        path: &Path,
        registry: &Registry,
        opts: &LoadOptions,
    ) -> Result<Graph, GraphError> {
        let mut cx = Loader {
            src: Source::new(text, path),
            registry,
            diags: vec![],
        };
        let graph = cx.load(opts);
        match graph {
            Some(g) if cx.diags.is_empty() => Ok(g),
            _ => {
                if cx.diags.is_empty() {
                    cx.diags
                        .push(cx.src.diag(0..0, "error: Failed to load the graph", None));
                }
                Err(GraphError {
                    diagnostics: cx.diags,
                })
            }
        }
    }
}

struct Source<'a> {
    text: &'a str,
    path: &'a Path,
    line_starts: Vec<usize>,
}

impl<'a> Source<'a> {
    fn new(text: &'a str, path: &'a Path) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Source {
            text,
            path,
            line_starts,
        }
    }

    fn line_col(&self, offset: usize) -> (usize, usize) {
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        (line, offset - self.line_starts[line - 1] + 1)
    }

    fn diag(
        &self,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> Diagnostic {
        let (line, col) = self.line_col(span.start);
        let text = self.text.lines().nth(line - 1).unwrap_or("").to_string();
        let width = span.len().min(text.len().saturating_sub(col - 1)).max(1);
        Diagnostic {
            message: message.into(),
            location: format!("{}:{line}:{col}", self.path.display()),
            source_line: Some((line, text, col, width)),
            hint,
        }
    }
}

fn list_hint(what: &str, names: &[&str]) -> String {
    format!(
        "{what}: {}",
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn suggest(word: &str, what: &str, names: &[&str]) -> Option<String> {
    match did_you_mean(word, names.iter().copied()) {
        Some(c) => Some(format!("did you mean `{c}`?")),
        None if names.is_empty() => None,
        None => Some(list_hint(what, names)),
    }
}

struct Loader<'a> {
    src: Source<'a>,
    registry: &'a Registry,
    diags: Vec<Diagnostic>,
}

/// A raw node before inputs are resolved.
struct RawNode<'t> {
    name: String,
    name_span: std::ops::Range<usize>,
    node: Arc<dyn Node>,
    params: BTreeMap<String, (Value, std::ops::Range<usize>)>,
    matrix: Vec<(String, Vec<Value>)>,
    inputs: Option<&'t Spanned<DeValue<'t>>>,
    /// The node's own spec, for a type that declares ports (its inputs are added when
    /// they are resolved).
    declared: Option<NodeSpec>,
}

impl RawNode<'_> {
    fn spec(&self) -> &NodeSpec {
        self.declared.as_ref().unwrap_or_else(|| self.node.spec())
    }
}

impl<'a> Loader<'a> {
    fn err(
        &mut self,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        let d = self
            .src
            .diag(span, format!("error: {}", message.into()), hint);
        self.diags.push(d);
    }

    fn load(&mut self, opts: &LoadOptions) -> Option<Graph> {
        let text = self.src.text;
        let root = match DeTable::parse(text) {
            Ok(t) => t,
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                let msg = e.message().trim().to_string();
                // A repeated table (`[node.x]` twice) and a repeated key inside one table
                // (`seed` set twice) are both "duplicate key": the line says which.
                let at = span.start.min(text.len());
                let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
                let line = text[line_start..]
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim_start();
                let hint = if msg.contains("duplicate") && line.starts_with('[') {
                    Some("each `[node.NAME]` must appear once; rename one of the nodes".to_string())
                } else if msg.contains("duplicate") {
                    Some("a key may be set once per table; keep one of the two lines".to_string())
                } else {
                    Some("this is TOML syntax; see docs/graph-format.md".to_string())
                };
                self.err(span, format!("invalid TOML: {msg}"), hint);
                return None;
            }
        };
        let root = root.get_ref();
        let mut graph_name = self
            .src
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut node_table = None;
        let mut profiles = None;
        for (k, v) in root.iter() {
            match k.get_ref().as_ref() {
                "graph" => {
                    if let DeValue::Table(t) = v.get_ref() {
                        for (gk, gv) in t.iter() {
                            match (gk.get_ref().as_ref(), gv.get_ref()) {
                                ("name", DeValue::String(s)) => graph_name = s.to_string(),
                                ("description", DeValue::String(_)) => {}
                                (other, _) => {
                                    let hint =
                                        suggest(other, "`[graph]` takes", &["name", "description"]);
                                    self.err(
                                        gk.span(),
                                        format!("unknown key `{other}` in `[graph]`"),
                                        hint,
                                    )
                                }
                            }
                        }
                    }
                }
                "node" => node_table = Some(v),
                "profile" => profiles = Some(v),
                other => {
                    let hint =
                        suggest(other, "top-level tables are", &["graph", "node", "profile"]);
                    self.err(k.span(), format!("unknown top-level key `{other}`"), hint)
                }
            }
        }
        let Some(node_table) = node_table else {
            self.err(
                0..0,
                "the graph has no nodes",
                Some("add a `[node.NAME]` table with a `type`".into()),
            );
            return None;
        };
        let DeValue::Table(node_table) = node_table.get_ref() else {
            self.err(node_table.span(), "`node` must be a table of nodes", None);
            return None;
        };
        let mut raws: Vec<RawNode<'_>> = Vec::new();
        for (name, body) in node_table.iter() {
            if let Some(raw) = self.raw_node(name, body) {
                raws.push(raw);
            }
        }
        // Keep file order: the table may be sorted by key.
        raws.sort_by_key(|r| r.name_span.start);
        if let Some(p) = &opts.profile {
            self.apply_profile(p, profiles, &mut raws);
        }
        for s in &opts.set {
            self.apply_set(s, &mut raws);
        }
        let index: HashMap<String, usize> = raws
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.clone(), i))
            .collect();
        let mut nodes = Vec::with_capacity(raws.len());
        for raw in &raws {
            let (inputs, declared_inputs) = self.inputs(raw, &raws, &index);
            let declared = raw.declared.clone().map(|mut d| {
                d.inputs = declared_inputs;
                Arc::new(d)
            });
            let spec = declared.as_deref().unwrap_or_else(|| raw.node.spec());
            for p in &spec.params {
                if p.required
                    && !raw.params.contains_key(p.name)
                    && !raw.matrix.iter().any(|(m, _)| m == p.name)
                {
                    self.err(
                        raw.name_span.clone(),
                        format!(
                            "node `{}` (type `{}`) is missing the required param `{}`",
                            raw.name, spec.name, p.name
                        ),
                        Some(format!("add `{} = ...` ({}): {}", p.name, p.ty, p.doc)),
                    );
                }
            }
            let mut params: BTreeMap<String, Value> = raw
                .params
                .iter()
                .map(|(k, (v, _))| (k.clone(), v.clone()))
                .collect();
            for p in &spec.params {
                if let (false, Some(d)) = (params.contains_key(p.name), &p.default) {
                    params.insert(p.name.to_string(), d.clone());
                }
            }
            for (k, (v, span)) in &raw.params {
                if !spec.is_path_param(k) {
                    continue;
                }
                let mut resolve = |rel: &str| {
                    let abs = self.src.path.parent().unwrap_or(Path::new(".")).join(rel);
                    if !abs.exists() {
                        self.err(
                            span.clone(),
                            format!(
                                "`{k}` of node `{}` names `{}`, which does not exist",
                                raw.name,
                                abs.display()
                            ),
                            Some("paths are relative to the graph file's directory".into()),
                        );
                    }
                    Value::Str(abs.display().to_string())
                };
                let resolved = match v {
                    Value::Str(rel) => resolve(rel),
                    Value::List(items) => Value::List(
                        items
                            .iter()
                            .map(|i| i.as_str().map_or_else(|| i.clone(), &mut resolve))
                            .collect(),
                    ),
                    other => other.clone(),
                };
                params.insert(k.clone(), resolved);
            }
            let checked = match &declared {
                Some(d) => raw
                    .node
                    .check_params(&params)
                    .and_then(|()| raw.node.check_declared(d, &params)),
                None => raw.node.check_params(&params),
            };
            if let Err(e) = checked {
                let span = raw
                    .params
                    .get(&e.param)
                    .map(|(_, s)| s.clone())
                    .unwrap_or_else(|| raw.name_span.clone());
                self.err(
                    span,
                    format!("param `{}` of node `{}`: {}", e.param, raw.name, e.message),
                    e.hint,
                );
            }
            nodes.push(NodeDecl {
                name: raw.name.clone(),
                node: raw.node.clone(),
                params,
                matrix: raw.matrix.clone(),
                inputs,
                line: self.src.line_col(raw.name_span.start).0,
                declared,
            });
        }
        let order = self.toposort(&nodes, &raws);
        if !self.diags.is_empty() {
            return None;
        }
        Some(Graph {
            path: self.src.path.to_path_buf(),
            name: graph_name,
            profile: opts.profile.clone(),
            nodes,
            order,
        })
    }

    fn raw_node<'t>(
        &mut self,
        name: &'t Spanned<std::borrow::Cow<'t, str>>,
        body: &'t Spanned<DeValue<'t>>,
    ) -> Option<RawNode<'t>> {
        let node_name = name.get_ref().to_string();
        if node_name.is_empty()
            || !node_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            self.err(
                name.span(),
                format!("invalid node name `{node_name}`"),
                Some("use letters, digits, `_` and `-` only".into()),
            );
            return None;
        }
        let DeValue::Table(t) = body.get_ref() else {
            self.err(
                body.span(),
                format!("`node.{node_name}` must be a table"),
                Some(format!(
                    "write `[node.{node_name}]` followed by `type = \"...\"`"
                )),
            );
            return None;
        };
        let Some(ty) = t.get("type") else {
            self.err(
                name.span(),
                format!("node `{node_name}` has no `type`"),
                Some(list_hint(
                    "add `type = \"...\"`, one of",
                    &self.registry.names(),
                )),
            );
            return None;
        };
        let Some(ty_name) = ty.get_ref().as_str() else {
            self.err(ty.span(), "`type` must be a string", None);
            return None;
        };
        let Some(node) = self.registry.get(ty_name).cloned() else {
            let names = self.registry.names();
            let hint = suggest(ty_name, "known node types are", &names);
            self.err(ty.span(), format!("unknown node type `{ty_name}`"), hint);
            return None;
        };
        let mut raw = RawNode {
            name: node_name.clone(),
            name_span: name.span(),
            node: node.clone(),
            params: BTreeMap::new(),
            matrix: vec![],
            inputs: None,
            declared: None,
        };
        let declared = node
            .declares_ports()
            .then(|| self.declare(&node_name, node.spec(), t, &mut raw.params));
        let spec = declared.as_ref().unwrap_or_else(|| node.spec());
        let param_names: Vec<&str> = spec.params.iter().map(|p| p.name).collect();
        for (k, v) in t.iter() {
            let key = k.get_ref().as_ref();
            match key {
                "type" => {}
                "outputs" | "params" if declared.is_some() => {}
                "inputs" => raw.inputs = Some(v),
                "matrix" => {
                    let DeValue::Table(m) = v.get_ref() else {
                        self.err(
                            v.span(),
                            "`matrix` must be a table of lists",
                            Some("e.g. `matrix = { layer = [8, 12] }`".into()),
                        );
                        continue;
                    };
                    for (mk, mv) in m.iter() {
                        let mname = mk.get_ref().to_string();
                        let Some(ps) = spec.param(&mname) else {
                            let hint = suggest(
                                &mname,
                                "matrix variables must be params; this type takes",
                                &param_names,
                            );
                            self.err(
                                mk.span(),
                                format!(
                                    "matrix variable `{mname}` is not a param of `{}`",
                                    spec.name
                                ),
                                hint,
                            );
                            continue;
                        };
                        let DeValue::Array(items) = mv.get_ref() else {
                            self.err(
                                mv.span(),
                                format!("matrix variable `{mname}` must be a list of values"),
                                None,
                            );
                            continue;
                        };
                        let mut vals = vec![];
                        for it in items.iter() {
                            if let Some(v) =
                                self.coerce(it, ps, &format!("matrix value of `{mname}`"))
                            {
                                vals.push(v);
                            }
                        }
                        if vals.is_empty() {
                            self.err(
                                mv.span(),
                                format!("matrix variable `{mname}` has no values"),
                                None,
                            );
                        }
                        raw.matrix.push((mname, vals));
                    }
                }
                _ => {
                    let Some(ps) = spec.param(key) else {
                        let hint = suggest(key, &format!("`{}` takes", spec.name), &param_names)
                            .or_else(|| Some(format!("`{}` takes no params", spec.name)));
                        self.err(
                            k.span(),
                            format!(
                                "unknown param `{key}` for node `{node_name}` (type `{}`)",
                                spec.name
                            ),
                            hint,
                        );
                        continue;
                    };
                    if let Some(val) =
                        self.coerce(v, ps, &format!("param `{key}` of node `{node_name}`"))
                    {
                        raw.params.insert(key.to_string(), (val, v.span()));
                    }
                }
            }
        }
        raw.declared = declared;
        for (m, _) in &raw.matrix {
            if let Some((_, span)) = raw.params.get(m) {
                let span = span.clone();
                self.err(
                    span,
                    format!("`{m}` is both a param and a matrix variable of node `{node_name}`"),
                    Some("remove one of them".into()),
                );
            }
        }
        Some(raw)
    }

    /// Converts a TOML value to the declared type, reporting a mismatch at its span.
    fn coerce(&mut self, v: &Spanned<DeValue<'_>>, ps: &ParamSpec, what: &str) -> Option<Value> {
        let ty = &ps.ty;
        match de_to_value(v.get_ref()) {
            Ok(val) => match coerce_value(val, ty) {
                Ok(val) => match out_of_range(&val, ps) {
                    None => Some(val),
                    Some(x) => {
                        self.err(
                            v.span(),
                            format!("{what} must be {}, found {x}", ps.range),
                            Some(format!("`{}`: {}", ps.name, ps.doc)),
                        );
                        None
                    }
                },
                Err(found) => {
                    self.err(
                        v.span(),
                        format!("{what} must be {ty}, found {found}"),
                        type_hint(ty),
                    );
                    None
                }
            },
            Err(msg) => {
                self.err(v.span(), format!("{what}: {msg}"), None);
                None
            }
        }
    }

    fn apply_profile<'t>(
        &mut self,
        profile: &str,
        profiles: Option<&'t Spanned<DeValue<'t>>>,
        raws: &mut [RawNode<'t>],
    ) {
        let table = profiles.and_then(|p| match p.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => None,
        });
        let available: Vec<&str> = table
            .map(|t| t.iter().map(|(k, _)| k.get_ref().as_ref()).collect())
            .unwrap_or_default();
        let Some(body) = table.and_then(|t| t.get(profile)) else {
            let hint = if available.is_empty() {
                Some("this graph defines no `[profile.NAME]` tables".to_string())
            } else {
                suggest(profile, "profiles in this graph", &available)
            };
            self.diags.push(Diagnostic {
                message: format!("error: unknown profile `{profile}`"),
                location: self.src.path.display().to_string(),
                source_line: None,
                hint,
            });
            return;
        };
        let DeValue::Table(nodes) = body.get_ref() else {
            self.err(
                body.span(),
                format!("`profile.{profile}` must be a table of `node.param = value`"),
                None,
            );
            return;
        };
        let names: Vec<String> = raws.iter().map(|r| r.name.clone()).collect();
        for (node, over) in nodes.iter() {
            let nname = node.get_ref().as_ref();
            let Some(i) = names.iter().position(|n| n == nname) else {
                let hint = suggest(
                    nname,
                    "nodes are",
                    &names.iter().map(String::as_str).collect::<Vec<_>>(),
                );
                self.err(
                    node.span(),
                    format!("profile `{profile}` overrides unknown node `{nname}`"),
                    hint,
                );
                continue;
            };
            let DeValue::Table(over) = over.get_ref() else {
                self.err(
                    over.span(),
                    format!("`profile.{profile}.{nname}` must be a table of params"),
                    None,
                );
                continue;
            };
            for (k, v) in over.iter() {
                let key = k.get_ref().to_string();
                let spec = raws[i].spec().clone();
                let Some(ps) = spec.param(&key) else {
                    let names: Vec<&str> = spec.params.iter().map(|p| p.name).collect();
                    let hint = suggest(&key, &format!("`{}` takes", spec.name), &names);
                    self.err(k.span(), format!("profile `{profile}` sets unknown param `{key}` of node `{nname}` (type `{}`)", spec.name), hint);
                    continue;
                };
                if let Some(val) = self.coerce(
                    v,
                    ps,
                    &format!("profile `{profile}` value of `{nname}.{key}`"),
                ) {
                    raws[i].params.insert(key, (val, v.span()));
                }
            }
        }
    }

    fn apply_set(&mut self, set: &str, raws: &mut [RawNode<'_>]) {
        let mut fail = |message: String, hint: Option<String>| {
            self.diags.push(Diagnostic {
                message: format!("error: {message}"),
                location: format!("--set {set}"),
                source_line: None,
                hint,
            })
        };
        let Some((lhs, rhs)) = set.split_once('=') else {
            fail(
                format!("`--set {set}` is not of the form `node.param=value`"),
                Some("e.g. `--set train.lr=2e-4`".into()),
            );
            return;
        };
        let Some((nname, key)) = lhs.trim().split_once('.') else {
            fail(
                format!("`{lhs}` does not name `node.param`"),
                Some("e.g. `--set train.lr=2e-4`".into()),
            );
            return;
        };
        let Some(raw) = raws.iter_mut().find(|r| r.name == nname) else {
            fail(format!("`--set` names unknown node `{nname}`"), None);
            return;
        };
        let spec = raw.spec().clone();
        let Some(ps) = spec.param(key) else {
            let names: Vec<&str> = spec.params.iter().map(|p| p.name).collect();
            fail(
                format!(
                    "`--set` names unknown param `{key}` of node `{nname}` (type `{}`)",
                    spec.name
                ),
                suggest(key, "it takes", &names),
            );
            return;
        };
        // The value is TOML; a bare word that is not TOML is taken as a string. Text that
        // starts like a TOML array, table or string but does not parse is a mistake, not
        // a string: `--set a.b='[1,2'` must not quietly become "[1,2".
        let text = rhs.trim();
        let val = match DeValue::parse(text) {
            Ok(v) => match de_to_value(v.get_ref()) {
                Ok(v) => v,
                Err(msg) => {
                    fail(format!("`--set {lhs}`: {msg}"), None);
                    return;
                }
            },
            Err(e) if text.starts_with(['[', '{', '"', '\'']) => {
                fail(
                    format!(
                        "`--set {lhs}={text}` is not valid TOML: {}",
                        e.to_string().trim()
                    ),
                    Some("write the value in TOML syntax, e.g. `--set node.layers=[6, 12]` or `--set node.name='\"text\"'`".into()),
                );
                return;
            }
            Err(_) => Value::Str(text.to_string()),
        };
        let val = match (val, &ps.ty) {
            (Value::Int(i), ParamType::Str | ParamType::Path | ParamType::Enum(_)) => {
                Value::Str(i.to_string())
            }
            (v, _) => v,
        };
        match coerce_value(val, &ps.ty) {
            Ok(v) if let Some(x) = out_of_range(&v, ps) => fail(
                format!("`--set {lhs}` must be {}, found {x}", ps.range),
                Some(format!("`{}`: {}", ps.name, ps.doc)),
            ),
            Ok(v) => {
                raw.params
                    .insert(key.to_string(), (v, raw.name_span.clone()));
            }
            Err(found) => fail(
                format!("`--set {lhs}` must be {}, found {found}", ps.ty),
                type_hint(&ps.ty),
            ),
        }
    }

    /// The node's input declarations and, for a node that declares its ports, the input
    /// ports they declare (each of the kind its sources produce).
    fn inputs(
        &mut self,
        raw: &RawNode<'_>,
        raws: &[RawNode<'_>],
        index: &HashMap<String, usize>,
    ) -> (Vec<InputDecl>, Vec<PortSpec>) {
        let spec = raw.spec();
        let declaring = raw.declared.is_some();
        let mut out: Vec<InputDecl> = vec![];
        let mut declared: Vec<PortSpec> = vec![];
        let port_names: Vec<&str> = spec.inputs.iter().map(|p| p.name).collect();
        if let Some(v) = raw.inputs {
            let DeValue::Table(t) = v.get_ref() else {
                self.err(
                    v.span(),
                    "`inputs` must be a table of `port = \"node.port\"`",
                    None,
                );
                return (out, declared);
            };
            for (port, refs) in t.iter() {
                let pname = port.get_ref().as_ref();
                let items: Vec<&Spanned<DeValue<'_>>> = match refs.get_ref() {
                    DeValue::Array(a) => a.iter().collect(),
                    _ => vec![refs],
                };
                let ps = if declaring {
                    if !self.port_name_ok(pname, port.span(), "input") {
                        continue;
                    }
                    // The kind is the sources'; a list makes a port of many.
                    let mut p = PortSpec::new(declare::intern(pname), ArtifactKind::File, "");
                    p.many = matches!(refs.get_ref(), DeValue::Array(_));
                    p
                } else {
                    let Some(ps) = spec.input(pname) else {
                        let hint =
                            suggest(pname, &format!("`{}` has inputs", spec.name), &port_names)
                                .or_else(|| Some(format!("`{}` takes no inputs", spec.name)));
                        self.err(
                            port.span(),
                            format!(
                                "unknown input port `{pname}` for node `{}` (type `{}`)",
                                raw.name, spec.name
                            ),
                            hint,
                        );
                        continue;
                    };
                    ps.clone()
                };
                if items.len() > 1 && !ps.many {
                    self.err(
                        refs.span(),
                        format!(
                            "input `{pname}` of node `{}` takes one artifact, got {}",
                            raw.name,
                            items.len()
                        ),
                        Some("connect a single `node.port`".into()),
                    );
                    continue;
                }
                let mut sources = vec![];
                let mut kind: Option<ArtifactKind> = None;
                for item in items {
                    let Some(s) = item.get_ref().as_str() else {
                        self.err(item.span(), "an input must be a string `node.port`", None);
                        continue;
                    };
                    let expect = (!declaring).then_some(ps.kind);
                    let Some((src, produced)) =
                        self.source_ref(s, item.span(), raw, &ps, expect, raws, index)
                    else {
                        continue;
                    };
                    match kind {
                        Some(k) if k != produced => self.err(
                            item.span(),
                            format!(
                                "input `{pname}` of node `{}` mixes kinds: {k} and {produced}",
                                raw.name
                            ),
                            Some(
                                "connect outputs of one kind to a port, or split it in two ports"
                                    .into(),
                            ),
                        ),
                        _ => kind = Some(produced),
                    }
                    sources.push(src);
                }
                if declaring && let Some(k) = kind {
                    declared.push(PortSpec {
                        kind: k,
                        ..ps.clone()
                    });
                }
                out.push(InputDecl {
                    port: ps.name,
                    sources,
                });
            }
        }
        for p in &spec.inputs {
            if !p.optional && !out.iter().any(|i| i.port == p.name) {
                self.err(
                    raw.name_span.clone(),
                    format!(
                        "node `{}` (type `{}`) does not connect its required input `{}` ({})",
                        raw.name, spec.name, p.name, p.kind
                    ),
                    Some(format!("add `inputs = {{ {} = \"NODE.PORT\" }}`", p.name)),
                );
            }
        }
        (out, declared)
    }

    /// Resolves `node.port` (or `node.port[*]`), checking that it produces `expect` when
    /// the port has a kind of its own; returns the reference and the kind it brings.
    #[allow(clippy::too_many_arguments)]
    fn source_ref(
        &mut self,
        s: &str,
        span: std::ops::Range<usize>,
        raw: &RawNode<'_>,
        port: &PortSpec,
        expect: Option<ArtifactKind>,
        raws: &[RawNode<'_>],
        index: &HashMap<String, usize>,
    ) -> Option<(SourceRef, ArtifactKind)> {
        let (body, each) = match s.strip_suffix("[*]") {
            Some(b) => (b, true),
            None => (s, false),
        };
        let (nname, oport) = match body.split_once('.') {
            Some((n, p)) => (n, Some(p)),
            None => (body, None),
        };
        let Some(&src) = index.get(nname) else {
            let names: Vec<&str> = raws.iter().map(|r| r.name.as_str()).collect();
            let hint = suggest(nname, "nodes are", &names);
            self.err(
                span,
                format!(
                    "input `{}` of node `{}` refers to unknown node `{nname}`",
                    port.name, raw.name
                ),
                hint,
            );
            return None;
        };
        let sspec = raws[src].spec();
        let outs: Vec<&str> = sspec.outputs.iter().map(|p| p.name).collect();
        let out = match oport {
            Some(p) => sspec.output(p),
            None if sspec.outputs.len() == 1 => sspec.outputs.first(),
            None => {
                self.err(
                    span,
                    format!("node `{nname}` has several outputs; say which"),
                    Some(list_hint(&format!("write `{nname}.PORT`, one of"), &outs)),
                );
                return None;
            }
        };
        let Some(out) = out else {
            let p = oport.unwrap_or_default();
            let hint = suggest(
                p,
                &format!("`{nname}` (type `{}`) has outputs", sspec.name),
                &outs,
            );
            self.err(span, format!("node `{nname}` has no output `{p}`"), hint);
            return None;
        };
        let produced = if each {
            match out.kind.element() {
                Some(k) => k,
                None => {
                    self.err(
                        span,
                        format!(
                            "`{s}` maps over `{nname}.{}`, which is a single {} and not a list",
                            out.name, out.kind
                        ),
                        Some(format!("drop the `[*]`: `{nname}.{}`", out.name)),
                    );
                    return None;
                }
            }
        } else {
            out.kind
        };
        if let Some(want) = expect
            && !produced.feeds(want)
        {
            let hint = match (out.kind.element(), each) {
                (Some(e), false) if e.feeds(want) => Some(format!(
                    "map over its elements with `{nname}.{}[*]`",
                    out.name
                )),
                _ => Some(format!("connect an output of kind {want}")),
            };
            self.err(
                span,
                format!(
                    "input `{}` of node `{}` takes {}, but `{nname}.{}` produces {}",
                    port.name, raw.name, want, out.name, produced
                ),
                hint,
            );
            return None;
        }
        Some((
            SourceRef {
                node: src,
                port: out.name,
                each,
            },
            produced,
        ))
    }

    fn toposort(&mut self, nodes: &[NodeDecl], raws: &[RawNode<'_>]) -> Vec<usize> {
        use petgraph::graph::{DiGraph, NodeIndex};
        let mut g: DiGraph<usize, ()> = DiGraph::with_capacity(nodes.len(), nodes.len());
        let ix: Vec<NodeIndex> = (0..nodes.len()).map(|i| g.add_node(i)).collect();
        for (i, n) in nodes.iter().enumerate() {
            for inp in &n.inputs {
                for s in &inp.sources {
                    g.add_edge(ix[s.node], ix[i], ());
                }
            }
        }
        match petgraph::algo::toposort(&g, None) {
            Ok(order) => order.into_iter().map(|n| g[n]).collect(),
            Err(cycle) => {
                // Start the printed cycle at its first node in file order.
                let sccs = petgraph::algo::tarjan_scc(&g);
                let scc = sccs
                    .into_iter()
                    .find(|c| c.contains(&cycle.node_id()))
                    .unwrap_or_default();
                let start = scc
                    .iter()
                    .map(|&n| g[n])
                    .min()
                    .unwrap_or(g[cycle.node_id()]);
                let mut path = vec![start];
                let mut cur = ix[start];
                loop {
                    let next = g.neighbors(cur).find(|n| scc.contains(n));
                    match next {
                        Some(n) if g[n] == start => break,
                        Some(n) if !path.contains(&g[n]) => {
                            path.push(g[n]);
                            cur = n;
                        }
                        _ => break,
                    }
                }
                let text = path
                    .iter()
                    .chain(std::iter::once(&start))
                    .map(|&i| nodes[i].name.as_str())
                    .collect::<Vec<_>>()
                    .join(" -> ");
                self.err(
                    raws[start].name_span.clone(),
                    format!("the graph has a cycle: {text}"),
                    Some(
                        "a node cannot depend on its own output; remove one of these inputs".into(),
                    ),
                );
                vec![]
            }
        }
    }
}

fn type_hint(ty: &ParamType) -> Option<String> {
    match ty {
        ParamType::Float => Some("write a number such as `2e-4`".into()),
        ParamType::Int => Some("write a whole number such as `8`".into()),
        ParamType::Str | ParamType::Path => Some("quote it: `\"...\"`".into()),
        ParamType::Bool => Some("write `true` or `false`".into()),
        ParamType::SecretEnv => Some("write the NAME of an environment variable (e.g. `\"OPENAI_API_KEY\"`), never the secret itself".into()),
        _ => None,
    }
}

fn de_to_value(v: &DeValue<'_>) -> Result<Value, String> {
    Ok(match v {
        DeValue::String(s) => Value::Str(s.to_string()),
        DeValue::Integer(i) => {
            let digits = i.as_str().replace('_', "");
            let digits = digits
                .trim_start_matches("0x")
                .trim_start_matches("0o")
                .trim_start_matches("0b");
            Value::Int(
                i64::from_str_radix(digits, i.radix())
                    .map_err(|e| format!("integer out of range ({e})"))?,
            )
        }
        DeValue::Float(f) => Value::Float(
            f.as_str()
                .replace('_', "")
                .parse()
                .map_err(|e| format!("bad float ({e})"))?,
        ),
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(d) => Value::Str(d.to_string()),
        DeValue::Array(a) => Value::List(
            a.iter()
                .map(|v| de_to_value(v.get_ref()))
                .collect::<Result<_, _>>()?,
        ),
        DeValue::Table(t) => Value::Table(
            t.iter()
                .map(|(k, v)| Ok((k.get_ref().to_string(), de_to_value(v.get_ref())?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

/// Coerces a value to a declared type; on mismatch returns what was found.
/// The first number in `v` outside the param's declared range, if any.
fn out_of_range(v: &Value, ps: &ParamSpec) -> Option<String> {
    match v {
        Value::Int(i) if !ps.range.contains(*i as f64) => Some(i.to_string()),
        Value::Float(f) if !ps.range.contains(*f) => Some(f.to_string()),
        Value::List(items) => items.iter().find_map(|i| out_of_range(i, ps)),
        Value::Table(t) => t.values().find_map(|i| out_of_range(i, ps)),
        _ => None,
    }
}

pub(crate) fn coerce_value(v: Value, ty: &ParamType) -> Result<Value, String> {
    match (ty, v) {
        // No param takes NaN or an infinity: a worker would replace it with a default or
        // train on it, either way silently.
        (ParamType::Float, Value::Float(f)) if !f.is_finite() => {
            Err(format!("{f} (numbers must be finite)"))
        }
        (ParamType::Str | ParamType::Path, Value::Str(s)) => Ok(Value::Str(s)),
        (ParamType::Int, Value::Int(i)) => Ok(Value::Int(i)),
        (ParamType::Float, Value::Int(i)) => Ok(Value::Float(i as f64)),
        (ParamType::Float, Value::Float(f)) => Ok(Value::Float(f)),
        (ParamType::Bool, Value::Bool(b)) => Ok(Value::Bool(b)),
        (ParamType::Enum(vs), Value::Str(s)) if vs.contains(&s.as_str()) => Ok(Value::Str(s)),
        (ParamType::Enum(_), Value::Str(s)) => Err(format!("\"{s}\"")),
        (ParamType::SecretEnv, Value::Str(s)) => {
            let looks_like_name = !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if looks_like_name {
                Ok(Value::Str(s))
            } else {
                Err("something that is not an environment variable name (is it a secret? secrets never go in graph files)".into())
            }
        }
        (ParamType::List(inner), Value::List(items)) => Ok(Value::List(
            items
                .into_iter()
                .map(|i| coerce_value(i, inner))
                .collect::<Result<_, _>>()?,
        )),
        (ParamType::Map(inner), Value::Table(t)) => Ok(Value::Table(
            t.into_iter()
                .map(|(k, v)| Ok((k, coerce_value(v, inner)?)))
                .collect::<Result<_, String>>()?,
        )),
        (ParamType::Any, v) => Ok(v),
        (_, other) => Err(other.type_name().to_string()),
    }
}
