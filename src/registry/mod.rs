//! The registry's domain layer, between the HTTP edge and the store.
//!
//! Owns the decisions: which namespace a name belongs to
//! ([`namespaces`]), projects with their quotas and image-size limits,
//! finishing and mounting uploads, accepting and deleting manifests, and
//! the management operations (views, robots, GC, prefetch). The API edge
//! only translates HTTP into these calls and their results (or typed
//! [`RegistryError`]s) back into responses. It must never speak HTTP or
//! build a storage key.

mod admin;
pub mod audit;
pub mod bundle;
mod cache;
mod manifests;
pub mod namespaces;
mod overview;
mod prefetch;
pub mod projects;
mod pull_tokens;
mod quota;
pub mod retention;
pub mod scan;
mod uploads;
pub mod views;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::auth::{Action, Authorizer, Identity};
use crate::config::Config;
use crate::notify::Notifier;
use crate::oci::{Digest, RepoName};
use crate::proxy::{PolicyError, Proxy, ProxyError, Router};
use crate::store::{Store, StoreError};
pub use namespaces::{Intent, Namespaces, Target};

/// How a client reads a blob: a `HEAD` is always answered by wharf; a `GET`
/// may be redirected to the object store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobRead {
    Head,
    Get,
}
pub use prefetch::MAX_KEPT_JOBS;
pub use projects::Projects;
pub use pull_tokens::PullRequest;
pub use uploads::Mount;

/// Why a registry operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("repository {0} not found")]
    NameUnknown(RepoName),
    #[error("{0}")]
    NameInvalid(String),
    #[error("{0}")]
    ManifestUnknown(String),
    #[error("{0}")]
    BlobUnknown(String),
    #[error("{0}")]
    ManifestInvalid(String),
    #[error("{0}")]
    ManifestBlobUnknown(String),
    #[error("{0}")]
    DigestInvalid(String),
    #[error("project {project} is over its quota: quota {quota} bytes, usage {usage} bytes, this push {size} bytes")]
    QuotaExceeded {
        project: String,
        quota: u64,
        usage: u64,
        size: u64,
    },
    #[error("{} is {size} bytes, more than project {project}'s max image size of {max} bytes", match digest { Some(d) => format!("image {d}"), None => "this push".to_string() })]
    ImageTooLarge {
        project: String,
        digest: Option<Digest>,
        size: u64,
        max: u64,
    },
    #[error("{0}")]
    Denied(String),
    /// Credentials are needed (none exist, or none were sent).
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    /// A per-client or global bound was reached; retry later.
    #[error("{0}")]
    TooMany(String),
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// Settings the registry applies to requests.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest manifest accepted.
    pub max_manifest_size: usize,
    /// `storage.gc_grace`, the default for on-demand GC.
    pub gc_grace: Duration,
    /// `[limits]`.
    pub bounds: crate::config::Limits,
}

/// Everything a request may touch, behind the domain rules.
pub struct Registry {
    pub store: Store,
    /// Shared with the prefetch jobs it runs in the background.
    pub proxy: Arc<Proxy>,
    pub auth: Authorizer,
    pub projects: Arc<Projects>,
    pub limits: Limits,
    /// Registry events to the `[[notifications]]` endpoints.
    pub notifier: Notifier,
    /// `[retention]`: schedule and whether GC follows a run.
    pub retention: crate::config::RetentionSchedule,
    namespaces: Namespaces,
    /// `server.mode = "mirror"`: pushes and deletes are refused.
    mirror: bool,
    /// Per-project locks for the final quota check of a push.
    project_locks: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Prefetches running and recently finished.
    prefetches: prefetch::Jobs,
    /// Vulnerability scans (see [`scan`]).
    scans: scan::Scanning,
}

impl Registry {
    /// Wire the registry over `store` as `cfg` says.
    pub async fn open(cfg: &Config, store: Store) -> anyhow::Result<Registry> {
        let router = Router::new(cfg.remotes.clone());
        let source = cfg
            .server
            .external_url
            .clone()
            .unwrap_or_else(|| cfg.listen.to_string());
        let notifier = Notifier::start(&cfg.notifications, store.clone(), source);
        let proxy = Arc::new(Proxy::new(
            store.clone(),
            router.clone(),
            cfg.cache_max_size,
            cfg.max_manifest_size,
            notifier.clone(),
        )?);
        let projects = Arc::new(Projects::load(store.clone(), &cfg.projects).await?);
        let auth = Authorizer::new(&cfg.auth, &cfg.limits, store.clone(), projects.clone()).await?;
        let scans = scan::Scanning::new(
            store.clone(),
            crate::config::active_scanner(&cfg.scanners),
            auth.scan_credentials(),
            cfg.listen,
        )?;
        Ok(Registry {
            store,
            proxy,
            notifier,
            auth,
            projects,
            limits: Limits {
                max_manifest_size: cfg.max_manifest_size,
                gc_grace: cfg.gc_grace,
                bounds: cfg.limits.clone(),
            },
            retention: cfg.retention.clone(),
            namespaces: Namespaces::new(router, cfg.server.mode == crate::config::Mode::Mirror),
            mirror: cfg.server.mode == crate::config::Mode::Mirror,
            project_locks: Default::default(),
            prefetches: prefetch::Jobs::new(cfg.limits.max_prefetch_jobs),
            scans,
        })
    }

    pub fn namespaces(&self) -> &Namespaces {
        &self.namespaces
    }

    /// Where `name` lives for `intent` (see [`namespaces`]).
    pub async fn resolve(
        &self,
        name: &RepoName,
        ns: Option<&str>,
        intent: Intent,
    ) -> Result<Target> {
        if self.mirror && intent == Intent::Write {
            return Err(RegistryError::Denied(
                "this wharf is a read-only mirror (server.mode = \"mirror\"): pushes and deletes are refused".into(),
            ));
        }
        let locals = Locals {
            store: &self.store,
            projects: &self.projects,
        };
        self.namespaces.resolve(name, ns, intent, &locals).await
    }

    /// Whether `name` would be served from a remote (token grants).
    pub async fn is_remote(&self, name: &str) -> bool {
        let Ok(n) = name.parse::<RepoName>() else {
            return false;
        };
        self.resolve(&n, None, Intent::PullManifest)
            .await
            .is_ok_and(|t| t.is_remote())
    }

    /// Whether `id` (its subject, and its token's scopes) may do `action`
    /// on the stored repository `name` (a cache repository counts as
    /// remote).
    pub fn may(&self, id: &Identity, name: &RepoName, action: Action) -> bool {
        self.auth.allowed(
            id,
            name.as_str(),
            action,
            self.namespaces.is_cache_repo(name),
        )
    }

    /// Whether `id`'s subject may do `action` on `name`, whatever its
    /// token's scopes (listings show what the account could pull).
    pub fn subject_may(&self, id: &Identity, name: &RepoName, action: Action) -> bool {
        self.auth.subject_allowed(
            &id.subject,
            name.as_str(),
            action,
            self.namespaces.is_cache_repo(name),
        )
    }
}

/// The resolver's view of local names.
struct Locals<'a> {
    store: &'a Store,
    projects: &'a Projects,
}

#[async_trait]
impl namespaces::LocalNames for Locals<'_> {
    fn is_project(&self, namespace: &str) -> bool {
        self.projects.get(namespace).is_some()
    }

    async fn has_content(&self, namespace: &str) -> Result<bool, StoreError> {
        self.store.namespace_exists(namespace).await
    }

    async fn repo_exists(&self, name: &RepoName) -> Result<bool, StoreError> {
        self.store.repo_exists(name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{password, Subject};
    use crate::oci::manifest::{OCI_INDEX, OCI_MANIFEST};
    use crate::oci::Reference;
    use bytes::Bytes;

    const CONFIG: &str = r#"
remotes = []
[[projects]]
name = "team"
quota = "1000"
[[projects]]
name = "b"
"#;

    async fn registry(extra: &str) -> (Registry, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::RawConfig::parse(&format!("{CONFIG}{extra}"))
            .unwrap()
            .validate(&Default::default())
            .unwrap();
        let store = Store::open(dir.path()).unwrap();
        (Registry::open(&cfg, store).await.unwrap(), dir)
    }

    fn name(s: &str) -> RepoName {
        s.parse().unwrap()
    }

    async fn push(r: &Registry, repo: &str, bytes: &[u8]) -> Digest {
        let d = Digest::sha256_of(bytes);
        let body =
            futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::copy_from_slice(bytes))]);
        r.put_blob(&name(repo), &d, Some(bytes.len() as u64), body)
            .await
            .unwrap();
        d
    }

    fn image(config: &Digest, subject: Option<&Digest>) -> Bytes {
        let mut m = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 3},
            "layers": [],
        });
        if let Some(s) = subject {
            m["subject"] = serde_json::json!({"mediaType": OCI_INDEX, "digest": s, "size": 1});
            m["artifactType"] = "application/x-signature".into();
        }
        Bytes::from(serde_json::to_vec(&m).unwrap())
    }

    #[tokio::test]
    async fn quota_refuses_with_the_numbers_and_dedup_is_free() {
        let (r, _d) = registry("").await;
        let a = vec![1u8; 600];
        push(&r, "team/app", &a).await;
        let b = vec![2u8; 600];
        let d = Digest::sha256_of(&b);
        let body = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from(b.clone()))]);
        let e = r
            .put_blob(&name("team/app"), &d, Some(600), body)
            .await
            .unwrap_err();
        assert!(
            matches!(e, RegistryError::QuotaExceeded { ref project, quota: 1000, usage: 600, size: 600 } if project == "team"),
            "{e:?}"
        );
        assert_eq!(
            r.store.blobs().size(&d).await.unwrap(),
            None,
            "a refused blob was stored"
        );
        // The same bytes again, in another repository of the project: free.
        push(&r, "team/other", &a).await;
        assert_eq!(r.store.usage("team").await.unwrap(), 600);
    }

    #[tokio::test]
    async fn mounts_need_pull_on_the_source() {
        let robot = password::hash("tok").unwrap();
        let auth = format!("[[auth.robots]]\nname = \"ci\"\ntoken_hash = \"{robot}\"\npermissions = {{ a = [\"push\"] }}\n");
        let (r, _d) = registry(&auth).await;
        let d = push(&r, "b/app", b"layer").await;
        let ci = Identity {
            subject: Subject::Robot("ci".into()),
            token_access: None,
        };
        let admin = Identity {
            subject: Subject::Admin("root".into()),
            token_access: None,
        };
        assert_eq!(
            r.mount(&ci, &name("a/app"), &d, None).await.unwrap(),
            Mount::NotMounted
        );
        assert_eq!(
            r.mount(&ci, &name("a/app"), &d, Some(&name("b/app")))
                .await
                .unwrap(),
            Mount::NotMounted
        );
        assert!(!r.store.repo(&name("a/app")).has_blob(&d).await.unwrap());
        assert_eq!(
            r.mount(&admin, &name("a/app"), &d, Some(&name("b/app")))
                .await
                .unwrap(),
            Mount::Mounted
        );
        assert!(r.store.repo(&name("a/app")).has_blob(&d).await.unwrap());
    }

    #[tokio::test]
    async fn a_pull_token_covers_an_index_its_children_and_blobs_once() {
        let (r, _d) = registry("").await;
        let repo = name("b/multi");
        let cfg = push(&r, "b/multi", b"{}\n").await;
        let child_ref = Reference::Digest(Digest::sha256_of(&image(&cfg, None)));
        let child = r
            .put_manifest(&repo, &child_ref, Some(OCI_MANIFEST), image(&cfg, None))
            .await
            .unwrap()
            .digest;
        let index = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": child, "size": image(&cfg, None).len()}]});
        let index = Bytes::from(serde_json::to_vec(&index).unwrap());
        let root = r
            .put_manifest(&repo, &"v1".parse().unwrap(), Some(OCI_INDEX), index)
            .await
            .unwrap()
            .digest;
        let other = push(&r, "b/multi", b"not in the image").await;
        let admin = Identity {
            subject: Subject::Admin("root".into()),
            token_access: None,
        };
        let req = views::NewPullToken {
            image: "b/multi:v1".into(),
            uses: 1,
            ttl: "1h".into(),
        };
        let t = r.issue_pull_token(&admin, req).await.unwrap();
        assert_eq!(t.digest, root.to_string());
        let id = Identity {
            subject: Subject::PullToken(t.id.clone()),
            token_access: None,
        };
        let tag = Reference::Tag("v1".parse().unwrap());
        let admit = |what| r.admit_pull_token(&id, &t.id, what);
        assert!(
            matches!(admit(PullRequest::Blob(&repo, &cfg)).await, Err(RegistryError::Denied(m)) if m.contains("no pull in progress"))
        );
        admit(PullRequest::Manifest(&repo, &tag)).await.unwrap();
        let root_ref = Reference::Digest(root.clone());
        admit(PullRequest::Manifest(&repo, &root_ref))
            .await
            .unwrap();
        admit(PullRequest::Manifest(&repo, &child_ref))
            .await
            .unwrap();
        admit(PullRequest::Blob(&repo, &cfg)).await.unwrap();
        assert!(
            matches!(admit(PullRequest::Blob(&repo, &other)).await, Err(RegistryError::Denied(m)) if m.contains("pulls b/multi@"))
        );
        assert!(matches!(
            admit(PullRequest::Other).await,
            Err(RegistryError::Denied(_))
        ));
        assert!(
            matches!(admit(PullRequest::Manifest(&repo, &tag)).await, Err(RegistryError::Denied(m)) if m.contains("used up"))
        );
    }

    #[tokio::test]
    async fn deleting_a_referrer_removes_it_from_its_subject() {
        let (r, _d) = registry("").await;
        let repo = name("b/app");
        let cfg = push(&r, "b/app", b"{}\n").await;
        let subject = r
            .put_manifest(
                &repo,
                &"v1".parse().unwrap(),
                Some(OCI_MANIFEST),
                image(&cfg, None),
            )
            .await
            .unwrap();
        let sig = image(&cfg, Some(&subject.digest));
        let sig_d = Digest::sha256_of(&sig);
        let accepted = r
            .put_manifest(
                &repo,
                &crate::oci::Reference::Digest(sig_d.clone()),
                Some(OCI_MANIFEST),
                sig,
            )
            .await
            .unwrap();
        assert_eq!(accepted.subject.as_ref(), Some(&subject.digest));
        let listed = r
            .referrers(&repo, &subject.digest, None, None, 100)
            .await
            .unwrap();
        assert_eq!(
            listed.iter().map(|x| &x.digest).collect::<Vec<_>>(),
            vec![&sig_d]
        );
        assert!(r
            .referrers(&repo, &subject.digest, Some("other/type"), None, 100)
            .await
            .unwrap()
            .is_empty());
        r.delete_artifact(&repo, &sig_d).await.unwrap();
        assert!(r
            .referrers(&repo, &subject.digest, None, None, 100)
            .await
            .unwrap()
            .is_empty());
        // Deleting by digest takes the tags with it.
        assert_eq!(
            r.delete_artifact(&repo, &subject.digest).await.unwrap(),
            vec!["v1".to_string()]
        );
        assert!(matches!(
            r.manifest(&repo, &"v1".parse().unwrap()).await,
            Err(RegistryError::ManifestUnknown(_))
        ));
    }
}
