//! Garbage collection (mark and sweep).
//!
//! **What is live.** A blob (or manifest) is live when it is reachable from
//! a manifest revision linked in any repository: the manifest itself, its
//! config and layers, and for an index its child manifests (recursively).
//! Referrers are manifests linked in their repository, so they and their
//! blobs are live too; pull-through cache repositories are repositories like
//! any other. This is Distribution's rule ("blobs referenced by manifests"):
//! a blob that is only linked into a repository's `_layers` (pushed, but no
//! manifest ever referenced it, or its manifests were deleted) is garbage
//! once it is older than the grace period, and its `_layers` links are
//! removed with it.
//!
//! **What is never touched.** Upload sessions and temp objects are not
//! blobs and are never looked at. A blob whose content, or any of whose
//! `_layers` links, was modified within the grace period
//! (`storage.gc_grace`) is kept: that covers a blob committed by an upload
//! whose manifest has not arrived yet (and a re-pushed existing blob, whose
//! time is refreshed on commit).
//!
//! **Concurrency.** A GC holds the store's GC lock for writing from mark to
//! sweep; a manifest `PUT` holds it for reading from its reference check to
//! the revision link, so no manifest can start referencing a blob that the
//! sweep is about to remove. Dry runs take no lock and remove nothing.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::backend::ObjectMeta;
use super::{layout, Result, Store};
use crate::oci::{Digest, RepoName};

/// Options of one GC run.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Report what would be removed; remove nothing.
    pub dry_run: bool,
    /// Blobs modified more recently than this are never collected.
    pub grace: Duration,
}

/// One blob collected (or that would be).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GcBlob {
    pub digest: String,
    pub size: u64,
}

/// What a GC run found and removed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GcReport {
    pub dry_run: bool,
    /// Repositories scanned.
    pub repositories: usize,
    /// Manifest revisions scanned.
    pub manifests: usize,
    /// Blobs (including manifests' bytes) in the store before the sweep.
    pub blobs_total: usize,
    /// Blobs found reachable.
    pub blobs_marked: usize,
    /// Unreferenced blobs kept because they are younger than the grace period.
    pub blobs_in_grace: usize,
    /// Blobs removed (or, in a dry run, that would be).
    pub blobs_removed: usize,
    pub bytes_freed: u64,
    /// `_layers` links to removed blobs that were removed.
    pub links_removed: usize,
    pub removed: Vec<GcBlob>,
    pub duration_ms: u64,
}

/// The result of the mark phase.
pub(crate) struct Marked {
    pub live: HashSet<Digest>,
    /// Every `_layers` link: repository, digest, and the link's times.
    pub layer_links: Vec<(RepoName, Digest, ObjectMeta)>,
    pub repositories: usize,
    pub manifests: usize,
}

impl Store {
    /// Mark: every digest reachable from a manifest linked in any
    /// repository, plus the list of every `_layers` link.
    pub(crate) async fn mark(&self) -> Result<Marked> {
        let mut live = HashSet::new();
        let mut layer_links = Vec::new();
        let names = self.all_repositories().await?;
        let mut manifests = 0;
        for name in &names {
            let repo = self.repo(name);
            for d in repo.manifest_digests().await? {
                manifests += 1;
                live.extend(repo.closure(&d).await?);
            }
            for (d, m) in repo.layer_links().await? {
                layer_links.push((name.clone(), d, m));
            }
        }
        Ok(Marked {
            live,
            layer_links,
            repositories: names.len(),
            manifests,
        })
    }

    /// Collect unreferenced blobs (see the module docs for the rules).
    pub async fn gc(&self, opts: &GcOptions) -> Result<GcReport> {
        let started = Instant::now();
        let _guard = if opts.dry_run {
            None
        } else {
            Some(self.gc_write().await)
        };
        let marked = self.mark().await?;
        let now = SystemTime::now();
        let fresh = |t: SystemTime| {
            now.duration_since(t)
                .map(|age| age < opts.grace)
                .unwrap_or(true)
        };
        // Blobs with a recent `_layers` link are in their grace period too.
        let recently_linked: HashSet<&Digest> = marked
            .layer_links
            .iter()
            .filter(|(_, _, m)| !opts.grace.is_zero() && fresh(m.modified))
            .map(|(_, d, _)| d)
            .collect();
        let all = self.blobs().list().await?;
        let mut report = GcReport {
            dry_run: opts.dry_run,
            repositories: marked.repositories,
            manifests: marked.manifests,
            blobs_total: all.len(),
            ..GcReport::default()
        };
        let mut doomed = HashSet::new();
        for (d, m) in all {
            if marked.live.contains(&d) {
                report.blobs_marked += 1;
            } else if recently_linked.contains(&d) || fresh(m.modified) {
                report.blobs_in_grace += 1;
            } else if opts.dry_run || self.blobs().delete(&d).await? {
                report.blobs_removed += 1;
                report.bytes_freed += m.size;
                report.removed.push(GcBlob {
                    digest: d.to_string(),
                    size: m.size,
                });
                doomed.insert(d);
            }
        }
        for (repo, d, _) in &marked.layer_links {
            if !doomed.contains(d) {
                continue;
            }
            if !opts.dry_run {
                self.objects().delete(&layout::layer_link(repo, d)).await?;
            }
            report.links_removed += 1;
        }
        if !opts.dry_run {
            self.usage_forget_all();
        }
        report.removed.sort_by(|a, b| a.digest.cmp(&b.digest));
        report.duration_ms = started.elapsed().as_millis() as u64;
        if !opts.dry_run && report.blobs_removed > 0 {
            tracing::info!(
                blobs = report.blobs_removed,
                bytes = report.bytes_freed,
                links = report.links_removed,
                "garbage collected"
            );
        }
        Ok(report)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::Bytes;

    const MT: &str = "application/vnd.oci.image.manifest.v1+json";

    pub async fn blob(s: &Store, repo: &RepoName, content: &[u8]) -> Digest {
        let d = Digest::sha256_of(content);
        s.blobs()
            .put_small(&d, Bytes::copy_from_slice(content))
            .await
            .unwrap();
        s.repo(repo).link_blob(&d).await.unwrap();
        d
    }

    pub async fn image(s: &Store, repo: &RepoName, layers: &[&Digest]) -> Digest {
        let layers: Vec<_> = layers
            .iter()
            .map(|d| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d.to_string(), "size": 1}))
            .collect();
        let cfg = blob(s, repo, b"{}").await;
        let m = serde_json::json!({
            "schemaVersion": 2, "mediaType": MT,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg.to_string(), "size": 2},
            "layers": layers,
        });
        let bytes = serde_json::to_vec(&m).unwrap();
        let d = Digest::sha256_of(&bytes);
        s.repo(repo)
            .put_manifest(&d, MT, Bytes::from(bytes), None, None)
            .await
            .unwrap();
        d
    }

    pub async fn present(s: &Store, d: &Digest) -> bool {
        s.blobs().size(d).await.unwrap().is_some()
    }

    #[tokio::test]
    async fn usage_cache_follows_changes_and_gc() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let a: RepoName = "team/a".parse().unwrap();
        let b: RepoName = "team/b".parse().unwrap();
        let shared = blob(&s, &a, &[1u8; 1000]).await;
        let own = blob(&s, &a, &[2u8; 500]).await;
        let m1 = image(&s, &a, &[&shared, &own]).await;
        s.repo(&b).link_blob(&shared).await.unwrap();
        let m2 = image(&s, &b, &[&shared]).await;
        let u1 = s.usage("team").await.unwrap();
        assert_eq!(u1, s.namespace_usage("team").await.unwrap());
        // A dangling `_layers` link to content nothing references.
        let orphan = blob(&s, &b, &[3u8; 300]).await;
        assert_eq!(s.usage("team").await.unwrap(), u1 + 300);
        let opts = GcOptions {
            dry_run: false,
            grace: Duration::ZERO,
        };
        let r = s.gc(&opts).await.unwrap();
        assert_eq!(r.blobs_removed, 1, "{r:?}");
        assert_eq!(r.links_removed, 1);
        assert_eq!(s.usage("team").await.unwrap(), u1);
        assert!(!present(&s, &orphan).await);
        s.repo(&a).delete_manifest(&m1).await.unwrap();
        let r = s.gc(&opts).await.unwrap();
        // m1's bytes and its own layer; `shared` and the config live on in b.
        assert_eq!(r.blobs_removed, 2, "{r:?}");
        assert!(!present(&s, &own).await && !present(&s, &m1).await);
        assert!(present(&s, &shared).await && present(&s, &m2).await);
        assert_eq!(
            s.usage("team").await.unwrap(),
            s.namespace_usage("team").await.unwrap()
        );
        // The grace period protects young unreferenced blobs.
        blob(&s, &a, &[4u8; 10]).await;
        let r = s
            .gc(&GcOptions {
                dry_run: false,
                grace: Duration::from_secs(3600),
            })
            .await
            .unwrap();
        assert_eq!((r.blobs_removed, r.blobs_in_grace), (0, 1));
    }
}
