//! One-time pull tokens: credentials (`pull$<id>` + a random secret) that
//! pull one image a bounded number of times before a deadline.
//!
//! This module owns the records and their use accounting; which requests
//! belong to the image is the registry's call (`registry::pull_tokens`).
//! Records live in the store (`auth/pull-tokens.json`), so they survive a
//! restart, and every request re-reads the document first, so processes
//! sharing a store see each other's uses and windows (two processes starting a use at
//! the same instant may both succeed: there is no cross-process lock).
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

use std::sync::RwLock;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::robots::unix_now;
use crate::store::{Doc, Store, StoreError};

/// Pull-token usernames are `pull$<id>`.
pub const PULL_PREFIX: &str = "pull$";

/// Records expired longer ago than this are dropped when a token is made.
const KEEP_EXPIRED: u64 = 24 * 3600;

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
    /// End of the open pull window (unix seconds; 0: none yet).
    #[serde(default)]
    pub window_until: u64,
    pub created_by: String,
}

impl PullToken {
    pub fn username(&self) -> String {
        format!("{PULL_PREFIX}{}", self.id)
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

/// Every pull token, cached from the store.
pub struct PullTokens {
    store: Store,
    window: Duration,
    cache: RwLock<Vec<PullToken>>,
    /// Orders read-modify-write of the document inside this process.
    write: tokio::sync::Mutex<()>,
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

impl PullTokens {
    /// The tokens saved in `store`; pull windows last `window`.
    pub async fn open(store: Store, window: Duration) -> Result<PullTokens, StoreError> {
        let p = PullTokens {
            store,
            window,
            cache: RwLock::new(Vec::new()),
            write: tokio::sync::Mutex::new(()),
        };
        p.load().await?;
        Ok(p)
    }

    async fn load(&self) -> Result<Vec<PullToken>, StoreError> {
        let Some(b) = self.store.meta().get(Doc::PullTokens).await? else {
            return Ok(Vec::new());
        };
        let all: Vec<PullToken> = serde_json::from_slice(&b)
            .map_err(|e| StoreError::Corrupt(format!("pull tokens document: {e}")))?;
        *self.cache.write().unwrap_or_else(|e| e.into_inner()) = all.clone();
        Ok(all)
    }

    async fn save(&self, all: &[PullToken]) -> Result<(), StoreError> {
        let bytes =
            serde_json::to_vec_pretty(all).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.store
            .meta()
            .put(Doc::PullTokens, Bytes::from(bytes))
            .await?;
        *self.cache.write().unwrap_or_else(|e| e.into_inner()) = all.to_vec();
        Ok(())
    }

    /// Token `id` (from the cache, else the store: another process may
    /// have issued it).
    pub async fn get(&self, id: &str) -> Result<Option<PullToken>, StoreError> {
        let cached = self
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|t| t.id == id)
            .cloned();
        if cached.is_some() {
            return Ok(cached);
        }
        Ok(self.load().await?.into_iter().find(|t| t.id == id))
    }

    /// Whether `id` exists in this process's cache (no I/O).
    pub fn known(&self, id: &str) -> bool {
        self.cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|t| t.id == id)
    }

    /// Every token (from the store).
    pub async fn all(&self) -> Result<Vec<PullToken>, StoreError> {
        self.load().await
    }

    /// Remove token `id`: it stops working at once. Whether it existed.
    pub async fn remove(&self, id: &str) -> Result<bool, StoreError> {
        let _w = self.write.lock().await;
        let mut all = self.load().await?;
        let before = all.len();
        all.retain(|t| t.id != id);
        if all.len() == before {
            return Ok(false);
        }
        self.save(&all).await.map(|()| true)
    }

    /// Whether token `id` (in this process's cache) is for `repository`.
    pub fn covers(&self, id: &str, repository: &str) -> bool {
        self.cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|t| t.id == id && t.repository == repository)
    }

    /// The token `user` names if `secret` is its secret.
    pub async fn verify(&self, id: &str, secret: &str) -> Result<Option<PullToken>, StoreError> {
        let want = sha256_hex(secret);
        Ok(self
            .get(id)
            .await?
            .filter(|t| hmac_eq(&t.secret_sha256, &want)))
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
        let _w = self.write.lock().await;
        let mut all = self.load().await?;
        all.retain(|x| x.expires_at.saturating_add(KEEP_EXPIRED) > now);
        all.push(t.clone());
        self.save(&all).await?;
        Ok((t, secret))
    }

    /// Account for one request of kind `how` with token `id` at `now`
    /// (unix seconds). `Some` when it started a new use.
    pub async fn use_at(&self, id: &str, how: Use, now: u64) -> Result<Option<Started>, Refusal> {
        let name = format!("{PULL_PREFIX}{id}");
        let _w = self.write.lock().await;
        // Re-read every time (one small object): another process may have
        // spent a use or opened the window this request belongs to, and a
        // save must never overwrite its change with a stale copy.
        let mut all = self.load().await?;
        let t = all
            .iter_mut()
            .find(|t| t.id == id)
            .ok_or_else(|| Refusal::Unknown(name.clone()))?;
        if now >= t.expires_at {
            return Err(Refusal::Expired(name, rfc3339(t.expires_at)));
        }
        let open = t.window_until > now;
        let window = self.window.as_secs().max(1);
        let started = match how {
            Use::Join if !open => return Err(Refusal::NoWindow(name, window)),
            Use::Join | Use::StartOrJoin if open => {
                let end = now + window;
                // Saved in steps, not on every blob request.
                if end < t.window_until + (window / 10).clamp(1, SAVE_EXTENSION) {
                    return Ok(None);
                }
                t.window_until = end;
                None
            }
            _ => {
                if t.used >= t.uses {
                    return Err(Refusal::UsedUp(name, t.uses));
                }
                t.used += 1;
                t.window_until = now + window;
                Some(Started {
                    number: t.used,
                    of: t.uses,
                })
            }
        };
        self.save(&all).await?;
        Ok(started)
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
        assert!(p.verify(&t.id, &secret).await.unwrap().is_some());
        assert!(p.verify(&t.id, "wrong").await.unwrap().is_none());
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
}
