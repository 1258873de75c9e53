//! `/metrics`: Prometheus text exposition (prometheus-client).
//!
//! Two kinds of series:
//! - live ones owned here and updated on the request path: requests by
//!   route family and status, response bytes, request latency, open
//!   connections, TLS reloads;
//! - scraped ones read at scrape time from counters the lower layers keep
//!   anyway ([`crate::proxy::ProxyStats`] per remote,
//!   [`crate::upstream::UpstreamStats`], the in-flight table) and from a
//!   periodic store scan (size and blob count).
//!
//! Label values are bounded: route families, HTTP status codes, remote
//! names from the config. Never repository names or digests.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::proxy::Proxy;
use crate::store::Store;

mod process;
pub use process::ProcessStats;

/// After a change to the store's content, wait this long before rescanning
/// (a push of many layers ends in one scan).
const RESCAN_DEBOUNCE: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

type HistogramFamily = Family<RouteLabel, Histogram, fn() -> Histogram>;

fn request_histogram() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(exponential_buckets(0.0005, 4.0, 9))
}

/// Process-wide metrics (shared by the accept loop, the API and ops).
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteStatus, Counter>,
    response_bytes: Family<RouteLabel, Counter>,
    request_seconds: HistogramFamily,
    connections_open: Gauge,
    connections_total: Counter,
    tls_reloads: Family<ResultLabel, Counter>,
    /// Filled by [`scan_store`], exported as gauges.
    store_bytes: AtomicU64,
    store_blobs: AtomicU64,
    store_scanned: AtomicU64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The route family of a request path (a bounded label value).
pub fn route_family(path: &str) -> &'static str {
    match path {
        "/metrics" | "/healthz" | "/readyz" => return "ops",
        "/v2" | "/v2/" => return "base",
        "/v2/_catalog" => return "catalog",
        _ => {}
    }
    if path.starts_with("/token") {
        "token"
    } else if path.starts_with("/api/") {
        "admin"
    } else if path == "/ui" || path.starts_with("/ui/") {
        "ui"
    } else if !path.starts_with("/v2/") {
        "other"
    } else if path.contains("/blobs/uploads") {
        "upload"
    } else if path.contains("/blobs/") {
        "blob"
    } else if path.contains("/manifests/") {
        "manifest"
    } else if path.ends_with("/tags/list") {
        "tags"
    } else if path.contains("/referrers/") {
        "referrers"
    } else {
        "other"
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("wharf");
        let requests = Family::<RouteStatus, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route family and status",
            requests.clone(),
        );
        let response_bytes = Family::<RouteLabel, Counter>::default();
        registry.register(
            "http_response_bytes",
            "Response body bytes sent, by route family",
            response_bytes.clone(),
        );
        let request_seconds: HistogramFamily = Family::new_with_constructor(request_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time from request to the end of the response body, by route family",
            request_seconds.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "Client connections open now",
            connections_open.clone(),
        );
        let connections_total = Counter::default();
        registry.register(
            "connections",
            "Client connections accepted",
            connections_total.clone(),
        );
        let tls_reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "tls_reloads",
            "Certificate reloads, by result (ok, error)",
            tls_reloads.clone(),
        );
        Metrics {
            registry,
            requests,
            response_bytes,
            request_seconds,
            connections_open,
            connections_total,
            tls_reloads,
            store_bytes: AtomicU64::new(0),
            store_blobs: AtomicU64::new(0),
            store_scanned: AtomicU64::new(0),
        }
    }

    /// One finished request (called when its response body ends or drops).
    pub fn request_done(&self, route: &'static str, status: u16, bytes: u64, elapsed: Duration) {
        self.requests
            .get_or_create(&RouteStatus { route, status })
            .inc();
        let l = RouteLabel { route };
        if bytes > 0 {
            self.response_bytes.get_or_create(&l).inc_by(bytes);
        }
        self.request_seconds
            .get_or_create(&l)
            .observe(elapsed.as_secs_f64());
    }

    /// A connection opened; the guard counts it closed when dropped.
    pub fn connection(self: &Arc<Self>) -> ConnectionGuard {
        self.connections_total.inc();
        self.connections_open.inc();
        ConnectionGuard(self.clone())
    }

    pub fn tls_reloaded(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.tls_reloads
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// Record a store scan's result.
    pub fn set_store(&self, bytes: u64, blobs: u64) {
        self.store_bytes.store(bytes, Relaxed);
        self.store_blobs.store(blobs, Relaxed);
        self.store_scanned.store(1, Relaxed);
    }

    /// (bytes, blobs) from the last store scan, once one finished.
    pub fn store_totals(&self) -> Option<(u64, u64)> {
        (self.store_scanned.load(Relaxed) == 1).then(|| {
            (
                self.store_bytes.load(Relaxed),
                self.store_blobs.load(Relaxed),
            )
        })
    }

    /// The exposition text: live series, then those read from `proxy` now.
    pub fn render(&self, proxy: &Proxy) -> String {
        let mut out = String::with_capacity(8192);
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        let mut scraped = Registry::with_prefix("wharf");
        scraped.register_collector(Box::new(Snapshot::take(self, proxy)));
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &scraped);
        let mut process = Registry::default();
        process.register_collector(Box::new(ProcessSnapshot(ProcessStats::read())));
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &process);
        let _ = prometheus_client::encoding::text::encode_eof(&mut out);
        out
    }
}

/// Decrements `connections_open` on drop.
pub struct ConnectionGuard(Arc<Metrics>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections_open.dec();
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    remote: String,
    kind: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RemoteLabel {
    remote: String,
}

/// Values read at scrape time.
#[derive(Debug)]
struct Snapshot {
    remotes: Vec<RemoteSnapshot>,
    fetches: u64,
    coalesced: u64,
    spools: u64,
    store: Option<(u64, u64)>,
}

#[derive(Debug)]
struct RemoteSnapshot {
    name: String,
    manifest_hits: u64,
    manifest_misses: u64,
    blob_hits: u64,
    blob_misses: u64,
    stale: u64,
    revalidations: u64,
    up_requests: u64,
    up_errors: u64,
    up_bytes: u64,
    bandwidth_limit: u64,
    throttled_us: u64,
    latency: (f64, u64, Vec<(f64, u64)>),
}

impl Snapshot {
    fn take(m: &Metrics, proxy: &Proxy) -> Snapshot {
        let remotes = proxy
            .remote_stats()
            .into_iter()
            .map(|(name, p, u)| RemoteSnapshot {
                name: name.to_string(),
                manifest_hits: p.manifest_hits.load(Relaxed),
                manifest_misses: p.manifest_misses.load(Relaxed),
                blob_hits: p.blob_hits.load(Relaxed),
                blob_misses: p.blob_misses.load(Relaxed),
                stale: p.stale_served.load(Relaxed),
                revalidations: p.revalidations.load(Relaxed),
                up_requests: u.requests.load(Relaxed),
                up_errors: u.errors.load(Relaxed),
                up_bytes: u.bytes.load(Relaxed),
                bandwidth_limit: u.bandwidth_limit,
                throttled_us: u.throttled_us.load(Relaxed),
                latency: u.latency.snapshot(),
            })
            .collect();
        let inf = proxy.inflight();
        Snapshot {
            remotes,
            fetches: inf.stats.fetches.load(Relaxed),
            coalesced: inf.stats.coalesced.load(Relaxed),
            spools: inf.len() as u64,
            store: (m.store_scanned.load(Relaxed) == 1)
                .then(|| (m.store_bytes.load(Relaxed), m.store_blobs.load(Relaxed))),
        }
    }
}

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(v);
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: i64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(v);
    g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        {
            let mut e = enc.encode_descriptor(
                "cache_requests",
                "Pull-through lookups per remote: kind (manifest, blob) and result (hit, miss)",
                None,
                MetricType::Counter,
            )?;
            for r in &self.remotes {
                for (kind, result, v) in [
                    ("manifest", "hit", r.manifest_hits),
                    ("manifest", "miss", r.manifest_misses),
                    ("blob", "hit", r.blob_hits),
                    ("blob", "miss", r.blob_misses),
                ] {
                    let l = CacheLabels {
                        remote: r.name.clone(),
                        kind,
                        result,
                    };
                    ConstCounter::new(v).encode(e.encode_family(&l)?)?;
                }
            }
        }
        type Field = fn(&RemoteSnapshot) -> u64;
        let per_remote: [(&str, &str, Field); 5] = [
            (
                "cache_stale_served",
                "Cached manifests or tag lists served because the remote failed",
                |r| r.stale,
            ),
            (
                "cache_revalidations",
                "Tag revalidations (HEAD) after the tag TTL",
                |r| r.revalidations,
            ),
            (
                "upstream_requests",
                "HTTP requests sent to the remote",
                |r| r.up_requests,
            ),
            (
                "upstream_errors",
                "Remote requests that failed to connect or answered 429/5xx",
                |r| r.up_errors,
            ),
            (
                "upstream_bytes",
                "Body bytes received from the remote",
                |r| r.up_bytes,
            ),
        ];
        for (name, help, f) in per_remote {
            let mut e = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for r in &self.remotes {
                let l = RemoteLabel {
                    remote: r.name.clone(),
                };
                ConstCounter::new(f(r)).encode(e.encode_family(&l)?)?;
            }
        }
        {
            let mut e = enc.encode_descriptor(
                "upstream_throttled_seconds",
                "Time blob downloads from the remote were held back by its max_bandwidth",
                None,
                MetricType::Counter,
            )?;
            for r in self.remotes.iter().filter(|r| r.bandwidth_limit > 0) {
                let l = RemoteLabel {
                    remote: r.name.clone(),
                };
                ConstCounter::new(r.throttled_us as f64 / 1e6).encode(e.encode_family(&l)?)?;
            }
        }
        {
            let mut e = enc.encode_descriptor(
                "upstream_bandwidth_limit_bytes",
                "The remote's max_bandwidth in bytes per second (remotes with a cap only)",
                None,
                MetricType::Gauge,
            )?;
            for r in self.remotes.iter().filter(|r| r.bandwidth_limit > 0) {
                let l = RemoteLabel {
                    remote: r.name.clone(),
                };
                ConstGauge::new(r.bandwidth_limit as i64).encode(e.encode_family(&l)?)?;
            }
        }
        {
            let mut e = enc.encode_descriptor(
                "upstream_response_seconds",
                "Time to the remote's response headers",
                None,
                MetricType::Histogram,
            )?;
            for r in &self.remotes {
                let l = RemoteLabel {
                    remote: r.name.clone(),
                };
                let (sum, count, buckets) = &r.latency;
                e.encode_family(&l)?
                    .encode_histogram::<Vec<(String, String)>>(*sum, *count, buckets, None)?;
            }
        }
        counter(
            &mut enc,
            "blob_fetches",
            "Upstream blob fetches started (leaders)",
            self.fetches,
        )?;
        counter(
            &mut enc,
            "coalesced_followers",
            "Blob requests that joined a fetch already in flight instead of starting one",
            self.coalesced,
        )?;
        gauge(
            &mut enc,
            "spool_files",
            "Upstream blob fetches (spool files) in flight now",
            self.spools as i64,
        )?;
        if let Some((bytes, blobs)) = self.store {
            gauge(
                &mut enc,
                "store_bytes",
                "Bytes of content (blobs and manifests) in the store (scanned after changes)",
                bytes as i64,
            )?;
            gauge(&mut enc, "store_blobs", "Content-addressed files (blobs and manifests) in the store (scanned after changes)", blobs as i64)?;
        }
        // Garbage collection and eviction do not exist yet: registered so
        // dashboards and alerts can be written now.
        counter(&mut enc, "gc_runs", "Garbage collection runs", 0)?;
        counter(
            &mut enc,
            "gc_deleted_blobs",
            "Blobs deleted by garbage collection",
            0,
        )?;
        counter(
            &mut enc,
            "evictions",
            "Cached blobs evicted to stay under the size limit",
            0,
        )?;
        Ok(())
    }
}

/// (total bytes, blob count) of the store's content.
pub async fn scan_store(store: &Store) -> Result<(u64, u64), crate::store::StoreError> {
    let all = store.blobs().list().await?;
    Ok((all.iter().map(|(_, m)| m.size).sum(), all.len() as u64))
}

/// Scan the store at once, then shortly after each change to its content
/// and at least every `every`.
pub async fn store_scan_loop(metrics: Arc<Metrics>, store: Store, every: Duration) {
    loop {
        match scan_store(&store).await {
            Ok((bytes, blobs)) => metrics.set_store(bytes, blobs),
            Err(e) => tracing::warn!(error = %e, "store scan for metrics failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = store.content_changed() => tokio::time::sleep(RESCAN_DEBOUNCE).await,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    profile: &'static str,
}

/// `process_*` and `wharf_build_info`, read at scrape time.
#[derive(Debug)]
struct ProcessSnapshot(Option<ProcessStats>);

fn gauge_f64(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: f64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(v);
    g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for ProcessSnapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        {
            let mut e = enc.encode_descriptor(
                "wharf_build_info",
                "The running wharf's version (value 1)",
                None,
                MetricType::Gauge,
            )?;
            let l = BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                profile: if cfg!(debug_assertions) {
                    "debug"
                } else {
                    "release"
                },
            };
            ConstGauge::new(1i64).encode(e.encode_family(&l)?)?;
        }
        let Some(p) = &self.0 else { return Ok(()) };
        let c = ConstCounter::new(p.cpu_seconds);
        c.encode(enc.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            c.metric_type(),
        )?)?;
        gauge(
            &mut enc,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            p.resident_bytes as i64,
        )?;
        gauge(
            &mut enc,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            p.virtual_bytes as i64,
        )?;
        gauge(
            &mut enc,
            "process_open_fds",
            "Number of open file descriptors",
            p.open_fds as i64,
        )?;
        if let Some(m) = p.max_fds {
            gauge(
                &mut enc,
                "process_max_fds",
                "Maximum number of open file descriptors",
                m.min(i64::MAX as u64) as i64,
            )?;
        }
        gauge(
            &mut enc,
            "process_threads",
            "Number of OS threads",
            p.threads as i64,
        )?;
        gauge_f64(
            &mut enc,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            p.start_time_seconds,
        )
    }
}

/// What is wrong with a Prometheus exposition text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ExpositionError(String);

/// A tiny check that text is well-formed Prometheus exposition: every
/// sample line is `name{labels} value`, every sample's family was declared
/// by `# TYPE`, and the text ends with `# EOF`. Used by tests.
pub fn check_exposition(text: &str) -> Result<usize, ExpositionError> {
    let mut types: std::collections::HashMap<String, String> = Default::default();
    let mut samples = 0;
    let mut eof = false;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if eof {
            return Err(ExpositionError(format!("line {n}: content after # EOF")));
        }
        if line == "# EOF" {
            eof = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let (Some(name), Some(t)) = (it.next(), it.next()) else {
                return Err(ExpositionError(format!("line {n}: bad TYPE")));
            };
            types.insert(name.to_string(), t.to_string());
            continue;
        }
        if line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            return Err(ExpositionError(format!("line {n}: unexpected {line:?}")));
        }
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| ExpositionError(format!("line {n}: no value")))?;
        let v = value.trim();
        if v.parse::<f64>().is_err() && !matches!(v, "+Inf" | "-Inf" | "NaN") {
            return Err(ExpositionError(format!("line {n}: bad value {v:?}")));
        }
        let name = match series.split_once('{') {
            Some((name, labels)) => {
                if !labels.ends_with('}') {
                    return Err(ExpositionError(format!("line {n}: unterminated labels")));
                }
                name
            }
            None => series,
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            return Err(ExpositionError(format!(
                "line {n}: bad metric name {name:?}"
            )));
        }
        let family = ["_total", "_bucket", "_sum", "_count", "_created"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| types.contains_key(*f)))
            .unwrap_or(name);
        if !types.contains_key(family) {
            return Err(ExpositionError(format!(
                "line {n}: sample {name} without # TYPE"
            )));
        }
        samples += 1;
    }
    if !eof {
        return Err(ExpositionError("no # EOF".into()));
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families() {
        assert_eq!(route_family("/v2/"), "base");
        assert_eq!(route_family("/v2/a/b/manifests/latest"), "manifest");
        assert_eq!(route_family("/v2/a/blobs/sha256:00"), "blob");
        assert_eq!(route_family("/v2/a/blobs/uploads/x"), "upload");
        assert_eq!(route_family("/v2/a/tags/list"), "tags");
        assert_eq!(route_family("/metrics"), "ops");
        assert_eq!(route_family("/favicon.ico"), "other");
        assert_eq!(route_family("/ui/r/team/app"), "ui");
        assert_eq!(route_family("/uix"), "other");
    }

    #[test]
    fn live_series_encode() {
        let m = Metrics::new();
        m.request_done("blob", 200, 10, Duration::from_millis(2));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &m.registry).unwrap();
        assert!(
            out.contains("wharf_http_requests_total{route=\"blob\",status=\"200\"} 1"),
            "{out}"
        );
        check_exposition(&out).unwrap();
        assert!(check_exposition("foo 1\n# EOF\n").is_err());
    }
}
