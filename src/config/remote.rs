//! `[[remotes]]`: the registries wharf proxies and caches.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::{duration, ConfigError};
use crate::secrets::{CredentialEntry, RawCredentialEntry};

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
    /// One table (`[remotes.credentials]`) or a list of entries with
    /// repository patterns; parsed per entry so errors name the entry.
    credentials: Option<toml::Value>,
    /// How long a resolved secret is used before it is read again.
    credentials_ttl: Option<String>,
    ca_file: Option<PathBuf>,
    #[serde(default)]
    insecure_skip_verify: bool,
    connect_timeout: Option<String>,
    read_timeout: Option<String>,
    request_timeout: Option<String>,
    min_speed: Option<String>,
    min_speed_window: Option<String>,
    max_retries: Option<u32>,
    max_concurrent_fetches: Option<usize>,
    /// Cap on download bandwidth from this remote, e.g. "20MB/s".
    max_bandwidth: Option<String>,
    /// Cap on this remote's cached content, e.g. "50GiB".
    max_size: Option<String>,
    /// Hosts (glob patterns) blob downloads may be redirected to.
    #[serde(default)]
    redirect_hosts: Vec<String>,
    #[serde(default)]
    scan_on_first_pull: bool,
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
    /// Credentials entries in config order; the first whose repository
    /// pattern matches the upstream repository wins. Empty: anonymous.
    pub credentials: Vec<CredentialEntry>,
    /// How long a resolved secret is used before it is read again.
    pub credentials_ttl: Duration,
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// Whole-request bound (connect to last byte) for everything but blob
    /// downloads: manifests, tag lists, tokens.
    pub request_timeout: Duration,
    /// A blob download slower than this (bytes/s) on average over
    /// `min_speed_window` is abandoned (a remote that trickles).
    pub min_speed: u64,
    pub min_speed_window: Duration,
    pub max_retries: u32,
    /// Blob downloads from this remote at once (further misses queue).
    pub max_concurrent_fetches: usize,
    /// Bytes per second all blob downloads from this remote share (a
    /// metered uplink); `None`: unlimited.
    pub max_bandwidth: Option<u64>,
    /// Cap on this remote's cached content (least recently pulled images
    /// are evicted above it); `None`: unbounded.
    pub max_size: Option<u64>,
    /// Hosts (glob patterns, lowercase) that blob downloads may be
    /// redirected to; empty: any public host (see `upstream::target`).
    pub redirect_hosts: Vec<String>,
    /// Scan a cached image manifest the first time it is pulled (with the
    /// active `[[scanners]]` entry).
    pub scan_on_first_pull: bool,
}

impl Remote {
    /// Whether this is Docker Hub (single-segment names get `library/`).
    pub fn is_docker_hub(&self) -> bool {
        self.url.host_str() == Some("registry-1.docker.io")
    }

    /// What the secrets resolver needs to serve this remote's credentials.
    pub fn credential_info(&self) -> crate::secrets::RemoteInfo<'_> {
        crate::secrets::RemoteInfo {
            name: &self.name,
            hosts: &self.hosts,
            api_host: self.url.host_str(),
            entries: &self.credentials,
            ttl: self.credentials_ttl,
        }
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
            credentials: Vec::new(),
            credentials_ttl: DEFAULT_CREDENTIALS_TTL,
            ca_file: None,
            insecure_skip_verify: false,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            min_speed: 1024,
            min_speed_window: Duration::from_secs(60),
            max_retries: 2,
            max_concurrent_fetches: 16,
            max_bandwidth: None,
            max_size: None,
            redirect_hosts: Vec::new(),
            scan_on_first_pull: false,
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
                format!(
                    "{:?} must be one repository-name component, like \"docker.io\" or \"corp\"",
                    self.name
                ),
            ));
        }
        let url = reqwest::Url::parse(self.url.trim_end_matches('/'))
            .map_err(|e| ConfigError::invalid(&key("url"), format!("{:?}: {e}", self.url)))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(ConfigError::invalid(
                &key("url"),
                format!("{:?} must be an http(s) URL with a host", self.url),
            ));
        }
        let tag_ttl = duration(&key("tag_ttl"), self.tag_ttl.as_deref().unwrap_or("5m"))?;
        let negative_ttl = duration(
            &key("negative_ttl"),
            self.negative_ttl.as_deref().unwrap_or("30s"),
        )?;
        let connect_timeout = duration(
            &key("connect_timeout"),
            self.connect_timeout.as_deref().unwrap_or("5s"),
        )?;
        let read_timeout = duration(
            &key("read_timeout"),
            self.read_timeout.as_deref().unwrap_or("30s"),
        )?;
        if connect_timeout.is_zero() || read_timeout.is_zero() {
            return Err(ConfigError::invalid(
                &key("read_timeout"),
                "timeouts must be more than zero",
            ));
        }
        let request_timeout = duration(
            &key("request_timeout"),
            self.request_timeout.as_deref().unwrap_or("60s"),
        )?;
        if request_timeout.is_zero() {
            return Err(ConfigError::invalid(
                &key("request_timeout"),
                "must be more than zero",
            ));
        }
        let min_speed = match self.min_speed.as_deref() {
            None => 1024,
            Some(v) => super::size(&key("min_speed"), v.trim().trim_end_matches("/s"))?,
        };
        let min_speed_window = duration(
            &key("min_speed_window"),
            self.min_speed_window.as_deref().unwrap_or("60s"),
        )?;
        if min_speed_window.is_zero() {
            return Err(ConfigError::invalid(
                &key("min_speed_window"),
                "must be more than zero",
            ));
        }
        let credentials = credential_entries(self.credentials, &key("credentials"))?;
        let credentials_ttl = match self.credentials_ttl.as_deref() {
            Some(v) => duration(&key("credentials_ttl"), v)?,
            None => DEFAULT_CREDENTIALS_TTL,
        };
        if credentials_ttl.is_zero() {
            return Err(ConfigError::invalid(
                &key("credentials_ttl"),
                "must be more than zero",
            ));
        }
        if let Some(ca) = &self.ca_file {
            if !ca.is_file() {
                return Err(ConfigError::invalid(
                    &key("ca_file"),
                    format!("{} is not a readable file", ca.display()),
                ));
            }
        }
        // The host clients know the remote by, plus configured aliases.
        let mut hosts = vec![host_of(&url)];
        if url.host_str() == Some("registry-1.docker.io") {
            hosts.extend(DOCKER_HUB_HOSTS.iter().map(|s| s.to_string()));
        }
        for h in self.hosts {
            if h.is_empty() || h.contains('/') {
                return Err(ConfigError::invalid(
                    &key("hosts"),
                    format!("{h:?} must be a host or host:port"),
                ));
            }
            hosts.push(h.to_ascii_lowercase());
        }
        hosts.dedup();
        let max_concurrent_fetches = match self.max_concurrent_fetches {
            Some(0) => {
                return Err(ConfigError::invalid(
                    &key("max_concurrent_fetches"),
                    "must be at least 1",
                ))
            }
            n => n.unwrap_or(16),
        };
        let max_bandwidth = match self.max_bandwidth.as_deref() {
            None => None,
            Some(v) => Some(bandwidth(
                &key("max_bandwidth"),
                v,
                min_speed,
                max_concurrent_fetches,
            )?),
        };
        Ok(Arc::new(Remote {
            name: self.name,
            url,
            default: self.default,
            tag_ttl,
            negative_ttl,
            hosts,
            credentials,
            credentials_ttl,
            ca_file: self.ca_file,
            insecure_skip_verify: self.insecure_skip_verify,
            connect_timeout,
            read_timeout,
            request_timeout,
            min_speed,
            min_speed_window,
            max_retries: self.max_retries.unwrap_or(2).min(10),
            max_concurrent_fetches,
            max_bandwidth,
            max_size: self
                .max_size
                .as_deref()
                .map(|v| super::size(&key("max_size"), v))
                .transpose()?,
            redirect_hosts: redirect_hosts(self.redirect_hosts, &key("redirect_hosts"))?,
            scan_on_first_pull: self.scan_on_first_pull,
        }))
    }
}

/// `max_bandwidth` ("20MB/s"): high enough that `max_concurrent_fetches`
/// downloads sharing it each stay above `min_speed` (else they would be
/// abandoned as trickling).
fn bandwidth(key: &str, v: &str, min_speed: u64, fetches: usize) -> Result<u64, ConfigError> {
    let rate = super::size(key, v.trim().trim_end_matches("/s"))?;
    let floor = min_speed.saturating_mul(fetches as u64).max(1);
    if rate < floor {
        return Err(ConfigError::invalid(
            key,
            format!(
                "{v} is below min_speed × max_concurrent_fetches ({}/s): downloads sharing it would be abandoned as too slow; raise it, or lower min_speed or max_concurrent_fetches",
                super::format_size(floor)
            ),
        ));
    }
    Ok(rate)
}

/// `redirect_hosts`: host patterns (`*` wildcards), no schemes or paths.
fn redirect_hosts(v: Vec<String>, key: &str) -> Result<Vec<String>, ConfigError> {
    v.into_iter()
        .map(|h| {
            let h = h.trim().to_ascii_lowercase();
            let ok = !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.*:[]".contains(c));
            if ok {
                Ok(h)
            } else {
                Err(ConfigError::invalid(
                    key,
                    format!("{h:?} must be a host name pattern like \"*.s3.amazonaws.com\""),
                ))
            }
        })
        .collect()
}

/// How long a resolved secret is used before it is read again, by default.
pub const DEFAULT_CREDENTIALS_TTL: Duration = Duration::from_secs(300);

/// `credentials`: one table or a list of tables (each with an optional
/// `repository` pattern).
fn credential_entries(
    v: Option<toml::Value>,
    key: &str,
) -> Result<Vec<CredentialEntry>, ConfigError> {
    let parse = |v: toml::Value, key: &str| -> Result<CredentialEntry, ConfigError> {
        // Only the message: toml's Display may quote the config text.
        let raw: RawCredentialEntry = v.try_into().map_err(|e: toml::de::Error| {
            ConfigError::invalid(key, e.message().trim().to_string())
        })?;
        raw.validate().map_err(|m| ConfigError::invalid(key, m.0))
    };
    match v {
        None => Ok(Vec::new()),
        Some(t @ toml::Value::Table(_)) => Ok(vec![parse(t, key)?]),
        Some(toml::Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(j, t)| parse(t, &format!("{key}[{j}]")))
            .collect(),
        Some(_) => Err(ConfigError::invalid(
            key,
            "must be a table or a list of tables",
        )),
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
            return Err(ConfigError::invalid(
                &format!("remotes[{i}].name"),
                format!("{:?} is used twice", r.name),
            ));
        }
        out.push(r);
    }
    if out.iter().filter(|r| r.default).count() > 1 {
        return Err(ConfigError::invalid(
            "remotes",
            "at most one remote may have default = true",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod credential_tests {
    use super::super::{Overrides, RawConfig};
    use crate::secrets::CredentialSource;

    fn remotes(toml: &str) -> Result<Vec<std::sync::Arc<super::Remote>>, String> {
        let raw = RawConfig::parse(toml).map_err(|e| e.to_string())?;
        raw.validate(&Overrides::default())
            .map(|c| c.remotes)
            .map_err(|e| e.to_string())
    }

    /// Every commented-out `[[remotes]]` example in config.example.toml
    /// parses and validates once uncommented.
    #[test]
    fn commented_examples_are_valid() {
        let text = include_str!("../../config.example.toml");
        let mut blocks: Vec<String> = Vec::new();
        for line in text.lines() {
            if line == "# [[remotes]]" {
                blocks.push(String::new());
            }
            match (blocks.last_mut(), line.strip_prefix("# ")) {
                (Some(b), Some(l)) if !line.is_empty() => {
                    b.push_str(l);
                    b.push('\n');
                }
                (Some(_), _) if line.is_empty() => blocks.push(String::new()),
                _ => {}
            }
        }
        let blocks: Vec<String> = blocks
            .into_iter()
            .filter(|b| b.starts_with("[[remotes]]"))
            // ca_file must exist; the example's does not.
            .map(|b| {
                b.lines()
                    .filter(|l| !l.starts_with("ca_file"))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .collect();
        assert!(blocks.len() >= 4, "{blocks:#?}");
        for b in &blocks {
            let r = remotes(b).unwrap_or_else(|e| panic!("{e}\n{b}"));
            assert!(!r[0].credentials.is_empty(), "{b}");
        }
    }

    #[test]
    fn shapes_and_errors() {
        let r = remotes(
            "[[remotes]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\n[remotes.credentials]\nusername = \"u\"\npassword = \"p\"\n",
        )
        .unwrap();
        assert!(matches!(
            r[0].credentials[0].source,
            CredentialSource::Inline(_)
        ));
        assert_eq!(r[0].credentials_ttl, super::DEFAULT_CREDENTIALS_TTL);
        let r = remotes(
            "[[remotes]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\ncredentials_ttl = \"3s\"\ncredentials = [\n  { repository = \"x/*\", secret = { backend = \"env\", token = \"T\" } },\n  { secret = { backend = \"env\", username = \"U\", password = \"P\" } },\n]\n",
        )
        .unwrap();
        assert_eq!(r[0].credentials.len(), 2);
        assert_eq!(r[0].credentials[1].repository.as_str(), "*");
        assert_eq!(r[0].credentials_ttl.as_secs(), 3);
        let e = remotes("[[remotes]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\ncredentials = [{ secret = { backend = \"env\", pasword = \"P\" } }]\n").unwrap_err();
        assert!(
            e.contains("remotes[0].credentials[0]") && e.contains("pasword"),
            "{e}"
        );
        let e = remotes("[[remotes]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\ncredentials = { username = \"u\" }\n").unwrap_err();
        assert!(e.contains("remotes[0].credentials"), "{e}");
        let e = remotes("[[remotes]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\ncredentials = { secret = { backend = \"vault\" } }\n").unwrap_err();
        assert!(e.contains("vault"), "{e}");
    }
}
