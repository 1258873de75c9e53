//! The filesystem backend: a key is a path under the data directory.
//!
//! Every small object is written tmp → fsync → rename → fsync(dir), so a
//! crash leaves the old object or the new one, plus garbage in `tmp/` that
//! start-up removes. Blobs arrive through [`sink::FsSink`]. One process
//! owns a data directory: [`FsBackend::open`] takes an exclusive lock on
//! `wharf.lock` for the life of the process.

pub mod chunks;
pub mod fsutil;
#[allow(unsafe_code)]
pub mod mapped;
mod sink;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

use super::backend::{BlobBackend, BlobData, BlobSink, ObjectMeta, ObjectStore, SinkAt};
use super::layout;
use crate::oci::Digest;
use fsutil::{read_opt, remove_if_exists, write_atomic};
pub use sink::{BATCH, SYNC_EVERY};

/// Run blocking filesystem work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("blocking task failed: {e}")))?
}

/// Why a data directory could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("data directory {0} is in use by another wharf process")]
    Locked(PathBuf),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A data directory. Cheap to clone.
#[derive(Clone)]
pub struct FsBackend {
    root: Arc<PathBuf>,
    /// Held for the life of the process: one wharf per data directory.
    _lock: Arc<std::fs::File>,
}

fn meta_of(m: &std::fs::Metadata) -> ObjectMeta {
    ObjectMeta {
        size: m.len(),
        modified: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
    }
}

fn stat_path(p: &Path) -> io::Result<Option<ObjectMeta>> {
    match std::fs::metadata(p) {
        Ok(m) => Ok(Some(meta_of(&m))),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Open a file for reading, with its length; `None` when absent.
async fn open_file(p: PathBuf) -> io::Result<Option<BlobData>> {
    blocking(move || match std::fs::File::open(&p) {
        Ok(file) => {
            let len = file.metadata()?.len();
            Ok(Some(BlobData::File { file, len }))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    })
    .await
}

impl FsBackend {
    /// Open (creating if needed) the data directory `root`: take its lock
    /// and remove temp files left by a crash.
    pub fn open(root: &Path) -> Result<FsBackend, OpenError> {
        std::fs::create_dir_all(root)?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join(layout::FS_LOCK))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(OpenError::Locked(root.to_path_buf()))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
        }
        for d in layout::TOP_DIRS.iter().chain([&"tmp/"]) {
            std::fs::create_dir_all(root.join(d))?;
        }
        // Nobody else can be writing here: everything in tmp/ is a leftover.
        fsutil::empty_dir(&root.join(layout::FS_TMP))?;
        Ok(FsBackend {
            root: Arc::new(root.to_path_buf()),
            _lock: Arc::new(lock),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of a key.
    pub fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// A fresh path in `tmp/` for a file that will be renamed into place.
    pub fn temp_path(&self) -> PathBuf {
        self.root
            .join(layout::FS_TMP)
            .join(uuid::Uuid::new_v4().to_string())
    }

    /// Files in `tmp/` (for cleanup).
    pub fn temp_dir(&self) -> PathBuf {
        self.root.join(layout::FS_TMP)
    }
}

#[async_trait]
impl ObjectStore for FsBackend {
    async fn get(&self, key: &str) -> io::Result<Option<Bytes>> {
        let p = self.path(key);
        Ok(blocking(move || read_opt(&p)).await?.map(Bytes::from))
    }

    async fn put(&self, key: &str, bytes: Bytes) -> io::Result<()> {
        let (tmp, p) = (self.temp_path(), self.path(key));
        blocking(move || write_atomic(&tmp, &p, &bytes)).await
    }

    async fn create(&self, key: &str, bytes: Bytes) -> io::Result<bool> {
        let (tmp, p) = (self.temp_path(), self.path(key));
        blocking(move || fsutil::create_new(&tmp, &p, &bytes)).await
    }

    async fn delete(&self, key: &str) -> io::Result<bool> {
        let p = self.path(key);
        blocking(move || remove_if_exists(&p)).await
    }

    async fn stat(&self, key: &str) -> io::Result<Option<ObjectMeta>> {
        let p = self.path(key);
        blocking(move || stat_path(&p)).await
    }

    async fn touch(&self, key: &str) -> io::Result<()> {
        let p = self.path(key);
        blocking(move || fsutil::touch(&p)).await
    }

    async fn list(&self, dir: &str, after: Option<&str>, limit: usize) -> io::Result<Vec<String>> {
        let p = self.path(dir);
        let after = after.map(str::to_string);
        blocking(move || {
            let all = fsutil::list_dir(&p)?;
            let start = match &after {
                Some(a) => all.partition_point(|n| n.as_str() <= a.as_str()),
                None => 0,
            };
            Ok(all.into_iter().skip(start).take(limit).collect())
        })
        .await
    }

    async fn delete_dir(&self, dir: &str) -> io::Result<()> {
        let p = self.path(dir);
        blocking(move || match std::fs::remove_dir_all(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .await
    }
}

#[async_trait]
impl BlobBackend for FsBackend {
    async fn stat(&self, d: &Digest) -> io::Result<Option<ObjectMeta>> {
        ObjectStore::stat(self, &layout::blob(d)).await
    }

    async fn open(&self, d: &Digest) -> io::Result<Option<BlobData>> {
        open_file(self.path(&layout::blob(d))).await
    }

    async fn read_small(&self, d: &Digest) -> io::Result<Option<Bytes>> {
        self.get(&layout::blob(d)).await
    }

    async fn put_small(&self, d: &Digest, bytes: Bytes) -> io::Result<()> {
        let key = layout::blob(d);
        if ObjectStore::stat(self, &key).await?.is_some() {
            return Ok(());
        }
        self.put(&key, bytes).await
    }

    async fn sink(&self, at: SinkAt) -> io::Result<Box<dyn BlobSink>> {
        let (path, temp, offset) = match at {
            SinkAt::Temp => (self.temp_path(), true, 0),
            SinkAt::Upload { id, resume } => {
                (self.path(&layout::upload_data(&id)), false, resume.offset)
            }
        };
        let p = path.clone();
        let file = blocking(move || {
            // A session's data may be created only at its start: a resume
            // whose data vanished (cleanup) must fail, not zero-fill.
            let create = temp || offset == 0;
            if create {
                fsutil::ensure_parent(&p)?;
            }
            let f = std::fs::OpenOptions::new()
                .create(create)
                .read(true)
                .write(true)
                .open(&p)?;
            // Resuming drops whatever a failed or crashed chunk left past the
            // last checkpoint.
            if !temp {
                f.set_len(offset)?;
            }
            Ok(f)
        })
        .await?;
        Ok(Box::new(sink::FsSink::new(
            self.clone(),
            path,
            temp,
            file,
            offset,
        )))
    }

    async fn delete(&self, d: &Digest) -> io::Result<bool> {
        ObjectStore::delete(self, &layout::blob(d)).await
    }

    async fn touch(&self, d: &Digest) -> io::Result<()> {
        let p = self.path(&layout::blob(d));
        blocking(
            move || match std::fs::OpenOptions::new().write(true).open(&p) {
                Ok(f) => f.set_modified(SystemTime::now()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            },
        )
        .await
    }

    async fn list(&self) -> io::Result<Vec<(Digest, ObjectMeta)>> {
        let dir = self.path(layout::BLOBS);
        blocking(move || {
            let mut out = Vec::new();
            for alg in layout::ALGORITHMS {
                for prefix in fsutil::list_dir(&dir.join(alg))? {
                    for name in fsutil::list_dir(&dir.join(alg).join(&prefix))? {
                        let Some(d) = layout::blob_digest(alg, &name) else {
                            continue;
                        };
                        if let Some(m) = stat_path(&dir.join(alg).join(&prefix).join(&name))? {
                            out.push((d, m));
                        }
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn open_upload(&self, id: &str) -> io::Result<Option<BlobData>> {
        open_file(self.path(&layout::upload_data(id))).await
    }

    async fn remove_upload(&self, id: &str) -> io::Result<()> {
        ObjectStore::delete(self, &layout::upload_data(id))
            .await
            .map(|_| ())
    }

    async fn free_space(&self) -> io::Result<Option<u64>> {
        let root = self.root.to_path_buf();
        blocking(move || {
            let s = rustix::fs::statvfs(&root).map_err(io::Error::from)?;
            Ok(Some(s.f_bavail.saturating_mul(s.f_frsize)))
        })
        .await
    }

    async fn cleanup_temp(&self, age: std::time::Duration) -> io::Result<usize> {
        let dir = self.temp_dir();
        blocking(move || {
            let now = SystemTime::now();
            let mut n = 0;
            for e in std::fs::read_dir(&dir)? {
                let p = e?.path();
                let old = std::fs::metadata(&p)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > age);
                if old && remove_if_exists(&p)? {
                    n += 1;
                }
            }
            Ok(n)
        })
        .await
    }
}
