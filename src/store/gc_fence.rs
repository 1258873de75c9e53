//! The fence between a GC sweep (or a cache eviction's deletes) on one
//! replica and manifest commits on the others (a store shared by replicas;
//! in one process the GC lock of [`super::gc`] does this, and nothing here
//! writes anything).
//!
//! Every manifest a repository links goes through [`Store::begin_manifest`]
//! and [`ManifestCommit::link`]: pushed ones (which check their blobs in
//! between) and those the pull-through cache stores (whose blobs arrive
//! later). "`PUT`" below is either.
//!
//! **The protocol.** A manifest `PUT` first writes a *reference mark*
//! (`gc/refs/<alg>/<hex>`, holding the time by its clock) for every blob it references and its own
//! bytes, then reads the *sweep flag* (`gc/sweep.json`); if a sweep batch
//! is deleting, it waits until that batch ends ([`FLAG_WAIT`] at most);
//! only then does it check that the blobs exist and link the manifest,
//! which it must do within [`REF_HOLD`] of writing the marks (else it fails
//! with [`StoreError::ReferencesExpired`], linking nothing). A sweep batch
//! writes the flag, then for each candidate reads its mark and keeps it
//! when the mark is younger than the GC's mark phase minus [`REF_WINDOW`]
//! (or `gc_grace`, when shorter); it deletes only within [`BATCH_MAX`] of
//! writing the flag, and removes the flag when the batch ends.
//!
//! **Why no referenced blob is lost.** Each side writes its own object and
//! then reads the other's, so (the store reading back every completed
//! write, as Garage's quorum reads do) at least one sees the other: the
//! sweep sees the mark and keeps the blob, or the `PUT` sees the flag and
//! checks the blobs after the batch, finding a deleted one missing
//! (`BLOB_UNKNOWN`, nothing linked). A mark older than the mark phase minus
//! `REF_WINDOW` belongs to a `PUT` that linked its manifest within
//! `REF_HOLD` (half of it) of writing it, so before the mark phase began:
//! the mark found the manifest. This holds while `gc_grace` is at least
//! `REF_WINDOW` (2 minutes; a shorter grace exposes pushes in flight
//! anyway), the clocks of replicas and storage nodes agree within
//! `REF_WINDOW - REF_HOLD` (1 minute), and no sweep stalls for longer than
//! `FLAG_WAIT - BATCH_MAX` (20 s) inside the delete call it started before
//! `BATCH_MAX`.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{layout, Result, Store, StoreError};
use crate::oci::manifest::Manifest;
use crate::oci::{Digest, RepoName, Tag};

/// A mark younger than a GC's mark phase minus this (or minus
/// `gc_grace`, when shorter) keeps its blob.
pub const REF_WINDOW: Duration = Duration::from_secs(120);

/// A `PUT` links its manifest within this long of writing its marks.
pub const REF_HOLD: Duration = Duration::from_secs(60);

/// A sweep batch deletes only within this long of writing its flag.
pub const BATCH_MAX: Duration = Duration::from_secs(10);

/// A `PUT` waits at most this long for one sweep batch (a flag left by a
/// sweep that died is ignored after it).
pub const FLAG_WAIT: Duration = Duration::from_secs(30);

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The sweep flag: which batch of which replica is deleting.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct SweepFlag {
    holder: String,
    token: String,
}

/// A manifest `PUT`'s marks on the blobs it references (see the module
/// docs); [`References::check`] before linking the manifest.
struct References {
    marked: Instant,
}

impl References {
    /// Fails when the marks are too old to protect the blobs any longer.
    fn check(&self) -> Result<()> {
        if self.marked.elapsed() > REF_HOLD {
            return Err(StoreError::ReferencesExpired(REF_HOLD));
        }
        Ok(())
    }
}

/// A sweep batch's flag (see the module docs).
pub(super) struct Batch {
    written: Instant,
}

impl Batch {
    /// Whether the batch may still delete.
    pub(super) fn may_delete(&self) -> bool {
        self.written.elapsed() < BATCH_MAX
    }
}

/// A manifest being committed: no sweep of this process runs until it is
/// linked or dropped, and on a shared store what it references is marked
/// (see the module docs).
pub struct ManifestCommit<'s> {
    store: &'s Store,
    digest: Digest,
    media_type: String,
    subject: Option<Digest>,
    refs: References,
    _gc: tokio::sync::RwLockReadGuard<'s, ()>,
}

impl ManifestCommit<'_> {
    /// Link the manifest into `repo` (its `bytes`, verified by the caller
    /// to have the digest given to [`Store::begin_manifest`]), under `tag`
    /// if any; fails with [`StoreError::ReferencesExpired`], linking
    /// nothing, when the marks are too old.
    pub async fn link(self, repo: &RepoName, bytes: Bytes, tag: Option<&Tag>) -> Result<()> {
        self.refs.check()?;
        self.store
            .repo(repo)
            .put_manifest(
                &self.digest,
                &self.media_type,
                bytes,
                tag,
                self.subject.as_ref(),
            )
            .await
    }
}

impl Store {
    /// Begin committing manifest `m` of digest `d`: hold off this process's
    /// sweeps, mark `d` and what `m` references, and wait out a sweep batch
    /// deleting now. Whatever must be present is checked after this, then
    /// [`ManifestCommit::link`].
    pub async fn begin_manifest(&self, d: &Digest, m: &Manifest) -> Result<ManifestCommit<'_>> {
        let gc = self.gc_read().await;
        let referenced: Vec<Digest> = std::iter::once(d)
            .chain(m.stored_references())
            .cloned()
            .collect();
        let refs = self.reference_blobs(&referenced).await?;
        Ok(ManifestCommit {
            store: self,
            digest: d.clone(),
            media_type: m.media_type.clone(),
            subject: m.subject.as_ref().map(|s| s.digest.clone()),
            refs,
            _gc: gc,
        })
    }

    /// Before a manifest `PUT` checks the blobs `digests` it references:
    /// mark them, and wait for a sweep batch deleting now to end.
    async fn reference_blobs(&self, digests: &[Digest]) -> Result<References> {
        let marked = Instant::now();
        if self.cluster().is_none() {
            return Ok(References { marked });
        }
        // The mark holds when it was written, by this replica's clock (a
        // storage timestamp may be truncated to the second).
        let now = unix_ms(SystemTime::now()).to_string();
        for chunk in digests.chunks(8) {
            let keys: Vec<String> = chunk.iter().map(layout::gc_ref_mark).collect();
            let puts = keys
                .iter()
                .map(|k| self.objects().put(k, Bytes::from(now.clone())));
            futures_util::future::try_join_all(puts).await?;
        }
        self.wait_for_batch().await?;
        Ok(References { marked })
    }

    /// Wait until the sweep batch flagged now (if any) has ended.
    async fn wait_for_batch(&self) -> Result<()> {
        let Some(first) = self.sweep_flag().await? else {
            return Ok(());
        };
        #[cfg(test)]
        self.test_pause(super::PausePoint::SweepFlagSeen).await;
        let since = Instant::now();
        let mut pause = Duration::from_millis(20);
        while since.elapsed() < FLAG_WAIT {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
            if self.sweep_flag().await?.as_ref() != Some(&first) {
                return Ok(());
            }
        }
        tracing::warn!(
            holder = first.holder,
            "ignoring a GC sweep flag older than 30 s (its replica died?)"
        );
        Ok(())
    }

    async fn sweep_flag(&self) -> Result<Option<SweepFlag>> {
        let Some(b) = self.objects().get(layout::GC_SWEEP_BATCH).await? else {
            return Ok(None);
        };
        // An unreadable flag is treated as a batch of its own.
        Ok(Some(serde_json::from_slice(&b).unwrap_or(SweepFlag {
            holder: String::new(),
            token: String::new(),
        })))
    }

    /// Start a sweep batch: flag it (on a shared store).
    pub(super) async fn start_batch(&self) -> Result<Batch> {
        let written = Instant::now();
        if let Some(c) = self.cluster() {
            let flag = SweepFlag {
                holder: c.replica.clone(),
                token: uuid::Uuid::new_v4().simple().to_string(),
            };
            let bytes = serde_json::to_vec(&flag).map_err(std::io::Error::other)?;
            self.objects()
                .put(layout::GC_SWEEP_BATCH, Bytes::from(bytes))
                .await?;
        }
        Ok(Batch { written })
    }

    /// End a sweep batch: remove its flag.
    pub(super) async fn end_batch(&self, _batch: Batch) -> Result<()> {
        if self.cluster().is_some() {
            self.objects().delete(layout::GC_SWEEP_BATCH).await?;
        }
        Ok(())
    }

    /// Whether a `PUT` marked blob `d` at or after `since`.
    pub(super) async fn referenced_since(&self, d: &Digest, since: SystemTime) -> Result<bool> {
        if self.cluster().is_none() {
            return Ok(false);
        }
        let Some(mark) = self.objects().get(&layout::gc_ref_mark(d)).await? else {
            return Ok(false);
        };
        // An unreadable mark keeps its blob.
        let written = std::str::from_utf8(&mark).ok().and_then(|t| t.parse().ok());
        Ok(written.is_none_or(|ms: u64| ms >= unix_ms(since)))
    }

    /// Remove the marks older than `before` (no `PUT` needs them).
    pub(super) async fn prune_ref_marks(&self, before: SystemTime) -> Result<usize> {
        if self.cluster().is_none() {
            return Ok(0);
        }
        let mut removed = 0;
        for alg in layout::ALGORITHMS {
            let dir = layout::gc_ref_marks_dir(alg);
            let mut after: Option<String> = None;
            loop {
                let names = self.objects().list(&dir, after.as_deref(), 1000).await?;
                let Some(last) = names.last().cloned() else {
                    break;
                };
                for d in names.iter().filter_map(|n| layout::listed_digest(alg, n)) {
                    let key = layout::gc_ref_mark(&d);
                    if self
                        .objects()
                        .stat(&key)
                        .await?
                        .is_some_and(|m| m.modified < before)
                        && self.objects().delete(&key).await?
                    {
                        removed += 1;
                    }
                }
                after = Some(last);
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_put_slower_than_the_hold_links_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _b) = super::super::test_replicas(dir.path());
        let refs = a.reference_blobs(&[]).await.unwrap();
        refs.check().unwrap();
        tokio::time::advance(REF_HOLD + Duration::from_secs(1)).await;
        assert!(matches!(
            refs.check(),
            Err(StoreError::ReferencesExpired(_))
        ));
    }

    #[tokio::test]
    async fn old_marks_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = super::super::test_replicas(dir.path());
        let d = Digest::sha256_of(b"x");
        let before = SystemTime::now() - Duration::from_secs(5);
        b.reference_blobs(std::slice::from_ref(&d)).await.unwrap();
        assert!(a.referenced_since(&d, before).await.unwrap());
        assert_eq!(a.prune_ref_marks(before).await.unwrap(), 0);
        let later = SystemTime::now() + Duration::from_secs(5);
        assert!(!a.referenced_since(&d, later).await.unwrap());
        assert_eq!(a.prune_ref_marks(later).await.unwrap(), 1);
        assert!(!a.referenced_since(&d, before).await.unwrap());
    }
}
