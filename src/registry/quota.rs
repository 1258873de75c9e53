//! Project quotas (`quota`: bytes a project may hold) and image size limits
//! (`max_image_size`: manifest + its unique blobs), checked on push.
//!
//! Usage is the project's stored bytes, each blob and manifest counted once
//! however many repositories and tags share it, so pushing a blob the
//! project already links costs nothing. Checks run as early as the size is
//! known: a chunk's `Content-Length` at `PATCH`/`POST`, the bytes actually
//! received while a body streams (the request is cut as soon as it passes
//! the budget), the blob's size at upload finish (under the project's lock,
//! before the blob becomes visible), the manifest's references at manifest
//! `PUT`. A refused upload's session and data are deleted at once.
//!
//! Several replicas on one store: the project lock orders the finishes of
//! one replica only. Each replica's final check counts what the store
//! holds at that moment (usage is scanned again, see
//! [`Store::usage_refresh`](crate::store::Store::usage_refresh)), so a
//! blob that another replica is committing in the same instant is not yet
//! counted: replicas pushing into one project together pass its quota by
//! at most one in-flight upload each.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;

use super::{Registry, RegistryError, Result};
use crate::oci::manifest::{self, Manifest};
use crate::oci::{Digest, RepoName};

/// A request body cut off once it passes a byte budget: the rest is never
/// read or stored. [`Budgeted::cut`] tells afterwards whether (and after how
/// many bytes) it was cut.
pub(super) struct Budgeted<S> {
    inner: S,
    left: Option<u64>,
    cut: Arc<Cut>,
}

/// Whether a [`Budgeted`] body was cut, and the bytes it had brought then.
#[derive(Default)]
pub(super) struct Cut {
    over: AtomicBool,
    seen: AtomicU64,
}

impl Cut {
    /// `Some(bytes seen)` when the body was cut.
    pub(super) fn at(&self) -> Option<u64> {
        self.over
            .load(Ordering::SeqCst)
            .then(|| self.seen.load(Ordering::SeqCst))
    }
}

impl<S> Budgeted<S> {
    /// `body` with at most `budget` bytes (`None`: unlimited).
    pub(super) fn new(inner: S, budget: Option<u64>) -> Budgeted<S> {
        Budgeted {
            inner,
            left: budget,
            cut: Arc::default(),
        }
    }

    pub(super) fn cut(&self) -> Arc<Cut> {
        self.cut.clone()
    }
}

impl<S, E> Stream for Budgeted<S>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Item = std::result::Result<Bytes, Box<dyn std::error::Error + Send + Sync>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match std::task::ready!(Pin::new(&mut this.inner).poll_next(cx)) {
            Some(Ok(chunk)) => {
                let n = chunk.len() as u64;
                this.cut.seen.fetch_add(n, Ordering::SeqCst);
                if let Some(left) = &mut this.left {
                    if n > *left {
                        this.cut.over.store(true, Ordering::SeqCst);
                        return Poll::Ready(Some(Err(
                            "the push is over its project's quota or image size limit".into(),
                        )));
                    }
                    *left -= n;
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            None => Poll::Ready(None),
        }
    }
}

impl Registry {
    /// The project's quota, if it has one.
    fn quota_of(&self, repo: &RepoName) -> Option<u64> {
        self.projects.get(repo.first()).and_then(|p| p.quota)
    }

    fn over_quota(&self, repo: &RepoName, quota: u64, usage: u64, size: u64) -> RegistryError {
        RegistryError::QuotaExceeded {
            project: repo.first().to_string(),
            quota,
            usage,
            size,
        }
    }

    /// Refuse adding `size` bytes (blob `d` when known) to `repo`'s project
    /// if that would exceed its quota. A blob the project already links is
    /// free.
    pub(super) async fn check_blob_quota(
        &self,
        repo: &RepoName,
        d: Option<&Digest>,
        size: u64,
    ) -> Result<()> {
        let Some(quota) = self.quota_of(repo) else {
            return Ok(());
        };
        let ns = repo.first();
        if let Some(d) = d {
            if self.store.namespace_links(ns, d).await? {
                return Ok(());
            }
        }
        let usage = self.store.usage(ns).await?;
        if usage.saturating_add(size) > quota {
            return Err(self.over_quota(repo, quota, usage, size));
        }
        Ok(())
    }

    /// How many more bytes blob `d` (when known) may add to `repo`'s
    /// project after `already` bytes of it: `None` when nothing limits it
    /// (no quota and no image size limit, or the project already holds the
    /// blob). A single blob never exceeds `max_image_size`.
    pub(super) async fn blob_budget(
        &self,
        repo: &RepoName,
        d: Option<&Digest>,
        already: u64,
    ) -> Result<Option<u64>> {
        let Some(p) = self.projects.get(repo.first()) else {
            return Ok(None);
        };
        if p.quota.is_none() && p.max_image_size.is_none() {
            return Ok(None);
        }
        if let Some(d) = d {
            if self.store.namespace_links(repo.first(), d).await? {
                return Ok(None);
            }
        }
        let by_quota = match p.quota {
            Some(q) => Some(q.saturating_sub(self.store.usage(repo.first()).await?)),
            None => None,
        };
        let budget = [by_quota, p.max_image_size]
            .into_iter()
            .flatten()
            .min()
            .map(|b| b.saturating_sub(already));
        Ok(budget)
    }

    /// The refusal for a body cut off by its budget: the quota's numbers
    /// when the quota was the limit, the image size otherwise.
    pub(super) async fn over_budget(&self, repo: &RepoName, size: u64) -> RegistryError {
        let p = self.projects.get(repo.first());
        let usage = self.store.usage(repo.first()).await.unwrap_or(0);
        match p.as_ref().and_then(|p| p.quota) {
            Some(quota) if usage.saturating_add(size) > quota => {
                self.over_quota(repo, quota, usage, size)
            }
            _ => RegistryError::ImageTooLarge {
                project: repo.first().to_string(),
                digest: None,
                size,
                max: p.and_then(|p| p.max_image_size).unwrap_or(0),
            },
        }
    }

    /// The project's lock: taken from the final quota check to the link of
    /// the blob, so two pushes into one project cannot both fit alone and
    /// together pass the quota.
    pub(super) async fn project_lock(&self, repo: &RepoName) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut m = self.project_locks.lock().unwrap_or_else(|e| e.into_inner());
            m.entry(repo.first().to_string()).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// Under the project lock, before blob `d` of `size` bytes becomes
    /// visible: refuse it if it does not fit (a blob the project holds is
    /// free).
    pub(super) async fn check_fits(&self, repo: &RepoName, d: &Digest, size: u64) -> Result<()> {
        let Some(quota) = self.quota_of(repo) else {
            return Ok(());
        };
        // Other replicas push into the project too: count what the store
        // holds now (a no-op on a store of one process).
        self.store.usage_refresh(repo.first()).await?;
        if self.store.namespace_links(repo.first(), d).await? {
            return Ok(());
        }
        let usage = self.store.usage(repo.first()).await?;
        if usage.saturating_add(size) > quota {
            return Err(self.over_quota(repo, quota, usage, size));
        }
        Ok(())
    }

    /// At manifest `PUT`: the image's size (manifest + unique referenced
    /// blobs, for an index its children's) against `max_image_size`, and the
    /// manifest's own bytes against the quota.
    pub(super) async fn check_manifest_quota(
        &self,
        repo: &RepoName,
        d: &Digest,
        m: &Manifest,
        len: u64,
    ) -> Result<()> {
        let Some(p) = self.projects.get(repo.first()) else {
            return Ok(());
        };
        if let Some(max) = p.max_image_size {
            let mut blobs = BTreeSet::new();
            if manifest::is_index(&m.media_type) {
                for c in &m.manifests {
                    blobs.extend(self.store.repo(repo).closure(&c.digest).await?);
                }
            }
            for b in m.config.iter().chain(&m.layers) {
                if !b.is_foreign() {
                    blobs.insert(b.digest.clone());
                }
            }
            blobs.remove(d);
            let size = self.store.blobs().total_size(&blobs).await? + len;
            if size > max {
                return Err(RegistryError::ImageTooLarge {
                    project: p.name,
                    digest: Some(d.clone()),
                    size,
                    max,
                });
            }
        }
        if p.quota.is_some() {
            self.check_blob_quota(repo, Some(d), len).await?;
        }
        Ok(())
    }
}
