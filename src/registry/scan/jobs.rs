//! The scanning service: scan jobs run in the background (owned by the
//! server, not by the request that asked), at most `max_concurrent` at
//! once; each sends the adapter a scan request with a short-lived pull
//! credential, polls for the report honouring `Refresh-After` (each wait
//! cut to `max_refresh_after`, all of them to `report_timeout`), and
//! stores the report and the state through the store's `Scans` facet.
//!
//! A digest scans once at a time in this process (a second request while
//! one runs answers with the running scan's state). A scan left pending or
//! running by a process that stopped reads back as failed once it is older
//! than the scanner's report timeout (see [`Scanning::state`]).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::record::{ScanStatus, ScanSummary};
use crate::auth::robots::unix_now;
use crate::auth::scanner::ScanCredentials;
use crate::config::Scanner;
use crate::oci::{Digest, RepoName};
use crate::scan::{Adapter, Poll, Report, ScanRequest};
use crate::store::{ScanDoc, Store, StoreError};

/// What one scan is about.
#[derive(Debug, Clone)]
pub struct Job {
    pub repo: RepoName,
    pub digest: Digest,
    pub media_type: String,
    pub tag: Option<String>,
}

/// The active scanner and what its jobs share.
struct Active {
    cfg: Scanner,
    adapter: Adapter,
    registry_url: String,
    creds: ScanCredentials,
    slots: tokio::sync::Semaphore,
    running: Mutex<HashSet<Digest>>,
}

/// Scan jobs and their stored states (no scanner configured: states can
/// still be read, scans are refused).
pub struct Scanning {
    store: Store,
    active: Option<Arc<Active>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Scanning {
    /// `listen`: wharf's own address, the default registry URL.
    pub fn new(
        store: Store,
        scanner: Option<&Scanner>,
        creds: ScanCredentials,
        listen: std::net::SocketAddr,
    ) -> anyhow::Result<Scanning> {
        let active = match scanner {
            None => None,
            Some(cfg) => Some(Arc::new(Active {
                adapter: Adapter::new(cfg)?,
                registry_url: match &cfg.registry_url {
                    Some(u) => u.as_str().trim_end_matches('/').to_string(),
                    None => format!("http://{listen}"),
                },
                creds,
                slots: tokio::sync::Semaphore::new(cfg.max_concurrent),
                running: Mutex::new(HashSet::new()),
                cfg: cfg.clone(),
            })),
        };
        Ok(Scanning { store, active })
    }

    /// The active scanner's name (`None`: scanning is off).
    pub fn scanner(&self) -> Option<&str> {
        self.active.as_ref().map(|a| a.cfg.name.as_str())
    }

    /// Start scanning `job` in the background; `None` when no scanner is
    /// configured. While the digest is already being scanned here, its
    /// current state.
    pub async fn start(&self, job: Job) -> Result<Option<ScanSummary>, StoreError> {
        let Some(a) = self.active.clone() else {
            return Ok(None);
        };
        let s = pending(&a.cfg.name, &job.repo);
        if !lock(&a.running).insert(job.digest.clone()) {
            // Its state may not be saved yet: then it is this one.
            return Ok(Some(self.state(&job.digest).await?.unwrap_or(s)));
        }
        if let Err(e) = self.save_state(&job.digest, &s).await {
            lock(&a.running).remove(&job.digest);
            return Err(e);
        }
        tokio::spawn(run(a, self.store.clone(), job, s.clone()));
        Ok(Some(s))
    }

    /// The stored state of `d`'s scan (a pending or running one that no
    /// process can still be running reads as failed).
    pub async fn state(&self, d: &Digest) -> Result<Option<ScanSummary>, StoreError> {
        let Some(b) = self.store.scans().get(d, ScanDoc::State).await? else {
            return Ok(None);
        };
        let mut s: ScanSummary = serde_json::from_slice(&b)
            .map_err(|e| StoreError::Corrupt(format!("scan state of {d}: {e}")))?;
        if !s.status.ended() && self.abandoned(d, &s) {
            s.status = ScanStatus::Failed;
            s.reason =
                Some("the scan was interrupted (wharf stopped before it ended); scan again".into());
        }
        Ok(Some(s))
    }

    fn abandoned(&self, d: &Digest, s: &ScanSummary) -> bool {
        let running_here = self
            .active
            .as_ref()
            .is_some_and(|a| lock(&a.running).contains(d));
        let budget = self.active.as_ref().map_or(600, |a| {
            (a.cfg.report_timeout + a.cfg.timeout * 2).as_secs()
        });
        !running_here && unix_now().saturating_sub(s.updated_at) > budget
    }

    /// The stored report of `d` (the adapter's, as parsed).
    pub async fn report(&self, d: &Digest) -> Result<Option<Report>, StoreError> {
        let Some(b) = self.store.scans().get(d, ScanDoc::Report).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("scan report of {d}: {e}")))
    }

    async fn save_state(&self, d: &Digest, s: &ScanSummary) -> Result<(), StoreError> {
        save_state(&self.store, d, s).await
    }
}

/// The state of a scan just asked for.
fn pending(scanner: &str, repo: &RepoName) -> ScanSummary {
    let now = unix_now();
    ScanSummary {
        status: ScanStatus::Pending,
        reason: None,
        scanner: scanner.to_string(),
        repository: repo.to_string(),
        requested_at: now,
        updated_at: now,
        scanned_at: None,
        counts: Default::default(),
        highest: None,
    }
}

async fn save_state(store: &Store, d: &Digest, s: &ScanSummary) -> Result<(), StoreError> {
    let b = serde_json::to_vec_pretty(s).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    store.scans().put(d, ScanDoc::State, Bytes::from(b)).await
}

/// One job, from its slot to its stored outcome.
async fn run(a: Arc<Active>, store: Store, job: Job, mut s: ScanSummary) {
    let _slot = a.slots.acquire().await;
    s.status = ScanStatus::Running;
    s.updated_at = unix_now();
    let outcome = match save_state(&store, &job.digest, &s).await {
        Ok(()) => scan(&a, &job).await,
        Err(e) => Err(format!("cannot record the scan: {e}")),
    };
    if let Err(e) = finish(&store, &job.digest, s, outcome).await {
        tracing::warn!(digest = %job.digest, error = %e, "cannot store a scan's outcome");
    }
    lock(&a.running).remove(&job.digest);
}

/// Store the report (first) and the final state.
async fn finish(
    store: &Store,
    d: &Digest,
    mut s: ScanSummary,
    outcome: Result<Report, String>,
) -> Result<(), StoreError> {
    s.updated_at = unix_now();
    match outcome {
        Ok(report) => {
            let b = serde_json::to_vec(&report).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            store
                .scans()
                .put(d, ScanDoc::Report, Bytes::from(b))
                .await?;
            s.status = ScanStatus::Done;
            s.scanned_at = Some(s.updated_at);
            s.counts = report.counts();
            s.highest = report.highest();
            s.reason = None;
            tracing::info!(digest = %d, repository = %s.repository, findings = s.counts.total(), "scan done");
        }
        Err(why) => {
            tracing::warn!(digest = %d, repository = %s.repository, reason = %why, "scan failed");
            s.status = ScanStatus::Failed;
            s.reason = Some(why);
        }
    }
    save_state(store, d, &s).await
}

/// Ask the adapter and wait for its report.
async fn scan(a: &Active, job: &Job) -> Result<Report, String> {
    let ttl = a.cfg.report_timeout + a.cfg.timeout * 2;
    let authorization = a
        .creds
        .issue(&a.cfg.name, job.repo.as_str(), ttl)
        .map_err(|e| format!("cannot issue the scanner's pull credential: {e}"))?;
    let digest = job.digest.to_string();
    let req = ScanRequest {
        registry_url: &a.registry_url,
        authorization: &authorization,
        repository: job.repo.as_str(),
        digest: &digest,
        tag: job.tag.as_deref(),
        mime_type: &job.media_type,
    };
    let id = a.adapter.submit(&req).await.map_err(|e| e.to_string())?;
    poll(a, &id).await
}

async fn poll(a: &Active, id: &str) -> Result<Report, String> {
    let deadline = Instant::now() + a.cfg.report_timeout;
    loop {
        match a.adapter.report(id).await.map_err(|e| e.to_string())? {
            Poll::Ready(r) => return Ok(r),
            Poll::Later(d) => {
                let wait = d.clamp(Duration::from_millis(200), a.cfg.max_refresh_after);
                if Instant::now() + wait > deadline {
                    return Err(format!(
                        "scanner {} had no report after {}s (report_timeout)",
                        a.cfg.name,
                        a.cfg.report_timeout.as_secs()
                    ));
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
}
