//! Usage per namespace (the first name component: a project or a remote):
//! every blob and manifest any of its repositories links, each counted once
//! however many repositories and tags share it.
//!
//! Each namespace gets an in-memory index, built by one scan on first use:
//! digest → the repositories linking it, plus the bytes of the digests
//! linked at all. Every link and unlink then updates the index in place
//! (idempotently: adding a repository twice changes nothing), so a push
//! into a project with thousands of repositories costs a map update, not a
//! walk over the project. A scan that raced with a change is not installed
//! (the namespace's generation moved); the next use scans again. GC drops
//! every index (content sizes change under it). On the filesystem the
//! index is this process's view of its own store (wharf holds the store's
//! lock, so no other writer exists). On a store shared with other replicas
//! an index is scanned again after `storage.s3.refresh_interval`, and
//! before every final quota decision ([`Store::usage_refresh`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Result, Store};
use crate::oci::{Digest, RepoName};

/// One namespace's links, kept current by every change.
#[derive(Debug, Default)]
struct NamespaceIndex {
    /// digest → (its size, repositories linking it).
    links: HashMap<Digest, (u64, HashSet<RepoName>)>,
    bytes: u64,
}

impl NamespaceIndex {
    fn add(&mut self, d: &Digest, size: u64, repo: &RepoName) {
        let e = self
            .links
            .entry(d.clone())
            .or_insert_with(|| (size, HashSet::new()));
        if e.1.is_empty() {
            self.bytes += e.0;
        }
        e.1.insert(repo.clone());
    }

    fn remove(&mut self, d: &Digest, repo: &RepoName) {
        let Some(e) = self.links.get_mut(d) else {
            return;
        };
        if e.1.remove(repo) && e.1.is_empty() {
            self.bytes -= e.0;
            self.links.remove(d);
        }
    }
}

/// A namespace's generation and its index once built (with when).
type Entry = (u64, Option<(Instant, NamespaceIndex)>);

/// Per namespace: (generation, its index once built).
#[derive(Default)]
pub(super) struct UsageCache {
    map: Mutex<HashMap<String, Entry>>,
    /// Indexes older than this are scanned again (a store shared with
    /// other replicas, whose links this process does not see).
    max_age: Option<Duration>,
}

impl UsageCache {
    pub(super) fn with_ttl(ttl: Duration) -> UsageCache {
        UsageCache {
            max_age: Some(ttl),
            ..UsageCache::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fresh(&self, built: Instant) -> bool {
        self.max_age.is_none_or(|m| built.elapsed() < m)
    }
}

/// What changed in a repository's links.
pub(super) enum LinkChange<'a> {
    /// `d` (of `size` bytes) is linked now.
    Added(&'a Digest, u64),
    Removed(&'a Digest),
}

impl Store {
    /// Apply a change to `repo`'s links to its namespace's index (or, while
    /// none is built, make a scan in progress start over).
    pub(super) fn usage_changed(&self, repo: &RepoName, change: LinkChange<'_>) {
        let mut m = self.inner.usage.lock();
        let e = m.entry(repo.first().to_string()).or_insert((0, None));
        match (&mut e.1, change) {
            (Some((_, idx)), LinkChange::Added(d, size)) => idx.add(d, size, repo),
            (Some((_, idx)), LinkChange::Removed(d)) => idx.remove(d, repo),
            (None, _) => e.0 += 1,
        }
    }

    /// Forget every index (after a GC sweep).
    pub(super) fn usage_forget_all(&self) {
        for e in self.inner.usage.lock().values_mut() {
            e.0 += 1;
            e.1 = None;
        }
    }

    /// Scan `namespace` again on next use (a store shared with other
    /// replicas, before a quota decision: see `registry::quota`).
    /// Its repositories are walked in the store, so repositories that
    /// other replicas created count too.
    pub async fn usage_refresh(&self, namespace: &str) -> Result<()> {
        if self.cluster().is_none() {
            return Ok(());
        }
        self.refresh_namespace(namespace).await?;
        if let Some(e) = self.inner.usage.lock().get_mut(namespace) {
            e.0 += 1;
            e.1 = None;
        }
        Ok(())
    }

    /// Run `f` on `namespace`'s index, building it first if needed.
    async fn with_index<T>(&self, namespace: &str, f: impl Fn(&NamespaceIndex) -> T) -> Result<T> {
        let cache = &self.inner.usage;
        loop {
            let gen = {
                let m = cache.lock();
                match m.get(namespace) {
                    Some((_, Some((t, idx)))) if cache.fresh(*t) => return Ok(f(idx)),
                    Some((g, _)) => *g,
                    None => 0,
                }
            };
            let built = self.scan_namespace(namespace).await?;
            let mut m = cache.lock();
            let e = m.entry(namespace.to_string()).or_insert((gen, None));
            if e.0 == gen {
                let v = f(&built);
                e.1 = Some((Instant::now(), built));
                return Ok(v);
            }
            // Changed while scanning: the scan may predate the change.
        }
    }

    async fn scan_namespace(&self, namespace: &str) -> Result<NamespaceIndex> {
        let mut idx = NamespaceIndex::default();
        for name in self.repositories_in(namespace).await? {
            let repo = self.repo(&name);
            let mut digests = repo.manifest_digests().await?;
            digests.extend(repo.layer_links().await?.into_iter().map(|(d, _)| d));
            for d in digests {
                let size = match idx.links.get(&d) {
                    Some((s, _)) => *s,
                    None => self.blobs().size(&d).await?.unwrap_or(0),
                };
                idx.add(&d, size, &name);
            }
        }
        Ok(idx)
    }

    /// Bytes `namespace` uses.
    pub async fn usage(&self, namespace: &str) -> Result<u64> {
        self.with_index(namespace, |idx| idx.bytes).await
    }

    /// Whether any repository of `namespace` links `d` (as a blob or a
    /// manifest): pushing it again there costs nothing.
    pub async fn namespace_links(&self, namespace: &str, d: &Digest) -> Result<bool> {
        self.with_index(namespace, |idx| idx.links.contains_key(d))
            .await
    }

    /// The repositories of `namespace` that link `d` (as a blob or a
    /// manifest), from the index.
    pub async fn repos_linking(&self, namespace: &str, d: &Digest) -> Result<Vec<RepoName>> {
        self.with_index(namespace, |idx| {
            idx.links
                .get(d)
                .map(|(_, r)| r.iter().cloned().collect())
                .unwrap_or_default()
        })
        .await
    }

    /// Every digest (blobs and manifests) a namespace links, each once.
    pub async fn namespace_digests(&self, namespace: &str) -> Result<BTreeSet<Digest>> {
        self.with_index(namespace, |idx| idx.links.keys().cloned().collect())
            .await
    }

    /// Bytes a namespace uses, computed now by a scan (checks the index).
    pub async fn namespace_usage(&self, namespace: &str) -> Result<u64> {
        Ok(self.scan_namespace(namespace).await?.bytes)
    }

    /// Usage of a group of namespaces, each digest counted once.
    pub async fn group_usage(&self, namespaces: &[String]) -> Result<u64> {
        let mut all = BTreeSet::new();
        for ns in namespaces {
            all.extend(self.namespace_digests(ns).await?);
        }
        self.blobs().total_size(&all).await
    }

    /// Usage of every top-level namespace.
    pub async fn usage_by_namespace(&self) -> Result<BTreeMap<String, u64>> {
        let mut out = BTreeMap::new();
        for ns in self.namespaces().await? {
            let u = self.usage(&ns).await?;
            out.insert(ns, u);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A replica's quota decision counts what other replicas linked, in
    /// repositories it never saw created.
    #[tokio::test]
    async fn usage_refresh_counts_other_replicas_links() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = crate::store::test_replicas(dir.path());
        let blob = |s: &Store, bytes: &'static [u8]| {
            let s = s.clone();
            async move {
                let d = Digest::sha256_of(bytes);
                s.blobs()
                    .put_small(&d, bytes::Bytes::from_static(bytes))
                    .await
                    .unwrap();
                d
            }
        };
        let one: RepoName = "proj/one".parse().unwrap();
        let d = blob(&a, b"0123456789").await;
        a.repo(&one).link_blob(&d).await.unwrap();
        assert_eq!(b.usage("proj").await.unwrap(), 10);
        // A links more, in a new repository: B's index is stale until the
        // refresh a quota check does.
        let two: RepoName = "proj/two".parse().unwrap();
        let d2 = blob(&a, b"abcde").await;
        a.repo(&two).link_blob(&d2).await.unwrap();
        b.usage_refresh("proj").await.unwrap();
        assert_eq!(b.usage("proj").await.unwrap(), 15);
        assert!(b.namespace_links("proj", &d2).await.unwrap());
    }
}
