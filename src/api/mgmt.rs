//! The management API under `/api/v1/` (JSON): projects with usage against
//! quota, repositories, artifacts grouped by digest, deletion of artifacts
//! and tags, robot accounts, project quotas.
//!
//! Authorization: admins may do everything; a robot sees the projects it
//! has a permission on, and may delete where it has `delete`. With no
//! accounts configured (open mode) everything is allowed, as on `/v2/`.

use std::collections::BTreeMap;

use http::{header, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;

use super::body;
use super::error::ApiError;
use super::{read_limited, Api, Reply};
use crate::auth::{Action, Identity, Subject};
use crate::config::{Perms, Project};
use crate::oci::{Digest, ErrorCode, RepoName, Tag};

fn json(status: StatusCode, v: &impl serde::Serialize) -> Reply {
    let bytes = serde_json::to_vec_pretty(v).map_err(|e| ApiError::internal("encoding JSON", e))?;
    Ok(Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, bytes.len())
        .body(body::full(bytes))?)
}

fn bad_request(detail: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Unsupported).status(400).detail(detail)
}

fn not_found(detail: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::NameUnknown).detail(detail)
}

fn parse_repo(s: &str) -> Result<RepoName, ApiError> {
    s.parse()
        .map_err(|e: crate::oci::NameError| ApiError::new(ErrorCode::NameInvalid).detail(e.to_string()))
}

/// A management endpoint, parsed from the path.
enum Endpoint {
    Projects,
    Project(String),
    ProjectRepos(String),
    Artifacts(RepoName),
    Artifact(RepoName, Digest),
    RepoTag(RepoName, Tag),
    Robots,
    Robot(String),
    Gc,
    Prefetch,
}

fn parse(path: &str) -> Result<Endpoint, ApiError> {
    let rest = path.strip_prefix("/api/v1/").unwrap_or("").trim_end_matches('/');
    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    let nf = || ApiError::new(ErrorCode::Unsupported).status(404).detail(format!("no management endpoint at {path}"));
    Ok(match segs.as_slice() {
        ["projects"] => Endpoint::Projects,
        ["projects", p] => Endpoint::Project(p.to_string()),
        ["projects", p, "repositories"] => Endpoint::ProjectRepos(p.to_string()),
        ["robots"] => Endpoint::Robots,
        ["robots", r] => Endpoint::Robot(r.to_string()),
        ["gc"] => Endpoint::Gc,
        ["prefetch"] => Endpoint::Prefetch,
        ["repositories", ..] if n >= 3 && segs[n - 1] == "artifacts" => {
            Endpoint::Artifacts(parse_repo(&segs[1..n - 1].join("/"))?)
        }
        ["repositories", ..] if n >= 4 && segs[n - 2] == "artifacts" => {
            let d = segs[n - 1]
                .parse()
                .map_err(|e: crate::oci::DigestError| ApiError::new(ErrorCode::DigestInvalid).detail(e.to_string()))?;
            Endpoint::Artifact(parse_repo(&segs[1..n - 2].join("/"))?, d)
        }
        ["repositories", ..] if n >= 4 && segs[n - 2] == "tags" => {
            let t = segs[n - 1]
                .parse()
                .map_err(|e: crate::oci::NameError| ApiError::new(ErrorCode::TagInvalid).detail(e.to_string()))?;
            Endpoint::RepoTag(parse_repo(&segs[1..n - 2].join("/"))?, t)
        }
        _ => return Err(nf()),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRobot {
    name: String,
    #[serde(default)]
    permissions: BTreeMap<String, Vec<String>>,
    /// e.g. "30d"; absent: never expires.
    expires_in: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectUpdate {
    public: Option<bool>,
    /// Bytes, or a size like "10GiB"; null removes the quota.
    #[serde(default, deserialize_with = "size_opt")]
    quota: Option<Option<u64>>,
    #[serde(default, deserialize_with = "size_opt")]
    max_image_size: Option<Option<u64>>,
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
        _ => Err(serde::de::Error::custom("size must be a number of bytes or a string like \"10GiB\"")),
    }
}

impl Api {
    fn is_admin(&self, id: &Identity) -> bool {
        !self.auth.enabled() || matches!(id.subject, Subject::Admin(_))
    }

    fn require_admin(&self, id: &Identity) -> Result<(), ApiError> {
        if self.is_admin(id) {
            return Ok(());
        }
        Err(ApiError::new(ErrorCode::Denied).detail("this needs an admin account"))
    }

    fn can(&self, id: &Identity, repo: &str, action: Action) -> bool {
        self.auth.subject_allowed(&id.subject, repo, action, false)
    }

    /// Serve `/api/v1/...`.
    pub(super) async fn management(&self, req: Request<Incoming>) -> Reply {
        let id = self
            .auth
            .authenticate(req.headers())
            .await
            .map_err(|e| ApiError::new(ErrorCode::Unauthorized).detail(e.to_string()))?;
        if self.auth.enabled() && id.is_anonymous() {
            return Err(ApiError::new(ErrorCode::Unauthorized)
                .detail("the management API needs credentials")
                .header("www-authenticate", "Basic realm=\"wharf\""));
        }
        let ep = parse(req.uri().path())?;
        let m = req.method().clone();
        match (m, ep) {
            (Method::GET, Endpoint::Projects) => self.list_projects(&id).await,
            (Method::GET, Endpoint::Project(p)) => {
                let all = self.project_views(&id).await?;
                let one = all.into_iter().find(|v| v["name"] == p.as_str()).ok_or_else(|| not_found(format!("project {p} not found")))?;
                json(StatusCode::OK, &one)
            }
            (Method::PUT, Endpoint::Project(p)) => {
                self.require_admin(&id)?;
                self.update_project(req, &p).await
            }
            (Method::GET, Endpoint::ProjectRepos(p)) => {
                if !self.can(&id, &format!("{p}/x"), Action::Pull) {
                    return Err(ApiError::new(ErrorCode::Denied).detail(format!("no access to project {p}")));
                }
                let mut out = Vec::new();
                for r in self.store.repositories_in(&p).await? {
                    let tags = self.store.tags(&r).await?.unwrap_or_default().len();
                    let artifacts = self.store.manifest_digests(&r).await?.len();
                    out.push(serde_json::json!({ "name": r.as_str(), "tags": tags, "artifacts": artifacts }));
                }
                json(StatusCode::OK, &out)
            }
            (Method::GET, Endpoint::Artifacts(repo)) => {
                if !self.can(&id, repo.as_str(), Action::Pull) {
                    return Err(ApiError::new(ErrorCode::Denied).detail(format!("no access to {repo}")));
                }
                if !self.store.repo_exists(&repo).await {
                    return Err(not_found(format!("repository {repo} not found")));
                }
                json(StatusCode::OK, &self.store.artifacts(&repo).await?)
            }
            (Method::DELETE, Endpoint::Artifact(repo, d)) => {
                if !self.can(&id, repo.as_str(), Action::Delete) {
                    return Err(ApiError::new(ErrorCode::Denied).detail(format!("no delete permission on {repo}")));
                }
                let subject = match self.store.get_manifest(&repo, &d).await? {
                    Some(m) => crate::oci::manifest::Manifest::parse(&m.bytes, Some(&m.media_type))
                        .ok()
                        .and_then(|p| p.subject)
                        .map(|s| s.digest),
                    None => None,
                };
                let tags = self
                    .store
                    .delete_manifest(&repo, &d, subject.as_ref())
                    .await?
                    .ok_or_else(|| ApiError::new(ErrorCode::ManifestUnknown).detail(format!("{d} not found in {repo}")))?;
                tracing::info!(repo = %repo, digest = %d, tags = ?tags, user = %id.subject.username(), "artifact deleted");
                json(StatusCode::OK, &serde_json::json!({ "repository": repo.as_str(), "digest": d, "deleted_tags": tags }))
            }
            (Method::DELETE, Endpoint::RepoTag(repo, t)) => {
                if !self.can(&id, repo.as_str(), Action::Delete) {
                    return Err(ApiError::new(ErrorCode::Denied).detail(format!("no delete permission on {repo}")));
                }
                if !self.store.untag(&repo, &t).await? {
                    return Err(ApiError::new(ErrorCode::ManifestUnknown).detail(format!("tag {t} not found in {repo}")));
                }
                json(StatusCode::OK, &serde_json::json!({ "repository": repo.as_str(), "deleted_tag": t.as_str() }))
            }
            (Method::GET, Endpoint::Robots) => {
                self.require_admin(&id)?;
                let list: Vec<serde_json::Value> = self.auth.robots().iter().map(robot_view).collect();
                json(StatusCode::OK, &list)
            }
            (Method::POST, Endpoint::Robots) => {
                self.require_admin(&id)?;
                self.create_robot(req).await
            }
            (Method::DELETE, Endpoint::Robot(name)) => {
                self.require_admin(&id)?;
                self.auth.revoke_robot(&name).map_err(|e| match e {
                    crate::auth::RobotError::NotFound(_) => not_found(e.to_string()),
                    crate::auth::RobotError::Io(io) => ApiError::internal("saving robots", io),
                    other => bad_request(other.to_string()),
                })?;
                tracing::info!(robot = %name, by = %id.subject.username(), "robot revoked");
                Ok(Response::builder().status(StatusCode::NO_CONTENT).body(body::empty())?)
            }
            (Method::POST, Endpoint::Gc) => {
                self.require_admin(&id)?;
                self.run_gc(req).await
            }
            (Method::POST, Endpoint::Prefetch) => {
                self.require_admin(&id)?;
                self.prefetch(req).await
            }
            (m, _) => Err(ApiError::new(ErrorCode::Unsupported).detail(format!("method {m} is not allowed here"))),
        }
    }

    /// Every project the caller can see: configured projects plus local
    /// namespaces that exist, with usage against quota.
    async fn project_views(&self, id: &Identity) -> Result<Vec<serde_json::Value>, ApiError> {
        let usage = self.store.usage_by_namespace().await?;
        let mut names: Vec<String> = self.auth.projects().into_iter().map(|p| p.name).collect();
        for ns in usage.keys() {
            if self.proxy.router().by_name(ns).is_none() && !names.contains(ns) {
                names.push(ns.clone());
            }
        }
        names.sort();
        let mut out = Vec::new();
        for name in names {
            if !self.is_admin(id) && !self.can(id, &format!("{name}/x"), Action::Pull) {
                continue;
            }
            let p = self.auth.project(&name);
            let repos = self.store.repositories_in(&name).await?.len();
            out.push(serde_json::json!({
                "name": name,
                "configured": p.is_some(),
                "public": p.as_ref().is_some_and(|p| p.public),
                "quota": p.as_ref().and_then(|p| p.quota),
                "max_image_size": p.as_ref().and_then(|p| p.max_image_size),
                "usage": usage.get(&name).copied().unwrap_or(0),
                "repositories": repos,
            }));
        }
        Ok(out)
    }

    async fn list_projects(&self, id: &Identity) -> Reply {
        json(StatusCode::OK, &self.project_views(id).await?)
    }

    async fn update_project(&self, req: Request<Incoming>, name: &str) -> Reply {
        if name.contains('/') || name.parse::<RepoName>().is_err() {
            return Err(ApiError::new(ErrorCode::NameInvalid).detail(format!("{name:?} is not a valid project name")));
        }
        if self.proxy.router().by_name(name).is_some() {
            return Err(bad_request(format!("{name} is a remote, not a project")));
        }
        let body = read_limited(req, 64 * 1024).await?;
        let u: ProjectUpdate = serde_json::from_slice(&body).map_err(|e| bad_request(format!("invalid JSON: {e}")))?;
        let mut p = self.auth.project(name).unwrap_or(Project {
            name: name.to_string(),
            public: false,
            quota: None,
            max_image_size: None,
        });
        if let Some(v) = u.public {
            p.public = v;
        }
        if let Some(q) = u.quota {
            p.quota = q;
        }
        if let Some(m) = u.max_image_size {
            p.max_image_size = m;
        }
        self.auth.put_project(p.clone()).map_err(|e| ApiError::internal("saving projects", e))?;
        json(StatusCode::OK, &p)
    }

    async fn create_robot(&self, req: Request<Incoming>) -> Reply {
        let body = read_limited(req, 64 * 1024).await?;
        let r: NewRobot = serde_json::from_slice(&body).map_err(|e| bad_request(format!("invalid JSON: {e}")))?;
        let mut perms = BTreeMap::new();
        for (project, actions) in &r.permissions {
            let p = Perms::parse(actions).map_err(bad_request)?;
            perms.insert(project.clone(), p);
        }
        let expires = r
            .expires_in
            .as_deref()
            .map(|s| humantime::parse_duration(s).map_err(|e| bad_request(format!("expires_in {s:?}: {e}"))))
            .transpose()?;
        let (robot, token) = self.auth.create_robot(&r.name, perms, expires).map_err(|e| match e {
            crate::auth::RobotError::Exists(_) => ApiError::new(ErrorCode::Denied).status(409).detail(e.to_string()),
            crate::auth::RobotError::Io(io) => ApiError::internal("saving robots", io),
            other => bad_request(other.to_string()),
        })?;
        tracing::info!(robot = %robot.name, "robot created");
        let mut v = robot_view(&robot);
        v["token"] = serde_json::Value::String(token);
        json(StatusCode::CREATED, &v)
    }

    /// `POST /api/v1/gc` with an optional JSON body
    /// `{"dry_run": bool, "grace": "10m"}` (grace defaults to
    /// `storage.gc_grace`). Answers with the [`crate::store::gc::GcReport`].
    async fn run_gc(&self, req: Request<Incoming>) -> Reply {
        #[derive(Deserialize, Default)]
        #[serde(deny_unknown_fields)]
        struct GcRequest {
            #[serde(default)]
            dry_run: bool,
            grace: Option<String>,
        }
        let body = read_limited(req, 64 * 1024).await?;
        let r: GcRequest = if body.iter().all(|b| b.is_ascii_whitespace()) {
            GcRequest::default()
        } else {
            serde_json::from_slice(&body).map_err(|e| bad_request(format!("invalid JSON: {e}")))?
        };
        let grace = match r.grace.as_deref() {
            Some(g) => humantime::parse_duration(g).map_err(|e| bad_request(format!("grace {g:?}: {e}")))?,
            None => self.gc_grace,
        };
        let opts = crate::store::gc::GcOptions { dry_run: r.dry_run, grace };
        let report = self.store.gc(&opts).await?;
        json(StatusCode::OK, &report)
    }

    /// `POST /api/v1/prefetch` with `{"image": "<remote>/<repo>:<tag>"}`
    /// (or `@<digest>`; optional `"pin": false`): pull the image (for an
    /// index, every platform's manifest) and all its blobs into the cache
    /// and pin it so eviction never removes it.
    async fn prefetch(&self, req: Request<Incoming>) -> Reply {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct PrefetchRequest {
            image: String,
            pin: Option<bool>,
        }
        let body = read_limited(req, 64 * 1024).await?;
        let r: PrefetchRequest = serde_json::from_slice(&body).map_err(|e| bad_request(format!("invalid JSON: {e}")))?;
        let (name, reference) = split_image(&r.image)?;
        let t = match self.proxy.router().route(&name, None) {
            Ok(crate::proxy::Route::Remote(t)) => t,
            Ok(crate::proxy::Route::LocalOrDefault(n, Some(t))) if !self.store.repo_exists(&n).await => t,
            Ok(_) => return Err(bad_request(format!("{name} is not a pull-through (remote) repository"))),
            Err(e) => return Err(bad_request(e.to_string())),
        };
        let top = self.proxy.manifest(&t, &reference).await?;
        let mut todo = vec![top.clone()];
        let (mut manifests, mut blobs, mut bytes) = (0usize, 0usize, top.bytes.len() as u64);
        let mut seen = std::collections::HashSet::new();
        while let Some(m) = todo.pop() {
            manifests += 1;
            let p = crate::oci::manifest::Manifest::parse(&m.bytes, Some(&m.media_type))
                .map_err(|e| bad_request(format!("{}: {e}", m.digest)))?;
            for c in p.manifests {
                if seen.insert(c.digest.clone()) {
                    let child = self.proxy.manifest(&t, &crate::oci::Reference::Digest(c.digest)).await?;
                    bytes += child.bytes.len() as u64;
                    todo.push(child);
                }
            }
            for b in p.config.into_iter().chain(p.layers) {
                if b.urls.as_ref().is_some_and(|u| !u.is_empty()) || !seen.insert(b.digest.clone()) {
                    continue;
                }
                match self.proxy.blob(&t, &b.digest).await? {
                    crate::proxy::BlobSource::Local(_, n) => bytes += n,
                    crate::proxy::BlobSource::Fetching(f, _) => {
                        let done = f.finished().await;
                        match done.phase {
                            crate::proxy::inflight::Phase::Done => bytes += done.written,
                            crate::proxy::inflight::Phase::Failed(e) => {
                                return Err(crate::proxy::ProxyError::Fetch(e).into())
                            }
                            _ => {
                                return Err(ApiError::new(ErrorCode::Unavailable)
                                    .status(502)
                                    .detail(format!("fetch of {} ended unexpectedly", b.digest)))
                            }
                        }
                    }
                }
                blobs += 1;
            }
        }
        let pin = r.pin.unwrap_or(true);
        if pin {
            self.store.pin(&t.cache_repo, &top.digest).await?;
        }
        tracing::info!(image = %r.image, repo = %t.cache_repo, digest = %top.digest, manifests, blobs, bytes, pin, "prefetched");
        json(
            StatusCode::OK,
            &serde_json::json!({
                "image": r.image,
                "repository": t.cache_repo.as_str(),
                "digest": top.digest,
                "manifests": manifests,
                "blobs": blobs,
                "bytes": bytes,
                "pinned": pin,
            }),
        )
    }
}

/// `name:tag`, `name@digest` or `name` (tag `latest`).
fn split_image(image: &str) -> Result<(RepoName, crate::oci::Reference), ApiError> {
    let (name, reference) = if let Some((n, d)) = image.split_once('@') {
        let d: Digest = d
            .parse()
            .map_err(|e: crate::oci::DigestError| ApiError::new(ErrorCode::DigestInvalid).detail(e.to_string()))?;
        (n, crate::oci::Reference::Digest(d))
    } else {
        let slash = image.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (n, t) = match image[slash..].rfind(':') {
            Some(i) => (&image[..slash + i], &image[slash + i + 1..]),
            None => (image, "latest"),
        };
        let t: Tag = t
            .parse()
            .map_err(|e: crate::oci::NameError| ApiError::new(ErrorCode::TagInvalid).detail(e.to_string()))?;
        (n, crate::oci::Reference::Tag(t))
    };
    Ok((parse_repo(name)?, reference))
}

fn robot_view(r: &crate::auth::robots::Robot) -> serde_json::Value {
    let perms: BTreeMap<&String, Vec<&str>> = r.permissions.iter().map(|(k, v)| (k, v.actions())).collect();
    serde_json::json!({
        "name": r.name,
        "username": format!("{}{}", crate::auth::ROBOT_PREFIX, r.name),
        "permissions": perms,
        "created_at": r.created_at,
        "expires_at": r.expires_at,
        "revoked": r.revoked,
        "active": r.active(),
        "from_config": r.from_config,
    })
}
