//! `hf://` downloads against a local HTTP server that mimics the hub's `resolve` endpoint:
//! `X-Repo-Commit`, `ETag`/`X-Linked-Etag` (sha256 for LFS files), `Range` requests and 404s.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use dag_diagnostic::Hint;
use dag_runtime::hub::{Hub, HubSettings};
use dag_runtime::{DeviceSpec, Error, HubRef, LoadOptions, Model, ModelSource};
use sha2::{Digest, Sha256};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

struct Served {
    body: Vec<u8>,
    etag: String,
    lfs: bool,
}

#[derive(Default)]
struct Log {
    requests: Vec<String>,
    ranges: Vec<String>,
    auth: Vec<String>,
}

/// Serves the files of `dir` as repo `org/tiny` at revision `main` (= COMMIT); `corrupt`
/// flips a byte of model.safetensors in GET bodies.
fn serve(dir: &Path, corrupt: bool) -> (String, Arc<Mutex<Log>>) {
    let mut files = HashMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let body = std::fs::read(&path).unwrap();
        let lfs = name.ends_with(".safetensors");
        let etag = if lfs {
            hex(&Sha256::digest(&body))
        } else {
            // Git blob ids are 40 hex digits; any stable one will do for the cache layout.
            hex(&Sha256::digest(&body))[..40].to_string()
        };
        files.insert(name, Served { body, etag, lfs });
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Log::default()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                continue;
            }
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or("").to_string();
            let path = parts.next().unwrap_or("").to_string();
            let mut range = None;
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap();
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
                if k == "range" {
                    range = Some(v.clone());
                    log2.lock().unwrap().ranges.push(v.clone());
                }
                if k == "authorization" {
                    log2.lock().unwrap().auth.push(v);
                }
            }
            log2.lock()
                .unwrap()
                .requests
                .push(format!("{method} {path}"));
            let file = path
                .strip_prefix("/org/tiny/resolve/")
                .and_then(|rest| rest.split_once('/'))
                .filter(|(rev, _)| *rev == "main" || *rev == COMMIT)
                .and_then(|(_, f)| files.get(f));
            let Some(f) = file else {
                let _ = stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nX-Error-Code: EntryNotFound\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                continue;
            };
            let mut body = f.body.clone();
            if corrupt && f.lfs {
                body[100] ^= 0xFF;
            }
            let start = range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok());
            let (status, slice) = match start {
                Some(s) => ("206 Partial Content", &body[s..]),
                None => ("200 OK", &body[..]),
            };
            let etag_header = if f.lfs {
                format!(
                    "X-Linked-Etag: \"{}\"\r\nX-Linked-Size: {}\r\nETag: \"{}\"\r\n",
                    f.etag,
                    f.body.len(),
                    &f.etag[..40]
                )
            } else {
                format!("ETag: \"{}\"\r\n", f.etag)
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nX-Repo-Commit: {COMMIT}\r\n{etag_header}Content-Length: {}\r\nConnection: close\r\n\r\n",
                slice.len()
            );
            let _ = stream.write_all(head.as_bytes());
            if method == "GET" {
                let _ = stream.write_all(slice);
            }
        }
    });
    (format!("http://{addr}"), log)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-qwen3")
}

fn settings(endpoint: &str, cache: &Path, offline: bool) -> HubSettings {
    HubSettings {
        endpoint: endpoint.to_string(),
        cache: cache.to_path_buf(),
        token: Some("secret-token".into()),
        offline,
    }
}

fn reference() -> HubRef {
    "hf://org/tiny".parse().unwrap()
}

fn cpu() -> LoadOptions {
    LoadOptions {
        device: DeviceSpec::Cpu,
        dtype: None,
    }
}

#[test]
fn downloads_into_the_hf_cache_layout_and_loads() {
    let (endpoint, log) = serve(&tiny(), false);
    let cache = tempfile::tempdir().unwrap();
    let hub = Hub::new(settings(&endpoint, cache.path(), false)).unwrap();
    let snap = hub.snapshot(&reference()).unwrap();
    let repo = cache.path().join("models--org--tiny");
    assert_eq!(snap, repo.join("snapshots").join(COMMIT));
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/main")).unwrap(),
        COMMIT
    );
    let weights = snap.join("model.safetensors");
    assert!(weights.symlink_metadata().unwrap().file_type().is_symlink());
    assert_eq!(
        std::fs::read(&weights).unwrap(),
        std::fs::read(tiny().join("model.safetensors")).unwrap()
    );
    // Optional files the hub lacks are remembered, as huggingface_hub does.
    assert!(
        repo.join(".no_exist")
            .join(COMMIT)
            .join("chat_template.jinja")
            .exists()
    );
    assert!(
        log.lock()
            .unwrap()
            .auth
            .iter()
            .all(|a| a == "Bearer secret-token")
    );

    let from_hub = Model::load(&ModelSource::HfDir(snap.clone()), cpu()).unwrap();
    let direct = Model::load(&ModelSource::HfDir(tiny()), cpu()).unwrap();
    assert_eq!(from_hub.identity(), direct.identity());

    // A second resolution is served from the cache without any request.
    let before = log.lock().unwrap().requests.len();
    let offline = Hub::new(settings(&endpoint, cache.path(), true)).unwrap();
    assert_eq!(offline.snapshot(&reference()).unwrap(), snap);
    assert_eq!(hub.snapshot(&reference()).unwrap(), snap);
    assert_eq!(log.lock().unwrap().requests.len(), before);
}

#[test]
fn resumes_a_partial_download_with_a_range_request() {
    let (endpoint, log) = serve(&tiny(), false);
    let cache = tempfile::tempdir().unwrap();
    let body = std::fs::read(tiny().join("model.safetensors")).unwrap();
    let etag = hex(&Sha256::digest(&body));
    let blobs = cache.path().join("models--org--tiny/blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let half = body.len() / 2;
    std::fs::write(blobs.join(format!("{etag}.incomplete")), &body[..half]).unwrap();
    let hub = Hub::new(settings(&endpoint, cache.path(), false)).unwrap();
    let snap = hub.snapshot(&reference()).unwrap();
    assert_eq!(std::fs::read(snap.join("model.safetensors")).unwrap(), body);
    assert_eq!(log.lock().unwrap().ranges, vec![format!("bytes={half}-")]);
}

#[test]
fn rejects_a_download_whose_sha256_differs() {
    let (endpoint, _log) = serve(&tiny(), true);
    let cache = tempfile::tempdir().unwrap();
    let hub = Hub::new(settings(&endpoint, cache.path(), false)).unwrap();
    let err = hub.snapshot(&reference()).unwrap_err();
    assert!(matches!(err, Error::Download { .. }), "{err:?}");
    assert!(err.to_string().contains("sha256"), "{err}");
    let leftovers: Vec<_> = std::fs::read_dir(cache.path().join("models--org--tiny/blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".incomplete") || n.len() == 64)
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn offline_mode_names_the_missing_file() {
    let cache = tempfile::tempdir().unwrap();
    let hub = Hub::new(settings("http://127.0.0.1:9", cache.path(), true)).unwrap();
    let err = hub.snapshot(&reference()).unwrap_err();
    match &err {
        Error::Offline { file, repo, .. } => {
            assert_eq!(file, "config.json");
            assert_eq!(repo, "org/tiny");
        }
        other => panic!("expected Offline, got {other:?}"),
    }
    assert!(
        err.hint().is_some_and(|h| h.contains("HF_HUB_OFFLINE")),
        "{err}"
    );
}

#[test]
fn missing_repository_file_is_a_clear_error() {
    let (endpoint, _log) = serve(&tiny(), false);
    let cache = tempfile::tempdir().unwrap();
    let hub = Hub::new(settings(&endpoint, cache.path(), false)).unwrap();
    let err = hub
        .snapshot(&"hf://org/other".parse().unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("config.json"), "{err}");
}
