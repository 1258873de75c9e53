//! Vulnerability scanning, the registry's rules: who may ask for a scan
//! and read reports, what is scanned when (`scan_on_push` of a project,
//! `scan_on_first_pull` of a remote), the per-project pull policy
//! (`prevent_severity`), and the artifacts listing with each manifest's
//! severity summary. The jobs themselves are [`jobs`]; the adapter
//! protocol is [`crate::scan`].

mod jobs;
pub mod record;

use serde::{Deserialize, Serialize};

use super::{Registry, RegistryError, Result};
use crate::auth::{Action, Identity, Subject};
use crate::oci::manifest::{DOCKER_MANIFEST, OCI_MANIFEST};
use crate::oci::{Digest, RepoName};
use crate::scan::{Report, Severity};
use crate::store::{Artifact, PageFrom, StoredManifest};
pub use jobs::{Job, Scanning};
pub use record::{ScanStatus, ScanSummary};

/// An artifact of the listings with its scan's summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArtifactView {
    #[serde(flatten)]
    pub artifact: Artifact,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan: Option<ScanSummary>,
}

/// A project's scan settings (`GET`/`PUT /api/v1/projects/{p}/scanning`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanSettings {
    #[serde(default)]
    pub scan_on_push: bool,
    /// `low`, `medium`, `high`, `critical` (any case); `null`: no policy.
    #[serde(default)]
    pub prevent_severity: Option<String>,
    /// The active scanner (read only; `null`: none configured).
    #[serde(default, skip_deserializing)]
    pub scanner: Option<String>,
}

/// Whether wharf sends `media_type` to a scanner (image manifests only: an
/// index's platforms are scanned one by one).
fn scannable(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

impl Registry {
    /// Start a scan of `repo@d` (`POST .../artifacts/{digest}/scan`): for
    /// whoever may push to `repo`; for a cache repository, admins.
    pub async fn request_scan(
        &self,
        id: &Identity,
        repo: &RepoName,
        d: &Digest,
    ) -> Result<ScanSummary> {
        let cache = self.namespaces().is_cache_repo(repo);
        let may = self.is_admin(id) || (!cache && self.subject_may(id, repo, Action::Push));
        if !may {
            return Err(RegistryError::Denied(format!(
                "scanning {repo} needs push permission on it (admins only for a cache repository)"
            )));
        }
        let media_type = self
            .store
            .repo(repo)
            .manifest_media_type(d)
            .await?
            .ok_or_else(|| {
                RegistryError::ManifestUnknown(format!("{d} is not a manifest of {repo}"))
            })?;
        if !scannable(&media_type) {
            return Err(RegistryError::BadRequest(format!(
                "{d} is a {media_type}; scan its platform manifests (image manifests) instead"
            )));
        }
        let job = Job {
            repo: repo.clone(),
            digest: d.clone(),
            media_type,
            tag: None,
        };
        self.scans.start(job).await?.ok_or_else(|| {
            RegistryError::BadRequest(
                "no scanner is configured; add a [[scanners]] entry to the config".into(),
            )
        })
    }

    /// The scan state of `repo@d` (anyone who may pull it).
    pub async fn scan_state(
        &self,
        id: &Identity,
        repo: &RepoName,
        d: &Digest,
    ) -> Result<ScanSummary> {
        self.readable_manifest(id, repo, d).await?;
        self.scans.state(d).await?.ok_or_else(|| {
            RegistryError::NotFound(format!(
                "{repo}@{d} has not been scanned; POST .../scan to scan it"
            ))
        })
    }

    /// The full report of `repo@d` (anyone who may pull it).
    pub async fn scan_report(&self, id: &Identity, repo: &RepoName, d: &Digest) -> Result<Report> {
        let state = self.scan_state(id, repo, d).await?;
        let missing = || {
            let why = match &state.reason {
                Some(r) => format!("the last scan of {d} {}: {r}", state.status.as_str()),
                None => format!(
                    "the scan of {d} is {}; no report yet",
                    state.status.as_str()
                ),
            };
            RegistryError::NotFound(why)
        };
        self.scans.report(d).await?.ok_or_else(missing)
    }

    async fn readable_manifest(&self, id: &Identity, repo: &RepoName, d: &Digest) -> Result<()> {
        if !self.is_admin(id) && !self.subject_may(id, repo, Action::Pull) {
            return Err(RegistryError::Denied(format!("no access to {repo}")));
        }
        match self.store.repo(repo).manifest_media_type(d).await? {
            Some(_) => Ok(()),
            None => Err(RegistryError::ManifestUnknown(format!(
                "{d} is not a manifest of {repo}"
            ))),
        }
    }

    /// Refuse a pull of `name@d` when its project's `prevent_severity`
    /// finds that many findings in its stored report. Unscanned and failed
    /// scans pass; so does the scanner itself (it must pull to rescan).
    pub async fn check_pull_policy(
        &self,
        id: &Identity,
        name: &RepoName,
        d: &Digest,
    ) -> Result<()> {
        if matches!(id.subject, Subject::Scanner(_)) {
            return Ok(());
        }
        let Some(min) = self
            .projects
            .get(name.first())
            .and_then(|p| p.prevent_severity)
        else {
            return Ok(());
        };
        let Some(s) = self.scans.state(d).await? else {
            return Ok(());
        };
        let n = s.counts.at_or_above(min);
        if s.status != ScanStatus::Done || n == 0 {
            return Ok(());
        }
        Err(RegistryError::Denied(format!(
            "pull refused by project policy: image {d} has {n} vulnerabilities at {min} or above (policy: {min}); ask an admin or rescan"
        )))
    }

    /// After a push: scan `name@d` when its project says `scan_on_push`.
    /// Never fails the push (a problem is logged).
    pub(super) async fn scan_after_push(
        &self,
        name: &RepoName,
        d: &Digest,
        media_type: &str,
        tag: Option<String>,
        has_subject: bool,
    ) {
        let wanted = self
            .projects
            .get(name.first())
            .is_some_and(|p| p.scan_on_push);
        if wanted && !has_subject && scannable(media_type) {
            let job = Job {
                repo: name.clone(),
                digest: d.clone(),
                media_type: media_type.into(),
                tag,
            };
            self.start_quietly(job).await;
        }
    }

    /// After a pull of a cached manifest: scan it the first time when its
    /// remote says `scan_on_first_pull`.
    pub async fn scan_after_cached_pull(
        &self,
        remote: &crate::config::Remote,
        repo: &RepoName,
        m: &StoredManifest,
    ) {
        if !remote.scan_on_first_pull || !scannable(&m.media_type) {
            return;
        }
        match self.scans.state(&m.digest).await {
            Ok(None) => {}
            Ok(Some(_)) => return,
            Err(e) => {
                return tracing::warn!(digest = %m.digest, error = %e, "cannot read a scan state")
            }
        }
        let job = Job {
            repo: repo.clone(),
            digest: m.digest.clone(),
            media_type: m.media_type.clone(),
            tag: None,
        };
        self.start_quietly(job).await;
    }

    async fn start_quietly(&self, job: Job) {
        let d = job.digest.clone();
        match self.scans.start(job).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                tracing::warn!(digest = %d, "scanning is asked for but no [[scanners]] entry is configured")
            }
            Err(e) => tracing::warn!(digest = %d, error = %e, "cannot start a scan"),
        }
    }

    /// A page of `repo`'s artifacts with their scans' summaries.
    pub async fn artifact_views(
        &self,
        id: &Identity,
        repo: &RepoName,
        from: &PageFrom,
        n: usize,
    ) -> Result<(Vec<ArtifactView>, usize)> {
        let (items, total) = self.artifacts_page(id, repo, from, n).await?;
        let mut out = Vec::with_capacity(items.len());
        for artifact in items {
            let scan = self.scans.state(&artifact.digest).await?;
            out.push(ArtifactView { artifact, scan });
        }
        Ok((out, total))
    }

    /// Project `p`'s scan settings (anyone who may pull in it).
    pub fn scan_settings(&self, id: &Identity, p: &str) -> Result<ScanSettings> {
        let project = self
            .projects
            .get(p)
            .ok_or_else(|| Self::unknown_project(p))?;
        if !self.is_admin(id) && !self.may_in_project(id, p, Action::Pull) {
            return Err(RegistryError::Denied(format!("no access to project {p}")));
        }
        Ok(ScanSettings {
            scan_on_push: project.scan_on_push,
            prevent_severity: project
                .prevent_severity
                .map(|s| s.as_str().to_ascii_lowercase()),
            scanner: self.scans.scanner().map(str::to_string),
        })
    }

    /// Replace project `p`'s scan settings (admins); saved with the
    /// project (then winning over the config file).
    pub async fn set_scan_settings(
        &self,
        id: &Identity,
        p: &str,
        s: ScanSettings,
    ) -> Result<ScanSettings> {
        let change = serde_json::json!(s);
        let op = async {
            self.require_admin(id)?;
            let mut project = self
                .projects
                .get(p)
                .ok_or_else(|| Self::unknown_project(p))?;
            project.prevent_severity = match s.prevent_severity.as_deref() {
                None => None,
                Some(v) => Some(Severity::parse(v).ok_or_else(|| {
                    RegistryError::BadRequest(format!(
                        "prevent_severity: {v:?}: use negligible, low, medium, high or critical"
                    ))
                })?),
            };
            project.scan_on_push = s.scan_on_push;
            self.projects.put(project).await?;
            self.scan_settings(id, p)
        };
        self.audited(id, "scanning.update", p, op, |_| Some(change))
            .await
    }
}
