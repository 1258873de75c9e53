//! Configuration: raw TOML structs (unknown keys refused) turned into a
//! validated [`Config`] once at start-up. Every error names the key.
//!
//! Precedence: built-in defaults < config file < environment / flags.

mod auth;
mod limits;
mod notify;
mod raw;
mod remote;
mod retention;
mod scan;
mod server;
mod storage;
mod warnings;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use auth::{
    valid_project_name, valid_robot_name, Admin, AuthConfig, Perms, Project, RobotDef,
    ROBOT_NAME_RULE,
};
pub use limits::Limits;
pub use notify::{Endpoint as NotifyEndpoint, EventKind};
pub use raw::RawConfig;
pub use remote::{host_of, Remote, DOCKER_HUB_HOSTS};
pub use retention::{glob_match, RetentionRule, RetentionSchedule, Rule};
pub use scan::{active as active_scanner, Scanner};
pub use server::{Mode, Server, TlsFiles};
pub use storage::{S3Storage, StorageBackend, MAX_PART_SIZE, MIN_PART_SIZE};

/// A configuration problem, always naming the offending key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

impl ConfigError {
    pub(crate) fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.to_string(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Local files (the filesystem backend's store; spool files for `s3`).
    pub data_dir: PathBuf,
    /// `storage.backend`: where content is kept.
    pub storage: StorageBackend,
    pub upload_max_age: Duration,
    pub temp_max_age: Duration,
    pub cleanup_interval: Duration,
    pub max_manifest_size: usize,
    /// `storage.gc_grace`: blobs younger than this are never collected.
    pub gc_grace: Duration,
    /// `storage.gc_interval`: online GC period; `None` (the default): off.
    pub gc_interval: Option<Duration>,
    /// `storage.audit_retention`: audit entries older than this are removed
    /// (whole days, by the periodic cleanup).
    pub audit_retention: Duration,
    /// `cache.max_size`: cap on all remotes' cached content together.
    pub cache_max_size: Option<u64>,
    /// `cache.evict_interval`: how often caps are checked (also shortly
    /// after fetches).
    pub evict_interval: Duration,
    pub log_level: String,
    pub log_format: LogFormat,
    /// `[server]`: limits, shutdown grace, TLS.
    pub server: Server,
    /// Remote registries, in config order. Without `[[remotes]]`, Docker Hub.
    pub remotes: Vec<Arc<Remote>>,
    /// Accounts and the token service.
    pub auth: AuthConfig,
    /// Configured local namespaces.
    pub projects: Vec<Project>,
    /// `[limits]`: bounds per client and in total.
    pub limits: Limits,
    /// `[[notifications]]`: webhook endpoints for registry events.
    pub notifications: Vec<NotifyEndpoint>,
    /// `[retention]`: the schedule of projects' retention rules.
    pub retention: RetentionSchedule,
    /// `[[scanners]]`: vulnerability scanners (see [`scan`]).
    pub scanners: Vec<Scanner>,
}

/// Overrides from the command line or environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
}

impl Config {
    /// Load `path` (or the embedded default when `None`) and apply
    /// `overrides`.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let raw = match path {
            None => RawConfig::default(),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                RawConfig::parse(&text).map_err(|e| ConfigError::Parse {
                    path: p.to_path_buf(),
                    message: e.to_string(),
                })?
            }
        };
        raw.validate(overrides)
    }
}

/// Parse a duration such as `90s`, `10m`, `24h`.
pub(crate) fn duration(key: &str, v: &str) -> Result<Duration, ConfigError> {
    parse_duration(v).map_err(|e| ConfigError::invalid(key, e.to_string()))
}

/// The longest duration wharf accepts anywhere (config, API, CLI): 100
/// years. Anything longer is a typo or an attack, and would overflow the
/// arithmetic of clocks and expiries.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Why a text is not a duration wharf accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{0:?} is not a duration like \"10m\" or \"30d\" ({1})")]
    Malformed(String, String),
    #[error("{0:?} is longer than the limit of 100 years")]
    TooLong(String),
}

/// Parse a duration such as `90s`, `10m`, `30d`, at most [`MAX_DURATION`].
pub fn parse_duration(v: &str) -> Result<Duration, DurationError> {
    let d = humantime::parse_duration(v.trim())
        .map_err(|e| DurationError::Malformed(v.chars().take(64).collect(), e.to_string()))?;
    if d > MAX_DURATION {
        return Err(DurationError::TooLong(v.chars().take(64).collect()));
    }
    Ok(d)
}

/// Why a text is not a size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("{0:?} is not a size like \"4MiB\"")]
    NotASize(String),
    #[error("{0:?}: unknown size unit {1:?}")]
    UnknownUnit(String, String),
    #[error("{0:?} is too large")]
    TooLarge(String),
}

/// Parse a size such as `4MiB`, `512k`, `10GB` or a plain byte count.
pub fn parse_size(v: &str) -> Result<u64, SizeError> {
    let t = v.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| SizeError::NotASize(v.to_string()))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "ki" | "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mi" | "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gi" | "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "ti" | "tib" => 1 << 40,
        _ => return Err(SizeError::UnknownUnit(v.to_string(), unit.to_string())),
    };
    n.checked_mul(mult)
        .ok_or_else(|| SizeError::TooLarge(v.to_string()))
}

/// A byte count for people: `512 B`, `10 KiB`, `1.5 GiB` (one decimal
/// only when it is not zero).
pub fn format_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    let text = format!("{v:.1}");
    match text.strip_suffix(".0") {
        Some(whole) => format!("{whole} {}", UNITS[i]),
        None => format!("{text} {}", UNITS[i]),
    }
}

/// [`parse_size`] for config key `key`.
pub(crate) fn size(key: &str, v: &str) -> Result<u64, ConfigError> {
    parse_size(v).map_err(|e| ConfigError::invalid(key, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default() {
        let c = Config::load(None, &Overrides::default()).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:5000");
        assert_eq!(c.data_dir, PathBuf::from("./wharf-data"));
        assert_eq!(c.log_format, LogFormat::Text);
    }

    #[test]
    fn example_config_is_valid() {
        let text = include_str!("../../config.example.toml");
        let raw = RawConfig::parse(text).unwrap();
        raw.validate(&Overrides::default()).unwrap();
    }

    #[test]
    fn unknown_key_is_named() {
        let e = RawConfig::parse("[storage]\ndata_dri = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("data_dri"), "{e}");
        let e = RawConfig::parse("lisen = 1\n").unwrap_err().to_string();
        assert!(e.contains("lisen"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let raw = RawConfig::parse("[storage]\nupload_max_age = \"soon\"\n").unwrap();
        let e = raw.validate(&Overrides::default()).unwrap_err().to_string();
        assert!(e.contains("storage.upload_max_age"), "{e}");
        let raw = RawConfig::parse("[server]\nlisten = \"nowhere\"\n").unwrap();
        let e = raw.validate(&Overrides::default()).unwrap_err().to_string();
        assert!(e.contains("server.listen"), "{e}");
        let raw = RawConfig::parse("[log]\nformat = \"xml\"\n").unwrap();
        assert!(raw.validate(&Overrides::default()).is_err());
    }

    #[test]
    fn overrides_win() {
        let raw = RawConfig::parse("[server]\nlisten = \"127.0.0.1:1\"\n").unwrap();
        let o = Overrides {
            listen: Some("127.0.0.1:2".into()),
            data_dir: Some("/d".into()),
        };
        let c = raw.validate(&o).unwrap();
        assert_eq!(c.listen.port(), 2);
        assert_eq!(c.data_dir, PathBuf::from("/d"));
    }

    #[test]
    fn sizes() {
        assert_eq!(size("k", "4MiB").unwrap(), 4 << 20);
        assert_eq!(size("k", "100").unwrap(), 100);
        assert!(size("k", "4 parsecs").is_err());
    }
}
