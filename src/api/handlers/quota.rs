//! Project quotas (`quota`: bytes a project may hold) and image size limits
//! (`max_image_size`: manifest + its unique blobs), checked on push.
//!
//! Usage is the project's stored bytes, each blob and manifest counted once
//! however many repositories and tags share it, so pushing a blob the
//! project already links costs nothing. Checks run as early as the size is
//! known: a chunk's `Content-Length` at `PATCH`/`POST`, the blob's size at
//! upload finish, the manifest's references at manifest `PUT`. A refused
//! upload is cancelled and a refused blob unlinked, so it is not counted.

use crate::api::error::ApiError;
use crate::api::Api;
use crate::oci::manifest::{self, Manifest};
use crate::oci::{Digest, ErrorCode, RepoName};
use crate::store::gc::namespace_of;

fn denied(msg: String) -> ApiError {
    ApiError::new(ErrorCode::Denied).detail(msg)
}

/// The project's quota, if it has one.
fn quota_of(api: &Api, repo: &RepoName) -> Option<u64> {
    api.auth.project(namespace_of(repo)).and_then(|p| p.quota)
}

/// Refuse adding `size` bytes (blob `d` when known) to `repo`'s project if
/// that would exceed its quota. A blob the project already links is free.
pub async fn check_blob(api: &Api, repo: &RepoName, d: Option<&Digest>, size: u64) -> Result<(), ApiError> {
    let Some(quota) = quota_of(api, repo) else { return Ok(()) };
    let ns = namespace_of(repo);
    if let Some(d) = d {
        if api.store.namespace_links(ns, d).await? {
            return Ok(());
        }
    }
    let usage = api.store.usage(ns).await?;
    if usage.saturating_add(size) > quota {
        return Err(denied(format!(
            "project {ns} is over its quota: quota {quota} bytes, usage {usage} bytes, this push {size} bytes"
        )));
    }
    Ok(())
}

/// After an upload finished (its size known only now): if the blob was new
/// to the project and does not fit, unlink it again and refuse.
pub async fn check_committed(
    api: &Api,
    repo: &RepoName,
    d: &Digest,
    size: u64,
    before: Option<(bool, u64)>,
) -> Result<(), ApiError> {
    let (Some(quota), Some((had, _))) = (quota_of(api, repo), before) else { return Ok(()) };
    if had {
        return Ok(());
    }
    // Measured now, with this blob linked: concurrent pushes that each
    // passed the early check cannot together overshoot the quota.
    let now = api.store.usage(namespace_of(repo)).await?;
    if now <= quota {
        return Ok(());
    }
    let usage = now.saturating_sub(size);
    api.store.unlink_blob(repo, d).await?;
    Err(denied(format!(
        "project {} is over its quota: quota {quota} bytes, usage {usage} bytes, this blob {size} bytes",
        namespace_of(repo)
    )))
}

/// What [`check_committed`] needs, taken before the upload finishes.
pub async fn before_commit(api: &Api, repo: &RepoName, d: &Digest) -> Result<Option<(bool, u64)>, ApiError> {
    if quota_of(api, repo).is_none() {
        return Ok(None);
    }
    let ns = namespace_of(repo);
    let had = api.store.namespace_links(ns, d).await?;
    let usage = api.store.usage(ns).await?;
    Ok(Some((had, usage)))
}

/// At manifest `PUT`: the image's size (manifest + unique referenced blobs,
/// for an index its children's) against `max_image_size`, and the
/// manifest's own bytes against the quota.
pub async fn check_manifest(api: &Api, repo: &RepoName, d: &Digest, m: &Manifest, len: u64) -> Result<(), ApiError> {
    let ns = namespace_of(repo);
    let Some(p) = api.auth.project(ns) else { return Ok(()) };
    if let Some(max) = p.max_image_size {
        let mut blobs = std::collections::BTreeSet::new();
        if manifest::is_index(&m.media_type) {
            for c in &m.manifests {
                blobs.extend(api.store.closure(repo, &c.digest).await?);
            }
        }
        for b in m.config.iter().chain(&m.layers) {
            if !b.urls.as_ref().is_some_and(|u| !u.is_empty()) {
                blobs.insert(b.digest.clone());
            }
        }
        blobs.remove(d);
        let size = api.store.total_size(&blobs).await? + len;
        if size > max {
            return Err(denied(format!(
                "image {d} is {size} bytes, more than project {ns}'s max image size of {max} bytes"
            )));
        }
    }
    if p.quota.is_some() {
        check_blob(api, repo, Some(d), len).await?;
    }
    Ok(())
}
