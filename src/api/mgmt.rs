//! The management API under `/api/v1/` (JSON): projects with usage against
//! quota, repositories, artifacts grouped by digest, deletion of artifacts
//! and tags, robot accounts, the pull-through cache (list, pin, purge), GC,
//! prefetch jobs and the audit trail. Each endpoint parses its path and body,
//! calls the registry layer (which applies the permission rules) and
//! returns the shared view types of [`crate::registry::views`]. The
//! OpenAPI document describing all of it ([`OPENAPI`]) is public.

use http::{header, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;

use super::body;
use super::error::ApiError;
use super::handlers::listing::Page;
use super::{read_limited, Api, Reply};
use crate::oci::{Digest, ErrorCode, Reference, RepoName, Tag};
use crate::registry::views::{DeletedArtifact, DeletedTag, GcRequest};
use crate::store::PageFrom;

/// The OpenAPI 3 document for `/api/v1`, served at `/api/v1/openapi.json`
/// and checked against real answers by `tests/openapi.rs`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Largest management request body.
const MAX_BODY: usize = 64 * 1024;

fn json(status: StatusCode, v: &impl serde::Serialize) -> Reply {
    let bytes = serde_json::to_vec_pretty(v).map_err(|e| ApiError::internal("encoding JSON", e))?;
    Ok(Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, bytes.len())
        .body(body::full(bytes))?)
}

/// Read a JSON body; an empty body is `if_empty` when given.
async fn body_json<T: DeserializeOwned>(
    req: Request<Incoming>,
    if_empty: Option<T>,
) -> Result<T, ApiError> {
    let bytes = read_limited(req, MAX_BODY).await?;
    if let Some(v) = if_empty.filter(|_| bytes.iter().all(|b| b.is_ascii_whitespace())) {
        return Ok(v);
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(ErrorCode::BadRequest).explain(format!("invalid JSON: {e}")))
}

fn parse_reference(s: &str) -> Result<Reference, ApiError> {
    s.parse().map_err(|e: crate::oci::NameError| {
        ApiError::new(ErrorCode::BadRequest)
            .explain(format!("{s:?} is neither a tag nor a digest: {e}"))
    })
}

pub(crate) fn parse_repo(s: &str) -> Result<RepoName, ApiError> {
    s.parse().map_err(|e: crate::oci::NameError| {
        ApiError::new(ErrorCode::NameInvalid).explain(e.to_string())
    })
}

pub(crate) fn parse_digest(s: &str) -> Result<Digest, ApiError> {
    s.parse().map_err(|e: crate::oci::DigestError| {
        ApiError::new(ErrorCode::DigestInvalid).explain(e.to_string())
    })
}

/// A management endpoint, parsed from the path.
#[derive(Debug)]
pub enum Endpoint {
    Projects,
    Project(String),
    ProjectRepos(String),
    Retention(String),
    RetentionRun(String),
    Scanning(String),
    Repositories,
    Artifacts(RepoName),
    Artifact(RepoName, Digest),
    ArtifactScan(RepoName, Digest),
    ScanReport(RepoName, Digest),
    RepoTag(RepoName, Tag),
    Robots,
    Robot(String),
    Gc,
    Prefetch,
    PrefetchJob(String),
    PullTokens,
    PullToken(String),
    Audit,
    Cache,
    CacheRepo(RepoName),
    CachePin(RepoName, Reference),
    CacheImage(RepoName, Reference),
    Storage,
    Export,
    Import,
}

/// Parse the path of a `/api/v1/...` request.
pub fn parse(path: &str) -> Result<Endpoint, ApiError> {
    let rest = path
        .strip_prefix("/api/v1/")
        .unwrap_or("")
        .trim_end_matches('/');
    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    let repo = |to: usize| parse_repo(&segs[1..to].join("/"));
    Ok(match segs.as_slice() {
        ["projects"] => Endpoint::Projects,
        ["projects", p] => Endpoint::Project(p.to_string()),
        ["projects", p, "repositories"] => Endpoint::ProjectRepos(p.to_string()),
        ["projects", p, "retention"] => Endpoint::Retention(p.to_string()),
        ["projects", p, "retention", "run"] => Endpoint::RetentionRun(p.to_string()),
        ["projects", p, "scanning"] => Endpoint::Scanning(p.to_string()),
        ["robots"] => Endpoint::Robots,
        ["robots", r] => Endpoint::Robot(r.to_string()),
        ["gc"] => Endpoint::Gc,
        ["prefetch"] => Endpoint::Prefetch,
        ["prefetch", job] => Endpoint::PrefetchJob(job.to_string()),
        ["pull-tokens"] => Endpoint::PullTokens,
        ["pull-tokens", id] => Endpoint::PullToken(id.trim_start_matches("pull$").to_string()),
        ["audit"] => Endpoint::Audit,
        ["repositories"] => Endpoint::Repositories,
        ["cache"] => Endpoint::Cache,
        ["cache", ..] if n >= 4 && segs[n - 2] == "pins" => {
            Endpoint::CachePin(repo(n - 2)?, parse_reference(segs[n - 1])?)
        }
        ["cache", ..] if n >= 4 && segs[n - 2] == "images" => {
            Endpoint::CacheImage(repo(n - 2)?, parse_reference(segs[n - 1])?)
        }
        ["cache", ..] if n >= 3 => Endpoint::CacheRepo(repo(n)?),
        ["storage"] => Endpoint::Storage,
        ["export"] => Endpoint::Export,
        ["import"] => Endpoint::Import,
        ["repositories", ..] if n >= 5 && segs[n - 1] == "scan" && segs[n - 3] == "artifacts" => {
            Endpoint::ArtifactScan(repo(n - 3)?, parse_digest(segs[n - 2])?)
        }
        ["repositories", .., "artifacts", d, "scan", "report"] if n >= 6 => {
            Endpoint::ScanReport(repo(n - 4)?, parse_digest(d)?)
        }
        ["repositories", ..] if n >= 3 && segs[n - 1] == "artifacts" => {
            Endpoint::Artifacts(repo(n - 1)?)
        }
        ["repositories", ..] if n >= 4 && segs[n - 2] == "artifacts" => {
            Endpoint::Artifact(repo(n - 2)?, parse_digest(segs[n - 1])?)
        }
        ["repositories", ..] if n >= 4 && segs[n - 2] == "tags" => {
            let t = segs[n - 1].parse().map_err(|e: crate::oci::NameError| {
                ApiError::new(ErrorCode::TagInvalid).explain(e.to_string())
            })?;
            Endpoint::RepoTag(repo(n - 2)?, t)
        }
        _ => {
            return Err(ApiError::new(ErrorCode::NoEndpoint)
                .explain(format!("no management endpoint at {path}")))
        }
    })
}

impl Api {
    /// Serve `/api/v1/...`.
    pub(super) async fn management(&self, req: Request<Incoming>) -> Reply {
        if req.uri().path() == "/api/v1/openapi.json"
            && matches!(*req.method(), Method::GET | Method::HEAD)
        {
            return openapi(req.method() == Method::HEAD);
        }
        let auth = &self.registry.auth;
        let id = auth
            .authenticate(req.headers(), super::access::client_addr(&req))
            .await
            .map_err(|e| {
                super::access::refused_login(e.clone()).unwrap_or_else(|| {
                    ApiError::new(ErrorCode::Unauthorized).explain(e.to_string())
                })
            })?;
        super::access::record_identity(&id);
        if auth.enabled() && id.is_anonymous() {
            return Err(ApiError::new(ErrorCode::Unauthorized)
                .explain("the management API needs credentials")
                .header("www-authenticate", "Basic realm=\"wharf\""));
        }
        if matches!(id.subject, crate::auth::Subject::PullToken(_)) {
            return Err(ApiError::new(ErrorCode::Denied)
                .explain("a pull token only pulls its image; it cannot use the management API"));
        }
        // A token from /token is for the registry API: only one that was
        // granted the management scope may manage.
        if id
            .token_access
            .as_ref()
            .is_some_and(|a| !crate::auth::grants_management(a))
        {
            return Err(ApiError::new(ErrorCode::Denied).explain(format!(
                "this token is for pulling and pushing; use Basic credentials or a token with scope {}",
                crate::auth::MANAGEMENT_SCOPE
            )));
        }
        if !matches!(*req.method(), Method::GET | Method::HEAD) {
            self.registry.require_accounts_for_changes()?;
        }
        let r = &self.registry;
        let ok = StatusCode::OK;
        match (req.method().clone(), parse(req.uri().path())?) {
            (Method::GET, Endpoint::Projects) => json(ok, &r.project_views(&id).await?),
            (Method::POST, Endpoint::Projects) => {
                r.require_admin(&id)?;
                json(
                    StatusCode::CREATED,
                    &r.create_project(&id, body_json(req, None).await?).await?,
                )
            }
            (Method::GET, Endpoint::Project(p)) => json(ok, &r.project_view(&id, &p).await?),
            (Method::DELETE, Endpoint::Project(p)) => {
                r.delete_project(&id, &p).await?;
                no_content()
            }
            (Method::GET, Endpoint::Repositories) => {
                let page = mgmt_page(r, &req)?;
                let items = r
                    .repositories_page(&id, page.last.as_deref(), page.fetch())
                    .await?;
                paged(&page, items, |v| v.name.clone(), "/api/v1/repositories")
            }
            (Method::PUT, Endpoint::Project(p)) => {
                r.require_admin(&id)?;
                json(
                    ok,
                    &r.update_project(&id, &p, body_json(req, None).await?)
                        .await?,
                )
            }
            (Method::GET, Endpoint::ProjectRepos(p)) => {
                let page = mgmt_page(r, &req)?;
                let (items, _) = r
                    .project_repositories_page(&id, &p, page.last.as_deref(), page.fetch())
                    .await?;
                paged(
                    &page,
                    items,
                    |v| v.name.clone(),
                    &format!("/api/v1/projects/{p}/repositories"),
                )
            }
            (Method::GET, Endpoint::Artifacts(repo)) => {
                let page = mgmt_page(r, &req)?;
                let from = match page.last.as_deref() {
                    Some(l) => PageFrom::After(parse_digest(l)?),
                    None => PageFrom::Skip(0),
                };
                let (items, _) = r.artifact_views(&id, &repo, &from, page.fetch()).await?;
                paged(
                    &page,
                    items,
                    |a| a.artifact.digest.to_string(),
                    &format!("/api/v1/repositories/{repo}/artifacts"),
                )
            }
            (Method::GET, Endpoint::Retention(p)) => json(ok, &r.retention_rules(&id, &p).await?),
            (Method::PUT, Endpoint::Retention(p)) => {
                r.require_admin(&id)?;
                json(
                    ok,
                    &r.set_retention(&id, &p, body_json(req, None).await?)
                        .await?,
                )
            }
            (Method::GET, Endpoint::Scanning(p)) => json(ok, &r.scan_settings(&id, &p)?),
            (Method::PUT, Endpoint::Scanning(p)) => {
                r.require_admin(&id)?;
                let s = body_json(req, None).await?;
                json(ok, &r.set_scan_settings(&id, &p, s).await?)
            }
            (Method::POST, Endpoint::ArtifactScan(repo, d)) => {
                let s = r.request_scan(&id, &repo, &d).await?;
                let at = format!("/api/v1/repositories/{repo}/artifacts/{d}/scan");
                let mut resp = json(StatusCode::ACCEPTED, &s)?;
                let loc = http::HeaderValue::from_str(&self.location(&at))
                    .map_err(|e| ApiError::internal("building Location", e))?;
                resp.headers_mut().insert(header::LOCATION, loc);
                Ok(resp)
            }
            (Method::GET, Endpoint::ArtifactScan(repo, d)) => {
                json(ok, &r.scan_state(&id, &repo, &d).await?)
            }
            (Method::GET, Endpoint::ScanReport(repo, d)) => {
                json(ok, &r.scan_report(&id, &repo, &d).await?)
            }
            (Method::POST, Endpoint::RetentionRun(p)) => {
                let dry_run = flag(&req, "dry_run")?;
                json(ok, &r.run_retention(&id, &p, dry_run).await?)
            }
            (Method::DELETE, Endpoint::Artifact(repo, d)) => {
                let deleted_tags = r.delete_artifact_as(&id, &repo, &d).await?;
                json(
                    ok,
                    &DeletedArtifact {
                        repository: repo.to_string(),
                        digest: d.to_string(),
                        deleted_tags,
                    },
                )
            }
            (Method::DELETE, Endpoint::RepoTag(repo, t)) => {
                r.delete_tag_as(&id, &repo, &t).await?;
                json(
                    ok,
                    &DeletedTag {
                        repository: repo.to_string(),
                        deleted_tag: t.to_string(),
                    },
                )
            }
            (Method::GET, Endpoint::Robots) => json(ok, &r.robots(&id)?),
            (Method::POST, Endpoint::Robots) => {
                r.require_admin(&id)?;
                json(
                    StatusCode::CREATED,
                    &r.create_robot(&id, body_json(req, None).await?).await?,
                )
            }
            (Method::DELETE, Endpoint::Robot(name)) => {
                if super::handlers::Query::of(&req).get("purge") == Some("true") {
                    r.delete_robot(&id, &name).await?;
                } else {
                    r.revoke_robot(&id, &name).await?;
                }
                no_content()
            }
            (Method::GET, Endpoint::Cache) => json(ok, &r.cached_images(&id).await?),
            (m @ (Method::PUT | Method::DELETE), Endpoint::CachePin(repo, reference)) => json(
                ok,
                &r.set_pin(&id, &repo, &reference, m == Method::PUT).await?,
            ),
            (Method::DELETE, Endpoint::CacheImage(repo, reference)) => {
                json(ok, &r.purge(&id, &repo, Some(&reference)).await?)
            }
            (Method::DELETE, Endpoint::CacheRepo(repo)) => {
                json(ok, &r.purge(&id, &repo, None).await?)
            }
            (Method::POST, Endpoint::Gc) => {
                r.require_admin(&id)?;
                json(
                    ok,
                    &r.gc(&id, body_json(req, Some(GcRequest::default())).await?)
                        .await?,
                )
            }
            (Method::POST, Endpoint::Prefetch) => {
                r.require_admin(&id)?;
                let job = r.start_prefetch(&id, body_json(req, None).await?).await?;
                let mut resp = json(StatusCode::ACCEPTED, &job)?;
                if let Ok(v) = http::HeaderValue::from_str(&format!("/api/v1/prefetch/{}", job.id))
                {
                    resp.headers_mut().insert(header::LOCATION, v);
                }
                Ok(resp)
            }
            (Method::GET, Endpoint::Prefetch) => json(ok, &r.prefetch_jobs(&id)?),
            (Method::GET, Endpoint::PrefetchJob(job)) => json(ok, &r.prefetch_job(&id, &job)?),
            (Method::GET, Endpoint::PullTokens) => json(ok, &r.pull_tokens(&id).await?),
            (Method::DELETE, Endpoint::PullToken(t)) => {
                r.revoke_pull_token(&id, &t).await?;
                no_content()
            }
            (Method::POST, Endpoint::PullTokens) => json(
                StatusCode::CREATED,
                &r.issue_pull_token(&id, body_json(req, None).await?).await?,
            ),
            (Method::GET, Endpoint::Audit) => audit(r, &id, &req).await,
            (Method::GET, Endpoint::Storage) => {
                json(ok, &r.storage_view(&id, self.metrics.store_totals()).await?)
            }
            (Method::GET, Endpoint::Export) => export(r, &id, &req).await,
            (Method::POST, Endpoint::Import) => import(r, &id, req).await,
            (m, _) => Err(ApiError::new(ErrorCode::Unsupported)
                .explain(format!("method {m} is not allowed here"))),
        }
    }
}

/// `GET /api/v1/export?image=...[&platform=os/arch][&referrers=true]`:
/// an OCI image layout tar, streamed.
async fn export(
    r: &crate::registry::Registry,
    id: &crate::auth::Identity,
    req: &Request<Incoming>,
) -> Reply {
    let images: Vec<String> = form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .filter(|(k, _)| k == "image")
        .map(|(_, v)| v.into_owned())
        .collect();
    let platform = match super::handlers::Query::of(req).get("platform") {
        Some(p) => Some(
            p.parse()
                .map_err(|e: String| ApiError::new(ErrorCode::BadRequest).explain(e))?,
        ),
        None => None,
    };
    let opts = crate::registry::bundle::ExportOptions {
        platform,
        with_referrers: flag(req, "referrers")?,
    };
    let tar = r.export_bundle(id, &images, &opts).await?;
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/x-tar")
        .body(body::chunked(tar))?)
}

/// `POST /api/v1/import?remote=|project=`: read a bundle from the body.
async fn import(
    r: &crate::registry::Registry,
    id: &crate::auth::Identity,
    req: Request<Incoming>,
) -> Reply {
    use crate::registry::bundle::ImportInto;
    let q = super::handlers::Query::of(&req);
    let into = match (q.get("remote"), q.get("project")) {
        (Some(rem), None) => ImportInto::Remote(rem.to_string()),
        (None, Some(p)) => ImportInto::Project(p.to_string()),
        _ => {
            return Err(ApiError::new(ErrorCode::BadRequest)
                .explain("name exactly one of ?remote=<remote name> or ?project=<project>"))
        }
    };
    let mut body = super::body_stream(req);
    let imported = r.import_bundle(id, into, &mut body).await;
    json(StatusCode::OK, &super::drained(&mut body, imported).await?)
}

/// A boolean query parameter (`true`/`false`, absent: false).
fn flag(req: &Request<Incoming>, name: &str) -> Result<bool, ApiError> {
    let q = super::handlers::Query::of(req);
    match q.get(name) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(v) => Err(ApiError::new(ErrorCode::BadRequest)
            .explain(format!("{name} must be true or false, got {v:?}"))),
    }
}

/// Items per page of a management listing when the client gives no `n`.
pub const DEFAULT_PAGE: usize = 100;

/// `n` and `last` of a management listing (at most `limits.max_page_size`).
fn mgmt_page(r: &crate::registry::Registry, req: &Request<Incoming>) -> Result<Page, ApiError> {
    let max = r.limits.bounds.max_page_size;
    Page::with_default(&super::handlers::Query::of(req), DEFAULT_PAGE.min(max), max)
}

/// A JSON array of one page, with a `Link` to the next when more follow.
fn paged<T: serde::Serialize>(
    page: &Page,
    items: Vec<T>,
    key: impl Fn(&T) -> String,
    path: &str,
) -> Reply {
    let (items, link) = page.finish_by(items, key, path);
    let mut resp = json(StatusCode::OK, &items)?;
    if let Some(v) = link.and_then(|l| http::HeaderValue::from_str(&l).ok()) {
        resp.headers_mut().insert(header::LINK, v);
    }
    Ok(resp)
}

fn no_content() -> Reply {
    Ok(Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(body::empty())?)
}

/// `GET /api/v1/openapi.json`: public, so tools can read it before login.
fn openapi(head: bool) -> Reply {
    let b = Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, OPENAPI.len());
    Ok(b.body(if head {
        body::empty()
    } else {
        body::full(OPENAPI.as_bytes().to_vec())
    })?)
}

/// `GET /api/v1/audit?n=&last=`: newest first, with a `Link` to the next page.
async fn audit(
    r: &crate::registry::Registry,
    id: &crate::auth::Identity,
    req: &Request<Incoming>,
) -> Reply {
    let q = super::handlers::Query::of(req);
    let n = match q.get("n") {
        None => 100,
        Some(v) => v.parse::<usize>().map_err(|_| {
            ApiError::new(ErrorCode::BadRequest)
                .explain(format!("n must be a positive integer, got {v:?}"))
        })?,
    };
    let page = r.audit_page(id, q.get("last"), n).await?;
    let mut resp = json(StatusCode::OK, &page)?;
    if let Some(next) = &page.next {
        let qs = form_urlencoded::Serializer::new(String::new())
            .append_pair("n", &n.to_string())
            .append_pair("last", next)
            .finish();
        if let Ok(v) = http::HeaderValue::from_str(&format!("</api/v1/audit?{qs}>; rel=\"next\"")) {
            resp.headers_mut().insert(header::LINK, v);
        }
    }
    Ok(resp)
}
