//! `dag run`: runs a graph with progress, Ctrl-C/SIGTERM handling and a run log.

use super::*;

pub(super) fn init_log(store: &Store, run_id: &str) -> Option<std::path::PathBuf> {
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

pub(super) fn run(explicit: Option<&Path>, a: &crate::cli::RunArgs, json: bool) -> Result<Exit> {
    let t0 = std::time::Instant::now();
    // An unchanged graph over an unchanged store is answered from its memo, without
    // loading the graph (see `dag_engine::Memo`).
    let memo_key = memo_key(&a.graph);
    let early = memo_key.and_then(|_| open(explicit, Some(&a.graph.graph)).ok());
    let t_open = t0.elapsed();
    if let (Some(store), Some(key)) = (&early, &memo_key)
        && let Some(memo) = Memo::lookup(store, key)
    {
        let t_lookup = t0.elapsed() - t_open;
        let abs = std::path::absolute(&a.graph.graph).unwrap_or_else(|_| a.graph.graph.clone());
        let summary = dag_engine::replay_memo(store, &abs, a.graph.profile.clone(), &memo)?;
        let log_path = init_log(store, &summary.run_id);
        tracing::info!(
            nodes = summary.records.len(),
            open_store_ms = t_open.as_millis() as u64,
            lookup_ms = t_lookup.as_millis() as u64,
            total_ms = t0.elapsed().as_millis() as u64,
            "nothing changed since the memoised run: answered without loading the graph"
        );
        return Ok(report(
            store,
            &summary,
            &memo.reports,
            log_path,
            json,
            false,
        ));
    }
    let graph = Arc::new(load(&a.graph)?);
    let t_load = t0.elapsed();
    let store = Arc::new(match early {
        Some(s) => s,
        None => open(explicit, Some(&a.graph.graph))?,
    });
    let t_open = t0.elapsed() - t_load;
    let fingerprint = dag_engine::Fingerprint::of(&graph);
    let cancel = Arc::new(AtomicBool::new(false));
    let terminated = Arc::new(AtomicBool::new(false));
    let mut limits = dag_engine::Limits::default();
    if let Some(j) = a.jobs {
        limits.cpu = j;
    }
    limits.gpu = a.gpus;
    limits.api = a.api_connections;
    limits.api_calls = a.max_api_calls;
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
    let reports = report_ports(&graph);
    if let Some(key) = &memo_key {
        Memo::save(&store, key, fingerprint, &summary.records, &reports);
    }
    Ok(report(
        &store,
        &summary,
        &reports,
        log_path,
        json,
        terminated.load(Ordering::Relaxed),
    ))
}

/// The memo key of a run or status of `g`, when its file can be read (if it cannot, loading
/// it reports why).
pub(super) fn memo_key(g: &GraphArgs) -> Option<MemoKey> {
    let bytes = std::fs::read(&g.graph).ok()?;
    let opts = LoadOptions {
        profile: g.profile.clone(),
        set: g.set.clone(),
    };
    Some(MemoKey::new(&g.graph, &bytes, &opts, &g.only))
}

/// (node type, port) of every report output the graph's nodes declare.
fn report_ports(graph: &Graph) -> Vec<(String, String)> {
    let mut ports: Vec<(String, String)> = graph
        .nodes
        .iter()
        .flat_map(|d| {
            let spec = d.spec();
            spec.outputs
                .iter()
                .filter(|p| p.kind == dag_engine::ArtifactKind::Report)
                .map(move |p| (spec.name.to_string(), p.name.to_string()))
        })
        .collect();
    ports.sort();
    ports.dedup();
    ports
}

/// Prints what a run did (its failures, its reports, the counts) and its exit status.
fn report(
    store: &Store,
    summary: &dag_engine::RunSummary,
    reports: &[(String, String)],
    log_path: Option<std::path::PathBuf>,
    json: bool,
    terminated: bool,
) -> Exit {
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
            }))
            .expect("JSON values serialise")
        );
    } else {
        for f in &failed {
            if let NodeRunStatus::Failed(msg) = &f.status {
                errln!("\nerror: node `{}` failed: {msg}", f.instance);
            }
        }
        print_reports(store, reports, &summary.records);
        errln!(
            "\nrun {}: {ran} ran, {cached} cached, {} failed, {skipped} skipped{}",
            summary.run_id,
            failed.len(),
            log_path
                .map(|p| format!(" (log: {})", p.display()))
                .unwrap_or_default()
        );
    }
    match summary.status {
        RunStatus::Succeeded => Exit::Success,
        RunStatus::Cancelled if terminated => Exit::Terminated,
        RunStatus::Cancelled => Exit::Cancelled,
        _ => Exit::NodeFailed,
    }
}

/// The result of the run: every report it computed or found cached (a `report` output
/// whose metadata carries a `summary`, the table a report node writes for the terminal),
/// with where its files are. Only report ports are read, so a no-op run of a large graph
/// costs no index reads here.
fn print_reports(
    store: &dag_store::Store,
    reports: &[(String, String)],
    records: &[dag_store::NodeRunRecord],
) {
    let report_ports: std::collections::HashSet<(&str, &str)> = reports
        .iter()
        .map(|(t, p)| (t.as_str(), p.as_str()))
        .collect();
    if report_ports.is_empty() {
        return;
    }
    for r in records {
        if !matches!(r.status, NodeRunStatus::Ran | NodeRunStatus::Cached) {
            continue;
        }
        let Some(key) = &r.key else { continue };
        for (port, digest) in &r.outputs {
            if !report_ports.contains(&(r.node_type.as_str(), port.as_str())) {
                continue;
            }
            let meta = store.output_meta(key, port).ok().flatten();
            let Some(summary) = meta.as_ref().and_then(|m| m["summary"].as_str()) else {
                continue;
            };
            outln!(
                "\n{}.{port} ({}): `dag export {}.{port} DIR` writes all its files\n\n{summary}",
                r.instance,
                &digest.to_hex()[..12],
                r.instance
            );
        }
    }
}
