//! [`Namespaces::resolve`]: the one answer to "is this name local, or which
//! remote serves it?". Every caller — the `/v2/` routes, token grants, the
//! catalogue filter, prefetch, the management API — asks here.
//!
//! Rules, in order:
//! 1. `?ns=<host>` (containerd mirror mode) selects the remote whose hosts
//!    include `<host>`; an unconfigured host is refused (wharf never dials
//!    a host that is not in its config). The path is the remote's own name.
//! 2. A first segment naming a remote: `/v2/<remote>/<rest>` → that remote,
//!    repository `<rest>`.
//! 3. A first segment that is a project, or a namespace holding pushed
//!    content, is local. So is every write.
//! 4. Other reads go to the default remote (on Docker Hub `nginx` →
//!    `library/nginx`): manifests always (that is how a Docker daemon with
//!    wharf as `registry-mirrors` pulls); blobs, tags and referrers only once
//!    that remote repository has been pulled through wharf, so a first
//!    `docker push` to a new local repository gets fast local 404s for its
//!    blob checks. Without a default remote they are local.

use async_trait::async_trait;

use super::RegistryError;
use crate::oci::RepoName;
use crate::proxy::{PolicyError, RemoteTarget, Route, Router};
use crate::store::StoreError;

/// What the caller is about to do with the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Read a manifest (also: token grants, prefetch).
    PullManifest,
    /// Read blobs, tags or referrers.
    PullContent,
    /// Push or delete.
    Write,
}

/// Where a name lives.
#[derive(Debug, Clone)]
pub enum Target {
    Local(RepoName),
    Remote(RemoteTarget),
}

impl Target {
    pub fn is_remote(&self) -> bool {
        matches!(self, Target::Remote(_))
    }
}

/// What the resolver needs to know about local names.
#[async_trait]
pub trait LocalNames: Send + Sync {
    /// A configured (or created) project.
    fn is_project(&self, namespace: &str) -> bool;
    /// A namespace holding any local repository (a store failure is an
    /// error, never "no").
    async fn has_content(&self, namespace: &str) -> Result<bool, StoreError>;
    /// A repository that exists locally (e.g. a cache repository).
    async fn repo_exists(&self, name: &RepoName) -> Result<bool, StoreError>;
}

/// The resolver: the remotes' routing table plus the local names.
pub struct Namespaces {
    router: Router,
    /// `server.mode = "mirror"`: every name is a remote's; nothing is local.
    mirror: bool,
}

impl Namespaces {
    pub fn new(router: Router, mirror: bool) -> Namespaces {
        Namespaces { router, mirror }
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Where `name` (as in the request path, with containerd's `ns`) lives
    /// for `intent`.
    pub async fn resolve(
        &self,
        name: &RepoName,
        ns: Option<&str>,
        intent: Intent,
        local: &dyn LocalNames,
    ) -> Result<Target, RegistryError> {
        let (name, default) = match self.router.route(name, ns)? {
            Route::Remote(t) => return Ok(Target::Remote(t)),
            Route::LocalOrDefault(n, d) => (n, d),
        };
        let first = name.first();
        let Some(t) = default else {
            // Without a default remote an unprefixed read is local, unless
            // nothing local could answer: then say why nothing mirrors it.
            if self.mirror
                || (intent != Intent::Write
                    && !local.is_project(first)
                    && !local.has_content(first).await?)
            {
                return Err(PolicyError::NoDefaultRemote(name.to_string()).into());
            }
            return Ok(Target::Local(name));
        };
        if self.mirror {
            return Ok(Target::Remote(t));
        }
        if intent == Intent::Write || local.is_project(first) || local.has_content(first).await? {
            return Ok(Target::Local(name));
        }
        if intent == Intent::PullManifest || local.repo_exists(&t.cache_repo).await? {
            return Ok(Target::Remote(t));
        }
        Ok(Target::Local(name))
    }

    /// Whether a stored repository name is a pull-through cache repository
    /// (`<remote>/...`).
    pub fn is_cache_repo(&self, name: &RepoName) -> bool {
        self.router.by_name(name.first()).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;

    /// Local names for the tests: a project `team`, pushed content under
    /// `pushed`, and a cached `docker.io/library/cached`.
    struct Fake;

    #[async_trait]
    impl LocalNames for Fake {
        fn is_project(&self, ns: &str) -> bool {
            ns == "team"
        }
        async fn has_content(&self, ns: &str) -> Result<bool, StoreError> {
            Ok(ns == "pushed")
        }
        async fn repo_exists(&self, name: &RepoName) -> Result<bool, StoreError> {
            Ok(name.as_str() == "docker.io/library/cached")
        }
    }

    fn namespaces(toml: &str) -> Namespaces {
        let cfg = RawConfig::parse(toml)
            .unwrap()
            .validate(&Default::default())
            .unwrap();
        Namespaces::new(Router::new(cfg.remotes), false)
    }

    const CFG: &str = "[[remotes]]\nname = \"docker.io\"\nurl = \"https://registry-1.docker.io\"\ndefault = true\n[[remotes]]\nname = \"corp\"\nurl = \"http://127.0.0.1:9\"\n";

    async fn where_(n: &Namespaces, name: &str, ns: Option<&str>, intent: Intent) -> String {
        match n.resolve(&name.parse().unwrap(), ns, intent, &Fake).await {
            Ok(Target::Local(l)) => format!("local {l}"),
            Ok(Target::Remote(t)) => format!("remote {} {}", t.remote.name, t.upstream_repo),
            Err(e) => format!("error {e}"),
        }
    }

    /// Every rule of the README's routing table.
    #[tokio::test]
    async fn routing_rules() {
        use Intent::*;
        let n = namespaces(CFG);
        // A remote prefix.
        assert_eq!(
            where_(&n, "corp/team/app", None, PullContent).await,
            "remote corp team/app"
        );
        assert_eq!(
            where_(&n, "docker.io/nginx", None, PullManifest).await,
            "remote docker.io library/nginx"
        );
        assert!(where_(&n, "corp", None, PullManifest)
            .await
            .starts_with("error"));
        // ?ns= selects by host; unknown hosts are refused.
        assert_eq!(
            where_(&n, "nginx", Some("docker.io"), PullManifest).await,
            "remote docker.io library/nginx"
        );
        assert!(where_(&n, "x/y", Some("evil.example"), PullManifest)
            .await
            .starts_with("error"));
        // Projects and namespaces with pushed content are local.
        assert_eq!(
            where_(&n, "team/app", None, PullManifest).await,
            "local team/app"
        );
        assert_eq!(
            where_(&n, "pushed/app", None, PullManifest).await,
            "local pushed/app"
        );
        // Other reads: manifests go to the default remote ...
        assert_eq!(
            where_(&n, "nginx", None, PullManifest).await,
            "remote docker.io library/nginx"
        );
        // ... content only once that repository was pulled through wharf.
        assert_eq!(where_(&n, "nginx", None, PullContent).await, "local nginx");
        assert_eq!(
            where_(&n, "cached", None, PullContent).await,
            "remote docker.io library/cached"
        );
        // Writes are local (a remote prefix stays remote: writes there are refused later).
        assert_eq!(where_(&n, "newapp", None, Write).await, "local newapp");
        assert_eq!(where_(&n, "corp/x", None, Write).await, "remote corp x");
        // Without a default remote, unprefixed names are local; a read of
        // one that nothing local holds says there is no default remote.
        let n = namespaces("[[remotes]]\nname = \"corp\"\nurl = \"http://127.0.0.1:9\"\n");
        assert!(where_(&n, "nginx", None, PullManifest)
            .await
            .contains("no default remote"));
        assert_eq!(
            where_(&n, "team/app", None, PullManifest).await,
            "local team/app"
        );
        assert_eq!(where_(&n, "nginx", None, Write).await, "local nginx");
    }

    #[tokio::test]
    async fn a_mirror_has_no_local_names() {
        let cfg = RawConfig::parse(CFG)
            .unwrap()
            .validate(&Default::default())
            .unwrap();
        let n = Namespaces::new(Router::new(cfg.remotes), true);
        assert_eq!(
            where_(&n, "team/app", None, Intent::PullManifest).await,
            "remote docker.io team/app"
        );
        assert_eq!(
            where_(&n, "pushed/app", None, Intent::PullContent).await,
            "remote docker.io pushed/app"
        );
    }
}
