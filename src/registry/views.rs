//! The management API's request and response bodies, shared by the server
//! (which serializes them) and the CLI (which reads them back): one
//! definition per shape instead of JSON built and parsed by string keys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use super::retention::{RetentionReport, RetentionRules, RetiredArtifact, RetiredTag};
pub use crate::proxy::evict::EvictReport;
pub use crate::store::gc::GcReport;
pub use crate::store::{Artifact, LastRun};

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
    /// When it was last authenticated (kept in the store, saved at most
    /// once a minute per robot).
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

/// Where a prefetch job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Running,
    Done,
    Failed,
}

/// A prefetch job: `POST /api/v1/prefetch` starts one, `GET
/// /api/v1/prefetch/{id}` reads it back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrefetchJob {
    pub id: String,
    /// As asked for, e.g. `docker.io/library/alpine:3.20`.
    pub image: String,
    /// Pinned when done (never evicted).
    pub pin: bool,
    pub state: JobState,
    #[serde(with = "crate::timefmt::rfc3339")]
    pub started_at: u64,
    #[serde(default, with = "crate::timefmt::rfc3339_opt")]
    pub finished_at: Option<u64>,
    /// Every manifest is fetched, so the totals are known (before that,
    /// `blobs_total` and `bytes_total` are 0).
    pub resolved: bool,
    pub manifests: u64,
    pub blobs_done: u64,
    pub blobs_total: u64,
    /// Manifests and blobs, counted while they arrive.
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// Once done: the cache repository and the image's digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
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

/// Storage totals, the last garbage collection and the last eviction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StorageView {
    /// From the last store scan (absent before the first one finished).
    pub bytes: Option<u64>,
    pub blobs: Option<u64>,
    pub repositories: usize,
    /// The last garbage collection (online, scheduled or offline; dry runs too).
    pub last_gc: Option<LastRun>,
    /// The last cache eviction (a cap reached, or a purge).
    pub last_eviction: Option<LastRun>,
}

/// The body of `POST /api/v1/pull-tokens`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPullToken {
    /// `project/repo:tag` or `project/repo@sha256:...` (a local image).
    pub image: String,
    /// Complete pulls allowed (1-1000).
    pub uses: u32,
    /// Lifetime, e.g. `1h` (at most 30 days).
    pub ttl: String,
}

/// A pull token as issued: the password is shown this once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuedPullToken {
    pub id: String,
    /// `pull$<id>`: the username for `docker login`.
    pub username: String,
    /// The secret; never shown again.
    pub password: String,
    pub image: String,
    pub repository: String,
    /// The image's manifest digest the token pulls.
    pub digest: String,
    pub uses: u32,
    /// Unix seconds (RFC 3339 in JSON).
    #[serde(with = "crate::timefmt::rfc3339")]
    pub expires_at: u64,
}

/// A pull token as listed (`GET /api/v1/pull-tokens`): never the secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PullTokenView {
    pub id: String,
    pub username: String,
    pub repository: String,
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    pub uses: u32,
    /// Uses started so far.
    pub used: u32,
    #[serde(with = "crate::timefmt::rfc3339")]
    pub created_at: u64,
    #[serde(with = "crate::timefmt::rfc3339")]
    pub expires_at: u64,
    pub created_by: String,
}

impl From<&crate::auth::pull_tokens::PullToken> for PullTokenView {
    fn from(t: &crate::auth::pull_tokens::PullToken) -> PullTokenView {
        PullTokenView {
            id: t.id.clone(),
            username: t.username(),
            repository: t.repository.clone(),
            digest: t.digest.clone(),
            tag: t.tag.clone(),
            uses: t.uses,
            used: t.used,
            created_at: t.created_at,
            expires_at: t.expires_at,
            created_by: t.created_by.clone(),
        }
    }
}
