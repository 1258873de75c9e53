//! Wires the parts together ([`App::build`]), runs the background
//! maintenance, and serves ([`serve`]) until shutdown.

pub mod alloc;
mod counted;
mod idle;
pub mod serve;
mod zerocopy;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::api::Api;
use crate::config::Config;
use crate::metrics::{self, Metrics};
use crate::registry::Registry;
use crate::store::Store;
use crate::tls::Tls;

/// How often the store is scanned for the size and blob-count gauges.
const STORE_SCAN_INTERVAL: Duration = Duration::from_secs(60);

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
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

/// A wired server, ready to serve.
pub struct App {
    cfg: Config,
    api: Arc<Api>,
    metrics: Arc<Metrics>,
    tls: Option<Arc<Tls>>,
}

impl App {
    /// Load the certificate, open the store, build the registry and API.
    pub async fn build(cfg: Config) -> anyhow::Result<App> {
        // The certificate first: a bad one must stop start-up with a message
        // naming the key, before anything listens.
        let tls = match &cfg.server.tls {
            Some(files) => Some(Arc::new(Tls::new(files)?)),
            None => None,
        };
        let store = open_store(&cfg).await?;
        let registry = Registry::open(&cfg, store)
            .await
            .context("loading accounts and projects")?;
        for r in &cfg.remotes {
            tracing::info!(remote = %r.name, url = %r.url, default = r.default, "remote configured");
        }
        for w in cfg.warnings() {
            tracing::warn!("{w}");
        }
        let metrics = Arc::new(Metrics::new());
        let api = Arc::new(Api {
            registry,
            tls: tls.is_some(),
            external_url: cfg.server.external_url.clone(),
            metrics: metrics.clone(),
        });
        Ok(App {
            cfg,
            api,
            metrics,
            tls,
        })
    }

    /// Start the background tasks (stopped when the returned handles drop
    /// out of [`App::serve`]).
    fn background(&self) -> Vec<JoinHandle<()>> {
        let store = &self.api.registry.store;
        let cfg = &self.cfg;
        let mut tasks = vec![
            tokio::spawn(check_secrets(cfg.clone())),
            tokio::spawn(cleanup_loop(store.clone(), cfg.clone())),
            tokio::spawn(metrics::store_scan_loop(
                self.metrics.clone(),
                store.clone(),
                STORE_SCAN_INTERVAL,
            )),
            tokio::spawn(
                self.api
                    .registry
                    .proxy
                    .evictor()
                    .clone()
                    .run(cfg.evict_interval),
            ),
        ];
        if let Some(c) = store.cluster() {
            tasks.push(tokio::spawn(refresh_loop(self.api.clone(), c.refresh)));
        }
        if let Some(every) = cfg.gc_interval {
            tasks.push(tokio::spawn(gc_loop(store.clone(), every, cfg.gc_grace)));
        }
        if let Some(every) = cfg.retention.interval {
            tasks.push(tokio::spawn(retention_loop(self.api.clone(), every)));
        }
        if let Some(t) = &self.tls {
            tasks.push(tokio::spawn(t.clone().watch(self.metrics.clone())));
        }
        tasks
    }

    /// Serve on `listener` until `shutdown` resolves, then drain.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> anyhow::Result<()> {
        let addr = listener.local_addr()?;
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        tracing::info!(%addr, scheme, data_dir = %self.cfg.data_dir.display(), "wharf listening");
        let background = self.background();
        let s = &self.cfg.server;
        let conns = Arc::new(serve::Conns::new(
            self.api.clone(),
            self.metrics.clone(),
            self.tls.clone(),
            s,
        ));
        let res = serve::serve(
            listener,
            conns,
            s.max_connections,
            s.shutdown_grace,
            shutdown,
        )
        .await;
        // Events of the requests just drained go to disk before exit.
        self.api.registry.notifier.flush().await;
        for t in background {
            t.abort();
        }
        if let Err(e) = self.api.registry.store.save_catalog().await {
            tracing::warn!(error = %e, "could not save the repository index; the next start rebuilds it");
        }
        res
    }
}

/// Open the configured store: the data directory, or the S3 bucket (with
/// local spool files in the data directory). A bucket that cannot be used
/// stops start-up with a message naming it and its endpoint.
async fn open_store(cfg: &Config) -> anyhow::Result<Store> {
    let s3 = match &cfg.storage {
        crate::config::StorageBackend::Filesystem => {
            return Store::open(&cfg.data_dir)
                .with_context(|| format!("opening data directory {}", cfg.data_dir.display()))
        }
        crate::config::StorageBackend::S3(s3) => s3,
    };
    let keys = match &s3.credentials {
        None => None,
        Some(r) => Some(
            crate::secrets::aws_keys("storage.s3.credentials", r)
                .await
                .with_context(|| {
                    format!(
                        "storage.s3.credentials ({}) for {}",
                        r.describe(),
                        s3.describe()
                    )
                })?,
        ),
    };
    let store = Store::open_s3(&cfg.data_dir, s3, keys)
        .await
        .context("opening the S3 store")?;
    tracing::info!(target = %s3.describe(), prefix = %s3.prefix, part_size = s3.part_size, "storage: S3");
    Ok(store)
}

/// Build the app from `cfg`, bind its address and serve until `shutdown`.
pub async fn run(
    cfg: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listen = cfg.listen;
    let app = App::build(cfg).await?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    app.serve(listener, Box::pin(shutdown)).await
}

/// Read every secret reference once at start-up and warn about those that
/// fail (in the background: a slow secrets backend must not delay serving).
/// Never logs a value; the error names the reference and the cause.
async fn check_secrets(cfg: Config) {
    for r in &cfg.remotes {
        let creds = crate::secrets::RemoteCredentials::new(r.credential_info());
        for e in creds.entries() {
            if let Err(err) = e.resolve_now().await {
                tracing::warn!(remote = %r.name, secret = %e.reference(), error = %err, "cannot read a secret reference: pulls that need it will fail");
            }
        }
    }
}

async fn cleanup_loop(store: Store, cfg: Config) {
    let mut tick = tokio::time::interval(cfg.cleanup_interval);
    loop {
        tick.tick().await;
        match store.cleanup(cfg.upload_max_age, cfg.temp_max_age).await {
            Ok(r) if r.uploads + r.temp_files > 0 => {
                tracing::info!(
                    uploads = r.uploads,
                    temp_files = r.temp_files,
                    "removed abandoned uploads and temp files"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cleanup failed"),
        }
        match store.audit().prune(cfg.audit_retention).await {
            Ok(0) => {}
            Ok(days) => tracing::info!(days, "removed audit entries past storage.audit_retention"),
            Err(e) => tracing::warn!(error = %e, "pruning the audit log failed"),
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
        let opts = crate::store::gc::GcOptions {
            dry_run: false,
            grace,
            trigger: "schedule",
        };
        match store.gc(&opts).await {
            Ok(_) => {}
            Err(e @ crate::store::StoreError::Busy { .. }) => {
                tracing::info!("scheduled garbage collection skipped: {e}")
            }
            Err(e) => tracing::warn!(error = %e, "garbage collection failed"),
        }
    }
}

/// On a store shared with other replicas: read robots and projects again
/// every `storage.s3.refresh_interval` (the bound on how long a robot
/// revoked through another replica still works here).
async fn refresh_loop(api: Arc<Api>, every: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let r = &api.registry;
        if let Err(e) = r.auth.reload_robots().await {
            tracing::warn!(error = %e, "could not re-read robots from the store");
        }
        if let Err(e) = r.projects.reload().await {
            tracing::warn!(error = %e, "could not re-read projects from the store");
        }
        // Pull tokens re-read the store on use; this refreshes the ids that
        // Bearer tokens are checked against without I/O.
        if let Err(e) = r.auth.pull_tokens().reload().await {
            tracing::warn!(error = %e, "could not re-read pull tokens from the store");
        }
    }
}

/// Every project's retention rules every `retention.interval` (first run
/// one interval after start-up).
async fn retention_loop(api: Arc<Api>, every: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        api.registry.retention_sweep().await;
    }
}
