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
//! every index (content sizes change under it). The index is this process's
//! view of its own store: wharf holds the store's lock, so no other writer
//! exists.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

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

/// Per namespace: (generation, its index once built).
#[derive(Default)]
pub(super) struct UsageCache {
    map: Mutex<HashMap<String, (u64, Option<NamespaceIndex>)>>,
}

impl UsageCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, Option<NamespaceIndex>)>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
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
            (Some(idx), LinkChange::Added(d, size)) => idx.add(d, size, repo),
            (Some(idx), LinkChange::Removed(d)) => idx.remove(d, repo),
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

    /// Run `f` on `namespace`'s index, building it first if needed.
    async fn with_index<T>(&self, namespace: &str, f: impl Fn(&NamespaceIndex) -> T) -> Result<T> {
        loop {
            let gen = {
                let m = self.inner.usage.lock();
                match m.get(namespace) {
                    Some((_, Some(idx))) => return Ok(f(idx)),
                    Some((g, None)) => *g,
                    None => 0,
                }
            };
            let built = self.scan_namespace(namespace).await?;
            let mut m = self.inner.usage.lock();
            let e = m.entry(namespace.to_string()).or_insert((gen, None));
            if e.0 == gen {
                let v = f(&built);
                e.1 = Some(built);
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
        for name in self.all_repositories().await? {
            let ns = name.first();
            if !out.contains_key(ns) {
                let u = self.usage(ns).await?;
                out.insert(ns.to_string(), u);
            }
        }
        Ok(out)
    }
}
