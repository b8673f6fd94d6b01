//! The commands: each builds library objects from arguments and prints the result.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, anyhow, bail};
use dag_engine::{Event, Graph, LoadOptions, NodeState, RunMode, RunOptions, Runner};
use dag_store::{Digest, Layout, NodeRunStatus, RunRecord, RunStatus, Store};
use serde_json::json;

use crate::cli::{Cli, Command, GraphArgs, LineageFormat, VerifyArgs};
use crate::locate::store_root;
use crate::render::{Exit, cell, table};

/// Runs the command `cli` asks for.
pub fn dispatch(cli: Cli) -> Result<Exit> {
    let json = cli.json;
    let explicit = cli.store.as_deref();
    match cli.command {
        Command::Run(a) => run(explicit, &a, json),
        Command::Status(g) => status(explicit, &g, json, false),
        Command::Plan(g) => status(explicit, &g, json, true),
        Command::Lineage(a) => {
            let store = open_reader(explicit, a.graph.as_deref())?;
            let t = resolve_target(&store, &a.target, a.graph.as_deref())?;
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
        Command::Show(a) => {
            let store = open_reader(explicit, a.graph.as_deref())?;
            let t = resolve_target(&store, &a.target, a.graph.as_deref())?;
            show(&store, &t, a.rows, json)?;
            Ok(Exit::Success)
        }
        Command::Log(a) => log(
            explicit,
            a.graph.as_deref(),
            a.limit,
            a.run.as_deref(),
            json,
        ),
        Command::Diff(a) => diff(explicit, &a.a, &a.b, json),
        Command::Export(a) => {
            let store = open_reader(explicit, a.graph.as_deref())?;
            let d = resolve(&store, &a.target, a.graph.as_deref())?;
            if a.dest.exists() {
                bail!(
                    "`{}` already exists\n\nhint: choose a new path; export never overwrites",
                    a.dest.display()
                );
            }
            store.export(&d, &a.dest)?;
            outln!("exported {} to {}", d.short(), a.dest.display());
            Ok(Exit::Success)
        }
        Command::Verify(a) => verify(explicit, &a, json),
        Command::Gc(a) => {
            let store = open(explicit, None)?;
            let r = store.gc(&dag_store::GcOptions {
                keep_runs: a.keep_runs,
                dry_run: a.dry_run,
                crash: dag_store::CrashAfter::never(),
            })?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                let verb = if a.dry_run { "would remove" } else { "removed" };
                outln!(
                    "{verb} {} artifact(s), {} blob(s), {} bytes; {} cache entr(ies) dropped; kept {} artifact(s)",
                    r.artifacts_removed,
                    r.blobs_removed,
                    r.bytes_freed,
                    r.cache_entries_removed,
                    r.artifacts_kept
                );
            }
            Ok(Exit::Success)
        }
        Command::Pin(a) => {
            let store = open(explicit, a.graph.as_deref())?;
            let d = resolve(&store, &a.target, a.graph.as_deref())?;
            store.pin(&a.name, &d)?;
            outln!("pinned {} as {}", d.short(), a.name);
            Ok(Exit::Success)
        }
        Command::Unpin(a) => {
            let store = open(explicit, None)?;
            if !store.unpin(&a.name)? {
                bail!("no pin named `{}`", a.name);
            }
            Ok(Exit::Success)
        }
        Command::Nodes(a) => {
            nodes(a.name.as_deref(), json)?;
            Ok(Exit::Success)
        }
    }
}

fn open(explicit: Option<&Path>, graph: Option<&Path>) -> Result<Store> {
    let root = store_root(explicit, graph);
    Store::open(&root).with_context(|| format!("Failed to open the store `{}`", root.display()))
}

/// Opens the store for a command that only reads it: beside a running `dag run`, or on a
/// read-only filesystem.
fn open_reader(explicit: Option<&Path>, graph: Option<&Path>) -> Result<Store> {
    let root = store_root(explicit, graph);
    Store::open_reader(&root)
        .with_context(|| format!("Failed to open the store `{}`", root.display()))
}

fn load(g: &GraphArgs) -> Result<Graph> {
    let registry = dag_nodes::registry();
    let opts = LoadOptions {
        profile: g.profile.clone(),
        set: g.set.clone(),
    };
    let graph = Graph::load(&g.graph, &registry, &opts)?;
    for t in &g.only {
        if graph.node(t).is_none() {
            bail!("`--only {t}` names no node of `{}`", g.graph.display());
        }
    }
    Ok(graph)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn init_log(store: &Store, run_id: &str) -> Option<std::path::PathBuf> {
    let dir = store.root().join("logs");
    std::fs::create_dir_all(&dir).ok()?;
    let path = dir.join(format!("{run_id}.log"));
    let file = std::fs::File::create(&path).ok()?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("DAG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init()
        .ok()?;
    Some(path)
}

fn run(explicit: Option<&Path>, a: &crate::cli::RunArgs, json: bool) -> Result<Exit> {
    let t0 = std::time::Instant::now();
    let graph = Arc::new(load(&a.graph)?);
    let t_load = t0.elapsed();
    let store = Arc::new(open(explicit, Some(&a.graph.graph))?);
    let t_open = t0.elapsed() - t_load;
    let cancel = Arc::new(AtomicBool::new(false));
    let terminated = Arc::new(AtomicBool::new(false));
    let mut limits = dag_engine::Limits::default();
    if let Some(j) = a.jobs {
        limits.cpu = j;
    }
    limits.gpu = a.gpus;
    limits.api = a.api_connections;
    let opts = RunOptions {
        mode: RunMode::Execute,
        limits,
        fail_fast: a.fail_fast,
        targets: a.graph.only.clone(),
        cancel: cancel.clone(),
        progress: !a.quiet && !json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let runner = Runner::new(store.clone(), graph.clone(), opts);
    let log_path = init_log(&store, runner.run_id());
    tracing::info!(
        nodes = graph.nodes.len(),
        load_ms = t_load.as_millis() as u64,
        open_store_ms = t_open.as_millis() as u64,
        "graph loaded, store opened"
    );
    let rt = runtime()?;
    let quiet = a.quiet || json;
    let summary = rt.block_on(async {
        let c = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                c.store(true, Ordering::Relaxed);
                errln!("\nstopping: waiting for running nodes to stop (finished results are kept); press Ctrl-C again to abort now");
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
        // SIGTERM (Slurm at the time limit, systemd, `kill`) stops the run like Ctrl-C, so
        // it is recorded as cancelled rather than left `running`.
        let (c, t) = (cancel.clone(), terminated.clone());
        if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            tokio::spawn(async move {
                if term.recv().await.is_some() {
                    t.store(true, Ordering::Relaxed);
                    c.store(true, Ordering::Relaxed);
                    errln!("\nstopping on SIGTERM: waiting for running nodes to stop (finished results are kept)");
                }
            });
        }
        let on_event = |e: &Event| {
            if quiet {
                return;
            }
            match e {
                Event::Started(n) => errln!("  running  {n}"),
                Event::Finished(n) => errln!("     done  {n}"),
                Event::Failed(n, msg) => errln!("   FAILED  {n}: {}", msg.lines().next().unwrap_or("")),
                Event::Cached(_) | Event::Skipped(_) => {}
            }
        };
        runner.run(&on_event).await
    })?;
    tracing::info!(total_ms = t0.elapsed().as_millis() as u64, "run finished");
    let count = |f: &dyn Fn(&NodeRunStatus) -> bool| {
        summary.records.iter().filter(|r| f(&r.status)).count()
    };
    let ran = count(&|s| matches!(s, NodeRunStatus::Ran));
    let cached = count(&|s| matches!(s, NodeRunStatus::Cached));
    let failed: Vec<_> = summary
        .records
        .iter()
        .filter(|r| matches!(r.status, NodeRunStatus::Failed(_)))
        .collect();
    let skipped = count(&|s| matches!(s, NodeRunStatus::Skipped(_)));
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "run": summary.run_id,
                "status": format!("{:?}", summary.status).to_lowercase(),
                "nodes": summary.lines,
            }))?
        );
    } else {
        for f in &failed {
            if let NodeRunStatus::Failed(msg) = &f.status {
                errln!("\nerror: node `{}` failed: {msg}", f.instance);
            }
        }
        errln!(
            "\nrun {}: {ran} ran, {cached} cached, {} failed, {skipped} skipped{}",
            summary.run_id,
            failed.len(),
            log_path
                .map(|p| format!(" (log: {})", p.display()))
                .unwrap_or_default()
        );
    }
    Ok(match summary.status {
        RunStatus::Succeeded => Exit::Success,
        RunStatus::Cancelled if terminated.load(Ordering::Relaxed) => Exit::Terminated,
        RunStatus::Cancelled => Exit::Cancelled,
        _ => Exit::NodeFailed,
    })
}

fn status(explicit: Option<&Path>, g: &GraphArgs, json: bool, plan_only: bool) -> Result<Exit> {
    let graph = Arc::new(load(g)?);
    let store = Arc::new(open_reader(explicit, Some(&g.graph))?);
    let opts = RunOptions {
        mode: RunMode::DryRun,
        targets: g.only.clone(),
        ..Default::default()
    };
    let runner = Runner::new(store, graph, opts);
    let summary = runtime()?.block_on(runner.run(&|_| {}))?;
    let lines: Vec<_> = summary
        .lines
        .iter()
        .filter(|l| !plan_only || !matches!(l.state, NodeState::Cached))
        .collect();
    if json {
        outln!("{}", serde_json::to_string_pretty(&lines)?);
        return Ok(Exit::Success);
    }
    let mut rows = vec![];
    for l in &lines {
        let (state, why) = match &l.state {
            NodeState::Cached => ("cached", String::new()),
            NodeState::Stale { reasons } => ("stale", reasons.join("; ")),
            NodeState::NeverRun => ("never run", String::new()),
            NodeState::Waiting { upstream } => {
                ("pending", format!("after {}", upstream.join(", ")))
            }
            other => ("?", format!("{other:?}")),
        };
        let state = if plan_only && state != "pending" {
            "will run"
        } else {
            state
        };
        rows.push(vec![
            state.to_string(),
            l.instance.clone(),
            l.node_type.clone(),
            why,
        ]);
    }
    if plan_only && rows.is_empty() {
        outln!("nothing to run: every node is cached");
    } else {
        out!("{}", table(&rows));
    }
    Ok(Exit::Success)
}

/// Resolves a target: a pin, a digest prefix, or `node[.port]` of the latest run.
/// What a TARGET names: an artifact and, when it was named as a node output of a run, the
/// computation that produced it there and that run (for its own provenance).
struct Resolved {
    digest: Digest,
    in_run: Option<(Digest, String, RunRecord)>,
}

impl Resolved {
    fn artifact(digest: Digest) -> Resolved {
        Resolved {
            digest,
            in_run: None,
        }
    }

    /// The computation that produced `d` in the run the target was found in.
    fn producer_in_run(&self, d: &Digest) -> Option<Digest> {
        let (_, _, run) = self.in_run.as_ref()?;
        run.nodes
            .iter()
            .find(|n| n.outputs.iter().any(|(_, o)| o == d))
            .and_then(|n| n.key)
    }
}

fn resolve(store: &Store, target: &str, graph: Option<&Path>) -> Result<Digest> {
    Ok(resolve_target(store, target, graph)?.digest)
}

fn resolve_target(store: &Store, target: &str, graph: Option<&Path>) -> Result<Resolved> {
    if let Some((_, d)) = store.pins()?.into_iter().find(|(n, _)| n == target) {
        return Ok(Resolved::artifact(d));
    }
    if target.len() >= 4 && target.chars().all(|c| c.is_ascii_hexdigit()) {
        let found = store.resolve_prefix(target)?;
        match found.len() {
            1 => return Ok(Resolved::artifact(found[0])),
            0 => {}
            n => bail!("`{target}` matches {n} artifacts\n\nhint: give more hex digits"),
        }
    }
    let graph_abs = graph.map(|g| {
        std::path::absolute(g)
            .unwrap_or_else(|_| g.to_path_buf())
            .display()
            .to_string()
    });
    let mut runs = store.runs()?;
    runs.reverse();
    let (inst, port) = match target.rsplit_once('.') {
        Some((i, p)) if !i.is_empty() => (i, Some(p)),
        _ => (target, None),
    };
    for run in runs
        .iter()
        .filter(|r| graph_abs.as_ref().is_none_or(|g| &r.graph == g))
    {
        for n in &run.nodes {
            let candidates = [(target, None), (inst, port)];
            for (name, port) in candidates {
                if n.instance == name && !n.outputs.is_empty() {
                    let out = match port {
                        Some(p) => n.outputs.iter().find(|(o, _)| o == p),
                        None => n.outputs.first(),
                    };
                    if let Some((port, d)) = out {
                        return Ok(Resolved {
                            digest: *d,
                            in_run: n.key.map(|k| (k, port.clone(), run.clone())),
                        });
                    }
                }
            }
        }
        // A run in progress lists its nodes only when it ends; what it has committed so
        // far is named by the graph's head pointers.
        if run.status == RunStatus::Running {
            for (name, port) in [(target, None), (inst, port)] {
                let Some(key) = store.head(&dag_engine::head_scope(&run.graph, name))? else {
                    continue;
                };
                let outputs = store.cache_outputs(&key)?.unwrap_or_default();
                let out = match port {
                    Some(p) => outputs.iter().find(|(o, _)| o == p),
                    None => outputs.first(),
                };
                if let Some((port, d)) = out {
                    return Ok(Resolved {
                        digest: *d,
                        in_run: Some((key, port.clone(), run.clone())),
                    });
                }
            }
        }
    }
    Err(anyhow!(
        "`{target}` is not a pin, an artifact digest, or a node output of a recorded run\n\nhint: run `dag log` to see runs, or `dag status GRAPH` for node names"
    ))
}

fn show(store: &Store, target: &Resolved, rows: usize, json: bool) -> Result<()> {
    let d = &target.digest;
    let rec = store
        .artifact(d)?
        .ok_or_else(|| anyhow!("no artifact {d}"))?;
    // Named as a node's output: that computation's provenance and metadata, which differ
    // from the record's (its first producer's) when identical content came from elsewhere.
    let (producer_key, own_meta) = match &target.in_run {
        Some((key, port, _)) => (Some(*key), store.output_meta(key, port)?),
        None => (rec.producer, None),
    };
    let producer = producer_key.and_then(|k| store.cache_get(&k).ok().flatten());
    let meta = own_meta.unwrap_or_else(|| rec.meta());
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "artifact": d.to_hex(), "kind": rec.kind, "size": rec.size, "meta": meta,
                "producer": producer.as_ref().map(|p| json!({"instance": p.label, "run": p.run_id, "preimage": p.preimage()})),
                "files": rec.entries.iter().map(|e| json!({"path": e.path, "size": e.size, "blob": e.digest.to_hex()})).collect::<Vec<_>>(),
            }))?
        );
        return Ok(());
    }
    outln!("artifact  {}", d.to_hex());
    outln!("kind      {}", rec.kind);
    outln!("size      {} bytes", rec.size);
    if let Some(p) = &producer {
        outln!("produced  by {} in run {}", p.label, p.run_id);
    }
    if !meta.is_null() {
        outln!("meta      {meta}");
    }
    outln!("");
    match rec.layout {
        Layout::Tree => {
            let r: Vec<Vec<String>> = rec
                .entries
                .iter()
                .map(|e| vec![e.size.to_string(), e.path.clone()])
                .collect();
            out!("{}", table(&r));
            // A report is read, not listed: its table is the point, the plots sit beside it.
            if rec.kind == "report"
                && let Some(md) = rec.entries.iter().find(|e| e.path == "results.md")
            {
                outln!("");
                out!("{}", String::from_utf8_lossy(&store.read(&md.digest)?));
            }
        }
        Layout::File if !rec.children.is_empty() || rec.kind == "checkpoints" => {
            for (name, d) in store.read_list(d)? {
                outln!("{}  {name}", d.short());
            }
        }
        Layout::File => {
            let bytes = store.read(d)?;
            let text = String::from_utf8_lossy(&bytes);
            let parsed: Vec<serde_json::Map<String, serde_json::Value>> = text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .take(rows + 1)
                .collect();
            // Row artifacts are JSONL; everything else is shown as JSON or text.
            if rec.kind == "dataset" || rec.kind == "generations" || rec.kind == "scores" {
                let cols: Vec<String> = parsed
                    .first()
                    .map(|r| r.keys().cloned().collect())
                    .unwrap_or_default();
                let mut t = vec![cols.clone()];
                for r in parsed.iter().take(rows) {
                    t.push(
                        cols.iter()
                            .map(|c| {
                                cell(
                                    &dag_table::as_text(
                                        r.get(c).unwrap_or(&serde_json::Value::Null),
                                    ),
                                    40,
                                )
                            })
                            .collect(),
                    );
                }
                out!("{}", table(&t));
                let total = text.lines().count();
                if total > rows {
                    outln!("... {} more rows (--rows N to see more)", total - rows);
                }
            } else if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                match v.get("table").and_then(|t| t.as_array()) {
                    Some(t) if rec.kind == "metrics" => out!("{}", metrics_table(t)),
                    _ => outln!("{}", serde_json::to_string_pretty(&v)?),
                }
            } else {
                out!("{}", text.chars().take(4000).collect::<String>());
            }
        }
    }
    Ok(())
}

/// A metrics artifact's `table` rows: the columns every row has, in first-seen order, numbers
/// to four decimals, and `ci_low`/`ci_high` shown as one interval column.
fn metrics_table(rows: &[serde_json::Value]) -> String {
    let mut cols: Vec<String> = Vec::new();
    for r in rows {
        for k in r.as_object().into_iter().flat_map(|o| o.keys()) {
            if !cols.contains(k) && k != "ci_high" {
                cols.push(k.clone());
            }
        }
    }
    let fmt = |v: &serde_json::Value| match v {
        serde_json::Value::Number(n) if n.is_f64() => {
            format!("{:.4}", n.as_f64().unwrap_or(f64::NAN))
        }
        serde_json::Value::Null => "-".to_string(),
        other => dag_table::as_text(other),
    };
    let header = cols
        .iter()
        .map(|c| {
            if c == "ci_low" {
                "95% CI".to_string()
            } else {
                c.clone()
            }
        })
        .collect();
    let mut t = vec![header];
    for r in rows {
        t.push(
            cols.iter()
                .map(|c| match (c.as_str(), r.get("ci_high")) {
                    ("ci_low", Some(hi)) if !hi.is_null() => {
                        format!("[{}, {}]", fmt(&r[c.as_str()]), fmt(hi))
                    }
                    _ => cell(&fmt(r.get(c).unwrap_or(&serde_json::Value::Null)), 60),
                })
                .collect(),
        );
    }
    table(&t)
}

fn lineage_text(n: &dag_engine::LineageNode, down: bool) -> String {
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

fn lineage_dot(n: &dag_engine::LineageNode, down: bool) -> String {
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

fn find_run(store: &Store, id: &str) -> Result<RunRecord> {
    let runs = store.runs()?;
    if let Some(back) = id.strip_prefix("last") {
        let n: usize = back
            .strip_prefix('~')
            .map(str::parse)
            .transpose()?
            .unwrap_or(0);
        return runs
            .iter()
            .rev()
            .nth(n)
            .cloned()
            .ok_or_else(|| anyhow!("there are only {} runs", runs.len()));
    }
    let found: Vec<_> = runs.into_iter().filter(|r| r.id.starts_with(id)).collect();
    match found.len() {
        1 => Ok(found.into_iter().next().expect("one")),
        0 => bail!("no run `{id}`\n\nhint: `dag log` lists runs"),
        n => bail!("`{id}` matches {n} runs\n\nhint: give more of the id"),
    }
}

fn log(
    explicit: Option<&Path>,
    graph: Option<&Path>,
    limit: usize,
    one: Option<&str>,
    json: bool,
) -> Result<Exit> {
    let store = open_reader(explicit, graph)?;
    if let Some(id) = one {
        let r = find_run(&store, id)?;
        if json {
            outln!("{}", serde_json::to_string_pretty(&run_json(&r))?);
        } else {
            outln!(
                "run {} of {} ({:?}) on {}, dag {}",
                r.id,
                r.graph,
                r.status,
                r.host,
                r.tool_version
            );
            let rows: Vec<Vec<String>> = r
                .nodes
                .iter()
                .map(|n| {
                    let st = match &n.status {
                        NodeRunStatus::Failed(m) => {
                            format!("failed: {}", m.lines().next().unwrap_or(""))
                        }
                        NodeRunStatus::Skipped(m) => format!("skipped: {m}"),
                        other => format!("{other:?}").to_lowercase(),
                    };
                    vec![
                        n.instance.clone(),
                        n.node_type.clone(),
                        format!("{:.2}s", n.seconds),
                        st,
                    ]
                })
                .collect();
            out!("{}", table(&rows));
        }
        return Ok(Exit::Success);
    }
    let graph_abs = graph.map(|g| {
        std::path::absolute(g)
            .unwrap_or_else(|_| g.to_path_buf())
            .display()
            .to_string()
    });
    let runs: Vec<RunRecord> = store
        .runs()?
        .into_iter()
        .filter(|r| graph_abs.as_ref().is_none_or(|g| &r.graph == g))
        .collect();
    let shown: Vec<&RunRecord> = runs.iter().rev().take(limit).collect();
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&shown.iter().map(|r| run_json(r)).collect::<Vec<_>>())?
        );
        return Ok(Exit::Success);
    }
    let mut rows = vec![vec![
        "run".into(),
        "status".into(),
        "ran".into(),
        "cached".into(),
        "failed".into(),
        "seconds".into(),
        "graph".into(),
    ]];
    for r in shown {
        let c = |f: fn(&NodeRunStatus) -> bool| {
            r.nodes.iter().filter(|n| f(&n.status)).count().to_string()
        };
        rows.push(vec![
            r.id.clone(),
            format!("{:?}", r.status).to_lowercase(),
            c(|s| matches!(s, NodeRunStatus::Ran)),
            c(|s| matches!(s, NodeRunStatus::Cached)),
            c(|s| matches!(s, NodeRunStatus::Failed(_))),
            r.finished
                .map(|f| (f.saturating_sub(r.started)).to_string())
                .unwrap_or_else(|| "-".into()),
            r.graph.clone(),
        ]);
    }
    out!("{}", table(&rows));
    Ok(Exit::Success)
}

fn run_json(r: &RunRecord) -> serde_json::Value {
    json!({
        "id": r.id, "graph": r.graph, "profile": r.profile, "status": format!("{:?}", r.status).to_lowercase(),
        "started": r.started, "finished": r.finished, "host": r.host, "tool_version": r.tool_version,
        "nodes": r.nodes.iter().map(|n| json!({
            "instance": n.instance, "type": n.node_type, "key": n.key.map(|k| k.to_hex()),
            "status": format!("{:?}", n.status), "seconds": n.seconds,
            "params": serde_json::from_str::<serde_json::Value>(&n.params_json).unwrap_or_default(),
            "outputs": n.outputs.iter().map(|(p, d)| (p.clone(), json!(d.to_hex()))).collect::<serde_json::Map<_, _>>(),
        })).collect::<Vec<_>>(),
    })
}

/// Every number in a metrics JSON artifact, keyed by its path (`tasks.gsm8k.acc,none`); the
/// `table` array repeats them for display and is skipped.
fn metric_numbers(store: &Store, d: &Digest) -> Vec<(String, f64)> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, f64)>) {
        let join = |k: &str| {
            if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            }
        };
        match v {
            serde_json::Value::Number(n) => out.extend(n.as_f64().map(|x| (prefix.to_string(), x))),
            serde_json::Value::Object(o) => {
                for (k, v) in o {
                    if !(prefix.is_empty() && k == "table") {
                        walk(&join(k), v, out);
                    }
                }
            }
            _ => {}
        }
    }
    let Ok(bytes) = store.read(d) else {
        return vec![];
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return vec![];
    };
    let mut out = vec![];
    walk("", &v, &mut out);
    out
}

fn diff(explicit: Option<&Path>, a: &str, b: &str, json: bool) -> Result<Exit> {
    let store = open_reader(explicit, None)?;
    let (ra, rb) = (find_run(&store, a)?, find_run(&store, b)?);
    let mut names: Vec<&str> = ra
        .nodes
        .iter()
        .chain(&rb.nodes)
        .map(|n| n.instance.as_str())
        .collect();
    names.sort();
    names.dedup();
    let mut out = vec![];
    for name in names {
        let na = ra.nodes.iter().find(|n| n.instance == name);
        let nb = rb.nodes.iter().find(|n| n.instance == name);
        let pa: serde_json::Value = na
            .map(|n| serde_json::from_str(&n.params_json).unwrap_or_default())
            .unwrap_or_default();
        let pb: serde_json::Value = nb
            .map(|n| serde_json::from_str(&n.params_json).unwrap_or_default())
            .unwrap_or_default();
        let mut changes = vec![];
        if let (Some(oa), Some(ob)) = (pa.as_object(), pb.as_object()) {
            let mut keys: Vec<&String> = oa.keys().chain(ob.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                if oa.get(k) != ob.get(k) {
                    changes.push(json!({"param": k, "a": oa.get(k), "b": ob.get(k)}));
                }
            }
        } else if na.is_none() || nb.is_none() {
            changes.push(json!({"node": if na.is_none() { "only in b" } else { "only in a" }}));
        }
        let oa = na.map(|n| n.outputs.clone()).unwrap_or_default();
        let ob = nb.map(|n| n.outputs.clone()).unwrap_or_default();
        for (port, da) in &oa {
            let db = ob.iter().find(|(p, _)| p == port).map(|(_, d)| *d);
            if Some(*da) != db {
                let kind = store
                    .artifact(da)
                    .ok()
                    .flatten()
                    .map(|r| r.kind)
                    .unwrap_or_default();
                let mut entry =
                    json!({"output": port, "a": da.short(), "b": db.map(|d| d.short())});
                if kind == "metrics"
                    && let Some(db) = db
                {
                    let ma = metric_numbers(&store, da);
                    let mb = metric_numbers(&store, &db);
                    let rows: Vec<_> = ma
                        .iter()
                        .filter_map(|(k, x)| {
                            mb.iter()
                                .find(|(k2, _)| k2 == k)
                                .map(|(_, y)| json!({"metric": k, "a": x, "b": y, "delta": y - x}))
                        })
                        .collect();
                    entry["metrics"] = json!(rows);
                }
                changes.push(entry);
            }
        }
        if !changes.is_empty() {
            out.push(json!({"node": name, "changes": changes}));
        }
    }
    if json {
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else if out.is_empty() {
        outln!(
            "runs {} and {} have the same params and outputs",
            ra.id,
            rb.id
        );
    } else {
        outln!("a = {}\nb = {}\n", ra.id, rb.id);
        for n in &out {
            outln!("{}", n["node"].as_str().unwrap_or_default());
            for c in n["changes"].as_array().into_iter().flatten() {
                if let Some(p) = c.get("param") {
                    outln!(
                        "  param {}: {} -> {}",
                        p.as_str().unwrap_or_default(),
                        c["a"],
                        c["b"]
                    );
                } else if let Some(o) = c.get("output") {
                    outln!(
                        "  output {}: {} -> {}",
                        o.as_str().unwrap_or_default(),
                        c["a"].as_str().unwrap_or("-"),
                        c["b"].as_str().unwrap_or("-")
                    );
                    for m in c
                        .get("metrics")
                        .and_then(|m| m.as_array())
                        .into_iter()
                        .flatten()
                    {
                        outln!(
                            "    {:<64} {:>12.6} {:>12.6} {:>+12.6}",
                            m["metric"].as_str().unwrap_or_default(),
                            m["a"].as_f64().unwrap_or(f64::NAN),
                            m["b"].as_f64().unwrap_or(f64::NAN),
                            m["delta"].as_f64().unwrap_or(f64::NAN)
                        );
                    }
                } else {
                    outln!("  {c}");
                }
            }
        }
    }
    Ok(Exit::Success)
}

fn nodes(only: Option<&str>, json: bool) -> Result<()> {
    let reg = dag_nodes::registry();
    let mut all = vec![];
    for name in reg.names() {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let s = reg.get(name).expect("listed").spec();
        all.push(json!({
            "type": s.name, "version": s.version, "doc": s.doc,
            "resources": {"cpu": s.resources.cpu, "gpu": s.resources.gpu, "api": s.resources.api},
            "inputs": s.inputs.iter().map(|p| json!({"name": p.name, "kind": p.kind.name(), "many": p.many, "optional": p.optional, "doc": p.doc})).collect::<Vec<_>>(),
            "outputs": s.outputs.iter().map(|p| json!({"name": p.name, "kind": p.kind.name(), "doc": p.doc})).collect::<Vec<_>>(),
            "params": s.params.iter().map(|p| json!({"name": p.name, "type": p.ty.to_string(), "required": p.required, "default": p.default.as_ref().map(|d| d.to_json()), "doc": p.doc, "range": (!p.range.is_unbounded()).then(|| p.range.to_string())})).collect::<Vec<_>>(),
        }));
    }
    if let Some(o) = only
        && all.is_empty()
    {
        bail!("no node type `{o}`\n\nhint: `dag nodes` lists them");
    }
    if json {
        outln!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    for n in &all {
        outln!(
            "{} (v{})\n  {}",
            n["type"].as_str().unwrap_or_default(),
            n["version"],
            n["doc"].as_str().unwrap_or_default()
        );
        for (title, key) in [("inputs", "inputs"), ("outputs", "outputs")] {
            for p in n[key].as_array().into_iter().flatten() {
                outln!(
                    "  {title:<8} {:<12} {:<12} {}",
                    p["name"].as_str().unwrap_or_default(),
                    p["kind"].as_str().unwrap_or_default(),
                    p["doc"].as_str().unwrap_or_default()
                );
            }
        }
        for p in n["params"].as_array().into_iter().flatten() {
            let dflt = if p["required"].as_bool() == Some(true) {
                "required".to_string()
            } else {
                match &p["default"] {
                    serde_json::Value::Null => "optional".into(),
                    d => format!("= {d}"),
                }
            };
            let ty = match p["range"].as_str() {
                Some(r) => format!("{}, {r}", p["type"].as_str().unwrap_or_default()),
                None => p["type"].as_str().unwrap_or_default().to_string(),
            };
            outln!(
                "  param    {:<18} {:<14} {}  ({ty})",
                p["name"].as_str().unwrap_or_default(),
                dflt,
                p["doc"].as_str().unwrap_or_default(),
            );
        }
        outln!("");
    }
    Ok(())
}

fn verify(explicit: Option<&Path>, a: &VerifyArgs, json: bool) -> Result<Exit> {
    if a.rebuild_index {
        return rebuild_index(explicit, json);
    }
    let store = if a.repair {
        open(explicit, None)?
    } else {
        open_reader(explicit, None)?
    };
    let r = store.verify(a.repair)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        outln!(
            "checked {} blobs ({} bytes)",
            r.blobs_checked,
            r.bytes_checked
        );
        for p in &r.problems {
            match p {
                dag_store::VerifyProblem::Corrupt { blob, artifacts } => outln!(
                    "corrupt blob {} (in {} artifact(s))",
                    blob.short(),
                    artifacts.len()
                ),
                dag_store::VerifyProblem::Missing { blob, artifacts } => outln!(
                    "missing blob {} (in {} artifact(s))",
                    blob.short(),
                    artifacts.len()
                ),
                dag_store::VerifyProblem::MissingElement { list, element } => outln!(
                    "list {} names element {}, which is not in the store",
                    list.short(),
                    element.short()
                ),
                dag_store::VerifyProblem::DanglingCacheEntry { key, output } => outln!(
                    "cache entry {} names output {}, which is not in the store",
                    key.short(),
                    output.short()
                ),
            }
        }
        if a.repair {
            outln!(
                "quarantined {} blob(s); dropped {} artifact(s) and {} cache entr(ies), which the next run recomputes",
                r.quarantined.len(),
                r.artifacts_dropped.len(),
                r.cache_entries_dropped
            );
        } else if !r.problems.is_empty() {
            errln!(
                "\nhint: run `dag verify --repair` to quarantine them; the next run recomputes what needs them"
            );
        }
    }
    Ok(if r.problems.is_empty() || a.repair {
        Exit::Success
    } else {
        Exit::NodeFailed
    })
}

fn rebuild_index(explicit: Option<&Path>, json: bool) -> Result<Exit> {
    let root = store_root(explicit, None);
    let r = Store::rebuild_index(&root)
        .with_context(|| format!("Failed to rebuild the index of `{}`", root.display()))?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(Exit::Success);
    }
    if let Some(aside) = &r.moved_aside {
        outln!("moved the index found to {}", aside.display());
    }
    outln!(
        "replayed {} record(s) from {} journal segment(s): {} artifact(s), {} cache entr(ies), {} run(s), {} pin(s)",
        r.records,
        r.segments,
        r.artifacts,
        r.cache_entries,
        r.runs,
        r.pins
    );
    for (segment, bytes) in &r.unreadable {
        outln!(
            "lost: the last {bytes} byte(s) of {} could not be read (a write cut short); what they held runs again",
            segment.display()
        );
    }
    outln!(
        "checked {} blobs ({} bytes): dropped {} artifact(s) and {} cache entr(ies) whose blobs are gone or corrupt, which the next run recomputes",
        r.verify.blobs_checked,
        r.verify.bytes_checked,
        r.verify.artifacts_dropped.len(),
        r.verify.cache_entries_dropped
    );
    outln!(
        "not restored: the caches of hashed inputs and checked blobs, which refill as they are used"
    );
    if r.moved_aside.is_some() {
        outln!("\nonce the rebuilt store looks right, the moved index can be deleted");
    }
    Ok(Exit::Success)
}
