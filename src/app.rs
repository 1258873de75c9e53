//! Wires store, proxy and API together, accepts connections (HTTP/1.1 and
//! HTTP/2 on one port: ALPN under TLS, h2c prior knowledge in plain HTTP),
//! runs background maintenance, and drains on shutdown.
//!
//! Concurrency choices:
//! - `server.max_connections` is a semaphore taken *before* `accept`: at the
//!   limit wharf stops accepting and further clients wait in the kernel's
//!   backlog instead of being accepted and starved.
//! - Each connection is its own task; its socket is wrapped in [`Idle`],
//!   which fails the connection when nothing was read or written for
//!   `server.idle_timeout` (clients that stop sending or stop reading).
//!   hyper's `header_read_timeout` bounds the time to send a header block
//!   (slowloris), `max_buf_size`/`max_headers` its size.
//! - Every request runs in a `request` span with its id and with the id in a
//!   task local, so log lines and upstream requests carry it.
//! - Shutdown: the listener is closed at once (new connections are
//!   refused), in-flight requests get `server.shutdown_grace` to finish.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::api::{body, Api};
use crate::config::Config;
use crate::metrics::{self, Metrics};
use crate::proxy::{Proxy, Router};
use crate::store::Store;
use crate::tls::Tls;

/// How often the store is scanned for the size and blob-count gauges.
const STORE_SCAN_INTERVAL: Duration = Duration::from_secs(60);

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Open the store and serve until `shutdown` resolves.
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    // Not generic below this point: the server is compiled once, in the
    // library, whatever the caller's shutdown future is.
    serve(cfg, Box::pin(shutdown)).await
}

async fn serve(cfg: Config, shutdown: Pin<Box<dyn Future<Output = ()> + Send>>) -> anyhow::Result<()> {
    // The certificate first: a bad one must stop start-up with a message
    // naming the key, before anything listens.
    let tls = match &cfg.server.tls {
        Some(files) => Some(Arc::new(Tls::new(files)?)),
        None => None,
    };
    let store = Store::open(&cfg.data_dir)
        .with_context(|| format!("opening data directory {}", cfg.data_dir.display()))?;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, scheme, data_dir = %cfg.data_dir.display(), "wharf listening");

    let proxy = Proxy::new(store.clone(), Router::new(cfg.remotes.clone())).map_err(anyhow::Error::msg)?;
    for r in &cfg.remotes {
        tracing::info!(remote = %r.name, url = %r.url, default = r.default, "remote configured");
    }
    let metrics = Arc::new(Metrics::new());
    let auth = crate::auth::Authorizer::new(&cfg, &cfg.data_dir).context("loading accounts")?;
    if !auth.enabled() && !cfg.listen.ip().is_loopback() {
        tracing::warn!(addr = %cfg.listen, "no accounts configured: anyone who can reach this address may push, pull and delete");
    }
    let api = Arc::new(Api {
        auth,
        tls: cfg.server.tls.is_some(),
        proxy,
        store: store.clone(),
        max_manifest_size: cfg.max_manifest_size,
        metrics: metrics.clone(),
        gc_grace: cfg.gc_grace,
    });
    let mut background = vec![
        tokio::spawn(cleanup_loop(store.clone(), cfg.clone())),
        tokio::spawn(metrics::store_scan_loop(metrics.clone(), store.clone(), STORE_SCAN_INTERVAL)),
        tokio::spawn(crate::proxy::evict::run(store.clone(), cfg.remotes.clone(), cfg.cache_max_size, cfg.evict_interval)),
    ];
    if let Some(every) = cfg.gc_interval {
        background.push(tokio::spawn(gc_loop(store.clone(), every, cfg.gc_grace)));
    }
    if let Some(t) = &tls {
        background.push(tokio::spawn(t.clone().watch(metrics.clone())));
    }

    let s = &cfg.server;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(s.header_read_timeout)
        .max_buf_size(s.max_header_size)
        .max_headers(s.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(s.max_header_size as u32)
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let conn_cfg = Arc::new(ConnConfig {
        builder,
        api,
        metrics,
        tls,
        idle_timeout: s.idle_timeout,
        handshake_timeout: s.header_read_timeout,
    });

    let slots = Arc::new(tokio::sync::Semaphore::new(s.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = shutdown;
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p?,
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off
                    // instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let c = conn_cfg.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let _open = c.metrics.connection();
            c.serve(stream, peer, watcher).await;
        });
    }
    drop(listener);
    tracing::info!(grace = ?cfg.server.shutdown_grace, "shutting down: listener closed, draining in-flight requests");
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("drained"),
        _ = tokio::time::sleep(cfg.server.shutdown_grace) => tracing::warn!("grace period over, closing remaining connections"),
    }
    for t in background {
        t.abort();
    }
    Ok(())
}

/// Everything a connection task needs.
struct ConnConfig {
    builder: auto::Builder<TokioExecutor>,
    api: Arc<Api>,
    metrics: Arc<Metrics>,
    tls: Option<Arc<Tls>>,
    idle_timeout: Duration,
    handshake_timeout: Duration,
}

impl ConnConfig {
    async fn serve(self: Arc<Self>, stream: tokio::net::TcpStream, peer: std::net::SocketAddr, watcher: Watcher) {
        let io = Idle::new(stream, self.idle_timeout);
        match &self.tls {
            None => self.serve_io(io, peer, watcher).await,
            Some(tls) => {
                let tls_stream = match tokio::time::timeout(self.handshake_timeout, tls.acceptor().accept(io)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
                self.serve_io(tls_stream, peer, watcher).await
            }
        }
    }

    async fn serve_io<I>(self: &Arc<Self>, io: I, peer: std::net::SocketAddr, watcher: Watcher)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let this = self.clone();
        let svc = service_fn(move |req| this.clone().request(req));
        let conn = self.builder.serve_connection_with_upgrades(TokioIo::new(io), svc).into_owned();
        if let Err(e) = watcher.watch(conn).await {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }

    /// One request: id, span, API, then count it when its body is done.
    async fn request(self: Arc<Self>, req: Request<Incoming>) -> Result<Response<Counted>, Infallible> {
        let start = Instant::now();
        let route = metrics::route_family(req.uri().path());
        let id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| crate::telemetry::accept_request_id(v.as_bytes()))
            .unwrap_or_else(crate::telemetry::new_request_id);
        let span = tracing::info_span!("request", id = %id);
        let id: Arc<str> = id.into();
        // Boxed as a trait object: keeps this future's type (and the
        // compiler's Send check of the connection task) shallow.
        let serve: Pin<Box<dyn Future<Output = Result<Response<body::Logged>, Infallible>> + Send>> =
            Box::pin(self.api.clone().serve(req));
        let resp = crate::telemetry::with_request_id(id.clone(), serve)
            .instrument(span.clone())
            .await;
        let Ok(mut resp) = resp;
        if let Ok(v) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert("x-request-id", v);
        }
        let status = resp.status().as_u16();
        let metrics = self.metrics.clone();
        Ok(resp.map(|b| Counted {
            inner: Some(Box::pin(b)),
            metrics,
            route,
            status,
            start,
            bytes: 0,
            span,
        }))
    }
}

/// The response body as sent: counts bytes, records the request's metrics
/// when it ends or is dropped, and drops the inner body (which writes the
/// request's log line) inside the request's span.
struct Counted {
    inner: Option<Pin<Box<body::Logged>>>,
    metrics: Arc<Metrics>,
    route: &'static str,
    status: u16,
    start: Instant,
    bytes: u64,
    span: tracing::Span,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.metrics
            .request_done(self.route, self.status, self.bytes, self.start.elapsed());
        let _in = self.span.enter();
        self.inner.take();
    }
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<http_body::Frame<Bytes>, io::Error>>> {
        let Some(inner) = self.inner.as_mut() else { return Poll::Ready(None) };
        let r = inner.as_mut().poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &r {
            if let Some(d) = f.data_ref() {
                self.bytes += d.len() as u64;
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().map_or(true, |b| b.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.as_ref().map(|b| b.size_hint()).unwrap_or_default()
    }
}

/// A socket that fails with `TimedOut` once nothing was read or written
/// for `timeout` while the connection waits on it.
struct Idle<T> {
    io: T,
    sleep: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    last: tokio::time::Instant,
}

impl<T> Idle<T> {
    fn new(io: T, timeout: Duration) -> Idle<T> {
        let now = tokio::time::Instant::now();
        Idle {
            io,
            sleep: Box::pin(tokio::time::sleep_until(now + timeout)),
            timeout,
            last: now,
        }
    }
}

impl<T> Idle<T> {
    /// Note activity on `Ready`; on `Pending`, fail once the connection has
    /// been idle past the timeout.
    fn activity<R>(&mut self, r: Poll<io::Result<R>>, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        match r {
            Poll::Ready(r) => {
                self.last = tokio::time::Instant::now();
                Poll::Ready(r)
            }
            Poll::Pending if idle_expired(self.sleep.as_mut(), self.last, self.timeout, cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// On `Pending`: whether the idle deadline has passed (re-arming the timer
/// when there was activity since it was set).
fn idle_expired(mut sleep: Pin<&mut tokio::time::Sleep>, last: tokio::time::Instant, timeout: Duration, cx: &mut Context<'_>) -> bool {
    loop {
        if sleep.as_mut().poll(cx).is_pending() {
            return false;
        }
        let deadline = last + timeout;
        if deadline <= tokio::time::Instant::now() {
            return true;
        }
        sleep.as_mut().reset(deadline);
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "connection idle for too long")
}

impl<T: AsyncRead + Unpin> AsyncRead for Idle<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        this.activity(r, cx)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Idle<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.activity(r, cx)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.activity(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.io).poll_flush(cx) {
            Poll::Pending if idle_expired(this.sleep.as_mut(), this.last, this.timeout, cx) => Poll::Ready(Err(timed_out())),
            r => r,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

async fn cleanup_loop(store: Store, cfg: Config) {
    let mut tick = tokio::time::interval(cfg.cleanup_interval);
    loop {
        tick.tick().await;
        match store.cleanup(cfg.upload_max_age, cfg.temp_max_age).await {
            Ok(r) if r.uploads + r.temp_files > 0 => {
                tracing::info!(uploads = r.uploads, temp_files = r.temp_files, "removed abandoned uploads and temp files")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cleanup failed"),
        }
    }
}

/// Online GC every `storage.gc_interval` (first run one interval after
/// start-up).
async fn gc_loop(store: Store, every: Duration, grace: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let opts = crate::store::gc::GcOptions { dry_run: false, grace };
        if let Err(e) = store.gc(&opts).await {
            tracing::warn!(error = %e, "garbage collection failed");
        }
    }
}
