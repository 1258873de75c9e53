//! Garbage collection (mark and sweep).
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
//! **What is never touched.** Upload sessions and temp objects are not
//! blobs and are never looked at. A blob whose content, or any of whose
//! `_layers` links, was modified within the grace period
//! (`storage.gc_grace`) is kept: that covers a blob committed by an upload
//! whose manifest has not arrived yet (and a re-pushed existing blob, whose
//! time is refreshed on commit).
//!
//! **Concurrency.** One GC runs at a time: in this process by a mutex,
//! across replicas sharing the store by the `gc` lease (see
//! [`super::lease`]): a GC asked of a replica while another holds it
//! fails with [`StoreError::Busy`](super::StoreError) naming the holder
//! (409 at the API). The mark takes no lock: while a
//! GC runs, every manifest linked ([`Repo::put_manifest`](super::Repo))
//! is recorded. The sweep removes blobs in batches of [`SWEEP_BATCH`],
//! each under the store's GC lock held for writing, and first adds to the
//! live set everything the manifests recorded so far reference. A manifest
//! `PUT` holds the lock for reading from its reference check to the
//! revision link, so it either completed before a batch (and was recorded
//! and folded in) or checks its references after the batch (and finds a
//! removed blob missing, like any missing blob). A PUT therefore waits for
//! one batch at most, never for the mark. A candidate refreshed within the
//! grace period since the mark (re-pushed) is kept. Dry runs take no lock
//! and remove nothing. Manifests committed on *other* replicas sharing the
//! store (pushed or cached) are fenced by reference marks and a per-batch
//! sweep flag (see [`super::gc_fence`]): a candidate a commit marked is
//! kept, and a batch deletes for at most 10 s. A cache eviction's deletes
//! ([`Store::remove_unreferenced`]) run in the same flagged batches.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::backend::ObjectMeta;
use super::{layout, LastRun, LeaseFor, Result, RunKind, Store};
use crate::oci::{Digest, RepoName};

/// Options of one GC run.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Report what would be removed; remove nothing.
    pub dry_run: bool,
    /// Blobs modified more recently than this are never collected.
    pub grace: Duration,
    /// Who asked (`api`, `schedule`, `offline`, `retention`), for the last-run record.
    pub trigger: &'static str,
}

/// One blob collected (or that would be).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GcBlob {
    pub digest: String,
    pub size: u64,
}

/// What a GC run found and removed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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

/// The result of the mark phase.
pub(crate) struct Marked {
    pub live: HashSet<Digest>,
    /// Every `_layers` link: repository, digest, and the link's times.
    pub layer_links: Vec<(RepoName, Digest, ObjectMeta)>,
    pub repositories: usize,
    pub manifests: usize,
}

impl Store {
    /// Mark: every digest reachable from a manifest linked in any
    /// repository, plus the list of every `_layers` link.
    pub(crate) async fn mark(&self) -> Result<Marked> {
        let mut live = HashSet::new();
        let mut layer_links = Vec::new();
        // Every repository, those other replicas created included.
        self.refresh_catalog().await?;
        let names = self.all_repositories().await?;
        let mut manifests = 0;
        for name in &names {
            let repo = self.repo(name);
            for d in repo.manifest_digests().await? {
                manifests += 1;
                live.extend(repo.closure(&d).await?);
            }
            for (d, m) in repo.layer_links().await? {
                layer_links.push((name.clone(), d, m));
            }
        }
        Ok(Marked {
            live,
            layer_links,
            repositories: names.len(),
            manifests,
        })
    }

    /// Collect unreferenced blobs (see the module docs for the rules).
    pub async fn gc(&self, opts: &GcOptions) -> Result<GcReport> {
        let started = Instant::now();
        let _one = self.inner.gc_run.lock().await;
        // One sweep in the cluster: replicas sharing the store take a lease
        // (dry runs remove nothing and need none).
        let _lease = match opts.dry_run {
            true => None,
            false => Some(
                self.hold_lease(LeaseFor::Gc, "a garbage collection")
                    .await?,
            ),
        };
        let _watch = (!opts.dry_run).then(|| Watching::start(self));
        let mut report = self.collect(opts).await?;
        if !opts.dry_run {
            self.usage_forget_all();
        }
        report.removed.sort_by(|a, b| a.digest.cmp(&b.digest));
        report.duration_ms = started.elapsed().as_millis() as u64;
        let run = LastRun {
            at: crate::timefmt::now(),
            dry_run: opts.dry_run,
            trigger: opts.trigger.to_string(),
            images_removed: 0,
            blobs_removed: report.blobs_removed,
            bytes_freed: report.bytes_freed,
            duration_ms: report.duration_ms,
        };
        self.record_run(RunKind::Gc, &run).await;
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

    async fn collect(&self, opts: &GcOptions) -> Result<GcReport> {
        let mark_start = SystemTime::now();
        let mut marked = self.mark().await?;
        #[cfg(test)]
        self.test_pause(super::PausePoint::SweepStart).await;
        let now = SystemTime::now();
        let fresh = |t: SystemTime| {
            now.duration_since(t)
                .map(|age| age < opts.grace)
                .unwrap_or(true)
        };
        // Blobs with a recent `_layers` link are in their grace period too.
        let recently_linked: HashSet<&Digest> = marked
            .layer_links
            .iter()
            .filter(|(_, _, m)| !opts.grace.is_zero() && fresh(m.modified))
            .map(|(_, d, _)| d)
            .collect();
        let all = self.blobs().list().await?;
        let mut report = GcReport {
            dry_run: opts.dry_run,
            repositories: marked.repositories,
            manifests: marked.manifests,
            blobs_total: all.len(),
            ..GcReport::default()
        };
        let live = std::mem::take(&mut marked.live);
        let mut candidates = Vec::new();
        for (d, m) in all {
            if live.contains(&d) {
                report.blobs_marked += 1;
            } else if recently_linked.contains(&d) || fresh(m.modified) {
                report.blobs_in_grace += 1;
            } else {
                candidates.push((d, m));
            }
        }
        let mut links: HashMap<&Digest, Vec<&RepoName>> = HashMap::new();
        for (repo, d, _) in &marked.layer_links {
            links.entry(d).or_default().push(repo);
        }
        let before = |d: Duration| mark_start.checked_sub(d).unwrap_or(SystemTime::UNIX_EPOCH);
        let window = super::gc_fence::REF_WINDOW;
        let referenced_since = before(opts.grace.min(window));
        let mut sweep = Sweep {
            store: self,
            opts,
            now,
            referenced_since,
            live,
            links,
            report,
        };
        let mut rest = &candidates[..];
        while !rest.is_empty() {
            let done = sweep.batch(rest).await?;
            rest = &rest[done..];
        }
        if !opts.dry_run {
            self.prune_ref_marks(before(window)).await?;
        }
        Ok(sweep.report)
    }

    /// Add to `live` everything the manifests linked since the mark
    /// reference.
    async fn fold_recorded(&self, live: &mut HashSet<Digest>) -> Result<()> {
        let recorded = std::mem::take(
            self.inner
                .gc_watch
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert_with(Vec::new),
        );
        for (repo, d) in recorded {
            live.extend(self.repo(&repo).closure(&d).await?);
        }
        Ok(())
    }

    /// Record that `repo` linked manifest `d`, if a GC is running.
    pub(super) fn gc_saw_manifest(&self, repo: &RepoName, d: &Digest) {
        if let Some(v) = self
            .inner
            .gc_watch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            v.push((repo.clone(), d.clone()));
        }
    }
}

impl Store {
    /// Remove the content of `freed` (what a cache eviction unlinked) that
    /// no linked manifest references and no repository links any more. The
    /// caller holds the GC lock for writing (no manifest of this process
    /// is committed meanwhile); manifests committed on other replicas are
    /// fenced as against a GC sweep: deletes run in flagged batches, and a
    /// blob marked since the mark phase minus
    /// [`REF_WINDOW`](super::gc_fence::REF_WINDOW) is kept.
    pub(crate) async fn remove_unreferenced(&self, freed: HashSet<Digest>) -> Result<GcReport> {
        let mut report = GcReport::default();
        if freed.is_empty() {
            return Ok(report);
        }
        let mark_start = SystemTime::now();
        let marked = self.mark().await?;
        #[cfg(test)]
        self.test_pause(super::PausePoint::SweepStart).await;
        let linked: HashSet<&Digest> = marked.layer_links.iter().map(|(_, d, _)| d).collect();
        let mut candidates = Vec::new();
        for d in freed {
            if marked.live.contains(&d) || linked.contains(&d) {
                continue;
            }
            if let Some(m) = self.blobs().stat(&d).await? {
                candidates.push((d, m));
            }
        }
        report.blobs_total = candidates.len();
        let opts = GcOptions {
            dry_run: false,
            grace: Duration::ZERO,
            trigger: "eviction",
        };
        let window = super::gc_fence::REF_WINDOW;
        let mut sweep = Sweep {
            store: self,
            opts: &opts,
            now: SystemTime::now(),
            referenced_since: mark_start
                .checked_sub(window)
                .unwrap_or(SystemTime::UNIX_EPOCH),
            live: HashSet::new(),
            links: HashMap::new(),
            report,
        };
        let mut rest = &candidates[..];
        while !rest.is_empty() {
            let done = sweep.flagged_batch(rest).await?;
            rest = &rest[done..];
        }
        Ok(sweep.report)
    }
}

/// Blobs removed per hold of the GC lock.
pub const SWEEP_BATCH: usize = 64;

/// The sweep of one GC run.
struct Sweep<'a> {
    store: &'a Store,
    opts: &'a GcOptions,
    /// When the candidates were listed (for the grace period).
    now: SystemTime,
    /// A blob marked by a manifest `PUT` since then is kept (see
    /// [`super::gc_fence`]).
    referenced_since: SystemTime,
    live: HashSet<Digest>,
    links: HashMap<&'a Digest, Vec<&'a RepoName>>,
    report: GcReport,
}

impl Sweep<'_> {
    /// One batch over the first candidates (at most [`SWEEP_BATCH`], and
    /// only as many as [`gc_fence::BATCH_MAX`](super::gc_fence) allows);
    /// returns how many it went through (at least one).
    async fn batch(&mut self, candidates: &[(Digest, ObjectMeta)]) -> Result<usize> {
        let store = self.store;
        let _guard = match self.opts.dry_run {
            true => None,
            false => Some(store.gc_write().await),
        };
        store.fold_recorded(&mut self.live).await?;
        if self.opts.dry_run {
            for c in candidates.iter().take(SWEEP_BATCH) {
                self.visit(c, false).await?;
            }
            return Ok(candidates.len().min(SWEEP_BATCH));
        }
        self.flagged_batch(candidates).await
    }

    /// The deleting part of a batch, under a sweep flag (see
    /// [`super::gc_fence`]); the caller holds the GC lock for writing.
    async fn flagged_batch(&mut self, candidates: &[(Digest, ObjectMeta)]) -> Result<usize> {
        let store = self.store;
        let batch = store.start_batch().await?;
        let mut done = 0;
        let result = async {
            for c in candidates.iter().take(SWEEP_BATCH) {
                // Past its time, a batch deletes nothing more (a stalled
                // batch's first candidate is only skipped).
                if !batch.may_delete() && done > 0 {
                    break;
                }
                self.visit(c, batch.may_delete()).await?;
                done += 1;
            }
            Ok::<_, super::StoreError>(())
        }
        .await;
        store.end_batch(batch).await?;
        result.map(|()| done)
    }

    fn fresh(&self, t: SystemTime) -> bool {
        self.now
            .duration_since(t)
            .map(|age| age < self.opts.grace)
            .unwrap_or(true)
    }

    /// Collect candidate `d` unless it became live or young again, or a
    /// manifest `PUT` marked it; with `delete` false, only count it.
    async fn visit(&mut self, (d, m): &(Digest, ObjectMeta), delete: bool) -> Result<()> {
        let store = self.store;
        if self.live.contains(d) || store.referenced_since(d, self.referenced_since).await? {
            self.report.blobs_marked += 1;
            return Ok(());
        }
        if !self.opts.dry_run {
            // Re-pushed since the listing: young again.
            if store
                .blobs()
                .stat(d)
                .await?
                .is_some_and(|now| self.fresh(now.modified))
            {
                self.report.blobs_in_grace += 1;
                return Ok(());
            }
            #[cfg(test)]
            store.test_pause(super::PausePoint::SweepDelete).await;
            if !delete || !store.blobs().delete(d).await? {
                return Ok(());
            }
        }
        self.report.blobs_removed += 1;
        self.report.bytes_freed += m.size;
        self.report.removed.push(GcBlob {
            digest: d.to_string(),
            size: m.size,
        });
        for repo in self.links.get(d).into_iter().flatten() {
            if !self.opts.dry_run {
                store.objects().delete(&layout::layer_link(repo, d)).await?;
            }
            self.report.links_removed += 1;
        }
        Ok(())
    }
}

/// Manifests linked are recorded while this lives (one GC's run, also if
/// the GC fails or is dropped).
struct Watching<'a>(&'a Store);

impl<'a> Watching<'a> {
    fn start(store: &'a Store) -> Watching<'a> {
        *store
            .inner
            .gc_watch
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Vec::new());
        Watching(store)
    }
}

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        *self
            .0
            .inner
            .gc_watch
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::Bytes;

    const MT: &str = "application/vnd.oci.image.manifest.v1+json";

    pub async fn blob(s: &Store, repo: &RepoName, content: &[u8]) -> Digest {
        let d = Digest::sha256_of(content);
        s.blobs()
            .put_small(&d, Bytes::copy_from_slice(content))
            .await
            .unwrap();
        s.repo(repo).link_blob(&d).await.unwrap();
        d
    }

    /// An image manifest of config `cfg` and `layers`: its bytes, parsed.
    pub fn manifest(
        cfg: &Digest,
        layers: &[&Digest],
    ) -> (Digest, Bytes, crate::oci::manifest::Manifest) {
        let layers: Vec<_> = layers
            .iter()
            .map(|d| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d.to_string(), "size": 1}))
            .collect();
        let m = serde_json::json!({
            "schemaVersion": 2, "mediaType": MT,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg.to_string(), "size": 2},
            "layers": layers,
        });
        let bytes = Bytes::from(serde_json::to_vec(&m).unwrap());
        let parsed = crate::oci::manifest::Manifest::parse(&bytes, Some(MT)).unwrap();
        (Digest::sha256_of(&bytes), bytes, parsed)
    }

    pub async fn image(s: &Store, repo: &RepoName, layers: &[&Digest]) -> Digest {
        let cfg = blob(s, repo, b"{}").await;
        let (d, bytes, _) = manifest(&cfg, layers);
        s.repo(repo)
            .put_manifest(&d, MT, bytes, None, None)
            .await
            .unwrap();
        d
    }

    pub async fn present(s: &Store, d: &Digest) -> bool {
        s.blobs().size(d).await.unwrap().is_some()
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
        s.repo(&b).link_blob(&shared).await.unwrap();
        let m2 = image(&s, &b, &[&shared]).await;
        let u1 = s.usage("team").await.unwrap();
        assert_eq!(u1, s.namespace_usage("team").await.unwrap());
        // A dangling `_layers` link to content nothing references.
        let orphan = blob(&s, &b, &[3u8; 300]).await;
        assert_eq!(s.usage("team").await.unwrap(), u1 + 300);
        let opts = GcOptions {
            dry_run: false,
            grace: Duration::ZERO,
            trigger: "test",
        };
        let r = s.gc(&opts).await.unwrap();
        assert_eq!(r.blobs_removed, 1, "{r:?}");
        assert_eq!(r.links_removed, 1);
        assert_eq!(s.usage("team").await.unwrap(), u1);
        assert!(!present(&s, &orphan).await);
        s.repo(&a).delete_manifest(&m1).await.unwrap();
        let r = s.gc(&opts).await.unwrap();
        // m1's bytes and its own layer; `shared` and the config live on in b.
        assert_eq!(r.blobs_removed, 2, "{r:?}");
        assert!(!present(&s, &own).await && !present(&s, &m1).await);
        assert!(present(&s, &shared).await && present(&s, &m2).await);
        assert_eq!(
            s.usage("team").await.unwrap(),
            s.namespace_usage("team").await.unwrap()
        );
        // The grace period protects young unreferenced blobs.
        blob(&s, &a, &[4u8; 10]).await;
        let r = s
            .gc(&GcOptions {
                dry_run: false,
                grace: Duration::from_secs(3600),
                trigger: "test",
            })
            .await
            .unwrap();
        assert_eq!((r.blobs_removed, r.blobs_in_grace), (0, 1));
    }

    /// Put a manifest of `layers` into `repo` as the registry does (mark
    /// the blobs, check them, link); `Err` names a missing blob.
    async fn put_referencing(
        s: &Store,
        repo: &RepoName,
        layers: &[&Digest],
    ) -> Result<Digest, Digest> {
        let cfg = blob(s, repo, b"{}").await;
        let (d, bytes, parsed) = manifest(&cfg, layers);
        let commit = s.begin_manifest(&d, &parsed).await.unwrap();
        for l in parsed.stored_references() {
            if !s.repo(repo).has_blob(l).await.unwrap() {
                return Err(l.clone());
            }
        }
        commit.link(repo, bytes, None).await.unwrap();
        Ok(d)
    }

    fn no_grace() -> GcOptions {
        GcOptions {
            dry_run: false,
            grace: Duration::ZERO,
            trigger: "test",
        }
    }

    #[tokio::test]
    async fn a_sweep_keeps_what_a_put_on_another_replica_marked_after_the_mark_phase() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = super::super::test_replicas(dir.path());
        let r: RepoName = "team/app".parse().unwrap();
        let x = blob(&a, &r, b"old layer").await;
        // a's mark phase is over: x is garbage to it.
        let hold = a.pause_at(super::super::PausePoint::SweepStart);
        let gc = tokio::spawn({
            let a = a.clone();
            async move { a.gc(&no_grace()).await }
        });
        hold.reached.notified().await;
        let m = put_referencing(&b, &r, &[&x]).await.unwrap();
        hold.resume.notify_one();
        let report = gc.await.unwrap().unwrap();
        assert_eq!(report.blobs_removed, 0, "{report:?}");
        let closure = a.repo(&r).closure(&m).await.unwrap();
        for d in &closure {
            assert!(present(&a, d).await, "{d} of the new manifest was removed");
        }
        assert!(closure.contains(&x));
    }

    #[tokio::test]
    async fn a_put_that_meets_a_deleting_batch_waits_for_it_and_links_nothing() {
        use super::super::PausePoint;
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = super::super::test_replicas(dir.path());
        let r: RepoName = "team/app".parse().unwrap();
        let x = blob(&a, &r, b"old layer").await;
        // a's batch has flagged itself and checked x (no mark yet).
        let hold_a = a.pause_at(PausePoint::SweepDelete);
        let gc = tokio::spawn({
            let a = a.clone();
            async move { a.gc(&no_grace()).await }
        });
        hold_a.reached.notified().await;
        let hold_b = b.pause_at(PausePoint::SweepFlagSeen);
        let put = tokio::spawn({
            let (b, r, x) = (b.clone(), r.clone(), x.clone());
            async move { put_referencing(&b, &r, &[&x]).await }
        });
        hold_b.reached.notified().await;
        // Without waiting, b would find x and link a manifest a then breaks.
        assert!(present(&b, &x).await);
        hold_b.resume.notify_one();
        // b cannot finish while a's batch is open (a waits for resume).
        let mut put = put;
        let early = tokio::time::timeout(Duration::from_millis(300), &mut put).await;
        assert!(early.is_err(), "b went on while a's batch was deleting");
        hold_a.resume.notify_one();
        let report = gc.await.unwrap().unwrap();
        assert_eq!(report.blobs_removed, 1, "{report:?}");
        assert_eq!(put.await.unwrap(), Err(x), "b found the blob gone");
        assert!(b.repo(&r).manifest_digests().await.unwrap().is_empty());
    }
}
