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
//!
//! **Several replicas on one store.** Another replica's new repositories
//! are not written through this process: `repo_exists` asks the store when
//! the name is unknown, quota decisions walk their namespace
//! ([`Store::refresh_namespace`]), and the whole of `repos/` is walked
//! again on use once `storage.s3.refresh_interval` has passed (the bound
//! on a catalogue page missing a repository made elsewhere).
//!
//! **Across restarts** (filesystem backend). A clean stop saves the set to
//! [`layout::CATALOG_INDEX`] with the modification time of every
//! directory it was read from (`repos/`, each name's directories). The
//! next start reads it instead of walking `repos/` when every one of those
//! times (and link counts) is unchanged — any repository created or removed
//! since, by this wharf or by hand, changes its parent directory's — and deletes it
//! at once, so a crash later in that run leaves no index behind and the
//! start after it walks. A missing, unreadable or stale index costs one
//! walk, never a wrong answer.

use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use super::{fs, layout, Result, Store};
use crate::oci::RepoName;

#[derive(Default)]
pub(super) struct Catalog {
    names: RwLock<BTreeSet<RepoName>>,
    loaded: tokio::sync::OnceCell<()>,
    /// A store shared with other replicas: when `repos/` was last walked
    /// (walked again after `storage.s3.refresh_interval`, one walk at a
    /// time).
    walked: tokio::sync::Mutex<Option<std::time::Instant>>,
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
                let found = load_or_walk(self).await?;
                c.write().extend(found);
                Ok::<(), super::StoreError>(())
            })
            .await?;
        if let Some(cl) = self.cluster() {
            let mut walked = c.walked.lock().await;
            match *walked {
                Some(t) if t.elapsed() < cl.refresh => {}
                Some(_) => {
                    let found = walk(self, String::new()).await?;
                    c.write().extend(found);
                    *walked = Some(std::time::Instant::now());
                }
                // The load above was a walk.
                None => *walked = Some(std::time::Instant::now()),
            }
        }
        Ok(c)
    }

    /// Walk the repositories of `namespace` in the store and add those
    /// this process did not know (created by another replica).
    pub(super) async fn refresh_namespace(&self, namespace: &str) -> Result<()> {
        let c = self.catalog().await?;
        // The walk checks `repos/<namespace>/` itself too.
        let found = walk(self, format!("{namespace}/")).await?;
        c.write().extend(found);
        Ok(())
    }

    /// Walk all of `repos/` now (a store shared with other replicas, before
    /// a GC marks: every repository must be seen).
    pub(super) async fn refresh_catalog(&self) -> Result<()> {
        let c = self.catalog().await?;
        if self.cluster().is_some() {
            let mut walked = c.walked.lock().await;
            let found = walk(self, String::new()).await?;
            c.write().extend(found);
            *walked = Some(std::time::Instant::now());
        }
        Ok(())
    }

    /// Whether `repos/<name>/` holds a marker folder (read from the store).
    async fn repo_in_store(&self, name: &RepoName) -> Result<bool> {
        let entries = self
            .objects()
            .list(&layout::repo_dir(name), None, usize::MAX)
            .await?;
        Ok(entries
            .iter()
            .any(|e| layout::REPO_MARKERS.contains(&e.as_str())))
    }

    /// Repository names after `after` (exclusive), at most `limit`, sorted.
    pub async fn repositories(&self, after: Option<&str>, limit: usize) -> Result<Vec<RepoName>> {
        self.repositories_where(after, limit, |_| true).await
    }

    /// Like [`repositories`](Self::repositories), keeping only the names
    /// `keep` accepts: a page costs the names looked at, never a copy of
    /// the whole catalogue.
    pub async fn repositories_where(
        &self,
        after: Option<&str>,
        limit: usize,
        keep: impl Fn(&RepoName) -> bool,
    ) -> Result<Vec<RepoName>> {
        let c = self.catalog().await?;
        let names = c.read();
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(names
            .range::<str, _>((from, Bound::Unbounded))
            .filter(|n| keep(n))
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
        self.repositories_in_page(namespace, None, usize::MAX).await
    }

    /// At most `limit` repositories of `namespace` after `after`, sorted:
    /// a range of the catalogue (`<ns>` itself, then `<ns>/...`).
    pub async fn repositories_in_page(
        &self,
        namespace: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RepoName>> {
        let c = self.catalog().await?;
        let names = c.read();
        let mut out: Vec<RepoName> = names
            .get(namespace)
            .filter(|_| after.is_none_or(|a| a < namespace))
            .cloned()
            .into_iter()
            .collect();
        let prefix = format!("{namespace}/");
        let from = match after {
            Some(a) if a > prefix.as_str() => Bound::Excluded(a),
            _ => Bound::Included(prefix.as_str()),
        };
        let rest = names
            .range::<str, _>((from, Bound::Unbounded))
            .take_while(|n| n.as_str().starts_with(&prefix));
        out.extend(rest.take(limit.saturating_sub(out.len())).cloned());
        out.truncate(limit);
        Ok(out)
    }

    /// How many repositories `namespace` has (without copying their names).
    pub async fn count_in(&self, namespace: &str) -> Result<usize> {
        let c = self.catalog().await?;
        let names = c.read();
        let prefix = format!("{namespace}/");
        let nested = names
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .take_while(|n| n.as_str().starts_with(&prefix));
        Ok(usize::from(names.contains(namespace)) + nested.count())
    }

    /// Every first name component that holds a repository, sorted.
    pub async fn namespaces(&self) -> Result<Vec<String>> {
        let c = self.catalog().await?;
        let names = c.read();
        let set: BTreeSet<&str> = names.iter().map(|n| n.first()).collect();
        Ok(set.into_iter().map(str::to_string).collect())
    }

    /// Whether any repository lives under the first name component
    /// `namespace`.
    pub async fn namespace_exists(&self, namespace: &str) -> Result<bool> {
        let c = self.catalog().await?;
        let names = c.read();
        let prefix = format!("{namespace}/");
        let exact = names.contains(namespace);
        let nested = names
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .next()
            .is_some_and(|n| n.as_str().starts_with(&prefix));
        Ok(exact || nested)
    }

    /// Whether repository `name` exists (has any linked blob, manifest or tag).
    pub async fn repo_exists(&self, name: &RepoName) -> Result<bool> {
        let c = self.catalog().await?;
        if c.read().contains(name) {
            return Ok(true);
        }
        // Another replica may have created it since the last walk.
        if self.cluster().is_some() && self.repo_in_store(name).await? {
            c.note(name);
            return Ok(true);
        }
        Ok(false)
    }
}

/// Walk `repos/`: a directory is a repository when it holds one of the
/// marker folders; `_*` folders are metadata, never descended into.
async fn walk(store: &Store, from: String) -> Result<Vec<RepoName>> {
    let objects = store.objects();
    let mut out = Vec::new();
    let mut todo = vec![from];
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

/// The catalogue as saved at a clean stop.
#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    names: Vec<String>,
    /// Directory key → its stamp when the snapshot was taken.
    dirs: Vec<(String, DirStamp)>,
}

const SNAPSHOT_VERSION: u32 = 1;

/// The saved catalogue if it is still true, else a walk of `repos/`.
async fn load_or_walk(store: &Store) -> Result<Vec<RepoName>> {
    match load_snapshot(store).await {
        Ok(Some(names)) => return Ok(names),
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, "repository index unreadable; rebuilding it from the store")
        }
    }
    let started = std::time::Instant::now();
    let names = walk(store, String::new()).await?;
    tracing::info!(
        repositories = names.len(),
        ms = started.elapsed().as_millis() as u64,
        "repository index rebuilt from the store"
    );
    Ok(names)
}

/// A directory's modification time (nanoseconds since the epoch) and link
/// count (2 + its sub-directories on most filesystems): creating or
/// removing an entry changes the first, a sub-directory also the second
/// (even within one tick of a coarse clock).
type DirStamp = (u64, u64);

fn dir_stamp(p: &std::path::Path) -> Option<DirStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).ok()?;
    let t = m
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some((t.as_nanos().try_into().unwrap_or(u64::MAX), m.nlink()))
}

/// The directories whose stamps vouch for the catalogue `names`.
fn vouching_dirs<'a>(names: impl Iterator<Item = &'a RepoName>) -> BTreeSet<String> {
    let mut dirs = BTreeSet::from([layout::REPOS.to_string()]);
    for n in names {
        let mut at = 0;
        while let Some(i) = n.as_str()[at..].find('/') {
            dirs.insert(layout::repo_dir_prefix(&n.as_str()[..at + i]));
            at += i + 1;
        }
        dirs.insert(layout::repo_dir(n));
    }
    dirs
}

/// Read (and remove) the saved catalogue; `None` if absent or stale.
async fn load_snapshot(store: &Store) -> Result<Option<Vec<RepoName>>> {
    let Some(backend) = store.inner.fs.clone() else {
        return Ok(None);
    };
    let objects = store.objects();
    let Some(bytes) = objects.get(layout::CATALOG_INDEX).await? else {
        return Ok(None);
    };
    // True for this start only: a crash from here on must not leave it behind.
    objects.delete(layout::CATALOG_INDEX).await?;
    let snap = match serde_json::from_slice::<Snapshot>(&bytes) {
        Ok(s) if s.version == SNAPSHOT_VERSION => s,
        _ => return Ok(None),
    };
    let dirs = snap.dirs;
    let fresh = fs::blocking(move || {
        Ok(dirs
            .iter()
            .all(|(k, t)| dir_stamp(&backend.path(k)) == Some(*t)))
    })
    .await?;
    if !fresh {
        tracing::info!("repository index is older than the store; rebuilding it");
        return Ok(None);
    }
    Ok(Some(
        snap.names.iter().filter_map(|n| n.parse().ok()).collect(),
    ))
}

impl Store {
    /// Save the catalogue for the next start (at a clean stop; see the
    /// module docs). Nothing is saved if this run never needed it.
    pub async fn save_catalog(&self) -> Result<()> {
        let c = &self.inner.catalog;
        let (Some(backend), Some(_)) = (self.inner.fs.clone(), c.loaded.get()) else {
            return Ok(());
        };
        let names: Vec<RepoName> = c.read().iter().cloned().collect();
        let dirs = vouching_dirs(names.iter());
        let dirs = fs::blocking(move || {
            Ok(dirs
                .into_iter()
                .filter_map(|k| dir_stamp(&backend.path(&k)).map(|t| (k, t)))
                .collect())
        })
        .await?;
        let snap = Snapshot {
            version: SNAPSHOT_VERSION,
            names: names.iter().map(|n| n.to_string()).collect(),
            dirs,
        };
        let bytes =
            serde_json::to_vec(&snap).map_err(|e| super::StoreError::Corrupt(e.to_string()))?;
        self.objects()
            .put(layout::CATALOG_INDEX, bytes.into())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Digest;

    fn names(v: &[RepoName]) -> Vec<&str> {
        v.iter().map(|n| n.as_str()).collect()
    }

    async fn link(s: &Store, repo: &str) {
        let r: RepoName = repo.parse().unwrap();
        s.repo(&r)
            .link_blob(&Digest::sha256_of(repo.as_bytes()))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn pages_and_namespace_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        for r in ["ns", "ns-x/a", "ns/a", "ns/b/c", "ns0/a", "other/z"] {
            link(&s, r).await;
        }
        assert_eq!(
            names(&s.repositories(Some("ns/a"), 2).await.unwrap()),
            ["ns/b/c", "ns0/a"]
        );
        assert_eq!(
            names(&s.repositories_in("ns").await.unwrap()),
            ["ns", "ns/a", "ns/b/c"]
        );
        assert_eq!(
            names(&s.repositories_in_page("ns", Some("ns"), 1).await.unwrap()),
            ["ns/a"]
        );
        assert_eq!(
            names(&s.repositories_in_page("ns", Some("ns/a"), 5).await.unwrap()),
            ["ns/b/c"]
        );
        assert_eq!(s.count_in("ns").await.unwrap(), 3);
        assert_eq!(
            s.namespaces().await.unwrap(),
            ["ns", "ns-x", "ns0", "other"]
        );
        let odd = s
            .repositories_where(None, 10, |n| n.as_str().ends_with('a'))
            .await
            .unwrap();
        assert_eq!(names(&odd), ["ns-x/a", "ns/a", "ns0/a"]);
        assert!(
            s.namespace_exists("ns0").await.unwrap() && !s.namespace_exists("n").await.unwrap()
        );
    }

    #[tokio::test]
    async fn a_saved_index_is_used_only_while_the_tree_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join(layout::CATALOG_INDEX);
        {
            let s = Store::open(dir.path()).unwrap();
            link(&s, "a/x").await;
            link(&s, "b/y/z").await;
            assert_eq!(
                names(&s.all_repositories().await.unwrap()),
                ["a/x", "b/y/z"]
            );
            s.save_catalog().await.unwrap();
        }
        // A fresh index is trusted as saved (a name only it knows shows).
        let mut snap: Snapshot = serde_json::from_slice(&std::fs::read(&index).unwrap()).unwrap();
        snap.names.push("only/in-index".into());
        std::fs::write(&index, serde_json::to_vec(&snap).unwrap()).unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            assert_eq!(
                names(&s.all_repositories().await.unwrap()),
                ["a/x", "b/y/z", "only/in-index"]
            );
            assert!(
                !index.exists(),
                "removed once read: a crash must not leave it behind"
            );
            s.save_catalog().await.unwrap();
        }
        // The tree changed while stopped (a repository made by hand): the
        // index is stale and the store is walked.
        std::fs::create_dir_all(dir.path().join("repos/c/new/_tags")).unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            assert_eq!(
                names(&s.all_repositories().await.unwrap()),
                ["a/x", "b/y/z", "c/new"]
            );
            // A crash: nothing saved.
        }
        assert!(!index.exists());
        {
            let s = Store::open(dir.path()).unwrap();
            assert_eq!(
                names(&s.all_repositories().await.unwrap()),
                ["a/x", "b/y/z", "c/new"]
            );
            s.save_catalog().await.unwrap();
        }
        // A repository removed by hand; and an unreadable index.
        std::fs::remove_dir_all(dir.path().join("repos/b/y/z")).unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(
            names(&s.all_repositories().await.unwrap()),
            ["a/x", "c/new"]
        );
        drop(s);
        std::fs::write(&index, b"{not json").unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(
            names(&s.all_repositories().await.unwrap()),
            ["a/x", "c/new"]
        );
    }
}
