//! Management operations: what the `/api/v1` endpoints (and the CLI behind
//! them) do — project views, repositories, artifacts, robots, GC (prefetch
//! jobs are [`super::prefetch`]).
//! Permission rules live here too: admins may do everything; a robot sees
//! the projects it has a permission on; with no accounts (open mode)
//! everything is allowed.

use std::collections::BTreeMap;

use serde_json::json;

use super::views::{
    GcRequest, NewProject, NewRobot, ProjectUpdate, ProjectView, RepositoryView, RobotView,
};
use super::{Registry, RegistryError, Result};
use crate::auth::{Action, Identity, RobotError, Subject};
use crate::config::{Perms, Project};
use crate::oci::{Digest, Reference, RepoName, Tag};
use crate::store::gc::{GcOptions, GcReport};
use crate::store::{Artifact, PageFrom};

impl Registry {
    pub fn is_admin(&self, id: &Identity) -> bool {
        !self.auth.enabled() || matches!(id.subject, Subject::Admin(_))
    }

    pub fn require_admin(&self, id: &Identity) -> Result<()> {
        if self.is_admin(id) {
            return Ok(());
        }
        Err(RegistryError::Denied("this needs an admin account".into()))
    }

    /// Without accounts the management surface (API and dashboard) is
    /// read-only: anyone could otherwise create the first robot and lock
    /// everybody else out.
    pub fn require_accounts_for_changes(&self) -> Result<()> {
        if self.auth.enabled() {
            return Ok(());
        }
        Err(RegistryError::Unauthenticated(
            "wharf has no accounts, so management is read-only: add an [[auth.admins]] entry to the config \
             (password_hash from `wharf hash-password`) and restart"
                .into(),
        ))
    }

    /// Whether `id` may do `action` in project `p` (any repository of it).
    pub(super) fn may_in_project(&self, id: &Identity, p: &str, action: Action) -> bool {
        self.auth
            .subject_allowed(&id.subject, &format!("{p}/x"), action, false)
    }

    fn require(&self, id: &Identity, repo: &RepoName, action: Action) -> Result<()> {
        if self
            .auth
            .subject_allowed(&id.subject, repo.as_str(), action, false)
        {
            return Ok(());
        }
        let what = if action == Action::Delete {
            "no delete permission on"
        } else {
            "no access to"
        };
        Err(RegistryError::Denied(format!("{what} {repo}")))
    }

    /// Every project `id` can see: configured projects plus local namespaces
    /// that hold content, with usage against quota.
    pub async fn project_views(&self, id: &Identity) -> Result<Vec<ProjectView>> {
        let usage = self.store.usage_by_namespace().await?;
        let mut names: std::collections::BTreeSet<String> =
            self.projects.all().into_iter().map(|p| p.name).collect();
        names.extend(
            usage
                .keys()
                .filter(|ns| self.namespaces().router().by_name(ns).is_none())
                .cloned(),
        );
        let mut out = Vec::new();
        for name in names {
            if !self.is_admin(id) && !self.may_in_project(id, &name, Action::Pull) {
                continue;
            }
            let p = self.projects.get(&name);
            out.push(ProjectView {
                repositories: self.store.count_in(&name).await?,
                usage: usage.get(&name).copied().unwrap_or(0),
                configured: p.is_some(),
                public: p.as_ref().is_some_and(|p| p.public),
                quota: p.as_ref().and_then(|p| p.quota),
                max_image_size: p.as_ref().and_then(|p| p.max_image_size),
                name,
            });
        }
        Ok(out)
    }

    pub async fn project_view(&self, id: &Identity, name: &str) -> Result<ProjectView> {
        self.project_views(id)
            .await?
            .into_iter()
            .find(|v| v.name == name)
            .ok_or_else(|| RegistryError::NotFound(format!("project {name} not found")))
    }

    /// At most `n` repositories of project (or remote) `p` after `after`
    /// (by name), and whether more follow. Only the page's repositories
    /// are counted.
    pub async fn project_repositories_page(
        &self,
        id: &Identity,
        p: &str,
        after: Option<&str>,
        n: usize,
    ) -> Result<(Vec<RepositoryView>, bool)> {
        let remote = self.namespaces().router().by_name(p).is_some();
        if !remote && !self.project_exists(p).await? {
            return Err(RegistryError::NotFound(format!(
                "no project or remote named {p}"
            )));
        }
        if !self
            .auth
            .subject_allowed(&id.subject, &format!("{p}/x"), Action::Pull, remote)
        {
            return Err(RegistryError::Denied(format!("no access to project {p}")));
        }
        let mut names = self
            .store
            .repositories_in_page(p, after, n.saturating_add(1))
            .await?;
        let more = names.len() > n;
        names.truncate(n);
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            out.push(self.repository_view(&name, remote).await?);
        }
        Ok((out, more))
    }

    /// At most `n` repositories `id` may pull from after `after` (by
    /// name), local and cached (marked).
    pub async fn repositories_page(
        &self,
        id: &Identity,
        after: Option<&str>,
        n: usize,
    ) -> Result<Vec<RepositoryView>> {
        let names = self
            .store
            .repositories_where(after, n, |r| self.subject_may(id, r, Action::Pull))
            .await?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let remote = self.namespaces().is_cache_repo(&name);
            out.push(self.repository_view(&name, remote).await?);
        }
        Ok(out)
    }

    async fn repository_view(&self, name: &RepoName, cached: bool) -> Result<RepositoryView> {
        let repo = self.store.repo(name);
        Ok(RepositoryView {
            tags: repo.tag_count().await?,
            artifacts: repo.manifest_count().await?,
            name: name.to_string(),
            cached,
        })
    }

    /// The artifacts of `repo`, grouped by digest.
    pub async fn artifacts(&self, id: &Identity, repo: &RepoName) -> Result<Vec<Artifact>> {
        Ok(self
            .artifacts_page(id, repo, &PageFrom::Skip(0), usize::MAX)
            .await?
            .0)
    }

    /// A page of the artifacts of `repo` (newest first) and their total.
    pub async fn artifacts_page(
        &self,
        id: &Identity,
        repo: &RepoName,
        from: &PageFrom,
        n: usize,
    ) -> Result<(Vec<Artifact>, usize)> {
        self.require(id, repo, Action::Pull)?;
        if !self.store.repo_exists(repo).await? {
            return Err(RegistryError::NotFound(format!(
                "repository {repo} not found"
            )));
        }
        self.store.repo(repo).artifacts_page(from, n).await?.ok_or_else(|| {
            RegistryError::BadRequest(format!("last: that artifact is no longer in {repo} (deleted while paging?); start again from the first page"))
        })
    }

    /// Delete an artifact and its tags, as `id`.
    pub async fn delete_artifact_as(
        &self,
        id: &Identity,
        repo: &RepoName,
        d: &Digest,
    ) -> Result<Vec<String>> {
        let op = async {
            self.require(id, repo, Action::Delete)?;
            self.delete_artifact(repo, d).await
        };
        self.audited(id, "artifact.delete", &format!("{repo}@{d}"), op, |tags| {
            Some(json!({ "deleted_tags": tags }))
        })
        .await
    }

    /// Delete one tag, as `id`.
    pub async fn delete_tag_as(&self, id: &Identity, repo: &RepoName, t: &Tag) -> Result<()> {
        let op = async {
            self.require(id, repo, Action::Delete)?;
            self.delete_tag(repo, t).await
        };
        self.audited(id, "tag.delete", &format!("{repo}:{t}"), op, |_| None)
            .await
    }

    /// Whether project `name` exists: configured (file or API), or a local
    /// namespace holding content. A remote's name is not a project.
    pub(super) async fn project_exists(&self, name: &str) -> Result<bool> {
        if self.projects.get(name).is_some() {
            return Ok(true);
        }
        Ok(self.namespaces().router().by_name(name).is_none()
            && self.store.namespace_exists(name).await?)
    }

    pub(super) fn unknown_project(name: &str) -> RegistryError {
        RegistryError::NotFound(format!(
            "project {name} does not exist; create it first (`wharf projects create {name}`)"
        ))
    }

    /// Create project `name` (admins); refused if it exists.
    pub async fn create_project(&self, id: &Identity, p: NewProject) -> Result<Project> {
        let name = p.name.clone();
        let change = json!(p);
        let op = async {
            self.require_admin(id)?;
            self.check_project_name(&p.name)?;
            if self.project_exists(&p.name).await? {
                return Err(RegistryError::Conflict(format!(
                    "project {} already exists",
                    p.name
                )));
            }
            let new = Project {
                name: p.name,
                public: p.public,
                quota: p.quota.flatten(),
                max_image_size: p.max_image_size.flatten(),
                retention: Vec::new(),
                scan_on_push: false,
                prevent_severity: None,
            };
            self.projects.put(new.clone()).await?;
            Ok(new)
        };
        self.audited(id, "project.create", &name, op, |_| Some(change))
            .await
    }

    /// Change project `name` (admins); refused if it does not exist.
    pub async fn update_project(
        &self,
        id: &Identity,
        name: &str,
        u: ProjectUpdate,
    ) -> Result<Project> {
        let change = json!(u);
        let op = self.change_project(id, name, u);
        self.audited(id, "project.update", name, op, |_| Some(change))
            .await
    }

    fn check_project_name(&self, name: &str) -> Result<()> {
        if !crate::config::valid_project_name(name) {
            return Err(RegistryError::NameInvalid(format!(
                "{name:?} is not a valid project name"
            )));
        }
        if self.namespaces().router().by_name(name).is_some() {
            return Err(RegistryError::BadRequest(format!(
                "{name} is a remote, not a project"
            )));
        }
        Ok(())
    }

    async fn change_project(&self, id: &Identity, name: &str, u: ProjectUpdate) -> Result<Project> {
        self.require_admin(id)?;
        self.check_project_name(name)?;
        if !self.project_exists(name).await? {
            return Err(Self::unknown_project(name));
        }
        let mut p = self.projects.get(name).unwrap_or(Project {
            name: name.to_string(),
            public: false,
            quota: None,
            max_image_size: None,
            retention: Vec::new(),
            scan_on_push: false,
            prevent_severity: None,
        });
        if let Some(v) = u.public {
            p.public = v;
        }
        if let Some(q) = u.quota {
            p.quota = q;
        }
        if let Some(m) = u.max_image_size {
            p.max_image_size = m;
        }
        self.projects.put(p.clone()).await?;
        Ok(p)
    }

    /// Delete project `name` (admins): only an empty one defined through
    /// the API (the config file's come back on every start).
    pub async fn delete_project(&self, id: &Identity, name: &str) -> Result<()> {
        let op = async {
            self.require_admin(id)?;
            if self.projects.in_config(name) {
                return Err(RegistryError::Conflict(format!(
                    "project {name} is defined in the config file; remove it there"
                )));
            }
            if self.projects.get(name).is_none() && !self.project_exists(name).await? {
                return Err(Self::unknown_project(name));
            }
            for repo in self.store.repositories_in(name).await? {
                if !self.store.repo(&repo).manifest_digests().await?.is_empty() {
                    return Err(RegistryError::Conflict(format!(
                        "project {name} still holds images (in {repo}); delete them first (`wharf artifacts {repo}`, `wharf delete`)"
                    )));
                }
            }
            self.projects.remove(name).await?;
            Ok(())
        };
        self.audited(id, "project.delete", name, op, |_| None).await
    }

    pub fn robots(&self, id: &Identity) -> Result<Vec<RobotView>> {
        self.require_admin(id)?;
        let view = |r: &crate::auth::robots::Robot| RobotView {
            last_used_at: self.auth.robot_last_used(&r.name),
            ..RobotView::from(r)
        };
        Ok(self.auth.robots().iter().map(view).collect())
    }

    /// Create a robot (admins); the answer carries its token, once.
    pub async fn create_robot(&self, id: &Identity, r: NewRobot) -> Result<RobotView> {
        let target = format!("{}{}", crate::auth::ROBOT_PREFIX, r.name);
        let op = self.add_robot(id, r);
        // Never the token: only what the robot may do.
        let details = |v: &RobotView| {
            Some(json!({ "permissions": v.permissions, "expires_at": v.expires_at }))
        };
        self.audited(id, "robot.create", &target, op, details).await
    }

    async fn add_robot(&self, id: &Identity, r: NewRobot) -> Result<RobotView> {
        self.require_admin(id)?;
        let mut perms = BTreeMap::new();
        for (project, actions) in &r.permissions {
            if !crate::config::valid_project_name(project) {
                return Err(RegistryError::BadRequest(format!("permissions: {project:?} is not a project name (one repository-name component)")));
            }
            if !self.project_exists(project).await? {
                return Err(RegistryError::NotFound(format!(
                    "permissions: project {project} does not exist; create it first (`wharf projects create {project}`)"
                )));
            }
            perms.insert(
                project.clone(),
                Perms::parse(actions).map_err(|e| RegistryError::BadRequest(e.to_string()))?,
            );
        }
        let expires = r
            .expires_in
            .as_deref()
            .map(|s| {
                crate::config::parse_duration(s)
                    .map_err(|e| RegistryError::BadRequest(format!("expires_in: {e}")))
            })
            .transpose()?;
        let (robot, token) = self
            .auth
            .create_robot(&r.name, perms, expires)
            .await
            .map_err(robot_error)?;
        let mut v = RobotView::from(&robot);
        v.token = Some(token);
        Ok(v)
    }

    /// Revoke a robot (admins): its credentials stop working at once.
    pub async fn revoke_robot(&self, id: &Identity, name: &str) -> Result<()> {
        let op = async {
            self.require_admin(id)?;
            self.auth.revoke_robot(name).await.map_err(robot_error)
        };
        self.audited(
            id,
            "robot.revoke",
            &format!("{}{name}", crate::auth::ROBOT_PREFIX),
            op,
            |_| None,
        )
        .await
    }

    /// Delete a robot record (admins), so its name can be used again: it
    /// is revoked first if it is not already.
    pub async fn delete_robot(&self, id: &Identity, name: &str) -> Result<()> {
        let op = async {
            self.require_admin(id)?;
            self.auth.delete_robot(name).await.map_err(robot_error)
        };
        self.audited(
            id,
            "robot.delete",
            &format!("{}{name}", crate::auth::ROBOT_PREFIX),
            op,
            |_| None,
        )
        .await
    }

    /// Online garbage collection (admins).
    pub async fn gc(&self, id: &Identity, r: GcRequest) -> Result<GcReport> {
        let action = if r.dry_run { "gc.dry_run" } else { "gc.run" };
        let op = async {
            self.require_admin(id)?;
            let grace = match r.grace.as_deref() {
                Some(g) => crate::config::parse_duration(g)
                    .map_err(|e| RegistryError::BadRequest(format!("grace: {e}")))?,
                None => self.limits.gc_grace,
            };
            Ok(self
                .store
                .gc(&GcOptions {
                    dry_run: r.dry_run,
                    grace,
                    trigger: "api",
                })
                .await?)
        };
        let details = |rep: &GcReport| {
            Some(
                json!({ "blobs_removed": rep.blobs_removed, "bytes_freed": rep.bytes_freed, "blobs_in_grace": rep.blobs_in_grace }),
            )
        };
        self.audited(id, action, "store", op, details).await
    }
}

fn robot_error(e: RobotError) -> RegistryError {
    match e {
        RobotError::NotFound(_) => RegistryError::NotFound(e.to_string()),
        RobotError::Exists(_) => RegistryError::Conflict(e.to_string()),
        RobotError::Store(s) => RegistryError::Store(s),
        other => RegistryError::BadRequest(other.to_string()),
    }
}

/// `name:tag`, `name@digest` or `name` (tag `latest`).
pub fn split_image(image: &str) -> Result<(RepoName, Reference)> {
    let bad = |e: String| RegistryError::BadRequest(format!("image {image:?}: {e}"));
    let (name, reference) = if let Some((n, d)) = image.split_once('@') {
        (
            n,
            Reference::Digest(
                d.parse()
                    .map_err(|e: crate::oci::DigestError| bad(e.to_string()))?,
            ),
        )
    } else {
        let slash = image.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (n, t) = match image[slash..].rfind(':') {
            Some(i) => (&image[..slash + i], &image[slash + i + 1..]),
            None => (image, "latest"),
        };
        (
            n,
            Reference::Tag(
                t.parse()
                    .map_err(|e: crate::oci::NameError| bad(e.to_string()))?,
            ),
        )
    };
    Ok((
        name.parse()
            .map_err(|e: crate::oci::NameError| bad(e.to_string()))?,
        reference,
    ))
}
