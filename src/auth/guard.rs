//! Defences of the password check: argon2 costs ~19 MiB and tens of
//! milliseconds per verification, so an unauthenticated flood of wrong
//! logins must not turn into unbounded memory or CPU.
//!
//! - At most `limits.login_concurrency` verifications run at once; others
//!   queue for at most `limits.login_queue_timeout`, then get "busy".
//! - Credentials that just failed are remembered (for the failure window)
//!   and refused again without hashing.
//! - More than `limits.max_failed_logins` failures for one account or from
//!   one address within `limits.failed_login_window` throttle that account
//!   or address (`429` with `Retry-After`) until the window passes.
//! - Credentials that verified are remembered for a minute, so valid
//!   clients keep being served without queueing.
//!
//! Credentials are remembered under a keyed hash (a random per-process key):
//! the caches never hold a secret, and a cache key says nothing about one.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sha2::Digest as _;
use tokio::sync::Semaphore;

use crate::config::Limits;

/// Why a login was not even checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many failures for this account or address: retry after.
    Throttled(Duration),
    /// Every verification slot is taken and the wait timed out.
    Busy,
    /// These exact credentials failed moments ago.
    KnownBad,
}

/// The state of the defences.
pub struct Guard {
    key: [u8; 32],
    slots: Arc<Semaphore>,
    /// One argon2 buffer per slot, reused (see `password::Blocks`).
    buffers: std::sync::Mutex<Vec<super::password::Blocks>>,
    queue_timeout: Duration,
    /// One verification per credential at a time (see [`Guard::turn`]).
    verifying: moka::sync::Cache<[u8; 32], Arc<tokio::sync::Mutex<()>>>,
    failed: moka::sync::Cache<[u8; 32], ()>,
    failures: moka::sync::Cache<String, Arc<AtomicU32>>,
    max_failures: u32,
    window: Duration,
}

impl Guard {
    pub fn new(limits: &Limits) -> Guard {
        use rand::RngCore;
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        let window = limits.failed_login_window;
        Guard {
            key,
            slots: Arc::new(Semaphore::new(limits.login_concurrency.max(1))),
            buffers: std::sync::Mutex::new(Vec::new()),
            queue_timeout: limits.login_queue_timeout,
            verifying: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(60))
                .build(),
            failed: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(window)
                .build(),
            failures: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(window)
                .build(),
            max_failures: limits.max_failed_logins,
            window: limits.failed_login_window,
        }
    }

    /// The keyed hash under which credentials are remembered.
    pub fn credential_key(&self, user: &str, pass: &str) -> [u8; 32] {
        let mut h = sha2::Sha256::new();
        h.update(self.key);
        h.update((user.len() as u64).to_be_bytes());
        h.update(user.as_bytes());
        h.update(pass.as_bytes());
        h.finalize().into()
    }

    fn counters(user: &str, addr: Option<IpAddr>) -> impl Iterator<Item = String> {
        [
            Some(format!("user {user}")),
            addr.map(|a| format!("address {a}")),
        ]
        .into_iter()
        .flatten()
    }

    /// Refuse before hashing when the account or address is throttled, or
    /// these credentials just failed.
    pub fn precheck(
        &self,
        key: &[u8; 32],
        user: &str,
        addr: Option<IpAddr>,
    ) -> Result<(), Refusal> {
        for c in Self::counters(user, addr) {
            if self
                .failures
                .get(&c)
                .is_some_and(|n| n.load(Ordering::Relaxed) >= self.max_failures)
            {
                return Err(Refusal::Throttled(self.window));
            }
        }
        if self.failed.contains_key(key) {
            self.record_failure(key, user, addr);
            return Err(Refusal::KnownBad);
        }
        Ok(())
    }

    /// The turn of credentials `key` (from [`Guard::credential_key`]),
    /// waited for at most the queue timeout: requests with the same
    /// credentials verify one at a time, so a burst of them costs one
    /// argon2 run (the others find its outcome cached) instead of one
    /// run, and one 19 MiB buffer, per slot.
    pub async fn turn(&self, key: &[u8; 32]) -> Result<tokio::sync::OwnedMutexGuard<()>, Refusal> {
        let lock = self.verifying.get_with(*key, Default::default);
        tokio::time::timeout(self.queue_timeout, lock.lock_owned())
            .await
            .map_err(|_| Refusal::Busy)
    }

    /// A verification slot, waited for at most the queue timeout.
    pub async fn slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Refusal> {
        match tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned()).await {
            Ok(Ok(p)) => Ok(p),
            _ => Err(Refusal::Busy),
        }
    }

    /// Verify `secret` against `phc` on the blocking pool, in a reused
    /// buffer. The caller holds a [`slot`](Self::slot), so at most that many
    /// buffers exist.
    pub async fn verify(&self, secret: String, phc: String) -> bool {
        let mut blocks = self
            .buffers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default();
        let res = tokio::task::spawn_blocking(move || {
            let ok = super::password::verify_in(&secret, &phc, &mut blocks);
            (ok, blocks)
        })
        .await;
        match res {
            Ok((ok, blocks)) => {
                self.buffers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(blocks);
                ok
            }
            Err(_) => false,
        }
    }

    /// Forget which credentials failed (the accounts changed: a robot
    /// made through another replica must not stay refused as known bad).
    /// The failure counters stay.
    pub fn forget_known_bad(&self) {
        self.failed.invalidate_all();
    }

    /// Remember a failed verification.
    pub fn record_failure(&self, key: &[u8; 32], user: &str, addr: Option<IpAddr>) {
        self.failed.insert(*key, ());
        for c in Self::counters(user, addr) {
            let n = self.failures.get_with(c, || Arc::new(AtomicU32::new(0)));
            n.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            login_concurrency: 1,
            login_queue_timeout: Duration::from_millis(50),
            max_failed_logins: 3,
            failed_login_window: Duration::from_secs(60),
            ..Limits::default()
        }
    }

    #[test]
    fn failures_throttle_the_account_and_the_address() {
        let g = Guard::new(&limits());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for i in 0..3 {
            let k = g.credential_key("bob", &format!("guess{i}"));
            assert!(g.precheck(&k, "bob", Some(ip)).is_ok());
            g.record_failure(&k, "bob", Some(ip));
        }
        let k = g.credential_key("bob", "right");
        assert_eq!(
            g.precheck(&k, "bob", None),
            Err(Refusal::Throttled(Duration::from_secs(60)))
        );
        // The address is throttled for every account.
        let k = g.credential_key("alice", "x");
        assert!(matches!(
            g.precheck(&k, "alice", Some(ip)),
            Err(Refusal::Throttled(_))
        ));
        assert!(g
            .precheck(&k, "alice", Some("192.0.2.2".parse().unwrap()))
            .is_ok());
    }

    #[test]
    fn keys_are_keyed_and_known_bad_credentials_are_refused_without_hashing() {
        let g = Guard::new(&limits());
        let k = g.credential_key("u", "p");
        assert_ne!(
            k,
            Guard::new(&limits()).credential_key("u", "p"),
            "the key must be per process"
        );
        assert_ne!(g.credential_key("u:", "p"), g.credential_key("u", ":p"));
        g.record_failure(&k, "u", None);
        assert_eq!(g.precheck(&k, "u", None), Err(Refusal::KnownBad));
    }

    #[tokio::test]
    async fn the_same_credentials_verify_one_at_a_time() {
        let g = Guard::new(&limits());
        let k = g.credential_key("u", "p");
        let first = g.turn(&k).await.unwrap();
        let other = g.credential_key("u", "q");
        assert!(g.turn(&other).await.is_ok(), "other credentials go on");
        assert_eq!(g.turn(&k).await.unwrap_err(), Refusal::Busy, "bounded wait");
        drop(first);
        assert!(g.turn(&k).await.is_ok());
    }

    #[tokio::test]
    async fn slots_are_bounded() {
        let g = Guard::new(&limits());
        let held = g.slot().await.unwrap();
        assert_eq!(g.slot().await.unwrap_err(), Refusal::Busy);
        drop(held);
        assert!(g.slot().await.is_ok());
    }
}
