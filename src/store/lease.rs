//! Leases: "one replica at a time" for work that must happen once in a
//! cluster of wharf replicas sharing one bucket (a GC sweep, an eviction
//! run, the upstream fetch of one blob, delivering a notification
//! endpoint's queue).
//!
//! A lease is a small object (`leases/...`, keys from [`super::layout`])
//! naming its holder, a random token and an expiry. The holder renews it
//! (heartbeat) while it works and deletes it when done; a holder that
//! dies leaves a lease that expires, after which anyone may take it.
//!
//! **Taking a lease without conditional writes.** Garage ignores
//! `If-None-Match` (tests/garage_facts.rs), so a lease cannot be created
//! atomically. Instead a *claim* (Fischer's mutual exclusion, with the
//! store as the shared variable): read it; if it is free (absent or
//! expired), write ours, wait [`ClusterSettings::settle`], read it back,
//! and hold it only if it still carries our token.
//!
//! That is exclusive as long as every claim's read and write together take
//! less than the settle delay: if A and B both held, A's write landing
//! first, B's write must land after A's read-back (A saw its own token),
//! so at least a settle delay after A's write, while B's read, which found
//! the lease free, came before A's write. A claim therefore measures itself
//! (from sending the read to the write's answer) and, when it took the
//! settle delay or longer, does not hold: it *withdraws*, rewriting its
//! lease to expire one settle delay later, and reports the lease held. It
//! does not delete it: a slow write may have replaced the lease of a
//! replica that holds it rightly, and a delete would let the next claim in
//! at once. What is left: a slow claim that replaced a rightful holder's
//! lease lets the next claim in one settle delay later, so two replicas
//! hold it only if the rightful holder is still at work then *and* a claim
//! stalled (a runtime starved for longer than the settle delay). The store
//! must order writes to one key as they arrive (Garage orders them by its
//! nodes' clocks: keep those within the settle delay), and a holder renews
//! within the lease's TTL.
//!
//! What depends on a lease stays safe even if it were held twice: a double
//! upstream fetch is digest-verified like any other (never corrupt, only a
//! second GET), a GC sweep keeps its grace period and its fence
//! ([`super::gc_fence`]), and a shared document's change is written only
//! after checking that its lease is still its own ([`super::meta`]).
//!
//! On a store with one process (the filesystem backend holds its data
//! directory's lock) there is no cluster: every lease is granted at once
//! and nothing is written.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{layout, Doc, Result, Store};
use crate::oci::Digest;

/// How long a held lease lasts without renewal (renewed every third of
/// it): a replica that dies holding one blocks that work this long.
pub const LEASE_TTL: Duration = Duration::from_secs(30);

/// How replicas sharing a store coordinate (set for shared stores only).
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// This replica's name, written into the leases it holds.
    pub replica: String,
    /// How often state other replicas may change is read again.
    pub refresh: Duration,
    /// Delay between writing a lease and reading it back.
    pub settle: Duration,
}

/// What a lease is for.
#[derive(Debug, Clone, Copy)]
pub enum LeaseFor<'a> {
    /// A garbage collection (mark and sweep).
    Gc,
    /// An eviction run of the pull-through cache.
    Evict,
    /// A scheduled retention sweep.
    Retention,
    /// The upstream fetch of one blob.
    Fetch(&'a Digest),
    /// Delivering one notification endpoint's queue (a validated name).
    Notify(&'a str),
    /// A read-modify-write of one shared document (robots, projects).
    Meta(Doc),
}

/// The stored lease.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct LeaseDoc {
    holder: String,
    token: String,
    /// Unix milliseconds.
    expires: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The outcome of [`Store::take_lease`].
pub enum Taken {
    /// This replica holds the lease.
    Mine(Lease),
    /// Another replica does, until `until` unless it renews.
    Held { holder: String, until: SystemTime },
}

/// A lease this replica holds. Renew it with [`Lease::renew`] (or
/// [`Lease::keep_alive`]) before it expires; [`Lease::release`] when done.
pub struct Lease {
    store: Store,
    /// `None` without a cluster (nothing stored).
    key: Option<String>,
    token: String,
}

impl Store {
    /// The cluster settings, when replicas may share this store.
    pub fn cluster(&self) -> Option<&ClusterSettings> {
        self.inner.cluster.as_ref()
    }

    /// Try to take lease `what` for `ttl` (see the module docs).
    pub async fn take_lease(&self, what: LeaseFor<'_>, ttl: Duration) -> Result<Taken> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let Some(c) = self.cluster() else {
            return Ok(Taken::Mine(Lease {
                store: self.clone(),
                key: None,
                token,
            }));
        };
        let key = lease_key(what);
        let started = Instant::now();
        if let Some(held) = self.read_lease(&key).await? {
            if held.expires > now_ms() {
                return Ok(held_by(held));
            }
        }
        let mut mine = LeaseDoc {
            holder: c.replica.clone(),
            token: token.clone(),
            expires: now_ms().saturating_add(ttl.as_millis() as u64),
        };
        self.write_lease(&key, &mine).await?;
        if started.elapsed() >= c.settle {
            // Too slow to be sure nobody else claimed it meanwhile: withdraw
            // (a short expiry, not a delete, see the module docs).
            tracing::debug!(
                lease = key,
                "a lease claim was too slow to trust; withdrawn"
            );
            mine.expires = now_ms().saturating_add(c.settle.as_millis() as u64);
            self.write_lease(&key, &mine).await?;
            return Ok(held_by(mine));
        }
        tokio::time::sleep(c.settle).await;
        match self.read_lease(&key).await? {
            Some(d) if d.token == token => Ok(Taken::Mine(Lease {
                store: self.clone(),
                key: Some(key),
                token,
            })),
            Some(d) => Ok(held_by(d)),
            // Deleted meanwhile by a holder that finished: ours was
            // overwritten and released; let the caller look again.
            None => Ok(Taken::Held {
                holder: "another replica".into(),
                until: SystemTime::now(),
            }),
        }
    }

    /// Take lease `what` and keep it alive until the guard drops; when
    /// another replica holds it, [`StoreError::Busy`](super::StoreError)
    /// naming `label` and the holder.
    pub async fn hold_lease(&self, what: LeaseFor<'_>, label: &'static str) -> Result<LeaseGuard> {
        match self.take_lease(what, LEASE_TTL).await? {
            Taken::Mine(l) => Ok(l.keep_alive(LEASE_TTL)),
            Taken::Held { holder, .. } => Err(super::StoreError::Busy {
                what: label,
                holder,
            }),
        }
    }

    /// Who holds lease `what` now, if anyone (unexpired).
    pub async fn lease_holder(&self, what: LeaseFor<'_>) -> Result<Option<String>> {
        if self.cluster().is_none() {
            return Ok(None);
        }
        Ok(self
            .read_lease(&lease_key(what))
            .await?
            .filter(|d| d.expires > now_ms())
            .map(|d| d.holder))
    }

    async fn read_lease(&self, key: &str) -> Result<Option<LeaseDoc>> {
        let Some(b) = self.objects().get(key).await? else {
            return Ok(None);
        };
        // An unreadable lease is treated as expired (it is overwritten).
        Ok(Some(serde_json::from_slice(&b).unwrap_or(LeaseDoc {
            holder: String::new(),
            token: String::new(),
            expires: 0,
        })))
    }

    async fn write_lease(&self, key: &str, d: &LeaseDoc) -> Result<()> {
        let bytes = serde_json::to_vec(d).map_err(std::io::Error::other)?;
        Ok(self.objects().put(key, Bytes::from(bytes)).await?)
    }
}

/// Overwrite lease `what` as another replica's slow claim would (tests).
#[cfg(test)]
impl Store {
    pub(crate) async fn test_overwrite_lease(&self, what: LeaseFor<'_>) {
        let other = Bytes::from_static(b"{}");
        self.objects().put(&lease_key(what), other).await.unwrap();
    }
}

fn lease_key(what: LeaseFor<'_>) -> String {
    match what {
        LeaseFor::Gc => layout::lease("gc"),
        LeaseFor::Evict => layout::lease("evict"),
        LeaseFor::Retention => layout::lease("retention"),
        LeaseFor::Fetch(d) => layout::fetch_lease(d),
        LeaseFor::Notify(e) => layout::notify_lease(e),
        LeaseFor::Meta(d) => layout::doc_lease(d),
    }
}

fn held_by(d: LeaseDoc) -> Taken {
    Taken::Held {
        holder: d.holder,
        until: UNIX_EPOCH + Duration::from_millis(d.expires),
    }
}

impl Lease {
    /// Extend the lease to `ttl` from now; `false` when it was lost
    /// (another replica took it after it expired).
    pub async fn renew(&self, ttl: Duration) -> Result<bool> {
        let (Some(key), Some(c)) = (&self.key, self.store.cluster()) else {
            return Ok(true);
        };
        match self.store.read_lease(key).await? {
            Some(d) if d.token == self.token => {}
            _ => return Ok(false),
        }
        let d = LeaseDoc {
            holder: c.replica.clone(),
            token: self.token.clone(),
            expires: now_ms().saturating_add(ttl.as_millis() as u64),
        };
        self.store.write_lease(key, &d).await?;
        Ok(true)
    }

    /// Renew the lease every third of `ttl` in the background until the
    /// returned guard is dropped; then release it.
    pub fn keep_alive(self, ttl: Duration) -> LeaseGuard {
        let lease = std::sync::Arc::new(self);
        if lease.key.is_none() {
            return LeaseGuard {
                lease: None,
                task: None,
            };
        }
        let beat = lease.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(ttl / 3);
            tick.tick().await;
            loop {
                tick.tick().await;
                match beat.renew(ttl).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(lease = ?beat.key, "a lease was lost (it expired and another replica took it)");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(lease = ?beat.key, error = %e, "could not renew a lease")
                    }
                }
            }
        });
        LeaseGuard {
            lease: Some(lease),
            task: Some(task),
        }
    }

    /// Give the lease up (if it is still ours).
    pub async fn release(&self) {
        let Some(key) = &self.key else {
            return;
        };
        let ours = matches!(self.store.read_lease(key).await, Ok(Some(d)) if d.token == self.token);
        if ours {
            if let Err(e) = self.store.objects().delete(key).await {
                tracing::warn!(lease = key, error = %e, "could not release a lease (it expires)");
            }
        }
    }
}

/// A lease renewed in the background; released when dropped.
pub struct LeaseGuard {
    lease: Option<std::sync::Arc<Lease>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl LeaseGuard {
    /// A guard holding nothing (work done without a lease).
    pub fn none() -> LeaseGuard {
        LeaseGuard {
            lease: None,
            task: None,
        }
    }

    /// Whether the lease is still this replica's (always, for a guard
    /// holding nothing): read from the store.
    pub async fn confirm(&self) -> Result<bool> {
        let Some(Lease {
            key: Some(key),
            token,
            store,
        }) = self.lease.as_deref()
        else {
            return Ok(true);
        };
        Ok(matches!(store.read_lease(key).await?, Some(d) if &d.token == token))
    }

    /// Stop renewing and give the lease up now (rather than in the
    /// background, as dropping does).
    pub async fn release(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if let Some(l) = self.lease.take() {
            l.release().await;
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if let (Some(l), Ok(rt)) = (self.lease.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(async move { l.release().await });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::test_replicas as replicas;

    #[tokio::test]
    async fn one_holder_until_release_or_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = replicas(dir.path());
        let ttl = Duration::from_secs(30);
        let Taken::Mine(la) = a.take_lease(LeaseFor::Gc, ttl).await.unwrap() else {
            panic!("a free lease is taken")
        };
        match b.take_lease(LeaseFor::Gc, ttl).await.unwrap() {
            Taken::Held { holder, .. } => assert_eq!(holder, "a"),
            Taken::Mine(_) => panic!("two holders"),
        }
        assert_eq!(
            b.lease_holder(LeaseFor::Gc).await.unwrap().as_deref(),
            Some("a")
        );
        // Another lease is independent.
        let d = Digest::sha256_of(b"x");
        assert!(matches!(
            b.take_lease(LeaseFor::Fetch(&d), ttl).await.unwrap(),
            Taken::Mine(_)
        ));
        assert!(la.renew(ttl).await.unwrap());
        la.release().await;
        let Taken::Mine(lb) = b.take_lease(LeaseFor::Gc, Duration::ZERO).await.unwrap() else {
            panic!("a released lease is free")
        };
        // Expired at once: a takes it over, and b learns it lost it.
        assert!(matches!(
            a.take_lease(LeaseFor::Gc, ttl).await.unwrap(),
            Taken::Mine(_)
        ));
        assert!(!lb.renew(ttl).await.unwrap());
    }

    #[tokio::test]
    async fn racing_writers_agree_on_one_holder() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = replicas(dir.path());
        let ttl = Duration::from_secs(30);
        let (ra, rb) = tokio::join!(
            a.take_lease(LeaseFor::Evict, ttl),
            b.take_lease(LeaseFor::Evict, ttl)
        );
        let mine = [ra.unwrap(), rb.unwrap()]
            .iter()
            .filter(|t| matches!(t, Taken::Mine(_)))
            .count();
        assert_eq!(mine, 1);
    }

    #[tokio::test]
    async fn a_claim_slower_than_the_settle_delay_is_withdrawn_not_held() {
        let dir = tempfile::tempdir().unwrap();
        // Every claim takes longer than no settle delay at all.
        let (a, _) = super::super::test_replicas_settling(dir.path(), Duration::ZERO);
        let ttl = Duration::from_secs(30);
        match a.take_lease(LeaseFor::Gc, ttl).await.unwrap() {
            Taken::Held { holder, until } => {
                assert_eq!(holder, "a");
                assert!(until <= SystemTime::now(), "withdrawn: expires at once");
            }
            Taken::Mine(_) => panic!("a slow claim held the lease"),
        }
        // The withdrawn claim is left in place (a rightful holder's lease it
        // replaced is not freed early), expired by the next look.
        assert!(a
            .read_lease(&lease_key(LeaseFor::Gc))
            .await
            .unwrap()
            .is_some());
        assert_eq!(a.lease_holder(LeaseFor::Gc).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_replaced_lease_is_no_longer_confirmed() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = replicas(dir.path());
        let Taken::Mine(l) = a.take_lease(LeaseFor::Gc, LEASE_TTL).await.unwrap() else {
            panic!("a free lease is taken")
        };
        let guard = l.keep_alive(LEASE_TTL);
        assert!(guard.confirm().await.unwrap());
        let stray = LeaseDoc {
            holder: "b".into(),
            token: "stray".into(),
            expires: now_ms() + 1000,
        };
        b.write_lease(&lease_key(LeaseFor::Gc), &stray)
            .await
            .unwrap();
        assert!(!guard.confirm().await.unwrap());
        assert!(LeaseGuard::none().confirm().await.unwrap());
    }

    #[tokio::test]
    async fn without_a_cluster_every_lease_is_granted() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        for _ in 0..2 {
            assert!(matches!(
                s.take_lease(LeaseFor::Gc, Duration::from_secs(1))
                    .await
                    .unwrap(),
                Taken::Mine(_)
            ));
        }
        assert_eq!(s.lease_holder(LeaseFor::Gc).await.unwrap(), None);
    }
}
