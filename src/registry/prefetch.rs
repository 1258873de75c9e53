//! Prefetch jobs. Starting one (`POST /api/v1/prefetch`, the dashboard's
//! form) checks the request, resolves the image's remote and answers at
//! once; the fetch runs in the background, owned by the server rather than
//! by the request, and is read back by id while it runs and after it ended
//! (state, blobs and bytes done of their totals, the error of a failure).
//!
//! Jobs live in this process's memory only: at most
//! `limits.max_prefetch_jobs` run at once (one more is refused with
//! `429 TOOMANYREQUESTS`), and the newest [`MAX_KEPT_JOBS`] finished ones
//! are kept. Each job's outcome goes to the audit log as `prefetch`.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::admin::split_image;
use super::audit::{entry, record};
use super::views::{JobState, PrefetchJob, PrefetchRequest};
use super::{Intent, Registry, RegistryError, Result, Target};
use crate::auth::robots::unix_now;
use crate::auth::Identity;
use crate::oci::{Reference, RepoName};
use crate::proxy::{PrefetchProgress, PrefetchReport, Proxy, RemoteTarget};
use crate::store::Store;

/// Finished prefetch jobs kept for reading back (older ones are dropped).
pub const MAX_KEPT_JOBS: usize = 64;

/// How a job ended.
struct End {
    at: u64,
    outcome: std::result::Result<PrefetchReport, String>,
}

/// One prefetch, running or ended.
struct Job {
    id: String,
    image: String,
    pin: bool,
    started_at: u64,
    progress: PrefetchProgress,
    end: Mutex<Option<End>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Job {
    fn running(&self) -> bool {
        lock(&self.end).is_none()
    }

    fn view(&self) -> PrefetchJob {
        let p = &self.progress;
        let mut v = PrefetchJob {
            id: self.id.clone(),
            image: self.image.clone(),
            pin: self.pin,
            state: JobState::Running,
            started_at: self.started_at,
            finished_at: None,
            resolved: p.resolved.load(Relaxed),
            manifests: p.manifests.load(Relaxed),
            blobs_done: p.blobs_done.load(Relaxed),
            blobs_total: p.blobs_total.load(Relaxed),
            bytes_done: p.bytes_done.load(Relaxed),
            bytes_total: p.bytes_total.load(Relaxed),
            repository: None,
            digest: None,
            error: None,
        };
        if let Some(end) = lock(&self.end).as_ref() {
            v.finished_at = Some(end.at);
            match &end.outcome {
                Ok(rep) => {
                    v.state = JobState::Done;
                    (v.manifests, v.blobs_done, v.blobs_total) =
                        (rep.manifests as u64, rep.blobs as u64, rep.blobs as u64);
                    (v.bytes_done, v.bytes_total) = (rep.bytes, rep.bytes);
                    v.repository = Some(rep.repository.clone());
                    v.digest = Some(rep.digest.to_string());
                }
                Err(e) => {
                    v.state = JobState::Failed;
                    v.error = Some(e.clone());
                }
            }
        }
        v
    }
}

/// The jobs of this process, oldest first.
pub(super) struct Jobs {
    max_running: usize,
    list: Mutex<VecDeque<Arc<Job>>>,
}

impl Jobs {
    pub(super) fn new(max_running: usize) -> Jobs {
        Jobs {
            max_running,
            list: Mutex::new(VecDeque::new()),
        }
    }

    /// Add a new job unless `max_running` already run; forget the oldest
    /// finished jobs beyond [`MAX_KEPT_JOBS`].
    fn add(&self, job: Arc<Job>) -> Result<()> {
        let mut list = lock(&self.list);
        let running = list.iter().filter(|j| j.running()).count();
        if running >= self.max_running {
            return Err(RegistryError::TooMany(format!(
                "{running} prefetch jobs are running, the limit (limits.max_prefetch_jobs) is {}: \
                 wait for one to end (GET /api/v1/prefetch lists them) or raise the limit",
                self.max_running
            )));
        }
        let mut excess = (list.len() - running).saturating_sub(MAX_KEPT_JOBS - 1);
        list.retain(|j| {
            let forget = excess > 0 && !j.running();
            excess -= usize::from(forget);
            !forget
        });
        list.push_back(job);
        Ok(())
    }

    fn get(&self, id: &str) -> Option<Arc<Job>> {
        lock(&self.list).iter().find(|j| j.id == id).cloned()
    }

    fn newest_first(&self) -> Vec<Arc<Job>> {
        lock(&self.list).iter().rev().cloned().collect()
    }
}

impl Registry {
    /// Start prefetching `r.image` (admins): the request is checked and the
    /// remote resolved now; the fetch runs in the background.
    pub async fn start_prefetch(&self, id: &Identity, r: PrefetchRequest) -> Result<PrefetchJob> {
        let image = r.image.clone();
        let start = async {
            self.require_admin(id)?;
            let (name, reference) = split_image(&r.image)?;
            let t = self.remote_target(&name).await?;
            let job = Arc::new(Job {
                id: uuid::Uuid::new_v4().simple().to_string(),
                image: r.image,
                pin: r.pin.unwrap_or(true),
                started_at: unix_now(),
                progress: PrefetchProgress::default(),
                end: Mutex::new(None),
            });
            self.prefetches.add(job.clone())?;
            Ok((job, t, reference))
        };
        let details = |(job, _, _): &(Arc<Job>, _, _)| Some(json!({ "job": job.id }));
        let (job, t, reference) = self
            .audited(id, "prefetch.start", &image, start, details)
            .await?;
        tokio::spawn(run(
            self.proxy.clone(),
            self.store.clone(),
            id.clone(),
            job.clone(),
            t,
            reference,
        ));
        Ok(job.view())
    }

    /// One prefetch job (admins).
    pub fn prefetch_job(&self, id: &Identity, job: &str) -> Result<PrefetchJob> {
        self.require_admin(id)?;
        match self.prefetches.get(job) {
            Some(j) => Ok(j.view()),
            None => Err(RegistryError::NotFound(format!("no prefetch job {job} (this wharf keeps the last {MAX_KEPT_JOBS} finished jobs, in memory)"))),
        }
    }

    /// Running and recently finished prefetch jobs, newest first (admins).
    pub fn prefetch_jobs(&self, id: &Identity) -> Result<Vec<PrefetchJob>> {
        self.require_admin(id)?;
        Ok(self
            .prefetches
            .newest_first()
            .iter()
            .map(|j| j.view())
            .collect())
    }

    /// Where the pull-through repository `name` comes from.
    async fn remote_target(&self, name: &RepoName) -> Result<RemoteTarget> {
        match self.resolve(name, None, Intent::PullManifest).await {
            Ok(Target::Remote(t)) => Ok(t),
            Ok(Target::Local(_)) => Err(RegistryError::BadRequest(format!(
                "{name} is not a pull-through (remote) repository"
            ))),
            Err(RegistryError::Policy(e)) => Err(RegistryError::BadRequest(e.to_string())),
            Err(e) => Err(e),
        }
    }
}

/// Run one job to its end and record the outcome.
async fn run(
    proxy: Arc<Proxy>,
    store: Store,
    by: Identity,
    job: Arc<Job>,
    t: RemoteTarget,
    reference: Reference,
) {
    let r = proxy
        .prefetch(&t, &reference, job.pin, &job.image, &job.progress)
        .await
        .map_err(RegistryError::from);
    record(
        &store,
        &entry(&by, "prefetch", &job.image, &r, |rep| {
            serde_json::to_value(rep).ok()
        }),
    )
    .await;
    if let Err(e) = &r {
        tracing::warn!(image = %job.image, job = %job.id, error = %e, "prefetch failed");
    }
    *lock(&job.end) = Some(End {
        at: unix_now(),
        outcome: r.map_err(|e| e.to_string()),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(n: usize, done: bool) -> Arc<Job> {
        let end = done.then(|| End {
            at: 1,
            outcome: Err("x".into()),
        });
        Arc::new(Job {
            id: n.to_string(),
            image: "up/x:1".into(),
            pin: true,
            started_at: 1,
            progress: PrefetchProgress::default(),
            end: Mutex::new(end),
        })
    }

    #[test]
    fn running_jobs_are_bounded_and_old_finished_ones_dropped() {
        let jobs = Jobs::new(2);
        for n in 0..MAX_KEPT_JOBS + 10 {
            jobs.add(job(n, true)).unwrap();
        }
        jobs.add(job(1000, false)).unwrap();
        jobs.add(job(1001, false)).unwrap();
        let e = jobs.add(job(1002, false)).unwrap_err();
        assert!(
            matches!(&e, RegistryError::TooMany(m) if m.contains("limits.max_prefetch_jobs")),
            "{e:?}"
        );
        let kept = jobs.newest_first();
        assert_eq!(
            kept.iter().filter(|j| !j.running()).count(),
            MAX_KEPT_JOBS - 1
        );
        assert_eq!(kept[0].id, "1001");
        assert!(jobs.get("0").is_none() && jobs.get("1000").is_some());
        assert_eq!(kept.last().unwrap().id, (11).to_string());
    }
}
