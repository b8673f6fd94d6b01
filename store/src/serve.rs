//! Readers beside a writer. Sled lets one process open an index, so the process holding a
//! store answers other processes' index reads over a Unix socket, `.dag/serve.sock`: a
//! `dag status` or `dag show` during a long `dag run` sees what the run has committed so
//! far. Blobs are immutable files and are read directly; only index reads cross.
//!
//! The protocol is two requests (get one key, scan a key prefix of one tree), bincode
//! frames behind a length. Each answer is consistent on its own, and the writer commits
//! whole transactions, so a reader sees a prefix of the writer's commits. Filesystem
//! permissions on `.dag/` decide who may connect, as they decide who may read the blobs.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::index::{decode, encode, trees};

/// The socket's name inside the store.
pub(crate) const SOCKET: &str = "serve.sock";

/// Bumped when a request or answer changes shape; a reader and a writer of different
/// versions refuse each other rather than misread.
const PROTOCOL: u32 = 1;

/// Linux's `sun_path` holds 108 bytes with the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

#[derive(Debug, Serialize, Deserialize)]
enum Request {
    Hello { protocol: u32 },
    Get { tree: String, key: Vec<u8> },
    Scan { tree: String, prefix: Vec<u8> },
}

/// Key-value pairs of one tree, in key order.
pub(crate) type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

#[derive(Debug, Serialize, Deserialize)]
enum Answer {
    Hello {
        protocol: u32,
    },
    Value(Option<Vec<u8>>),
    Entries(Pairs),
    /// The holder is closing the store.
    Closed,
    Failed(String),
}

fn send<T: Serialize>(stream: &mut UnixStream, msg: &T) -> std::io::Result<()> {
    let bytes = encode(msg);
    let len = u64::try_from(bytes.len()).expect("a frame fits in u64");
    stream.write_all(&len.to_le_bytes())?;
    stream.write_all(&bytes)?;
    stream.flush()
}

fn receive<T: serde::de::DeserializeOwned>(stream: &mut UnixStream) -> Result<T, Error> {
    let io = |e| Error::Served(format!("the connection failed: {e}"));
    let mut len = [0u8; 8];
    stream.read_exact(&mut len).map_err(io)?;
    let len = usize::try_from(u64::from_le_bytes(len))
        .map_err(|_| Error::Served("a frame is too large".into()))?;
    let mut bytes = vec![0u8; len];
    stream.read_exact(&mut bytes).map_err(io)?;
    decode("served frame", &bytes)
}

/// Answers index reads for other processes while this one holds the store.
pub(crate) struct Server {
    /// The index, taken away (`None`) when the store closes, so that no connection keeps
    /// sled open after its last handle in the store is dropped.
    index: Arc<RwLock<Option<sled::Db>>>,
    stop: Arc<AtomicBool>,
    socket: PathBuf,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts serving `db` at `root/serve.sock`. `None` when the socket cannot be made (a
    /// path longer than a socket address holds, a filesystem without sockets): readers
    /// are then refused with the holder's pid, as before readers could share.
    pub(crate) fn start(root: &Path, db: sled::Db) -> Option<Server> {
        let socket = root.join(SOCKET);
        // We hold the store's lock: a socket file here is a dead holder's.
        let _ = std::fs::remove_file(&socket);
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            tracing::debug!(socket = %socket.display(), "path too long to serve readers");
            return None;
        }
        let listener = match UnixListener::bind(&socket) {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(socket = %socket.display(), error = %e, "cannot serve readers");
                return None;
            }
        };
        let index = Arc::new(RwLock::new(Some(db)));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (index, stop) = (index.clone(), stop.clone());
            std::thread::Builder::new()
                .name("dag-store-serve".into())
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let Ok(conn) = conn else { continue };
                        let index = index.clone();
                        let _ = std::thread::Builder::new()
                            .name("dag-store-reader".into())
                            .spawn(move || serve(conn, &index));
                    }
                })
                .ok()?
        };
        Some(Server {
            index,
            stop,
            socket,
            accept: Some(accept),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Waits for requests being answered, then lets go of sled.
        self.index.write().unwrap_or_else(|p| p.into_inner()).take();
        self.stop.store(true, Ordering::SeqCst);
        let woke = UnixStream::connect(&self.socket).is_ok();
        let _ = std::fs::remove_file(&self.socket);
        if let Some(accept) = self.accept.take()
            && woke
        {
            let _ = accept.join();
        }
    }
}

fn serve(mut conn: UnixStream, index: &RwLock<Option<sled::Db>>) {
    while let Ok(request) = receive::<Request>(&mut conn) {
        let guard = index.read().unwrap_or_else(|p| p.into_inner());
        let answer = match guard.as_ref() {
            None => Answer::Closed,
            Some(db) => answer(db, request),
        };
        drop(guard);
        let closed = matches!(answer, Answer::Closed);
        if send(&mut conn, &answer).is_err() || closed {
            return;
        }
    }
}

fn answer(db: &sled::Db, request: Request) -> Answer {
    let tree = |name: &str| -> Result<sled::Tree, String> {
        if !trees::ALL.contains(&name) {
            return Err(format!("no index tree `{name}`"));
        }
        db.open_tree(name).map_err(|e| e.to_string())
    };
    let result = match request {
        Request::Hello { protocol } if protocol == PROTOCOL => Ok(Answer::Hello { protocol }),
        Request::Hello { protocol } => Err(format!(
            "the reader speaks protocol {protocol}, this holder {PROTOCOL}: use one dag version for both"
        )),
        Request::Get { tree: name, key } => tree(&name).and_then(|t| {
            t.get(key)
                .map(|v| Answer::Value(v.map(|v| v.to_vec())))
                .map_err(|e| e.to_string())
        }),
        Request::Scan { tree: name, prefix } => tree(&name).and_then(|t| {
            t.scan_prefix(prefix)
                .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
                .collect::<Result<Vec<_>, _>>()
                .map(Answer::Entries)
                .map_err(|e| e.to_string())
        }),
    };
    result.unwrap_or_else(Answer::Failed)
}

/// A connection to the process holding a store.
#[derive(Debug)]
pub(crate) struct Client {
    stream: Mutex<UnixStream>,
}

impl Client {
    /// Connects to the holder of the store at `root`; `None` when it does not serve.
    pub(crate) fn connect(root: &Path) -> Result<Option<Client>, Error> {
        let Ok(stream) = UnixStream::connect(root.join(SOCKET)) else {
            return Ok(None);
        };
        let client = Client {
            stream: Mutex::new(stream),
        };
        match client.ask(&Request::Hello { protocol: PROTOCOL })? {
            Answer::Hello { .. } => Ok(Some(client)),
            other => Err(unexpected(other)),
        }
    }

    fn ask(&self, request: &Request) -> Result<Answer, Error> {
        let mut stream = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        send(&mut stream, request)
            .map_err(|e| Error::Served(format!("the connection failed: {e}")))?;
        match receive(&mut stream)? {
            Answer::Closed => Err(Error::Served(
                "the process holding the store closed it while this command read it".into(),
            )),
            Answer::Failed(why) => Err(Error::Served(why)),
            answer => Ok(answer),
        }
    }

    pub(crate) fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        match self.ask(&Request::Get {
            tree: tree.to_string(),
            key: key.to_vec(),
        })? {
            Answer::Value(v) => Ok(v),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) fn scan(&self, tree: &str, prefix: &[u8]) -> Result<Pairs, Error> {
        match self.ask(&Request::Scan {
            tree: tree.to_string(),
            prefix: prefix.to_vec(),
        })? {
            Answer::Entries(v) => Ok(v),
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(answer: Answer) -> Error {
    Error::Served(format!("an unexpected answer: {answer:?}"))
}
