//! The content-addressed store on the local filesystem.
//!
//! Owns everything under the data directory: blobs (by digest, shared by all
//! repositories), upload sessions, and per-repository metadata (which blobs
//! and manifests a repository links, its tags, its referrers). It must never
//! make a blob visible before its bytes were hashed, matched their digest,
//! were fsynced and atomically renamed into place, and it never speaks HTTP.
//!
//! Write protocol for every file: write to `tmp/`, fsync, rename into place,
//! fsync the parent directory. A crash at any point leaves either the old
//! state or the new one plus garbage in `tmp/` (removed at start-up).

mod blobs;
pub mod chunks;
mod cleanup;
pub mod gc;
pub mod fsutil;
mod inventory;
mod layout;
mod manifest_cache;
mod manifests;
pub mod pins;
mod uploads;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use layout::Layout;
pub use cleanup::CleanupReport;
pub use inventory::Artifact;
pub use manifests::StoredManifest;
pub use uploads::UploadStatus;

use crate::oci::Digest;

/// Failures of the store, mapped to OCI errors at the API edge.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("upload session unknown")]
    UploadUnknown,
    #[error("chunk must start at offset {offset}")]
    RangeMismatch { offset: u64 },
    #[error("content digest {actual} does not match the declared {expected}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("received {actual} bytes, Content-Length declared {declared}")]
    SizeMismatch { declared: u64, actual: u64 },
    #[error("request body ended early: {0}")]
    Body(io::Error),
    #[error("storage I/O error: {0}")]
    Io(#[from] io::Error),
}

/// The store handle: cheap to clone (shared state behind `Arc`).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    layout: Layout,
    /// Upload sessions touched since start-up; sessions found only on disk
    /// (after a restart) are loaded on first use.
    sessions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<uploads::Session>>>>,
    /// Recently recorded pulls (rate-limits pull-time writes).
    pull_marks: moka::sync::Cache<String, ()>,
    /// Per-namespace usage cache and the GC lock (see [`gc`]).
    usage: gc::UsageCache,
    gc_lock: tokio::sync::RwLock<()>,
    /// Manifests recently read, by repository and digest.
    manifests: manifest_cache::ManifestCache,
    /// Held for the life of the process: one wharf per data directory.
    _lock: std::fs::File,
}

impl Store {
    /// Open (creating if needed) the store under `root`. Takes an exclusive
    /// lock on the directory and removes temp files left by a crash.
    pub fn open(root: &Path) -> io::Result<Store> {
        let layout = Layout::new(root.to_path_buf());
        for d in [layout.blobs_dir(), layout.tmp_dir(), layout.uploads_dir(), layout.repos_dir()] {
            std::fs::create_dir_all(&d)?;
        }
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(layout.lock_file())?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(io::Error::other(format!(
                    "data directory {} is in use by another wharf process",
                    root.display()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        // Nobody else can be writing here: everything in tmp/ is a leftover.
        cleanup::empty_dir(&layout.tmp_dir())?;
        Ok(Store {
            inner: Arc::new(Inner {
                layout,
                sessions: Mutex::new(HashMap::new()),
                pull_marks: inventory::pull_marks(),
                usage: gc::UsageCache::default(),
                gc_lock: tokio::sync::RwLock::new(()),
                manifests: manifest_cache::ManifestCache::default(),
                _lock: lock,
            }),
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    pub fn root(&self) -> &Path {
        self.inner.layout.root()
    }

    /// A fresh path in `tmp/` for a file that will be renamed into place.
    pub fn temp_path(&self) -> PathBuf {
        self.inner.layout.tmp_file()
    }
}

/// Run blocking filesystem work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("blocking task failed: {e}")))?
}
