//! What a repository holds, for people and policies: the closure of a
//! manifest (everything it references) and the artifacts of a repository
//! grouped by digest with their tags, sizes and times.

use std::collections::{BTreeSet, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{Repo, Result};
use crate::oci::manifest::Manifest;
use crate::oci::Digest;

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
}

pub(super) fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
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
            let Some(stored) = self.manifest(&m).await? else { continue };
            let Ok(p) = Manifest::parse(&stored.bytes, Some(&stored.media_type)) else { continue };
            todo.extend(p.manifests.into_iter().map(|c| c.digest));
            for b in p.config.into_iter().chain(p.layers) {
                if b.urls.as_ref().is_none_or(|u| u.is_empty()) {
                    out.insert(b.digest);
                }
            }
        }
        Ok(out)
    }

    /// Which tags point at which manifest.
    pub async fn tags_by_digest(&self) -> Result<HashMap<Digest, Vec<String>>> {
        let mut out: HashMap<Digest, Vec<String>> = HashMap::new();
        for t in self.all_tags().await? {
            let Ok(tag) = t.parse() else { continue };
            if let Some(d) = self.tag(&tag).await? {
                out.entry(d).or_default().push(t);
            }
        }
        Ok(out)
    }

    /// The artifacts, grouped by digest with all their tags, newest first.
    pub async fn artifacts(&self) -> Result<Vec<Artifact>> {
        let mut tags_of = self.tags_by_digest().await?;
        let mut out = Vec::new();
        for d in self.manifest_digests().await? {
            let pushed_at = self.manifest_meta(&d).await?.map(|m| secs(m.modified)).unwrap_or(0);
            let last_pulled_at = self.last_pull(&d).await?.map(secs);
            let media_type = self.manifest_media_type(&d).await?.unwrap_or_default();
            let size = self.store.blobs().total_size(&self.closure(&d).await?).await?;
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
}
