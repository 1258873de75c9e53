//! Managing the pull-through cache by hand (admins): list what is cached
//! with its pins, pin or unpin an image so eviction keeps or may take it,
//! and purge images or a whole cached repository now. Only repositories
//! of remote namespaces (`<remote>/...`) are touched here; pushed content
//! has its own deletion rules in [`super::admin`].

use std::collections::HashSet;

use serde_json::json;

use super::views::{CachedImage, PinView};
use super::{Registry, RegistryError, Result};
use crate::auth::Identity;
use crate::oci::{Digest, Reference, RepoName};
use crate::proxy::evict::{self, EvictReport};

impl Registry {
    /// Every cached image with its tags, size, times and pin.
    pub async fn cached_images(&self, id: &Identity) -> Result<Vec<CachedImage>> {
        self.require_admin(id)?;
        let mut out = Vec::new();
        for remote in self.namespaces().router().remotes() {
            out.extend(self.cached_images_of(&remote.name).await?);
        }
        Ok(out)
    }

    /// The cached images of one remote.
    pub(super) async fn cached_images_of(&self, remote: &str) -> Result<Vec<CachedImage>> {
        let mut out = Vec::new();
        for name in self.store.repositories_in(remote).await? {
            let repo = self.store.repo(&name);
            let pins: HashSet<Digest> = repo.pins().await?.into_iter().collect();
            for a in repo.artifacts().await? {
                out.push(CachedImage {
                    repository: name.to_string(),
                    remote: remote.to_string(),
                    pinned: pins.contains(&a.digest),
                    artifact: a,
                });
            }
        }
        Ok(out)
    }

    /// Pin (`pin`) or unpin an image of cache repository `repo`.
    pub async fn set_pin(
        &self,
        id: &Identity,
        repo: &RepoName,
        reference: &Reference,
        pin: bool,
    ) -> Result<PinView> {
        let op = async {
            self.require_admin(id)?;
            let d = self.cached_manifest(repo, reference).await?;
            let r = self.store.repo(repo);
            if pin {
                r.pin(&d).await?;
            } else {
                r.unpin(&d).await?;
            }
            Ok(PinView {
                repository: repo.to_string(),
                digest: d,
                pinned: pin,
            })
        };
        let action = if pin { "cache.pin" } else { "cache.unpin" };
        self.audited(id, action, &format!("{repo}{}", at(reference)), op, |v| {
            Some(json!({ "digest": v.digest }))
        })
        .await
    }

    /// Remove one image (`Some`) or every unpinned image (`None`) of cache
    /// repository `repo` now, with the blobs only they needed.
    pub async fn purge(
        &self,
        id: &Identity,
        repo: &RepoName,
        reference: Option<&Reference>,
    ) -> Result<EvictReport> {
        let op = async {
            self.require_admin(id)?;
            let images = match reference {
                None => {
                    self.cache_repo(repo)?;
                    None
                }
                Some(r) => {
                    let d = self.cached_manifest(repo, r).await?;
                    if self.store.repo(repo).pins().await?.contains(&d) {
                        return Err(RegistryError::Conflict(format!(
                            "{repo}@{d} is pinned; unpin it first (`wharf cache unpin {repo}@{d}`)"
                        )));
                    }
                    Some(vec![d])
                }
            };
            Ok(evict::purge(&self.store, repo, images.as_deref()).await?)
        };
        let target = format!("{repo}{}", reference.map(at).unwrap_or_default());
        let details = |r: &EvictReport| {
            Some(json!({ "evicted": r.evicted.len(), "bytes_freed": r.bytes_freed }))
        };
        self.audited(id, "cache.purge", &target, op, details).await
    }

    fn cache_repo(&self, repo: &RepoName) -> Result<()> {
        if self.namespaces().is_cache_repo(repo) {
            return Ok(());
        }
        Err(RegistryError::BadRequest(format!(
            "{repo} is not a pull-through cache repository (<remote>/...); pushed images are deleted with `wharf delete`"
        )))
    }

    /// The digest `reference` names in cache repository `repo`.
    async fn cached_manifest(&self, repo: &RepoName, reference: &Reference) -> Result<Digest> {
        self.cache_repo(repo)?;
        let r = self.store.repo(repo);
        let d = match reference {
            Reference::Tag(t) => r.tag(t).await?.ok_or_else(|| {
                RegistryError::ManifestUnknown(format!("{repo}:{t} is not cached"))
            })?,
            Reference::Digest(d) => d.clone(),
        };
        if r.manifest_meta(&d).await?.is_none() {
            return Err(RegistryError::ManifestUnknown(format!(
                "{repo}@{d} is not cached"
            )));
        }
        Ok(d)
    }
}

/// `:tag` or `@digest`, as written after a repository name.
fn at(r: &Reference) -> String {
    match r {
        Reference::Tag(t) => format!(":{t}"),
        Reference::Digest(d) => format!("@{d}"),
    }
}
