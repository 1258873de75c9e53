//! The content-addressed store.
//!
//! Owns everything wharf keeps: blobs (by digest, shared by all
//! repositories), upload sessions, per-repository metadata (which blobs and
//! manifests a repository links, its tags, referrers, pins and pull times)
//! and the documents of accounts and projects. It must never make a blob
//! visible before its bytes were hashed and matched their digest (the only
//! way in is [`BlobWriter::commit`]), and it never speaks HTTP.
//!
//! Shape: a [`Store`] handle hands out small facets — [`Blobs`],
//! [`Repo`] (one repository), [`Uploads`], [`Meta`], [`Scans`] — written once against
//! two backend traits ([`backend::ObjectStore`] for small objects,
//! [`backend::BlobBackend`] for content). [`layout`] is the only code that
//! knows a key; [`fs`] is the filesystem backend.

mod audit;
pub mod backend;
mod blobs;
mod catalog;
mod cleanup;
mod events;
pub mod fs;
pub mod gc;
mod gc_fence;
mod inventory;
pub mod layout;
pub mod lease;
mod manifest_cache;
mod meta;
mod repo;
mod repo_index;
mod runs;
pub mod s3;
mod scans;
mod uploads;
mod usage;
mod writer;

use std::io;
use std::path::Path;
use std::sync::Arc;

pub use audit::AuditLog;
pub use backend::{BlobData, DirectUrl, ObjectMeta};
pub use blobs::{Blobs, Delivery};
pub use cleanup::CleanupReport;
pub use events::EventQueue;
pub use gc_fence::ManifestCommit;
pub use inventory::Artifact;
pub use layout::{Doc, RecordId, ScanDoc};
pub use lease::{ClusterSettings, Lease, LeaseFor, LeaseGuard, Taken};
pub use meta::{Change, Meta, META_WAIT};
pub use repo::{Repo, StoredManifest};
pub use repo_index::PageFrom;
pub use runs::{LastRun, RunKind};
pub use scans::Scans;
pub use uploads::{OpenSessions, PreparedUpload, UploadStatus, Uploads};
pub use writer::{BlobWriter, VerifiedBlob};

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
    #[error("data directory {0} is in use by another wharf process")]
    Locked(std::path::PathBuf),
    #[error("the store's disk is full")]
    Full,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("storage is unavailable: {0}")]
    Unavailable(io::Error),
    /// Work that runs once in a cluster is running on another replica.
    #[error("{what} is already running on replica {holder}")]
    Busy { what: &'static str, holder: String },
    /// A shared document stayed locked by other changes for the whole
    /// wait of [`meta::META_WAIT`].
    #[error("replica {holder} is changing {what}; retry in a moment")]
    Contended { what: &'static str, holder: String },
    /// A manifest `PUT` took longer than this between marking the blobs it
    /// references and linking the manifest (see `gc_fence`).
    #[error("this manifest push took longer than {} s between checking its blobs and storing the manifest, so a garbage collection may have removed one meanwhile; nothing was stored: retry the push", .0.as_secs())]
    ReferencesExpired(std::time::Duration),
    #[error("storage I/O error: {0}")]
    Io(io::Error),
}

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> StoreError {
        match e.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => StoreError::Full,
            io::ErrorKind::NotConnected => StoreError::Unavailable(e),
            _ => StoreError::Io(e),
        }
    }
}

impl From<fs::OpenError> for StoreError {
    fn from(e: fs::OpenError) -> StoreError {
        match e {
            fs::OpenError::Locked(p) => StoreError::Locked(p),
            fs::OpenError::Io(e) => e.into(),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The store handle: cheap to clone (shared state behind `Arc`).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    objects: Arc<dyn backend::ObjectStore>,
    blobs: Arc<dyn backend::BlobBackend>,
    /// Set for the filesystem backend (its root, temp files, lock).
    fs: Option<fs::FsBackend>,
    /// Repository names (see [`catalog`]).
    catalog: catalog::Catalog,
    /// Per-namespace usage (see [`usage`]).
    usage: usage::UsageCache,
    /// Tags of recently listed repositories (see [`repo_index`]).
    tag_index: repo_index::Indexed<repo_index::TagIndex>,
    /// Manifests by push time of recently listed repositories.
    manifest_index: repo_index::Indexed<repo_index::ManifestIndex>,
    /// Held for writing by a GC sweep batch, for reading by a manifest `PUT`.
    gc_lock: tokio::sync::RwLock<()>,
    /// Held for a whole GC: one at a time.
    gc_run: tokio::sync::Mutex<()>,
    /// While a GC runs: the manifests linked since it started (see [`gc`]).
    gc_watch: std::sync::Mutex<Option<Vec<(crate::oci::RepoName, Digest)>>>,
    /// Manifests recently read, by repository and digest.
    manifests: manifest_cache::ManifestCache,
    /// Recently recorded pulls (rate-limits pull-time writes).
    pull_marks: moka::sync::Cache<String, ()>,
    /// Upload sessions in use by a request (one request per session).
    sessions: uploads::SessionLocks,
    /// Signalled when content was added or removed (for `/metrics`).
    content_changed: tokio::sync::Notify,
    /// Set when other replicas may share the store (see [`lease`]).
    cluster: Option<lease::ClusterSettings>,
    /// Changes of shared documents queued here (see [`meta`]).
    doc_locks: meta::DocLocks,
    /// Points where a test holds this store (see [`Store::pause_at`]).
    #[cfg(test)]
    pauses: std::sync::Mutex<Vec<(PausePoint, Arc<Pause>)>>,
}

impl Store {
    /// Open (creating if needed) a store on the local filesystem under
    /// `root`. Only one process may hold a data directory.
    pub fn open(root: &Path) -> Result<Store> {
        let backend = fs::FsBackend::open(root)?;
        Ok(Store::with_backends(
            Arc::new(backend.clone()),
            Arc::new(backend.clone()),
            Some(backend),
        ))
    }

    /// Open a store on S3 (every blob and small object in the bucket);
    /// `root` is a local directory for spool files, held by this process
    /// only. Fails when the bucket cannot be used (the message names the
    /// bucket and endpoint, never a secret).
    pub async fn open_s3(
        root: &Path,
        cfg: &crate::config::S3Storage,
        keys: Option<(String, crate::secrets::SecretString)>,
    ) -> Result<Store, s3::OpenError> {
        let spool = fs::FsBackend::open(root).map_err(StoreError::from)?;
        let backend = Arc::new(s3::S3Backend::connect(cfg, keys, spool).await?);
        Ok(Store::with_cluster(
            backend.clone(),
            backend,
            lease::ClusterSettings {
                replica: cfg.replica.clone(),
                refresh: cfg.refresh_interval,
                settle: cfg.lease_settle,
            },
        ))
    }

    /// A store that other replicas may share (every in-memory view of it
    /// is refreshed or checked, see README "Running several replicas").
    fn with_cluster(
        objects: Arc<dyn backend::ObjectStore>,
        blobs: Arc<dyn backend::BlobBackend>,
        cluster: lease::ClusterSettings,
    ) -> Store {
        let mut s = Store::with_backends(objects, blobs, None);
        if let Some(inner) = Arc::get_mut(&mut s.inner) {
            inner.tag_index = repo_index::Indexed::with_ttl(cluster.refresh);
            inner.manifest_index = repo_index::Indexed::with_ttl(cluster.refresh);
            inner.usage = usage::UsageCache::with_ttl(cluster.refresh);
            inner.cluster = Some(cluster);
        }
        s
    }

    fn with_backends(
        objects: Arc<dyn backend::ObjectStore>,
        blobs: Arc<dyn backend::BlobBackend>,
        fs: Option<fs::FsBackend>,
    ) -> Store {
        Store {
            inner: Arc::new(Inner {
                objects,
                blobs,
                fs,
                catalog: catalog::Catalog::default(),
                usage: usage::UsageCache::default(),
                tag_index: repo_index::Indexed::default(),
                manifest_index: repo_index::Indexed::default(),
                gc_lock: tokio::sync::RwLock::new(()),
                gc_run: tokio::sync::Mutex::new(()),
                gc_watch: std::sync::Mutex::new(None),
                manifests: manifest_cache::ManifestCache::default(),
                pull_marks: repo::pull_marks(),
                sessions: uploads::SessionLocks::default(),
                content_changed: tokio::sync::Notify::new(),
                cluster: None,
                doc_locks: meta::DocLocks::default(),
                #[cfg(test)]
                pauses: std::sync::Mutex::new(Vec::new()),
            }),
        }
    }

    /// Content by digest.
    pub fn blobs(&self) -> Blobs<'_> {
        Blobs::new(self)
    }

    /// One repository's manifests, tags, referrers and links.
    pub fn repo<'a>(&'a self, name: &'a crate::oci::RepoName) -> Repo<'a> {
        Repo::new(self, name)
    }

    /// Upload sessions.
    pub fn uploads(&self) -> Uploads<'_> {
        Uploads::new(self)
    }

    /// Documents that are not per repository (robots, projects, the token key).
    pub fn meta(&self) -> Meta<'_> {
        Meta::new(self)
    }

    /// Vulnerability scan documents, by manifest digest.
    pub fn scans(&self) -> Scans<'_> {
        Scans::new(self)
    }

    /// Notification events waiting for delivery.
    pub fn events(&self) -> EventQueue<'_> {
        EventQueue::new(self)
    }

    /// The audit log of management actions.
    pub fn audit(&self) -> AuditLog<'_> {
        AuditLog::new(self)
    }

    /// The local data directory, for the filesystem backend.
    pub fn local_root(&self) -> Option<&Path> {
        self.inner.fs.as_ref().map(|f| f.root())
    }

    fn objects(&self) -> &dyn backend::ObjectStore {
        &*self.inner.objects
    }

    fn blob_backend(&self) -> &dyn backend::BlobBackend {
        &*self.inner.blobs
    }

    /// Whether the store accepts writes now (for `/readyz`): writes and
    /// removes a probe object.
    pub async fn check_writable(&self) -> Result<()> {
        let key = format!("uploads/.probe-{}", uuid::Uuid::new_v4());
        self.objects()
            .put(&key, bytes::Bytes::from_static(b"readyz"))
            .await?;
        self.objects().delete(&key).await?;
        Ok(())
    }

    /// Wait until content was added (a manifest stored) or removed since
    /// the last wait returned.
    pub async fn content_changed(&self) {
        self.inner.content_changed.notified().await
    }

    fn note_content_changed(&self) {
        self.inner.content_changed.notify_one();
    }

    /// Held for reading by a manifest commit from its reference check to the
    /// revision link (see [`gc`] and [`Store::begin_manifest`]).
    async fn gc_read(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.inner.gc_lock.read().await
    }

    pub(crate) async fn gc_write(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.inner.gc_lock.write().await
    }
}

/// Where a test can hold a store's work, to interleave two replicas
/// deterministically.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PausePoint {
    /// A shared document is about to be read for a change (lease held).
    DocRead,
    /// A GC sweep batch checked a candidate and is about to delete it.
    SweepDelete,
    /// A GC marked and is about to start sweeping.
    SweepStart,
    /// A manifest `PUT` marked its blobs and saw a sweep batch's flag.
    SweepFlagSeen,
}

/// A one-shot hold: `reached` is signalled when the store gets there,
/// which then waits for `resume`.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Pause {
    pub reached: tokio::sync::Notify,
    pub resume: tokio::sync::Notify,
}

#[cfg(test)]
impl Store {
    /// Hold this store the next time it gets to `at`.
    pub(crate) fn pause_at(&self, at: PausePoint) -> Arc<Pause> {
        let p = Arc::new(Pause::default());
        let mut v = self.inner.pauses.lock().unwrap();
        v.push((at, p.clone()));
        p
    }

    pub(crate) async fn test_pause(&self, at: PausePoint) {
        let p = {
            let mut v = self.inner.pauses.lock().unwrap();
            let i = v.iter().position(|(q, _)| *q == at);
            i.map(|i| v.remove(i).1)
        };
        if let Some(p) = p {
            p.reached.notify_one();
            p.resume.notified().await;
        }
    }
}

/// Two stores on one directory, as two replicas ("a" and "b") on one
/// bucket: each with its own in-memory state, both in cluster mode.
/// Two replicas "a" and "b" sharing one filesystem store, with a settle
/// delay (100 ms) that a loaded test machine's claims stay within.
#[cfg(test)]
pub(crate) fn test_replicas(dir: &Path) -> (Store, Store) {
    test_replicas_settling(dir, std::time::Duration::from_millis(100))
}

/// [`test_replicas`] with the lease settle delay `settle`.
#[cfg(test)]
pub(crate) fn test_replicas_settling(dir: &Path, settle: std::time::Duration) -> (Store, Store) {
    let fs = fs::FsBackend::open(dir).unwrap();
    let one = |name: &str| {
        Store::with_cluster(
            Arc::new(fs.clone()),
            Arc::new(fs.clone()),
            lease::ClusterSettings {
                replica: name.into(),
                refresh: std::time::Duration::from_secs(1),
                settle,
            },
        )
    };
    (one("a"), one("b"))
}
