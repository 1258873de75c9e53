//! Per-repository indexes in memory, so that a page of a listing costs the
//! page: a repository's tags (name → digest, sorted by name) and its
//! manifests ordered by push time (newest first).
//!
//! Each index is built by one read of the repository on first use and
//! then kept current by every write that changes it ([`Repo`](super::Repo)
//! applies the change after writing the store). A build that raced with a
//! change is answered from but not installed: each repository hashes to a
//! generation counter that every change bumps, and a build is installed
//! only if its counter did not move while it read the store (the same
//! rule as [`super::manifest_cache`] and [`super::usage`]). The indexes are
//! this process's view of its own store: on the filesystem wharf holds
//! the store's lock, so no other writer exists; on a store shared with
//! other replicas, entries are rebuilt after `storage.s3.refresh_interval`
//! (they serve listings and dashboard counts only: tag pages and tag
//! lookups read the store).
//!
//! Memory is bounded: a moka cache per kind, weighted by entries at the
//! time the index is installed; an evicted index is rebuilt on next use.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, RwLock};

use crate::oci::{Digest, RepoName};

/// Tags of one repository: name → the digest it points at (`None` for a
/// tag file that does not hold a digest: still listed, as before).
pub(super) type TagIndex = BTreeMap<String, Option<Digest>>;

/// Manifests of one repository by push time (unix seconds).
#[derive(Debug, Default)]
pub(super) struct ManifestIndex {
    times: HashMap<Digest, u64>,
    order: BTreeSet<(Reverse<u64>, Digest)>,
}

impl ManifestIndex {
    pub(super) fn insert(&mut self, d: Digest, pushed: u64) {
        self.remove(&d);
        self.order.insert((Reverse(pushed), d.clone()));
        self.times.insert(d, pushed);
    }

    pub(super) fn remove(&mut self, d: &Digest) {
        if let Some(t) = self.times.remove(d) {
            self.order.remove(&(Reverse(t), d.clone()));
        }
    }

    pub(super) fn len(&self) -> usize {
        self.times.len()
    }

    /// Newest first, after `after` (exclusive; `None` if `after` is not
    /// linked) or after skipping `skip`; at most `n`, with the push times.
    pub(super) fn page(&self, from: &PageFrom, n: usize) -> Option<Vec<(u64, Digest)>> {
        let items: Box<dyn Iterator<Item = &(Reverse<u64>, Digest)>> = match from {
            PageFrom::Skip(skip) => Box::new(self.order.iter().skip(*skip)),
            PageFrom::After(d) => {
                let key = (Reverse(*self.times.get(d)?), d.clone());
                Box::new(
                    self.order
                        .range((std::ops::Bound::Excluded(key), std::ops::Bound::Unbounded)),
                )
            }
        };
        Some(items.take(n).map(|(t, d)| (t.0, d.clone())).collect())
    }
}

/// Where a page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageFrom {
    /// After this many items (the dashboard's page numbers).
    Skip(usize),
    /// After this item (an API cursor).
    After(Digest),
}

/// Entries an index holds, for the cache's weight.
pub(super) trait Weight {
    fn weight(&self) -> u32;
}

impl Weight for TagIndex {
    fn weight(&self) -> u32 {
        self.len().try_into().unwrap_or(u32::MAX).saturating_add(1)
    }
}

impl Weight for ManifestIndex {
    fn weight(&self) -> u32 {
        self.len().try_into().unwrap_or(u32::MAX).saturating_add(1)
    }
}

/// Generation counters (repositories hash to one of them).
const STRIPES: usize = 64;

/// Entries (tags or manifests) each kind of index may hold in all.
const MAX_ENTRIES: u64 = 100_000;

/// One kind of index for every repository that has one built.
pub(super) struct Indexed<V> {
    entries: moka::sync::Cache<RepoName, Arc<RwLock<V>>>,
    generations: Mutex<[u64; STRIPES]>,
}

impl<V: Weight + Send + Sync + 'static> Default for Indexed<V> {
    fn default() -> Self {
        Indexed::with_capacity(MAX_ENTRIES)
    }
}

fn stripe(repo: &RepoName) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    repo.hash(&mut h);
    (h.finish() % STRIPES as u64) as usize
}

impl<V: Weight + Send + Sync + 'static> Indexed<V> {
    pub(super) fn with_capacity(max_entries: u64) -> Self {
        Indexed::build(max_entries, None)
    }

    /// An index whose entries are rebuilt after `ttl` (the store is shared
    /// with other replicas, whose writes it does not see).
    pub(super) fn with_ttl(ttl: std::time::Duration) -> Self {
        Indexed::build(MAX_ENTRIES, Some(ttl))
    }

    fn build(max_entries: u64, ttl: Option<std::time::Duration>) -> Self {
        let mut b = moka::sync::Cache::builder()
            .max_capacity(max_entries)
            .weigher(|_: &RepoName, v: &Arc<RwLock<V>>| {
                v.read().unwrap_or_else(|e| e.into_inner()).weight()
            });
        if let Some(ttl) = ttl {
            b = b.time_to_live(ttl);
        }
        Indexed {
            entries: b.build(),
            generations: Mutex::new([0; STRIPES]),
        }
    }

    fn generations(&self) -> std::sync::MutexGuard<'_, [u64; STRIPES]> {
        self.generations.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Apply a change already written to the store to `repo`'s index, if
    /// one is built, and make builds in progress start over.
    pub(super) fn update(&self, repo: &RepoName, f: impl FnOnce(&mut V)) {
        let mut g = self.generations();
        g[stripe(repo)] += 1;
        if let Some(e) = self.entries.get(repo) {
            f(&mut e.write().unwrap_or_else(|e| e.into_inner()));
        }
    }

    /// Run `f` on `repo`'s index, building it with `build` first if needed.
    pub(super) async fn with<T, E, Fut>(
        &self,
        repo: &RepoName,
        build: impl FnOnce() -> Fut,
        f: impl FnOnce(&V) -> T,
    ) -> Result<T, E>
    where
        Fut: Future<Output = Result<V, E>>,
    {
        if let Some(e) = self.entries.get(repo) {
            return Ok(f(&e.read().unwrap_or_else(|e| e.into_inner())));
        }
        let s = stripe(repo);
        let before = self.generations()[s];
        let built = build().await?;
        let out = f(&built);
        let g = self.generations();
        if g[s] == before {
            self.entries
                .insert(repo.clone(), Arc::new(RwLock::new(built)));
        }
        Ok(out)
    }

    #[cfg(test)]
    fn is_built(&self, repo: &RepoName) -> bool {
        self.entries.get(repo).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Digest {
        Digest::sha256_of(s.as_bytes())
    }

    #[test]
    fn manifests_page_newest_first_by_skip_or_cursor() {
        let mut m = ManifestIndex::default();
        m.insert(d("a"), 10);
        m.insert(d("b"), 30);
        m.insert(d("c"), 20);
        m.insert(d("a"), 40); // re-pushed: newest now
        assert_eq!(m.len(), 3);
        let all: Vec<Digest> = m
            .page(&PageFrom::Skip(0), 10)
            .unwrap()
            .into_iter()
            .map(|x| x.1)
            .collect();
        assert_eq!(all, [d("a"), d("b"), d("c")]);
        let next = m.page(&PageFrom::After(d("b")), 10).unwrap();
        assert_eq!(next, [(20, d("c"))]);
        assert_eq!(m.page(&PageFrom::Skip(1), 1).unwrap(), [(30, d("b"))]);
        m.remove(&d("b"));
        assert!(
            m.page(&PageFrom::After(d("b")), 10).is_none(),
            "a cursor that is gone is reported"
        );
        assert_eq!(
            m.page(&PageFrom::After(d("a")), 10).unwrap(),
            [(20, d("c"))]
        );
    }

    #[tokio::test]
    async fn a_build_that_raced_with_a_change_is_not_installed() {
        let idx: Indexed<TagIndex> = Indexed::default();
        let r: RepoName = "p/r".parse().unwrap();
        // The change lands while the build reads the store.
        let stale = idx
            .with(
                &r,
                || async {
                    idx.update(&r, |t| {
                        t.insert("late".into(), Some(d("x")));
                    });
                    Ok::<_, ()>(TagIndex::new())
                },
                |t| t.len(),
            )
            .await
            .unwrap();
        assert_eq!(stale, 0);
        assert!(
            !idx.is_built(&r),
            "a build that may predate a change is dropped"
        );
        // A quiet build is installed and then kept current.
        let mut v = TagIndex::new();
        v.insert("a".into(), Some(d("a")));
        idx.with(&r, || async { Ok::<_, ()>(v) }, |_| ())
            .await
            .unwrap();
        assert!(idx.is_built(&r));
        idx.update(&r, |t| {
            t.insert("b".into(), Some(d("b")));
        });
        let never = || async { Err::<TagIndex, ()>(()) };
        let names = idx
            .with(&r, never, |t| t.keys().cloned().collect::<Vec<_>>())
            .await
            .unwrap();
        assert_eq!(names, ["a", "b"]);
    }
}
