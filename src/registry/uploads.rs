//! Pushing blobs: upload sessions, monolithic uploads and cross-repository
//! mounts, with the project's quota enforced.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::quota::Budgeted;
use super::{Registry, RegistryError, Result};
use crate::auth::{Action, Identity};
use crate::oci::{Digest, RepoName};
use crate::store::{StoreError, UploadStatus, VerifiedBlob};

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
    pub async fn mount(
        &self,
        id: &Identity,
        repo: &RepoName,
        d: &Digest,
        from: Option<&RepoName>,
    ) -> Result<Mount> {
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
        // Only repositories that link `d` (from each namespace's usage
        // index), not a walk of every repository.
        for ns in self.store.namespaces().await? {
            for name in self.store.repos_linking(&ns, d).await? {
                if self.may(id, &name, Action::Pull) && self.store.repo(&name).has_blob(d).await? {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// A whole blob in one request (`POST ?digest=`). Nothing is stored
    /// unless the bytes match `d` and fit the project's limits; a body that
    /// passes them is cut off and its bytes dropped.
    pub async fn put_blob<S, E>(
        &self,
        repo: &RepoName,
        d: &Digest,
        declared_len: Option<u64>,
        body: S,
    ) -> Result<()>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.check_blob_quota(repo, Some(d), declared_len.unwrap_or(0))
            .await?;
        if let Some(len) = declared_len {
            self.store.blobs().ensure_room(len).await?;
        }
        let body = Budgeted::new(body, self.blob_budget(repo, Some(d), 0).await?);
        let cut = body.cut();
        let blob = match self.write_blob(d, declared_len, body).await {
            Err(e) => {
                return Err(match cut.at() {
                    Some(seen) => self.over_budget(repo, seen).await,
                    None => e,
                })
            }
            Ok(b) => b,
        };
        let _project = self.project_lock(repo).await;
        self.check_fits(repo, d, blob.size()).await?;
        blob.commit().await?;
        self.store.repo(repo).link_blob(d).await?;
        Ok(())
    }

    /// Stream `body` into a new blob and verify it is `d`.
    async fn write_blob<S, E>(
        &self,
        d: &Digest,
        declared_len: Option<u64>,
        mut body: S,
    ) -> Result<VerifiedBlob>
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
            return Err(StoreError::SizeMismatch {
                declared,
                actual: w.written(),
            }
            .into());
        }
        Ok(w.verify(d).await?)
    }

    /// Open an upload session for `owner` (an account, or a client
    /// address), within the limits on open sessions.
    pub async fn start_upload(&self, repo: &RepoName, owner: &str) -> Result<String> {
        let b = &self.limits.bounds;
        let open = self.store.uploads().open_sessions(owner).await?;
        if open.mine >= b.max_upload_sessions_per_client {
            return Err(RegistryError::TooMany(format!(
                "{owner} has {} upload sessions open, the limit (limits.max_upload_sessions_per_client) is {}: finish or cancel some first",
                open.mine, b.max_upload_sessions_per_client
            )));
        }
        if open.total >= b.max_upload_sessions {
            return Err(RegistryError::TooMany(format!(
                "wharf has {} upload sessions open, the limit (limits.max_upload_sessions) is {}: retry later",
                open.total, b.max_upload_sessions
            )));
        }
        Ok(self.store.uploads().start(repo, owner).await?)
    }

    pub async fn upload_status(&self, repo: &RepoName, id: &str) -> Result<UploadStatus> {
        Ok(self.store.uploads().status(repo, id).await?)
    }

    /// Append a chunk. A chunk that would take the project past its limits
    /// (known from its length, or found while it streams) cancels the
    /// upload: its session and data are deleted at once.
    pub async fn append_upload<S, E>(
        &self,
        repo: &RepoName,
        id: &str,
        start: Option<u64>,
        len: Option<u64>,
        body: S,
    ) -> Result<UploadStatus>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let offset = self.store.uploads().status(repo, id).await?.offset;
        if let Some(n) = len {
            self.refuse_over_quota(repo, id, None, offset + n).await?;
            self.store.blobs().ensure_room(n).await?;
        }
        let body = Budgeted::new(body, self.blob_budget(repo, None, offset).await?);
        let cut = body.cut();
        match self
            .store
            .uploads()
            .append(repo, id, start, len, body)
            .await
        {
            Err(e) => Err(match cut.at() {
                Some(seen) => self.refuse_session(repo, id, offset + seen).await,
                None => e.into(),
            }),
            Ok(s) => Ok(s),
        }
    }

    /// Finish an upload with its last chunk: verify `d`, and under the
    /// project's lock check its limits, then commit and link.
    pub async fn finish_upload<S, E>(
        &self,
        repo: &RepoName,
        id: &str,
        d: &Digest,
        start: Option<u64>,
        len: Option<u64>,
        body: S,
    ) -> Result<()>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let offset = self.store.uploads().status(repo, id).await?.offset;
        if start.is_some_and(|st| st != offset) {
            return Err(StoreError::RangeMismatch { offset }.into());
        }
        self.refuse_over_quota(repo, id, Some(d), offset + len.unwrap_or(0))
            .await?;
        let body = Budgeted::new(body, self.blob_budget(repo, Some(d), offset).await?);
        let cut = body.cut();
        let prepared = match self.store.uploads().prepare(repo, id, d, len, body).await {
            Err(e) => {
                return Err(match cut.at() {
                    Some(seen) => self.refuse_session(repo, id, offset + seen).await,
                    None => e.into(),
                })
            }
            Ok(p) => p,
        };
        let _project = self.project_lock(repo).await;
        if let Err(e) = self.check_fits(repo, d, prepared.size()).await {
            prepared.abort().await;
            return Err(e);
        }
        prepared.commit().await?;
        Ok(())
    }

    /// Cancel upload `id` if adding `size` bytes would pass the quota.
    async fn refuse_over_quota(
        &self,
        repo: &RepoName,
        id: &str,
        d: Option<&Digest>,
        size: u64,
    ) -> Result<()> {
        if let Err(e) = self.check_blob_quota(repo, d, size).await {
            let _ = self.store.uploads().cancel(repo, id).await;
            return Err(e);
        }
        Ok(())
    }

    /// A session whose body passed its budget after `size` bytes: delete
    /// it and say why.
    async fn refuse_session(&self, repo: &RepoName, id: &str, size: u64) -> RegistryError {
        let _ = self.store.uploads().cancel(repo, id).await;
        self.over_budget(repo, size).await
    }

    pub async fn cancel_upload(&self, repo: &RepoName, id: &str) -> Result<()> {
        Ok(self.store.uploads().cancel(repo, id).await?)
    }
}
