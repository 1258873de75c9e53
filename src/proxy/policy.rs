//! Which registry serves a repository name: a local namespace or a remote.
//!
//! Rules, in order:
//! 1. `?ns=<host>` (containerd mirror mode) selects the remote whose hosts
//!    include `<host>`; an unconfigured host is refused (wharf never dials a
//!    host that is not in its config). The path is the remote's own name.
//! 2. A first segment naming a remote: `/v2/<remote>/<rest>` → that remote,
//!    repository `<rest>`.
//! 3. Anything else is a local name; for reads, a local name that does not
//!    exist falls back to the default remote (see [`Route`]).
//!
//! On Docker Hub a single-segment name gets `library/`.

use std::sync::Arc;

use crate::config::Remote;
use crate::oci::RepoName;

/// A remote repository and where its cached copy lives locally.
#[derive(Debug, Clone)]
pub struct RemoteTarget {
    pub remote: Arc<Remote>,
    /// The name on the remote, e.g. `library/nginx`.
    pub upstream_repo: RepoName,
    /// The local repository holding the cache, e.g. `docker.io/library/nginx`.
    pub cache_repo: RepoName,
}

/// The result of classifying a name.
#[derive(Debug, Clone)]
pub enum Route {
    /// A pull-through name: reads go to the remote, writes are refused.
    Remote(RemoteTarget),
    /// A name whose first segment is not a remote: local when the repository
    /// exists (or on writes), else the default remote for reads.
    LocalOrDefault(RepoName, Option<RemoteTarget>),
}

/// Why a name could not be routed.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("wharf does not mirror {0:?}: no configured remote has that host")]
    UnknownNamespace(String),
    #[error("{0} names remote {1} but no repository on it")]
    MissingPath(String, String),
    #[error("the cached name for {0} is longer than 255 characters")]
    NameTooLong(String),
    #[error("{0} names no configured remote, and wharf has no default remote to mirror it from: pull it as <remote>/{0}, or set default = true on one [[remotes]] entry")]
    NoDefaultRemote(String),
}

/// Routing table built from the config.
#[derive(Debug, Clone)]
pub struct Router {
    remotes: Vec<Arc<Remote>>,
}

impl Router {
    pub fn new(remotes: Vec<Arc<Remote>>) -> Router {
        Router { remotes }
    }

    pub fn remotes(&self) -> &[Arc<Remote>] {
        &self.remotes
    }

    pub fn default_remote(&self) -> Option<&Arc<Remote>> {
        self.remotes.iter().find(|r| r.default)
    }

    /// The remote named by a first path segment.
    pub fn by_name(&self, name: &str) -> Option<&Arc<Remote>> {
        self.remotes.iter().find(|r| r.name == name)
    }

    fn by_host(&self, host: &str) -> Option<&Arc<Remote>> {
        let host = host.trim().to_ascii_lowercase();
        // `docker.io:443` and `docker.io` are the same registry.
        let bare = host.strip_suffix(":443").unwrap_or(&host);
        self.remotes
            .iter()
            .find(|r| r.hosts.iter().any(|h| h == &host || h == bare))
    }

    fn target(remote: &Arc<Remote>, repo: &RepoName) -> Result<RemoteTarget, PolicyError> {
        let upstream_repo = if remote.is_docker_hub() && repo.rest().is_none() {
            format!("library/{repo}")
                .parse()
                .map_err(|_| PolicyError::NameTooLong(repo.to_string()))?
        } else {
            repo.clone()
        };
        let cache_repo = format!("{}/{}", remote.name, upstream_repo)
            .parse()
            .map_err(|_| PolicyError::NameTooLong(upstream_repo.to_string()))?;
        Ok(RemoteTarget {
            remote: remote.clone(),
            upstream_repo,
            cache_repo,
        })
    }

    /// Classify `name` (as in the request path) with containerd's `ns`.
    pub fn route(&self, name: &RepoName, ns: Option<&str>) -> Result<Route, PolicyError> {
        if let Some(ns) = ns.filter(|n| !n.is_empty()) {
            let remote = self
                .by_host(ns)
                .ok_or_else(|| PolicyError::UnknownNamespace(ns.chars().take(100).collect()))?;
            return Ok(Route::Remote(Self::target(remote, name)?));
        }
        if let Some(remote) = self.by_name(name.first()) {
            let rest = name
                .rest()
                .ok_or_else(|| PolicyError::MissingPath(name.to_string(), remote.name.clone()))?;
            return Ok(Route::Remote(Self::target(remote, &rest)?));
        }
        // A name too long to cache under the remote's prefix is simply local.
        let default = self
            .default_remote()
            .and_then(|r| Self::target(r, name).ok());
        Ok(Route::LocalOrDefault(name.clone(), default))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;

    fn router(toml: &str) -> Router {
        let cfg = RawConfig::parse(toml)
            .unwrap()
            .validate(&Default::default())
            .unwrap();
        Router::new(cfg.remotes)
    }

    fn n(s: &str) -> RepoName {
        s.parse().unwrap()
    }

    fn remote_of(r: Route) -> (String, String, String) {
        match r {
            Route::Remote(t) => (
                t.remote.name.clone(),
                t.upstream_repo.to_string(),
                t.cache_repo.to_string(),
            ),
            other => panic!("expected remote, got {other:?}"),
        }
    }

    const CFG: &str = r#"
[[remotes]]
name = "docker.io"
url = "https://registry-1.docker.io"
default = true
[[remotes]]
name = "corp"
url = "https://registry.example.com:6000"
[[remotes]]
name = "ghcr.io"
url = "https://ghcr.io"
"#;

    #[test]
    fn prefix_routes_to_remote() {
        let r = router(CFG);
        assert_eq!(
            remote_of(r.route(&n("corp/team/app"), None).unwrap()),
            ("corp".into(), "team/app".into(), "corp/team/app".into())
        );
        assert_eq!(
            remote_of(r.route(&n("ghcr.io/owner/img"), None).unwrap()),
            (
                "ghcr.io".into(),
                "owner/img".into(),
                "ghcr.io/owner/img".into()
            )
        );
        // Docker Hub via its prefix gets library/ for single names.
        assert_eq!(
            remote_of(r.route(&n("docker.io/nginx"), None).unwrap()),
            (
                "docker.io".into(),
                "library/nginx".into(),
                "docker.io/library/nginx".into()
            )
        );
        assert!(matches!(
            r.route(&n("corp"), None),
            Err(PolicyError::MissingPath(..))
        ));
    }

    #[test]
    fn default_and_library() {
        let r = router(CFG);
        match r.route(&n("nginx"), None).unwrap() {
            Route::LocalOrDefault(local, Some(t)) => {
                assert_eq!(local.as_str(), "nginx");
                assert_eq!(t.upstream_repo.as_str(), "library/nginx");
                assert_eq!(t.cache_repo.as_str(), "docker.io/library/nginx");
            }
            other => panic!("{other:?}"),
        }
        match r.route(&n("team/app"), None).unwrap() {
            Route::LocalOrDefault(_, Some(t)) => assert_eq!(t.upstream_repo.as_str(), "team/app"),
            other => panic!("{other:?}"),
        }
        // Without a default remote, unmatched names are purely local.
        let r = router("[[remotes]]\nname = \"corp\"\nurl = \"http://127.0.0.1:9\"\n");
        assert!(matches!(
            r.route(&n("team/app"), None).unwrap(),
            Route::LocalOrDefault(_, None)
        ));
    }

    #[test]
    fn ns_allow_list() {
        let r = router(CFG);
        for host in [
            "docker.io",
            "index.docker.io",
            "registry-1.docker.io",
            "DOCKER.IO",
            "docker.io:443",
        ] {
            assert_eq!(
                remote_of(r.route(&n("nginx"), Some(host)).unwrap()),
                (
                    "docker.io".into(),
                    "library/nginx".into(),
                    "docker.io/library/nginx".into()
                ),
                "{host}"
            );
        }
        assert_eq!(
            remote_of(
                r.route(&n("team/app"), Some("registry.example.com:6000"))
                    .unwrap()
            )
            .0,
            "corp"
        );
        assert!(matches!(
            r.route(&n("team/app"), Some("registry.example.com")),
            Err(PolicyError::UnknownNamespace(_))
        ));
        assert!(matches!(
            r.route(&n("x/y"), Some("evil.example")),
            Err(PolicyError::UnknownNamespace(_))
        ));
        // ns wins over a prefix-looking name.
        assert_eq!(
            remote_of(r.route(&n("corp/x"), Some("ghcr.io")).unwrap()),
            ("ghcr.io".into(), "corp/x".into(), "ghcr.io/corp/x".into())
        );
    }

    #[test]
    fn embedded_default_is_docker_hub() {
        let cfg = crate::config::Config::load(None, &Default::default()).unwrap();
        let r = Router::new(cfg.remotes);
        let d = r.default_remote().unwrap();
        assert_eq!(d.name, "docker.io");
        assert_eq!(d.url.as_str(), "https://registry-1.docker.io/");
        assert!(d.credentials.is_empty());
    }
}
