//! [`Repo`]: one repository's links, manifests, tags, referrers, pins and
//! pull times.
//!
//! Manifest bytes are stored as blobs (byte-exact); a repository links a
//! manifest revision with a small object holding its media type; a tag is a
//! small object holding a digest. Writes go blob → revision link → referrer
//! link → tag, so a tag never points at a manifest that is not there.

use std::collections::{HashMap, HashSet};
use std::ops::Bound;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use futures_util::{StreamExt, TryStreamExt};

use super::backend::ObjectMeta;
use super::inventory::{secs, READ_AHEAD};
use super::repo_index::{ManifestIndex, PageFrom, TagIndex};
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
    /// optionally under `tag`, recording `subject` for referrers. Outside
    /// the store every manifest comes in through the GC fence
    /// ([`super::Store::begin_manifest`]).
    pub(super) async fn put_manifest(
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
        self.store.gc_saw_manifest(self.name, d);
        let now = super::inventory::secs(std::time::SystemTime::now());
        self.store
            .inner
            .manifest_index
            .update(self.name, |m| m.insert(d.clone(), now));
        if let Some(t) = tag {
            self.tag_changed(t.as_str(), Some(d));
        }
        Ok(())
    }

    /// Note that `tag` now points at `d` (`None`: it is gone).
    fn tag_changed(&self, tag: &str, d: Option<&Digest>) {
        self.store.inner.tag_index.update(self.name, |t| match d {
            Some(d) => {
                t.insert(tag.to_string(), Some(d.clone()));
            }
            None => {
                t.remove(tag);
            }
        });
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
            if self.store.cluster().is_none() {
                return Ok(Some(m));
            }
            // Another replica may have deleted (or re-pushed) it: the bytes
            // are right by digest, the link decides.
            return match self.manifest_media_type(d).await? {
                Some(media_type) => Ok(Some(StoredManifest { media_type, ..m })),
                None => {
                    cache.invalidate(self.name, d);
                    Ok(None)
                }
            };
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
        let pointing_at = |t: &TagIndex| {
            t.iter()
                .filter(|(_, v)| v.as_ref() == Some(d))
                .map(|(k, _)| k.clone())
                .collect::<Vec<_>>()
        };
        let pointing = match self.store.cluster() {
            // Other replicas tag too: read every tag from the store.
            Some(_) => pointing_at(&self.read_tags().await?),
            None => self.with_tags(pointing_at).await?,
        };
        for tag in pointing {
            // Checked again on disk: only a tag that still points at `d` goes.
            let key = format!("{}{tag}", layout::tags_dir(self.name));
            if objects
                .get(&key)
                .await?
                .is_some_and(|b| String::from_utf8_lossy(&b).trim() == want)
            {
                objects.delete(&key).await?;
                self.tag_changed(&tag, None);
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
        self.store
            .inner
            .manifest_index
            .update(self.name, |m| m.remove(d));
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
        self.tag_changed(tag.as_str(), Some(d));
        Ok(())
    }

    /// Remove `tag`; returns whether it existed.
    pub async fn untag(&self, tag: &Tag) -> Result<bool> {
        let existed = self
            .store
            .objects()
            .delete(&layout::tag(self.name, tag))
            .await?;
        self.tag_changed(tag.as_str(), None);
        Ok(existed)
    }

    /// Tags after `after` (exclusive), at most `limit`, sorted; `None` if
    /// the repository does not exist. A range of the tag index: the page
    /// costs its size plus a lookup.
    pub async fn tags(&self, after: Option<&str>, limit: usize) -> Result<Option<Vec<String>>> {
        if !self.exists().await? {
            return Ok(None);
        }
        if self.store.cluster().is_some() {
            // Other replicas tag too: the store's listing is the truth.
            let names = self
                .store
                .objects()
                .list(&layout::tags_dir(self.name), after, limit)
                .await?;
            return Ok(Some(
                names.into_iter().filter(|n| !n.ends_with('/')).collect(),
            ));
        }
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let page = self
            .with_tags(|t| {
                t.range::<str, _>((from, Bound::Unbounded))
                    .take(limit)
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .await?;
        Ok(Some(page))
    }

    /// Every tag, sorted (empty if the repository does not exist).
    pub async fn all_tags(&self) -> Result<Vec<String>> {
        Ok(self.tags(None, usize::MAX).await?.unwrap_or_default())
    }

    /// How many tags the repository has.
    pub async fn tag_count(&self) -> Result<usize> {
        self.with_tags(|t| t.len()).await
    }

    /// The tags pointing at each of `wanted`.
    pub async fn tags_of(&self, wanted: &HashSet<&Digest>) -> Result<HashMap<Digest, Vec<String>>> {
        self.with_tags(|t| {
            let mut out: HashMap<Digest, Vec<String>> = HashMap::new();
            for (tag, d) in t {
                if let Some(d) = d.as_ref().filter(|d| wanted.contains(d)) {
                    out.entry(d.clone()).or_default().push(tag.clone());
                }
            }
            out
        })
        .await
    }

    /// Run `f` on the tag index (built from the tag files on first use).
    async fn with_tags<T>(&self, f: impl FnOnce(&TagIndex) -> T) -> Result<T> {
        self.store
            .inner
            .tag_index
            .with(self.name, || self.read_tags(), f)
            .await
    }

    /// Every tag with its target, read from the store (a few reads at once).
    async fn read_tags(&self) -> Result<TagIndex> {
        let names = self
            .store
            .objects()
            .list(&layout::tags_dir(self.name), None, usize::MAX)
            .await?;
        let targets = futures_util::stream::iter(names.into_iter().filter(|n| !n.ends_with('/')))
            .map(|name| async move {
                // Gone since the listing: not a tag. Not a digest: listed
                // without a target, as before the index.
                let target = match name.parse::<Tag>() {
                    Ok(t) => match self.tag(&t).await {
                        Ok(d) => d.map(Some),
                        Err(StoreError::Corrupt(_)) => Some(None),
                        Err(e) => return Err(e),
                    },
                    Err(_) => Some(None),
                };
                Ok((name, target))
            })
            .buffered(READ_AHEAD);
        let all: Vec<(String, Option<Option<Digest>>)> = targets.try_collect().await?;
        Ok(all
            .into_iter()
            .filter_map(|(name, t)| Some((name, t?)))
            .collect())
    }

    /// How many manifests the repository links.
    pub async fn manifest_count(&self) -> Result<usize> {
        self.with_manifests(|m| m.len()).await
    }

    /// At most `n` manifests from `from`, newest first, with their push
    /// times (unix seconds); `None` when `from` names a manifest that is
    /// not linked.
    pub async fn manifests_by_time(
        &self,
        from: &PageFrom,
        n: usize,
    ) -> Result<Option<Vec<(u64, Digest)>>> {
        self.with_manifests(|m| m.page(from, n)).await
    }

    async fn with_manifests<T>(&self, f: impl FnOnce(&ManifestIndex) -> T) -> Result<T> {
        self.store
            .inner
            .manifest_index
            .with(self.name, || self.read_manifest_times(), f)
            .await
    }

    /// Every linked manifest with its push time, read from the store.
    async fn read_manifest_times(&self) -> Result<ManifestIndex> {
        let times = futures_util::stream::iter(self.manifest_digests().await?)
            .map(|d| async move {
                Ok::<_, StoreError>((self.manifest_meta(&d).await?.map(|m| secs(m.modified)), d))
            })
            .buffered(READ_AHEAD);
        let all: Vec<(Option<u64>, Digest)> = times.try_collect().await?;
        let mut idx = ManifestIndex::default();
        for (t, d) in all {
            if let Some(t) = t {
                idx.insert(d, t);
            }
        }
        Ok(idx)
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
        let key = super::manifest_cache::key(self.name, d);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What one replica writes, another serves at once: no local cache
    /// of a tag, a manifest link or a repository's existence can answer
    /// for the shared store.
    #[tokio::test]
    async fn another_replica_sees_tags_manifests_and_repositories_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = crate::store::test_replicas(dir.path());
        let name: RepoName = "team/app".parse().unwrap();
        let t: Tag = "v1".parse().unwrap();
        let mt = "application/vnd.oci.image.manifest.v1+json";
        // B looks first (its views are built, empty).
        assert!(!b.repo_exists(&name).await.unwrap());
        assert_eq!(b.repo(&name).tags(None, 10).await.unwrap(), None);
        let m1 = Bytes::from_static(b"{\"schemaVersion\":2,\"x\":1}");
        let d1 = Digest::sha256_of(&m1);
        a.repo(&name)
            .put_manifest(&d1, mt, m1, Some(&t), None)
            .await
            .unwrap();
        assert!(b.repo_exists(&name).await.unwrap());
        assert_eq!(b.repo(&name).tag(&t).await.unwrap(), Some(d1.clone()));
        assert_eq!(
            b.repo(&name).tags(None, 10).await.unwrap(),
            Some(vec!["v1".to_string()])
        );
        // B caches the manifest; A deletes it (and its tag): B answers none.
        assert!(b.repo(&name).manifest(&d1).await.unwrap().is_some());
        assert!(b.repo(&name).manifest(&d1).await.unwrap().is_some());
        a.repo(&name).delete_manifest(&d1).await.unwrap();
        assert!(b.repo(&name).manifest(&d1).await.unwrap().is_none());
        assert_eq!(b.repo(&name).tag(&t).await.unwrap(), None);
        // A tag that B made is removed when A deletes its manifest (A
        // never saw it being made).
        let m2 = Bytes::from_static(b"{\"schemaVersion\":2,\"x\":2}");
        let d2 = Digest::sha256_of(&m2);
        a.repo(&name)
            .put_manifest(&d2, mt, m2, None, None)
            .await
            .unwrap();
        b.repo(&name).set_tag(&t, &d2).await.unwrap();
        assert_eq!(
            a.repo(&name).delete_manifest(&d2).await.unwrap(),
            Some(vec!["v1".to_string()])
        );
        assert_eq!(b.repo(&name).tag(&t).await.unwrap(), None);
    }
}
