//! Logging setup and the small shared pieces of observability that the lower
//! layers use without knowing about `/metrics`:
//!
//! - the subscriber: `RUST_LOG` wins over `log.level`; text or JSON lines on
//!   stderr;
//! - the request id: every request runs inside a `request` span carrying
//!   its id (so every log line of the request shows it) and inside a task
//!   local ([`request_id`]) that the upstream client reads to send
//!   `X-Request-Id`;
//! - [`LatencyHistogram`]: a fixed-bucket, lock-free histogram that
//!   `upstream` fills and the metrics layer exports.
//!
//! Imports nothing of ours but the config types.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tracing_subscriber::EnvFilter;

mod fields;

use crate::config::{Config, LogFormat};

/// Install the global subscriber (once; later calls are ignored).
pub fn init(cfg: &Config) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.log_level));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a terminal: log files and pipes get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match cfg.log_format {
        // Span fields (the request id) appear on every line: `span` holds
        // the innermost span, `spans` the whole stack.
        LogFormat::Json => b
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => b.fmt_fields(fields::PlainFields).try_init(),
    };
}

tokio::task_local! {
    static REQUEST_ID: Arc<str>;
}

/// The id of the request the current task works for, if any.
pub fn request_id() -> Option<Arc<str>> {
    REQUEST_ID.try_with(|id| id.clone()).ok()
}

/// Run `fut` with `id` as the current request id (also for work it spawns
/// through [`in_request`]).
pub fn with_request_id<F: Future>(id: Arc<str>, fut: F) -> impl Future<Output = F::Output> {
    REQUEST_ID.scope(id, fut)
}

/// Carry the current request id (if any) into a future that will run on
/// another task (e.g. a server-owned upstream fetch).
pub fn in_request<F: Future>(fut: F) -> impl Future<Output = F::Output> {
    let id = request_id().unwrap_or_else(|| Arc::from(""));
    REQUEST_ID.scope(id, fut)
}

/// A new request id: a per-process random prefix and a counter (cheap: no
/// syscall, no lock), e.g. `3f9a1c07-1b`.
pub fn new_request_id() -> String {
    static PREFIX: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    static SEQ: AtomicU64 = AtomicU64::new(1);
    let p = PREFIX.get_or_init(|| {
        let u = uuid::Uuid::new_v4();
        let b = u.as_bytes();
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    });
    format!("{p:08x}-{:x}", SEQ.fetch_add(1, Relaxed))
}

/// A client-supplied `X-Request-Id` worth keeping: short, printable, no
/// spaces or quotes (it goes into logs and an upstream header).
pub fn accept_request_id(v: &[u8]) -> Option<String> {
    let ok = !v.is_empty()
        && v.len() <= 128
        && v.iter().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=')
        });
    ok.then(|| String::from_utf8_lossy(v).into_owned())
}

/// Upper bounds (seconds) of [`LatencyHistogram`]'s buckets.
pub const LATENCY_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Fixed-bucket latency histogram (non-cumulative counts; +Inf implied).
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl LatencyHistogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| s <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Relaxed);
    }

    /// `(sum seconds, count, cumulative buckets)` as Prometheus wants them.
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut acc = 0;
        let mut out: Vec<(f64, u64)> = LATENCY_BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(b, c)| {
                acc += c.load(Relaxed);
                (*b, acc)
            })
            .collect();
        let count = self.count.load(Relaxed);
        out.push((f64::INFINITY, count));
        (self.sum_micros.load(Relaxed) as f64 / 1e6, count, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert!(accept_request_id(a.as_bytes()).is_some());
        assert!(accept_request_id(b"has space").is_none());
        assert!(accept_request_id(b"").is_none());
        assert!(accept_request_id(&[b'a'; 200]).is_none());
    }

    #[test]
    fn histogram() {
        let h = LatencyHistogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(300));
        h.observe(Duration::from_secs(60));
        let (sum, count, b) = h.snapshot();
        assert_eq!(count, 3);
        assert!((sum - 60.303).abs() < 1e-6);
        assert_eq!(b[0], (0.005, 1));
        assert_eq!(b[6], (0.5, 2));
        assert_eq!(b.last().unwrap().1, 3);
    }
}
