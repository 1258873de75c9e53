//! The TOML shape of the config file. Every table refuses unknown keys.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{duration, size, Config, ConfigError, LogFormat, Overrides};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    log: RawLog,
    remotes: Option<Vec<super::remote::RawRemote>>,
    #[serde(default)]
    auth: super::auth::RawAuth,
    #[serde(default)]
    projects: Vec<super::auth::RawProject>,
    #[serde(default)]
    cache: RawCache,
    #[serde(default)]
    limits: super::limits::RawLimits,
    #[serde(default)]
    notifications: Vec<super::notify::RawEndpoint>,
    #[serde(default)]
    retention: super::retention::RawRetention,
    #[serde(default)]
    scanners: Vec<super::scan::RawScanner>,
}

/// `[cache]`: limits over all remotes' cached content together.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    max_size: Option<String>,
    evict_interval: Option<String>,
}

use super::server::RawServer;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    backend: Option<String>,
    s3: Option<super::storage::RawS3>,
    data_dir: Option<PathBuf>,
    upload_max_age: Option<String>,
    temp_max_age: Option<String>,
    cleanup_interval: Option<String>,
    max_manifest_size: Option<String>,
    gc_grace: Option<String>,
    gc_interval: Option<String>,
    audit_retention: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<String>,
    format: Option<String>,
}

impl RawConfig {
    /// Parse TOML; the error text names the offending key and line.
    pub fn parse(text: &str) -> Result<RawConfig, toml::de::Error> {
        toml::from_str(text)
    }

    pub fn validate(self, o: &Overrides) -> Result<Config, ConfigError> {
        let listen_s = o
            .listen
            .clone()
            .or(self.server.listen.clone())
            .unwrap_or_else(|| "127.0.0.1:5000".to_string());
        let listen = listen_s.parse().map_err(|_| {
            ConfigError::invalid(
                "server.listen",
                format!("{listen_s:?} is not an address like 127.0.0.1:5000"),
            )
        })?;
        let storage = self.storage.validate(o)?;
        let (cache_max_size, evict_interval) = self.cache.validate()?;
        let (log_level, log_format) = self.log.validate()?;
        let server = self.server.validate()?;
        let remotes = super::remote::validate_all(self.remotes)?;
        let auth = self.auth.validate()?;
        let projects = validate_projects(self.projects, &remotes)?;
        let limits = self.limits.validate()?;
        let notifications = super::notify::validate_all(self.notifications)?;
        let scanners = super::scan::validate_all(self.scanners)?;
        let retention = self.retention.validate()?;
        Ok(Config {
            retention,
            limits,
            notifications,
            scanners,
            auth,
            projects,
            server,
            remotes,
            listen,
            data_dir: storage.data_dir,
            storage: storage.backend,
            upload_max_age: storage.upload_max_age,
            temp_max_age: storage.temp_max_age,
            cleanup_interval: storage.cleanup_interval,
            max_manifest_size: storage.max_manifest_size,
            gc_grace: storage.gc_grace,
            gc_interval: storage.gc_interval,
            audit_retention: storage.audit_retention,
            cache_max_size,
            evict_interval,
            log_level,
            log_format,
        })
    }
}

/// Validated `[storage]` settings.
struct Storage {
    backend: super::StorageBackend,
    data_dir: PathBuf,
    upload_max_age: Duration,
    temp_max_age: Duration,
    cleanup_interval: Duration,
    max_manifest_size: usize,
    gc_grace: Duration,
    gc_interval: Option<Duration>,
    audit_retention: Duration,
}

fn dur(key: &str, v: Option<String>, default: &str) -> Result<Duration, ConfigError> {
    duration(key, v.as_deref().unwrap_or(default))
}

fn positive(key: &str, d: Duration) -> Result<Duration, ConfigError> {
    if d.is_zero() {
        return Err(ConfigError::invalid(key, "must be more than zero"));
    }
    Ok(d)
}

/// `v` (or `default`) as a duration that must be more than zero.
pub(super) fn positive_duration(
    key: &str,
    v: Option<String>,
    default: &str,
) -> Result<Duration, ConfigError> {
    positive(key, dur(key, v, default)?)
}

impl RawStorage {
    fn validate(self, o: &Overrides) -> Result<Storage, ConfigError> {
        let data_dir = o
            .data_dir
            .clone()
            .or(self.data_dir)
            .unwrap_or_else(|| PathBuf::from("./wharf-data"));
        if data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                "storage.data_dir",
                "must not be empty",
            ));
        }
        let max_manifest_size = size(
            "storage.max_manifest_size",
            self.max_manifest_size.as_deref().unwrap_or("4MiB"),
        )?;
        if max_manifest_size == 0 || max_manifest_size > (64 << 20) {
            return Err(ConfigError::invalid(
                "storage.max_manifest_size",
                "must be between 1 byte and 64MiB",
            ));
        }
        let gc_interval = match self.gc_interval.as_deref() {
            None | Some("off") | Some("never") => None,
            Some(v) => Some(duration("storage.gc_interval", v)?).filter(|d| !d.is_zero()),
        };
        Ok(Storage {
            backend: super::storage::validate(self.backend.as_deref(), self.s3)?,
            data_dir,
            upload_max_age: dur("storage.upload_max_age", self.upload_max_age, "24h")?,
            temp_max_age: dur("storage.temp_max_age", self.temp_max_age, "1h")?,
            cleanup_interval: positive(
                "storage.cleanup_interval",
                dur("storage.cleanup_interval", self.cleanup_interval, "10m")?,
            )?,
            max_manifest_size: max_manifest_size as usize,
            gc_grace: dur("storage.gc_grace", self.gc_grace, "1h")?,
            gc_interval,
            audit_retention: positive(
                "storage.audit_retention",
                dur("storage.audit_retention", self.audit_retention, "365d")?,
            )?,
        })
    }
}

impl RawCache {
    /// (`max_size`, `evict_interval`)
    fn validate(self) -> Result<(Option<u64>, Duration), ConfigError> {
        let max_size = self
            .max_size
            .as_deref()
            .map(|v| size("cache.max_size", v))
            .transpose()?;
        let every = positive(
            "cache.evict_interval",
            dur("cache.evict_interval", self.evict_interval, "1m")?,
        )?;
        Ok((max_size, every))
    }
}

impl RawLog {
    /// (level filter, format)
    fn validate(self) -> Result<(String, LogFormat), ConfigError> {
        let level = self.level.unwrap_or_else(|| "info".to_string());
        if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
            return Err(ConfigError::invalid(
                "log.level",
                format!("{level:?} is not a level or filter like \"info\" or \"wharf=debug\""),
            ));
        }
        let format = match self.format.as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::invalid(
                    "log.format",
                    format!("{other:?}: use \"text\" or \"json\""),
                ))
            }
        };
        Ok((level, format))
    }
}

/// `[[projects]]`: each valid, no name twice, none named like a remote.
fn validate_projects(
    raw: Vec<super::auth::RawProject>,
    remotes: &[std::sync::Arc<super::Remote>],
) -> Result<Vec<super::auth::Project>, ConfigError> {
    let mut projects: Vec<super::auth::Project> = Vec::new();
    for (i, p) in raw.into_iter().enumerate() {
        let p = p.validate(i)?;
        if projects.iter().any(|q| q.name == p.name) || remotes.iter().any(|r| r.name == p.name) {
            return Err(ConfigError::invalid(
                &format!("projects[{i}].name"),
                format!("{:?} is already a project or a remote name", p.name),
            ));
        }
        projects.push(p);
    }
    Ok(projects)
}
