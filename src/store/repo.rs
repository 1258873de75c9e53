//! [`Repo`]: one repository's links, manifests, tags, referrers, pins and
//! pull times.
//!
//! Manifest bytes are stored as blobs (byte-exact); a repository links a
//! manifest revision with a small object holding its media type; a tag is a
//! small object holding a digest. Writes go blob → revision link → referrer
//! link → tag, so a tag never points at a manifest that is not there.

use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::backend::ObjectMeta;
use super::usage::LinkChange;
use super::{layout, Result, Store, StoreError};
use crate::oci::manifest::Manifest;
use crate::oci::{Digest, RepoName, Tag};

/// A manifest as stored: its digest, media type and exact bytes.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

/// Pull times are written at most this often per manifest.
const PULL_RECORD_INTERVAL: Duration = Duration::from_secs(60);

pub(super) fn pull_marks() -> moka::sync::Cache<String, ()> {
    moka::sync::Cache::builder()
        .max_capacity(100_000)
        .time_to_live(PULL_RECORD_INTERVAL)
        .build()
}

/// The repository facet of a [`Store`].
pub struct Repo<'a> {
    pub(super) store: &'a Store,
    name: &'a RepoName,
}

impl<'a> Repo<'a> {
    pub(super) fn new(store: &'a Store, name: &'a RepoName) -> Repo<'a> {
        Repo { store, name }
    }

    pub fn name(&self) -> &RepoName {
        self.name
    }

    /// Whether the repository exists (has any linked blob, manifest or tag).
    pub async fn exists(&self) -> Result<bool> {
        self.store.repo_exists(self.name).await
    }

    /// Note a change to the repository's links: the catalogue, and the
    /// namespace's usage when a link came or went.
    fn changed(&self, link: Option<LinkChange<'_>>) {
        self.store.inner.catalog.note(self.name);
        if let Some(l) = link {
            self.store.usage_changed(self.name, l);
        }
    }

    // --- blob links -------------------------------------------------------

    /// Whether the repository links blob `d` (its content may be gone).
    pub async fn links_blob(&self, d: &Digest) -> Result<bool> {
        Ok(self
            .store
            .objects()
            .stat(&layout::layer_link(self.name, d))
            .await?
            .is_some())
    }

    /// Whether the repository links blob `d` and its content is present.
    pub async fn has_blob(&self, d: &Digest) -> Result<bool> {
        Ok(self.links_blob(d).await? && self.store.blobs().size(d).await?.is_some())
    }

    /// Link an existing blob into the repository (idempotent).
    pub async fn link_blob(&self, d: &Digest) -> Result<()> {
        let key = layout::layer_link(self.name, d);
        if self.store.objects().stat(&key).await?.is_none() {
            self.store.objects().put(&key, Bytes::new()).await?;
        }
        let size = self.store.blobs().size(d).await?.unwrap_or(0);
        self.changed(Some(LinkChange::Added(d, size)));
        Ok(())
    }

    /// Remove the link to `d`; the content stays until GC. Returns whether
    /// the link existed.
    pub async fn unlink_blob(&self, d: &Digest) -> Result<bool> {
        let r = self
            .store
            .objects()
            .delete(&layout::layer_link(self.name, d))
            .await?;
        self.changed(Some(LinkChange::Removed(d)));
        Ok(r)
    }

    /// Every linked blob with the link's modification time.
    pub async fn layer_links(&self) -> Result<Vec<(Digest, ObjectMeta)>> {
        let mut out = Vec::new();
        for alg in layout::ALGORITHMS {
            let dir = layout::layers_dir(self.name, alg);
            for name in self.store.objects().list(&dir, None, usize::MAX).await? {
                let Some(d) = layout::listed_digest(alg, &name) else {
                    continue;
                };
                if let Some(m) = self.store.objects().stat(&format!("{dir}{name}")).await? {
                    out.push((d, m));
                }
            }
        }
        Ok(out)
    }

    // --- manifests --------------------------------------------------------

    /// Store manifest `bytes` (digest `d`, already verified by the caller),
    /// optionally under `tag`, recording `subject` for referrers.
    pub async fn put_manifest(
        &self,
        d: &Digest,
        media_type: &str,
        bytes: Bytes,
        tag: Option<&Tag>,
        subject: Option<&Digest>,
    ) -> Result<()> {
        let size = bytes.len() as u64;
        self.store.blobs().put_small(d, bytes).await?;
        let objects = self.store.objects();
        objects
            .put(
                &layout::manifest_link(self.name, d),
                Bytes::from(media_type.to_string()),
            )
            .await?;
        if let Some(s) = subject {
            objects
                .put(&layout::referrer_link(self.name, s, d), Bytes::new())
                .await?;
        }
        if let Some(t) = tag {
            objects
                .put(&layout::tag(self.name, t), Bytes::from(d.to_string()))
                .await?;
        }
        self.store.inner.manifests.invalidate(self.name, d);
        self.changed(Some(LinkChange::Added(d, size)));
        Ok(())
    }

    /// The media type of manifest `d` if the repository links it.
    pub async fn manifest_media_type(&self, d: &Digest) -> Result<Option<String>> {
        Ok(self
            .store
            .objects()
            .get(&layout::manifest_link(self.name, d))
            .await?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// When manifest `d` was linked (pushed or cached).
    pub async fn manifest_meta(&self, d: &Digest) -> Result<Option<ObjectMeta>> {
        Ok(self
            .store
            .objects()
            .stat(&layout::manifest_link(self.name, d))
            .await?)
    }

    /// Manifest `d`, if the repository links it (from the in-memory cache
    /// when possible, see [`super::manifest_cache`]).
    pub async fn manifest(&self, d: &Digest) -> Result<Option<StoredManifest>> {
        let cache = &self.store.inner.manifests;
        if let Some(m) = cache.get(self.name, d) {
            return Ok(Some(m));
        }
        let generation = cache.generation();
        let Some(media_type) = self.manifest_media_type(d).await? else {
            return Ok(None);
        };
        let Some(bytes) = self.store.blobs().read_small(d).await? else {
            return Ok(None);
        };
        let m = StoredManifest {
            digest: d.clone(),
            media_type,
            bytes,
        };
        cache.fill(generation, self.name, &m);
        Ok(Some(m))
    }

    /// Digests of the manifests the repository links, sorted.
    pub async fn manifest_digests(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for alg in layout::ALGORITHMS {
            let names = self
                .store
                .objects()
                .list(&layout::manifests_dir(self.name, alg), None, usize::MAX)
                .await?;
            out.extend(names.iter().filter_map(|n| layout::listed_digest(alg, n)));
        }
        out.sort();
        Ok(out)
    }

    /// Remove manifest `d` with every tag pointing at it, its referrer link,
    /// pin and pull marker. Returns the removed tags, or `None` if it was not
    /// linked. The bytes stay until GC (other repositories may share them).
    pub async fn delete_manifest(&self, d: &Digest) -> Result<Option<Vec<String>>> {
        if self.manifest_media_type(d).await?.is_none() {
            return Ok(None);
        }
        let subject = match self.manifest(d).await? {
            Some(m) => Manifest::parse(&m.bytes, Some(&m.media_type))
                .ok()
                .and_then(|p| p.subject)
                .map(|s| s.digest),
            None => None,
        };
        let objects = self.store.objects();
        let mut removed = Vec::new();
        let want = d.to_string();
        for tag in self.all_tags().await? {
            let key = format!("{}{tag}", layout::tags_dir(self.name));
            if objects
                .get(&key)
                .await?
                .is_some_and(|b| String::from_utf8_lossy(&b).trim() == want)
            {
                objects.delete(&key).await?;
                removed.push(tag);
            }
        }
        if let Some(s) = subject {
            objects
                .delete(&layout::referrer_link(self.name, &s, d))
                .await?;
        }
        objects.delete(&layout::pin(self.name, d)).await?;
        objects.delete(&layout::pull_marker(self.name, d)).await?;
        objects.delete(&layout::manifest_link(self.name, d)).await?;
        self.store.inner.manifests.invalidate(self.name, d);
        self.changed(Some(LinkChange::Removed(d)));
        Ok(Some(removed))
    }

    // --- tags -------------------------------------------------------------

    /// The digest `tag` points at.
    pub async fn tag(&self, tag: &Tag) -> Result<Option<Digest>> {
        let Some(b) = self
            .store
            .objects()
            .get(&layout::tag(self.name, tag))
            .await?
        else {
            return Ok(None);
        };
        String::from_utf8_lossy(&b)
            .trim()
            .parse()
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("tag {}:{tag}: {e}", self.name)))
    }

    /// Point `tag` at manifest `d` (which must be linked already).
    pub async fn set_tag(&self, tag: &Tag, d: &Digest) -> Result<()> {
        self.store
            .objects()
            .put(&layout::tag(self.name, tag), Bytes::from(d.to_string()))
            .await?;
        self.changed(None);
        Ok(())
    }

    /// Remove `tag`; returns whether it existed.
    pub async fn untag(&self, tag: &Tag) -> Result<bool> {
        Ok(self
            .store
            .objects()
            .delete(&layout::tag(self.name, tag))
            .await?)
    }

    /// Tags after `after` (exclusive), at most `limit`, sorted; `None` if
    /// the repository does not exist.
    pub async fn tags(&self, after: Option<&str>, limit: usize) -> Result<Option<Vec<String>>> {
        if !self.exists().await? {
            return Ok(None);
        }
        let names = self
            .store
            .objects()
            .list(&layout::tags_dir(self.name), after, limit)
            .await?;
        Ok(Some(
            names.into_iter().filter(|n| !n.ends_with('/')).collect(),
        ))
    }

    /// Every tag, sorted (empty if the repository does not exist).
    pub async fn all_tags(&self) -> Result<Vec<String>> {
        Ok(self.tags(None, usize::MAX).await?.unwrap_or_default())
    }

    // --- referrers, pins, pulls ---------------------------------------------

    /// Digests of manifests whose subject is `subject`, sorted.
    pub async fn referrers(&self, subject: &Digest) -> Result<Vec<Digest>> {
        let names = self
            .store
            .objects()
            .list(&layout::referrers_dir(self.name, subject), None, usize::MAX)
            .await?;
        let mut out: Vec<Digest> = names
            .iter()
            .filter_map(|n| layout::referrer_digest(n))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Pin manifest `d` (and, through it, its children and blobs).
    pub async fn pin(&self, d: &Digest) -> Result<()> {
        Ok(self
            .store
            .objects()
            .put(&layout::pin(self.name, d), Bytes::new())
            .await?)
    }

    /// Remove a pin; returns whether it existed.
    pub async fn unpin(&self, d: &Digest) -> Result<bool> {
        Ok(self
            .store
            .objects()
            .delete(&layout::pin(self.name, d))
            .await?)
    }

    /// Pinned manifests.
    pub async fn pins(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for alg in layout::ALGORITHMS {
            let names = self
                .store
                .objects()
                .list(&layout::pins_dir(self.name, alg), None, usize::MAX)
                .await?;
            out.extend(names.iter().filter_map(|n| layout::listed_digest(alg, n)));
        }
        Ok(out)
    }

    /// Note that manifest `d` was pulled (at most once a minute).
    pub async fn record_pull(&self, d: &Digest) {
        let key = format!("{}@{d}", self.name);
        let marks = &self.store.inner.pull_marks;
        if marks.get(&key).is_some() {
            return;
        }
        marks.insert(key, ());
        if let Err(e) = self
            .store
            .objects()
            .touch(&layout::pull_marker(self.name, d))
            .await
        {
            tracing::debug!(repo = %self.name, digest = %d, error = %e, "could not record a pull time");
        }
    }

    /// When manifest `d` was last pulled, if ever.
    pub async fn last_pull(&self, d: &Digest) -> Result<Option<SystemTime>> {
        Ok(self
            .store
            .objects()
            .stat(&layout::pull_marker(self.name, d))
            .await?
            .map(|m| m.modified))
    }
}
