//! One endpoint's delivery loop: post the oldest stored batch, remove it on
//! a 2xx, otherwise wait (exponential backoff) and post the same batch
//! again. Batches are posted one at a time, in order.
//!
//! Several replicas on one store share the queue: the one holding the
//! endpoint's delivery lease delivers it (events queued by the others
//! included, read from the store every idle poll); the others wait for
//! the lease and take over within `LEASE_TTL` when the holder stops.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use super::event::{envelope, MEDIA_TYPE};
use super::EndpointState;
use crate::secrets::{without_url, SecretHeaders};
use crate::store::lease::LEASE_TTL;
use crate::store::{EventQueue, LeaseFor, LeaseGuard, Store, Taken};

/// How often an idle endpoint looks at its queue without being woken.
const IDLE_POLL: Duration = Duration::from_secs(30);

/// Why a delivery failed (for the log; never a header value).
enum Failure {
    Status(u16),
    Transport(String),
    Secret(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status(s) => write!(f, "the endpoint answered {s}"),
            Failure::Transport(e) => f.write_str(e),
            Failure::Secret(e) => write!(f, "a secret header could not be resolved: {e}"),
        }
    }
}

struct Sender {
    ep: Arc<EndpointState>,
    store: Store,
    http: reqwest::Client,
    secrets: SecretHeaders,
}

/// Deliver `ep`'s queue until the process ends.
pub(super) async fn run(ep: Arc<EndpointState>, store: Store) {
    let sender = match Sender::new(ep.clone(), store) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(endpoint = %ep.config.name, error = %e, "notifications: cannot build an HTTP client; nothing will be delivered");
            return;
        }
    };
    // One replica delivers each endpoint's queue (shared with the others
    // on a shared store); held, and renewed, for as long as it runs.
    let _lease = take_turn(&sender.store, &ep.config.name).await;
    sender.count_backlog().await;
    let mut backoff = ep.config.backoff;
    loop {
        match sender.deliver_oldest().await {
            Ok(true) => backoff = ep.config.backoff,
            Ok(false) => {
                let _ = tokio::time::timeout(IDLE_POLL, ep.wake.notified()).await;
            }
            Err(why) => {
                ep.stats.failures.fetch_add(1, Relaxed);
                tracing::warn!(endpoint = %ep.config.name, host = ep.config.url.host_str().unwrap_or(""), error = %why, retry_in = ?backoff, "notification delivery failed; will retry");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ep.config.backoff_max);
            }
        }
    }
}

/// Wait until this replica holds the endpoint's delivery lease (at once
/// without other replicas; else when the holder stops renewing it).
async fn take_turn(store: &Store, endpoint: &str) -> LeaseGuard {
    loop {
        match store
            .take_lease(LeaseFor::Notify(endpoint), LEASE_TTL)
            .await
        {
            Ok(Taken::Mine(l)) => return l.keep_alive(LEASE_TTL),
            Ok(Taken::Held { holder, .. }) => {
                tracing::debug!(
                    endpoint,
                    holder,
                    "replica {holder} delivers this endpoint's events"
                );
            }
            Err(e) => {
                tracing::warn!(endpoint, error = %e, "notifications: cannot read the delivery lease; retrying")
            }
        }
        tokio::time::sleep(LEASE_TTL / 2).await;
    }
}

impl Sender {
    fn new(ep: Arc<EndpointState>, store: Store) -> reqwest::Result<Sender> {
        let http = reqwest::Client::builder()
            .timeout(ep.config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wharf/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let owner = format!("notifications {}", ep.config.name);
        let secrets = SecretHeaders::new(&owner, &ep.config.secret_headers);
        Ok(Sender {
            ep,
            store,
            http,
            secrets,
        })
    }

    /// Start-up: what earlier runs left queued.
    async fn count_backlog(&self) {
        match self.store.events().pending(&self.ep.config.name).await {
            Ok(n) => {
                self.ep.stats.pending.fetch_add(n, Relaxed);
                if n > 0 {
                    tracing::info!(endpoint = %self.ep.config.name, events = n, "notifications queued by an earlier run will be delivered");
                }
            }
            Err(e) => {
                tracing::warn!(endpoint = %self.ep.config.name, error = %e, "cannot read the notification queue")
            }
        }
    }

    /// Post the oldest batch; `Ok(false)` when the queue is empty.
    async fn deliver_oldest(&self) -> Result<bool, Failure> {
        self.drop_overflow().await;
        let name = &self.ep.config.name;
        let queue = self.store.events();
        let ids = queue
            .ids(name, 1)
            .await
            .map_err(|e| Failure::Transport(format!("reading the queue: {e}")))?;
        let Some(id) = ids.first() else {
            return Ok(false);
        };
        let Some(batch) = queue
            .read(name, id)
            .await
            .map_err(|e| Failure::Transport(format!("reading the queue: {e}")))?
        else {
            return Ok(true);
        };
        self.post(envelope(&batch)).await?;
        let _ = queue.remove(name, id).await;
        self.ep
            .stats
            .delivered
            .fetch_add(self.dequeued(id), Relaxed);
        Ok(true)
    }

    async fn post(&self, body: Vec<u8>) -> Result<(), Failure> {
        let mut req = self
            .http
            .post(self.ep.config.url.clone())
            .header(http::header::CONTENT_TYPE, MEDIA_TYPE)
            .body(body);
        for (h, v) in &self.ep.config.headers {
            req = req.header(h.as_str(), v.as_str());
        }
        let req = self.secrets.apply(req).await.map_err(Failure::Secret)?;
        let resp = req
            .send()
            .await
            .map_err(|e| Failure::Transport(without_url(e)))?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            s => Err(Failure::Status(s.as_u16())),
        }
    }

    /// Account for batch `id` leaving the queue; returns its event count.
    fn dequeued(&self, id: &str) -> u64 {
        let n = EventQueue::count_of(id) as u64;
        let _ = self
            .ep
            .stats
            .pending
            .fetch_update(Relaxed, Relaxed, |p| Some(p.saturating_sub(n)));
        n
    }

    /// Past `max_pending`, drop the oldest batches.
    async fn drop_overflow(&self) {
        let (name, max) = (&self.ep.config.name, self.ep.config.max_pending as u64);
        while self.ep.stats.pending.load(Relaxed) > max {
            let queue = self.store.events();
            let Ok(ids) = queue.ids(name, 1).await else {
                return;
            };
            let Some(id) = ids.first() else {
                self.ep.stats.pending.store(0, Relaxed);
                return;
            };
            if queue.remove(name, id).await.is_err() {
                return;
            }
            let n = self.dequeued(id);
            self.ep.stats.dropped.fetch_add(n, Relaxed);
            tracing::warn!(endpoint = %name, events = n, max_pending = max, "notification queue full: dropped the oldest events");
        }
    }
}
