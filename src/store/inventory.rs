//! What the store holds, for people and policies: artifacts of a
//! repository with their tags and sizes, usage per namespace (each blob
//! counted once however many repositories and tags share it), and pull
//! times.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::{blocking, Store};
use crate::oci::manifest::Manifest;
use crate::oci::{Digest, RepoName};

/// One manifest of a repository and what it references.
#[derive(Debug, Clone, Serialize)]
pub struct Artifact {
    pub digest: Digest,
    pub media_type: String,
    pub tags: Vec<String>,
    /// Manifest bytes + every unique blob it references (for an index, its
    /// children's too), each counted once.
    pub size: u64,
    /// Unix seconds.
    pub pushed_at: u64,
    /// Unix seconds; `None` if never pulled since tracking began.
    pub last_pulled_at: Option<u64>,
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Pull times are written at most this often per manifest.
const PULL_RECORD_INTERVAL: Duration = Duration::from_secs(60);

impl Store {
    /// Digests of the manifests `repo` links.
    pub async fn manifest_digests(&self, repo: &RepoName) -> io::Result<Vec<Digest>> {
        let dir = self.layout().manifests_dir(repo);
        let mut out: Vec<Digest> = blocking(move || super::gc::digest_files(&dir))
            .await?
            .into_iter()
            .map(|(d, _)| d)
            .collect();
        out.sort();
        Ok(out)
    }

    /// Every blob digest (and manifest digest) reachable from manifest `d`
    /// in `repo`, including index children. Missing pieces are skipped.
    pub async fn closure(&self, repo: &RepoName, d: &Digest) -> io::Result<BTreeSet<Digest>> {
        let mut out = BTreeSet::new();
        let mut todo = vec![d.clone()];
        while let Some(m) = todo.pop() {
            if !out.insert(m.clone()) {
                continue;
            }
            let Some(stored) = self.get_manifest(repo, &m).await? else { continue };
            let Ok(p) = Manifest::parse(&stored.bytes, Some(&stored.media_type)) else { continue };
            for c in p.manifests {
                todo.push(c.digest);
            }
            for b in p.config.into_iter().chain(p.layers) {
                if b.urls.as_ref().is_none_or(|u| u.is_empty()) {
                    out.insert(b.digest);
                }
            }
        }
        Ok(out)
    }

    /// Sum of the sizes of `digests` present in the store.
    pub async fn total_size(&self, digests: impl IntoIterator<Item = &Digest>) -> io::Result<u64> {
        let mut n = 0;
        for d in digests {
            n += self.blob_size(d).await?.unwrap_or(0);
        }
        Ok(n)
    }

    /// The artifacts of `repo`, grouped by digest with all their tags.
    pub async fn artifacts(&self, repo: &RepoName) -> io::Result<Vec<Artifact>> {
        let mut tags_of: HashMap<Digest, Vec<String>> = HashMap::new();
        for t in self.tags(repo).await?.unwrap_or_default() {
            let Ok(tag) = t.parse() else { continue };
            if let Some(d) = self.resolve_tag(repo, &tag).await? {
                tags_of.entry(d).or_default().push(t);
            }
        }
        let mut out = Vec::new();
        for d in self.manifest_digests(repo).await? {
            let link = self.layout().manifest_link(repo, &d);
            let pulled = self.layout().manifest_link(repo, &d).with_extension("pulled");
            let (pushed_at, last_pulled_at) = blocking(move || {
                let pushed = std::fs::metadata(&link).and_then(|m| m.modified()).map(secs).unwrap_or(0);
                let pulled = std::fs::metadata(&pulled).and_then(|m| m.modified()).map(secs).ok();
                Ok((pushed, pulled))
            })
            .await?;
            let media_type = self.manifest_media_type(repo, &d).await?.unwrap_or_default();
            let size = self.total_size(&self.closure(repo, &d).await?).await?;
            let mut tags = tags_of.remove(&d).unwrap_or_default();
            tags.sort();
            out.push(Artifact {
                digest: d,
                media_type,
                tags,
                size,
                pushed_at,
                last_pulled_at,
            });
        }
        out.sort_by(|a, b| b.pushed_at.cmp(&a.pushed_at).then(a.digest.cmp(&b.digest)));
        Ok(out)
    }

    /// Repositories whose first name component is `namespace`.
    pub async fn repositories_in(&self, namespace: &str) -> io::Result<Vec<RepoName>> {
        Ok(self
            .repositories()
            .await?
            .into_iter()
            .filter(|r| r.split('/').next() == Some(namespace))
            .filter_map(|r| r.parse().ok())
            .collect())
    }

    /// Every digest (blobs and manifests) a namespace holds, each once.
    pub async fn namespace_digests(&self, namespace: &str) -> io::Result<BTreeSet<Digest>> {
        let mut all = BTreeSet::new();
        for repo in self.repositories_in(namespace).await? {
            for d in self.manifest_digests(&repo).await? {
                all.insert(d);
            }
            let dir = self.layout().repo_dir(&repo).join("_layers");
            let linked: Vec<Digest> = blocking(move || super::gc::digest_files(&dir))
                .await?
                .into_iter()
                .map(|(d, _)| d)
                .collect();
            all.extend(linked);
        }
        Ok(all)
    }

    /// Bytes a namespace uses: every blob and manifest linked by any of its
    /// repositories, each counted once.
    pub async fn namespace_usage(&self, namespace: &str) -> io::Result<u64> {
        let all = self.namespace_digests(namespace).await?;
        self.total_size(&all).await
    }

    /// Usage of every top-level namespace.
    pub async fn usage_by_namespace(&self) -> io::Result<BTreeMap<String, u64>> {
        let mut out = BTreeMap::new();
        let mut seen = BTreeSet::new();
        for r in self.repositories().await? {
            let ns = r.split('/').next().unwrap_or("").to_string();
            if seen.insert(ns.clone()) {
                let u = self.namespace_usage(&ns).await?;
                out.insert(ns, u);
            }
        }
        Ok(out)
    }

    /// Note that manifest `d` of `repo` was pulled (at most once a minute:
    /// the pull time is the mtime of a marker beside the revision link).
    pub async fn record_pull(&self, repo: &RepoName, d: &Digest) {
        let key = format!("{repo}@{d}");
        if self.inner.pull_marks.get(&key).is_some() {
            return;
        }
        self.inner.pull_marks.insert(key, ());
        let marker = self.layout().manifest_link(repo, d).with_extension("pulled");
        let _ = blocking(move || {
            let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&marker)?;
            f.set_modified(SystemTime::now())
        })
        .await;
    }
}

pub(super) fn pull_marks() -> moka::sync::Cache<String, ()> {
    moka::sync::Cache::builder()
        .max_capacity(100_000)
        .time_to_live(PULL_RECORD_INTERVAL)
        .build()
}
