//! Retention: a project's rules (see [`crate::config::RetentionRule`])
//! applied to each of its repositories, on demand (dry run or real) and on
//! the `[retention]` schedule.
//!
//! **What goes.** Per repository: tags matching a `keep_latest` rule's glob
//! beyond the newest N (by the time the tag was last pushed; ties by name)
//! are removed, unless another rule keeps them. A manifest whose every tag
//! was removed that way goes with them; so do manifests without tags older
//! than an `untagged_older_than` rule's age. The untagged child manifests
//! of an index that goes, and the untagged referrers (signatures, SBOMs) of
//! a manifest that goes, go too.
//!
//! **What stays, always.** Every manifest a remaining tag points at, the
//! child manifests and the referrers of any manifest that stays, pinned
//! manifests, and tags that no rule matches. Remote (pull-through cache)
//! namespaces have no rules. Deletions go through [`Registry::delete_tag_as`] and
//! [`Registry::delete_artifact_as`], so they are permission-checked and
//! audited like the API's; GC follows a run that deleted something.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Registry, RegistryError, Result};
use crate::auth::{Action, Identity, Subject};
use crate::config::{glob_match, RetentionRule, Rule};
use crate::oci::manifest::Manifest;
use crate::oci::{Digest, RepoName, Tag};
use crate::store::gc::{GcOptions, GcReport};
use crate::store::LeaseFor;

/// The body of `PUT /api/v1/projects/{p}/retention` and its answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRules {
    pub rules: Vec<RetentionRule>,
}

/// A tag removed (or that would be).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredTag {
    pub repository: String,
    pub tag: String,
    pub digest: String,
}

/// A manifest removed (or that would be), and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredArtifact {
    pub repository: String,
    pub digest: String,
    /// `tags removed`, `untagged`, `child of a removed index`, `referrer of a removed manifest`.
    pub reason: String,
}

/// What a retention run removed (or, dry, would remove).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RetentionReport {
    pub project: String,
    pub dry_run: bool,
    pub tags: Vec<RetiredTag>,
    pub artifacts: Vec<RetiredArtifact>,
    /// Tags seen in the project that stay.
    pub tags_kept: usize,
    /// The GC that followed (real runs that deleted something, with
    /// `retention.gc` on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gc: Option<GcReport>,
}

/// One manifest of a repository, as the plan sees it.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub pushed: SystemTime,
    pub children: Vec<Digest>,
    pub subject: Option<Digest>,
    pub pinned: bool,
}

/// A repository's state, as the plan sees it.
#[derive(Debug, Default)]
pub(crate) struct RepoState {
    pub tags: Vec<(String, Digest, SystemTime)>,
    pub manifests: HashMap<Digest, Node>,
}

/// What a run removes from one repository: tags (with the digest each
/// pointed at), then manifests with the reason.
pub(crate) type Plan = (Vec<(String, Digest)>, Vec<(Digest, &'static str)>);

/// The tags and manifests of one repository that `rules` remove at `now`.
pub(crate) fn plan(s: &RepoState, rules: &[Rule], now: SystemTime) -> Plan {
    let (mut kept, mut doomed_tags) = (HashSet::new(), BTreeSet::new());
    for r in rules {
        let Rule::KeepLatest { tags, count } = r else {
            continue;
        };
        let mut matching: Vec<_> = s
            .tags
            .iter()
            .filter(|(t, _, _)| glob_match(tags, t))
            .collect();
        matching.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| b.0.cmp(&a.0)));
        kept.extend(matching.iter().take(*count).map(|(t, _, _)| t.as_str()));
        doomed_tags.extend(
            matching
                .iter()
                .skip(*count)
                .map(|(t, d, _)| (t.clone(), d.clone())),
        );
    }
    doomed_tags.retain(|(t, _)| !kept.contains(t.as_str()));
    let tagged_before: HashSet<&Digest> = s.tags.iter().map(|(_, d, _)| d).collect();
    let tagged_after: HashSet<&Digest> = s
        .tags
        .iter()
        .filter(|(t, d, _)| !doomed_tags.contains(&(t.clone(), d.clone())))
        .map(|(_, d, _)| d)
        .collect();
    let age = rules.iter().filter_map(|r| match r {
        Rule::UntaggedOlderThan(a) => Some(*a),
        _ => None,
    });
    let max_age = age.min();
    let old = |n: &Node| {
        max_age.is_some_and(|a| now.duration_since(n.pushed).unwrap_or(Duration::ZERO) > a)
    };
    let mut doomed: HashMap<&Digest, &'static str> = HashMap::new();
    for (d, n) in &s.manifests {
        if tagged_before.contains(d) && !tagged_after.contains(d) {
            doomed.insert(d, "tags removed");
        } else if !tagged_before.contains(d) && old(n) {
            doomed.insert(d, "untagged");
        }
    }
    // Untagged children and referrers go with what they belong to.
    let mut grew = true;
    while grew {
        grew = false;
        for (d, n) in &s.manifests {
            if doomed.contains_key(d) || tagged_after.contains(d) {
                continue;
            }
            let reason = if s
                .manifests
                .iter()
                .any(|(p, pn)| doomed.contains_key(p) && pn.children.contains(d))
            {
                "child of a removed index"
            } else if n
                .subject
                .as_ref()
                .is_some_and(|sub| doomed.contains_key(sub))
            {
                "referrer of a removed manifest"
            } else {
                continue;
            };
            doomed.insert(d, reason);
            grew = true;
        }
    }
    // Whatever stays keeps its children (recursively) and its referrers,
    // and pins stay.
    loop {
        let mut protected: HashSet<&Digest> = HashSet::new();
        let mut todo: Vec<&Digest> = s
            .manifests
            .keys()
            .filter(|d| !doomed.contains_key(d))
            .collect();
        while let Some(d) = todo.pop() {
            for c in s
                .manifests
                .get(d)
                .map(|n| n.children.as_slice())
                .unwrap_or_default()
            {
                if protected.insert(c) {
                    todo.push(c);
                }
            }
        }
        let stays = |d: &Digest| s.manifests.contains_key(d) && !doomed.contains_key(d);
        for (d, n) in &s.manifests {
            if n.subject.as_ref().is_some_and(stays) {
                protected.insert(d);
            }
        }
        let before = doomed.len();
        doomed.retain(|d, _| !protected.contains(d) && !s.manifests[*d].pinned);
        if doomed.len() == before {
            break;
        }
    }
    let mut artifacts: Vec<(Digest, &'static str)> =
        doomed.into_iter().map(|(d, r)| (d.clone(), r)).collect();
    artifacts.sort();
    (doomed_tags.into_iter().collect(), artifacts)
}

/// The identity scheduled runs act as (recorded as the audit actor).
pub fn scheduler() -> Identity {
    Identity {
        subject: Subject::Admin("system:retention".into()),
        token_access: None,
    }
}

impl Registry {
    /// Project `p`'s validated rules; refused for remotes and unknown names.
    fn project_rules(&self, p: &str) -> Result<Vec<Rule>> {
        if self.namespaces().router().by_name(p).is_some() {
            return Err(RegistryError::BadRequest(format!(
                "{p} is a remote (pull-through cache); retention rules are for local projects"
            )));
        }
        let project = self
            .projects
            .get(p)
            .ok_or_else(|| Self::unknown_project(p))?;
        project
            .retention
            .iter()
            .map(|r| {
                r.rule().map_err(|e| {
                    RegistryError::BadRequest(format!("project {p}: retention rule: {e}"))
                })
            })
            .collect()
    }

    /// The retention rules of project `p` (anyone who may pull in it).
    pub async fn retention_rules(&self, id: &Identity, p: &str) -> Result<RetentionRules> {
        self.project_rules(p)?;
        if !self.is_admin(id) && !self.may_in_project(id, p, Action::Pull) {
            return Err(RegistryError::Denied(format!("no access to project {p}")));
        }
        Ok(RetentionRules {
            rules: self
                .projects
                .get(p)
                .map(|p| p.retention)
                .unwrap_or_default(),
        })
    }

    /// Replace project `p`'s retention rules (admins); saved with the
    /// project (and then winning over the config file's rules).
    pub async fn set_retention(
        &self,
        id: &Identity,
        p: &str,
        rules: RetentionRules,
    ) -> Result<RetentionRules> {
        let change = json!(rules);
        let op = async {
            self.require_admin(id)?;
            self.project_rules(p)?;
            for (i, r) in rules.rules.iter().enumerate() {
                r.rule()
                    .map_err(|e| RegistryError::BadRequest(format!("rules[{i}]: {e}")))?;
            }
            let mut project = self
                .projects
                .get(p)
                .ok_or_else(|| Self::unknown_project(p))?;
            project.retention = rules.rules.clone();
            self.projects.put(project).await?;
            Ok(rules)
        };
        self.audited(id, "retention.update", p, op, |_| Some(change))
            .await
    }

    /// Apply project `p`'s rules as `id`: a dry run needs pull in the
    /// project, a real one deletes through the permission-checked paths.
    pub async fn run_retention(
        &self,
        id: &Identity,
        p: &str,
        dry_run: bool,
    ) -> Result<RetentionReport> {
        let action = if dry_run {
            "retention.dry_run"
        } else {
            "retention.run"
        };
        let op = async {
            let rules = self.project_rules(p)?;
            if !self.is_admin(id)
                && !self.may_in_project(
                    id,
                    p,
                    if dry_run {
                        Action::Pull
                    } else {
                        Action::Delete
                    },
                )
            {
                return Err(RegistryError::Denied(format!(
                    "no {} permission in project {p}",
                    if dry_run { "pull" } else { "delete" }
                )));
            }
            let mut report = self.apply_rules(id, p, &rules, dry_run).await?;
            let deleted = !report.tags.is_empty() || !report.artifacts.is_empty();
            if !dry_run && deleted && self.retention.gc {
                report.gc = Some(
                    self.store
                        .gc(&GcOptions {
                            dry_run: false,
                            grace: self.limits.gc_grace,
                            trigger: "retention",
                        })
                        .await?,
                );
            }
            Ok(report)
        };
        let details = |r: &RetentionReport| {
            Some(json!({
                "tags_removed": r.tags.len(),
                "artifacts_removed": r.artifacts.len(),
                "tags_kept": r.tags_kept,
                "bytes_freed": r.gc.as_ref().map(|g| g.bytes_freed),
            }))
        };
        self.audited(id, action, p, op, details).await
    }

    async fn apply_rules(
        &self,
        id: &Identity,
        p: &str,
        rules: &[Rule],
        dry_run: bool,
    ) -> Result<RetentionReport> {
        let mut report = RetentionReport {
            project: p.to_string(),
            dry_run,
            ..Default::default()
        };
        let now = SystemTime::now();
        for repo in self.store.repositories_in(p).await? {
            let state = self.repo_state(&repo).await?;
            let (tags, artifacts) = plan(&state, rules, now);
            report.tags_kept += state.tags.len() - tags.len();
            for (t, d) in tags {
                if !dry_run {
                    let tag: Tag = t.parse().map_err(|e: crate::oci::NameError| {
                        RegistryError::BadRequest(e.to_string())
                    })?;
                    self.delete_tag_as(id, &repo, &tag).await?;
                }
                report.tags.push(RetiredTag {
                    repository: repo.to_string(),
                    tag: t,
                    digest: d.to_string(),
                });
            }
            // A tag pushed since the plan was made protects its manifest.
            let now_tagged = if dry_run {
                HashMap::new()
            } else {
                self.store.repo(&repo).tags_by_digest().await?
            };
            for (d, reason) in artifacts {
                if now_tagged.contains_key(&d) {
                    continue;
                }
                if !dry_run {
                    self.delete_artifact_as(id, &repo, &d).await?;
                }
                report.artifacts.push(RetiredArtifact {
                    repository: repo.to_string(),
                    digest: d.to_string(),
                    reason: reason.to_string(),
                });
            }
        }
        Ok(report)
    }

    async fn repo_state(&self, name: &RepoName) -> Result<RepoState> {
        let repo = self.store.repo(name);
        let pins: HashSet<Digest> = repo.pins().await?.into_iter().collect();
        let mut manifests = HashMap::new();
        for d in repo.manifest_digests().await? {
            let Some(meta) = repo.manifest_meta(&d).await? else {
                continue;
            };
            let parsed = repo
                .manifest(&d)
                .await?
                .and_then(|m| Manifest::parse(&m.bytes, Some(&m.media_type)).ok());
            let node = Node {
                pushed: meta.modified,
                children: parsed
                    .as_ref()
                    .map(|m| m.manifests.iter().map(|c| c.digest.clone()).collect())
                    .unwrap_or_default(),
                subject: parsed.and_then(|m| m.subject).map(|s| s.digest),
                pinned: pins.contains(&d),
            };
            manifests.insert(d, node);
        }
        Ok(RepoState {
            tags: repo.tag_times().await?,
            manifests,
        })
    }

    /// One scheduled pass: every project with rules, then one GC if
    /// anything went. Failures are logged (and audited), never fatal.
    pub async fn retention_sweep(&self) {
        // One scheduled sweep in the cluster: replicas sharing the store
        // take a lease; the others skip their turn.
        let _lease = match self
            .store
            .hold_lease(LeaseFor::Retention, "a retention sweep")
            .await
        {
            Ok(l) => l,
            Err(e @ crate::store::StoreError::Busy { .. }) => {
                tracing::info!("scheduled retention sweep skipped: {e}");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "scheduled retention sweep skipped: cannot take its lease");
                return;
            }
        };
        let id = scheduler();
        let mut deleted = false;
        for p in self
            .projects
            .all()
            .into_iter()
            .filter(|p| !p.retention.is_empty())
        {
            match self.run_retention_quietly(&id, &p.name).await {
                Ok(r) => deleted |= !r.tags.is_empty() || !r.artifacts.is_empty(),
                Err(e) => tracing::warn!(project = %p.name, error = %e, "retention run failed"),
            }
        }
        if deleted && self.retention.gc {
            let op = async {
                Ok(self
                    .store
                    .gc(&GcOptions {
                        dry_run: false,
                        grace: self.limits.gc_grace,
                        trigger: "retention schedule",
                    })
                    .await?)
            };
            let details = |rep: &GcReport| {
                Some(json!({ "blobs_removed": rep.blobs_removed, "bytes_freed": rep.bytes_freed }))
            };
            if let Err(e) = self.audited(&id, "gc.run", "store", op, details).await {
                tracing::warn!(error = %e, "GC after retention failed");
            }
        }
    }

    /// A scheduled project run: audited, GC left to the sweep.
    async fn run_retention_quietly(&self, id: &Identity, p: &str) -> Result<RetentionReport> {
        let op = async {
            let rules = self.project_rules(p)?;
            self.apply_rules(id, p, &rules, false).await
        };
        let details = |r: &RetentionReport| {
            Some(
                json!({ "tags_removed": r.tags.len(), "artifacts_removed": r.artifacts.len(), "tags_kept": r.tags_kept }),
            )
        };
        self.audited(id, "retention.run", p, op, details).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::sha256_of(&[n])
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn node(pushed: u64) -> Node {
        Node {
            pushed: at(pushed),
            children: vec![],
            subject: None,
            pinned: false,
        }
    }

    fn keep(tags: &str, count: usize) -> Rule {
        Rule::KeepLatest {
            tags: tags.into(),
            count,
        }
    }

    #[test]
    fn keeps_the_newest_matching_tags_and_never_what_a_kept_tag_points_at() {
        let mut s = RepoState::default();
        for i in 1..=5u8 {
            s.tags.push((format!("v{i}"), d(i), at(i as u64 * 10)));
            s.manifests.insert(d(i), node(i as u64 * 10));
        }
        // `latest` matches no rule and points at v1's manifest.
        s.tags.push(("latest".into(), d(1), at(1)));
        let (tags, artifacts) = plan(&s, &[keep("v*", 2)], at(100));
        let names: Vec<&str> = tags.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(names, ["v1", "v2", "v3"]);
        let mut want = vec![(d(2), "tags removed"), (d(3), "tags removed")];
        want.sort();
        assert_eq!(artifacts, want);
        // A second rule keeping v1 wins over the first.
        let (tags, _) = plan(&s, &[keep("v*", 2), keep("v1", 1)], at(100));
        assert_eq!(tags.len(), 2);
    }

    #[test]
    fn untagged_by_age_with_children_referrers_and_pins() {
        let mut s = RepoState::default();
        let (index, child, kept_child, sig, pinned, young) = (d(1), d(2), d(3), d(4), d(5), d(6));
        s.manifests.insert(
            index.clone(),
            Node {
                children: vec![child.clone()],
                ..node(0)
            },
        );
        s.manifests.insert(child.clone(), node(0));
        s.manifests.insert(
            sig.clone(),
            Node {
                subject: Some(index.clone()),
                ..node(90)
            },
        );
        s.manifests.insert(
            pinned.clone(),
            Node {
                pinned: true,
                ..node(0)
            },
        );
        s.manifests.insert(young.clone(), node(95));
        // A tagged index keeps its (untagged, old) child.
        s.manifests.insert(
            d(7),
            Node {
                children: vec![kept_child.clone()],
                ..node(0)
            },
        );
        s.manifests.insert(kept_child.clone(), node(0));
        s.tags.push(("app".into(), d(7), at(0)));
        // An old untagged signature of the kept image stays with it.
        let kept_sig = d(8);
        s.manifests.insert(
            kept_sig.clone(),
            Node {
                subject: Some(d(7)),
                ..node(0)
            },
        );
        let (tags, artifacts) = plan(
            &s,
            &[Rule::UntaggedOlderThan(Duration::from_secs(50))],
            at(100),
        );
        assert!(tags.is_empty());
        let got: HashMap<Digest, &str> = artifacts.into_iter().collect();
        assert_eq!(got.get(&index), Some(&"untagged"));
        assert_eq!(got.get(&child), Some(&"untagged"));
        assert_eq!(got.get(&sig), Some(&"referrer of a removed manifest"));
        assert_eq!(got.len(), 3, "{got:?}");
    }

    #[test]
    fn children_of_a_removed_tagged_index_go_unless_shared() {
        let mut s = RepoState::default();
        let (old_index, new_index, only_old, shared) = (d(1), d(2), d(3), d(4));
        s.manifests.insert(
            old_index.clone(),
            Node {
                children: vec![only_old.clone(), shared.clone()],
                ..node(1)
            },
        );
        s.manifests.insert(
            new_index.clone(),
            Node {
                children: vec![shared.clone()],
                ..node(2)
            },
        );
        s.manifests.insert(only_old.clone(), node(1));
        s.manifests.insert(shared.clone(), node(1));
        s.tags.push(("v1".into(), old_index.clone(), at(1)));
        s.tags.push(("v2".into(), new_index, at(2)));
        let (_, artifacts) = plan(&s, &[keep("*", 1)], at(10));
        assert_eq!(artifacts, {
            let mut v = vec![
                (old_index, "tags removed"),
                (only_old, "child of a removed index"),
            ];
            v.sort();
            v
        });
    }
}
