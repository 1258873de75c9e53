//! Secret values and where they come from.
//!
//! [`SecretString`] is the only type a password or token is ever held in:
//! its `Debug` and `Display` print `<redacted>`, it does not implement
//! `Serialize`, and the value is reachable only through
//! [`SecretString::expose`], which is called where the value goes on the
//! wire and nowhere else.
//!
//! A remote's credentials are a list of [`CredentialEntry`]s (first
//! repository pattern that matches wins). Each entry's [`CredentialSource`]
//! is inline, a [`SecretRef`] resolved by a backend (`env`, `file`,
//! `aws-secretsmanager`), or an ECR `GetAuthorizationToken` exchange.
//! [`resolver::CachedCredentials`] resolves a source, caches the value for
//! a configurable time, and keeps the last good value when a refresh fails.
//!
//! This module imports only `oci`/config-level types. It must never put a
//! secret value into a log line, an error, or `Debug` output: errors name
//! the secret *reference* (variable, path, secret id), never its content.

mod backends;
mod headers;
pub mod resolver;

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

pub use headers::{without_url, SecretHeaders};
pub use resolver::{aws_keys, CachedCredentials, RemoteCredentials, RemoteInfo};

/// A string that must never reach logs, errors, metrics or debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(s: impl Into<String>) -> SecretString {
        SecretString(s.into())
    }

    /// The secret value, for putting on the wire. Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> serde::Deserialize<'de> for SecretString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SecretString)
    }
}

/// Credentials wharf presents to a remote registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credentials {
    /// Username + password (or personal access token used as a password).
    Basic {
        username: String,
        password: SecretString,
    },
    /// A bearer token sent as-is (registries that accept static tokens).
    Token(SecretString),
    /// An OAuth2 refresh token (Docker's `identitytoken`): exchanged at the
    /// remote's token realm with `grant_type=refresh_token` for short-lived
    /// access tokens; never sent to the registry itself.
    Refresh {
        username: String,
        token: SecretString,
    },
}

impl Credentials {
    /// `basic` or `token`, for operator-facing output.
    pub fn kind(&self) -> &'static str {
        match self {
            Credentials::Basic { .. } => "basic",
            Credentials::Token(_) => "token",
            Credentials::Refresh { .. } => "oauth2 refresh token",
        }
    }
}

/// Why a secret could not be resolved. Messages name the reference (the
/// variable, path or secret id), never the value.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is not set (or not UTF-8)")]
    EnvMissing(String),
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error(
        "{path} is readable by group or others (mode {mode:03o}); wharf refuses it: \
         chmod 600 (or 400) it; for a Kubernetes secret volume set defaultMode: 0400"
    )]
    TooOpen { path: String, mode: u32 },
    #[error("malformed secret: {0}")]
    Malformed(String),
    #[error("AWS {service}: {reason}")]
    Aws {
        service: &'static str,
        reason: String,
    },
}

/// Where a secret lives. Deserialized from the `secret = { backend = ... }`
/// table of a credentials entry (see `config.example.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "backend", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SecretRef {
    /// Environment variables holding the values (variable *names* here).
    Env {
        username: Option<String>,
        password: Option<String>,
        token: Option<String>,
    },
    /// A JSON or TOML file (`username`/`password`, `token`, a Docker
    /// `config.json` with `auths`, or a GCP service-account key), or a
    /// directory in the shape of a Kubernetes secret mount (files
    /// `username` + `password`, `token`, or `.dockerconfigjson`).
    File {
        path: PathBuf,
        /// Which `auths` entry of a Docker config to use (default: the
        /// remote's host, or the only entry).
        registry: Option<String>,
    },
    /// An AWS Secrets Manager secret (name or ARN) holding JSON.
    AwsSecretsmanager {
        id: String,
        region: Option<String>,
        /// Endpoint override, e.g. a VPC endpoint or a local test server.
        endpoint: Option<String>,
    },
}

impl SecretRef {
    /// The reference as operators wrote it, for logs and `check-config`
    /// (never the value).
    pub fn describe(&self) -> String {
        match self {
            SecretRef::Env {
                username,
                password,
                token,
            } => {
                let vars: Vec<&str> = [username, password, token]
                    .iter()
                    .filter_map(|v| v.as_deref())
                    .collect();
                format!("env:{}", vars.join(","))
            }
            SecretRef::File { path, registry } => match registry {
                Some(r) => format!("file:{} (auths entry {r})", path.display()),
                None => format!("file:{}", path.display()),
            },
            SecretRef::AwsSecretsmanager { id, region, .. } => match region {
                Some(r) => format!("aws-secretsmanager:{id} ({r})"),
                None => format!("aws-secretsmanager:{id}"),
            },
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            SecretRef::Env { .. } => "env",
            SecretRef::File { .. } => "file",
            SecretRef::AwsSecretsmanager { .. } => "aws-secretsmanager",
        }
    }

    /// Checks that need no I/O beyond the file system: shape of the
    /// reference, and for `file`, that an existing file is not readable by
    /// group or others. `has_username` says whether the entry supplies the
    /// username itself.
    pub fn validate(&self, has_username: bool) -> Result<(), InvalidReference> {
        match self {
            SecretRef::Env { username, password, token } => match (username, password, token) {
                (_, Some(_), None) if username.is_some() || has_username => Ok(()),
                (_, Some(_), None) => Err("env: give `username` (a variable) with `password`, or set the entry's `username`".into()),
                (None, None, Some(_)) => Ok(()),
                _ => Err("env: give `password` (+ `username`) variables, or `token`".into()),
            },
            SecretRef::File { path, .. } => {
                if path.as_os_str().is_empty() {
                    return Err("file: `path` must not be empty".into());
                }
                backends::check_permissions(path).map_err(|e| InvalidReference(e.to_string()))
            }
            SecretRef::AwsSecretsmanager { id, endpoint, .. } => {
                if id.is_empty() {
                    return Err("aws-secretsmanager: `id` must not be empty".into());
                }
                if let Some(e) = endpoint {
                    reqwest::Url::parse(e).map_err(|err| format!("aws-secretsmanager: endpoint {e:?}: {err}"))?;
                }
                Ok(())
            }
        }
    }
}

/// Why a credentials entry or secret reference in the config is unusable
/// (the config layer prefixes the key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidReference(pub String);

impl From<&str> for InvalidReference {
    fn from(s: &str) -> InvalidReference {
        InvalidReference(s.to_string())
    }
}

impl From<String> for InvalidReference {
    fn from(s: String) -> InvalidReference {
        InvalidReference(s)
    }
}

/// Amazon ECR: exchange AWS credentials for a registry password with
/// `GetAuthorizationToken`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EcrSource {
    /// Default: from the remote's host (`<account>.dkr.ecr.<region>.amazonaws.com`),
    /// else the AWS default chain (`AWS_REGION`, profile).
    pub region: Option<String>,
    /// Endpoint override for the ECR API.
    pub endpoint: Option<String>,
    /// AWS access key id / secret access key from a secret (JSON keys
    /// `aws_access_key_id` + `aws_secret_access_key`, or `username` +
    /// `password`); default: the standard AWS credential chain.
    pub aws_credentials: Option<SecretRef>,
}

/// Where one credentials entry gets its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// Written in the config file.
    Inline(Credentials),
    /// Resolved by a backend. `username`, when set, overrides (or supplies)
    /// the username, e.g. `_json_key` for Google registries.
    Secret {
        reference: SecretRef,
        username: Option<String>,
    },
    /// Amazon ECR token exchange.
    Ecr(EcrSource),
}

impl CredentialSource {
    /// How operators see the source: `inline`, `env:A,B`, `file:/p`, ...
    pub fn describe(&self) -> String {
        match self {
            CredentialSource::Inline(_) => "inline".into(),
            CredentialSource::Secret { reference, .. } => reference.describe(),
            CredentialSource::Ecr(e) => {
                let mut s = String::from("ecr:GetAuthorizationToken");
                if let Some(r) = &e.region {
                    s.push_str(&format!(" ({r})"));
                }
                if let Some(a) = &e.aws_credentials {
                    s.push_str(&format!(" with AWS keys from {}", a.describe()));
                }
                s
            }
        }
    }
}

/// A repository pattern: `*` matches any run of characters (including
/// `/`); everything else matches itself. `*` alone matches every repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoPattern(String);

impl RepoPattern {
    pub fn new(p: impl Into<String>) -> RepoPattern {
        RepoPattern(p.into())
    }

    pub fn any() -> RepoPattern {
        RepoPattern("*".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, repo: &str) -> bool {
        glob(self.0.as_bytes(), repo.as_bytes())
    }
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    // Iterative wildcard match with backtracking to the last `*`.
    let (mut pi, mut si) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// One credentials entry of a remote: which repositories it covers and
/// where the value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialEntry {
    pub repository: RepoPattern,
    pub source: CredentialSource,
}

/// The TOML shape of one credentials entry (validated by
/// [`RawCredentialEntry::validate`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCredentialEntry {
    repository: Option<String>,
    username: Option<String>,
    password: Option<SecretString>,
    token: Option<SecretString>,
    secret: Option<SecretRef>,
    ecr: Option<EcrSource>,
}

impl RawCredentialEntry {
    /// Turn into a [`CredentialEntry`]; the error says what is wrong
    /// (the caller prefixes the config key).
    pub fn validate(self) -> Result<CredentialEntry, InvalidReference> {
        let repository = match self.repository {
            Some(r) if r.trim().is_empty() => {
                return Err("`repository` must not be empty (use \"*\" for all)".into())
            }
            Some(r) => RepoPattern::new(r.trim()),
            None => RepoPattern::any(),
        };
        let source = match (
            self.username,
            self.password,
            self.token,
            self.secret,
            self.ecr,
        ) {
            (Some(u), Some(p), None, None, None) => CredentialSource::Inline(Credentials::Basic {
                username: u,
                password: p,
            }),
            (None, None, Some(t), None, None) => CredentialSource::Inline(Credentials::Token(t)),
            (u, None, None, Some(s), None) => {
                s.validate(u.is_some())?;
                CredentialSource::Secret {
                    reference: s,
                    username: u,
                }
            }
            (None, None, None, None, Some(e)) => {
                if let Some(a) = &e.aws_credentials {
                    a.validate(false)
                        .map_err(|m| format!("ecr.aws_credentials: {m}"))?;
                }
                if let Some(ep) = &e.endpoint {
                    reqwest::Url::parse(ep).map_err(|err| format!("ecr.endpoint {ep:?}: {err}"))?;
                }
                CredentialSource::Ecr(e)
            }
            _ => {
                return Err(
                    "give exactly one of: username + password, token, secret = { backend = ... } \
                            (optionally with username), or ecr = { ... }"
                        .into(),
                )
            }
        };
        Ok(CredentialEntry { repository, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let s = SecretString::new("hunter2");
        assert_eq!(format!("{s}"), "<redacted>");
        assert_eq!(format!("{s:?}"), "<redacted>");
        let c = Credentials::Basic {
            username: "u".into(),
            password: s.clone(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
        let e = CredentialEntry {
            repository: RepoPattern::any(),
            source: CredentialSource::Inline(c),
        };
        assert!(!format!("{e:?}").contains("hunter2"));
    }

    #[test]
    fn patterns() {
        let p = RepoPattern::new("team-a/*");
        assert!(p.matches("team-a/app"));
        assert!(p.matches("team-a/x/y"));
        assert!(!p.matches("team-b/app"));
        assert!(!p.matches("team-a"));
        assert!(RepoPattern::any().matches("anything/at/all"));
        assert!(RepoPattern::new("*/base").matches("x/y/base"));
        assert!(!RepoPattern::new("*/base").matches("x/y/base2"));
        assert!(RepoPattern::new("lib").matches("lib"));
        assert!(RepoPattern::new("a*b*c").matches("axxbyyc"));
    }

    #[test]
    fn entry_shapes() {
        let e: RawCredentialEntry =
            toml::from_str("secret = { backend = \"env\", username = \"U\", password = \"P\" }")
                .unwrap();
        let e = e.validate().unwrap();
        assert_eq!(e.source.describe(), "env:U,P");
        let e: RawCredentialEntry = toml::from_str(
            "repository = \"a/*\"\nsecret = { backend = \"aws-secretsmanager\", id = \"x\", region = \"eu-west-1\" }",
        )
        .unwrap();
        assert!(e.validate().is_ok());
        let e: Result<RawCredentialEntry, _> =
            toml::from_str("secret = { backend = \"vault\", path = \"x\" }");
        assert!(e.is_err());
        let e: Result<RawCredentialEntry, _> =
            toml::from_str("secret = { backend = \"env\", pasword = \"x\" }");
        assert!(e.unwrap_err().to_string().contains("pasword"));
        let e: RawCredentialEntry = toml::from_str("username = \"u\"\ntoken = \"t\"").unwrap();
        assert!(e.validate().is_err());
        let e: RawCredentialEntry =
            toml::from_str("secret = { backend = \"env\", password = \"P\" }").unwrap();
        assert!(e.validate().is_err());
        let e: RawCredentialEntry = toml::from_str("ecr = { region = \"us-east-1\" }").unwrap();
        assert!(matches!(
            e.validate().unwrap().source,
            CredentialSource::Ecr(_)
        ));
    }
}
