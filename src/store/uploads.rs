//! [`Uploads`]: resumable upload sessions. Chunks are appended in order,
//! hashed as they stream through, and the result becomes a blob only when
//! the client's digest matches.
//!
//! A session is `uploads/<uuid>/` with the data (written through a
//! [`BlobWriter`]) and `meta.json`: the repository, the durable offset, the
//! saved SHA-256 state of the bytes up to it and the backend's resume
//! state. The metadata is rewritten after every chunk, once the chunk is
//! durable, so a session continues after a restart (or on another
//! process) without reading back what it holds. A chunk that fails, or is
//! cut by a crash, is rolled back to the last offset: the next request
//! resumes from there and the bytes past it are dropped.
//!
//! One request per session at a time: requests on the same session queue
//! on a per-session lock (in this process). Any replica sharing the store
//! serves any request of a session (its state is all in the store: a POST
//! on one replica, PATCHes on another and the PUT on a third work); a
//! client must not send two requests of one session at once to two
//! replicas (clients never do: each chunk waits for the previous answer).

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};

use super::backend::{BlobData, SinkAt, SinkState};
use super::writer::BlobWriter;
use super::{layout, Result, Store, StoreError};
use crate::oci::{Digest, RepoName, ResumableSha256};

#[derive(Serialize, Deserialize)]
struct SessionMeta {
    repo: String,
    started: u64,
    /// Who opened it (an account, or a client address), for per-client
    /// limits.
    #[serde(default)]
    owner: String,
    /// The saved SHA-256 state of the data up to `sink.offset`.
    #[serde(default)]
    sha256: String,
    #[serde(default)]
    sink: SinkState,
}

/// Feed bytes `[from, to)` of `file` to `f`, a MiB at a time.
fn read_range(
    file: &std::fs::File,
    from: u64,
    to: u64,
    mut f: impl FnMut(&[u8]),
) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = from;
    while pos < to {
        let n = file.read_at(&mut buf[..(to - pos).min(1 << 20) as usize], pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "upload data shorter than its offset",
            ));
        }
        f(&buf[..n]);
        pos += n as u64;
    }
    Ok(())
}

/// An upload whose bytes matched their digest: commit it (the blob becomes
/// visible and linked, the session ends) or abort it (the session and its
/// data are deleted). The session stays locked meanwhile.
pub struct PreparedUpload<'a> {
    uploads: Uploads<'a>,
    repo: RepoName,
    id: String,
    blob: super::writer::VerifiedBlob,
    _held: tokio::sync::OwnedMutexGuard<()>,
}

impl PreparedUpload<'_> {
    pub fn size(&self) -> u64 {
        self.blob.size()
    }

    /// Make the blob visible, link it into the repository, end the session.
    /// On a storage error the session stays (the client may retry).
    pub async fn commit(self) -> Result<u64> {
        let digest = self.blob.digest().clone();
        let size = self.blob.commit().await?;
        self.uploads.remove(&self.id).await;
        self.uploads
            .store
            .repo(&self.repo)
            .link_blob(&digest)
            .await?;
        Ok(size)
    }

    /// Refuse the upload: delete its session and data now.
    pub async fn abort(self) {
        self.uploads.remove(&self.id).await;
    }
}

/// What a client learns about a session.
#[derive(Debug, Clone, Copy)]
pub struct UploadStatus {
    pub offset: u64,
}

/// Per-session locks of the requests in this process, and who owns which
/// open session (loaded from the store on first use).
#[derive(Default)]
pub(super) struct SessionLocks {
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    owners: Mutex<Option<HashMap<String, String>>>,
    /// When `owners` was read from the store (a store shared with other
    /// replicas reads it again after `storage.s3.refresh_interval`).
    owners_read: Mutex<Option<std::time::Instant>>,
}

/// How many sessions are open: in total, and owned by one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenSessions {
    pub total: usize,
    pub mine: usize,
}

impl SessionLocks {
    fn get(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(id.to_string()).or_default().clone()
    }

    fn forget(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        if let Some(o) = self
            .owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            o.remove(id);
        }
    }

    fn opened(&self, id: &str, owner: &str) {
        if let Some(o) = self
            .owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            o.insert(id.to_string(), owner.to_string());
        }
    }

    /// Unless a request holds `id`, forget it and return true (cleanup may
    /// remove it: a request that looks it up later finds no metadata).
    pub(super) fn claim_idle(&self, id: &str) -> bool {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if m.get(id).is_some_and(|l| l.try_lock().is_err()) {
            return false;
        }
        m.remove(id);
        drop(m);
        if let Some(o) = self
            .owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            o.remove(id);
        }
        true
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The upload facet of a [`Store`].
pub struct Uploads<'a> {
    store: &'a Store,
}

impl<'a> Uploads<'a> {
    pub(super) fn new(store: &'a Store) -> Uploads<'a> {
        Uploads { store }
    }

    async fn save(&self, id: &str, meta: &SessionMeta) -> Result<()> {
        let bytes = serde_json::to_vec(meta).map_err(io::Error::other)?;
        Ok(self
            .store
            .objects()
            .put(&layout::upload_meta(id), Bytes::from(bytes))
            .await?)
    }

    /// The session's metadata (with bytes that a crash left past the last
    /// checkpoint taken over), if it exists and belongs to `repo`.
    async fn load(&self, repo: &RepoName, id: &str) -> Result<SessionMeta> {
        let mut meta = self.load_saved(repo, id).await?;
        self.recover(id, &mut meta).await?;
        Ok(meta)
    }

    /// A process killed in the middle of a chunk leaves the bytes it wrote
    /// past the last checkpoint (they are the prefix of what the client
    /// sent: the file is written in order). Hash them and keep them, so the
    /// client resumes after them rather than from the chunk's start.
    async fn recover(&self, id: &str, meta: &mut SessionMeta) -> Result<()> {
        let Some(BlobData::File { file, len }) = self.store.blob_backend().open_upload(id).await?
        else {
            return Ok(());
        };
        let from = meta.sink.offset;
        if len <= from {
            return Ok(());
        }
        let Some(mut h) = ResumableSha256::restore(&meta.sha256).filter(|h| h.len() == from) else {
            return Ok(());
        };
        let h = super::fs::blocking(move || {
            read_range(&file, from, len, |b| h.update(b))?;
            Ok(h)
        })
        .await?;
        tracing::info!(
            upload = id,
            from,
            to = len,
            "upload session resumes after bytes a crash left"
        );
        meta.sink.offset = len;
        meta.sha256 = h.save();
        self.save(id, meta).await
    }

    /// The session's metadata as last saved.
    async fn load_saved(&self, repo: &RepoName, id: &str) -> Result<SessionMeta> {
        let Some(b) = self.store.objects().get(&layout::upload_meta(id)).await? else {
            return Err(StoreError::UploadUnknown);
        };
        let meta: SessionMeta =
            serde_json::from_slice(&b).map_err(|_| StoreError::UploadUnknown)?;
        if meta.repo != repo.as_str() {
            return Err(StoreError::UploadUnknown);
        }
        Ok(meta)
    }

    /// How many sessions are open, in total and owned by `owner`.
    pub async fn open_sessions(&self, owner: &str) -> Result<OpenSessions> {
        let locks = &self.store.inner.sessions;
        let loaded = locks
            .owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        // Other replicas open and finish sessions too: their view expires.
        let stale = self.store.cluster().is_some_and(|c| {
            locks
                .owners_read
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_none_or(|t| t.elapsed() >= c.refresh)
        });
        if !loaded || stale {
            *locks.owners_read.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(std::time::Instant::now());
            let mut found = HashMap::new();
            for (id, _) in self.list().await? {
                if let Ok(Some(b)) = self.store.objects().get(&layout::upload_meta(&id)).await {
                    let owner = serde_json::from_slice::<SessionMeta>(&b)
                        .map(|m| m.owner)
                        .unwrap_or_default();
                    found.insert(id, owner);
                }
            }
            let mut o = locks.owners.lock().unwrap_or_else(|e| e.into_inner());
            // Sessions opened while the store was read are in `o` already;
            // a re-read (other replicas) replaces the view.
            match o.as_mut() {
                Some(known) if !stale => known.extend(found),
                _ => *o = Some(found),
            }
        }
        let o = locks.owners.lock().unwrap_or_else(|e| e.into_inner());
        let all = o.as_ref().map(|m| m.values()).into_iter().flatten();
        let (mut total, mut mine) = (0, 0);
        for who in all {
            total += 1;
            mine += usize::from(who == owner);
        }
        Ok(OpenSessions { total, mine })
    }

    /// Open a new session for `repo`, owned by `owner`; returns its id.
    pub async fn start(&self, repo: &RepoName, owner: &str) -> Result<String> {
        let id = uuid::Uuid::new_v4().to_string();
        let meta = SessionMeta {
            repo: repo.to_string(),
            owner: owner.to_string(),
            started: unix_now(),
            sha256: ResumableSha256::new().save(),
            sink: SinkState::default(),
        };
        self.save(&id, &meta).await?;
        // Creates the (empty) data.
        let resume = SinkAt::Upload {
            id: id.clone(),
            resume: SinkState::default(),
        };
        self.store.blob_backend().sink(resume).await?;
        self.store.inner.sessions.opened(&id, owner);
        Ok(id)
    }

    /// Current state of a session.
    pub async fn status(&self, repo: &RepoName, id: &str) -> Result<UploadStatus> {
        let meta = self.load(repo, id).await?;
        Ok(UploadStatus {
            offset: meta.sink.offset,
        })
    }

    /// A writer continuing the session from its last durable offset.
    async fn resume(&self, id: &str, meta: &SessionMeta) -> Result<BlobWriter> {
        let state = match ResumableSha256::restore(&meta.sha256) {
            Some(s) if s.len() == meta.sink.offset => s,
            _ => {
                return Err(StoreError::Corrupt(format!(
                    "upload {id} has no usable hash state"
                )))
            }
        };
        let at = SinkAt::Upload {
            id: id.to_string(),
            resume: meta.sink.clone(),
        };
        Ok(BlobWriter::resumed(
            self.store.blob_backend().sink(at).await?,
            state,
        ))
    }

    /// Append a chunk. `start` (from `Content-Range`) must equal the current
    /// offset; `declared_len` (from `Content-Length`) must match what
    /// arrives, else the chunk is rolled back.
    pub async fn append<S, E>(
        &self,
        repo: &RepoName,
        id: &str,
        start: Option<u64>,
        declared_len: Option<u64>,
        body: S,
    ) -> Result<UploadStatus>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let lock = self.store.inner.sessions.get(id);
        let _held = lock.lock().await;
        let meta = self.load(repo, id).await?;
        if let Some(start) = start {
            if start != meta.sink.offset {
                return Err(StoreError::RangeMismatch {
                    offset: meta.sink.offset,
                });
            }
        }
        let mut w = self.resume(id, &meta).await?;
        let cut = self
            .append_locked(id, meta, &mut w, declared_len, body)
            .await?;
        let offset = w.written();
        match cut {
            Some(e) => Err(StoreError::Body(e)),
            None => Ok(UploadStatus { offset }),
        }
    }

    /// Stream `body` into `w` and persist the new offset. A chunk with a
    /// declared length that does not arrive whole is rolled back; a streamed
    /// chunk that was cut keeps what arrived (returned as `Some(error)`).
    async fn append_locked<S, E>(
        &self,
        id: &str,
        mut meta: SessionMeta,
        w: &mut BlobWriter,
        declared_len: Option<u64>,
        mut body: S,
    ) -> Result<Option<io::Error>>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let before = w.written();
        let mut cut = None;
        while let Some(item) = body.next().await {
            match item {
                Ok(chunk) => w.write(chunk).await?,
                Err(e) => {
                    cut = Some(io::Error::other(e.into()));
                    break;
                }
            }
        }
        let received = w.written() - before;
        if let Some(declared) = declared_len {
            // A chunk of declared length arrives whole or not at all.
            let failed = match cut.take() {
                Some(e) => Some(StoreError::Body(e)),
                None if declared != received => Some(StoreError::SizeMismatch {
                    declared,
                    actual: received,
                }),
                None => None,
            };
            if let Some(e) = failed {
                w.rollback().await?;
                return Err(e);
            }
        }
        let cp = w.checkpoint().await?;
        meta.sink = cp.sink;
        meta.sha256 = cp.sha256;
        self.save(id, &meta).await?;
        Ok(cut)
    }

    /// Finish an upload's data: append the optional last chunk and verify
    /// `digest`. On a mismatch the session is discarded and nothing is
    /// stored; on a match the blob is not visible until
    /// [`PreparedUpload::commit`] (the caller checks its rules in between).
    pub async fn prepare<S, E>(
        &self,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
        declared_len: Option<u64>,
        body: S,
    ) -> Result<PreparedUpload<'a>>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let lock = self.store.inner.sessions.get(id);
        let held = lock.clone().lock_owned().await;
        let meta = self.load(repo, id).await?;
        let mut w = self.resume(id, &meta).await?;
        if let Some(e) = self
            .append_locked(id, meta, &mut w, declared_len, body)
            .await?
        {
            return Err(StoreError::Body(e));
        }
        let actual = match digest.algorithm() {
            crate::oci::Algorithm::Sha256 => None,
            alg => Some(w.rehash(alg).await?),
        };
        match w.verify_as(digest, actual).await {
            Ok(blob) => Ok(PreparedUpload {
                uploads: Uploads { store: self.store },
                repo: repo.clone(),
                id: id.to_string(),
                blob,
                _held: held,
            }),
            Err(e) => {
                self.remove(id).await;
                Err(e)
            }
        }
    }

    /// Cancel a session and delete its data.
    pub async fn cancel(&self, repo: &RepoName, id: &str) -> Result<()> {
        let lock = self.store.inner.sessions.get(id);
        let _held = lock.lock().await;
        self.load(repo, id).await?;
        self.remove(id).await;
        Ok(())
    }

    /// Delete a session's data and metadata.
    async fn remove(&self, id: &str) {
        self.store.inner.sessions.forget(id);
        if let Err(e) = self.store.blob_backend().remove_upload(id).await {
            tracing::warn!(upload = id, error = %e, "could not remove upload data");
        }
        if let Err(e) = self
            .store
            .objects()
            .delete_dir(&layout::upload_dir(id))
            .await
        {
            tracing::warn!(upload = id, error = %e, "could not remove upload session");
        }
    }

    /// Every session id with the time it was last written.
    pub(super) async fn list(&self) -> Result<Vec<(String, Option<SystemTime>)>> {
        let mut out = Vec::new();
        for name in self
            .store
            .objects()
            .list(layout::UPLOADS, None, usize::MAX)
            .await?
        {
            let Some(id) = name.strip_suffix('/') else {
                continue;
            };
            let data = self.store.objects().stat(&layout::upload_data(id)).await?;
            let meta = self.store.objects().stat(&layout::upload_meta(id)).await?;
            let t = [data, meta].into_iter().flatten().map(|m| m.modified).max();
            out.push((id.to_string(), t));
        }
        Ok(out)
    }

    /// Remove session `id` unless a request holds it (cleanup).
    pub(super) async fn remove_if_idle(&self, id: &str) -> bool {
        if !self.store.inner.sessions.claim_idle(id) {
            return false;
        }
        self.remove(id).await;
        true
    }
}
