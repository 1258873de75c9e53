//! Manifests, tags and listings of local repositories: accepting a manifest
//! (its references must be present, the project's limits hold), deleting
//! one with its tags and referrer link, tag pages, the catalogue and the
//! referrers index.

use bytes::Bytes;

use super::{BlobRead, Registry, RegistryError, Result};
use crate::auth::{Action, Identity};
use crate::oci::manifest::{self, Descriptor, Manifest};
use crate::oci::{Digest, Reference, RepoName, Tag};
use crate::store::{Delivery, StoredManifest};

/// A manifest accepted by [`Registry::put_manifest`].
#[derive(Debug, Clone)]
pub struct Accepted {
    pub digest: Digest,
    /// The manifest's subject, for the `OCI-Subject` header.
    pub subject: Option<Digest>,
}

impl Registry {
    /// Resolve a reference to a stored manifest of `name`.
    pub async fn manifest(&self, name: &RepoName, r: &Reference) -> Result<StoredManifest> {
        let repo = self.store.repo(name);
        let d = match r {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(t) => match repo.tag(t).await? {
                Some(d) => d,
                None if !repo.exists().await? => {
                    return Err(RegistryError::NameUnknown(name.clone()))
                }
                None => {
                    return Err(RegistryError::ManifestUnknown(format!(
                        "tag {t} not found in {name}"
                    )))
                }
            },
        };
        repo.manifest(&d)
            .await?
            .ok_or_else(|| RegistryError::ManifestUnknown(format!("{r} not found in {name}")))
    }

    /// Accept manifest `bytes` for `name` under reference `r` (a tag, or
    /// the digest the bytes must have). Everything it references must be in
    /// the repository, and the project's limits must hold.
    pub async fn put_manifest(
        &self,
        name: &RepoName,
        r: &Reference,
        content_type: Option<&str>,
        bytes: Bytes,
    ) -> Result<Accepted> {
        let digest = match r {
            Reference::Digest(want) => {
                let got = Digest::of(want.algorithm(), &bytes);
                if &got != want {
                    return Err(RegistryError::DigestInvalid(format!(
                        "manifest content has digest {got}, not {want}"
                    )));
                }
                got
            }
            Reference::Tag(_) => Digest::sha256_of(&bytes),
        };
        let m = Manifest::parse(&bytes, content_type)
            .map_err(|e| RegistryError::ManifestInvalid(e.to_string()))?;
        // No GC sweep until the revision is linked (here by the lock, on
        // other replicas by the marks, see `store::gc_fence`).
        let commit = self.store.begin_manifest(&digest, &m).await?;
        self.check_references(name, &m).await?;
        self.check_manifest_quota(name, &digest, &m, bytes.len() as u64)
            .await?;
        let tag = match r {
            Reference::Tag(t) => Some(t),
            Reference::Digest(_) => None,
        };
        let subject = m.subject.as_ref().map(|s| s.digest.clone());
        commit.link(name, bytes, tag).await?;
        let tag = tag.map(|t| t.to_string());
        self.scan_after_push(name, &digest, &m.media_type, tag, subject.is_some())
            .await;
        Ok(Accepted { digest, subject })
    }

    /// Check that everything `m` references is present in `name`.
    async fn check_references(&self, name: &RepoName, m: &Manifest) -> Result<()> {
        let repo = self.store.repo(name);
        let missing = |d: &Digest, what: &str| {
            RegistryError::ManifestBlobUnknown(format!("{what} {d} is not in {name}"))
        };
        if manifest::is_index(&m.media_type) {
            for child in &m.manifests {
                if repo.manifest_media_type(&child.digest).await?.is_none() {
                    return Err(missing(&child.digest, "manifest"));
                }
            }
            return Ok(());
        }
        if let Some(c) = &m.config {
            if !repo.has_blob(&c.digest).await? {
                return Err(missing(&c.digest, "config blob"));
            }
        }
        for l in &m.layers {
            // Foreign (non-distributable) layers live at their `urls`.
            if l.is_foreign() {
                continue;
            }
            if !repo.has_blob(&l.digest).await? {
                return Err(missing(&l.digest, "layer"));
            }
        }
        Ok(())
    }

    /// `DELETE /v2/<name>/manifests/<reference>`: a tag only untags, a
    /// digest deletes the manifest with its tags.
    /// `DELETE /v2/<name>/manifests/<reference>` by `id` (authorized at
    /// the edge), audited like the management API's deletions.
    pub async fn delete_reference(
        &self,
        id: &Identity,
        name: &RepoName,
        r: &Reference,
    ) -> Result<()> {
        match r {
            Reference::Tag(t) => {
                self.audited(
                    id,
                    "tag.delete",
                    &format!("{name}:{t}"),
                    self.delete_tag(name, t),
                    |_| None,
                )
                .await
            }
            Reference::Digest(d) => {
                let details =
                    |tags: &Vec<String>| Some(serde_json::json!({ "deleted_tags": tags }));
                self.audited(
                    id,
                    "artifact.delete",
                    &format!("{name}@{d}"),
                    self.delete_artifact(name, d),
                    details,
                )
                .await
                .map(|_| ())
            }
        }
    }

    /// Delete manifest `d` of `name` and every tag on it; returns the tags.
    pub async fn delete_artifact(&self, name: &RepoName, d: &Digest) -> Result<Vec<String>> {
        self.store
            .repo(name)
            .delete_manifest(d)
            .await?
            .ok_or_else(|| RegistryError::ManifestUnknown(format!("{d} not found in {name}")))
    }

    /// Remove one tag.
    pub async fn delete_tag(&self, name: &RepoName, t: &Tag) -> Result<()> {
        if !self.store.repo(name).untag(t).await? {
            return Err(RegistryError::ManifestUnknown(format!(
                "tag {t} not found in {name}"
            )));
        }
        Ok(())
    }

    /// Blob `d` of repository `name` for a client that may pull it: its
    /// data for a `HEAD` (answered by wharf), and for a `GET` what the
    /// store decides ([`crate::store::Blobs::deliver`]: a redirect to the
    /// object store when `storage.s3.redirect` is on, else the data).
    pub async fn blob(&self, name: &RepoName, d: &Digest, read: BlobRead) -> Result<Delivery> {
        let unknown = || RegistryError::BlobUnknown(format!("{d} is not in {name}"));
        if !self.store.repo(name).links_blob(d).await? {
            return Err(unknown());
        }
        let blobs = self.store.blobs();
        let found = match read {
            BlobRead::Head => blobs.open(d).await?.map(Delivery::Data),
            BlobRead::Get => blobs.deliver(d).await?,
        };
        found.ok_or_else(unknown)
    }

    /// Remove repository `name`'s link to blob `d`.
    pub async fn delete_blob(&self, name: &RepoName, d: &Digest) -> Result<()> {
        if !self.store.repo(name).unlink_blob(d).await? {
            return Err(RegistryError::BlobUnknown(format!("{d} is not in {name}")));
        }
        Ok(())
    }

    /// A page of `name`'s tags (after `last`, at most `n`).
    pub async fn tags(&self, name: &RepoName, last: Option<&str>, n: usize) -> Result<Vec<String>> {
        self.store
            .repo(name)
            .tags(last, n)
            .await?
            .ok_or_else(|| RegistryError::NameUnknown(name.clone()))
    }

    /// A page of the catalogue: with accounts, only what `id` may pull.
    pub async fn catalog(
        &self,
        id: &Identity,
        last: Option<&str>,
        n: usize,
    ) -> Result<Vec<String>> {
        let open = !self.auth.enabled();
        let names = self
            .store
            .repositories_where(last, n, |r| open || self.subject_may(id, r, Action::Pull))
            .await?;
        Ok(names.iter().map(|r| r.to_string()).collect())
    }

    /// The referrers of `subject` in `name` as index descriptors, sorted by
    /// digest: those after `after`, at most `limit`, optionally only those
    /// of `artifact_type`.
    pub async fn referrers(
        &self,
        name: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Descriptor>> {
        let repo = self.store.repo(name);
        let mut out = Vec::new();
        for d in repo.referrers(subject).await? {
            if out.len() >= limit {
                break;
            }
            if after.is_some_and(|a| d.to_string().as_str() <= a) {
                continue;
            }
            let Some(m) = repo.manifest(&d).await? else {
                continue;
            };
            let Ok(parsed) = Manifest::parse(&m.bytes, Some(&m.media_type)) else {
                continue;
            };
            let at = parsed.effective_artifact_type();
            if artifact_type.is_some_and(|f| at.as_deref() != Some(f)) {
                continue;
            }
            out.push(Descriptor {
                media_type: m.media_type.clone(),
                digest: d,
                size: m.bytes.len() as u64,
                urls: None,
                artifact_type: at,
                annotations: parsed.annotations,
                platform: None,
            });
        }
        Ok(out)
    }
}
