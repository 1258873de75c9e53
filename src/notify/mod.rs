//! Notifications: registry events (push, pull, delete, mount, cache-fetch)
//! delivered to the `[[notifications]]` endpoints in Distribution's
//! envelope format, at least once.
//!
//! Path of an event:
//! 1. A layer that saw something happen hands a [`Draft`] to
//!    [`Notifier::emit`] (pulls; never waits) or [`Notifier::emit_durable`]
//!    (pushes, deletes, mounts: the request waits until the event is on
//!    disk, so a client that saw its push succeed knows its event is
//!    queued).
//! 2. One writer task takes everything queued in memory at that moment and
//!    stores one batch per interested endpoint in the store's event queue
//!    ([`crate::store::EventQueue`]): group commit, so a burst of pulls costs
//!    a few writes, not one each.
//! 3. One delivery task per endpoint ([`deliver`]) posts the oldest batch,
//!    removes it on a 2xx, and otherwise retries the same batch (same event
//!    ids) with exponential backoff. A receiver that is down for minutes, or
//!    a restart of wharf, loses nothing: the batches wait in the store.
//!
//! Bounds: the in-memory hand-off holds [`MEMORY_QUEUE`] events (pull
//! events beyond it are dropped and counted; durable ones wait); an
//! endpoint's stored queue holds `max_pending` events (the oldest batches
//! are dropped past it, counted and logged). Loss window: pull events
//! accepted in memory but not yet written when the process is killed
//! (SIGKILL, power loss) — at most one writer cycle. A graceful shutdown
//! writes them first ([`Notifier::flush`]).

mod deliver;
pub mod event;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot};

use crate::config::{EventKind, NotifyEndpoint};
use crate::store::Store;
pub use event::{Draft, Event};

/// Events held in memory between `emit` and the writer.
pub const MEMORY_QUEUE: usize = 16_384;

/// Events the writer takes per cycle.
const WRITE_BATCH: usize = 1_000;

/// Counters per endpoint, for /metrics.
#[derive(Debug, Default)]
pub struct EndpointStats {
    /// Events delivered (acknowledged with a 2xx).
    pub delivered: AtomicU64,
    /// Delivery attempts that failed (connection error, timeout, non-2xx).
    pub failures: AtomicU64,
    /// Events dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Events stored and not yet delivered.
    pub pending: AtomicU64,
}

struct EndpointState {
    config: NotifyEndpoint,
    stats: EndpointStats,
    /// Woken when a batch was stored for this endpoint.
    wake: tokio::sync::Notify,
}

enum Msg {
    Event(Box<Event>, Option<oneshot::Sender<()>>),
    /// Everything sent before it is stored when this is answered.
    Flush(oneshot::Sender<()>),
}

struct Inner {
    endpoints: Vec<Arc<EndpointState>>,
    tx: mpsc::Sender<Msg>,
    source: event::Source,
    /// Pull events dropped because the in-memory queue was full.
    overflow: AtomicU64,
    seq: AtomicU64,
}

/// The handle layers emit events through; cheap to clone. Without
/// configured endpoints every call is a no-op.
#[derive(Clone, Default)]
pub struct Notifier {
    inner: Option<Arc<Inner>>,
}

impl Notifier {
    /// Start the writer and one delivery task per endpoint (on the current
    /// runtime). `source_addr` is what events name as their source.
    pub fn start(endpoints: &[NotifyEndpoint], store: Store, source_addr: String) -> Notifier {
        if endpoints.is_empty() {
            return Notifier::default();
        }
        let (tx, rx) = mpsc::channel(MEMORY_QUEUE);
        let states: Vec<Arc<EndpointState>> = endpoints
            .iter()
            .map(|e| {
                Arc::new(EndpointState {
                    config: e.clone(),
                    stats: EndpointStats::default(),
                    wake: tokio::sync::Notify::new(),
                })
            })
            .collect();
        let inner = Arc::new(Inner {
            endpoints: states.clone(),
            tx,
            source: event::Source {
                addr: source_addr,
                instance_id: uuid::Uuid::new_v4().to_string(),
            },
            overflow: AtomicU64::new(0),
            seq: AtomicU64::new(0),
        });
        tokio::spawn(write_loop(rx, states.clone(), store.clone()));
        for ep in states {
            tokio::spawn(deliver::run(ep, store.clone()));
        }
        Notifier { inner: Some(inner) }
    }

    /// Whether any endpoint receives `kind` events (callers skip building
    /// drafts nobody wants).
    pub fn wants(&self, kind: EventKind) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|i| i.endpoints.iter().any(|e| e.config.wants(kind)))
    }

    /// Queue an event without waiting; dropped (and counted) when the
    /// in-memory queue is full.
    pub fn emit(&self, d: Draft) {
        let Some(inner) = self.inner.as_ref().filter(|_| self.wants(d.kind)) else {
            return;
        };
        if inner
            .tx
            .try_send(Msg::Event(Box::new(inner.event(d)), None))
            .is_err()
        {
            inner.overflow.fetch_add(1, Relaxed);
        }
    }

    /// Queue an event and wait until it is stored.
    pub async fn emit_durable(&self, d: Draft) {
        let Some(inner) = self.inner.as_ref().filter(|_| self.wants(d.kind)) else {
            return;
        };
        let (done, stored) = oneshot::channel();
        if inner
            .tx
            .send(Msg::Event(Box::new(inner.event(d)), Some(done)))
            .await
            .is_ok()
        {
            let _ = stored.await;
        }
    }

    /// Wait until every event emitted so far is stored (graceful shutdown).
    pub async fn flush(&self) {
        let Some(inner) = &self.inner else { return };
        let (done, flushed) = oneshot::channel();
        if inner.tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = flushed.await;
        }
    }

    /// (endpoint name, its counters) for /metrics, plus the pull events
    /// dropped before reaching any queue.
    pub fn stats(&self) -> (Vec<(&str, &EndpointStats)>, u64) {
        match &self.inner {
            None => (Vec::new(), 0),
            Some(i) => (
                i.endpoints
                    .iter()
                    .map(|e| (e.config.name.as_str(), &e.stats))
                    .collect(),
                i.overflow.load(Relaxed),
            ),
        }
    }
}

impl Inner {
    fn event(&self, d: Draft) -> Event {
        let n = self.seq.fetch_add(1, Relaxed);
        Event {
            id: format!("{}-{n}", self.source.instance_id),
            timestamp: event::timestamp(SystemTime::now()),
            action: d.kind.as_str().to_string(),
            target: d.target,
            request: d.request,
            actor: event::Actor { name: d.actor },
            source: self.source.clone(),
        }
    }
}

/// Store what is queued in memory, one batch per endpoint per cycle, then
/// answer the waiters.
async fn write_loop(mut rx: mpsc::Receiver<Msg>, endpoints: Vec<Arc<EndpointState>>, store: Store) {
    while let Some(first) = rx.recv().await {
        let mut msgs = vec![first];
        while msgs.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(m) => msgs.push(m),
                Err(_) => break,
            }
        }
        let events: Vec<&Event> = msgs
            .iter()
            .filter_map(|m| match m {
                Msg::Event(e, _) => Some(e.as_ref()),
                Msg::Flush(_) => None,
            })
            .collect();
        for ep in &endpoints {
            store_for(ep, &events, &store).await;
        }
        for m in msgs {
            match m {
                Msg::Event(_, Some(done)) | Msg::Flush(done) => {
                    let _ = done.send(());
                }
                Msg::Event(_, None) => {}
            }
        }
    }
}

/// Store the events `ep` wants, in batches of at most `max_batch`.
async fn store_for(ep: &EndpointState, events: &[&Event], store: &Store) {
    let wanted: Vec<&Event> = events
        .iter()
        .copied()
        .filter(|e| ep.config.events.iter().any(|k| k.as_str() == e.action))
        .collect();
    for chunk in wanted.chunks(ep.config.max_batch) {
        let bytes = match serde_json::to_vec(chunk) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(endpoint = %ep.config.name, error = %e, "cannot encode notification events");
                continue;
            }
        };
        match store
            .events()
            .append(&ep.config.name, chunk.len(), bytes.into())
            .await
        {
            Ok(_) => {
                ep.stats.pending.fetch_add(chunk.len() as u64, Relaxed);
            }
            Err(e) => {
                ep.stats.dropped.fetch_add(chunk.len() as u64, Relaxed);
                tracing::error!(endpoint = %ep.config.name, events = chunk.len(), error = %e, "cannot queue notification events; they are lost");
            }
        }
    }
    if !wanted.is_empty() {
        ep.wake.notify_one();
    }
}
