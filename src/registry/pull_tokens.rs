//! One-time pull tokens, the domain side: who may issue one (admins, and
//! robots with `issue-tokens` in the image's project), for which image (a
//! local one, resolved to its manifest digest when issued), and which
//! requests a token's holder may make: the image's manifest by its tag or
//! digest, its child manifests and its blobs — nothing else. How uses are
//! counted is [`crate::auth::pull_tokens`]'s (see "One use" there).

use std::time::Duration;

use serde_json::json;

use super::admin::split_image;
use super::views::{IssuedPullToken, NewPullToken, PullTokenView};
use super::{Intent, Registry, RegistryError, Result, Target};
use crate::auth::pull_tokens::{PullToken, Refusal, Use};
use crate::auth::Identity;
use crate::oci::{Digest, Reference, RepoName};

/// Most uses one token may carry.
const MAX_USES: u32 = 1000;
/// Longest lifetime of a token.
const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// What a request authorized by a pull token asks for.
#[derive(Debug, Clone, Copy)]
pub enum PullRequest<'a> {
    /// `/v2/`: always fine (clients check their login with it).
    Base,
    Manifest(&'a RepoName, &'a Reference),
    Blob(&'a RepoName, &'a Digest),
    /// Anything else (tag lists, referrers, the catalogue, writes).
    Other,
}

fn refused(e: Refusal) -> RegistryError {
    match e {
        Refusal::Store(s) => RegistryError::Store(s),
        other => RegistryError::Denied(other.to_string()),
    }
}

impl Registry {
    /// Issue a pull token (audited; the secret is in the answer only).
    pub async fn issue_pull_token(
        &self,
        id: &Identity,
        r: NewPullToken,
    ) -> Result<IssuedPullToken> {
        let image = r.image.clone();
        let op = self.make_pull_token(id, r);
        let details = |t: &IssuedPullToken| {
            Some(
                json!({ "token": t.username, "digest": t.digest, "uses": t.uses, "expires_at": t.expires_at }),
            )
        };
        self.audited(id, "pull_token.create", &image, op, details)
            .await
    }

    async fn make_pull_token(&self, id: &Identity, r: NewPullToken) -> Result<IssuedPullToken> {
        let (name, reference) = split_image(&r.image)?;
        let project = name
            .as_str()
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        if !self.auth.may_issue_tokens(&id.subject, &project) {
            return Err(RegistryError::Denied(format!(
                "issuing pull tokens for {project} needs an admin, or a robot with the issue-tokens permission on {project}"
            )));
        }
        if !(1..=MAX_USES).contains(&r.uses) {
            return Err(RegistryError::BadRequest(format!(
                "uses must be between 1 and {MAX_USES}, got {}",
                r.uses
            )));
        }
        let ttl = crate::config::parse_duration(&r.ttl)
            .map_err(|e| RegistryError::BadRequest(format!("ttl: {e}")))?;
        if ttl.is_zero() || ttl > MAX_TTL {
            return Err(RegistryError::BadRequest(format!(
                "ttl must be more than 0 and at most 30d, got {:?}",
                r.ttl
            )));
        }
        if !matches!(
            self.resolve(&name, None, Intent::PullManifest).await?,
            Target::Local(_)
        ) {
            return Err(RegistryError::BadRequest(format!(
                "{name} is a pull-through (remote) repository; pull tokens are for local images"
            )));
        }
        let m = self.manifest(&name, &reference).await?;
        let template = PullToken {
            id: String::new(),
            secret_sha256: String::new(),
            repository: name.to_string(),
            digest: m.digest.to_string(),
            tag: match &reference {
                Reference::Tag(t) => Some(t.to_string()),
                Reference::Digest(_) => None,
            },
            uses: r.uses,
            used: 0,
            created_at: 0,
            expires_at: 0,
            window_until: 0,
            created_by: id.subject.username(),
        };
        let (t, secret) = self.auth.pull_tokens().create(template, ttl).await?;
        Ok(IssuedPullToken {
            username: t.username(),
            id: t.id,
            password: secret,
            image: r.image,
            repository: t.repository,
            digest: t.digest,
            uses: t.uses,
            expires_at: t.expires_at,
        })
    }

    /// Every pull token, without secrets (admins).
    pub async fn pull_tokens(&self, id: &Identity) -> Result<Vec<PullTokenView>> {
        self.require_admin(id)?;
        Ok(self
            .auth
            .pull_tokens()
            .all()
            .await?
            .iter()
            .map(PullTokenView::from)
            .collect())
    }

    /// Revoke pull token `token_id` (admins): it stops working at once.
    pub async fn revoke_pull_token(&self, id: &Identity, token_id: &str) -> Result<()> {
        let op = async {
            self.require_admin(id)?;
            match self.auth.pull_tokens().remove(token_id).await? {
                true => Ok(()),
                false => Err(RegistryError::NotFound(format!(
                    "pull token {token_id} not found"
                ))),
            }
        };
        let target = format!("{}{token_id}", crate::auth::pull_tokens::PULL_PREFIX);
        self.audited(id, "pull_token.revoke", &target, op, |_| None)
            .await
    }

    /// Whether pull token `token_id` covers request `what` (HEAD and GET
    /// alike), counting uses; refusals say why (used up, expired, not
    /// this image). A started use is audited.
    pub async fn admit_pull_token(
        &self,
        id: &Identity,
        token_id: &str,
        what: PullRequest<'_>,
    ) -> Result<()> {
        let t = self
            .auth
            .pull_tokens()
            .get(token_id)
            .await?
            .ok_or_else(|| {
                RegistryError::Unauthenticated(format!(
                    "pull token {} is not known",
                    id.subject.username()
                ))
            })?;
        let root: Digest = t.digest.parse().map_err(|e: crate::oci::DigestError| {
            RegistryError::Store(crate::store::StoreError::Corrupt(e.to_string()))
        })?;
        let only = || {
            RegistryError::Denied(format!(
                "pull token {} pulls {}@{} only",
                t.username(),
                t.repository,
                t.digest
            ))
        };
        let how = match what {
            PullRequest::Base => return Ok(()),
            PullRequest::Other => return Err(only()),
            PullRequest::Manifest(name, _) | PullRequest::Blob(name, _)
                if name.as_str() != t.repository =>
            {
                return Err(only())
            }
            PullRequest::Manifest(name, Reference::Tag(tag)) => {
                if t.tag.as_deref() != Some(tag.as_str()) {
                    return Err(only());
                }
                if self.store.repo(name).tag(tag).await?.as_ref() != Some(&root) {
                    return Err(RegistryError::Denied(format!(
                        "pull token {} was issued for {}@{}, and tag {tag} no longer points at it; pull by digest",
                        t.username(),
                        t.repository,
                        t.digest
                    )));
                }
                Use::Start
            }
            PullRequest::Manifest(_, Reference::Digest(d)) if *d == root => Use::StartOrJoin,
            PullRequest::Manifest(name, Reference::Digest(d)) | PullRequest::Blob(name, d) => {
                if !self.store.repo(name).closure(&root).await?.contains(d) {
                    return Err(only());
                }
                Use::Join
            }
        };
        let now = crate::auth::robots::unix_now();
        let r = self
            .auth
            .pull_tokens()
            .use_at(token_id, how, now)
            .await
            .map_err(refused);
        if matches!(r, Ok(None)) {
            // Part of a use in progress: not worth an audit entry each.
            return Ok(());
        }
        let details = |s: &Option<crate::auth::pull_tokens::Started>| {
            s.map(|s| json!({ "use": s.number, "of": s.of }))
        };
        let target = format!("{}@{}", t.repository, t.digest);
        self.audited(id, "pull_token.use", &target, async { r }, details)
            .await
            .map(|_| ())
    }
}
