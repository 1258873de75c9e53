//! Garbage collection (mark and sweep) and the per-namespace usage cache.
//!
//! **What is live.** A blob (or manifest) is live when it is reachable from
//! a manifest revision linked in any repository: the manifest itself, its
//! config and layers, and for an index its child manifests (recursively).
//! Referrers are manifests linked in their repository, so they and their
//! blobs are live too; pull-through cache repositories are repositories like
//! any other. This is Distribution's rule ("blobs referenced by manifests"):
//! a blob that is only linked into a repository's `_layers` (pushed, but no
//! manifest ever referenced it, or its manifests were deleted) is garbage
//! once it is older than the grace period, and its `_layers` links are
//! removed with it.
//!
//! **What is never touched.** Upload sessions (`uploads/`) and spool files
//! (`tmp/`) are not blobs and are never looked at. A blob whose file, or any
//! of whose `_layers` links, was modified within the grace period
//! (`storage.gc_grace`) is kept: that covers a blob committed by an upload
//! whose manifest has not arrived yet (and a re-pushed existing blob, whose
//! mtime is refreshed on commit).
//!
//! **Concurrency.** A GC holds the store's GC lock for writing from mark to
//! sweep; a manifest `PUT` holds it for reading from its reference check to
//! the revision link, so no manifest can start referencing a blob that the
//! sweep is about to remove. Dry runs take no lock and remove nothing.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::{blocking, Store};
use crate::oci::{Digest, RepoName};

/// Options of one GC run.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Report what would be removed; remove nothing.
    pub dry_run: bool,
    /// Blobs modified more recently than this are never collected.
    pub grace: Duration,
}

/// One blob collected (or that would be).
#[derive(Debug, Clone, Serialize)]
pub struct GcBlob {
    pub digest: String,
    pub size: u64,
}

/// What a GC run found and removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    /// Repositories scanned.
    pub repositories: usize,
    /// Manifest revisions scanned.
    pub manifests: usize,
    /// Blobs (including manifests' bytes) in the store before the sweep.
    pub blobs_total: usize,
    /// Blobs found reachable.
    pub blobs_marked: usize,
    /// Unreferenced blobs kept because they are younger than the grace period.
    pub blobs_in_grace: usize,
    /// Blobs removed (or, in a dry run, that would be).
    pub blobs_removed: usize,
    pub bytes_freed: u64,
    /// `_layers` links to removed blobs that were removed.
    pub links_removed: usize,
    pub removed: Vec<GcBlob>,
    pub duration_ms: u64,
}

/// Per-namespace usage, recomputed lazily after any change in the namespace.
///
/// Each namespace has a generation, bumped on every change; a value computed
/// while the generation moved is not cached (it may predate the change).
#[derive(Default)]
pub(crate) struct UsageCache {
    map: Mutex<HashMap<String, (u64, Option<u64>)>>,
}

impl UsageCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, Option<u64>)>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The first name component: the project (or remote) a repository belongs to.
pub fn namespace_of(repo: &RepoName) -> &str {
    repo.as_str().split('/').next().unwrap_or("")
}

/// Set a file's mtime to now (best effort).
pub(crate) fn touch(p: &Path) {
    if let Ok(f) = std::fs::OpenOptions::new().write(true).open(p) {
        let _ = f.set_modified(SystemTime::now());
    }
}

/// `<dir>/<alg>/<hex>` files as digests with their paths (the `_layers`,
/// `_manifests` and `_pinned` folders). Markers like `.pulled` are skipped.
pub(crate) fn digest_files(dir: &Path) -> io::Result<Vec<(Digest, PathBuf)>> {
    let mut out = Vec::new();
    for alg in ["sha256", "sha512"] {
        let rd = match std::fs::read_dir(dir.join(alg)) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for e in rd {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.contains('.') {
                continue;
            }
            if let Ok(d) = format!("{alg}:{name}").parse::<Digest>() {
                out.push((d, e.path()));
            }
        }
    }
    Ok(out)
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// The result of the mark phase.
pub(crate) struct Marked {
    pub live: HashSet<Digest>,
    /// Every `_layers` link: (repository, digest, link path).
    pub layer_links: Vec<(RepoName, Digest, PathBuf)>,
    pub repositories: usize,
    pub manifests: usize,
}

impl Store {
    /// Note a change to `repo`'s links: its namespace's usage is recomputed
    /// on next use.
    pub(crate) fn usage_changed(&self, repo: &RepoName) {
        let ns = namespace_of(repo).to_string();
        let mut m = self.inner.usage.lock();
        let e = m.entry(ns).or_insert((0, None));
        e.0 += 1;
        e.1 = None;
    }

    fn usage_forget_all(&self) {
        let mut m = self.inner.usage.lock();
        for e in m.values_mut() {
            e.0 += 1;
            e.1 = None;
        }
    }

    /// Bytes `namespace` uses (each blob and manifest once), cached until
    /// the namespace changes.
    pub async fn usage(&self, namespace: &str) -> io::Result<u64> {
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
    pub async fn namespace_links(&self, namespace: &str, d: &Digest) -> io::Result<bool> {
        for repo in self.repositories_in(namespace).await? {
            let a = self.layout().layer_link(&repo, d);
            let b = self.layout().manifest_link(&repo, d);
            if blocking(move || Ok(a.exists() || b.exists())).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Held for reading by a manifest `PUT` from its reference check to the
    /// revision link (see the module docs).
    pub async fn gc_read(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.inner.gc_lock.read().await
    }

    pub(crate) async fn gc_write(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.inner.gc_lock.write().await
    }

    /// Mark: every digest reachable from a manifest linked in any
    /// repository, plus the list of every `_layers` link.
    pub(crate) async fn mark(&self) -> io::Result<Marked> {
        let mut live = HashSet::new();
        let mut layer_links = Vec::new();
        let repos = self.repositories().await?;
        let mut manifests = 0;
        for r in &repos {
            let Ok(repo) = r.parse::<RepoName>() else { continue };
            for d in self.manifest_digests(&repo).await? {
                manifests += 1;
                live.extend(self.closure(&repo, &d).await?);
            }
            let dir = self.layout().repo_dir(&repo).join("_layers");
            for (d, p) in blocking(move || digest_files(&dir)).await? {
                layer_links.push((repo.clone(), d, p));
            }
        }
        Ok(Marked {
            live,
            layer_links,
            repositories: repos.len(),
            manifests,
        })
    }

    /// Collect unreferenced blobs (see the module docs for the rules).
    pub async fn gc(&self, opts: &GcOptions) -> io::Result<GcReport> {
        let started = Instant::now();
        let _guard = if opts.dry_run { None } else { Some(self.gc_write().await) };
        let marked = self.mark().await?;
        let now = SystemTime::now();
        let grace = opts.grace;
        let fresh = move |t: Option<SystemTime>| match t {
            Some(t) => now.duration_since(t).map(|age| age < grace).unwrap_or(true),
            // Unknown mtime: keep it.
            None => true,
        };
        // Blobs with a recent `_layers` link are in their grace period too.
        let mut recently_linked: HashSet<Digest> = HashSet::new();
        if !grace.is_zero() {
            for (_, d, p) in &marked.layer_links {
                if fresh(mtime(p)) {
                    recently_linked.insert(d.clone());
                }
            }
        }
        let blobs_dir = self.layout().blobs_dir();
        let all = blocking(move || list_blobs(&blobs_dir)).await?;
        let mut report = GcReport {
            dry_run: opts.dry_run,
            repositories: marked.repositories,
            manifests: marked.manifests,
            blobs_total: all.len(),
            ..GcReport::default()
        };
        let mut doomed = Vec::new();
        for (d, p) in all {
            if marked.live.contains(&d) {
                report.blobs_marked += 1;
                continue;
            }
            let meta = std::fs::metadata(&p).ok();
            if recently_linked.contains(&d) || fresh(meta.as_ref().and_then(|m| m.modified().ok())) {
                report.blobs_in_grace += 1;
                continue;
            }
            doomed.push((d, p, meta.map(|m| m.len()).unwrap_or(0)));
        }
        let doomed_set: HashSet<Digest> = doomed.iter().map(|(d, _, _)| d.clone()).collect();
        for (d, p, size) in doomed {
            if !opts.dry_run {
                let p2 = p.clone();
                if !blocking(move || super::fsutil::remove_if_exists(&p2)).await? {
                    continue;
                }
            }
            report.blobs_removed += 1;
            report.bytes_freed += size;
            report.removed.push(GcBlob {
                digest: d.to_string(),
                size,
            });
        }
        for (repo, d, p) in &marked.layer_links {
            if !doomed_set.contains(d) {
                continue;
            }
            if !opts.dry_run {
                let p2 = p.clone();
                blocking(move || super::fsutil::remove_if_exists(&p2)).await?;
            }
            let _ = repo;
            report.links_removed += 1;
        }
        if !opts.dry_run {
            self.usage_forget_all();
        }
        report.removed.sort_by(|a, b| a.digest.cmp(&b.digest));
        report.duration_ms = started.elapsed().as_millis() as u64;
        if !opts.dry_run && report.blobs_removed > 0 {
            tracing::info!(
                blobs = report.blobs_removed,
                bytes = report.bytes_freed,
                links = report.links_removed,
                "garbage collected"
            );
        }
        Ok(report)
    }
}

/// Every file under `blobs/<alg>/<xx>/<hex>`.
fn list_blobs(dir: &Path) -> io::Result<Vec<(Digest, PathBuf)>> {
    let mut out = Vec::new();
    for alg in ["sha256", "sha512"] {
        let rd = match std::fs::read_dir(dir.join(alg)) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for prefix in rd {
            let prefix = prefix?;
            if !prefix.file_type()?.is_dir() {
                continue;
            }
            for e in std::fs::read_dir(prefix.path())? {
                let e = e?;
                let name = e.file_name().to_string_lossy().into_owned();
                if let Ok(d) = format!("{alg}:{name}").parse::<Digest>() {
                    out.push((d, e.path()));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const MT: &str = "application/vnd.oci.image.manifest.v1+json";

    async fn blob(s: &Store, repo: &RepoName, content: &[u8]) -> Digest {
        let d = Digest::sha256_of(content);
        s.put_small_blob(&d, Bytes::copy_from_slice(content)).await.unwrap();
        s.link_blob(repo, &d).await.unwrap();
        d
    }

    async fn image(s: &Store, repo: &RepoName, layers: &[&Digest]) -> Digest {
        let layers: Vec<_> = layers
            .iter()
            .map(|d| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d.to_string(), "size": 1}))
            .collect();
        let cfg = blob(s, repo, b"{}").await;
        let m = serde_json::json!({
            "schemaVersion": 2, "mediaType": MT,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg.to_string(), "size": 2},
            "layers": layers,
        });
        let bytes = serde_json::to_vec(&m).unwrap();
        let d = Digest::sha256_of(&bytes);
        s.put_manifest(repo, &d, MT, Bytes::from(bytes), None, None).await.unwrap();
        d
    }

    #[tokio::test]
    async fn usage_cache_follows_changes_and_gc() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let a: RepoName = "team/a".parse().unwrap();
        let b: RepoName = "team/b".parse().unwrap();
        let shared = blob(&s, &a, &[1u8; 1000]).await;
        let own = blob(&s, &a, &[2u8; 500]).await;
        let m1 = image(&s, &a, &[&shared, &own]).await;
        s.link_blob(&b, &shared).await.unwrap();
        let m2 = image(&s, &b, &[&shared]).await;
        let u1 = s.usage("team").await.unwrap();
        assert_eq!(u1, s.namespace_usage("team").await.unwrap());
        // A dangling `_layers` link to content nothing references.
        let orphan = blob(&s, &b, &[3u8; 300]).await;
        assert_eq!(s.usage("team").await.unwrap(), u1 + 300);
        let opts = GcOptions { dry_run: false, grace: Duration::ZERO };
        let r = s.gc(&opts).await.unwrap();
        assert_eq!(r.blobs_removed, 1, "{r:?}");
        assert_eq!(r.links_removed, 1);
        assert_eq!(s.usage("team").await.unwrap(), u1);
        assert!(!s.layout().blob(&orphan).exists());
        s.delete_manifest(&a, &m1, None).await.unwrap();
        let r = s.gc(&opts).await.unwrap();
        // m1's bytes and its own layer; `shared` and the config live on in b.
        assert_eq!(r.blobs_removed, 2, "{r:?}");
        assert!(!s.layout().blob(&own).exists() && !s.layout().blob(&m1).exists());
        assert!(s.layout().blob(&shared).exists() && s.layout().blob(&m2).exists());
        assert_eq!(s.usage("team").await.unwrap(), s.namespace_usage("team").await.unwrap());
        // The grace period protects young unreferenced blobs.
        blob(&s, &a, &[4u8; 10]).await;
        let r = s.gc(&GcOptions { dry_run: false, grace: Duration::from_secs(3600) }).await.unwrap();
        assert_eq!((r.blobs_removed, r.blobs_in_grace), (0, 1));
    }

    #[tokio::test]
    async fn eviction_spares_pins_and_other_namespaces() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let old: RepoName = "up/old".parse().unwrap();
        let pinned: RepoName = "up/pinned".parse().unwrap();
        let local: RepoName = "team/app".parse().unwrap();
        let l1 = blob(&s, &old, &[1u8; 5000]).await;
        let m_old = image(&s, &old, &[&l1]).await;
        let l2 = blob(&s, &pinned, &[2u8; 5000]).await;
        let m_pin = image(&s, &pinned, &[&l2]).await;
        s.pin(&pinned, &m_pin).await.unwrap();
        let l3 = blob(&s, &local, &[3u8; 5000]).await;
        let m_local = image(&s, &local, &[&l3]).await;
        let r = s.evict(&["up".to_string()], 1000).await.unwrap();
        assert_eq!(r.evicted, vec![format!("up/old@{m_old}")]);
        assert!(!s.layout().blob(&l1).exists());
        assert!(s.layout().blob(&l2).exists() && s.layout().blob(&l3).exists());
        assert!(s.get_manifest(&pinned, &m_pin).await.unwrap().is_some());
        assert!(s.get_manifest(&local, &m_local).await.unwrap().is_some());
    }
}
