//! `dag lineage`: where an artifact came from, or what was made from it.

use super::*;

pub(super) fn lineage_text(n: &dag_engine::LineageNode, down: bool) -> String {
    fn walk(n: &dag_engine::LineageNode, depth: usize, down: bool, out: &mut String) {
        let pad = "  ".repeat(depth);
        let what = match &n.producer {
            Some(p) => {
                let params = p
                    .preimage
                    .get("params")
                    .map(|v| v.to_string())
                    .unwrap_or_default();
                let t = p
                    .preimage
                    .get("type")
                    .and_then(|t| t.as_str())
                    .unwrap_or("?");
                let arrow = if down { "used by" } else { "from" };
                format!(
                    "{arrow} {} ({t} v{}) {}",
                    p.instance,
                    p.preimage["version"],
                    cell(&params, 100)
                )
            }
            None if depth == 0 || down => String::new(),
            None => "external".into(),
        };
        out.push_str(&format!("{pad}{} {} {what}\n", &n.artifact[..12], n.kind));
        for c in &n.next {
            walk(c, depth + 1, down, out);
        }
    }
    let mut s = String::new();
    walk(n, 0, down, &mut s);
    s
}

pub(super) fn lineage_dot(n: &dag_engine::LineageNode, down: bool) -> String {
    fn walk(
        n: &dag_engine::LineageNode,
        down: bool,
        out: &mut String,
        seen: &mut std::collections::HashSet<String>,
    ) {
        if !seen.insert(n.artifact.clone()) {
            return;
        }
        let label = match &n.producer {
            Some(p) => format!("{}\\n{} {}", p.instance, n.kind, &n.artifact[..12]),
            None => format!("{} {}", n.kind, &n.artifact[..12]),
        };
        out.push_str(&format!("  \"{}\" [label=\"{label}\"];\n", n.artifact));
        for c in &n.next {
            let (a, b) = if down {
                (&n.artifact, &c.artifact)
            } else {
                (&c.artifact, &n.artifact)
            };
            out.push_str(&format!("  \"{a}\" -> \"{b}\";\n"));
            walk(c, down, out, seen);
        }
    }
    let mut s = String::from("digraph lineage {\n  rankdir=LR;\n");
    walk(n, down, &mut s, &mut Default::default());
    s.push_str("}\n");
    s
}

/// `dag lineage TARGET`.
pub(super) fn lineage(
    explicit: Option<&Path>,
    a: &crate::cli::LineageArgs,
    json: bool,
) -> Result<Exit> {
    let store = open_reader(explicit, a.graph.as_deref())?;
    let t = dag_engine::Target::resolve(&store, &a.target, a.graph.as_deref())?;
    let tree = if a.down {
        dag_engine::downstream(&store, &t.digest)?
    } else {
        dag_engine::upstream_in(&store, &t.digest, &|d| t.producer_in_run(d))?
    };
    match (json, a.format) {
        (true, _) | (_, LineageFormat::Json) => {
            outln!("{}", serde_json::to_string_pretty(&tree)?)
        }
        (_, LineageFormat::Text) => out!("{}", lineage_text(&tree, a.down)),
        (_, LineageFormat::Dot) => out!("{}", lineage_dot(&tree, a.down)),
    }
    Ok(Exit::Success)
}
