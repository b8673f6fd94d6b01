//! `command`: a user-defined step. A command line (or a script) runs in the graph's
//! directory with its inputs as read-only paths and its declared outputs to write into a
//! fresh directory; the outputs are checked and stored only after it exits 0.
//!
//! ```toml
//! [node.lengths]
//! type = "command"
//! script = "scripts/lengths.py"
//! run = "python3 {script} {in.answers} {out.plot} {out.summary}"
//! inputs = { answers = "generate.generations" }
//! outputs = { plot = { kind = "report", dir = true }, summary = "metrics" }
//! params = { bins = 20 }
//! env = ["requirements.lock"]
//! versions = ["python3"]
//! ```
//!
//! Its key covers the command line, the script's content, the step's params, its inputs'
//! digests, the content of `files` and `env`, and the `--version` of each program in
//! `versions`: it reruns exactly when one of those changes. The child runs in its own
//! process group, so Ctrl-C and `timeout` stop everything it started.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use dag_engine::{
    ArtifactKind, Node, NodeError, NodeSpec, ParamError, ParamSpec, ParamType, Resources,
    RunContext, Value,
};

/// The `command` node type.
pub struct CommandStep(NodeSpec);

impl CommandStep {
    /// The node type with its spec; each node adds its own ports and params.
    pub fn new() -> Self {
        let paths = || ParamType::List(Box::new(ParamType::Path));
        CommandStep(NodeSpec {
            name: "command",
            version: 1,
            doc: "A step of your own: runs `run` (a shell command line) or `script` in the graph's directory. Declare `inputs` (any node outputs, any names), `outputs` (`name = \"kind\"`, or `{ kind = \"report\", dir = true }`) and `params`; in `run`, `{in.NAME}`, `{out.NAME}`, `{param.NAME}`, `{params}` (a JSON file of the params) and `{script}` become shell-quoted values, also given as DAG_IN_NAME (one path a line), DAG_OUT_NAME, DAG_PARAM_NAME, DAG_PARAMS, DAG_SCRIPT. Outputs are stored only after a zero exit.",
            inputs: vec![],
            outputs: vec![],
            params: vec![
                ParamSpec::optional(
                    "run",
                    ParamType::Str,
                    "the command line, run by `sh -c` in the graph's directory (default: the script itself)",
                ),
                ParamSpec::optional(
                    "script",
                    ParamType::Path,
                    "a script file; its content enters the key (`{script}` in `run`)",
                ),
                ParamSpec::with_default(
                    "files",
                    paths(),
                    Value::List(vec![]),
                    "local files or directories the command reads: their content enters the key",
                ),
                ParamSpec::with_default(
                    "env",
                    paths(),
                    Value::List(vec![]),
                    "files that pin the environment (`requirements.lock`, `uv.lock`): their content enters the key",
                ),
                ParamSpec::with_default(
                    "versions",
                    ParamType::List(Box::new(ParamType::Str)),
                    Value::List(vec![]),
                    "programs whose `--version` output enters the key (`python3`)",
                ),
                ParamSpec::with_default(
                    "cpu",
                    ParamType::Int,
                    Value::Int(1),
                    "CPU slots the command holds",
                )
                .min(0.0)
                .run_setting(),
                ParamSpec::with_default(
                    "gpu",
                    ParamType::Int,
                    Value::Int(0),
                    "GPU slots the command holds",
                )
                .min(0.0)
                .run_setting(),
                ParamSpec::with_default(
                    "api",
                    ParamType::Int,
                    Value::Int(0),
                    "API connections the command holds",
                )
                .min(0.0)
                .run_setting(),
                ParamSpec::optional(
                    "timeout",
                    ParamType::Int,
                    "seconds after which the command (and everything it started) is killed and the step fails",
                )
                .min(1.0)
                .run_setting(),
            ],
            resources: Resources::CPU,
        })
    }

    /// The step's own params (declared in the graph), as JSON.
    fn own_params(&self, ctx: &RunContext<'_>) -> serde_json::Map<String, serde_json::Value> {
        ctx.params()
            .iter()
            .filter(|(k, _)| self.0.param(k).is_none())
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect()
    }
}

impl Default for CommandStep {
    fn default() -> Self {
        Self::new()
    }
}

/// A placeholder of `run`: `{in.NAME}`, `{out.NAME}`, `{param.NAME}`, `{params}`,
/// `{script}`. Anything else in braces is the shell's (`{ a; b; }`, `${VAR}`).
#[derive(Debug, PartialEq)]
enum Placeholder<'a> {
    In(&'a str),
    Out(&'a str),
    Param(&'a str),
    Params,
    Script,
}

/// The pieces of a command line: literal text and placeholders, in order.
fn parse_line(line: &str) -> Vec<Result<&str, Placeholder<'_>>> {
    let mut out = vec![];
    let mut literal_start = 0;
    let mut at = 0;
    while let Some(i) = line[at..].find('{') {
        let open = at + i;
        let after_dollar = open > 0 && line.as_bytes()[open - 1] == b'$';
        let close = line[open..].find('}').map(|j| open + j);
        let body = close.map(|c| &line[open + 1..c]);
        let ph = match body {
            _ if after_dollar => None,
            Some("params") => Some(Placeholder::Params),
            Some("script") => Some(Placeholder::Script),
            Some(b) => match b.split_once('.') {
                Some(("in", n)) if is_name(n) => Some(Placeholder::In(n)),
                Some(("out", n)) if is_name(n) => Some(Placeholder::Out(n)),
                Some(("param", n)) if is_name(n) => Some(Placeholder::Param(n)),
                _ => None,
            },
            None => None,
        };
        match (ph, close) {
            (Some(ph), Some(c)) => {
                if literal_start < open {
                    out.push(Ok(&line[literal_start..open]));
                }
                out.push(Err(ph));
                literal_start = c + 1;
                at = c + 1;
            }
            _ => at = open + 1,
        }
        if at >= line.len() {
            break;
        }
    }
    if literal_start < line.len() {
        out.push(Ok(&line[literal_start..]));
    }
    out
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `s` as one shell word.
fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A param's value as the command sees it: strings as written, anything else as JSON.
fn param_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn env_name(prefix: &str, name: &str) -> String {
    format!("{prefix}{}", name.to_ascii_uppercase())
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl Node for CommandStep {
    fn spec(&self) -> &NodeSpec {
        &self.0
    }

    fn declares_ports(&self) -> bool {
        true
    }

    fn resources(&self, params: &BTreeMap<String, Value>, _connected: &[&str]) -> Resources {
        let n = |k: &str| match params.get(k) {
            Some(Value::Int(i)) => (*i).max(0) as u32,
            _ => 0,
        };
        Resources {
            cpu: n("cpu"),
            gpu: n("gpu"),
            api: n("api"),
        }
    }

    fn check_params(&self, params: &BTreeMap<String, Value>) -> Result<(), ParamError> {
        let script = params.get("script").and_then(Value::as_str);
        match (params.get("run").and_then(Value::as_str), script) {
            (None, None) => Err(ParamError::new(
                "run",
                "a command step needs `run` or `script`",
                "add `run = \"python3 {script} {in.data} {out.table}\"`, or `script = \"scripts/step.sh\"` (an executable file)",
            )),
            (Some(run), _) if run.trim().is_empty() => Err(ParamError::new(
                "run",
                "`run` is empty",
                "write the command line to run, e.g. `run = \"python3 {script}\"`",
            )),
            (None, Some(s)) if Path::new(s).exists() && !is_executable(Path::new(s)) => {
                Err(ParamError::new(
                    "script",
                    format!("`{s}` is not executable, and there is no `run` to start it"),
                    "make it executable (`chmod +x`, with a `#!` line) or add `run = \"python3 {script}\"`",
                ))
            }
            _ => Ok(()),
        }
    }

    fn check_declared(
        &self,
        spec: &NodeSpec,
        params: &BTreeMap<String, Value>,
    ) -> Result<(), ParamError> {
        let Some(run) = params.get("run").and_then(Value::as_str) else {
            return Ok(());
        };
        let names = |ports: &[dag_engine::PortSpec]| -> Vec<&str> {
            ports.iter().map(|p| p.name).collect()
        };
        let own: Vec<&str> = spec
            .params
            .iter()
            .filter(|p| self.0.param(p.name).is_none())
            .map(|p| p.name)
            .collect();
        let missing = |what: &str, name: &str, have: Vec<&str>, declare: &str| {
            let listed = if have.is_empty() {
                format!("this step declares no {what}s: add `{declare}`")
            } else {
                format!(
                    "its {what}s are {}",
                    have.iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            Err(ParamError::new(
                "run",
                format!("`run` names the {what} `{name}`, which this step does not declare"),
                listed,
            ))
        };
        for piece in parse_line(run) {
            match piece {
                Err(Placeholder::In(n)) if spec.input(n).is_none() => {
                    return missing(
                        "input",
                        n,
                        names(&spec.inputs),
                        &format!("inputs = {{ {n} = \"NODE.PORT\" }}"),
                    );
                }
                Err(Placeholder::Out(n)) if spec.output(n).is_none() => {
                    return missing(
                        "output",
                        n,
                        names(&spec.outputs),
                        &format!("outputs = {{ {n} = \"file\" }}"),
                    );
                }
                Err(Placeholder::Param(n)) if !own.contains(&n) => {
                    return missing(
                        "param",
                        n,
                        own.clone(),
                        &format!("params = {{ {n} = ... }}"),
                    );
                }
                Err(Placeholder::Script) if !params.contains_key("script") => {
                    return Err(ParamError::new(
                        "run",
                        "`run` uses `{script}` but the step has no `script`",
                        "add `script = \"scripts/NAME.py\"`",
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn key_material(
        &self,
        params: &BTreeMap<String, Value>,
    ) -> Result<Option<serde_json::Value>, String> {
        let programs: Vec<&str> = match params.get("versions") {
            Some(Value::List(l)) => l.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if programs.is_empty() {
            return Ok(None);
        }
        let mut versions = serde_json::Map::new();
        for p in programs {
            versions.insert(p.to_string(), version_of(p)?.into());
        }
        Ok(Some(serde_json::json!({ "versions": versions })))
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let spec = ctx.spec();
        let script = ctx.str("script").map(str::to_string);
        let params = self.own_params(ctx);
        let logs = log_dir(ctx)?;
        let params_path = params_file(&logs, &params)?;
        let mut in_paths: HashMap<&str, Vec<String>> = HashMap::new();
        for port in &spec.inputs {
            for a in ctx.inputs(port.name) {
                in_paths
                    .entry(port.name)
                    .or_default()
                    .push(a.path.display().to_string());
            }
        }
        let out_paths: BTreeMap<&str, PathBuf> = spec
            .outputs
            .iter()
            .map(|p| (p.name, ctx.output_path(p.name)))
            .collect();

        let mut cmd = match ctx.str("run") {
            Some(line) => {
                let mut text = String::new();
                for piece in parse_line(line) {
                    match piece {
                        Ok(lit) => text.push_str(lit),
                        Err(Placeholder::In(n)) => {
                            let quoted: Vec<String> = in_paths
                                .get(n)
                                .into_iter()
                                .flatten()
                                .map(|p| quote(p))
                                .collect();
                            text.push_str(&quoted.join(" "));
                        }
                        Err(Placeholder::Out(n)) => {
                            text.push_str(&quote(&out_paths[n].display().to_string()))
                        }
                        Err(Placeholder::Param(n)) => text
                            .push_str(&quote(&params.get(n).map(param_text).unwrap_or_default())),
                        Err(Placeholder::Params) => {
                            text.push_str(&quote(&params_path.display().to_string()))
                        }
                        Err(Placeholder::Script) => {
                            text.push_str(&quote(script.as_deref().unwrap_or_default()))
                        }
                    }
                }
                let mut c = Command::new("sh");
                c.arg("-c").arg(text);
                c
            }
            None => Command::new(script.as_deref().unwrap_or_default()),
        };
        for (port, paths) in &in_paths {
            cmd.env(env_name("DAG_IN_", port), paths.join("\n"));
        }
        for (port, path) in &out_paths {
            cmd.env(env_name("DAG_OUT_", port), path);
        }
        for (k, v) in &params {
            cmd.env(env_name("DAG_PARAM_", k), param_text(v));
        }
        if let Some(s) = &script {
            cmd.env("DAG_SCRIPT", s);
        }
        cmd.env("DAG_PARAMS", &params_path)
            .env("DAG_INSTANCE", ctx.instance())
            .current_dir(ctx.graph_dir());
        // One log for both streams, in the order they were written. (Each file a step
        // creates costs an inode allocation, the largest part of a small step's overhead.)
        let log = logs.join(format!("{}.log", file_safe(ctx.instance())));
        let stdout = create(&log)?;
        let stderr = stdout
            .try_clone()
            .map_err(|e| NodeError::caused("Failed to share the log file", &e))?;
        cmd.stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            // Its own process group: a kill reaches whatever the command started.
            .process_group(0);
        let timeout = ctx.int("timeout").map(|s| Duration::from_secs(s as u64));
        let outcome = run_to_end(ctx, cmd, timeout)?;
        match outcome {
            Ended::Exited(status) if status.success() => {}
            Ended::Exited(status) => {
                return Err(NodeError {
                    message: format!("The command of `{}` exited with {status}", ctx.instance()),
                    causes: tail(&log, 20),
                    hint: Some(format!(
                        "the last lines of its output are above, all of it in {}; nothing it wrote was stored",
                        log.display()
                    )),
                    cancelled: false,
                });
            }
            Ended::TimedOut(after) => {
                return Err(NodeError {
                    message: format!(
                        "The command of `{}` ran past its timeout of {} s and was killed",
                        ctx.instance(),
                        after.as_secs()
                    ),
                    causes: tail(&log, 20),
                    hint: Some(format!(
                        "raise `timeout` if it needs longer; its output so far is in {}",
                        log.display()
                    )),
                    cancelled: false,
                });
            }
        }
        for port in &spec.outputs {
            let meta = check_output(port, &out_paths[port.name], ctx.instance())?;
            if let Some(m) = meta {
                ctx.set_meta(port.name, m);
            }
        }
        Ok(())
    }
}

fn write(path: &Path, text: &str) -> Result<(), NodeError> {
    std::fs::write(path, text)
        .map_err(|e| NodeError::caused(format!("Failed to write `{}`", path.display()), &e))
}

fn create(path: &Path) -> Result<std::fs::File, NodeError> {
    std::fs::File::create(path)
        .map_err(|e| NodeError::caused(format!("Failed to create `{}`", path.display()), &e))
}

/// Where the commands of this run keep their logs and params files: beside the run's
/// log, kept after the run (a failure points at them).
fn log_dir(ctx: &RunContext<'_>) -> Result<PathBuf, NodeError> {
    let dir = ctx.store_root().join("logs").join(ctx.run_id());
    std::fs::create_dir_all(&dir)
        .map_err(|e| NodeError::caused(format!("Failed to create `{}`", dir.display()), &e))?;
    Ok(dir)
}

fn file_safe(instance: &str) -> String {
    let keep = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    instance
        .chars()
        .map(|c| if keep(c) { c } else { '_' })
        .collect()
}

/// The params file of a step, named by its content: steps with the same params (most of
/// a generated graph's have none) share one file, written once.
fn params_file(
    dir: &Path,
    params: &serde_json::Map<String, serde_json::Value>,
) -> Result<PathBuf, NodeError> {
    static WRITTEN: OnceLock<Mutex<std::collections::HashSet<PathBuf>>> = OnceLock::new();
    let text = serde_json::Value::Object(params.clone()).to_string();
    let name = blake3::hash(text.as_bytes()).to_hex();
    let path = dir.join(format!("params-{}.json", &name[..16]));
    let mut written = WRITTEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if !written.contains(&path) {
        write(&path, &text)?;
        written.insert(path.clone());
    }
    Ok(path)
}

/// The last `n` lines of a log file.
fn tail(path: &Path, n: usize) -> Vec<String> {
    let Ok(mut f) = std::fs::File::open(path) else {
        return vec![];
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(8192)));
    let mut s = String::new();
    let _ = f.take(8192).read_to_string(&mut s);
    let lines: Vec<String> = s.lines().map(str::to_string).collect();
    let skip = lines.len().saturating_sub(n);
    lines.into_iter().skip(skip).collect()
}

enum Ended {
    Exited(std::process::ExitStatus),
    TimedOut(Duration),
}

/// Runs `cmd` until it exits, killing its process group on Ctrl-C or at the timeout. The
/// wait itself blocks (a command ends the moment it exits, not at the next poll); one
/// watcher thread for the whole process looks at every running command's cancel flag and
/// deadline every 50 ms (a thread per command cost more than a small command itself).
fn run_to_end(
    ctx: &RunContext<'_>,
    mut cmd: Command,
    timeout: Option<Duration>,
) -> Result<Ended, NodeError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd.spawn().map_err(|e| {
        NodeError::caused(format!("Failed to start `{program}`"), &e)
            .hint("check the command line; a script run by itself needs a `#!` line and the executable bit")
    })?;
    let pid = child.id() as i32;
    let watched = Watched {
        pid,
        cancel: ctx.cancel_flag(),
        deadline: timeout.map(|t| Instant::now() + t),
        timed_out: Default::default(),
    };
    let timed_out = watched.timed_out.clone();
    watcher()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(watched);
    let status = child.wait();
    watcher()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|w| w.pid != pid);
    let status = status.map_err(|e| NodeError::caused("Failed to wait for the command", &e))?;
    ctx.check_cancelled()?;
    Ok(match timeout {
        Some(t) if timed_out.load(Ordering::Relaxed) => Ended::TimedOut(t),
        _ => Ended::Exited(status),
    })
}

/// A running command the watcher looks after.
struct Watched {
    pid: i32,
    cancel: std::sync::Arc<std::sync::atomic::AtomicBool>,
    deadline: Option<Instant>,
    timed_out: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// The running commands, and the thread that kills them when their run is cancelled or
/// their time is up (started with the first command).
fn watcher() -> &'static Mutex<Vec<Watched>> {
    static RUNNING: OnceLock<Mutex<Vec<Watched>>> = OnceLock::new();
    RUNNING.get_or_init(|| {
        std::thread::spawn(|| {
            loop {
                std::thread::sleep(Duration::from_millis(50));
                let mut running = watcher().lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                running.retain(|w| {
                    let late = w.deadline.is_some_and(|d| now >= d);
                    if late || w.cancel.load(Ordering::Relaxed) {
                        w.timed_out.store(late, Ordering::Relaxed);
                        kill_group(w.pid);
                        false
                    } else {
                        true
                    }
                });
            }
        });
        Mutex::new(Vec::new())
    })
}

/// SIGKILL to the process group `pgid` (the command and everything it started).
fn kill_group(pgid: i32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// `program --version`, once per process (a no-op run over 10,000 steps asks once).
fn version_of(program: &str) -> Result<String, String> {
    static SEEN: OnceLock<Mutex<HashMap<String, Result<String, String>>>> = OnceLock::new();
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    seen.entry(program.to_string())
        .or_insert_with(|| {
            let out = Command::new(program)
                .arg("--version")
                .stdin(Stdio::null())
                .output()
                .map_err(|e| {
                    format!(
                        "Failed to run `{program} --version` (listed in `versions`): {e}\n  hint: install it or take it out of `versions`"
                    )
                })?;
            if !out.status.success() {
                return Err(format!(
                    "`{program} --version` exited with {} (listed in `versions`)\n  hint: `versions` lists programs that answer `--version`",
                    out.status
                ));
            }
            let mut text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if text.is_empty() {
                // Python 2 and some tools print their version on standard error.
                text = String::from_utf8_lossy(&out.stderr).trim().to_string();
            }
            Ok(text)
        })
        .clone()
}

/// Checks that the command wrote output `port` as declared, and returns its metadata
/// (rows for row kinds). A list output's element directories are renamed into the order
/// the store lists them in (by name).
fn check_output(
    port: &dag_engine::PortSpec,
    path: &Path,
    instance: &str,
) -> Result<Option<serde_json::Value>, NodeError> {
    let var = env_name("DAG_OUT_", port.name);
    let is_list = port.kind.element().is_some();
    let want_dir = port.dir || is_list;
    let what = if want_dir { "a directory" } else { "a file" };
    let meta = std::fs::metadata(path);
    let wrong = |found: &str| {
        Err(NodeError::msg(format!(
            "The command of `{instance}` exited 0 but {found} its output `{}` ({what} of kind {}) at {}",
            port.name,
            port.kind,
            path.display()
        ))
        .hint(format!(
            "write it to `{{out.{}}}` (also ${var}); nothing was stored",
            port.name
        )))
    };
    match meta {
        Err(_) => return wrong("did not write"),
        Ok(m) if want_dir && !m.is_dir() => return wrong("wrote a file, not a directory, as"),
        Ok(m) if !want_dir && m.is_dir() => {
            return wrong("wrote a directory, not a file, as").map_err(|e| {
                e.hint(format!(
                    "declare it `{} = {{ kind = \"{}\", dir = true }}`, or write one file",
                    port.name, port.kind
                ))
            });
        }
        Ok(_) => {}
    }
    if is_list {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| NodeError::caused(format!("Failed to list `{}`", path.display()), &e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        dirs.sort();
        for (i, d) in dirs.iter().enumerate() {
            let name = d.file_name().unwrap_or_default().to_string_lossy();
            if !d.is_dir() {
                return Err(NodeError::msg(format!(
                    "Output `{}` of `{instance}` is a list of {}, but `{name}` in it is not a directory",
                    port.name,
                    port.kind.element().map(ArtifactKind::name).unwrap_or_default()
                ))
                .hint("write one directory per element (`step-10/`, `step-20/`)"));
            }
            let to = path.join(format!("{i:06}-{name}"));
            std::fs::rename(d, &to).map_err(|e| {
                NodeError::caused(format!("Failed to rename `{}`", d.display()), &e)
            })?;
        }
        return Ok(Some(serde_json::json!({ "elements": dirs.len() })));
    }
    if port.kind.is_rows() && !port.dir {
        let text = std::fs::read_to_string(path).map_err(|e| {
            NodeError::caused(format!("Failed to read output `{}`", port.name), &e).hint(format!(
                "a {} is JSON lines, one object per line (UTF-8)",
                port.kind
            ))
        })?;
        let mut rows = 0usize;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<serde_json::Value>(line) {
                Ok(serde_json::Value::Object(_)) => rows += 1,
                _ => {
                    return Err(NodeError::msg(format!(
                        "Output `{}` of `{instance}` is declared a {}, but its line {} is not a JSON object",
                        port.name,
                        port.kind,
                        i + 1
                    ))
                    .hint(format!(
                        "write one JSON object per line, or declare the output `{} = \"file\"`",
                        port.name
                    )));
                }
            }
        }
        return Ok(Some(serde_json::json!({ "rows": rows })));
    }
    if port.kind == ArtifactKind::Metrics && !port.dir {
        let text = std::fs::read(path).unwrap_or_default();
        if serde_json::from_slice::<serde_json::Value>(&text).is_err() {
            return Err(NodeError::msg(format!(
                "Output `{}` of `{instance}` is declared metrics, but it is not JSON",
                port.name
            ))
            .hint(format!(
                "write a JSON object of numbers, or declare the output `{} = \"file\"`",
                port.name
            )));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_ours_and_braces_are_the_shells() {
        let p = parse_line(
            "{ echo s1; cat {in.in} | cksum; } > {out.out} ${HOME} {param.n} {params} {script}",
        );
        assert_eq!(
            p,
            vec![
                Ok("{ echo s1; cat "),
                Err(Placeholder::In("in")),
                Ok(" | cksum; } > "),
                Err(Placeholder::Out("out")),
                Ok(" ${HOME} "),
                Err(Placeholder::Param("n")),
                Ok(" "),
                Err(Placeholder::Params),
                Ok(" "),
                Err(Placeholder::Script),
            ]
        );
        assert_eq!(
            parse_line("awk '{print $1}' {x.y}"),
            vec![Ok("awk '{print $1}' {x.y}")]
        );
        assert_eq!(parse_line("{in.a}"), vec![Err(Placeholder::In("a"))]);
        assert_eq!(parse_line("a {"), vec![Ok("a {")]);
    }

    #[test]
    fn quoting_survives_the_shell() {
        for s in ["plain/path.txt", "with space", "it's", "", "$HOME", "a\"b"] {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s);
        }
    }
}
