//! Judge calls per second: dag's client (`dag_judge::remote::run_calls`) beside a plain Python
//! asyncio client (`openai.AsyncOpenAI`, and bare `httpx.AsyncClient`), the same calls against
//! the same llmock server on loopback, in one run.
//!
//! ```text
//! cargo bench -p dag-judge --bench throughput
//! ```
//!
//! Two server settings: llmock answering at once (it has no latency unless told), and llmock
//! holding every request `DAG_BENCH_LATENCY_MS` (50) before answering, where only concurrency
//! buys throughput. At each concurrency (`DAG_BENCH_CONCURRENCY`, `1,8,64`) every client makes
//! N distinct calls (`DAG_BENCH_CALLS`: one number, or one per concurrency; `200,1000,1000`),
//! `DAG_BENCH_REPS` (3) times, interleaved; the table gives the median calls/s. llmock's
//! journal proves each run sent exactly its N requests, each once, and tells how many were in
//! flight at the server at most.
//!
//! dag's clock covers one `run_calls` (its HTTP client and runtime built inside, the calls
//! prepared before it), with each reply serialised to JSON in `on_done` as a node does; the
//! Python clock covers the calls after its client is built. Beside calls/s the bench prints each
//! client's CPU time per call and llmock's CPU use, since on a small machine the server
//! (Python, one process) is often what limits the rate.
//!
//! The first run installs llmock 0.2.2, openai and httpx into `$DAG_CACHE/venv-judge-bench`
//! (`PYTHON`, default `python3`, makes the venv). The Python side is
//! `nodes/judge/benches/judge_client.py`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use dag_judge::remote::{Budget, Call, Endpoint, run_calls};
use dag_judge::retry::RetryPolicy;
use dag_judge::{JudgeId, JudgeRequest, Message, call_key};
use serde_json::Value;

type Error = Box<dyn std::error::Error>;

/// What the bench venv holds; the marker file records it, so a changed list reinstalls.
const PACKAGES: &[&str] = &["llmock==0.2.2", "openai==3.57.0", "httpx==0.28.1"];
const MODEL: &str = "judge-bench";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T, Error> {
    match std::env::var(name) {
        Ok(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("{name}={s:?} is not a valid value").into()),
        Err(_) => Ok(default),
    }
}

fn env_list(name: &str, default: &[usize]) -> Result<Vec<usize>, Error> {
    match std::env::var(name) {
        Ok(s) => s
            .split(',')
            .map(|x| x.trim().parse::<usize>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| format!("{name}={s:?}: expected numbers separated by commas").into()),
        Err(_) => Ok(default.to_vec()),
    }
}

/// Runs `cmd` to completion; a failure to start or a non-zero exit is an error that says
/// what ran and the end of what it printed.
fn run_checked(cmd: &mut Command, what: &str) -> Result<std::process::Output, Error> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not run {what}: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!("{what} failed ({}):\n{}", out.status, tail.join("\n")).into());
    }
    Ok(out)
}

/// The bench venv, installed if absent (or if an earlier install was interrupted: the marker
/// is written last).
fn venv() -> Result<PathBuf, Error> {
    let cache = std::env::var_os("DAG_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/dag")))
        .ok_or("neither DAG_CACHE nor HOME is set")?;
    let venv = cache.join("venv-judge-bench");
    let marker = venv.join(".installed");
    let want = PACKAGES.join(" ");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(want.as_str()) {
        return Ok(venv);
    }
    eprintln!("installing {want} into {} (once)", venv.display());
    if venv.exists() {
        std::fs::remove_dir_all(&venv)
            .map_err(|e| format!("could not remove {}: {e}", venv.display()))?;
    }
    std::fs::create_dir_all(&cache)?;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    run_checked(
        Command::new(&python).args(["-m", "venv"]).arg(&venv),
        &format!(
            "`{python} -m venv {}` (set PYTHON to a Python 3 with venv)",
            venv.display()
        ),
    )?;
    run_checked(
        Command::new(venv.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(PACKAGES),
        &format!("`pip install {want}` into {}", venv.display()),
    )?;
    std::fs::write(&marker, &want)?;
    Ok(venv)
}

/// CPU seconds this process has run so far: the sum over its threads of the kernel's
/// nanosecond counters (`/proc/self/task/*/schedstat`). Exact as long as no thread ends in
/// between, which holds here: `run_calls` works on the calling thread.
fn own_cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return f64::NAN;
    };
    let ns: u64 = tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    ns as f64 / 1e9
}

/// User + system CPU seconds of process `pid` so far, its ended threads included
/// (`/proc/PID/stat`, in clock ticks of 1/`ticks` s). llmock answers chat completions on a
/// pool of threads that come and go, which a sum over live threads would miss.
fn process_cpu_seconds(pid: u32, ticks: f64) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // The fields after the command name (in parentheses, and it may hold spaces): the state
    // is the first of them, utime the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (field(11) + field(12)) / ticks
}

/// Clock ticks per second of `/proc/*/stat`.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// `llmock serve` with two changes: it dies with this process (`PR_SET_PDEATHSIG`), and
/// uvicorn keeps idle connections for 300 s instead of 5. With 5 s, a pooled connection that
/// sat idle (an admin connection during a run, one of 64 while the pool favoured others) can
/// be closed by the server just as a client reuses it, and the request fails (`httpx.ReadError`
/// seen here; dag and openai would retry it, and the journal would count one request too many).
const LLMOCK_MAIN: &str = "\
import ctypes, functools, sys
try:
    ctypes.CDLL(None).prctl(1, 15)  # PR_SET_PDEATHSIG = 1, SIGTERM = 15
except Exception:
    pass
import uvicorn
uvicorn.run = functools.partial(uvicorn.run, timeout_keep_alive=300)
from llmock.cli import app
sys.argv[0] = 'llmock'
app()
";

/// A running llmock, killed when dropped (and, through `PR_SET_PDEATHSIG`, when this process
/// dies without unwinding).
struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
    admin: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

impl Server {
    fn start(venv: &Path, latency_ms: u64) -> Result<Server, Error> {
        // A free port: bound and released; llmock binds it right after.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = std::env::temp_dir().join(format!(
            "dag-judge-bench-llmock-{}-{port}.log",
            std::process::id()
        ));
        let mut cmd = Command::new(venv.join("bin/python"));
        cmd.args(["-c", LLMOCK_MAIN])
            .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--response-style",
                "echo",
                "--latency-ms",
                &latency_ms.to_string(),
            ])
            // uvicorn's access log (info) costs the server a line per request.
            .args(["--log-level", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        let child = cmd
            .spawn()
            .map_err(|e| format!("could not start llmock: {e}"))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut server = Server {
            child,
            port,
            log,
            // A fresh connection per admin request: none sits idle between runs.
            admin: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()?,
            rt,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = server.child.try_wait()? {
                let err = std::fs::read_to_string(&server.log).unwrap_or_default();
                return Err(format!("llmock exited ({status}):\n{err}").into());
            }
            if Instant::now() > deadline {
                return Err("llmock did not listen within 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    fn admin(&self, post: bool, path: &str) -> Result<Value, Error> {
        let url = format!("http://127.0.0.1:{}/_llmock/{path}", self.port);
        let req = if post {
            self.admin
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body("{}")
        } else {
            self.admin.get(&url)
        };
        let bytes = self
            .rt
            .block_on(async move {
                let resp = req.send().await?.error_for_status()?;
                resp.bytes().await
            })
            .map_err(|e| {
                let mut s = format!("{url}: {e}");
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    s.push_str(&format!(": {cause}"));
                    source = cause.source();
                }
                s
            })?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    fn reset(&self) -> Result<(), Error> {
        self.admin(true, "reset").map(|_| ())
    }

    /// Checks that the server got exactly the `n` requests of run `tag`, each once, each
    /// answered 200; returns the most that were in flight at the server at once and the mean
    /// time the server held a request (ms, from its middleware's start to the response sent).
    fn check(&self, n: usize, tag: &str, who: &str) -> Result<(usize, f64), Error> {
        let journal = self.admin(false, "requests")?;
        let requests: Vec<&Value> = journal["requests"]
            .as_array()
            .ok_or("llmock's journal has no `requests`")?
            .iter()
            .filter(|r| r["path"] == "/v1/chat/completions")
            .collect();
        let mut prompts: Vec<&str> = requests
            .iter()
            .map(|r| r["body"]["messages"][0]["content"].as_str().unwrap_or(""))
            .collect();
        prompts.sort_unstable();
        prompts.dedup();
        let mut want: Vec<String> = (0..n).map(|i| prompt(i, tag)).collect();
        want.sort_unstable();
        let failed = requests.iter().filter(|r| r["status"] != 200).count();
        if requests.len() != n || prompts != want || failed > 0 {
            return Err(format!(
                "{who}: the server got {} requests ({} distinct, {failed} not answered 200), \
                 expected exactly {n} distinct ones",
                requests.len(),
                prompts.len()
            )
            .into());
        }
        // The most requests in flight at once: ends sort before starts at the same instant.
        let mut events: Vec<(f64, i32)> = requests
            .iter()
            .flat_map(|r| {
                let s = r["started_at"].as_f64().unwrap_or(0.0);
                let e = r["ended_at"].as_f64().unwrap_or(s);
                [(s, 1), (e, -1)]
            })
            .collect();
        events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let (mut now, mut peak, mut held) = (0i32, 0i32, 0.0f64);
        for (t, d) in events {
            now += d;
            peak = peak.max(now);
            held -= t * f64::from(d);
        }
        Ok((peak as usize, held / n as f64 * 1e3))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The 1-minute load average, to tell a quiet machine from a busy one.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn prompt(i: usize, tag: &str) -> String {
    format!("bench call {i} of {tag}")
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Client {
    Dag,
    OpenAi,
    Httpx,
}

impl Client {
    const ALL: [Client; 3] = [Client::Dag, Client::OpenAi, Client::Httpx];

    fn name(self) -> &'static str {
        match self {
            Client::Dag => "dag",
            Client::OpenAi => "openai",
            Client::Httpx => "httpx",
        }
    }
}

/// One measured run.
#[derive(Clone, Copy, Debug)]
struct Measure {
    seconds: f64,
    /// The client process's CPU seconds over the run.
    cpu: f64,
    /// llmock's CPU seconds over the run.
    server_cpu: f64,
    /// Requests in flight at the server at most.
    peak: usize,
    /// The mean time llmock held a request, ms.
    held_ms: f64,
}

/// `n` calls through `run_calls`, `concurrency` at a time; each reply serialised to JSON as a
/// node does before it persists it.
fn dag_run(url: &str, n: usize, concurrency: usize, tag: &str) -> Result<Measure, Error> {
    let judge = JudgeId::new(url, MODEL);
    let calls: Vec<Call> = (0..n)
        .map(|i| {
            let request = JudgeRequest {
                messages: vec![Message::user(prompt(i, tag))],
                temperature: 0.0,
                max_tokens: 16,
                seed: None,
                response_format: None,
            };
            Call {
                key: call_key(&judge, &request, 0),
                judge: judge.clone(),
                request,
            }
        })
        .collect();
    let endpoint = Endpoint {
        base_url: url.to_string(),
        api_key: None,
        concurrency,
        shared_slots: None,
        timeout: Duration::from_secs(60),
        retry: RetryPolicy::default(),
    };
    let (mut done, mut bytes, mut retries) = (0usize, 0usize, 0usize);
    let cpu0 = own_cpu_seconds();
    let t0 = Instant::now();
    let outcome = run_calls(
        &endpoint,
        calls,
        Arc::new(Budget::new(None, "max_calls")),
        Arc::new(AtomicBool::new(false)),
        |_| retries += 1,
        |_, result, _| {
            let reply = result.map_err(|e| e.to_string())?;
            bytes += serde_json::to_vec(&reply).map_err(|e| e.to_string())?.len();
            done += 1;
            Ok::<(), String>(())
        },
    );
    let seconds = t0.elapsed().as_secs_f64();
    let cpu = own_cpu_seconds() - cpu0;
    outcome
        .map_err(|e| format!("dag: {e}"))?
        .map_err(|e| format!("dag: a call failed: {e}"))?;
    if done != n || bytes == 0 || retries > 0 {
        return Err(format!("dag: {done} of {n} calls answered, {retries} retries").into());
    }
    Ok(Measure {
        seconds,
        cpu,
        server_cpu: 0.0,
        peak: 0,
        held_ms: 0.0,
    })
}

/// The same calls made by `judge_client.py`, which reports its own clock and CPU.
fn python_run(
    venv: &Path,
    client: Client,
    url: &str,
    n: usize,
    concurrency: usize,
    tag: &str,
) -> Result<Measure, Error> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/judge_client.py");
    let out = run_checked(
        Command::new(venv.join("bin/python"))
            .arg(&script)
            .args(["--url", url, "--client", client.name(), "--tag", tag])
            .args(["--calls", &n.to_string()])
            .args(["--concurrency", &concurrency.to_string()]),
        &format!("{} --client {}", script.display(), client.name()),
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| format!("{}: no JSON line in its output: {stdout}", client.name()))?;
    if v["calls"].as_u64() != Some(n as u64) {
        return Err(format!("{}: answered {} of {n} calls", client.name(), v["calls"]).into());
    }
    Ok(Measure {
        seconds: v["seconds"].as_f64().ok_or("no `seconds`")?,
        cpu: v["cpu_s"].as_f64().unwrap_or(f64::NAN),
        server_cpu: 0.0,
        peak: 0,
        held_ms: 0.0,
    })
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

struct Row {
    latency_ms: u64,
    concurrency: usize,
    calls: usize,
    /// Per client, every repetition.
    runs: Vec<(Client, Measure)>,
}

impl Row {
    fn of(&self, c: Client) -> impl Iterator<Item = &Measure> {
        self.runs
            .iter()
            .filter(move |(k, _)| *k == c)
            .map(|(_, m)| m)
    }

    fn rate(&self, c: Client) -> f64 {
        median(self.of(c).map(|m| self.calls as f64 / m.seconds).collect())
    }

    fn rates(&self, c: Client) -> String {
        let v: Vec<String> = self
            .of(c)
            .map(|m| format!("{:.0}", self.calls as f64 / m.seconds))
            .collect();
        v.join("/")
    }

    fn cpu_us(&self, c: Client) -> f64 {
        median(
            self.of(c)
                .map(|m| m.cpu / self.calls as f64 * 1e6)
                .collect(),
        )
    }

    fn server_pct(&self, c: Client) -> f64 {
        median(
            self.of(c)
                .map(|m| m.server_cpu / m.seconds * 100.0)
                .collect(),
        )
    }

    fn held_ms(&self, c: Client) -> f64 {
        median(self.of(c).map(|m| m.held_ms).collect())
    }

    fn peak(&self, c: Client) -> usize {
        self.of(c).map(|m| m.peak).max().unwrap_or(0)
    }
}

fn run() -> Result<(), Error> {
    let concurrencies = env_list("DAG_BENCH_CONCURRENCY", &[1, 8, 64])?;
    // Unset: 200 calls at concurrency 1, 1000 above; one number: that many everywhere; a
    // list: one per concurrency (its last for any beyond it).
    let calls = env_list("DAG_BENCH_CALLS", &[])?;
    let calls_at = |i: usize, c: usize| -> usize {
        match calls.last() {
            None if c == 1 => 200,
            None => 1000,
            Some(&last) => calls.get(i).copied().unwrap_or(last),
        }
    };
    let reps: usize = env_or("DAG_BENCH_REPS", 3)?;
    let latency: u64 = env_or("DAG_BENCH_LATENCY_MS", 50)?;
    let ticks = clock_ticks();
    let venv = venv()?;
    let load_before = loadavg();
    let mut rows = Vec::new();
    for latency_ms in [0, latency] {
        let server = Server::start(&venv, latency_ms)?;
        let url = server.url();
        // Warm-up, not measured: the server's first requests, the interpreter's page cache.
        for client in Client::ALL {
            let tag = format!("warm-up-{}", client.name());
            match client {
                Client::Dag => dag_run(&url, 20, 4, &tag).map(|_| ())?,
                _ => python_run(&venv, client, &url, 20, 4, &tag).map(|_| ())?,
            }
        }
        for (i, &concurrency) in concurrencies.iter().enumerate() {
            let n = calls_at(i, concurrency);
            let mut row = Row {
                latency_ms,
                concurrency,
                calls: n,
                runs: Vec::new(),
            };
            // Interleaved, so that the machine's drift is spread over every client.
            for rep in 0..reps {
                for client in Client::ALL {
                    let tag = format!("{}-{latency_ms}ms-c{concurrency}-r{rep}", client.name());
                    server.reset()?;
                    let server_cpu0 = process_cpu_seconds(server.child.id(), ticks);
                    let mut m = match client {
                        Client::Dag => dag_run(&url, n, concurrency, &tag)?,
                        _ => python_run(&venv, client, &url, n, concurrency, &tag)?,
                    };
                    m.server_cpu = process_cpu_seconds(server.child.id(), ticks) - server_cpu0;
                    (m.peak, m.held_ms) = server.check(n, &tag, client.name())?;
                    eprintln!(
                        "latency {latency_ms:>3} ms  concurrency {concurrency:>3}  {:<6} run {}: \
                         {n} calls in {:.2} s = {:.0} calls/s (client CPU {:.2} s, llmock CPU \
                         {:.2} s, {} in flight at most, each held {:.1} ms)",
                        client.name(),
                        rep + 1,
                        m.seconds,
                        n as f64 / m.seconds,
                        m.cpu,
                        m.server_cpu,
                        m.peak,
                        m.held_ms
                    );
                    row.runs.push((client, m));
                }
            }
            rows.push(row);
        }
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!(
        "judge calls/s, median of {reps}: llmock 0.2.2 (echo) on loopback, {cores} cores, \
         openai 3.57.0, httpx 0.28.1; load average {load_before} before, {} after",
        loadavg()
    );
    println!(
        "{:>8} {:>5} {:>6} {:>8} {:>10} {:>9} {:>11} {:>10} {:>7}",
        "latency",
        "conc",
        "calls",
        "dag",
        "py-openai",
        "py-httpx",
        "dag/openai",
        "dag/httpx",
        "ideal"
    );
    for r in &rows {
        let (d, o, h) = (
            r.rate(Client::Dag),
            r.rate(Client::OpenAi),
            r.rate(Client::Httpx),
        );
        let ideal = if r.latency_ms == 0 {
            "-".to_string()
        } else {
            format!("{:.0}", r.concurrency as f64 * 1000.0 / r.latency_ms as f64)
        };
        println!(
            "{:>5} ms {:>5} {:>6} {:>8.0} {:>10.0} {:>9.0} {:>10.2}x {:>9.2}x {:>7}",
            r.latency_ms,
            r.concurrency,
            r.calls,
            d,
            o,
            h,
            d / o,
            d / h,
            ideal
        );
    }
    println!();
    println!(
        "per run (dag | openai | httpx calls/s), client CPU µs per call, llmock CPU % of one \
         core, ms llmock held a request, requests in flight at the server at most"
    );
    println!(
        "{:>8} {:>5}  {:<38} {:>18} {:>13} {:>15} {:>10}",
        "latency",
        "conc",
        "runs",
        "client CPU µs/call",
        "llmock CPU %",
        "llmock ms/req",
        "in flight"
    );
    for r in &rows {
        let runs = format!(
            "{} | {} | {}",
            r.rates(Client::Dag),
            r.rates(Client::OpenAi),
            r.rates(Client::Httpx)
        );
        let triple = |f: &dyn Fn(Client) -> f64| {
            Client::ALL
                .iter()
                .map(|&c| format!("{:.0}", f(c)))
                .collect::<Vec<_>>()
                .join("/")
        };
        let peaks: Vec<String> = Client::ALL.iter().map(|&c| r.peak(c).to_string()).collect();
        println!(
            "{:>5} ms {:>5}  {:<38} {:>18} {:>13} {:>15} {:>10}",
            r.latency_ms,
            r.concurrency,
            runs,
            triple(&|c| r.cpu_us(c)),
            triple(&|c| r.server_pct(c)),
            Client::ALL
                .iter()
                .map(|&c| format!("{:.1}", r.held_ms(c)))
                .collect::<Vec<_>>()
                .join("/"),
            peaks.join("/")
        );
    }
    Ok(())
}

fn main() {
    // The server is dropped (killed) inside `run`, before this exits.
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
