//! The client for one remote registry (reqwest + rustls).
//!
//! Owns: challenge-driven auth and the token cache ([`auth`]), redirect
//! handling (credentials never follow a redirect to another origin),
//! timeouts, bounded retries with backoff that honour `Retry-After`, and the
//! typed [`UpstreamError`]. It must never cache content (that is the
//! proxy's job) and never put a credential into an error or a log line.

mod auth;
mod error;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method};

pub use auth::{parse_challenge, Challenge};
pub use error::UpstreamError;

use crate::config::Remote;
use crate::oci::manifest::ALL_MANIFEST_TYPES;
use crate::oci::{Digest, RepoName};

/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 5;
/// Longest `Retry-After` wharf is willing to wait inside one request.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(10);

/// A reqwest error as text without the URL's query (no secrets are in our
/// URLs, but keep messages short and stable).
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "body error"
    } else {
        "request failed"
    };
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = src {
        detail = s.to_string();
        src = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

/// Why the client for a remote could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("CA file {}: {reason}", path.display())]
    CaFile { path: std::path::PathBuf, reason: String },
    #[error("building the HTTP client: {0}")]
    Client(String),
}

/// A manifest as the remote described it.
#[derive(Debug, Clone)]
pub struct RemoteManifest {
    /// From `Docker-Content-Digest` (HEAD) or computed over the body (GET).
    pub digest: Option<Digest>,
    pub media_type: String,
    /// `None` for HEAD.
    pub bytes: Option<Bytes>,
}

/// A blob's body as the remote sends it: chunks as they arrive. Nothing
/// here is verified; the caller hashes.
pub struct BlobStream {
    /// The remote's `Content-Length`, if it sent one.
    pub content_length: Option<u64>,
    chunks: std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, UpstreamError>> + Send>>,
}

impl BlobStream {
    /// A body made of `chunks` (the remote's, or a test's).
    pub fn new(content_length: Option<u64>, chunks: impl futures_util::Stream<Item = Result<Bytes, UpstreamError>> + Send + 'static) -> BlobStream {
        BlobStream {
            content_length,
            chunks: Box::pin(chunks),
        }
    }

    /// The next chunk; `None` at the end.
    pub async fn next(&mut self) -> Option<Result<Bytes, UpstreamError>> {
        futures_util::StreamExt::next(&mut self.chunks).await
    }
}

/// How hard to try.
#[derive(Debug, Clone, Copy)]
pub enum Retries {
    /// The remote's configured retry budget.
    Default,
    /// Fail fast (a stale copy can be served instead).
    None,
}

/// Counters for `/metrics` (per remote; no repository or digest labels).
#[derive(Debug, Default)]
pub struct UpstreamStats {
    /// HTTP requests sent (every attempt, redirect hop and HEAD).
    pub requests: std::sync::atomic::AtomicU64,
    /// Requests that failed to connect or answered 429/5xx.
    pub errors: std::sync::atomic::AtomicU64,
    /// Body bytes received (manifests, tag lists, blobs).
    pub bytes: std::sync::atomic::AtomicU64,
    /// Time to response headers.
    pub latency: crate::telemetry::LatencyHistogram,
}

/// Client for one remote.
pub struct Upstream {
    remote: Arc<Remote>,
    http: reqwest::Client,
    auth: auth::Authenticator,
    /// `max_concurrent_fetches`: blob downloads running at once.
    fetch_slots: Arc<tokio::sync::Semaphore>,
    pub stats: UpstreamStats,
}

impl Upstream {
    pub fn new(remote: Arc<Remote>) -> Result<Upstream, SetupError> {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(remote.connect_timeout)
            .read_timeout(remote.read_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("wharf/", env!("CARGO_PKG_VERSION")))
            .no_proxy();
        if let Some(ca) = &remote.ca_file {
            let pem = std::fs::read(ca).map_err(|e| SetupError::CaFile { path: ca.clone(), reason: e.to_string() })?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| SetupError::CaFile { path: ca.clone(), reason: e.to_string() })? {
                b = b.add_root_certificate(cert);
            }
        }
        if remote.insecure_skip_verify {
            b = b.danger_accept_invalid_certs(true);
        }
        let http = b.build().map_err(|e| SetupError::Client(e.to_string()))?;
        Ok(Upstream {
            fetch_slots: Arc::new(tokio::sync::Semaphore::new(remote.max_concurrent_fetches.max(1))),
            stats: UpstreamStats::default(),
            auth: auth::Authenticator::new(&remote),
            remote,
            http,
        })
    }

    pub fn remote(&self) -> &Arc<Remote> {
        &self.remote
    }

    /// Wait for one of the remote's `max_concurrent_fetches` download slots;
    /// hold it for the whole blob download.
    pub async fn fetch_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.fetch_slots.clone().acquire_owned().await.ok()
    }

    /// The remote's base URL joined with an API path (which may carry a
    /// query string).
    fn url(&self, path_and_query: &str) -> reqwest::Url {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let mut u = self.remote.url.clone();
        let base = u.path().trim_end_matches('/').to_string();
        u.set_path(&format!("{base}{path}"));
        u.set_query(query);
        u
    }

    fn err_unreachable(&self, reason: String) -> UpstreamError {
        UpstreamError::Unreachable {
            remote: self.remote.name.clone(),
            reason,
        }
    }

    /// Send with auth, redirects and retries. Returns a 2xx response (body
    /// unread) or a typed error carrying the upstream's status and body.
    async fn send(
        &self,
        method: Method,
        path: &str,
        repo: &RepoName,
        accept: Option<&str>,
        retries: Retries,
    ) -> Result<reqwest::Response, UpstreamError> {
        let scope = format!("repository:{repo}:pull");
        let budget = match retries {
            Retries::Default => self.remote.max_retries,
            Retries::None => 0,
        };
        let mut attempt = 0u32;
        let mut reauthed = false;
        loop {
            let authz = self.auth.header_for(&self.http, repo.as_str(), &scope).await?;
            let sent_auth = authz.is_some();
            let res = self.send_once(method.clone(), self.url(path), accept, authz).await;
            let wait = match res {
                Err(e) => {
                    if attempt >= budget {
                        return Err(e);
                    }
                    None
                }
                Ok(r) => {
                    let status = r.status().as_u16();
                    if r.status().is_success() {
                        return Ok(r);
                    }
                    if status == 401 && !reauthed {
                        reauthed = true;
                        let ch = r.headers().get(header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok());
                        self.auth.on_unauthorized(ch, repo.as_str(), &scope, sent_auth).await;
                        continue;
                    }
                    let retry_after = r
                        .headers()
                        .get(header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok());
                    let body = error::excerpt(&r.bytes().await.unwrap_or_default());
                    if status == 401 || status == 403 {
                        self.auth.rejected(repo.as_str(), status);
                        return Err(UpstreamError::Unauthorized {
                            remote: self.remote.name.clone(),
                            status,
                            body,
                        });
                    }
                    let e = UpstreamError::Status {
                        remote: self.remote.name.clone(),
                        status,
                        body,
                        retry_after,
                    };
                    if !e.is_transient() || attempt >= budget {
                        return Err(e);
                    }
                    retry_after.map(Duration::from_secs)
                }
            };
            attempt += 1;
            let backoff = Duration::from_millis(200 * (1 << attempt.min(5)));
            let delay = wait.unwrap_or(backoff).min(MAX_RETRY_WAIT);
            tracing::debug!(remote = %self.remote.name, attempt, delay_ms = delay.as_millis() as u64, "retrying upstream request");
            tokio::time::sleep(delay).await;
        }
    }

    /// One request, following redirects by hand: `Authorization` is sent
    /// only to the remote's own origin (blob downloads often redirect to a
    /// storage host that must not see wharf's credentials).
    async fn send_once(
        &self,
        method: Method,
        mut url: reqwest::Url,
        accept: Option<&str>,
        authz: Option<HeaderValue>,
    ) -> Result<reqwest::Response, UpstreamError> {
        let origin = self.remote.url.origin();
        for _ in 0..=MAX_REDIRECTS {
            let mut req = self.http.request(method.clone(), url.clone());
            if let Some(a) = accept {
                req = req.header(header::ACCEPT, a);
            }
            if let Some(id) = crate::telemetry::request_id().filter(|id| !id.is_empty()) {
                req = req.header("x-request-id", &*id);
            }
            if url.origin() == origin {
                if let Some(v) = &authz {
                    req = req.header(header::AUTHORIZATION, v.clone());
                }
            }
            let sent = std::time::Instant::now();
            self.stats.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let resp = req.send().await.map_err(|e| {
                self.stats.errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.err_unreachable(describe(&e))
            })?;
            self.stats.latency.observe(sent.elapsed());
            if resp.status().is_server_error() || resp.status().as_u16() == 429 {
                self.stats.errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if !resp.status().is_redirection() {
                return Ok(resp);
            }
            let Some(loc) = resp.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()) else {
                return Ok(resp);
            };
            url = url.join(loc).map_err(|e| UpstreamError::Protocol {
                remote: self.remote.name.clone(),
                message: format!("bad redirect Location: {e}"),
            })?;
        }
        Err(UpstreamError::Protocol {
            remote: self.remote.name.clone(),
            message: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }

    /// `GET` or `HEAD` a manifest by tag or digest, asking for every type so
    /// the remote never converts (digests stay byte-exact).
    pub async fn manifest(
        &self,
        repo: &RepoName,
        reference: &str,
        head: bool,
        retries: Retries,
    ) -> Result<RemoteManifest, UpstreamError> {
        let accept = ALL_MANIFEST_TYPES.join(", ");
        let method = if head { Method::HEAD } else { Method::GET };
        let r = self
            .send(method, &format!("/v2/{repo}/manifests/{reference}"), repo, Some(&accept), retries)
            .await?;
        let media_type = r
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        let header_digest = r
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<Digest>().ok());
        if head {
            return Ok(RemoteManifest {
                digest: header_digest,
                media_type,
                bytes: None,
            });
        }
        let bytes = r.bytes().await.map_err(|e| self.err_unreachable(describe(&e)))?;
        self.stats.bytes.fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(RemoteManifest {
            digest: header_digest,
            media_type,
            bytes: Some(bytes),
        })
    }

    /// Start a blob download.
    pub async fn blob(&self, repo: &RepoName, d: &Digest) -> Result<BlobStream, UpstreamError> {
        let r = self
            .send(Method::GET, &format!("/v2/{repo}/blobs/{d}"), repo, None, Retries::Default)
            .await?;
        let remote = self.remote.name.clone();
        let content_length = r.content_length();
        let chunks = futures_util::TryStreamExt::map_err(r.bytes_stream(), move |e| UpstreamError::Unreachable {
            remote: remote.clone(),
            reason: format!("blob stream broke: {}", describe(&e)),
        });
        Ok(BlobStream::new(content_length, chunks))
    }

    /// Size of a remote blob.
    pub async fn blob_size(&self, repo: &RepoName, d: &Digest) -> Result<Option<u64>, UpstreamError> {
        let r = self
            .send(Method::HEAD, &format!("/v2/{repo}/blobs/{d}"), repo, None, Retries::Default)
            .await?;
        Ok(r.content_length().filter(|n| *n > 0).or_else(|| {
            r.headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
        }))
    }

    /// The remote's tag list (one page), with its `Link` header.
    pub async fn tags(&self, repo: &RepoName, query: Option<&str>) -> Result<(Bytes, Option<String>), UpstreamError> {
        let path = match query {
            Some(q) if !q.is_empty() => format!("/v2/{repo}/tags/list?{q}"),
            _ => format!("/v2/{repo}/tags/list"),
        };
        let r = self.send(Method::GET, &path, repo, None, Retries::Default).await?;
        let link = r.headers().get(header::LINK).and_then(|v| v.to_str().ok()).map(str::to_string);
        let b = r.bytes().await.map_err(|e| self.err_unreachable(describe(&e)))?;
        self.stats.bytes.fetch_add(b.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok((b, link))
    }
}
