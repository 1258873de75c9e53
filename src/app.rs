//! Wires store and API together, accepts connections (HTTP/1.1 and h2c on
//! one port), runs background maintenance, and drains on shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::api::Api;
use crate::config::Config;
use crate::proxy::{Proxy, Router};
use crate::store::Store;

/// How long in-flight requests may run after a shutdown signal.
const DRAIN_GRACE: Duration = Duration::from_secs(30);

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
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let store = Store::open(&cfg.data_dir)
        .with_context(|| format!("opening data directory {}", cfg.data_dir.display()))?;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %cfg.data_dir.display(), "wharf listening");

    let proxy = Proxy::new(store.clone(), Router::new(cfg.remotes.clone())).map_err(anyhow::Error::msg)?;
    for r in &cfg.remotes {
        tracing::info!(remote = %r.name, url = %r.url, default = r.default, "remote configured");
    }
    let api = Arc::new(Api {
        proxy,
        store: store.clone(),
        max_manifest_size: cfg.max_manifest_size,
    });
    let cleanup = tokio::spawn(cleanup_loop(store.clone(), cfg.clone()));

    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off
                        // instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let api = api.clone();
                let svc = service_fn(move |req| api.clone().serve(req));
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: no new connections, draining in-flight requests");
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("drained"),
        _ = tokio::time::sleep(DRAIN_GRACE) => tracing::warn!("grace period over, closing remaining connections"),
    }
    cleanup.abort();
    Ok(())
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
