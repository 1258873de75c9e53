//! Pinned cache entries and cache eviction.
//!
//! A pull-through cache repository (`<remote>/<repo>`) holds manifests
//! fetched from its remote. When the cached content of a remote (or of all
//! remotes) exceeds its cap, the least recently pulled *images* are evicted
//! until it fits. An image is a manifest revision that is not a child of an
//! index in the same repository (an index is evicted with its children);
//! its last use is its last pull (the `.pulled` marker) or, if never
//! pulled, when it was cached. Pinned images (`_pinned/<alg>/<hex>`, set by
//! prefetch) are never evicted, and neither is anything outside the given
//! namespaces (pushed content lives in project namespaces, never passed
//! here). Evicting an image removes its revision link and tags, the links of
//! blobs no remaining manifest of the repository needs, and then the blob
//! files no repository links or references any more.

use std::collections::{BTreeSet, HashSet};
use std::io;
use std::time::SystemTime;

use serde::Serialize;

use super::fsutil::{remove_if_exists, write_atomic};
use super::gc::digest_files;
use super::{blocking, Store};
use crate::oci::manifest::Manifest;
use crate::oci::{Digest, RepoName};

/// What an eviction pass did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EvictReport {
    /// Usage of the namespaces before and after.
    pub usage_before: u64,
    pub usage_after: u64,
    /// `repo@digest` of every evicted image.
    pub evicted: Vec<String>,
    pub blobs_removed: usize,
    pub bytes_freed: u64,
}

struct Candidate {
    repo: RepoName,
    digest: Digest,
    last_used: SystemTime,
}

impl Store {
    /// Pin manifest `d` of `repo` (and, through it, its children and blobs).
    pub async fn pin(&self, repo: &RepoName, d: &Digest) -> io::Result<()> {
        let p = self.layout().pin_file(repo, d);
        let tmp = self.temp_path();
        blocking(move || write_atomic(&tmp, &p, b"")).await
    }

    /// Remove a pin; returns whether it existed.
    pub async fn unpin(&self, repo: &RepoName, d: &Digest) -> io::Result<bool> {
        let p = self.layout().pin_file(repo, d);
        blocking(move || remove_if_exists(&p)).await
    }

    pub async fn is_pinned(&self, repo: &RepoName, d: &Digest) -> bool {
        let p = self.layout().pin_file(repo, d);
        blocking(move || Ok(p.exists())).await.unwrap_or(false)
    }

    /// Pinned manifests of `repo`.
    pub async fn pins(&self, repo: &RepoName) -> io::Result<Vec<Digest>> {
        let dir = self.layout().pins_dir(repo);
        Ok(blocking(move || digest_files(&dir)).await?.into_iter().map(|(d, _)| d).collect())
    }

    /// Usage of a group of namespaces, each digest counted once.
    pub async fn group_usage(&self, namespaces: &[String]) -> io::Result<u64> {
        let mut all = BTreeSet::new();
        for ns in namespaces {
            all.extend(self.namespace_digests(ns).await?);
        }
        self.total_size(&all).await
    }

    /// Evict least recently pulled, unpinned images of the repositories in
    /// `namespaces` until their usage is at most `cap` (or nothing evictable
    /// is left).
    pub async fn evict(&self, namespaces: &[String], cap: u64) -> io::Result<EvictReport> {
        let mut report = EvictReport::default();
        let mut usage = self.group_usage(namespaces).await?;
        report.usage_before = usage;
        report.usage_after = usage;
        if usage <= cap {
            return Ok(report);
        }
        let _guard = self.gc_write().await;
        let mut candidates = self.eviction_candidates(namespaces).await?;
        candidates.sort_by(|a, b| a.last_used.cmp(&b.last_used).then(a.digest.cmp(&b.digest)));
        let mut freed: HashSet<Digest> = HashSet::new();
        for c in candidates {
            if usage <= cap {
                break;
            }
            freed.extend(self.evict_image(&c.repo, &c.digest).await?);
            report.evicted.push(format!("{}@{}", c.repo, c.digest));
            usage = self.group_usage(namespaces).await?;
            tracing::info!(repo = %c.repo, digest = %c.digest, usage, cap, "evicted cached image");
        }
        report.usage_after = usage;
        if freed.is_empty() {
            return Ok(report);
        }
        // Remove the files nothing links or references any more.
        let marked = self.mark().await?;
        let linked: HashSet<Digest> = marked.layer_links.iter().map(|(_, d, _)| d.clone()).collect();
        for d in freed {
            if marked.live.contains(&d) || linked.contains(&d) {
                continue;
            }
            let p = self.layout().blob(&d);
            let size = self.blob_size(&d).await?.unwrap_or(0);
            if blocking(move || remove_if_exists(&p)).await? {
                report.blobs_removed += 1;
                report.bytes_freed += size;
            }
        }
        Ok(report)
    }

    async fn eviction_candidates(&self, namespaces: &[String]) -> io::Result<Vec<Candidate>> {
        let mut out = Vec::new();
        for ns in namespaces {
            for repo in self.repositories_in(ns).await? {
                let digests = self.manifest_digests(&repo).await?;
                let mut children = HashSet::new();
                for d in &digests {
                    if let Some(m) = self.get_manifest(&repo, d).await? {
                        if let Ok(p) = Manifest::parse(&m.bytes, Some(&m.media_type)) {
                            children.extend(p.manifests.into_iter().map(|c| c.digest));
                        }
                    }
                }
                let pinned: HashSet<Digest> = self.pins(&repo).await?.into_iter().collect();
                for d in digests {
                    if children.contains(&d) || pinned.contains(&d) {
                        continue;
                    }
                    let link = self.layout().manifest_link(&repo, &d);
                    let marker = link.with_extension("pulled");
                    let last_used = blocking(move || {
                        let t = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
                        Ok(t(&marker).or(t(&link)).unwrap_or(SystemTime::UNIX_EPOCH))
                    })
                    .await?;
                    out.push(Candidate {
                        repo: repo.clone(),
                        digest: d,
                        last_used,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Remove image `d` from `repo` with what only it needed; returns the
    /// digests unlinked (candidates for removal from disk).
    async fn evict_image(&self, repo: &RepoName, d: &Digest) -> io::Result<Vec<Digest>> {
        let mine = self.closure(repo, d).await?;
        let subject = match self.get_manifest(repo, d).await? {
            Some(m) => Manifest::parse(&m.bytes, Some(&m.media_type)).ok().and_then(|p| p.subject).map(|s| s.digest),
            None => None,
        };
        self.delete_manifest(repo, d, subject.as_ref()).await?;
        let mut remaining = BTreeSet::new();
        for other in self.manifest_digests(repo).await? {
            if mine.contains(&other) && &other != d {
                // A child of the evicted index: goes with it unless another
                // remaining manifest needs it (checked below).
                continue;
            }
            remaining.extend(self.closure(repo, &other).await?);
        }
        let mut out = Vec::new();
        for x in mine {
            if remaining.contains(&x) {
                continue;
            }
            if self.manifest_media_type(repo, &x).await?.is_some() {
                self.delete_manifest(repo, &x, None).await?;
            }
            self.unlink_blob(repo, &x).await?;
            let marker = self.layout().manifest_link(repo, &x).with_extension("pulled");
            blocking(move || remove_if_exists(&marker)).await?;
            out.push(x);
        }
        Ok(out)
    }
}
