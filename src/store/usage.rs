//! Usage per namespace (the first name component: a project or a remote):
//! every blob and manifest any of its repositories links, each counted once
//! however many repositories and tags share it.
//!
//! Cached per namespace until the namespace changes. Each namespace has a
//! generation, bumped on every change; a value computed while the
//! generation moved is not cached (it may predate the change).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use super::{Result, Store};
use crate::oci::{Digest, RepoName};

#[derive(Default)]
pub(super) struct UsageCache {
    map: Mutex<HashMap<String, (u64, Option<u64>)>>,
}

impl UsageCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, Option<u64>)>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Store {
    /// Note a change to `repo`'s links: its namespace's usage is recomputed
    /// on next use.
    pub(super) fn usage_changed(&self, repo: &RepoName) {
        let mut m = self.inner.usage.lock();
        let e = m.entry(repo.first().to_string()).or_insert((0, None));
        e.0 += 1;
        e.1 = None;
    }

    /// Forget every cached usage (after a GC sweep).
    pub(super) fn usage_forget_all(&self) {
        for e in self.inner.usage.lock().values_mut() {
            e.0 += 1;
            e.1 = None;
        }
    }

    /// Bytes `namespace` uses, cached until the namespace changes.
    pub async fn usage(&self, namespace: &str) -> Result<u64> {
        let gen = {
            let m = self.inner.usage.lock();
            match m.get(namespace) {
                Some((_, Some(v))) => return Ok(*v),
                Some((g, None)) => *g,
                None => 0,
            }
        };
        let v = self.namespace_usage(namespace).await?;
        let mut m = self.inner.usage.lock();
        let e = m.entry(namespace.to_string()).or_insert((gen, None));
        if e.0 == gen {
            e.1 = Some(v);
        }
        Ok(v)
    }

    /// Whether any repository of `namespace` links `d` (as a blob or a
    /// manifest): pushing it again there costs nothing.
    pub async fn namespace_links(&self, namespace: &str, d: &Digest) -> Result<bool> {
        for name in self.repositories_in(namespace).await? {
            let repo = self.repo(&name);
            if repo.links_blob(d).await? || repo.manifest_media_type(d).await?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Every digest (blobs and manifests) a namespace links, each once.
    pub async fn namespace_digests(&self, namespace: &str) -> Result<BTreeSet<Digest>> {
        let mut all = BTreeSet::new();
        for name in self.repositories_in(namespace).await? {
            let repo = self.repo(&name);
            all.extend(repo.manifest_digests().await?);
            all.extend(repo.layer_links().await?.into_iter().map(|(d, _)| d));
        }
        Ok(all)
    }

    /// Bytes a namespace uses, computed now.
    pub async fn namespace_usage(&self, namespace: &str) -> Result<u64> {
        let all = self.namespace_digests(namespace).await?;
        self.blobs().total_size(&all).await
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
