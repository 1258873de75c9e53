//! The HTTP edge: parse the route, run the handler, map errors once, add the
//! headers every response carries, and log one line per request.
//!
//! Handlers see the store and the OCI types; they never build paths or
//! touch files directly, and they never format error JSON themselves.

pub(crate) mod access;
pub mod body;
mod mgmt;
pub mod error;
mod handlers;
pub mod ops;
pub mod route;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::oci::ErrorCode;
use crate::proxy::{self, Proxy};
use crate::store::Store;
use body::Body;
use error::ApiError;
use route::Route;

/// Shared state of the HTTP layer.
pub struct Api {
    pub store: Store,
    pub auth: crate::auth::Authorizer,
    /// Whether clients reach wharf over TLS (for the token realm URL).
    pub tls: bool,
    pub proxy: Proxy,
    pub max_manifest_size: usize,
    /// `/metrics` (see [`ops`]).
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// `storage.gc_grace`, the default for `POST /api/v1/gc`.
    pub gc_grace: std::time::Duration,
}

/// The response type of every handler.
pub type Reply = Result<Response<Body>, ApiError>;

impl Api {
    /// Serve one request. Never fails: every error becomes an OCI response.
    pub async fn serve(self: Arc<Self>, req: Request<Incoming>) -> Result<Response<body::Logged>, Infallible> {
        let start = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let mut resp = match self.dispatch(req).await {
            Ok(r) => r,
            Err(e) => {
                if e.status_code().is_server_error() {
                    tracing::warn!(%method, %path, code = e.code.as_str(), "request failed");
                }
                e.into_response()
            }
        };
        resp.headers_mut().insert(
            http::header::HeaderName::from_static("docker-distribution-api-version"),
            HeaderValue::from_static("registry/2.0"),
        );
        let status = resp.status().as_u16();
        let expected = resp
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        Ok(resp.map(|b| body::Logged::new(b, method, path, status, start, expected)))
    }

    async fn dispatch(&self, req: Request<Incoming>) -> Reply {
        if let Some(r) = ops::handle(self, &req).await {
            return r;
        }
        if req.uri().path().starts_with("/api/v1/") {
            return self.management(req).await;
        }
        if req.uri().path() == "/token" && matches!(*req.method(), Method::GET | Method::POST) {
            return self.token(req).await;
        }
        let route = Route::parse(req.uri().path())?;
        let m = req.method().clone();
        let target = self.remote_target(&req, &route).await?;
        let identity = self.authorize(&req, &route, target.is_some()).await?;
        let mut req = req;
        req.extensions_mut().insert(identity);
        if let Some(target) = target {
            return handlers::proxied::dispatch(self, req, route, target).await;
        }
        use Route::*;
        match (&m, route) {
            (&Method::GET | &Method::HEAD, Base) => handlers::base(),
            (&Method::GET, Catalog) => handlers::listing::catalog(self, &req).await,
            (&Method::GET, Tags(n)) => handlers::listing::tags(self, &req, &n).await,
            (&Method::GET, Referrers(n, d)) => handlers::listing::referrers(self, &req, &n, &d).await,
            (&Method::GET | &Method::HEAD, Manifest(n, r)) => handlers::manifests::get(self, &req, &n, &r).await,
            (&Method::PUT, Manifest(n, r)) => handlers::manifests::put(self, req, &n, &r).await,
            (&Method::DELETE, Manifest(n, r)) => handlers::manifests::delete(self, &n, &r).await,
            (&Method::GET | &Method::HEAD, Blob(n, d)) => handlers::blobs::get(self, &req, &n, &d).await,
            (&Method::DELETE, Blob(n, d)) => handlers::blobs::delete(self, &n, &d).await,
            (&Method::POST, UploadStart(n)) => handlers::uploads::start(self, req, &n).await,
            (&Method::GET, Upload(n, id)) => handlers::uploads::status(self, &n, &id).await,
            (&Method::PATCH, Upload(n, id)) => handlers::uploads::patch(self, req, &n, &id).await,
            (&Method::PUT, Upload(n, id)) => handlers::uploads::finish(self, req, &n, &id).await,
            (&Method::DELETE, Upload(n, id)) => handlers::uploads::cancel(self, &n, &id).await,
            (m, _) => Err(ApiError::new(ErrorCode::Unsupported).detail(format!("method {m} is not allowed here"))),
        }
    }
}

impl Api {
    /// Whether the request addresses a remote (pull-through) repository.
    ///
    /// A name under a remote's prefix, or any name with containerd's `?ns=`,
    /// is remote. Other names are local, except reads in a namespace (first
    /// segment) that is neither a project nor holds any local repository,
    /// which go to the default remote: manifests always
    /// (that is how a Docker daemon using wharf as `registry-mirrors` pulls),
    /// blobs, tags and referrers only once that remote repository has been
    /// pulled through wharf (so a first `docker push` to a new local
    /// repository gets fast local 404s for its blob checks).
    async fn remote_target(&self, req: &Request<Incoming>, route: &Route) -> Result<Option<proxy::RemoteTarget>, ApiError> {
        let Some(name) = route.repo() else { return Ok(None) };
        let q = handlers::Query::of(req);
        let routed = self.proxy.router().route(name, q.get("ns")).map_err(|e| {
            let code = match e {
                proxy::PolicyError::UnknownNamespace(_) => ErrorCode::Denied,
                _ => ErrorCode::NameInvalid,
            };
            ApiError::new(code).detail(e.to_string())
        })?;
        match routed {
            proxy::Route::Remote(t) => Ok(Some(t)),
            proxy::Route::LocalOrDefault(_, None) => Ok(None),
            proxy::Route::LocalOrDefault(local, Some(t)) => {
                let read = matches!(*req.method(), Method::GET | Method::HEAD);
                // A configured project is always local.
                if !read || self.auth.project(local.first()).is_some() || self.store.namespace_exists(local.first()).await {
                    return Ok(None);
                }
                let remote = matches!(route, Route::Manifest(..)) || self.store.repo_exists(&t.cache_repo).await;
                Ok(remote.then_some(t))
            }
        }
    }
}

/// The request body as a stream of data chunks (trailers dropped).
pub(crate) fn body_stream(req: Request<Incoming>) -> http_body_util::BodyDataStream<Incoming> {
    req.into_body().into_data_stream()
}

/// Read a small request body, refusing more than `limit` bytes.
pub(crate) async fn read_limited(req: Request<Incoming>, limit: usize) -> Result<bytes::Bytes, ApiError> {
    let limited = http_body_util::Limited::new(req.into_body(), limit);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::new(ErrorCode::SizeInvalid)
            .status(413)
            .detail(format!("body larger than the limit of {limit} bytes"))),
        Err(e) => Err(ApiError::new(ErrorCode::ManifestInvalid).detail(format!("reading request body: {e}"))),
    }
}
