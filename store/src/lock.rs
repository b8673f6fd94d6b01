//! One process holds a store: an exclusive advisory lock on `.dag/lock`, holding our pid
//! and role, so a second process can say who is in the way, or wait for a reader.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::Error;

/// Why a process holds the store, written after its pid in the lock file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// `run`, `gc`, `pin`...: holds it as long as its work takes.
    Writer,
    /// `status`, `show`, `log`...: holds it for a moment (and serves other readers
    /// meanwhile), so a process that needs the store waits for it rather than failing.
    Reader,
}

/// How long a process waits for a reader to let go of the store.
const READER_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Held for the life of a [`crate::Store`]; the OS releases it if we are killed.
#[derive(Debug)]
pub(crate) struct StoreLock {
    _file: File,
}

/// The lock is taken by someone else.
pub(crate) struct Held {
    /// The holder's pid as its lock file says (or `unknown`).
    pub(crate) pid: String,
    /// Whether the holder is a writer (a long `dag run`) rather than a brief reader.
    pub(crate) writer: bool,
}

impl StoreLock {
    /// Takes the store's lock, waiting for a reader that holds it to finish. `Ok(Err)`
    /// names the writer that holds it.
    pub(crate) fn acquire(root: &Path, role: Role) -> Result<Result<Self, Held>, Error> {
        let path = root.join("lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("open the lock file", &path, e))?;
        let deadline = std::time::Instant::now() + READER_PATIENCE;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    let held = holder(&mut file);
                    if held.writer || std::time::Instant::now() >= deadline {
                        return Ok(Err(held));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(TryLockError::Error(e)) => return Err(Error::io("lock", &path, e)),
            }
        }
        let io = |e| Error::io("write the lock file", &path, e);
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        let role = match role {
            Role::Writer => "writer",
            Role::Reader => "reader",
        };
        write!(file, "{} {role}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(Ok(StoreLock { _file: file }))
    }
}

/// Who holds the lock, from the lock file (`"<pid> <role>"`; stores from before roles
/// wrote only the pid, and held it as writers).
fn holder(file: &mut File) -> Held {
    let mut text = String::new();
    let _ = file.seek(SeekFrom::Start(0));
    let _ = file.read_to_string(&mut text);
    let mut words = text.split_whitespace();
    let pid = words.next().unwrap_or("unknown").to_string();
    Held {
        pid,
        writer: words.next() != Some("reader"),
    }
}

/// A shared lock on the lock file of a store this process cannot write (a read-only
/// `.dag`): no writer can take the store while we copy its index.
#[derive(Debug)]
pub(crate) struct SharedLock {
    _file: File,
}

impl SharedLock {
    /// `Ok(None)` when a writer holds the store.
    pub(crate) fn acquire(root: &Path) -> Result<Option<Self>, Error> {
        let path = root.join("lock");
        let file = File::open(&path).map_err(|e| Error::io("open the lock file", &path, e))?;
        match file.try_lock_shared() {
            Ok(()) => Ok(Some(SharedLock { _file: file })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(Error::io("lock", &path, e)),
        }
    }
}

/// Dropped after the sled handles of a [`crate::Store`] and before its [`StoreLock`]: waits
/// until sled has closed its own index file. Sled finishes queued writes on background
/// threads that keep the file (and sled's own exclusive lock on it) open for a while after
/// the last handle is dropped, so without this wait a store closed and reopened in one
/// process (a test, or a command that hands the store on) could find the index still locked.
#[derive(Debug)]
pub(crate) struct IndexReleased {
    pub(crate) db_file: std::path::PathBuf,
}

impl Drop for IndexReleased {
    fn drop(&mut self) {
        let Ok(file) = File::open(&self.db_file) else {
            return;
        };
        // Bounded: a sled thread that never finishes must not hang the process forever;
        // the next open then reports the lock with its own error.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match file.try_lock() {
                Ok(()) => {
                    let _ = file.unlock();
                    return;
                }
                Err(TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(_) => return,
            }
        }
    }
}
