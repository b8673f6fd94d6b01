use std::path::{Path, PathBuf};

use dag_diagnostic::Hint;

/// Everything that can go wrong in the store. Messages name the path involved; where the
/// user can act, [`Hint`] says how.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A filesystem operation failed.
    #[error("Failed to {action} `{}`", path.display())]
    Io {
        /// What we were doing.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The sled index failed.
    #[error("Failed to access the store index")]
    Index(#[from] sled::Error),
    /// The sled index cannot be read (truncated or overwritten bytes). The blobs are
    /// separate files and unaffected, and the journal can rebuild it.
    #[error(
        "The store index `{}` is damaged and cannot be read ({detail})",
        index.display()
    )]
    IndexDamaged {
        /// The index directory.
        index: PathBuf,
        /// What sled said.
        detail: String,
    },
    /// Another process holds the store.
    #[error(
        "The store `{}` is in use by another dag process (pid {pid})",
        root.display()
    )]
    Locked {
        /// Store root.
        root: PathBuf,
        /// Pid written in the lock file by the holder (or `unknown`).
        pid: String,
    },
    /// A write to a store this process only reads: one another process holds (see
    /// [`crate::Store::open_reader`]) or one on a read-only filesystem.
    #[error(
        "The store is open read-only in this process (another dag process holds it, or its directory is not writable), and this needs to write to it"
    )]
    ReadOnly,
    /// Reading through the process that holds the store failed.
    #[error("Failed to read the store through the dag process that holds it: {0}")]
    Served(String),
    /// The store was written by an incompatible version.
    #[error(
        "The store `{}` has schema `{found}`, this dag expects `{expected}`",
        root.display()
    )]
    Schema {
        /// Store root.
        root: PathBuf,
        /// Version found on disk.
        found: String,
        /// Version this build writes.
        expected: &'static str,
    },
    /// A blob's bytes no longer hash to its name.
    #[error(
        "Artifact blob `{}` is corrupt: its content hashes to {actual}, not {expected}",
        path.display()
    )]
    Corrupt {
        /// Blob path.
        path: PathBuf,
        /// Name of the blob.
        expected: String,
        /// What the bytes hash to now.
        actual: String,
    },
    /// A blob the index refers to is gone.
    #[error(
        "Artifact blob `{}` is missing from the store",
        path.display()
    )]
    MissingBlob {
        /// Blob path.
        path: PathBuf,
    },
    /// A crash test stopped a maintenance operation here (see [`crate::CrashAfter`]).
    #[error("Stopped after {0} steps, as a crash would (a crash test's injected fault)")]
    InjectedCrash(usize),
    /// No artifact with this digest is known.
    #[error("No artifact `{0}` in the store")]
    UnknownArtifact(String),
    /// A string that is not a 64-hex-digit digest.
    #[error("`{0}` is not a blake3 digest (64 hex digits)")]
    BadDigest(String),
    /// A stored record could not be decoded.
    #[error("Failed to decode the store record `{what}`: {detail}")]
    Decode {
        /// Which record.
        what: String,
        /// The decoder's message.
        detail: String,
    },
}

impl Error {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

impl Hint for Error {
    fn hint(&self) -> Option<String> {
        let hint = match self {
            Error::IndexDamaged { .. } => {
                "every blob in the store is intact, and the store's journal holds every change made to the index. Run `dag verify --rebuild-index`: it moves the damaged index aside, rebuilds it from the journal (artifacts, cache entries, runs, pins, saved progress) and checks every blob, so only what cannot be read any more runs again"
            }
            Error::Locked { .. } => {
                "wait for it to finish, or use another store with `--store DIR`"
            }
            Error::ReadOnly => "wait for the other process to finish, or make the store writable",
            Error::Served(_) => "run the command again; the store itself is unaffected",
            Error::Schema { .. } => {
                "point `--store` at a fresh directory; stores are never migrated in place"
            }
            Error::Corrupt { .. } => {
                "run `dag verify --repair` to quarantine it, then rerun to recompute it"
            }
            Error::MissingBlob { .. } => "run `dag verify --repair`, then rerun to recompute it",
            Error::Io { .. }
            | Error::Index(_)
            | Error::InjectedCrash(_)
            | Error::UnknownArtifact(_)
            | Error::BadDigest(_)
            | Error::Decode { .. } => return None,
        };
        Some(hint.to_string())
    }
}
