//! Upload sessions: chunks are appended in order, hashed as they stream
//! through, and the result is committed to the blob store only when the
//! client's digest matches.
//!
//! Each session is a folder `uploads/<uuid>/` with `data` and `meta.json`,
//! so sessions survive a restart. The running hash lives in memory; after a
//! restart it is rebuilt from `data` on first use. One async mutex per
//! session serializes requests on the same session.

use std::io::{self, SeekFrom};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufWriter};

use super::fsutil::{read_opt, write_atomic};
use super::{blocking, Store, StoreError};
use crate::oci::{Algorithm, Digest, Hasher, RepoName};

const WRITE_BUFFER: usize = 256 * 1024;

#[derive(Serialize, Deserialize)]
struct Meta {
    repo: String,
    started: u64,
}

pub(super) struct Session {
    repo: RepoName,
    /// Bytes durably in `data` that belong to the upload.
    offset: u64,
    /// SHA-256 of `data[..offset]`; `None` until rebuilt after a restart or
    /// a write error.
    hasher: Option<Hasher>,
    /// Set once the session is committed or cancelled.
    closed: bool,
}

/// What a client learns about a session.
#[derive(Debug, Clone, Copy)]
pub struct UploadStatus {
    pub offset: u64,
}

impl Store {
    /// Open a new upload session for `repo`; returns its id.
    pub async fn start_upload(&self, repo: &RepoName) -> Result<String, StoreError> {
        let id = uuid::Uuid::new_v4().to_string();
        let layout = self.layout().clone();
        let meta = serde_json::to_vec(&Meta {
            repo: repo.to_string(),
            started: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        })
        .map_err(io::Error::other)?;
        let tmp = self.temp_path();
        let id2 = id.clone();
        blocking(move || {
            std::fs::create_dir_all(layout.upload_dir(&id2))?;
            std::fs::File::create(layout.upload_data(&id2))?;
            write_atomic(&tmp, &layout.upload_meta(&id2), &meta)
        })
        .await?;
        let session = Session {
            repo: repo.clone(),
            offset: 0,
            hasher: Some(Hasher::new(Algorithm::Sha256)),
            closed: false,
        };
        self.sessions().insert(id.clone(), Arc::new(tokio::sync::Mutex::new(session)));
        Ok(id)
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Arc<tokio::sync::Mutex<Session>>>> {
        // A poisoned map only means a panic elsewhere; the map itself is fine.
        self.inner.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Find a session (loading it from disk after a restart) that belongs to
    /// `repo`. `id` must already be a validated UUID.
    async fn session(
        &self,
        repo: &RepoName,
        id: &str,
    ) -> Result<Arc<tokio::sync::Mutex<Session>>, StoreError> {
        let found = self.sessions().get(id).cloned();
        let s = match found {
            Some(s) => s,
            None => {
                let layout = self.layout().clone();
                let id2 = id.to_string();
                let loaded = blocking(move || {
                    let Some(meta) = read_opt(&layout.upload_meta(&id2))? else {
                        return Ok(None);
                    };
                    let len = match std::fs::metadata(layout.upload_data(&id2)) {
                        Ok(m) => m.len(),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                        Err(e) => return Err(e),
                    };
                    Ok(Some((meta, len)))
                })
                .await?;
                let Some((meta, len)) = loaded else {
                    return Err(StoreError::UploadUnknown);
                };
                let meta: Meta = serde_json::from_slice(&meta).map_err(|_| StoreError::UploadUnknown)?;
                let repo: RepoName = meta.repo.parse().map_err(|_| StoreError::UploadUnknown)?;
                let session = Arc::new(tokio::sync::Mutex::new(Session {
                    repo,
                    offset: len,
                    hasher: None,
                    closed: false,
                }));
                self.sessions().entry(id.to_string()).or_insert(session).clone()
            }
        };
        if &s.lock().await.repo != repo {
            return Err(StoreError::UploadUnknown);
        }
        Ok(s)
    }

    /// Current state of a session.
    pub async fn upload_status(&self, repo: &RepoName, id: &str) -> Result<UploadStatus, StoreError> {
        let s = self.session(repo, id).await?;
        let g = s.lock().await;
        if g.closed {
            return Err(StoreError::UploadUnknown);
        }
        Ok(UploadStatus { offset: g.offset })
    }

    /// Append a chunk. `start` (from `Content-Range`) must equal the current
    /// offset; `declared_len` (from `Content-Length`) must match what
    /// arrives, else the chunk is rolled back.
    pub async fn upload_append<S, E>(
        &self,
        repo: &RepoName,
        id: &str,
        start: Option<u64>,
        declared_len: Option<u64>,
        body: S,
    ) -> Result<UploadStatus, StoreError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let s = self.session(repo, id).await?;
        let mut g = s.lock().await;
        if g.closed {
            return Err(StoreError::UploadUnknown);
        }
        if let Some(start) = start {
            if start != g.offset {
                return Err(StoreError::RangeMismatch { offset: g.offset });
            }
        }
        self.append_locked(id, &mut g, declared_len, body).await?;
        Ok(UploadStatus { offset: g.offset })
    }

    async fn append_locked<S, E>(
        &self,
        id: &str,
        g: &mut Session,
        declared_len: Option<u64>,
        mut body: S,
    ) -> Result<(), StoreError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = self.layout().upload_data(id);
        let mut file = match tokio::fs::OpenOptions::new().read(true).write(true).open(&path).await {
            Ok(f) => f,
            // Removed by cleanup after this request looked the session up.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::UploadUnknown),
            Err(e) => return Err(e.into()),
        };
        if g.hasher.is_none() {
            g.hasher = Some(rehash(&mut file, g.offset, Algorithm::Sha256).await?);
        }
        file.set_len(g.offset).await?;
        file.seek(SeekFrom::Start(g.offset)).await?;
        let before = g.hasher.clone();
        let mut hasher = g.hasher.take().unwrap_or_else(|| Hasher::new(Algorithm::Sha256));
        let mut w = BufWriter::with_capacity(WRITE_BUFFER, file);
        let mut written: u64 = 0;
        let mut body_err = None;
        let mut io_err = None;
        while let Some(item) = body.next().await {
            match item {
                Ok(chunk) => {
                    if let Err(e) = w.write_all(&chunk).await {
                        io_err = Some(e);
                        break;
                    }
                    hasher.update(&chunk);
                    written += chunk.len() as u64;
                }
                Err(e) => {
                    body_err = Some(io::Error::other(e.into()));
                    break;
                }
            }
        }
        if io_err.is_none() {
            if let Err(e) = w.flush().await {
                io_err = Some(e);
            }
        }
        let file = w.into_inner();
        let rollback = io_err.is_some()
            || (declared_len.is_some() && (body_err.is_some() || declared_len != Some(written)));
        if rollback {
            // Leave the session exactly as it was before this chunk.
            let _ = file.set_len(g.offset).await;
            g.hasher = before;
            if let Some(e) = io_err {
                return Err(StoreError::Io(e));
            }
            if let Some(e) = body_err {
                return Err(StoreError::Body(e));
            }
            return Err(StoreError::SizeMismatch {
                declared: declared_len.unwrap_or(0),
                actual: written,
            });
        }
        file.sync_data().await?;
        g.offset += written;
        g.hasher = Some(hasher);
        match body_err {
            // A streamed chunk that was cut keeps what arrived; the client
            // can ask for the status and resume.
            Some(e) => Err(StoreError::Body(e)),
            None => Ok(()),
        }
    }

    /// Finish an upload: append the optional last chunk, verify `digest`,
    /// commit the blob and link it into `repo`. On a digest mismatch the
    /// session is discarded and nothing is stored.
    pub async fn upload_finish<S, E>(
        &self,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
        declared_len: Option<u64>,
        body: S,
    ) -> Result<u64, StoreError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let s = self.session(repo, id).await?;
        let mut g = s.lock().await;
        if g.closed {
            return Err(StoreError::UploadUnknown);
        }
        self.append_locked(id, &mut g, declared_len, body).await?;
        let path = self.layout().upload_data(id);
        let actual = match (&g.hasher, digest.algorithm()) {
            (Some(h), alg) if h.algorithm() == alg => h.clone().finish(),
            (_, alg) => {
                let mut f = tokio::fs::File::open(&path).await?;
                rehash(&mut f, g.offset, alg).await?.finish()
            }
        };
        if &actual != digest {
            g.closed = true;
            self.drop_session(id).await;
            return Err(StoreError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        // data was fsynced by append_locked; move it into the blob store.
        let size = g.offset;
        self.commit_blob_file(path, digest).await?;
        self.link_blob(repo, digest).await?;
        g.closed = true;
        self.drop_session(id).await;
        Ok(size)
    }

    /// Cancel a session and delete its data.
    pub async fn upload_cancel(&self, repo: &RepoName, id: &str) -> Result<(), StoreError> {
        let s = self.session(repo, id).await?;
        let mut g = s.lock().await;
        if g.closed {
            return Err(StoreError::UploadUnknown);
        }
        g.closed = true;
        self.drop_session(id).await;
        Ok(())
    }

    async fn drop_session(&self, id: &str) {
        self.sessions().remove(id);
        let dir = self.layout().upload_dir(id);
        if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(upload = id, error = %e, "could not remove upload folder");
            }
        }
    }
}

/// Hash the first `len` bytes of `file`.
async fn rehash(file: &mut tokio::fs::File, len: u64, alg: Algorithm) -> io::Result<Hasher> {
    file.seek(SeekFrom::Start(0)).await?;
    let mut h = Hasher::new(alg);
    let mut buf = vec![0u8; WRITE_BUFFER];
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = file.read(&mut buf[..want]).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "upload data shorter than its offset"));
        }
        h.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(h)
}

impl Store {
    /// For cleanup: unless a request holds the session, mark it closed and
    /// drop it from memory, under the map lock so no request can take it in
    /// between. Returns false (leave it alone) when it is busy.
    pub(super) fn claim_idle_session(&self, id: &str) -> bool {
        let mut map = self.sessions();
        if let Some(s) = map.get(id) {
            match s.try_lock() {
                Ok(mut g) => g.closed = true,
                Err(_) => return false,
            }
        }
        map.remove(id);
        true
    }
}
