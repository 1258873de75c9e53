//! The accept loop: HTTP/1.1 and HTTP/2 on one port (ALPN under TLS, h2c
//! prior knowledge in plain HTTP), one task per connection, and the drain
//! on shutdown.
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
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tracing::Instrument;

use super::counted::Counted;
use super::idle::Idle;
use super::zerocopy::ZeroCopy;
use crate::api::{body, Api, ClientAddr, SendFile};
use crate::config::Server;
use crate::metrics::{self, Metrics};
use crate::tls::Tls;

/// Everything a connection task needs.
pub struct Conns {
    builder: auto::Builder<TokioExecutor>,
    api: Arc<Api>,
    metrics: Arc<Metrics>,
    tls: Option<Arc<Tls>>,
    idle_timeout: Duration,
    handshake_timeout: Duration,
    /// `server.sendfile`: mark plain HTTP/1.x requests [`SendFile`].
    sendfile: bool,
}

impl Conns {
    /// How connections are served: `server`'s limits, TLS when given.
    pub fn new(api: Arc<Api>, metrics: Arc<Metrics>, tls: Option<Arc<Tls>>, s: &Server) -> Conns {
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
        let sendfile = s.sendfile && tls.is_none();
        Conns {
            builder,
            api,
            metrics,
            tls,
            idle_timeout: s.idle_timeout,
            handshake_timeout: s.header_read_timeout,
            sendfile,
        }
    }

    async fn serve(self: Arc<Self>, stream: TcpStream, peer: SocketAddr, watcher: Watcher) {
        let Some(tls) = &self.tls else {
            let io = Idle::new(ZeroCopy::new(stream), self.idle_timeout);
            return self.serve_io(io, peer, watcher).await;
        };
        let io = Idle::new(stream, self.idle_timeout);
        match tokio::time::timeout(self.handshake_timeout, tls.acceptor().accept(io)).await {
            Ok(Ok(s)) => self.serve_io(s, peer, watcher).await,
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        }
    }

    async fn serve_io<I>(self: &Arc<Self>, io: I, peer: SocketAddr, watcher: Watcher)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let this = self.clone();
        let svc = service_fn(move |req| this.clone().request(req, peer));
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), svc)
            .into_owned();
        if let Err(e) = watcher.watch(conn).await {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }

    /// One request: id, span, API, then count it when its body is done.
    async fn request(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Response<Counted>, Infallible> {
        let start = Instant::now();
        req.extensions_mut().insert(ClientAddr(peer.ip()));
        // Plain HTTP/1.x is written through `ZeroCopy` (with
        // `server.sendfile`); TLS and HTTP/2 frame the bytes themselves.
        if self.sendfile && req.version() < http::Version::HTTP_2 {
            req.extensions_mut().insert(SendFile);
        }
        let route = metrics::route_family(req.uri().path());
        let id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| crate::telemetry::accept_request_id(v.as_bytes()))
            .unwrap_or_else(crate::telemetry::new_request_id);
        let span = tracing::info_span!("request", id = %id, user = tracing::field::Empty);
        let id: Arc<str> = id.into();
        // Boxed as a trait object: keeps this future's type (and the
        // compiler's Send check of the connection task) shallow.
        let serve: Pin<
            Box<dyn Future<Output = Result<Response<body::Logged>, Infallible>> + Send>,
        > = Box::pin(self.api.clone().serve(req));
        let Ok(mut resp) = crate::telemetry::with_request_id(id.clone(), serve)
            .instrument(span.clone())
            .await;
        if let Ok(v) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert("x-request-id", v);
        }
        let status = resp.status().as_u16();
        let metrics = self.metrics.clone();
        Ok(resp.map(|b| Counted::new(b, metrics, route, status, start, span)))
    }
}

/// Accept on `listener` until `shutdown` resolves, then drain for at most
/// `grace`.
pub async fn serve(
    listener: TcpListener,
    conns: Arc<Conns>,
    max_connections: usize,
    grace: Duration,
    shutdown: Pin<Box<dyn Future<Output = ()> + Send>>,
) -> anyhow::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
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
        let c = conns.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let _open = c.metrics.connection();
            c.serve(stream, peer, watcher).await;
        });
    }
    drop(listener);
    tracing::info!(
        ?grace,
        "shutting down: listener closed, draining in-flight requests"
    );
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("drained"),
        _ = tokio::time::sleep(grace) => tracing::warn!("grace period over, closing remaining connections"),
    }
    Ok(())
}
