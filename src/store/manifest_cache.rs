//! An in-memory cache of manifests, keyed by repository and digest.
//!
//! Manifest GETs are the hottest small requests a registry serves: every
//! pull starts with them, and clients and orchestrators re-check them all
//! the time. Read from disk, each costs two blocking-pool round trips (the
//! repository's revision link, then the bytes: open, read, close each),
//! which is most of the request's CPU time. Served from here it costs a
//! hash lookup.
//!
//! Correctness: a digest names its bytes, so an entry can never hold
//! wrong bytes; what can change is whether the repository still links the
//! manifest (and, on a re-push, its media type). Both change only in
//! [`Store::put_manifest`](super::Store::put_manifest) and
//! [`Store::delete_manifest`](super::Store::delete_manifest) (eviction and
//! `DELETE` go through the latter), which invalidate the entry. A
//! generation counter closes the race between a reader filling the cache
//! from disk and a concurrent invalidation: a fill that started before an
//! invalidation is dropped. Hits take no lock.
//!
//! Memory is bounded: at most [`MAX_BYTES`] of entries, and manifests
//! larger than [`MAX_ENTRY`] are not cached.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::StoredManifest;
use crate::oci::{Digest, RepoName};

/// Total size of cached manifests (keys, media types and bytes).
pub const MAX_BYTES: u64 = 8 * 1024 * 1024;
/// Larger manifests (huge indexes) are always read from disk.
pub const MAX_ENTRY: usize = 256 * 1024;

pub struct ManifestCache {
    entries: moka::sync::Cache<String, StoredManifest>,
    /// Bumped by every invalidation.
    generation: AtomicU64,
    /// Orders fills against invalidations.
    lock: Mutex<()>,
}

impl Default for ManifestCache {
    fn default() -> Self {
        ManifestCache {
            entries: moka::sync::Cache::builder()
                .max_capacity(MAX_BYTES)
                .weigher(|k: &String, v: &StoredManifest| {
                    (k.len() + v.media_type.len() + v.bytes.len())
                        .try_into()
                        .unwrap_or(u32::MAX)
                })
                .build(),
            generation: AtomicU64::new(0),
            lock: Mutex::new(()),
        }
    }
}

/// `repo@digest`, the key of a manifest of a repository (also of its
/// pull marks). Built without `format!`: it is made on every manifest GET.
pub(super) fn key(repo: &RepoName, d: &Digest) -> String {
    let (r, d) = (repo.as_str(), d.as_str());
    let mut k = String::with_capacity(r.len() + 1 + d.len());
    k.push_str(r);
    k.push('@');
    k.push_str(d);
    k
}

impl ManifestCache {
    /// The cached manifest `d` of `repo`.
    pub fn get(&self, repo: &RepoName, d: &Digest) -> Option<StoredManifest> {
        self.entries.get(&key(repo, d))
    }

    /// Take before reading a manifest from disk; pass to [`fill`](Self::fill).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Remember `m` as manifest of `repo`, read from disk after
    /// [`generation`](Self::generation) returned `generation`, unless an
    /// invalidation happened since.
    pub fn fill(&self, generation: u64, repo: &RepoName, m: &StoredManifest) {
        if m.bytes.len() > MAX_ENTRY {
            return;
        }
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if self.generation.load(Ordering::Acquire) == generation {
            self.entries.insert(key(repo, &m.digest), m.clone());
        }
    }

    /// Forget manifest `d` of `repo` (after its link changed on disk).
    pub fn invalidate(&self, repo: &RepoName, d: &Digest) {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.invalidate(&key(repo, d));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(bytes: &'static [u8]) -> StoredManifest {
        StoredManifest {
            digest: Digest::sha256_of(bytes),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            bytes: bytes::Bytes::from_static(bytes),
        }
    }

    #[test]
    fn fill_get_invalidate() {
        let c = ManifestCache::default();
        let repo: RepoName = "a/b".parse().unwrap();
        let other: RepoName = "a/c".parse().unwrap();
        let x = m(b"{}");
        assert!(c.get(&repo, &x.digest).is_none());
        c.fill(c.generation(), &repo, &x);
        assert_eq!(c.get(&repo, &x.digest).unwrap().bytes, x.bytes);
        // Per repository.
        assert!(c.get(&other, &x.digest).is_none());
        c.invalidate(&repo, &x.digest);
        assert!(c.get(&repo, &x.digest).is_none());
    }

    #[test]
    fn a_fill_racing_an_invalidation_is_dropped() {
        let c = ManifestCache::default();
        let repo: RepoName = "a/b".parse().unwrap();
        let x = m(b"{\"x\":1}");
        let g = c.generation();
        // Read from disk... meanwhile the manifest is deleted.
        c.invalidate(&repo, &x.digest);
        c.fill(g, &repo, &x);
        assert!(c.get(&repo, &x.digest).is_none());
    }
}
