//! The pull-through cache: serves remote repositories from the local store,
//! fetching from the remote on a miss.
//!
//! Owns the cache policy: digests are immutable and never revalidated; tags
//! are revalidated with a `HEAD` after the remote's `tag_ttl`, and the
//! cached manifest is served when the remote is unreachable, times out or
//! answers 429/5xx; 404s are remembered for `negative_ttl`. Blob misses go
//! through [`inflight`] (one upstream GET per digest). It composes `store`
//! and `upstream` and never speaks to clients directly.

pub mod evict;
pub mod inflight;
pub mod policy;
mod prefetch;
mod recent;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::oci::manifest::Manifest;
use crate::oci::{Algorithm, Digest, Reference, Tag};
use crate::store::{BlobData, Delivery, Store, StoreError, StoredManifest};
use crate::upstream::{Retries, Upstream, UpstreamError};
use inflight::{Fetch, FetchError, Inflight, Phase};
pub use policy::{PolicyError, RemoteTarget, Route, Router};
pub use prefetch::{PrefetchProgress, PrefetchReport};

/// How long a tag is trusted after the remote could not be asked.
const STALE_BACKOFF: Duration = Duration::from_secs(30);

/// What was not found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Manifest,
    Blob,
    Repository,
}

/// Failures of the proxy layer.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("{what} not found on remote {remote}")]
    NotFound {
        kind: Missing,
        what: String,
        remote: String,
    },
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Fetch(FetchError),
    #[error("remote {remote} sent an invalid manifest: {message}")]
    BadManifest { remote: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A remote whose client could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("remote {remote}: {source}")]
pub struct RemoteSetupError {
    pub remote: String,
    #[source]
    pub source: crate::upstream::SetupError,
}

/// Counters (exported as metrics by the operations layer).
#[derive(Debug, Default)]
pub struct ProxyStats {
    pub manifest_hits: AtomicU64,
    pub manifest_misses: AtomicU64,
    pub revalidations: AtomicU64,
    pub stale_served: AtomicU64,
    pub blob_hits: AtomicU64,
    pub blob_misses: AtomicU64,
}

/// A blob ready to serve.
pub enum BlobSource {
    /// Cached.
    Local(BlobData),
    /// Being fetched: follow the spool.
    Fetching(Arc<Fetch>, Option<u64>),
}

/// A blob for a client's `GET`.
pub enum BlobGet {
    /// Committed: as the store delivers it (a redirect to the object store
    /// when `storage.s3.redirect` is on, else its data).
    Ready(Delivery),
    /// Being fetched: follow the spool (never redirected).
    Fetching(Arc<Fetch>, Option<u64>),
}

pub struct Proxy {
    store: Store,
    router: Router,
    upstreams: HashMap<String, Arc<Upstream>>,
    inflight: Arc<Inflight>,
    /// `cache_repo:tag` → trusted until.
    fresh: moka::future::Cache<String, Instant>,
    /// `cache_repo@reference` → known missing until.
    negative: moka::future::Cache<String, Instant>,
    /// Per remote name (every remote of the router has an entry).
    stats: HashMap<String, ProxyStats>,
    /// Keeps the cache under its caps (woken by fetches).
    evictor: Arc<evict::Evictor>,
    /// `cache-fetch` events.
    notifier: crate::notify::Notifier,
}

impl Proxy {
    /// The proxy for `router`'s remotes, caching in `store`, evicting above
    /// each remote's `max_size` and `global_cap` over all remotes.
    pub fn new(
        store: Store,
        router: Router,
        global_cap: Option<u64>,
        max_manifest_size: usize,
        notifier: crate::notify::Notifier,
    ) -> Result<Proxy, RemoteSetupError> {
        let mut upstreams = HashMap::new();
        for r in router.remotes() {
            let up =
                Upstream::new(r.clone(), max_manifest_size).map_err(|source| RemoteSetupError {
                    remote: r.name.clone(),
                    source,
                })?;
            upstreams.insert(r.name.clone(), Arc::new(up));
        }
        let cache = || {
            moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(24 * 3600))
                .build()
        };
        let stats = router
            .remotes()
            .iter()
            .map(|r| (r.name.clone(), ProxyStats::default()))
            .collect();
        let evictor = Arc::new(evict::Evictor::new(
            store.clone(),
            router.remotes().to_vec(),
            global_cap,
        ));
        Ok(Proxy {
            store,
            router,
            upstreams,
            inflight: Arc::new(Inflight::new(evictor.wake()).with_notifier(notifier.clone())),
            notifier,
            fresh: cache(),
            negative: cache(),
            stats,
            evictor,
        })
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    pub fn inflight(&self) -> &Inflight {
        &self.inflight
    }

    /// The cache evictor (its loop is started by the app).
    pub fn evictor(&self) -> &Arc<evict::Evictor> {
        &self.evictor
    }

    /// Counters per remote, in config order: cache and upstream side.
    pub fn remote_stats(&self) -> Vec<(&str, &ProxyStats, &crate::upstream::UpstreamStats)> {
        self.router
            .remotes()
            .iter()
            .filter_map(|r| {
                Some((
                    r.name.as_str(),
                    self.stats.get(&r.name)?,
                    &self.upstreams.get(&r.name)?.stats,
                ))
            })
            .collect()
    }

    fn stats(&self, t: &RemoteTarget) -> &ProxyStats {
        static NONE: std::sync::OnceLock<ProxyStats> = std::sync::OnceLock::new();
        self.stats
            .get(&t.remote.name)
            .unwrap_or_else(|| NONE.get_or_init(ProxyStats::default))
    }

    fn upstream(&self, t: &RemoteTarget) -> &Arc<Upstream> {
        // Every remote in the router has an upstream (built in `new`).
        &self.upstreams[&t.remote.name]
    }

    async fn is_negative(&self, key: &str) -> bool {
        self.negative
            .get(key)
            .await
            .is_some_and(|until| Instant::now() < until)
    }

    fn not_found(t: &RemoteTarget, kind: Missing, what: impl std::fmt::Display) -> ProxyError {
        ProxyError::NotFound {
            kind,
            what: format!("{}:{what}", t.upstream_repo),
            remote: t.remote.name.clone(),
        }
    }

    /// A manifest of a remote repository, from the cache when allowed.
    pub async fn manifest(
        &self,
        t: &RemoteTarget,
        r: &Reference,
    ) -> Result<StoredManifest, ProxyError> {
        match r {
            Reference::Digest(d) => self.manifest_by_digest(t, d).await,
            Reference::Tag(tag) => self.manifest_by_tag(t, tag).await,
        }
    }

    async fn manifest_by_digest(
        &self,
        t: &RemoteTarget,
        d: &Digest,
    ) -> Result<StoredManifest, ProxyError> {
        if let Some(m) = self.store.repo(&t.cache_repo).manifest(d).await? {
            self.stats(t).manifest_hits.fetch_add(1, Relaxed);
            return Ok(m);
        }
        let neg = format!("{}@{d}", t.cache_repo);
        if self.is_negative(&neg).await {
            return Err(Self::not_found(t, Missing::Manifest, d));
        }
        self.stats(t).manifest_misses.fetch_add(1, Relaxed);
        match self
            .fetch_manifest(t, &d.to_string(), Some(d), None, Retries::Default)
            .await
        {
            Err(ProxyError::NotFound { kind, what, remote }) => {
                self.negative
                    .insert(neg, Instant::now() + t.remote.negative_ttl)
                    .await;
                Err(ProxyError::NotFound { kind, what, remote })
            }
            other => other,
        }
    }

    async fn manifest_by_tag(
        &self,
        t: &RemoteTarget,
        tag: &Tag,
    ) -> Result<StoredManifest, ProxyError> {
        let key = format!("{}:{tag}", t.cache_repo);
        let repo = self.store.repo(&t.cache_repo);
        let cached = match repo.tag(tag).await? {
            Some(d) => repo.manifest(&d).await?,
            None => None,
        };
        if let Some(m) = &cached {
            if self
                .fresh
                .get(&key)
                .await
                .is_some_and(|until| Instant::now() < until)
            {
                self.stats(t).manifest_hits.fetch_add(1, Relaxed);
                return Ok(m.clone());
            }
        } else if self.is_negative(&key).await {
            return Err(Self::not_found(t, Missing::Manifest, tag));
        }
        let up = self.upstream(t);
        let Some(m) = cached else {
            // Never seen: fetch it (with retries: there is nothing to fall back on).
            self.stats(t).manifest_misses.fetch_add(1, Relaxed);
            return match self
                .fetch_manifest(t, tag.as_str(), None, Some(tag), Retries::Default)
                .await
            {
                Ok(m) => {
                    self.mark_fresh(&key, t.remote.tag_ttl).await;
                    Ok(m)
                }
                Err(e @ ProxyError::NotFound { .. }) => {
                    self.negative
                        .insert(key, Instant::now() + t.remote.negative_ttl)
                        .await;
                    Err(e)
                }
                Err(e) => Err(e),
            };
        };
        // Cached but past its TTL: revalidate with a HEAD (Docker Hub does
        // not count HEADs against the pull limit).
        self.stats(t).revalidations.fetch_add(1, Relaxed);
        match up
            .manifest(&t.upstream_repo, tag.as_str(), true, Retries::None)
            .await
        {
            Ok(head) if head.digest.as_ref() == Some(&m.digest) => {
                self.mark_fresh(&key, t.remote.tag_ttl).await;
                self.stats(t).manifest_hits.fetch_add(1, Relaxed);
                Ok(m)
            }
            Ok(_) => {
                // Moved (or the remote sent no digest): fetch the new one.
                match self
                    .fetch_manifest(t, tag.as_str(), None, Some(tag), Retries::None)
                    .await
                {
                    Ok(new) => {
                        self.mark_fresh(&key, t.remote.tag_ttl).await;
                        Ok(new)
                    }
                    Err(e) if is_transient(&e) => Ok(self.serve_stale(t, tag, &key, m, &e).await),
                    Err(e) => Err(e),
                }
            }
            Err(e) if e.is_not_found() => {
                self.negative
                    .insert(key, Instant::now() + t.remote.negative_ttl)
                    .await;
                Err(Self::not_found(t, Missing::Manifest, tag))
            }
            Err(e) if e.is_transient() => Ok(self
                .serve_stale(t, tag, &key, m, &ProxyError::Upstream(e))
                .await),
            Err(e) => Err(e.into()),
        }
    }

    async fn serve_stale(
        &self,
        t: &RemoteTarget,
        tag: &Tag,
        key: &str,
        m: StoredManifest,
        e: &ProxyError,
    ) -> StoredManifest {
        self.stats(t).stale_served.fetch_add(1, Relaxed);
        tracing::warn!(remote = %t.remote.name, repo = %t.upstream_repo, %tag, error = %e, "remote unavailable; serving cached manifest");
        self.mark_fresh(key, t.remote.tag_ttl.min(STALE_BACKOFF))
            .await;
        m
    }

    async fn mark_fresh(&self, key: &str, ttl: Duration) {
        self.fresh
            .insert(key.to_string(), Instant::now() + ttl)
            .await;
    }

    /// GET a manifest from the remote, verify it, and cache it.
    async fn fetch_manifest(
        &self,
        t: &RemoteTarget,
        reference: &str,
        expect: Option<&Digest>,
        tag: Option<&Tag>,
        retries: Retries,
    ) -> Result<StoredManifest, ProxyError> {
        let up = self.upstream(t);
        let rm = match up
            .manifest(&t.upstream_repo, reference, false, retries)
            .await
        {
            Ok(rm) => rm,
            Err(e) if e.is_not_found() => {
                return Err(Self::not_found(t, Missing::Manifest, reference))
            }
            Err(e) => {
                tracing::warn!(remote = %t.remote.name, repo = %t.upstream_repo, reference, error = %e, "upstream manifest fetch failed");
                return Err(e.into());
            }
        };
        let bad = |message: String| {
            tracing::warn!(remote = %t.remote.name, repo = %t.upstream_repo, reference, %message, "the remote sent an invalid manifest");
            ProxyError::BadManifest {
                remote: t.remote.name.clone(),
                message,
            }
        };
        let bytes = rm.bytes.unwrap_or_default();
        let alg = expect
            .map(Digest::algorithm)
            .or(rm.digest.as_ref().map(Digest::algorithm))
            .unwrap_or(Algorithm::Sha256);
        let digest = Digest::of(alg, &bytes);
        if let Some(want) = expect.or(rm.digest.as_ref()) {
            if want != &digest {
                return Err(bad(format!("content has digest {digest}, expected {want}")));
            }
        }
        let parsed =
            Manifest::parse(&bytes, Some(&rm.media_type)).map_err(|e| bad(e.to_string()))?;
        // Through the same GC fence as a push: a sweep or an eviction on
        // another replica keeps what this manifest references.
        self.store
            .begin_manifest(&digest, &parsed)
            .await?
            .link(&t.cache_repo, bytes.clone(), tag)
            .await?;
        tracing::info!(remote = %t.remote.name, repo = %t.upstream_repo, reference, %digest, "manifest cached");
        self.evictor.fetched();
        self.notifier.emit(crate::notify::event::cache_fetch(
            &t.remote.name,
            &t.cache_repo,
            &digest,
            &parsed.media_type,
            bytes.len() as u64,
            tag.map(|t| t.as_str()),
        ));
        Ok(StoredManifest {
            digest,
            media_type: parsed.media_type,
            bytes,
        })
    }

    /// A blob of a remote repository: from the store, or by joining (or
    /// starting) its upstream fetch.
    pub async fn blob(&self, t: &RemoteTarget, d: &Digest) -> Result<BlobSource, ProxyError> {
        let repo = self.store.repo(&t.cache_repo);
        if repo.links_blob(d).await? {
            if let Some(data) = self.store.blobs().open(d).await? {
                self.stats(t).blob_hits.fetch_add(1, Relaxed);
                return Ok(BlobSource::Local(data));
            }
        }
        if self.store.blobs().size(d).await?.is_some() {
            // The bytes are here (pushed or cached under another name), but
            // this remote repository must really have them before wharf
            // serves them under its name.
            self.remote_blob_size(t, d).await?;
            repo.link_blob(d).await?;
            if let Some(data) = self.store.blobs().open(d).await? {
                self.stats(t).blob_hits.fetch_add(1, Relaxed);
                return Ok(BlobSource::Local(data));
            }
        }
        self.stats(t).blob_misses.fetch_add(1, Relaxed);
        let fetch = self.inflight.join_or_start(
            &self.store,
            self.upstream(t).clone(),
            t.upstream_repo.clone(),
            t.cache_repo.clone(),
            d,
        );
        // Answer once the first bytes are spooled (or the fetch failed): a
        // remote that refuses, or a disk that is full, becomes a proper
        // error response instead of a body cut after its headers.
        let p = fetch.first_bytes().await;
        match p.phase {
            Phase::Failed(FetchError::Upstream(e)) if e.is_not_found() => {
                Err(Self::not_found(t, Missing::Blob, d))
            }
            Phase::Failed(e) => Err(ProxyError::Fetch(e)),
            _ => Ok(BlobSource::Fetching(fetch, p.total)),
        }
    }

    /// [`Proxy::blob`] for a client's `GET`.
    pub async fn blob_get(&self, t: &RemoteTarget, d: &Digest) -> Result<BlobGet, ProxyError> {
        Ok(match self.blob(t, d).await? {
            BlobSource::Local(data) => BlobGet::Ready(self.store.blobs().delivery(d, data).await?),
            BlobSource::Fetching(f, total) => BlobGet::Fetching(f, total),
        })
    }

    async fn remote_blob_size(
        &self,
        t: &RemoteTarget,
        d: &Digest,
    ) -> Result<Option<u64>, ProxyError> {
        match self.upstream(t).blob_size(&t.upstream_repo, d).await {
            Ok(n) => Ok(n),
            Err(e) if e.is_not_found() => Err(Self::not_found(t, Missing::Blob, d)),
            Err(e) => Err(e.into()),
        }
    }

    /// Size of a blob for `HEAD`, without downloading it.
    pub async fn blob_size(&self, t: &RemoteTarget, d: &Digest) -> Result<u64, ProxyError> {
        if self.store.repo(&t.cache_repo).links_blob(d).await? {
            if let Some(n) = self.store.blobs().size(d).await? {
                return Ok(n);
            }
        }
        if let Some(f) = self.inflight.get(d) {
            if let Some(n) = f.started().await.total {
                return Ok(n);
            }
        }
        match self.remote_blob_size(t, d).await? {
            Some(n) => Ok(n),
            None => Err(ProxyError::Upstream(UpstreamError::Protocol {
                remote: t.remote.name.clone(),
                message: "blob HEAD without Content-Length".into(),
            })),
        }
    }

    /// The remote's tags (one page); the local cache's when unreachable.
    pub async fn tags(
        &self,
        t: &RemoteTarget,
        query: Option<&str>,
    ) -> Result<(Bytes, Option<String>), ProxyError> {
        match self.upstream(t).tags(&t.upstream_repo, query).await {
            Ok(r) => Ok(r),
            Err(e) if e.is_not_found() => Err(Self::not_found(t, Missing::Repository, "tags")),
            Err(e) if e.is_transient() => {
                let Some(tags) = self
                    .store
                    .repo(&t.cache_repo)
                    .tags(None, usize::MAX)
                    .await?
                else {
                    return Err(e.into());
                };
                self.stats(t).stale_served.fetch_add(1, Relaxed);
                tracing::warn!(remote = %t.remote.name, repo = %t.upstream_repo, error = %e, "remote unavailable; serving cached tag list");
                let body = serde_json::json!({ "name": t.upstream_repo.as_str(), "tags": tags });
                Ok((
                    Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
                    None,
                ))
            }
            Err(e) => Err(e.into()),
        }
    }
}

fn is_transient(e: &ProxyError) -> bool {
    match e {
        ProxyError::Upstream(u) => u.is_transient(),
        _ => false,
    }
}
