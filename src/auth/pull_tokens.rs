//! One-time pull tokens: credentials (`pull$<id>` + a random secret) that
//! pull one image a bounded number of times before a deadline.
//!
//! This module owns the records and their use accounting; which requests
//! belong to the image is the registry's call (`registry::pull_tokens`).
//!
//! **Storage, shared by replicas.** Each token is its own document
//! ([`Doc::PullToken`], `auth/pull-tokens/<id>.json`): issuing one writes a
//! new object and touches no other token. Starting a use is a change of
//! that document through [`Meta::update`](crate::store::Meta::update),
//! under the token's own lease, so replicas sharing a store never spend
//! one use twice nor let more than `uses` uses start; revoking deletes it
//! under the same lease. The extensions of a pull window by blob requests
//! are a second document ([`Doc::PullTokenWindow`]) written without a
//! lease, so the many requests of a pull never wait for one: two replicas
//! extending at once may leave the earlier of their two ends (seconds
//! apart), never a shorter window than the last save before them. Every
//! use reads both documents again, so a revoked or spent token is refused
//! at once on every replica. Versions before this layout kept every token
//! in one document (`auth/pull-tokens.json`); opening the store splits it
//! once.
//!
//! **What is cached.** A token's id, secret hash, image and expiry never
//! change, so each replica keeps the ones it has seen, to check Basic
//! logins and the scopes of `/token` requests without a store read each
//! time (a Bearer token naming a pull token needs no cache entry: its
//! requests are admitted by reading the record). [`PullTokens::reload`]
//! (every `storage.s3.refresh_interval` on a shared store) adds tokens
//! issued elsewhere and drops revoked ones; an entry put in by this
//! process after a reload began listing is not dropped by it.
//!
//! **One use.** A use starts with a request for the image's manifest by
//! its tag (any such request starts a new use), or by its digest when no
//! pull window is open. It opens a *pull window* (`auth.pull_token_window`,
//! 10 minutes by default). The child manifests and blobs of the image are
//! served only while a window is open, each such request extending it to
//! that long after itself (saved in steps of a tenth of the window, at most
//! a minute, so the end may lag that much); the root manifest by digest inside a window is
//! part of the same use. Once `uses` uses have started, the next start is
//! refused; nothing is served after `expires_at`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::robots::unix_now;
use crate::store::{layout, Change, Doc, RecordId, Store, StoreError, META_WAIT};

/// Pull-token usernames are `pull$<id>`.
pub const PULL_PREFIX: &str = "pull$";

/// Records expired longer ago than this are dropped when a token is made
/// (at most every [`SWEEP_EVERY`] seconds: a sweep reads every record).
const KEEP_EXPIRED: u64 = 24 * 3600;

/// Seconds between two sweeps of expired records by one process.
const SWEEP_EVERY: u64 = 3600;

/// How many times a use start is tried when its change was contended.
const START_TRIES: usize = 3;

/// A window extension is saved only when it moves the end by a tenth of
/// the window, at most this much (seconds).
const SAVE_EXTENSION: u64 = 60;

/// One token. The secret itself is never stored: only its SHA-256 (it is
/// 32 random bytes, so a fast hash is enough).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PullToken {
    pub id: String,
    pub secret_sha256: String,
    pub repository: String,
    /// The image's manifest (an index or an image manifest).
    pub digest: String,
    /// The tag it was issued by, if any (then pulls by that tag work while
    /// it still points at `digest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    pub uses: u32,
    pub used: u32,
    /// Unix seconds.
    pub created_at: u64,
    pub expires_at: u64,
    /// End of the pull window the last use start opened (unix seconds; 0:
    /// none yet). Blob requests extend it in [`Doc::PullTokenWindow`].
    #[serde(default)]
    pub window_until: u64,
    pub created_by: String,
}

impl PullToken {
    pub fn username(&self) -> String {
        format!("{PULL_PREFIX}{}", self.id)
    }

    /// Whether `secret` is this token's (compared in constant time).
    pub fn secret_matches(&self, secret: &str) -> bool {
        hmac_eq(&self.secret_sha256, &sha256_hex(secret))
    }

    fn encode(&self) -> Result<Bytes, StoreError> {
        serde_json::to_vec_pretty(self)
            .map(Bytes::from)
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    fn decode(b: &[u8]) -> Result<PullToken, StoreError> {
        serde_json::from_slice(b)
            .map_err(|e| StoreError::Corrupt(format!("pull token record: {e}")))
    }
}

/// How a request wants to use a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// The manifest by tag: always a new use.
    Start,
    /// The root manifest by digest: a new use unless a window is open.
    StartOrJoin,
    /// A child manifest or a blob: only inside an open window.
    Join,
}

/// Why a token does not cover a request (the registry words it).
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("pull token {0} is not known (revoked, or expired long ago)")]
    Unknown(String),
    #[error("pull token {0} expired at {1}; ask for a new one")]
    Expired(String, String),
    #[error("pull token {0} is used up: all {1} of its pulls were spent; ask for a new one")]
    UsedUp(String, u32),
    #[error("pull token {0} has no pull in progress: a pull starts with the image's manifest, by tag or digest, and its blobs follow within {1} s")]
    NoWindow(String, u64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A started use: which one of how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    pub number: u32,
    pub of: u32,
}

/// A cached token and the reload sequence number it was put in at.
struct Cached {
    token: PullToken,
    seq: u64,
}

/// Every pull token: records in the store, the ones seen cached.
pub struct PullTokens {
    store: Store,
    window: Duration,
    cache: RwLock<HashMap<String, Cached>>,
    /// Numbers cache insertions, so a reload drops only entries older
    /// than its listing.
    seq: AtomicU64,
    /// When this process last swept expired records (unix seconds).
    swept: AtomicU64,
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

fn name_of(id: RecordId) -> String {
    format!("{PULL_PREFIX}{id}")
}

/// Refuse a request at `now` if `t` has expired.
fn live(t: &PullToken, now: u64) -> Result<(), Refusal> {
    if now >= t.expires_at {
        return Err(Refusal::Expired(t.username(), rfc3339(t.expires_at)));
    }
    Ok(())
}

impl PullTokens {
    /// The tokens saved in `store`; pull windows last `window`.
    pub async fn open(store: Store, window: Duration) -> Result<PullTokens, StoreError> {
        let p = PullTokens {
            store,
            window,
            cache: RwLock::new(HashMap::new()),
            seq: AtomicU64::new(0),
            swept: AtomicU64::new(0),
        };
        p.split_old_document().await?;
        p.reload().await?;
        Ok(p)
    }

    /// Move the tokens of the one-document layout into their own records
    /// (a record that exists already is newer and stays), then delete the
    /// old document. Several replicas doing it at once write the same.
    async fn split_old_document(&self) -> Result<(), StoreError> {
        let meta = self.store.meta();
        let Some(b) = meta.get(Doc::PullTokens).await? else {
            return Ok(());
        };
        let all: Vec<PullToken> = serde_json::from_slice(&b)
            .map_err(|e| StoreError::Corrupt(format!("pull tokens document: {e}")))?;
        for t in &all {
            let Some(id) = RecordId::parse(&t.id) else {
                tracing::warn!(id = t.id, "a pull token with a malformed id was dropped");
                continue;
            };
            if meta.get(Doc::PullToken(id)).await?.is_none() {
                meta.put(Doc::PullToken(id), t.encode()?).await?;
            }
        }
        meta.delete(Doc::PullTokens).await?;
        tracing::info!(tokens = all.len(), "pull tokens moved to one record each");
        Ok(())
    }

    fn remember(&self, t: &PullToken) {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let mut c = self.cache.write().unwrap_or_else(|e| e.into_inner());
        c.insert(
            t.id.clone(),
            Cached {
                token: t.clone(),
                seq,
            },
        );
    }

    fn forget(&self, id: &str) {
        let mut c = self.cache.write().unwrap_or_else(|e| e.into_inner());
        c.remove(id);
    }

    fn cached(&self, id: &str) -> Option<PullToken> {
        let c = self.cache.read().unwrap_or_else(|e| e.into_inner());
        c.get(id).map(|e| e.token.clone())
    }

    /// Token `id`'s record as stored now.
    async fn read(&self, id: RecordId) -> Result<Option<PullToken>, StoreError> {
        match self.store.meta().get(Doc::PullToken(id)).await? {
            Some(b) => PullToken::decode(&b).map(Some),
            None => Ok(None),
        }
    }

    /// The ids of every stored token, and of every window document.
    async fn listed(&self) -> Result<(Vec<RecordId>, Vec<RecordId>), StoreError> {
        let names = self.store.meta().list(layout::PULL_TOKENS).await?;
        let (mut records, mut windows) = (Vec::new(), Vec::new());
        for (id, window) in names.iter().filter_map(|n| layout::pull_token_listed(n)) {
            match window {
                true => windows.push(id),
                false => records.push(id),
            }
        }
        Ok((records, windows))
    }

    /// Read the store's list of tokens again: cache the ones issued
    /// elsewhere, drop the ones revoked (see the module docs).
    pub async fn reload(&self) -> Result<(), StoreError> {
        let start = self.seq.load(Ordering::SeqCst);
        let (ids, _) = self.listed().await?;
        for id in &ids {
            if self.cached(id.as_str()).is_none() {
                if let Some(t) = self.read(*id).await? {
                    self.remember(&t);
                }
            }
        }
        let listed: std::collections::HashSet<&str> = ids.iter().map(RecordId::as_str).collect();
        let mut c = self.cache.write().unwrap_or_else(|e| e.into_inner());
        c.retain(|id, e| e.seq > start || listed.contains(id.as_str()));
        Ok(())
    }

    /// Token `id` (from the cache, else the store: another replica may
    /// have issued it). A cached copy's spent uses and window may be old:
    /// only what never changes is for use.
    pub async fn get(&self, id: &str) -> Result<Option<PullToken>, StoreError> {
        if let Some(t) = self.cached(id) {
            return Ok(Some(t));
        }
        let Some(rid) = RecordId::parse(id) else {
            return Ok(None);
        };
        let found = self.read(rid).await?;
        if let Some(t) = &found {
            self.remember(t);
        }
        Ok(found)
    }

    /// Whether `id` exists in this process's cache (no I/O).
    pub fn known(&self, id: &str) -> bool {
        self.cached(id).is_some()
    }

    /// Every token as stored now, by id.
    pub async fn all(&self) -> Result<Vec<PullToken>, StoreError> {
        let (ids, _) = self.listed().await?;
        let mut all = Vec::with_capacity(ids.len());
        for id in ids {
            // Revoked between the listing and the read: gone.
            if let Some(t) = self.read(id).await? {
                all.push(t);
            }
        }
        Ok(all)
    }

    /// Remove token `id`: it stops working at once. Whether it existed.
    pub async fn remove(&self, id: &str) -> Result<bool, StoreError> {
        let Some(rid) = RecordId::parse(id) else {
            return Ok(false);
        };
        let existed = self
            .store
            .meta()
            .update(Doc::PullToken(rid), META_WAIT, |cur| {
                Ok::<_, StoreError>(match cur {
                    Some(_) => (Change::Delete, true),
                    None => (Change::Keep, false),
                })
            })
            .await?;
        self.store.meta().delete(Doc::PullTokenWindow(rid)).await?;
        self.forget(id);
        Ok(existed)
    }

    /// Whether token `id` (in this process's cache) is for `repository`.
    pub fn covers(&self, id: &str, repository: &str) -> bool {
        self.cached(id).is_some_and(|t| t.repository == repository)
    }

    /// Make a token for `repository@digest`; returns it and its secret.
    pub async fn create(
        &self,
        mut t: PullToken,
        ttl: Duration,
    ) -> Result<(PullToken, String), StoreError> {
        let secret = super::password::new_token();
        let now = unix_now();
        t.id = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
        t.secret_sha256 = sha256_hex(&secret);
        t.created_at = now;
        t.expires_at = now.saturating_add(ttl.as_secs());
        t.used = 0;
        t.window_until = 0;
        let id = RecordId::parse(&t.id).ok_or_else(|| {
            StoreError::Corrupt(format!("made a malformed pull token id {}", t.id))
        })?;
        // A fresh random id: no other writer, no lease needed.
        self.store
            .meta()
            .put(Doc::PullToken(id), t.encode()?)
            .await?;
        self.remember(&t);
        let last = self.swept.load(Ordering::SeqCst);
        let due = now >= last.saturating_add(SWEEP_EVERY)
            && self
                .swept
                .compare_exchange(last, now, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok();
        if due {
            if let Err(e) = self.drop_expired(now).await {
                tracing::warn!(error = %e, "could not drop long-expired pull tokens");
            }
        }
        Ok((t, secret))
    }

    /// Delete records expired longer than [`KEEP_EXPIRED`] ago, and window
    /// documents whose record is gone (a blob request's extension racing a
    /// revocation can leave one).
    async fn drop_expired(&self, now: u64) -> Result<(), StoreError> {
        let meta = self.store.meta();
        let (records, windows) = self.listed().await?;
        for id in &records {
            let old = self
                .read(*id)
                .await?
                .is_some_and(|t| t.expires_at.saturating_add(KEEP_EXPIRED) <= now);
            if old {
                meta.delete(Doc::PullToken(*id)).await?;
                meta.delete(Doc::PullTokenWindow(*id)).await?;
                self.forget(id.as_str());
            }
        }
        for id in windows.iter().filter(|w| !records.contains(w)) {
            meta.delete(Doc::PullTokenWindow(*id)).await?;
        }
        Ok(())
    }

    /// The saved end of `id`'s window extensions (0: none).
    async fn extended_until(&self, id: RecordId) -> Result<u64, StoreError> {
        let b = self.store.meta().get(Doc::PullTokenWindow(id)).await?;
        Ok(
            b.and_then(|b| std::str::from_utf8(&b).ok()?.trim().parse().ok())
                .unwrap_or(0),
        )
    }

    /// Account for one request of kind `how` with token `id` at `now`
    /// (unix seconds). `Some` when it started a new use.
    pub async fn use_at(&self, id: &str, how: Use, now: u64) -> Result<Option<Started>, Refusal> {
        let rid =
            RecordId::parse(id).ok_or_else(|| Refusal::Unknown(format!("{PULL_PREFIX}{id}")))?;
        // Read every time (small objects): another replica may have spent
        // a use, opened the window this request belongs to, or revoked it.
        let (record, extended) = tokio::join!(self.read(rid), self.extended_until(rid));
        let t = record?.ok_or_else(|| Refusal::Unknown(name_of(rid)))?;
        live(&t, now)?;
        let end = t.window_until.max(extended?);
        if how != Use::Start && end > now {
            self.extend(rid, end, now).await?;
            return Ok(None);
        }
        if how == Use::Join {
            return Err(Refusal::NoWindow(name_of(rid), self.window_secs()));
        }
        self.start(rid, how, end, now).await
    }

    fn window_secs(&self) -> u64 {
        self.window.as_secs().max(1)
    }

    /// Move the end of `id`'s open window (now `end`) to a window after
    /// `now`, saved in steps, not on every blob request.
    async fn extend(&self, id: RecordId, end: u64, now: u64) -> Result<(), StoreError> {
        let window = self.window_secs();
        let next = now + window;
        if next < end + (window / 10).clamp(1, SAVE_EXTENSION) {
            return Ok(());
        }
        let b = Bytes::from(next.to_string());
        self.store.meta().put(Doc::PullTokenWindow(id), b).await
    }

    /// Start a use of `id` under its lease (re-checked there: a replica
    /// may have started one since `end`, the window end read before, was
    /// read; a root manifest by digest then joins it).
    async fn start(
        &self,
        id: RecordId,
        how: Use,
        end: u64,
        now: u64,
    ) -> Result<Option<Started>, Refusal> {
        let window = self.window_secs();
        let change = |cur: Option<Bytes>| {
            let mut t = match cur {
                Some(b) => PullToken::decode(&b)?,
                None => return Err(Refusal::Unknown(name_of(id))),
            };
            live(&t, now)?;
            if how == Use::StartOrJoin && t.window_until.max(end) > now {
                return Ok((Change::Keep, None));
            }
            if t.used >= t.uses {
                return Err(Refusal::UsedUp(t.username(), t.uses));
            }
            t.used += 1;
            t.window_until = now + window;
            let started = Started {
                number: t.used,
                of: t.uses,
            };
            Ok((Change::Put(t.encode()?), Some(started)))
        };
        // A change whose lease another replica's slow claim replaced wrote
        // nothing and fails as contended: a pull should not fail for that,
        // so the start is tried again (a few times, each within META_WAIT).
        let mut tries = 0;
        loop {
            tries += 1;
            match self
                .store
                .meta()
                .update(Doc::PullToken(id), META_WAIT, change)
                .await
            {
                Err(Refusal::Store(e @ StoreError::Contended { .. })) if tries < START_TRIES => {
                    tracing::debug!(error = %e, token = %id, "pull token use start contended; trying again");
                }
                r => return r,
            }
        }
    }
}

/// Compare two hex digests without an early exit.
fn hmac_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn template() -> PullToken {
        PullToken {
            id: String::new(),
            secret_sha256: String::new(),
            repository: "ci/app".into(),
            digest: "sha256:00".into(),
            tag: Some("v1".into()),
            uses: 2,
            used: 0,
            created_at: 0,
            expires_at: 0,
            window_until: 0,
            created_by: "admin".into(),
        }
    }

    #[tokio::test]
    async fn uses_windows_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let p = PullTokens::open(Store::open(dir.path()).unwrap(), Duration::from_secs(600))
            .await
            .unwrap();
        let (t, secret) = p
            .create(template(), Duration::from_secs(3600))
            .await
            .unwrap();
        assert!(p
            .get(&t.id)
            .await
            .unwrap()
            .is_some_and(|t| t.secret_matches(&secret)));
        assert!(!p
            .get(&t.id)
            .await
            .unwrap()
            .is_some_and(|t| t.secret_matches("wrong")));
        let now = t.created_at;
        assert!(matches!(
            p.use_at(&t.id, Use::Join, now).await,
            Err(Refusal::NoWindow(..))
        ));
        assert_eq!(
            p.use_at(&t.id, Use::Start, now).await.unwrap(),
            Some(Started { number: 1, of: 2 })
        );
        // Inside the window: the root by digest and blobs join the use.
        assert_eq!(
            p.use_at(&t.id, Use::StartOrJoin, now + 1).await.unwrap(),
            None
        );
        assert_eq!(p.use_at(&t.id, Use::Join, now + 599).await.unwrap(), None);
        // A blob request extended the window.
        assert_eq!(p.use_at(&t.id, Use::Join, now + 1000).await.unwrap(), None);
        assert!(matches!(
            p.use_at(&t.id, Use::Join, now + 2000).await,
            Err(Refusal::NoWindow(..))
        ));
        // The tag again: a new use, then none left.
        assert_eq!(
            p.use_at(&t.id, Use::Start, now + 2001).await.unwrap(),
            Some(Started { number: 2, of: 2 })
        );
        assert!(matches!(
            p.use_at(&t.id, Use::Start, now + 2002).await,
            Err(Refusal::UsedUp(_, 2))
        ));
        assert!(matches!(
            p.use_at(&t.id, Use::Join, now + 3600).await,
            Err(Refusal::Expired(..))
        ));
        // Persisted: a fresh cache over the same store sees the spent uses.
        drop(p);
        let q = PullTokens::open(Store::open(dir.path()).unwrap(), Duration::from_secs(600))
            .await
            .unwrap();
        assert_eq!(q.get(&t.id).await.unwrap().unwrap().used, 2);
    }

    const WINDOW: Duration = Duration::from_secs(600);

    /// Token `id`'s spent uses as stored now.
    async fn used(p: &PullTokens, id: &str) -> u32 {
        let rid = RecordId::parse(id).unwrap();
        p.read(rid).await.unwrap().unwrap().used
    }

    /// Two replicas on one directory, and a token of `uses` uses (an hour)
    /// issued through the first. Bind `_dir` by name: it is the directory.
    struct Pair {
        _dir: tempfile::TempDir,
        a: Arc<PullTokens>,
        b: Arc<PullTokens>,
        t: PullToken,
        secret: String,
    }

    async fn pair(uses: u32) -> Pair {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = crate::store::test_replicas(dir.path());
        let a = Arc::new(PullTokens::open(a, WINDOW).await.unwrap());
        let b = Arc::new(PullTokens::open(b, WINDOW).await.unwrap());
        let mut t = template();
        t.uses = uses;
        let (t, secret) = a.create(t, Duration::from_secs(3600)).await.unwrap();
        Pair {
            _dir: dir,
            a,
            b,
            t,
            secret,
        }
    }

    #[tokio::test]
    async fn two_replicas_starting_at_once_never_pass_the_uses() {
        let Pair { _dir, a, b, t, .. } = pair(3).await;
        let now = t.created_at;
        let starts: Vec<_> = (0..8)
            .map(|i| {
                let p = if i % 2 == 0 { a.clone() } else { b.clone() };
                let id = t.id.clone();
                tokio::spawn(async move { p.use_at(&id, Use::Start, now).await })
            })
            .collect();
        let mut numbers = Vec::new();
        let mut used_up = 0;
        for s in starts {
            match s.await.unwrap() {
                Ok(Some(s)) => numbers.push(s.number),
                Err(Refusal::UsedUp(_, 3)) => used_up += 1,
                other => panic!("{other:?}"),
            }
        }
        numbers.sort();
        assert_eq!(numbers, [1, 2, 3], "each use started once");
        assert_eq!(used_up, 5);
        assert_eq!(used(&b, &t.id).await, 3);
    }

    #[tokio::test]
    async fn a_start_whose_lease_was_replaced_meanwhile_is_tried_again() {
        let Pair { _dir, a, t, .. } = pair(2).await;
        let rid = RecordId::parse(&t.id).unwrap();
        // a holds the token's lease and is about to read the record.
        let hold = a.store.pause_at(crate::store::PausePoint::DocRead);
        let start = tokio::spawn({
            let (a, id) = (a.clone(), t.id.clone());
            async move { a.use_at(&id, Use::Start, t.created_at).await }
        });
        hold.reached.notified().await;
        // Another replica's slow claim lands over a's lease.
        let lease = crate::store::LeaseFor::Meta(Doc::PullToken(rid));
        a.store.test_overwrite_lease(lease).await;
        hold.resume.notify_one();
        let started = start.await.unwrap().unwrap();
        assert_eq!(started, Some(Started { number: 1, of: 2 }));
        assert_eq!(used(&a, &t.id).await, 1, "one use, written once");
    }

    #[tokio::test]
    async fn the_root_by_digest_on_two_replicas_at_once_is_one_use() {
        let Pair { _dir, a, b, t, .. } = pair(2).await;
        let now = t.created_at;
        let (ra, rb) = tokio::join!(
            a.use_at(&t.id, Use::StartOrJoin, now),
            b.use_at(&t.id, Use::StartOrJoin, now)
        );
        let started = [ra.unwrap(), rb.unwrap()];
        assert_eq!(started.iter().flatten().count(), 1, "{started:?}");
        assert_eq!(used(&a, &t.id).await, 1);
    }

    #[tokio::test]
    async fn issuing_on_one_replica_while_another_spends_uses_loses_nothing() {
        let Pair {
            _dir,
            a,
            b,
            t: spent,
            ..
        } = pair(100).await;
        let now = spent.created_at;
        let issue = tokio::spawn({
            let a = a.clone();
            async move {
                let mut ids = Vec::new();
                for _ in 0..10 {
                    let (t, _) = a
                        .create(template(), Duration::from_secs(3600))
                        .await
                        .unwrap();
                    ids.push(t.id);
                }
                ids
            }
        });
        for _ in 0..10 {
            b.use_at(&spent.id, Use::Start, now).await.unwrap().unwrap();
        }
        let ids = issue.await.unwrap();
        let all = b.all().await.unwrap();
        assert_eq!(all.len(), 11);
        assert!(ids.iter().all(|id| all.iter().any(|t| &t.id == id)));
        assert_eq!(used(&a, &spent.id).await, 10);
    }

    #[tokio::test]
    async fn blob_requests_on_another_replica_extend_the_window() {
        let Pair { _dir, a, b, t, .. } = pair(2).await;
        let now = t.created_at;
        a.use_at(&t.id, Use::Start, now).await.unwrap().unwrap();
        // A blob through b at +500 s moves the end to +1100 s, seen by a.
        assert_eq!(b.use_at(&t.id, Use::Join, now + 500).await.unwrap(), None);
        assert_eq!(a.use_at(&t.id, Use::Join, now + 1000).await.unwrap(), None);
        // The extension did not touch the record's spent uses.
        assert_eq!(used(&a, &t.id).await, 1);
        assert!(matches!(
            b.use_at(&t.id, Use::Join, now + 1700).await,
            Err(Refusal::NoWindow(..))
        ));
    }

    #[tokio::test]
    async fn a_token_revoked_on_one_replica_is_refused_by_the_other_at_once() {
        let Pair {
            _dir,
            a,
            b,
            t,
            secret,
            ..
        } = pair(2).await;
        let now = t.created_at;
        // b learns of it from its first login, or from a reload.
        assert!(!b.known(&t.id));
        b.reload().await.unwrap();
        assert!(b.known(&t.id) && b.covers(&t.id, "ci/app"));
        assert!(b
            .get(&t.id)
            .await
            .unwrap()
            .is_some_and(|t| t.secret_matches(&secret)));
        b.use_at(&t.id, Use::Start, now).await.unwrap().unwrap();
        assert!(a.remove(&t.id).await.unwrap());
        assert!(!a.remove(&t.id).await.unwrap(), "gone once");
        assert!(!a.known(&t.id));
        assert!(matches!(
            b.use_at(&t.id, Use::Join, now + 1).await,
            Err(Refusal::Unknown(_))
        ));
        // b's cache keeps it until its next reload, which drops it.
        b.reload().await.unwrap();
        assert!(!b.known(&t.id));
        assert!(b.all().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn malformed_ids_are_unknown_and_touch_no_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = PullTokens::open(Store::open(dir.path()).unwrap(), WINDOW)
            .await
            .unwrap();
        for id in ["../robots", "ABCDEF0123456789", "0123", ""] {
            assert!(p.get(id).await.unwrap().is_none());
            assert!(!p.remove(id).await.unwrap());
            assert!(matches!(
                p.use_at(id, Use::Start, 0).await,
                Err(Refusal::Unknown(_))
            ));
        }
    }

    #[tokio::test]
    async fn the_one_document_of_older_versions_is_split_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut old = template();
        old.id = "0123456789abcdef".into();
        old.expires_at = u64::MAX / 2;
        old.used = 1;
        let doc = serde_json::to_vec(&vec![old.clone()]).unwrap();
        store
            .meta()
            .put(Doc::PullTokens, Bytes::from(doc))
            .await
            .unwrap();
        let p = PullTokens::open(store.clone(), WINDOW).await.unwrap();
        assert!(p.known(&old.id), "cached at open");
        assert_eq!(p.all().await.unwrap(), vec![old.clone()]);
        assert!(store.meta().get(Doc::PullTokens).await.unwrap().is_none());
        let started = p.use_at(&old.id, Use::Start, 10).await.unwrap();
        assert_eq!(started, Some(Started { number: 2, of: 2 }));
    }

    #[tokio::test]
    async fn issuing_drops_tokens_expired_a_day_ago_and_orphan_windows_hourly() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let p = PullTokens::open(store.clone(), WINDOW).await.unwrap();
        // The first issue of the process sweeps (nothing to drop yet).
        let (short, _) = p.create(template(), Duration::from_secs(1)).await.unwrap();
        let mut expired = p
            .read(RecordId::parse(&short.id).unwrap())
            .await
            .unwrap()
            .unwrap();
        expired.expires_at -= KEEP_EXPIRED + 10;
        let id = RecordId::parse(&expired.id).unwrap();
        store
            .meta()
            .put(Doc::PullToken(id), expired.encode().unwrap())
            .await
            .unwrap();
        let orphan = RecordId::parse("00000000000000ff").unwrap();
        store
            .meta()
            .put(Doc::PullTokenWindow(orphan), Bytes::from_static(b"5"))
            .await
            .unwrap();
        // The next one within the hour does not.
        let (kept, _) = p.create(template(), Duration::from_secs(60)).await.unwrap();
        assert_eq!(p.all().await.unwrap().len(), 2);
        // An hour later it does.
        p.swept.fetch_sub(SWEEP_EVERY, Ordering::SeqCst);
        let (third, _) = p.create(template(), Duration::from_secs(60)).await.unwrap();
        let mut ids: Vec<String> = p.all().await.unwrap().into_iter().map(|t| t.id).collect();
        ids.sort();
        let mut want = vec![kept.id, third.id];
        want.sort();
        assert_eq!(ids, want);
        assert!(!p.known(&expired.id));
        let (_, windows) = p.listed().await.unwrap();
        assert!(windows.is_empty());
    }
}
