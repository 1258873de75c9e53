//! The HTTP edge: parse the route, authorize, call the registry layer, map
//! results and errors to responses, add the headers every response
//! carries, and log one line per request.
//!
//! Handlers only translate HTTP: they never decide domain questions (that
//! is [`crate::registry`]), never build storage keys, and never format
//! error JSON themselves ([`error`] does).

pub(crate) mod access;
pub mod body;
pub mod error;
mod events;
pub(crate) mod handlers;
pub(crate) mod mgmt;
pub mod ops;
pub mod route;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::oci::ErrorCode;
use crate::registry::{Intent, Registry, Target};
use body::Body;
use error::ApiError;
use route::Route;

/// Shared state of the HTTP layer.
pub struct Api {
    pub registry: Registry,
    /// Whether clients reach wharf over TLS (for the token realm URL).
    pub tls: bool,
    /// `server.external_url`: the base of the realm and `Location`s.
    pub external_url: Option<String>,
    /// `/metrics` (see [`ops`]).
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// The address a request came from (set by the accept loop).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::IpAddr);

/// Set by the accept loop on plain HTTP/1.x requests: the connection sends
/// mapped blob chunks with `sendfile` (see [`body::file_range`]).
#[derive(Debug, Clone, Copy)]
pub struct SendFile;

/// Who a request is, for per-client limits: the account, or the address.
pub(crate) fn client_key<B>(req: &Request<B>) -> String {
    let id = access::identity(req);
    if !id.is_anonymous() {
        return id.subject.username();
    }
    match req.extensions().get::<ClientAddr>() {
        Some(ClientAddr(ip)) => format!("address {ip}"),
        None => "anonymous".to_string(),
    }
}

/// The response type of every handler.
pub type Reply = Result<Response<Body>, ApiError>;

/// What a request does with the name it addresses.
fn intent(method: &Method, route: &Route) -> Intent {
    match (method, route) {
        (&Method::GET | &Method::HEAD, Route::Manifest(..)) => Intent::PullManifest,
        (&Method::GET | &Method::HEAD, _) => Intent::PullContent,
        _ => Intent::Write,
    }
}

impl Api {
    /// A `Location` for `path`: absolute under `server.external_url` when
    /// set, else relative (clients resolve it against what they used).
    pub fn location(&self, path: &str) -> String {
        match &self.external_url {
            Some(base) => format!("{base}{path}"),
            None => path.to_string(),
        }
    }

    /// Serve one request. Never fails: every error becomes an OCI response.
    pub async fn serve(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<body::Logged>, Infallible> {
        let start = Instant::now();
        let method = req.method().clone();
        // For the log line; a clone shares the request's bytes.
        let target = req.uri().clone();
        let mut resp = match self.dispatch(req).await {
            Ok(r) => r,
            Err(e) => {
                if e.status_code().is_server_error() || e.code == ErrorCode::UpstreamFailed {
                    tracing::warn!(%method, %target, code = e.code.as_str(), message = e.message(), "request failed");
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
        Ok(resp.map(|b| body::Logged::new(b, method, target, status, start, expected)))
    }

    /// The management API, the dashboard and the token endpoint are boxed:
    /// their futures are large, and inline they would make every request's
    /// future that large (it is moved, i.e. copied, as a whole).
    async fn dispatch(&self, req: Request<Incoming>) -> Reply {
        if let Some(r) = ops::handle(self, &req).await {
            return r;
        }
        if req.uri().path().starts_with("/api/v1/") {
            return Box::pin(self.management(req)).await;
        }
        if crate::ui::owns(req.uri().path()) {
            return Box::pin(crate::ui::serve(self, req)).await;
        }
        if req.uri().path() == "/token" && matches!(*req.method(), Method::GET | Method::POST) {
            return Box::pin(self.token(req)).await;
        }
        let route = Route::parse(req.method(), req.uri().path())?;
        let target = match route.repo() {
            Some(name) => {
                let ns = handlers::Query::of(&req).get("ns").map(str::to_string);
                Some(
                    self.registry
                        .resolve(name, ns.as_deref(), intent(req.method(), &route))
                        .await?,
                )
            }
            None => None,
        };
        let remote = target.as_ref().is_some_and(Target::is_remote);
        let identity = self.authorize(&req, &route, remote).await?;
        let mut req = req;
        req.extensions_mut().insert(identity);
        let event = events::pending(self, &req, &route);
        let resp = match target {
            Some(Target::Remote(t)) => handlers::proxied::dispatch(self, req, route, t).await?,
            _ => self.local(req, route).await?,
        };
        if let Some(e) = event {
            events::observed(self, e, resp.status(), resp.headers()).await;
        }
        Ok(resp)
    }

    /// A request for a local repository (or `/v2/`, the catalogue).
    async fn local(&self, req: Request<Incoming>, route: Route) -> Reply {
        use handlers::{blobs, listing, manifests, uploads};
        use Route::*;
        let m = req.method().clone();
        match (&m, route) {
            (&Method::GET | &Method::HEAD, Base) => handlers::base(),
            (&Method::GET, Catalog) => listing::catalog(self, &req).await,
            (&Method::GET, Tags(n)) => listing::tags(self, &req, &n).await,
            (&Method::GET, Referrers(n, d)) => listing::referrers(self, &req, &n, &d).await,
            (&Method::GET | &Method::HEAD, Manifest(n, r)) => {
                manifests::get(self, &req, &n, &r).await
            }
            (&Method::PUT, Manifest(n, r)) => manifests::put(self, req, &n, &r).await,
            (&Method::DELETE, Manifest(n, r)) => manifests::delete(self, &req, &n, &r).await,
            (&Method::GET | &Method::HEAD, Blob(n, d)) => blobs::get(self, &req, &n, &d).await,
            (&Method::DELETE, Blob(n, d)) => blobs::delete(self, &n, &d).await,
            (&Method::POST, UploadStart(n)) => uploads::start(self, req, &n).await,
            (&Method::GET, Upload(n, id)) => uploads::status(self, &n, &id).await,
            (&Method::PATCH, Upload(n, id)) => uploads::patch(self, req, &n, &id).await,
            (&Method::PUT, Upload(n, id)) => uploads::finish(self, req, &n, &id).await,
            (&Method::DELETE, Upload(n, id)) => uploads::cancel(self, &n, &id).await,
            (m, _) => Err(ApiError::new(ErrorCode::Unsupported)
                .detail(format!("method {m} is not allowed here"))),
        }
    }
}

/// The request body as a stream of data chunks (trailers dropped).
pub(crate) fn body_stream(req: Request<Incoming>) -> http_body_util::BodyDataStream<Incoming> {
    req.into_body().into_data_stream()
}

/// How much of a refused upload's remaining body is read and dropped so
/// the client, still sending, gets to read the error (closing a socket with
/// unread data resets it, and most HTTP clients then report "broken pipe"
/// instead of the message). Past either bound the connection is closed.
const DRAIN_MAX_BYTES: u64 = 64 << 20;
const DRAIN_MAX_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// `result` of consuming `body`, after reading and dropping what is left
/// of the body when it is an error (within [`DRAIN_MAX_BYTES`] and
/// [`DRAIN_MAX_TIME`]). Every handler that streams a request body into the
/// registry passes its outcome through here.
pub(crate) async fn drained<S, E, T, R>(body: &mut S, result: Result<T, R>) -> Result<T, R>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
{
    if result.is_err() {
        drain_body(body).await;
    }
    result
}

async fn drain_body<S, E>(body: &mut S)
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
{
    use futures_util::StreamExt as _;
    let drain = async {
        let mut left = DRAIN_MAX_BYTES;
        while let Some(Ok(chunk)) = body.next().await {
            left = left.saturating_sub(chunk.len() as u64);
            if left == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_MAX_TIME, drain).await;
}

/// Read a small request body, refusing more than `limit` bytes.
pub(crate) async fn read_limited(
    req: Request<Incoming>,
    limit: usize,
) -> Result<bytes::Bytes, ApiError> {
    let limited = http_body_util::Limited::new(req.into_body(), limit);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::new(ErrorCode::TooLarge).explain(format!(
                "the request body is larger than the limit of {limit} bytes"
            )))
        }
        Err(e) => {
            Err(ApiError::new(ErrorCode::ManifestInvalid)
                .detail(format!("reading request body: {e}")))
        }
    }
}
