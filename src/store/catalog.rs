//! The repository catalogue: every repository name, sorted, in memory.
//!
//! Built once per process by walking `repos/` (on first use), then kept
//! current by every write that can create a repository (a blob link, a
//! manifest, a tag). A catalogue page, "does this namespace exist" and "the
//! repositories of a project" are then range queries instead of a walk of
//! the store per request. Writes that happen while the walk runs are not
//! lost: they go into the same set the walk fills.
//!
//! A repository stays in the catalogue once created (as its directory stays
//! on disk), like Distribution's.

use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::RwLock;

use super::{layout, Result, Store};
use crate::oci::RepoName;

#[derive(Default)]
pub(super) struct Catalog {
    names: RwLock<BTreeSet<RepoName>>,
    loaded: tokio::sync::OnceCell<()>,
}

impl Catalog {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeSet<RepoName>> {
        self.names.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeSet<RepoName>> {
        self.names.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Remember that `name` exists (after a write into it).
    pub(super) fn note(&self, name: &RepoName) {
        if !self.read().contains(name) {
            self.write().insert(name.clone());
        }
    }
}

impl Store {
    async fn catalog(&self) -> Result<&Catalog> {
        let c = &self.inner.catalog;
        c.loaded
            .get_or_try_init(|| async {
                let found = walk(self).await?;
                c.write().extend(found);
                Ok::<(), super::StoreError>(())
            })
            .await?;
        Ok(c)
    }

    /// Repository names after `after` (exclusive), at most `limit`, sorted.
    pub async fn repositories(&self, after: Option<&str>, limit: usize) -> Result<Vec<RepoName>> {
        let c = self.catalog().await?;
        let names = c.read();
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(names
            .range::<str, _>((from, Bound::Unbounded))
            .take(limit)
            .cloned()
            .collect())
    }

    /// Every repository name, sorted.
    pub async fn all_repositories(&self) -> Result<Vec<RepoName>> {
        self.repositories(None, usize::MAX).await
    }

    /// Repositories whose first name component is `namespace`.
    pub async fn repositories_in(&self, namespace: &str) -> Result<Vec<RepoName>> {
        let c = self.catalog().await?;
        let names = c.read();
        Ok(names
            .range::<str, _>((Bound::Included(namespace), Bound::Unbounded))
            .take_while(|n| n.as_str().starts_with(namespace))
            .filter(|n| n.first() == namespace)
            .cloned()
            .collect())
    }

    /// Whether any repository lives under the first name component
    /// `namespace`.
    pub async fn namespace_exists(&self, namespace: &str) -> Result<bool> {
        let c = self.catalog().await?;
        let names = c.read();
        let prefix = format!("{namespace}/");
        let exact = names.iter().any(|n| n.as_str() == namespace);
        let nested = names
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .next()
            .is_some_and(|n| n.as_str().starts_with(&prefix));
        Ok(exact || nested)
    }

    /// Whether repository `name` exists (has any linked blob, manifest or tag).
    pub async fn repo_exists(&self, name: &RepoName) -> Result<bool> {
        Ok(self.catalog().await?.read().contains(name))
    }
}

/// Walk `repos/`: a directory is a repository when it holds one of the
/// marker folders; `_*` folders are metadata, never descended into.
async fn walk(store: &Store) -> Result<Vec<RepoName>> {
    let objects = store.objects();
    let mut out = Vec::new();
    let mut todo = vec![String::new()];
    while let Some(prefix) = todo.pop() {
        let dir = format!("{}{prefix}", layout::REPOS);
        let entries = objects.list(&dir, None, usize::MAX).await?;
        if !prefix.is_empty()
            && entries
                .iter()
                .any(|e| layout::REPO_MARKERS.contains(&e.as_str()))
        {
            if let Ok(n) = prefix.trim_end_matches('/').parse() {
                out.push(n);
            }
        }
        for e in entries {
            if e.ends_with('/') && !e.starts_with('_') {
                todo.push(format!("{prefix}{e}"));
            }
        }
    }
    Ok(out)
}
