//! The management API's request and response bodies, shared by the server
//! (which serializes them) and the CLI (which reads them back): one
//! definition per shape instead of JSON built and parsed by string keys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::proxy::evict::EvictReport;
pub use crate::proxy::PrefetchReport;
pub use crate::store::gc::GcReport;
pub use crate::store::Artifact;

/// A project (configured, or a local namespace holding pushed images) with
/// its usage against its quota.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProjectView {
    pub name: String,
    /// Defined in the config or through the API (not only a namespace).
    pub configured: bool,
    pub public: bool,
    pub quota: Option<u64>,
    pub max_image_size: Option<u64>,
    pub usage: u64,
    pub repositories: usize,
}

/// A repository with its counts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepositoryView {
    pub name: String,
    pub tags: usize,
    pub artifacts: usize,
    /// A pull-through cache repository (`<remote>/...`), not pushed content.
    #[serde(default)]
    pub cached: bool,
}

/// An image in the pull-through cache (`GET /api/v1/cache`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedImage {
    /// `<remote>/<path>`, e.g. `docker.io/library/alpine`.
    pub repository: String,
    pub remote: String,
    /// Pinned images are never evicted.
    pub pinned: bool,
    #[serde(flatten)]
    pub artifact: Artifact,
}

/// The answer to pinning or unpinning a cached image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PinView {
    pub repository: String,
    pub digest: crate::oci::Digest,
    pub pinned: bool,
}

/// The answer to deleting an artifact.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeletedArtifact {
    pub repository: String,
    pub digest: String,
    pub deleted_tags: Vec<String>,
}

/// The answer to deleting a tag.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeletedTag {
    pub repository: String,
    pub deleted_tag: String,
}

/// A robot account as the API shows it (never its token hash).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RobotView {
    pub name: String,
    /// `robot$<name>`, the login name.
    pub username: String,
    /// Project → actions.
    pub permissions: BTreeMap<String, Vec<String>>,
    #[serde(with = "crate::timefmt::rfc3339")]
    pub created_at: u64,
    #[serde(default, with = "crate::timefmt::rfc3339_opt")]
    pub expires_at: Option<u64>,
    pub revoked: bool,
    pub active: bool,
    pub from_config: bool,
    /// When this wharf process last authenticated it (unix seconds; not
    /// shared between replicas, not kept across restarts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<u64>,
    /// Only in the answer to creating it: shown once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl From<&crate::auth::robots::Robot> for RobotView {
    fn from(r: &crate::auth::robots::Robot) -> RobotView {
        RobotView {
            name: r.name.clone(),
            username: format!("{}{}", crate::auth::ROBOT_PREFIX, r.name),
            permissions: r
                .permissions
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.actions().iter().map(|a| a.to_string()).collect(),
                    )
                })
                .collect(),
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked: r.revoked,
            active: r.active(),
            from_config: r.from_config,
            last_used_at: None,
            token: None,
        }
    }
}

/// `POST /api/v1/robots`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRobot {
    pub name: String,
    #[serde(default)]
    pub permissions: BTreeMap<String, Vec<String>>,
    /// e.g. "30d"; absent: never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<String>,
}

/// `POST /api/v1/projects`: a new project (private, no limits, unless given).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    pub name: String,
    #[serde(default)]
    pub public: bool,
    /// Bytes, or a size like "10GiB"; absent or null: no quota.
    #[serde(
        default,
        deserialize_with = "size_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub quota: Option<Option<u64>>,
    #[serde(
        default,
        deserialize_with = "size_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_image_size: Option<Option<u64>>,
}

/// `PUT /api/v1/projects/{p}`: fields absent stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public: Option<bool>,
    /// Bytes, or a size like "10GiB"; null removes the quota.
    #[serde(
        default,
        deserialize_with = "size_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub quota: Option<Option<u64>>,
    #[serde(
        default,
        deserialize_with = "size_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_image_size: Option<Option<u64>>,
}

/// `null` → Some(None); number → bytes; string → parsed size.
fn size_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    match v {
        serde_json::Value::Null => Ok(Some(None)),
        serde_json::Value::Number(n) => n
            .as_u64()
            .map(|x| Some(Some(x)))
            .ok_or_else(|| serde::de::Error::custom("size must be a non-negative integer")),
        serde_json::Value::String(s) => crate::config::parse_size(&s)
            .map(|x| Some(Some(x)))
            .map_err(serde::de::Error::custom),
        _ => Err(serde::de::Error::custom(
            "size must be a number of bytes or a string like \"10GiB\"",
        )),
    }
}

/// `POST /api/v1/gc`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcRequest {
    #[serde(default)]
    pub dry_run: bool,
    /// Overrides `storage.gc_grace`, e.g. "10m".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace: Option<String>,
}

/// `POST /api/v1/prefetch`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefetchRequest {
    /// `<remote>/<repo>:<tag>` or `@<digest>`.
    pub image: String,
    /// Pin (default) so eviction never removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<bool>,
}

/// The pull-through cache: every remote with its counters and cached images.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheView {
    /// `[cache] max_size`, over all remotes.
    pub max_size: Option<u64>,
    /// Bytes of all cached content, each blob once.
    pub usage: u64,
    pub remotes: Vec<RemoteView>,
}

/// One remote as operators see it: never a secret, only where credentials
/// come from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteView {
    pub name: String,
    pub url: String,
    pub default: bool,
    /// Per credentials entry: `anonymous`, `inline`, `env`, `file`, `aws-sm`, `ecr`...
    pub credentials: Vec<String>,
    pub max_size: Option<u64>,
    pub usage: u64,
    pub manifest_hits: u64,
    pub manifest_misses: u64,
    pub blob_hits: u64,
    pub blob_misses: u64,
    pub stale_served: u64,
    pub upstream_requests: u64,
    pub upstream_errors: u64,
    /// Bytes fetched from the remote.
    pub upstream_bytes: u64,
    /// The last failed upstream request: unix seconds and cause.
    pub last_error: Option<(u64, String)>,
    pub images: Vec<CachedImage>,
}

/// Storage totals and the last garbage collection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StorageView {
    /// From the last store scan (absent before the first one finished).
    pub bytes: Option<u64>,
    pub blobs: Option<u64>,
    pub repositories: usize,
    /// The newest `gc.run` / `gc.dry_run` audit entry.
    pub last_gc: Option<super::audit::AuditEntry>,
}
