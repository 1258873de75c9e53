//! Prefetch: pull an image (for an index, every platform's manifest) and
//! all its blobs into the cache ahead of time, and pin it so eviction never
//! removes it — what a node does when it pre-pulls at deploy time.
//!
//! It works in two steps so progress can be told: first every manifest is
//! fetched (their descriptors give the blobs and their sizes), then the
//! blobs, one after the other. [`PrefetchProgress`] counts both as they go;
//! a blob being downloaded adds its bytes while they arrive.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

use super::inflight::Phase;
use super::{BlobSource, Proxy, ProxyError, RemoteTarget};
use crate::oci::manifest::Manifest;
use crate::oci::{Digest, Reference};

/// What a prefetch fetched.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrefetchReport {
    pub image: String,
    pub repository: String,
    pub digest: Digest,
    pub manifests: usize,
    pub blobs: usize,
    pub bytes: u64,
    pub pinned: bool,
}

/// How far a prefetch is, readable while it runs. Totals are known once
/// every manifest is in (`resolved`); bytes count manifests and blobs.
#[derive(Debug, Default)]
pub struct PrefetchProgress {
    pub resolved: AtomicBool,
    pub manifests: AtomicU64,
    pub blobs_done: AtomicU64,
    pub blobs_total: AtomicU64,
    pub bytes_done: AtomicU64,
    pub bytes_total: AtomicU64,
}

/// A blob an image needs, from its manifest's descriptor.
struct Needed {
    digest: Digest,
    size: u64,
}

impl Proxy {
    /// Fetch `reference` of `t` with everything it references; pin it when
    /// `pin`. `image` is how the caller named it (for the report); `progress`
    /// is updated as manifests and blobs arrive.
    pub async fn prefetch(
        &self,
        t: &RemoteTarget,
        reference: &Reference,
        pin: bool,
        image: &str,
        progress: &PrefetchProgress,
    ) -> Result<PrefetchReport, ProxyError> {
        let top = self.manifest(t, reference).await?;
        let mut report = PrefetchReport {
            image: image.to_string(),
            repository: t.cache_repo.to_string(),
            digest: top.digest.clone(),
            manifests: 0,
            blobs: 0,
            bytes: 0,
            pinned: pin,
        };
        let needed = self
            .resolve_manifests(t, top, &mut report, progress)
            .await?;
        let blob_bytes: u64 = needed.iter().map(|b| b.size).sum();
        progress.blobs_total.store(needed.len() as u64, Relaxed);
        progress
            .bytes_total
            .store(report.bytes + blob_bytes, Relaxed);
        progress.resolved.store(true, Relaxed);
        for b in &needed {
            report.bytes += self.fetch_whole(t, &b.digest, progress).await?;
            report.blobs += 1;
            progress.blobs_done.fetch_add(1, Relaxed);
        }
        if pin {
            self.store.repo(&t.cache_repo).pin(&report.digest).await?;
        }
        tracing::info!(image, repo = %t.cache_repo, digest = %report.digest, manifests = report.manifests, blobs = report.blobs, bytes = report.bytes, pin, "prefetched");
        Ok(report)
    }

    /// Fetch `top` and every manifest under it; returns the blobs they
    /// reference (each once; foreign layers with `urls` are not fetched).
    async fn resolve_manifests(
        &self,
        t: &RemoteTarget,
        top: crate::store::StoredManifest,
        report: &mut PrefetchReport,
        progress: &PrefetchProgress,
    ) -> Result<Vec<Needed>, ProxyError> {
        let mut todo = vec![top];
        let mut seen = HashSet::new();
        let mut needed = Vec::new();
        while let Some(m) = todo.pop() {
            report.manifests += 1;
            report.bytes += m.bytes.len() as u64;
            progress.manifests.fetch_add(1, Relaxed);
            progress.bytes_done.fetch_add(m.bytes.len() as u64, Relaxed);
            let p = Manifest::parse(&m.bytes, Some(&m.media_type)).map_err(|e| {
                ProxyError::BadManifest {
                    remote: t.remote.name.clone(),
                    message: format!("{}: {e}", m.digest),
                }
            })?;
            for c in p.manifests {
                if seen.insert(c.digest.clone()) {
                    todo.push(self.manifest(t, &Reference::Digest(c.digest)).await?);
                }
            }
            for b in p.config.into_iter().chain(p.layers) {
                if b.is_foreign() || !seen.insert(b.digest.clone()) {
                    continue;
                }
                needed.push(Needed {
                    digest: b.digest,
                    size: b.size,
                });
            }
        }
        Ok(needed)
    }

    /// Make blob `d` cached (fetching it if needed), adding its bytes to
    /// `progress` as they arrive; returns its size.
    async fn fetch_whole(
        &self,
        t: &RemoteTarget,
        d: &Digest,
        progress: &PrefetchProgress,
    ) -> Result<u64, ProxyError> {
        let fetch = match self.blob(t, d).await? {
            BlobSource::Local(data) => {
                progress.bytes_done.fetch_add(data.len(), Relaxed);
                return Ok(data.len());
            }
            BlobSource::Fetching(f, _) => f,
        };
        let mut rx = fetch.subscribe();
        let mut counted = 0u64;
        loop {
            let p = rx.borrow_and_update().clone();
            progress
                .bytes_done
                .fetch_add(p.written.saturating_sub(counted), Relaxed);
            counted = counted.max(p.written);
            match p.phase {
                Phase::Done => return Ok(p.written),
                Phase::Failed(e) => {
                    progress.bytes_done.fetch_sub(counted, Relaxed);
                    return Err(ProxyError::Fetch(e));
                }
                _ => {}
            }
            if rx.changed().await.is_err() {
                progress.bytes_done.fetch_sub(counted, Relaxed);
                return Err(ProxyError::Fetch(super::FetchError::Io(format!(
                    "fetch of {d} ended unexpectedly"
                ))));
            }
        }
    }
}
