//! Prepare and lint the built-in tasks on ../shared/data and time it.
//!
//! `cargo run -p dag-tasks --example prepare_builtin [gsm8k-train.jsonl]`

use std::path::Path;
use std::time::Instant;

use dag_tasks::{FakeModel, Task, load_builtin, run_requests};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    let set = load_builtin("advanced_ai_risk", &root).ok_or("no builtin")??;
    let start = Instant::now();
    let (mut docs, mut requests, mut warnings) = (0, 0, 0);
    let mut results = Vec::new();
    for spec in &set.tasks {
        let task = Task::new(spec.clone())?;
        let data = task.load_docs()?;
        let prepared = task.prepare(&data, None)?;
        warnings += task.lint(&data, &prepared).into_result()?.len();
        docs += prepared.len();
        requests += prepared.iter().map(|p| p.requests.len()).sum::<usize>();
        let mut model = FakeModel::new();
        let responses = run_requests(task.name(), &mut model, &prepared, 32)?;
        results.push(task.score(&prepared, &responses)?);
    }
    let group = dag_tasks::aggregate_group(&set.groups[0], &results)?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "advanced_ai_risk: {} tasks, {docs} docs, {requests} requests, {warnings} lint warnings; read+prepare+lint+fake-score {secs:.3} s ({:.0} docs/s); fake group propensity {:.4}",
        set.tasks.len(),
        docs as f64 / secs,
        group.metrics[0].value
    );

    let mut spec = load_builtin("gsm8k", &root)
        .ok_or("no builtin")??
        .tasks
        .remove(0);
    if let Some(train) = std::env::args().nth(1) {
        spec.set_split("train", train);
    } else {
        spec.set_split("train", root.join("../shared/data/gsm8k/test.jsonl"));
    }
    let task = Task::new(spec)?;
    let start = Instant::now();
    let data = task.load_docs()?;
    let prepared = task.prepare(&data, None)?;
    let warnings = task.lint(&data, &prepared).into_result()?.len();
    let secs = start.elapsed().as_secs_f64();
    let chars: usize = prepared.iter().map(|p| p.prompt.len()).sum();
    println!(
        "gsm8k 5-shot: {} docs, mean prompt {:.0} bytes, {warnings} lint warnings; read+prepare+lint {secs:.3} s ({:.0} docs/s)",
        prepared.len(),
        chars as f64 / prepared.len() as f64,
        prepared.len() as f64 / secs
    );
    Ok(())
}
