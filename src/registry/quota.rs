//! Project quotas (`quota`: bytes a project may hold) and image size limits
//! (`max_image_size`: manifest + its unique blobs), checked on push.
//!
//! Usage is the project's stored bytes, each blob and manifest counted once
//! however many repositories and tags share it, so pushing a blob the
//! project already links costs nothing. Checks run as early as the size is
//! known: a chunk's `Content-Length` at `PATCH`/`POST`, the blob's size at
//! upload finish, the manifest's references at manifest `PUT`. A refused
//! upload is cancelled and a refused blob unlinked, so it is not counted.

use std::collections::BTreeSet;

use super::{Registry, RegistryError, Result};
use crate::oci::manifest::{self, Manifest};
use crate::oci::{Digest, RepoName};

/// What [`Registry::check_committed`] needs, taken before an upload
/// finishes: whether the project already had the blob.
pub(super) struct Before {
    had: bool,
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
    pub(super) async fn check_blob_quota(&self, repo: &RepoName, d: Option<&Digest>, size: u64) -> Result<()> {
        let Some(quota) = self.quota_of(repo) else { return Ok(()) };
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

    /// Taken before an upload finishes (see [`Self::check_committed`]).
    pub(super) async fn before_commit(&self, repo: &RepoName, d: &Digest) -> Result<Option<Before>> {
        if self.quota_of(repo).is_none() {
            return Ok(None);
        }
        Ok(Some(Before {
            had: self.store.namespace_links(repo.first(), d).await?,
        }))
    }

    /// After an upload finished (its size known only now): if the blob was
    /// new to the project and does not fit, unlink it again and refuse.
    /// Measured with this blob linked, so concurrent pushes that each passed
    /// the early check cannot together overshoot the quota.
    pub(super) async fn check_committed(&self, repo: &RepoName, d: &Digest, size: u64, before: Option<Before>) -> Result<()> {
        let (Some(quota), Some(before)) = (self.quota_of(repo), before) else { return Ok(()) };
        if before.had {
            return Ok(());
        }
        let now = self.store.usage(repo.first()).await?;
        if now <= quota {
            return Ok(());
        }
        self.store.repo(repo).unlink_blob(d).await?;
        Err(self.over_quota(repo, quota, now.saturating_sub(size), size))
    }

    /// At manifest `PUT`: the image's size (manifest + unique referenced
    /// blobs, for an index its children's) against `max_image_size`, and the
    /// manifest's own bytes against the quota.
    pub(super) async fn check_manifest_quota(&self, repo: &RepoName, d: &Digest, m: &Manifest, len: u64) -> Result<()> {
        let Some(p) = self.projects.get(repo.first()) else { return Ok(()) };
        if let Some(max) = p.max_image_size {
            let mut blobs = BTreeSet::new();
            if manifest::is_index(&m.media_type) {
                for c in &m.manifests {
                    blobs.extend(self.store.repo(repo).closure(&c.digest).await?);
                }
            }
            for b in m.config.iter().chain(&m.layers) {
                if !b.urls.as_ref().is_some_and(|u| !u.is_empty()) {
                    blobs.insert(b.digest.clone());
                }
            }
            blobs.remove(d);
            let size = self.store.blobs().total_size(&blobs).await? + len;
            if size > max {
                return Err(RegistryError::ImageTooLarge {
                    project: p.name,
                    digest: d.clone(),
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
