//! One process per store: an exclusive advisory lock on `.dag/lock`, holding our pid so
//! a second process can say who is in the way.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::Error;

/// Held for the life of a [`crate::Store`]; the OS releases it if we are killed.
#[derive(Debug)]
pub(crate) struct StoreLock {
    _file: File,
}

impl StoreLock {
    pub(crate) fn acquire(root: &Path) -> Result<Self, Error> {
        let path = root.join("lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("open the lock file", &path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(Error::Locked {
                    root: root.to_path_buf(),
                    pid: if pid.is_empty() { "unknown" } else { pid }.to_string(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(Error::io("lock", &path, e)),
        }
        let io = |e| Error::io("write the lock file", &path, e);
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(StoreLock { _file: file })
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
