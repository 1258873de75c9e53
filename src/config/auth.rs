//! `[auth]` (accounts, token service) and `[[projects]]` (local namespaces).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::{duration, size, ConfigError};
use crate::secrets::SecretString;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    token_ttl: Option<String>,
    session_ttl: Option<String>,
    max_sessions: Option<usize>,
    remote_pull: Option<String>,
    realm: Option<String>,
    pull_token_window: Option<String>,
    #[serde(default)]
    admins: Vec<RawAdmin>,
    #[serde(default)]
    robots: Vec<RawRobot>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    username: String,
    password_hash: SecretString,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRobot {
    name: String,
    token_hash: SecretString,
    #[serde(default)]
    permissions: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProject {
    name: String,
    #[serde(default)]
    public: bool,
    quota: Option<String>,
    max_image_size: Option<String>,
    #[serde(default)]
    retention: Vec<super::RetentionRule>,
    #[serde(default)]
    scan_on_push: bool,
    prevent_severity: Option<String>,
}

/// A permission name that is not `pull`, `push`, `delete` or `*`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown permission {0:?} (use pull, push, delete, issue-tokens)")]
pub struct UnknownPermission(pub String);

/// What an account may do in a project. `push` implies `pull`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Perms {
    #[serde(default)]
    pub pull: bool,
    #[serde(default)]
    pub push: bool,
    #[serde(default)]
    pub delete: bool,
    /// May issue one-time pull tokens for the project's images (never
    /// implied by `*`).
    #[serde(default)]
    pub issue_tokens: bool,
}

impl Perms {
    /// Parse `["pull", "push", "delete"]`.
    pub fn parse(actions: &[String]) -> Result<Perms, UnknownPermission> {
        let mut p = Perms::default();
        for a in actions {
            match a.as_str() {
                "pull" => p.pull = true,
                "push" => {
                    p.push = true;
                    p.pull = true
                }
                "delete" => p.delete = true,
                "issue-tokens" => p.issue_tokens = true,
                "*" => {
                    p = Perms {
                        pull: true,
                        push: true,
                        delete: true,
                        ..p
                    }
                }
                other => return Err(UnknownPermission(other.to_string())),
            }
        }
        Ok(p)
    }

    pub fn actions(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.pull {
            v.push("pull");
        }
        if self.push {
            v.push("push");
        }
        if self.delete {
            v.push("delete");
        }
        if self.issue_tokens {
            v.push("issue-tokens");
        }
        v
    }
}

#[derive(Debug, Clone)]
pub struct Admin {
    pub username: String,
    pub password_hash: SecretString,
}

#[derive(Debug, Clone)]
pub struct RobotDef {
    pub name: String,
    pub token_hash: SecretString,
    pub permissions: BTreeMap<String, Perms>,
}

/// Validated `[auth]`.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub token_ttl: Duration,
    /// Lifetime of a dashboard session (signed cookie).
    pub session_ttl: Duration,
    /// Capacity of the per-process list of signed-out dashboard sessions
    /// (sessions themselves are stateless signed cookies).
    pub max_sessions: usize,
    /// Anonymous clients may pull through remote namespaces.
    pub remote_pull_anonymous: bool,
    /// Token realm URL; derived from the request's Host when unset.
    pub realm: Option<String>,
    /// How long a pull token's pull window stays open after its last
    /// request (see `auth::pull_tokens`).
    pub pull_token_window: Duration,
    pub admins: Vec<Admin>,
    pub robots: Vec<RobotDef>,
}

/// A local namespace.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Project {
    pub name: String,
    pub public: bool,
    pub quota: Option<u64>,
    pub max_image_size: Option<u64>,
    /// Retention rules (see [`super::retention`]); checked when set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retention: Vec<super::RetentionRule>,
    /// Scan every manifest pushed (with the active `[[scanners]]` entry).
    #[serde(default)]
    pub scan_on_push: bool,
    /// Refuse pulls of manifests whose report has a finding at or above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prevent_severity: Option<crate::scan::Severity>,
}

fn check_hash(key: &str, h: &SecretString) -> Result<(), ConfigError> {
    if !h.expose().starts_with("$argon2") {
        return Err(ConfigError::invalid(
            key,
            "must be an argon2 PHC string (make one with `wharf hash-password`)",
        ));
    }
    Ok(())
}

impl RawAuth {
    pub(super) fn validate(self) -> Result<AuthConfig, ConfigError> {
        let token_ttl = duration("auth.token_ttl", self.token_ttl.as_deref().unwrap_or("5m"))?;
        if token_ttl < Duration::from_secs(10) || token_ttl > Duration::from_secs(24 * 3600) {
            return Err(ConfigError::invalid(
                "auth.token_ttl",
                "must be between 10s and 24h",
            ));
        }
        let session_ttl = duration(
            "auth.session_ttl",
            self.session_ttl.as_deref().unwrap_or("8h"),
        )?;
        if session_ttl < Duration::from_secs(60) || session_ttl > Duration::from_secs(7 * 24 * 3600)
        {
            return Err(ConfigError::invalid(
                "auth.session_ttl",
                "must be between 1m and 7d",
            ));
        }
        let max_sessions = self.max_sessions.unwrap_or(10_000);
        if !(1..=1_000_000).contains(&max_sessions) {
            return Err(ConfigError::invalid(
                "auth.max_sessions",
                "must be between 1 and 1000000",
            ));
        }
        let remote_pull_anonymous = match self.remote_pull.as_deref().unwrap_or("anonymous") {
            "anonymous" => true,
            "authenticated" => false,
            other => {
                return Err(ConfigError::invalid(
                    "auth.remote_pull",
                    format!("{other:?}: use \"anonymous\" or \"authenticated\""),
                ))
            }
        };
        if let Some(r) = &self.realm {
            if reqwest::Url::parse(r).is_err() {
                return Err(ConfigError::invalid(
                    "auth.realm",
                    format!("{r:?} is not a URL"),
                ));
            }
        }
        let mut admins = Vec::new();
        for (i, a) in self.admins.into_iter().enumerate() {
            check_hash(&format!("auth.admins[{i}].password_hash"), &a.password_hash)?;
            if a.username.is_empty() || a.username.contains(':') || a.username.starts_with("robot$")
            {
                return Err(ConfigError::invalid(
                    &format!("auth.admins[{i}].username"),
                    "must be non-empty, without ':' and not start with robot$",
                ));
            }
            admins.push(Admin {
                username: a.username,
                password_hash: a.password_hash,
            });
        }
        let mut robots = Vec::new();
        for (i, r) in self.robots.into_iter().enumerate() {
            check_hash(&format!("auth.robots[{i}].token_hash"), &r.token_hash)?;
            if !valid_robot_name(&r.name) {
                return Err(ConfigError::invalid(
                    &format!("auth.robots[{i}].name"),
                    ROBOT_NAME_RULE,
                ));
            }
            let mut permissions = BTreeMap::new();
            for (project, actions) in r.permissions {
                if !valid_project_name(&project) {
                    return Err(ConfigError::invalid(
                        &format!("auth.robots[{i}].permissions"),
                        format!("{project:?} is not a project name"),
                    ));
                }
                let p = Perms::parse(&actions).map_err(|e| {
                    ConfigError::invalid(
                        &format!("auth.robots[{i}].permissions.{project}"),
                        e.to_string(),
                    )
                })?;
                permissions.insert(project, p);
            }
            robots.push(RobotDef {
                name: r.name,
                token_hash: r.token_hash,
                permissions,
            });
        }
        let pull_token_window = duration(
            "auth.pull_token_window",
            self.pull_token_window.as_deref().unwrap_or("10m"),
        )?;
        if pull_token_window < Duration::from_secs(1)
            || pull_token_window > Duration::from_secs(24 * 3600)
        {
            return Err(ConfigError::invalid(
                "auth.pull_token_window",
                "must be between 1s and 24h",
            ));
        }
        Ok(AuthConfig {
            pull_token_window,
            token_ttl,
            session_ttl,
            max_sessions,
            remote_pull_anonymous,
            realm: self.realm,
            admins,
            robots,
        })
    }
}

/// A project name: one repository-name component (`team`, `base-images`).
pub fn valid_project_name(n: &str) -> bool {
    !n.contains('/') && n.parse::<crate::oci::RepoName>().is_ok()
}

pub const ROBOT_NAME_RULE: &str = "robot names are 1-64 characters of a-z, 0-9, '-' and '_'";

pub fn valid_robot_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl RawProject {
    pub(super) fn validate(self, i: usize) -> Result<Project, ConfigError> {
        let key = |k: &str| format!("projects[{i}].{k}");
        if !valid_project_name(&self.name) {
            return Err(ConfigError::invalid(
                &key("name"),
                format!("{:?} must be one repository-name component", self.name),
            ));
        }
        let quota = self
            .quota
            .as_deref()
            .map(|q| size(&key("quota"), q))
            .transpose()?;
        let max_image_size = self
            .max_image_size
            .as_deref()
            .map(|q| size(&key("max_image_size"), q))
            .transpose()?;
        super::retention::validate_rules(&key("retention"), &self.retention)?;
        let prevent_severity = self
            .prevent_severity
            .as_deref()
            .map(|s| {
                crate::scan::Severity::parse(s).ok_or_else(|| {
                    ConfigError::invalid(
                        &key("prevent_severity"),
                        format!("{s:?}: use negligible, low, medium, high or critical"),
                    )
                })
            })
            .transpose()?;
        Ok(Project {
            name: self.name,
            public: self.public,
            quota,
            max_image_size,
            retention: self.retention,
            scan_on_push: self.scan_on_push,
            prevent_severity,
        })
    }
}
