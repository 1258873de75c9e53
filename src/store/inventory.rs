//! What a repository holds, for people and policies: the closure of a
//! manifest (everything it references) and the artifacts of a repository
//! grouped by digest with their tags, sizes and times.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::{StreamExt as _, TryStreamExt as _};
use serde::{Deserialize, Serialize};

use super::{PageFrom, Repo, Result};
use crate::oci::manifest::Manifest;
use crate::oci::{Digest, Platform};

/// Small reads in flight at once when reading a repository's tags or
/// manifest times.
pub(super) const READ_AHEAD: usize = 16;

/// One manifest of a repository and what it references.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Artifact {
    pub digest: Digest,
    pub media_type: String,
    pub tags: Vec<String>,
    /// Manifest bytes + every unique blob it references (for an index, its
    /// children's too), each counted once.
    pub size: u64,
    /// Unix seconds (RFC 3339 in JSON).
    #[serde(with = "crate::timefmt::rfc3339")]
    pub pushed_at: u64,
    /// Unix seconds (RFC 3339 in JSON); `None` if never pulled since
    /// tracking began.
    #[serde(default, with = "crate::timefmt::rfc3339_opt")]
    pub last_pulled_at: Option<u64>,
    /// An index's platforms (`linux/amd64`, `linux/arm64/v8`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    /// The manifest this one refers to (a signature, an SBOM...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// What a manifest says about itself, for an [`Artifact`].
struct Facts {
    platforms: Vec<String>,
    subject: Option<Digest>,
    artifact_type: Option<String>,
    annotations: BTreeMap<String, String>,
}

fn facts(m: Option<Manifest>) -> Facts {
    let Some(m) = m else {
        return Facts {
            platforms: Vec::new(),
            subject: None,
            artifact_type: None,
            annotations: BTreeMap::new(),
        };
    };
    // Plain images are not "artifacts" with a type worth showing.
    let artifact_type = m
        .effective_artifact_type()
        .filter(|t| !t.contains("image.config") && !t.contains("container.image"));
    Facts {
        platforms: m
            .manifests
            .iter()
            .filter_map(|c| {
                c.platform
                    .as_ref()
                    .and_then(Platform::from_json)
                    .map(|p| p.to_string())
            })
            .collect(),
        subject: m.subject.map(|s| s.digest),
        artifact_type,
        annotations: m.annotations.unwrap_or_default(),
    }
}

pub(super) fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Repo<'_> {
    /// Every blob digest (and manifest digest) reachable from manifest `d`,
    /// including index children. Missing pieces are skipped; foreign layers
    /// (with `urls`) are not blobs of this registry.
    pub async fn closure(&self, d: &Digest) -> Result<BTreeSet<Digest>> {
        let mut out = BTreeSet::new();
        let mut todo = vec![d.clone()];
        while let Some(m) = todo.pop() {
            if !out.insert(m.clone()) {
                continue;
            }
            let Some(stored) = self.manifest(&m).await? else {
                continue;
            };
            let Ok(p) = Manifest::parse(&stored.bytes, Some(&stored.media_type)) else {
                continue;
            };
            todo.extend(p.manifests.into_iter().map(|c| c.digest));
            for b in p.config.into_iter().chain(p.layers) {
                if !b.is_foreign() {
                    out.insert(b.digest);
                }
            }
        }
        Ok(out)
    }

    /// Which tags point at which manifest.
    pub async fn tags_by_digest(&self) -> Result<HashMap<Digest, Vec<String>>> {
        let mut out: HashMap<Digest, Vec<String>> = HashMap::new();
        let targets = futures_util::stream::iter(self.all_tags().await?)
            .map(|t| async move {
                let target = match t.parse() {
                    Ok(tag) => self.tag(&tag).await?,
                    Err(_) => None,
                };
                Ok::<_, super::StoreError>((t, target))
            })
            .buffered(READ_AHEAD);
        let all: Vec<(String, Option<Digest>)> = targets.try_collect().await?;
        for (t, d) in all {
            if let Some(d) = d {
                out.entry(d).or_default().push(t);
            }
        }
        Ok(out)
    }

    /// Every tag with the digest it points at and when it was last set
    /// (pushed), unsorted; unreadable tags are skipped.
    pub async fn tag_times(&self) -> Result<Vec<(String, Digest, SystemTime)>> {
        let all = futures_util::stream::iter(self.all_tags().await?)
            .map(|t| async move {
                let Ok(tag) = t.parse::<crate::oci::Tag>() else {
                    return Ok(None);
                };
                let (Some(d), Some(m)) = (
                    self.tag(&tag).await?,
                    self.store
                        .objects()
                        .stat(&super::layout::tag(self.name(), &tag))
                        .await?,
                ) else {
                    return Ok(None);
                };
                Ok::<_, super::StoreError>(Some((t, d, m.modified)))
            })
            .buffered(READ_AHEAD);
        let found: Vec<Option<(String, Digest, SystemTime)>> = all.try_collect().await?;
        Ok(found.into_iter().flatten().collect())
    }

    /// The artifacts, grouped by digest with all their tags, newest first.
    pub async fn artifacts(&self) -> Result<Vec<Artifact>> {
        Ok(self
            .artifacts_page(&PageFrom::Skip(0), usize::MAX)
            .await?
            .map(|p| p.0)
            .unwrap_or_default())
    }

    /// At most `n` artifacts from `from`, newest first, and how many there
    /// are in all; `None` when `from` names an artifact that is not there.
    /// The order and the tags come from the repository's indexes, so only
    /// the page's sizes and facts are read from the store.
    pub async fn artifacts_page(
        &self,
        from: &PageFrom,
        n: usize,
    ) -> Result<Option<(Vec<Artifact>, usize)>> {
        let Some(page) = self.manifests_by_time(from, n).await? else {
            return Ok(None);
        };
        let total = self.manifest_count().await?;
        let wanted: HashSet<&Digest> = page.iter().map(|(_, d)| d).collect();
        let mut tags_of = self.tags_of(&wanted).await?;
        let mut out = Vec::with_capacity(page.len());
        for (pushed_at, d) in page {
            let mut tags = tags_of.remove(&d).unwrap_or_default();
            tags.sort();
            out.push(self.artifact(d, pushed_at, tags).await?);
        }
        Ok(Some((out, total)))
    }

    async fn artifact(&self, d: Digest, pushed_at: u64, tags: Vec<String>) -> Result<Artifact> {
        let last_pulled_at = self.last_pull(&d).await?.map(secs);
        let media_type = self.manifest_media_type(&d).await?.unwrap_or_default();
        let size = self
            .store
            .blobs()
            .total_size(&self.closure(&d).await?)
            .await?;
        let parsed = self
            .manifest(&d)
            .await?
            .and_then(|m| Manifest::parse(&m.bytes, Some(&m.media_type)).ok());
        let f = facts(parsed);
        Ok(Artifact {
            digest: d,
            media_type,
            tags,
            size,
            pushed_at,
            last_pulled_at,
            platforms: f.platforms,
            subject: f.subject,
            artifact_type: f.artifact_type,
            annotations: f.annotations,
        })
    }
}
