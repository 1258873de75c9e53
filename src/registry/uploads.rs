//! Pushing blobs: upload sessions, monolithic uploads and cross-repository
//! mounts, with the project's quota enforced.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::{Registry, Result};
use crate::auth::{Action, Identity};
use crate::oci::{Digest, RepoName};
use crate::store::{StoreError, UploadStatus};

/// What a mount request became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// The blob is now linked into the repository.
    Mounted,
    /// Not mountable here: the client gets an upload session instead.
    NotMounted,
}

impl Registry {
    /// Link blob `d` into `repo` without an upload, when the client may read
    /// it: from `from` when named (the client must be allowed to pull it),
    /// else from any repository the client may pull (with accounts; without,
    /// anywhere in the store — knowing a digest is not enough otherwise).
    pub async fn mount(&self, id: &Identity, repo: &RepoName, d: &Digest, from: Option<&RepoName>) -> Result<Mount> {
        let present = match from {
            Some(src) if !self.may(id, src, Action::Pull) => false,
            Some(src) => self.store.repo(src).has_blob(d).await?,
            None if !self.auth.enabled() => self.store.blobs().size(d).await?.is_some(),
            None => self.readable_copy(id, d).await?,
        };
        if !present {
            return Ok(Mount::NotMounted);
        }
        let size = self.store.blobs().size(d).await?.unwrap_or(0);
        self.check_blob_quota(repo, Some(d), size).await?;
        self.store.repo(repo).link_blob(d).await?;
        Ok(Mount::Mounted)
    }

    /// Whether blob `d` is in some repository `id` may pull.
    async fn readable_copy(&self, id: &Identity, d: &Digest) -> Result<bool> {
        for name in self.store.all_repositories().await? {
            if self.may(id, &name, Action::Pull) && self.store.repo(&name).has_blob(d).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A whole blob in one request (`POST ?digest=`). Nothing is stored
    /// unless the bytes match `d` and fit the quota.
    pub async fn put_blob<S, E>(&self, repo: &RepoName, d: &Digest, declared_len: Option<u64>, body: S) -> Result<()>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.check_blob_quota(repo, Some(d), declared_len.unwrap_or(0)).await?;
        let before = self.before_commit(repo, d).await?;
        let size = self.write_blob(d, declared_len, body).await?;
        self.store.repo(repo).link_blob(d).await?;
        self.check_committed(repo, d, size, before).await
    }

    /// Stream `body` into a new blob `d`; returns its size.
    async fn write_blob<S, E>(&self, d: &Digest, declared_len: Option<u64>, mut body: S) -> Result<u64>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut w = self.store.blobs().writer(d.algorithm()).await?;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| StoreError::Body(std::io::Error::other(e.into())))?;
            w.write(chunk).await?;
        }
        if let Some(declared) = declared_len.filter(|n| *n != w.written()) {
            return Err(StoreError::SizeMismatch { declared, actual: w.written() }.into());
        }
        Ok(w.commit(d).await?)
    }

    /// Open an upload session.
    pub async fn start_upload(&self, repo: &RepoName) -> Result<String> {
        Ok(self.store.uploads().start(repo).await?)
    }

    pub async fn upload_status(&self, repo: &RepoName, id: &str) -> Result<UploadStatus> {
        Ok(self.store.uploads().status(repo, id).await?)
    }

    /// Append a chunk. When its length is known and the upload would no
    /// longer fit the quota, the upload is cancelled and refused.
    pub async fn append_upload<S, E>(&self, repo: &RepoName, id: &str, start: Option<u64>, len: Option<u64>, body: S) -> Result<UploadStatus>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if let Some(n) = len {
            let s = self.store.uploads().status(repo, id).await?;
            self.refuse_over_quota(repo, id, None, s.offset + n).await?;
        }
        Ok(self.store.uploads().append(repo, id, start, len, body).await?)
    }

    /// Finish an upload with its last chunk: verify `d`, commit, link, and
    /// hold the project to its quota.
    pub async fn finish_upload<S, E>(&self, repo: &RepoName, id: &str, d: &Digest, start: Option<u64>, len: Option<u64>, body: S) -> Result<()>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let s = self.store.uploads().status(repo, id).await?;
        if start.is_some_and(|st| st != s.offset) {
            return Err(StoreError::RangeMismatch { offset: s.offset }.into());
        }
        self.refuse_over_quota(repo, id, Some(d), s.offset + len.unwrap_or(0)).await?;
        let before = self.before_commit(repo, d).await?;
        let size = self.store.uploads().finish(repo, id, d, len, body).await?;
        self.check_committed(repo, d, size, before).await
    }

    /// Cancel upload `id` if adding `size` bytes would pass the quota.
    async fn refuse_over_quota(&self, repo: &RepoName, id: &str, d: Option<&Digest>, size: u64) -> Result<()> {
        if let Err(e) = self.check_blob_quota(repo, d, size).await {
            let _ = self.store.uploads().cancel(repo, id).await;
            return Err(e);
        }
        Ok(())
    }

    pub async fn cancel_upload(&self, repo: &RepoName, id: &str) -> Result<()> {
        Ok(self.store.uploads().cancel(repo, id).await?)
    }
}
