//! The client for one remote registry (reqwest + rustls).
//!
//! Owns: challenge-driven auth and the token cache ([`auth`]), redirect
//! handling (credentials never follow a redirect to another origin),
//! timeouts, bounded retries with backoff that honour `Retry-After`, and the
//! typed [`UpstreamError`]. It must never cache content (that is the
//! proxy's job) and never put a credential into an error or a log line.

pub(crate) mod auth;
mod body;
pub(crate) mod cause;
mod error;
pub mod target;
pub mod throttle;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method};

pub use auth::{parse_challenge, Challenge};
use cause::describe;
pub use error::UpstreamError;
use target::Fetching;

use crate::config::Remote;
use crate::oci::manifest::ALL_MANIFEST_TYPES;
use crate::oci::{Digest, RepoName};

/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 5;
/// Longest `Retry-After` wharf is willing to wait inside one request.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(10);

/// Why the client for a remote could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("CA file {}: {reason}", path.display())]
    CaFile {
        path: std::path::PathBuf,
        reason: String,
    },
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
    chunks:
        std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, UpstreamError>> + Send>>,
}

impl BlobStream {
    /// A body made of `chunks` (the remote's, or a test's).
    pub fn new(
        content_length: Option<u64>,
        chunks: impl futures_util::Stream<Item = Result<Bytes, UpstreamError>> + Send + 'static,
    ) -> BlobStream {
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
    /// `max_bandwidth` in bytes/s; 0: no cap.
    pub bandwidth_limit: u64,
    /// Time blob downloads were held back by the cap, in microseconds.
    pub throttled_us: Arc<std::sync::atomic::AtomicU64>,
    /// The last failure (unix seconds, cause as users see it; never a
    /// credential), for the dashboard.
    last_error: std::sync::Mutex<Option<(u64, String)>>,
}

impl UpstreamStats {
    fn failed(&self, cause: String) {
        use std::sync::atomic::Ordering::Relaxed;
        self.errors.fetch_add(1, Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some((now, cause));
    }

    /// The last failure: when (unix seconds) and its cause.
    pub fn last_error(&self) -> Option<(u64, String)> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Client for one remote.
pub struct Upstream {
    remote: Arc<Remote>,
    http: reqwest::Client,
    auth: auth::Authenticator,
    /// `max_concurrent_fetches`: blob downloads running at once.
    fetch_slots: Arc<tokio::sync::Semaphore>,
    max_manifest_size: usize,
    /// `max_bandwidth`, shared by every blob download from this remote.
    throttle: Option<Arc<throttle::Throttle>>,
    pub stats: UpstreamStats,
}

impl Upstream {
    /// The client for `remote`; manifests larger than `max_manifest_size`
    /// are refused while they stream.
    pub fn new(remote: Arc<Remote>, max_manifest_size: usize) -> Result<Upstream, SetupError> {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(remote.connect_timeout)
            .read_timeout(remote.read_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("wharf/", env!("CARGO_PKG_VERSION")))
            .no_proxy();
        if let Some(ca) = &remote.ca_file {
            let pem = std::fs::read(ca).map_err(|e| SetupError::CaFile {
                path: ca.clone(),
                reason: e.to_string(),
            })?;
            for cert in
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| SetupError::CaFile {
                    path: ca.clone(),
                    reason: e.to_string(),
                })?
            {
                b = b.add_root_certificate(cert);
            }
        }
        if remote.insecure_skip_verify {
            b = b.danger_accept_invalid_certs(true);
        }
        let http = b.build().map_err(|e| SetupError::Client(e.to_string()))?;
        Ok(Upstream {
            fetch_slots: Arc::new(tokio::sync::Semaphore::new(
                remote.max_concurrent_fetches.max(1),
            )),
            stats: UpstreamStats {
                bandwidth_limit: remote.max_bandwidth.unwrap_or(0),
                ..Default::default()
            },
            max_manifest_size,
            throttle: remote
                .max_bandwidth
                .map(|rate| Arc::new(throttle::Throttle::new(rate))),
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
    /// unread) or a typed error carrying the upstream's status and the
    /// start of its body.
    async fn send(
        &self,
        method: Method,
        path: &str,
        repo: &RepoName,
        accept: Option<&str>,
        what: Fetching,
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
            let authz = self
                .auth
                .header_for(&self.http, repo.as_str(), &scope)
                .await?;
            let sent_auth = authz.is_some();
            let wait = match self
                .send_once(method.clone(), self.url(path), accept, authz, what)
                .await
            {
                Err(e @ UpstreamError::Refused { .. }) => return Err(e),
                Err(e) if attempt >= budget => return Err(e),
                Err(_) => None,
                Ok((r, _)) if r.status().is_success() => return Ok(r),
                Ok((r, true)) if r.status().as_u16() == 401 && !reauthed => {
                    // Learned only from the remote's own origin.
                    reauthed = true;
                    let ch = r
                        .headers()
                        .get(header::WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok());
                    self.auth
                        .on_unauthorized(ch, repo.as_str(), &scope, sent_auth)
                        .await;
                    continue;
                }
                Ok((r, own_origin)) => {
                    let e = self.failure(r, own_origin, repo).await;
                    if !e.is_transient() || attempt >= budget {
                        return Err(e);
                    }
                    e.retry_after().map(Duration::from_secs)
                }
            };
            attempt += 1;
            let backoff = Duration::from_millis(200 * (1 << attempt.min(5)));
            let delay = wait.unwrap_or(backoff).min(MAX_RETRY_WAIT);
            tracing::debug!(remote = %self.remote.name, attempt, delay_ms = delay.as_millis() as u64, "retrying upstream request");
            tokio::time::sleep(delay).await;
        }
    }

    /// The typed error for a non-2xx answer (its body read up to a few KiB).
    /// A 401/403 from a redirect target (a storage host) fails the request
    /// and teaches nothing about the remote's own authentication.
    async fn failure(
        &self,
        r: reqwest::Response,
        own_origin: bool,
        repo: &RepoName,
    ) -> UpstreamError {
        let status = r.status().as_u16();
        let host = r.url().host_str().unwrap_or("").to_string();
        let retry_after = r
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body = body::excerpt_of(r).await;
        let remote = self.remote.name.clone();
        match (status, own_origin) {
            (401 | 403, false) => UpstreamError::Refused {
                remote,
                reason: format!(
                    "the storage host {host} it redirected to refused the download (HTTP {status})"
                ),
            },
            (401 | 403, true) => {
                let secret = self.auth.rejected(repo.as_str(), status);
                UpstreamError::Unauthorized {
                    remote,
                    status,
                    body,
                    repo: repo.to_string(),
                    secret,
                }
            }
            _ => UpstreamError::Status {
                remote,
                status,
                body,
                retry_after,
            },
        }
    }

    /// One request, following redirects by hand under [`target`]'s rules.
    /// `Authorization` is sent only to the remote's own origin. Returns the
    /// final response and whether it came from the remote's own origin.
    async fn send_once(
        &self,
        method: Method,
        mut url: reqwest::Url,
        accept: Option<&str>,
        authz: Option<HeaderValue>,
        what: Fetching,
    ) -> Result<(reqwest::Response, bool), UpstreamError> {
        let origin = self.remote.url.origin();
        for _ in 0..=MAX_REDIRECTS {
            let own = url.origin() == origin;
            let mut req = self.http.request(method.clone(), url.clone());
            // A blob's body may take long (its speed is watched instead);
            // anything else has a bound for the whole exchange.
            if what == Fetching::Api || method == Method::HEAD {
                req = req.timeout(self.remote.request_timeout);
            }
            if let Some(a) = accept {
                req = req.header(header::ACCEPT, a);
            }
            if let Some(id) = crate::telemetry::request_id().filter(|id| !id.is_empty()) {
                req = req.header("x-request-id", &*id);
            }
            if let (true, Some(v)) = (own, &authz) {
                req = req.header(header::AUTHORIZATION, v.clone());
            }
            let resp = self.observe(req.send()).await?;
            if !resp.status().is_redirection() {
                return Ok((resp, own));
            }
            let Some(loc) = resp
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
            else {
                return Ok((resp, own));
            };
            let next = url.join(loc).map_err(|e| UpstreamError::Protocol {
                remote: self.remote.name.clone(),
                message: format!("bad redirect Location: {e}"),
            })?;
            target::check_redirect(&self.remote, &url, &next, what).map_err(|reason| {
                tracing::warn!(remote = %self.remote.name, %reason, "upstream redirect refused");
                UpstreamError::Refused {
                    remote: self.remote.name.clone(),
                    reason,
                }
            })?;
            url = next;
        }
        Err(UpstreamError::Protocol {
            remote: self.remote.name.clone(),
            message: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }

    /// Send a request, counting it (and its failure) in the stats.
    async fn observe(
        &self,
        fut: impl std::future::Future<Output = reqwest::Result<reqwest::Response>>,
    ) -> Result<reqwest::Response, UpstreamError> {
        use std::sync::atomic::Ordering::Relaxed;
        let sent = std::time::Instant::now();
        self.stats.requests.fetch_add(1, Relaxed);
        let resp = fut.await.map_err(|e| {
            let cause = describe(&e);
            self.stats.failed(cause.clone());
            self.err_unreachable(cause)
        })?;
        self.stats.latency.observe(sent.elapsed());
        if resp.status().is_server_error() || resp.status().as_u16() == 429 {
            self.stats.failed(format!("HTTP {}", resp.status()));
        }
        Ok(resp)
    }

    /// Check that the remote answers and accepts wharf's credentials for
    /// `repo`: `GET /v2/` through the challenge and token flow, no retries.
    pub async fn probe(&self, repo: &RepoName) -> Result<(), UpstreamError> {
        self.send(
            Method::GET,
            "/v2/",
            repo,
            None,
            Fetching::Api,
            Retries::None,
        )
        .await
        .map(|_| ())
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
            .send(
                method,
                &format!("/v2/{repo}/manifests/{reference}"),
                repo,
                Some(&accept),
                Fetching::Api,
                retries,
            )
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
        let bytes = self
            .read_limited(r, self.max_manifest_size, "manifest")
            .await?;
        Ok(RemoteManifest {
            digest: header_digest,
            media_type,
            bytes: Some(bytes),
        })
    }

    /// Start a blob download.
    pub async fn blob(&self, repo: &RepoName, d: &Digest) -> Result<BlobStream, UpstreamError> {
        let r = self
            .send(
                Method::GET,
                &format!("/v2/{repo}/blobs/{d}"),
                repo,
                None,
                Fetching::Blob,
                Retries::Default,
            )
            .await?;
        let remote = self.remote.name.clone();
        let content_length = r.content_length();
        let chunks = futures_util::TryStreamExt::map_err(r.bytes_stream(), move |e| {
            UpstreamError::Unreachable {
                remote: remote.clone(),
                reason: format!("blob stream broke: {}", describe(&e)),
            }
        });
        match self.throttle.clone() {
            None => Ok(BlobStream::new(content_length, chunks)),
            Some(t) => {
                let held_back = self.stats.throttled_us.clone();
                let capped = futures_util::StreamExt::then(chunks, move |chunk| {
                    let (t, held_back) = (t.clone(), held_back.clone());
                    async move {
                        if let Ok(b) = &chunk {
                            let waited = t.admit(b.len()).await;
                            held_back.fetch_add(
                                waited.as_micros() as u64,
                                std::sync::atomic::Ordering::Relaxed,
                            );
                        }
                        chunk
                    }
                });
                Ok(BlobStream::new(content_length, capped))
            }
        }
    }

    /// Size of a remote blob.
    pub async fn blob_size(
        &self,
        repo: &RepoName,
        d: &Digest,
    ) -> Result<Option<u64>, UpstreamError> {
        let r = self
            .send(
                Method::HEAD,
                &format!("/v2/{repo}/blobs/{d}"),
                repo,
                None,
                Fetching::Blob,
                Retries::Default,
            )
            .await?;
        Ok(r.content_length().filter(|n| *n > 0).or_else(|| {
            r.headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
        }))
    }

    /// The remote's tag list (one page), with its `Link` header.
    pub async fn tags(
        &self,
        repo: &RepoName,
        query: Option<&str>,
    ) -> Result<(Bytes, Option<String>), UpstreamError> {
        let path = match query {
            Some(q) if !q.is_empty() => format!("/v2/{repo}/tags/list?{q}"),
            _ => format!("/v2/{repo}/tags/list"),
        };
        let r = self
            .send(
                Method::GET,
                &path,
                repo,
                None,
                Fetching::Api,
                Retries::Default,
            )
            .await?;
        let link = r
            .headers()
            .get(header::LINK)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let b = self.read_limited(r, body::MAX_TAG_LIST, "tag list").await?;
        Ok((b, link))
    }

    /// Read a response body of at most `limit` bytes, counting it.
    async fn read_limited(
        &self,
        r: reqwest::Response,
        limit: usize,
        what: &'static str,
    ) -> Result<Bytes, UpstreamError> {
        let b = body::read_limited(r, limit).await.map_err(|e| match e {
            body::ReadError::TooLarge => UpstreamError::TooLarge {
                remote: self.remote.name.clone(),
                what,
                limit: limit as u64,
            },
            body::ReadError::Broken(e) => self.err_unreachable(describe(&e)),
        })?;
        self.stats
            .bytes
            .fetch_add(b.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(b)
    }
}
