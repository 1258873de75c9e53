//! [`Meta`]: documents that are not per repository — robots and projects
//! created at run time, the token signing key. The store keeps their bytes;
//! their owners (`auth`, `registry`) define their shape.
//!
//! **Changing a shared document.** Robots and projects are one document
//! each, changed by read-modify-write. [`Meta::update`] serializes those
//! writes: inside this process by a lock per document, across replicas
//! sharing the store by a lease per document ([`LeaseFor::Meta`]) held
//! only around the change; the document is read *after* the lease is
//! taken, so every change applies to the latest version. A change that
//! cannot take the lease within [`META_WAIT`] fails with
//! [`StoreError::Contended`] (never a silent loss). While changes queue
//! in this process, the lease passes from one to the next for at most
//! [`HANDOFF`] (then it is released, so other replicas get their turn):
//! 20 changes queued on one replica cost one lease, not 20.
//!
//! Before writing, a change reads the lease again and writes nothing if it
//! is no longer its own. The lease is exclusive unless claims stall (see
//! [`super::lease`] for the exact condition): two replicas can both change
//! a document only if one stalls for longer than `lease_settle` claiming
//! the lease and the other for about twice that between its check and its
//! write, or for longer than the lease's 30 s inside one change.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::layout::{self, Doc};
use super::lease::{LeaseFor, LeaseGuard, Taken, LEASE_TTL};
use super::{Result, Store, StoreError};

/// How long a change to a shared document waits for other changes (here
/// and on other replicas) before failing with [`StoreError::Contended`].
pub const META_WAIT: Duration = Duration::from_secs(20);

/// A document lease taken less than this long ago passes to the next
/// change queued in this process.
pub const HANDOFF: Duration = Duration::from_secs(2);

/// The document facet of a [`Store`].
pub struct Meta<'a> {
    store: &'a Store,
}

/// Per document: the local queue of changes and the lease they share.
#[derive(Default)]
pub(super) struct DocLocks(Mutex<HashMap<Doc, Arc<DocLock>>>);

#[derive(Default)]
struct DocLock {
    held: tokio::sync::Mutex<Option<Held>>,
    waiting: AtomicUsize,
}

struct Held {
    guard: LeaseGuard,
    since: Instant,
}

impl DocLocks {
    fn get(&self, doc: Doc) -> Arc<DocLock> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(doc).or_default().clone()
    }

    /// Drop `doc`'s entry when nothing uses it (one per pull token would
    /// otherwise pile up): no other reference, and no lease passed on.
    fn forget_idle(&self, doc: Doc, lock: Arc<DocLock>) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let idle =
            Arc::strong_count(&lock) == 2 && lock.held.try_lock().is_ok_and(|held| held.is_none());
        if idle {
            m.remove(&doc);
        }
    }
}

/// What a document is called in errors.
fn label(doc: Doc) -> &'static str {
    match doc {
        Doc::Robots => "robots",
        Doc::Projects => "projects",
        Doc::TokenKey => "the token key",
        Doc::RobotUse => "robot last-use times",
        Doc::LastGc => "the last GC record",
        Doc::LastEviction => "the last eviction record",
        Doc::PullTokens => "pull tokens",
        Doc::PullToken(_) | Doc::PullTokenWindow(_) => "a pull token",
    }
}

/// What a change does to its document.
#[derive(Debug)]
pub enum Change {
    /// Write these bytes.
    Put(Bytes),
    /// Remove the document.
    Delete,
    /// Leave it as it is.
    Keep,
}

impl From<Bytes> for Change {
    fn from(b: Bytes) -> Change {
        Change::Put(b)
    }
}

fn contended(doc: Doc, holder: String) -> StoreError {
    StoreError::Contended {
        what: label(doc),
        holder,
    }
}

impl<'a> Meta<'a> {
    pub(super) fn new(store: &'a Store) -> Meta<'a> {
        Meta { store }
    }

    pub async fn get(&self, doc: Doc) -> Result<Option<Bytes>> {
        Ok(self.store.objects().get(&layout::doc(doc)).await?)
    }

    /// Replace a document atomically.
    pub async fn put(&self, doc: Doc, bytes: Bytes) -> Result<()> {
        Ok(self.store.objects().put(&layout::doc(doc), bytes).await?)
    }

    /// Remove a document; whether it existed.
    pub async fn delete(&self, doc: Doc) -> Result<bool> {
        Ok(self.store.objects().delete(&layout::doc(doc)).await?)
    }

    /// Names directly under `dir` (a directory of documents, e.g.
    /// [`layout::PULL_TOKENS`]), all of them (the backend pages).
    pub async fn list(&self, dir: &str) -> Result<Vec<String>> {
        Ok(self.store.objects().list(dir, None, usize::MAX).await?)
    }

    /// Change a shared document: `f` gets its current bytes (read under
    /// the document's lock and lease, see the module docs) and returns the
    /// new bytes (or another [`Change`]), which are written, and a result.
    /// An error of `f` writes nothing. Waits at most `wait` (usually
    /// [`META_WAIT`]) for other changes.
    pub async fn update<C, T, E>(
        &self,
        doc: Doc,
        wait: Duration,
        f: impl FnOnce(Option<Bytes>) -> Result<(C, T), E>,
    ) -> Result<T, E>
    where
        C: Into<Change>,
        E: From<StoreError>,
    {
        let deadline = Instant::now() + wait;
        let lock = self.store.inner.doc_locks.get(doc);
        lock.waiting.fetch_add(1, Ordering::SeqCst);
        let slot = tokio::time::timeout_at(deadline, lock.held.lock()).await;
        lock.waiting.fetch_sub(1, Ordering::SeqCst);
        let mut slot = slot.map_err(|_| contended(doc, self.me()))?;
        let held = match slot.take() {
            Some(h) if h.since.elapsed() < HANDOFF => h,
            stale => {
                if let Some(h) = stale {
                    h.guard.release().await;
                }
                self.take_doc_lease(doc, deadline).await?
            }
        };
        let out = self.read_modify_write(doc, &held.guard, f).await;
        // A failed change may have lost the lease: the next one claims anew.
        let pass_on = out.is_ok() && lock.waiting.load(Ordering::SeqCst) > 0;
        if pass_on && held.since.elapsed() < HANDOFF {
            *slot = Some(held);
        } else {
            held.guard.release().await;
        }
        drop(slot);
        self.store.inner.doc_locks.forget_idle(doc, lock);
        out
    }

    /// The document, read in turn with the changes this process makes to
    /// it (none is half-way while it is read); `seq` runs in that turn
    /// (callers number what they read, to never install an older version
    /// over a newer one).
    pub async fn read_in_turn<S>(
        &self,
        doc: Doc,
        seq: impl FnOnce() -> S,
    ) -> Result<(S, Option<Bytes>)> {
        let lock = self.store.inner.doc_locks.get(doc);
        let _turn = lock.held.lock().await;
        let n = seq();
        Ok((n, self.get(doc).await?))
    }

    fn me(&self) -> String {
        self.store
            .cluster()
            .map_or_else(|| "this one".into(), |c| c.replica.clone())
    }

    /// Read `doc`, change it with `f` and write it, unless `lease` was
    /// lost meanwhile (another replica's claim replaced it): then nothing
    /// is written and the change fails as contended.
    async fn read_modify_write<C, T, E>(
        &self,
        doc: Doc,
        lease: &LeaseGuard,
        f: impl FnOnce(Option<Bytes>) -> Result<(C, T), E>,
    ) -> Result<T, E>
    where
        C: Into<Change>,
        E: From<StoreError>,
    {
        #[cfg(test)]
        self.store.test_pause(super::PausePoint::DocRead).await;
        let current = self.get(doc).await?;
        let (change, out) = f(current)?;
        let change = change.into();
        if matches!(change, Change::Keep) {
            return Ok(out);
        }
        if !lease.confirm().await? {
            return Err(contended(doc, "another replica".into()).into());
        }
        match change {
            Change::Put(bytes) => self.put(doc, bytes).await?,
            Change::Delete => {
                self.delete(doc).await?;
            }
            Change::Keep => {}
        }
        Ok(out)
    }

    /// Take `doc`'s lease, polling (20 ms doubling to 200 ms) until
    /// `deadline`.
    async fn take_doc_lease(&self, doc: Doc, deadline: Instant) -> Result<Held> {
        let mut pause = Duration::from_millis(20);
        loop {
            match self
                .store
                .take_lease(LeaseFor::Meta(doc), LEASE_TTL)
                .await?
            {
                Taken::Mine(l) => {
                    return Ok(Held {
                        guard: l.keep_alive(LEASE_TTL),
                        since: Instant::now(),
                    })
                }
                Taken::Held { holder, .. } => {
                    let jitter = Duration::from_millis(rand::random::<u64>() % 20);
                    if Instant::now() + pause + jitter > deadline {
                        return Err(contended(doc, holder));
                    }
                    tokio::time::sleep(pause + jitter).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
            }
        }
    }

    /// The document, created from `init` (kept private) if it does not exist
    /// yet. When two writers race, both end up with the one that was stored.
    pub async fn get_or_create(&self, doc: Doc, init: Bytes) -> Result<Bytes> {
        if let Some(b) = self.get(doc).await? {
            return Ok(b);
        }
        self.store
            .objects()
            .create(&layout::doc(doc), init.clone())
            .await?;
        // A shared store may ignore create-only writes: let a racing
        // replica's write land, then everyone reads the one that stayed.
        if let Some(c) = self.store.cluster() {
            tokio::time::sleep(c.settle).await;
        }
        Ok(self.get(doc).await?.unwrap_or(init))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{test_replicas, PausePoint};

    /// Append `who` to a comma-separated document.
    fn append(who: &'static str) -> impl FnOnce(Option<Bytes>) -> Result<(Bytes, ()), StoreError> {
        move |doc| {
            let mut s = doc
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            if !s.is_empty() {
                s.push(',');
            }
            s.push_str(who);
            Ok((Bytes::from(s), ()))
        }
    }

    async fn text(s: &Store) -> String {
        let b = s
            .meta()
            .get(Doc::Projects)
            .await
            .unwrap()
            .unwrap_or_default();
        String::from_utf8_lossy(&b).into_owned()
    }

    type Change = tokio::task::JoinHandle<Result<(), StoreError>>;

    /// A change through `s` (appending "a"), held where it holds the lease
    /// and is about to read the document.
    async fn held_change(s: &Store) -> (Arc<crate::store::Pause>, Change) {
        let hold = s.pause_at(PausePoint::DocRead);
        let t = tokio::spawn({
            let s = s.clone();
            async move { s.meta().update(Doc::Projects, META_WAIT, append("a")).await }
        });
        hold.reached.notified().await;
        (hold, t)
    }

    #[tokio::test]
    async fn a_change_on_another_replica_waits_and_applies_to_the_latest_version() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = test_replicas(dir.path());
        let (hold, ta) = held_change(&a).await;
        // b reads the document only once it holds the lease, after a's write.
        let tb = tokio::spawn({
            let b = b.clone();
            async move { b.meta().update(Doc::Projects, META_WAIT, append("b")).await }
        });
        hold.resume.notify_one();
        ta.await.unwrap().unwrap();
        tb.await.unwrap().unwrap();
        assert_eq!(text(&a).await, "a,b", "no change lost, b's applied to a's");
    }

    #[tokio::test]
    async fn a_change_that_cannot_take_the_lease_in_time_fails_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = test_replicas(dir.path());
        let (hold, ta) = held_change(&a).await;
        let e = b
            .meta()
            .update(Doc::Projects, Duration::from_millis(100), append("b"))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, StoreError::Contended { what: "projects", holder } if holder == "a"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "replica a is changing projects; retry in a moment"
        );
        hold.resume.notify_one();
        ta.await.unwrap().unwrap();
        assert_eq!(text(&b).await, "a");
    }

    #[tokio::test]
    async fn a_change_whose_lease_was_replaced_meanwhile_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = test_replicas(dir.path());
        let (hold, ta) = held_change(&a).await;
        // Another replica's (slow) claim lands over a's lease.
        b.objects()
            .put(&layout::doc_lease(Doc::Projects), Bytes::from_static(b"{}"))
            .await
            .unwrap();
        hold.resume.notify_one();
        let e = ta.await.unwrap().unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::Contended {
                    what: "projects",
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(text(&b).await, "", "nothing written");
    }

    #[tokio::test]
    async fn concurrent_changes_on_two_replicas_all_apply() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = test_replicas(dir.path());
        const NAMES: [&str; 8] = ["0", "1", "2", "3", "4", "5", "6", "7"];
        let tasks: Vec<_> = NAMES
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let s = if i % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(
                    async move { s.meta().update(Doc::Projects, META_WAIT, append(n)).await },
                )
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let mut got: Vec<String> = text(&a).await.split(',').map(String::from).collect();
        got.sort();
        assert_eq!(got, NAMES);
    }
}
