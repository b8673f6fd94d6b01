//! Real components the end-to-end tests start themselves: Python tools in venvs of their own
//! under the cache (installed once per machine), and llmock, an OpenAI-compatible server
//! with scripted faults and a journal of every request it got, on a free loopback port.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const LLMOCK: &str = "llmock==0.2.2";

/// `package` in a venv of its own under the cache, installed once (the marker file is
/// written after a complete install, so an interrupted one is redone); returns the venv.
pub fn venv(name: &str, package: &str) -> PathBuf {
    let cache = std::env::var_os("DAG_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("dag-test-cache"));
    let venv = cache.join(name);
    let done = venv.join(".installed");
    if !done.exists() {
        let _ = std::fs::remove_dir_all(&venv);
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let ok = Command::new(&python)
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 runs")
            .success()
            && Command::new(venv.join("bin/python"))
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    package,
                ])
                .status()
                .expect("pip runs")
                .success();
        assert!(ok, "Failed to install {package} into {}", venv.display());
        std::fs::write(&done, package).unwrap();
    }
    venv
}

/// A child process killed when dropped (a failed assertion must not leave it running).
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port nothing listens on: bound and released; the server binds it right after.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something listens on `port`, failing if `child` exits first.
pub fn wait_listening(child: &mut Child, port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("{what} exited ({status}): {err}");
        }
        assert!(Instant::now() < deadline, "{what} did not start listening");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running llmock, stopped when dropped.
pub struct Llmock {
    _child: Running,
    port: u16,
}

impl Llmock {
    /// Starts one (installing llmock the first time).
    pub fn start() -> Llmock {
        static BIN: OnceLock<PathBuf> = OnceLock::new();
        let bin = BIN.get_or_init(|| venv("venv-llmock-0.2.2", LLMOCK).join("bin/llmock"));
        let port = free_port();
        let mut child = Command::new(bin)
            .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--response-style", "echo"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("llmock starts");
        wait_listening(&mut child, port, "llmock");
        Llmock {
            _child: Running(child),
            port,
        }
    }

    /// The API's base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    fn post(&self, path: &str, body: &Value) {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--fail-with-body",
                "-X",
                "POST",
                "-H",
                "content-type: application/json",
                "--data",
            ])
            .arg(body.to_string())
            .arg(format!("http://127.0.0.1:{}{path}", self.port))
            .output()
            .expect("curl runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Scripts the server: `behaviors` as llmock takes them; the journal starts empty.
    pub fn script(&self, behaviors: Value) {
        self.post("/_llmock/reset", &json!({}));
        self.post("/_llmock/scenario", &json!({ "behaviors": behaviors }));
    }

    /// Every chat request the server received, in order.
    pub fn journal(&self) -> Vec<Value> {
        let out = Command::new("curl")
            .args(["-sS"])
            .arg(format!("http://127.0.0.1:{}/_llmock/requests", self.port))
            .output()
            .expect("curl runs");
        let v: Value = serde_json::from_slice(&out.stdout).expect("a journal");
        v["requests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["path"] == "/v1/chat/completions")
            .cloned()
            .collect()
    }
}
