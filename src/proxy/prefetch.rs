//! Prefetch: pull an image (for an index, every platform's manifest) and
//! all its blobs into the cache ahead of time, and pin it so eviction never
//! removes it — what a node does when it pre-pulls at deploy time.

use std::collections::HashSet;

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

impl Proxy {
    /// Fetch `reference` of `t` with everything it references; pin it when
    /// `pin`. `image` is how the caller named it (for the report).
    pub async fn prefetch(
        &self,
        t: &RemoteTarget,
        reference: &Reference,
        pin: bool,
        image: &str,
    ) -> Result<PrefetchReport, ProxyError> {
        let top = self.manifest(t, reference).await?;
        let mut report = PrefetchReport {
            image: image.to_string(),
            repository: t.cache_repo.to_string(),
            digest: top.digest.clone(),
            manifests: 0,
            blobs: 0,
            bytes: top.bytes.len() as u64,
            pinned: pin,
        };
        let mut todo = vec![top];
        let mut seen = HashSet::new();
        while let Some(m) = todo.pop() {
            report.manifests += 1;
            let p = Manifest::parse(&m.bytes, Some(&m.media_type)).map_err(|e| {
                ProxyError::BadManifest {
                    remote: t.remote.name.clone(),
                    message: format!("{}: {e}", m.digest),
                }
            })?;
            for c in p.manifests {
                if seen.insert(c.digest.clone()) {
                    let child = self.manifest(t, &Reference::Digest(c.digest)).await?;
                    report.bytes += child.bytes.len() as u64;
                    todo.push(child);
                }
            }
            for b in p.config.into_iter().chain(p.layers) {
                if b.urls.as_ref().is_some_and(|u| !u.is_empty()) || !seen.insert(b.digest.clone())
                {
                    continue;
                }
                report.bytes += self.fetch_whole(t, &b.digest).await?;
                report.blobs += 1;
            }
        }
        if pin {
            self.store.repo(&t.cache_repo).pin(&report.digest).await?;
        }
        tracing::info!(image, repo = %t.cache_repo, digest = %report.digest, manifests = report.manifests, blobs = report.blobs, bytes = report.bytes, pin, "prefetched");
        Ok(report)
    }

    /// Make blob `d` cached (fetching it if needed); returns its size.
    async fn fetch_whole(&self, t: &RemoteTarget, d: &Digest) -> Result<u64, ProxyError> {
        match self.blob(t, d).await? {
            BlobSource::Local(data) => Ok(data.len()),
            BlobSource::Fetching(f, _) => {
                let done = f.finished().await;
                match done.phase {
                    Phase::Done => Ok(done.written),
                    Phase::Failed(e) => Err(ProxyError::Fetch(e)),
                    _ => Err(ProxyError::Fetch(super::FetchError::Io(format!(
                        "fetch of {d} ended unexpectedly"
                    )))),
                }
            }
        }
    }
}
