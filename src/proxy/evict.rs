//! Keeps the pull-through cache under its caps: each remote's `max_size`
//! and `[cache] max_size` over all remotes together.
//!
//! The [`Evictor`] checks the caps every `cache.evict_interval`, and
//! shortly after fetches ([`Evictor::fetched`] wakes it; checks are at
//! least [`MIN_GAP`] apart, so a burst of fetches costs one check). A check
//! that finds usage under the cap only sums sizes.
//!
//! Policy: when a group of cache namespaces is over its cap, the least
//! recently pulled *images* are evicted until it fits. An image is a
//! manifest that is not a child of an index in the same repository (an
//! index is evicted with its children); its last use is its last pull or,
//! if never pulled, when it was cached. Pinned images (prefetch) are never
//! evicted, and nothing outside remote namespaces is ever looked at
//! (pushed content lives in projects). Evicting an image removes its
//! manifest, tags and the links of blobs no remaining manifest of the
//! repository needs, then the blob content nothing links or references any
//! more. On a store shared by replicas, that content is deleted in batches
//! fenced like a GC sweep's (`store::gc_fence`): a manifest another
//! replica pushes or caches meanwhile keeps its blobs, and when that
//! manifest is in a repository the eviction unlinked them from, the links
//! are put back after the batches (until then, a pull of such a blob asks
//! the remote first, as for any blob not linked yet).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::Notify;

use crate::config::Remote;
use crate::oci::manifest::Manifest;
use crate::oci::{Digest, RepoName};
use crate::store::{LastRun, LeaseFor, Result, RunKind, Store};

/// Minimum time between two checks triggered by fetches.
pub const MIN_GAP: Duration = Duration::from_millis(500);

/// What an eviction pass did.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct EvictReport {
    /// Usage of the namespaces before and after.
    pub usage_before: u64,
    pub usage_after: u64,
    /// `repo@digest` of every evicted image.
    pub evicted: Vec<String>,
    pub blobs_removed: usize,
    pub bytes_freed: u64,
}

/// The cache's caps and the task that enforces them.
pub struct Evictor {
    store: Store,
    remotes: Vec<Arc<Remote>>,
    global: Option<u64>,
    wake: Arc<Notify>,
}

impl Evictor {
    pub fn new(store: Store, remotes: Vec<Arc<Remote>>, global: Option<u64>) -> Evictor {
        Evictor {
            store,
            remotes,
            global,
            wake: Arc::new(Notify::new()),
        }
    }

    /// The notifier fetches use to say the cache grew.
    pub fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Tell the evictor that cached content grew.
    pub fn fetched(&self) {
        self.wake.notify_one();
    }

    /// `[cache] max_size`, over all remotes.
    pub fn global_cap(&self) -> Option<u64> {
        self.global
    }

    /// Whether any cap is configured.
    pub fn enabled(&self) -> bool {
        self.global.is_some() || self.remotes.iter().any(|r| r.max_size.is_some())
    }

    /// One pass over every cap.
    pub async fn check(&self) {
        for r in &self.remotes {
            if let Some(cap) = r.max_size {
                self.evict_logged(std::slice::from_ref(&r.name), cap, &r.name)
                    .await;
            }
        }
        if let Some(cap) = self.global {
            let names: Vec<String> = self.remotes.iter().map(|r| r.name.clone()).collect();
            self.evict_logged(&names, cap, "cache.max_size").await;
        }
    }

    /// Evict under `cap` across the cache namespaces `names`; log what went.
    /// `scope` names the cap in the log (a remote, or `cache.max_size`).
    async fn evict_logged(&self, names: &[String], cap: u64, scope: &str) {
        let started = Instant::now();
        match evict(&self.store, names, cap).await {
            Ok(rep) if !rep.evicted.is_empty() => {
                tracing::info!(
                    scope,
                    cap,
                    before = rep.usage_before,
                    after = rep.usage_after,
                    images = rep.evicted.len(),
                    bytes_freed = rep.bytes_freed,
                    "cache over its cap: evicted least recently pulled images"
                );
                record(&self.store, &rep, scope, started).await;
            }
            Ok(_) => {}
            Err(e @ crate::store::StoreError::Busy { .. }) => {
                tracing::info!(scope, "cache eviction skipped: {e}")
            }
            Err(e) => tracing::warn!(scope, error = %e, "cache eviction failed"),
        }
    }

    /// Run forever: check on every tick and after fetches.
    pub async fn run(self: Arc<Self>, interval: Duration) {
        if !self.enabled() {
            return;
        }
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.wake.notified() => {
                    // Let the image's blobs arrive before measuring.
                    tokio::time::sleep(MIN_GAP).await;
                }
            }
            self.check().await;
        }
    }
}

struct Candidate {
    repo: RepoName,
    digest: Digest,
    last_used: SystemTime,
}

/// Evict least recently pulled, unpinned images of the repositories in
/// `namespaces` until their usage is at most `cap` (or nothing evictable is
/// left).
pub async fn evict(store: &Store, namespaces: &[String], cap: u64) -> Result<EvictReport> {
    let mut report = EvictReport::default();
    let mut usage = store.group_usage(namespaces).await?;
    report.usage_before = usage;
    report.usage_after = usage;
    if usage <= cap {
        return Ok(report);
    }
    // One eviction in the cluster: replicas sharing the store take a lease.
    let _lease = store
        .hold_lease(LeaseFor::Evict, "a cache eviction")
        .await?;
    let _guard = store.gc_write().await;
    let mut candidates = candidates(store, namespaces).await?;
    candidates.sort_by(|a, b| a.last_used.cmp(&b.last_used).then(a.digest.cmp(&b.digest)));
    let mut freed = Unlinked::new();
    for c in candidates {
        if usage <= cap {
            break;
        }
        let gone = evict_image(store, &c.repo, &c.digest).await?;
        freed.entry(c.repo.clone()).or_default().extend(gone);
        report.evicted.push(format!("{}@{}", c.repo, c.digest));
        usage = store.group_usage(namespaces).await?;
        tracing::info!(repo = %c.repo, digest = %c.digest, usage, cap, "evicted cached image");
    }
    report.usage_after = usage;
    remove_unreferenced(store, freed, &mut report).await?;
    Ok(report)
}

/// Remove images of cache repository `name` now, as an admin asked:
/// `images`, or (when `None`) every unpinned image. Pinned images are
/// never removed by the whole-repository form. The caller checked that
/// `name` is a cache repository and that `images` are its manifests.
pub async fn purge(
    store: &Store,
    name: &RepoName,
    images: Option<&[Digest]>,
) -> Result<EvictReport> {
    let started = Instant::now();
    let _guard = store.gc_write().await;
    let victims: Vec<Digest> = match images {
        Some(d) => d.to_vec(),
        None => repo_candidates(store, name)
            .await?
            .into_iter()
            .map(|c| c.digest)
            .collect(),
    };
    let ns = [name.first().to_string()];
    let mut report = EvictReport {
        usage_before: store.group_usage(&ns).await?,
        ..EvictReport::default()
    };
    let mut freed = Unlinked::new();
    for d in victims {
        let gone = evict_image(store, name, &d).await?;
        freed.entry(name.clone()).or_default().extend(gone);
        store.repo(name).unpin(&d).await?;
        report.evicted.push(format!("{name}@{d}"));
        tracing::info!(repo = %name, digest = %d, "purged cached image");
    }
    remove_unreferenced(store, freed, &mut report).await?;
    report.usage_after = store.group_usage(&ns).await?;
    record(store, &report, "purge", started).await;
    Ok(report)
}

/// Keep `rep` as the store's last eviction run.
async fn record(store: &Store, rep: &EvictReport, trigger: &str, started: Instant) {
    let run = LastRun {
        at: crate::timefmt::now(),
        dry_run: false,
        trigger: trigger.to_string(),
        images_removed: rep.evicted.len(),
        blobs_removed: rep.blobs_removed,
        bytes_freed: rep.bytes_freed,
        duration_ms: started.elapsed().as_millis() as u64,
    };
    store.record_run(RunKind::Eviction, &run).await;
}

/// The digests an eviction unlinked, per repository.
type Unlinked = HashMap<RepoName, BTreeSet<Digest>>;

/// Delete the content of `freed` digests that nothing links or references
/// any more (the caller holds the GC lock; deletes are fenced against
/// manifests committed on other replicas like a GC sweep's, see
/// `store::gc_fence`), then link again what survived and is needed.
async fn remove_unreferenced(
    store: &Store,
    freed: Unlinked,
    report: &mut EvictReport,
) -> Result<()> {
    let all: HashSet<Digest> = freed.values().flatten().cloned().collect();
    let swept = store.remove_unreferenced(all).await?;
    report.blobs_removed += swept.blobs_removed;
    report.bytes_freed += swept.bytes_freed;
    let removed: HashSet<String> = swept.removed.into_iter().map(|b| b.digest).collect();
    for (name, digests) in freed {
        let kept: Vec<Digest> = digests
            .into_iter()
            .filter(|d| !removed.contains(d.as_str()))
            .collect();
        relink_needed(store, &name, &kept).await?;
    }
    Ok(())
}

/// Link `kept` (unlinked from `name` by this eviction, content not
/// deleted) into `name` again where a manifest of `name` needs it: one
/// cached there meanwhile, by another replica.
async fn relink_needed(store: &Store, name: &RepoName, kept: &[Digest]) -> Result<()> {
    if kept.is_empty() {
        return Ok(());
    }
    let repo = store.repo(name);
    let mut needed = HashSet::new();
    for m in repo.manifest_digests().await? {
        needed.extend(repo.closure(&m).await?);
    }
    for d in kept.iter().filter(|d| needed.contains(*d)) {
        if store.blobs().stat(d).await?.is_some() {
            repo.link_blob(d).await?;
            tracing::info!(repo = %name, digest = %d, "a blob a manifest cached during the eviction needs was linked again");
        }
    }
    Ok(())
}

/// Every evictable image of the namespaces, with its last use.
async fn candidates(store: &Store, namespaces: &[String]) -> Result<Vec<Candidate>> {
    let mut out = Vec::new();
    for ns in namespaces {
        for name in store.repositories_in(ns).await? {
            out.extend(repo_candidates(store, &name).await?);
        }
    }
    Ok(out)
}

/// The images of one repository that may be evicted: not pinned, not a
/// child of an index there.
async fn repo_candidates(store: &Store, name: &RepoName) -> Result<Vec<Candidate>> {
    let repo = store.repo(name);
    let digests = repo.manifest_digests().await?;
    let mut children = HashSet::new();
    for d in &digests {
        if let Some(m) = repo.manifest(d).await? {
            if let Ok(p) = Manifest::parse(&m.bytes, Some(&m.media_type)) {
                children.extend(p.manifests.into_iter().map(|c| c.digest));
            }
        }
    }
    let pinned: HashSet<Digest> = repo.pins().await?.into_iter().collect();
    let mut out = Vec::new();
    for d in digests {
        if children.contains(&d) || pinned.contains(&d) {
            continue;
        }
        let cached = repo.manifest_meta(&d).await?.map(|m| m.modified);
        let last_used = repo
            .last_pull(&d)
            .await?
            .or(cached)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        out.push(Candidate {
            repo: name.clone(),
            digest: d,
            last_used,
        });
    }
    Ok(out)
}

/// Remove image `d` from `repo` with what only it needed; returns the
/// digests unlinked (candidates for removal of their content).
async fn evict_image(store: &Store, name: &RepoName, d: &Digest) -> Result<Vec<Digest>> {
    let repo = store.repo(name);
    let mine = repo.closure(d).await?;
    repo.delete_manifest(d).await?;
    let mut remaining = BTreeSet::new();
    for other in repo.manifest_digests().await? {
        if mine.contains(&other) && &other != d {
            // A child of the evicted index: goes with it unless another
            // remaining manifest needs it (checked below).
            continue;
        }
        remaining.extend(repo.closure(&other).await?);
    }
    let mut out = Vec::new();
    for x in mine {
        if remaining.contains(&x) {
            continue;
        }
        repo.delete_manifest(&x).await?;
        repo.unlink_blob(&x).await?;
        out.push(x);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::gc::tests::{blob, image, manifest, present};
    use crate::store::{test_replicas, PausePoint};

    /// Cache an image of config `b"{}"`, `layers` and one layer of its own
    /// (not fetched yet) in `repo`, as the pull-through cache does.
    async fn cache(s: &Store, repo: &RepoName, layers: &[&Digest]) -> Digest {
        let own = Digest::sha256_of(repo.as_str().as_bytes());
        let layers: Vec<&Digest> = layers.iter().copied().chain([&own]).collect();
        let (d, bytes, parsed) = manifest(&Digest::sha256_of(b"{}"), &layers);
        let commit = s.begin_manifest(&d, &parsed).await.unwrap();
        commit.link(repo, bytes, None).await.unwrap();
        d
    }

    /// Wait for a paused store (a test fails rather than hangs when the
    /// point is never reached).
    async fn reached(p: &crate::store::Pause, what: &str) {
        tokio::time::timeout(Duration::from_secs(10), p.reached.notified())
            .await
            .unwrap_or_else(|_| panic!("{what}"));
    }

    /// Replica a holds `up/old` (one image of layer x) and evicts it.
    async fn evicting(a: &Store) -> (Digest, Digest, tokio::task::JoinHandle<EvictReport>) {
        let old: RepoName = "up/old".parse().unwrap();
        let x = blob(a, &old, &[1u8; 5000]).await;
        let m_old = image(a, &old, &[&x]).await;
        let ev = tokio::spawn({
            let a = a.clone();
            async move { evict(&a, &["up".to_string()], 1000).await.unwrap() }
        });
        (x, m_old, ev)
    }

    #[tokio::test]
    async fn an_eviction_keeps_what_a_manifest_cached_on_another_replica_after_its_mark_references()
    {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = test_replicas(dir.path());
        // a evicted the image and marked: x is referenced by nothing.
        let hold = a.pause_at(PausePoint::SweepStart);
        let (x, m_old, ev) = evicting(&a).await;
        reached(&hold, "a's eviction never marked").await;
        let other: RepoName = "up/other".parse().unwrap();
        let m = cache(&b, &other, &[&x]).await;
        hold.resume.notify_one();
        let report = ev.await.unwrap();
        assert_eq!(report.evicted, [format!("up/old@{m_old}")]);
        // Only the evicted manifest's own bytes went.
        assert_eq!(report.blobs_removed, 1, "{report:?}");
        assert!(!present(&a, &m_old).await);
        for d in [&x, &Digest::sha256_of(b"{}"), &m] {
            assert!(
                present(&a, d).await,
                "{d} of the cached manifest was removed"
            );
        }
    }

    #[tokio::test]
    async fn a_manifest_cached_in_the_evicted_repository_meanwhile_gets_its_links_back() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = test_replicas(dir.path());
        // a unlinked x from up/old with the evicted image, and marked.
        let hold = a.pause_at(PausePoint::SweepStart);
        let (x, m_old, ev) = evicting(&a).await;
        reached(&hold, "a's eviction never marked").await;
        let old: RepoName = "up/old".parse().unwrap();
        assert!(!a.repo(&old).links_blob(&x).await.unwrap());
        // b caches another image of up/old that needs x.
        let m = cache(&b, &old, &[&x]).await;
        hold.resume.notify_one();
        let report = ev.await.unwrap();
        assert_eq!(report.evicted, [format!("up/old@{m_old}")]);
        assert!(present(&a, &x).await, "x was removed");
        assert!(
            a.repo(&old).links_blob(&x).await.unwrap(),
            "x is not linked in up/old again: its next pull would ask the remote"
        );
        assert!(a.repo(&old).manifest(&m).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_manifest_cached_during_an_eviction_batch_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = test_replicas(dir.path());
        // a's delete batch has flagged itself and checked a candidate.
        let hold_a = a.pause_at(PausePoint::SweepDelete);
        let (x, _, ev) = evicting(&a).await;
        reached(&hold_a, "a's eviction never deleted").await;
        let hold_b = b.pause_at(PausePoint::SweepFlagSeen);
        let other: RepoName = "up/other".parse().unwrap();
        let mut put = tokio::spawn({
            let (b, other, x) = (b.clone(), other.clone(), x.clone());
            async move { cache(&b, &other, &[&x]).await }
        });
        reached(&hold_b, "b's commit did not see a's sweep flag").await;
        assert!(present(&b, &x).await);
        hold_b.resume.notify_one();
        // b links nothing while a's batch is open (a waits for resume):
        // else it would count on an x that a then deletes.
        let early = tokio::time::timeout(Duration::from_millis(300), &mut put).await;
        assert!(early.is_err(), "b linked while a's batch was deleting");
        hold_a.resume.notify_one();
        let report = ev.await.unwrap();
        let m = put.await.unwrap();
        assert!(b.repo(&other).manifest(&m).await.unwrap().is_some());
        // Linked after the batch: of the blobs it references, the one the
        // batch had checked before b's marks is gone (a pull fetches it
        // again), those checked after them were kept.
        let mut kept = 0;
        for d in [&x, &Digest::sha256_of(b"{}")] {
            kept += usize::from(present(&b, d).await);
        }
        assert_eq!(report.blobs_removed + kept, 3, "{report:?}");
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
        s.repo(&pinned).pin(&m_pin).await.unwrap();
        let l3 = blob(&s, &local, &[3u8; 5000]).await;
        let m_local = image(&s, &local, &[&l3]).await;
        let r = evict(&s, &["up".to_string()], 1000).await.unwrap();
        assert_eq!(r.evicted, vec![format!("up/old@{m_old}")]);
        assert!(!present(&s, &l1).await);
        assert!(present(&s, &l2).await && present(&s, &l3).await);
        assert!(s.repo(&pinned).manifest(&m_pin).await.unwrap().is_some());
        assert!(s.repo(&local).manifest(&m_local).await.unwrap().is_some());
    }
}
