//! `[[remotes]]`: the registries wharf proxies and caches.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::{duration, ConfigError};
use crate::secrets::{Credentials, SecretString};

/// Docker Hub's API host, and the names it is known by.
pub const DOCKER_HUB_URL: &str = "https://registry-1.docker.io";
pub const DOCKER_HUB_HOSTS: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRemote {
    name: String,
    url: String,
    #[serde(default)]
    default: bool,
    tag_ttl: Option<String>,
    negative_ttl: Option<String>,
    #[serde(default)]
    hosts: Vec<String>,
    credentials: Option<RawCredentials>,
    ca_file: Option<PathBuf>,
    #[serde(default)]
    insecure_skip_verify: bool,
    connect_timeout: Option<String>,
    read_timeout: Option<String>,
    max_retries: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredentials {
    username: Option<String>,
    password: Option<SecretString>,
    token: Option<SecretString>,
}

/// A validated remote registry.
#[derive(Debug, Clone)]
pub struct Remote {
    /// The first path segment clients use, e.g. `docker.io`.
    pub name: String,
    /// Base URL of the registry API (no trailing slash).
    pub url: reqwest::Url,
    /// Serves names whose first segment matches no remote or local namespace.
    pub default: bool,
    pub tag_ttl: Duration,
    pub negative_ttl: Duration,
    /// Hosts (`host` or `host:port`) that select this remote in containerd's
    /// `?ns=` parameter.
    pub hosts: Vec<String>,
    pub credentials: Option<Credentials>,
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub max_retries: u32,
}

impl Remote {
    /// Whether this is Docker Hub (single-segment names get `library/`).
    pub fn is_docker_hub(&self) -> bool {
        self.url.host_str() == Some("registry-1.docker.io")
    }

    /// The embedded default: anonymous Docker Hub.
    pub fn docker_hub() -> Remote {
        Remote {
            name: "docker.io".into(),
            url: reqwest::Url::parse(DOCKER_HUB_URL).expect("static URL"),
            default: true,
            tag_ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(30),
            hosts: DOCKER_HUB_HOSTS.iter().map(|s| s.to_string()).collect(),
            credentials: None,
            ca_file: None,
            insecure_skip_verify: false,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(30),
            max_retries: 2,
        }
    }
}

fn valid_remote_name(n: &str) -> bool {
    n.parse::<crate::oci::RepoName>().is_ok() && !n.contains('/')
}

impl RawRemote {
    pub(super) fn validate(self, i: usize) -> Result<Arc<Remote>, ConfigError> {
        let key = |k: &str| format!("remotes[{i}].{k}");
        if !valid_remote_name(&self.name) {
            return Err(ConfigError::invalid(
                &key("name"),
                format!("{:?} must be one repository-name component, like \"docker.io\" or \"corp\"", self.name),
            ));
        }
        let url = reqwest::Url::parse(self.url.trim_end_matches('/'))
            .map_err(|e| ConfigError::invalid(&key("url"), format!("{:?}: {e}", self.url)))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(ConfigError::invalid(&key("url"), format!("{:?} must be an http(s) URL with a host", self.url)));
        }
        let tag_ttl = duration(&key("tag_ttl"), self.tag_ttl.as_deref().unwrap_or("5m"))?;
        let negative_ttl = duration(&key("negative_ttl"), self.negative_ttl.as_deref().unwrap_or("30s"))?;
        let connect_timeout = duration(&key("connect_timeout"), self.connect_timeout.as_deref().unwrap_or("5s"))?;
        let read_timeout = duration(&key("read_timeout"), self.read_timeout.as_deref().unwrap_or("30s"))?;
        if connect_timeout.is_zero() || read_timeout.is_zero() {
            return Err(ConfigError::invalid(&key("read_timeout"), "timeouts must be more than zero"));
        }
        let credentials = match self.credentials {
            None => None,
            Some(RawCredentials { username: Some(u), password: Some(p), token: None }) => {
                Some(Credentials::Basic { username: u, password: p })
            }
            Some(RawCredentials { username: None, password: None, token: Some(t) }) => Some(Credentials::Token(t)),
            Some(_) => {
                return Err(ConfigError::invalid(
                    &key("credentials"),
                    "give either username + password, or token",
                ))
            }
        };
        if let Some(ca) = &self.ca_file {
            if !ca.is_file() {
                return Err(ConfigError::invalid(&key("ca_file"), format!("{} is not a readable file", ca.display())));
            }
        }
        // The host clients know the remote by, plus configured aliases.
        let mut hosts = vec![host_of(&url)];
        if url.host_str() == Some("registry-1.docker.io") {
            hosts.extend(DOCKER_HUB_HOSTS.iter().map(|s| s.to_string()));
        }
        for h in self.hosts {
            if h.is_empty() || h.contains('/') {
                return Err(ConfigError::invalid(&key("hosts"), format!("{h:?} must be a host or host:port")));
            }
            hosts.push(h.to_ascii_lowercase());
        }
        hosts.dedup();
        Ok(Arc::new(Remote {
            name: self.name,
            url,
            default: self.default,
            tag_ttl,
            negative_ttl,
            hosts,
            credentials,
            ca_file: self.ca_file,
            insecure_skip_verify: self.insecure_skip_verify,
            connect_timeout,
            read_timeout,
            max_retries: self.max_retries.unwrap_or(2).min(10),
        }))
    }
}

/// `host` or `host:port` (port only when not the scheme's default).
pub fn host_of(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("").to_ascii_lowercase();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    }
}

/// Validate the list as a whole: unique names, at most one default.
pub(super) fn validate_all(raw: Option<Vec<RawRemote>>) -> Result<Vec<Arc<Remote>>, ConfigError> {
    let Some(raw) = raw else {
        // No [[remotes]] at all: the embedded default, Docker Hub.
        return Ok(vec![Arc::new(Remote::docker_hub())]);
    };
    let mut out: Vec<Arc<Remote>> = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let r = r.validate(i)?;
        if out.iter().any(|o| o.name == r.name) {
            return Err(ConfigError::invalid(&format!("remotes[{i}].name"), format!("{:?} is used twice", r.name)));
        }
        out.push(r);
    }
    if out.iter().filter(|r| r.default).count() > 1 {
        return Err(ConfigError::invalid("remotes", "at most one remote may have default = true"));
    }
    Ok(out)
}
