//! Resolving credentials at run time: a cache per credentials entry.
//!
//! A value is re-read after the remote's `credentials_ttl` (ECR tokens: at
//! three quarters of their lifetime), so a rotated secret takes effect
//! without a restart. A failed refresh keeps the last good value and logs a
//! warning naming the reference; a failed first load is an error. Nothing
//! from a failed load is cached.
//!
//! One async mutex per entry serialises loads: concurrent requests wait for
//! the one read instead of each calling the backend (Secrets Manager, ECR).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use futures_util::future::BoxFuture;
use sha2::{Digest as _, Sha256};
use tokio::sync::{Mutex, OnceCell};

use super::backends;
use super::{CredentialEntry, CredentialSource, Credentials, SecretError, SecretRef, SecretString};

/// After a failed refresh, try again no sooner than this.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);
/// A forced refresh (after a 401) is skipped when the value is this fresh.
const MIN_FORCED_INTERVAL: Duration = Duration::from_secs(2);

struct Loaded {
    creds: Credentials,
    loaded_at: Instant,
    refresh_at: Instant,
}

/// One credentials entry of one remote, with its cached value.
pub struct CachedCredentials {
    remote: String,
    index: usize,
    entry: CredentialEntry,
    /// The remote's hosts (to pick a Docker `auths` entry) and API host
    /// (to derive ECR region/account).
    hosts: Vec<String>,
    api_host: Option<String>,
    ttl: Duration,
    state: Mutex<Option<Loaded>>,
    secretsmanager: OnceCell<aws_sdk_secretsmanager::Client>,
}

impl std::fmt::Debug for CachedCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedCredentials")
            .field("remote", &self.remote)
            .field("index", &self.index)
            .field("repository", &self.entry.repository.as_str())
            .field("source", &self.describe())
            .finish()
    }
}

impl CachedCredentials {
    pub fn new(
        remote: &str,
        index: usize,
        entry: CredentialEntry,
        hosts: Vec<String>,
        api_host: Option<String>,
        ttl: Duration,
    ) -> CachedCredentials {
        CachedCredentials {
            remote: remote.to_string(),
            index,
            entry,
            hosts,
            api_host,
            ttl,
            state: Mutex::new(None),
            secretsmanager: OnceCell::new(),
        }
    }

    /// `remote corp credentials[1] (env:A,B)`: for log fields.
    pub fn reference(&self) -> String {
        format!(
            "remotes.{}.credentials[{}] ({})",
            self.remote,
            self.index,
            self.describe()
        )
    }

    /// The source as configured, e.g. `file:/run/secrets/x`.
    pub fn describe(&self) -> String {
        self.entry.source.describe()
    }

    /// `inline`, `env`, `file`, `aws-secretsmanager`, `ecr`.
    pub fn backend(&self) -> &'static str {
        match &self.entry.source {
            CredentialSource::Inline(_) => "inline",
            CredentialSource::Secret { reference, .. } => reference.backend(),
            CredentialSource::Ecr(_) => "ecr",
        }
    }

    pub fn repository(&self) -> &str {
        self.entry.repository.as_str()
    }

    pub fn index(&self) -> usize {
        self.index
    }

    /// The credentials, from the cache while fresh.
    pub async fn get(&self) -> Result<Credentials, SecretError> {
        if let CredentialSource::Inline(c) = &self.entry.source {
            return Ok(c.clone());
        }
        let mut st = self.state.lock().await;
        let now = Instant::now();
        if let Some(l) = st.as_ref() {
            if now < l.refresh_at {
                return Ok(l.creds.clone());
            }
        }
        match self.load().await {
            Ok((creds, expires)) => {
                let refresh_at = now + self.lifetime(expires);
                let changed = st.as_ref().is_some_and(|l| l.creds != creds);
                tracing::debug!(secret = %self.reference(), rotated = changed, kind = creds.kind(), "credentials loaded");
                *st = Some(Loaded {
                    creds: creds.clone(),
                    loaded_at: now,
                    refresh_at,
                });
                Ok(creds)
            }
            Err(e) => match st.as_mut() {
                Some(l) => {
                    tracing::warn!(secret = %self.reference(), error = %e, "refreshing credentials failed; keeping the last good value");
                    l.refresh_at = now + self.ttl.min(RETRY_AFTER_FAILURE);
                    Ok(l.creds.clone())
                }
                None => {
                    tracing::warn!(secret = %self.reference(), error = %e, "credentials could not be loaded");
                    Err(e)
                }
            },
        }
    }

    /// Load now, bypassing the cache (for `check-config`); a success is
    /// cached.
    pub async fn resolve_now(&self) -> Result<Credentials, SecretError> {
        let (creds, expires) = self.load().await?;
        let now = Instant::now();
        *self.state.lock().await = Some(Loaded {
            creds: creds.clone(),
            loaded_at: now,
            refresh_at: now + self.lifetime(expires),
        });
        Ok(creds)
    }

    /// The remote rejected these credentials: re-read on next use (unless
    /// just read), so a rotated secret or an expired ECR token is picked up
    /// at once.
    pub async fn invalidate(&self) {
        if matches!(self.entry.source, CredentialSource::Inline(_)) {
            return;
        }
        let mut st = self.state.lock().await;
        if let Some(l) = st.as_mut() {
            if l.loaded_at.elapsed() >= MIN_FORCED_INTERVAL {
                tracing::debug!(secret = %self.reference(), "credentials rejected upstream; re-reading on next use");
                l.refresh_at = Instant::now();
            }
        }
    }

    /// A cache key that differs between accounts (and after a rotation),
    /// so upstream tokens are never shared between them. A hash: the key
    /// may appear in debug output, the secret must not.
    pub fn account_key(&self, c: &Credentials) -> String {
        let mut h = Sha256::new();
        match c {
            Credentials::Basic { username, password } => {
                h.update(b"basic\0");
                h.update(username.as_bytes());
                h.update(b"\0");
                h.update(password.expose().as_bytes());
            }
            Credentials::Token(t) => {
                h.update(b"token\0");
                h.update(t.expose().as_bytes());
            }
            Credentials::Refresh { username, token } => {
                h.update(b"refresh\0");
                h.update(username.as_bytes());
                h.update(b"\0");
                h.update(token.expose().as_bytes());
            }
        }
        format!("{}#{}", self.index, hex::encode(&h.finalize()[..8]))
    }

    fn lifetime(&self, expires: Option<SystemTime>) -> Duration {
        match expires.and_then(|e| e.duration_since(SystemTime::now()).ok()) {
            // Refresh at three quarters of the token's life (ECR: ~9h of 12h).
            Some(left) if left > Duration::from_secs(120) => left.mul_f64(0.75),
            // Unknown, or already past (clock skew): the configured TTL; a
            // 401 forces a refresh anyway.
            _ => self.ttl,
        }
    }

    async fn load(&self) -> Result<(Credentials, Option<SystemTime>), SecretError> {
        match &self.entry.source {
            CredentialSource::Inline(c) => Ok((c.clone(), None)),
            CredentialSource::Secret {
                reference,
                username,
            } => {
                let c = self.resolve_ref(reference, username.is_some()).await?;
                Ok((apply_username(c, username.as_deref())?, None))
            }
            CredentialSource::Ecr(e) => {
                let keys = match &e.aws_credentials {
                    None => None,
                    Some(r) => match self.resolve_ref(r, false).await? {
                        Credentials::Basic { username, password } if !username.is_empty() => {
                            Some((username, password))
                        }
                        _ => {
                            return Err(SecretError::Malformed(format!(
                                "{}: expected aws_access_key_id + aws_secret_access_key",
                                r.describe()
                            )))
                        }
                    },
                };
                // Boxed as `dyn Future + Send`: the SDK's futures nest deep
                // enough to overflow the compiler's Send check in callers.
                let f: BoxFuture<'_, _> =
                    Box::pin(backends::ecr_token(e, self.api_host.as_deref(), keys));
                f.await
            }
        }
    }

    async fn resolve_ref(&self, r: &SecretRef, raw_ok: bool) -> Result<Credentials, SecretError> {
        if let Some(res) = backends::resolve_local(r, &self.hosts, raw_ok) {
            return res;
        }
        let SecretRef::AwsSecretsmanager {
            id,
            region,
            endpoint,
        } = r
        else {
            unreachable!("resolve_local handles every other backend")
        };
        let f: BoxFuture<'_, _> =
            Box::pin(self.secretsmanager_text(id, region.as_deref(), endpoint.as_deref()));
        let text = f.await?;
        backends::parse_document(&text, None, &self.hosts, raw_ok).map_err(|e| match e {
            SecretError::Malformed(m) => {
                SecretError::Malformed(format!("Secrets Manager secret {id}: {m}"))
            }
            e => e,
        })
    }

    async fn secretsmanager_text(
        &self,
        id: &str,
        region: Option<&str>,
        endpoint: Option<&str>,
    ) -> Result<String, SecretError> {
        let client = self
            .secretsmanager
            .get_or_init(|| async {
                let cfg = backends::aws_config(region, endpoint, None).await;
                aws_sdk_secretsmanager::Client::new(&cfg)
            })
            .await;
        backends::secretsmanager(client, id).await
    }
}

/// Read `reference` once as AWS keys (access key id, secret access key):
/// JSON keys `aws_access_key_id` + `aws_secret_access_key`, or env / file
/// `username` + `password`. `what` names the user in errors (a config key).
pub async fn aws_keys(
    what: &str,
    reference: &SecretRef,
) -> Result<(String, SecretString), SecretError> {
    let entry = CredentialEntry {
        repository: super::RepoPattern::any(),
        source: CredentialSource::Secret {
            reference: reference.clone(),
            username: None,
        },
    };
    let c = CachedCredentials::new(what, 0, entry, Vec::new(), None, Duration::from_secs(3600));
    match c.resolve_now().await? {
        Credentials::Basic { username, password }
            if !username.is_empty() && !password.is_empty() =>
        {
            Ok((username, password))
        }
        _ => Err(SecretError::Malformed(format!(
            "{}: expected aws_access_key_id + aws_secret_access_key (or username + password)",
            reference.describe()
        ))),
    }
}

/// The entry's `username` replaces (or supplies) the secret's username.
/// `_json_key_base64` base64-encodes a JSON key given in plain form.
fn apply_username(c: Credentials, username: Option<&str>) -> Result<Credentials, SecretError> {
    let (user, password) = match (c, username) {
        (Credentials::Token(t), None) => return Ok(Credentials::Token(t)),
        (Credentials::Refresh { username, token }, u) => {
            let username = u.map(str::to_string).unwrap_or(username);
            return Ok(Credentials::Refresh { username, token });
        }
        (Credentials::Basic { username, password }, None) => {
            if username.is_empty() {
                return Err(SecretError::Malformed(
                    "the secret has a password but no username; set `username` in the credentials entry".into(),
                ));
            }
            return Ok(Credentials::Basic { username, password });
        }
        (Credentials::Basic { password, .. }, Some(u)) => (u.to_string(), password),
        (Credentials::Token(t), Some(u)) => (u.to_string(), t),
    };
    let password = if user == "_json_key_base64" && password.expose().trim_start().starts_with('{')
    {
        SecretString::new(
            base64::engine::general_purpose::STANDARD.encode(password.expose().trim()),
        )
    } else {
        password
    };
    Ok(Credentials::Basic {
        username: user,
        password,
    })
}

/// All credentials entries of one remote; the first whose repository
/// pattern matches wins.
#[derive(Debug, Default)]
pub struct RemoteCredentials {
    entries: Vec<Arc<CachedCredentials>>,
}

/// What the resolver needs to know about the remote whose credentials it
/// serves (the config builds it; secrets never import the config).
#[derive(Debug, Clone)]
pub struct RemoteInfo<'a> {
    pub name: &'a str,
    /// Hosts the remote is known by (for Docker `config.json` lookups).
    pub hosts: &'a [String],
    /// The registry API's host.
    pub api_host: Option<&'a str>,
    pub entries: &'a [CredentialEntry],
    /// How long a resolved secret is used before it is read again.
    pub ttl: std::time::Duration,
}

impl RemoteCredentials {
    pub fn new(remote: RemoteInfo<'_>) -> RemoteCredentials {
        RemoteCredentials {
            entries: remote
                .entries
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    Arc::new(CachedCredentials::new(
                        remote.name,
                        i,
                        e.clone(),
                        remote.hosts.to_vec(),
                        remote.api_host.map(str::to_string),
                        remote.ttl,
                    ))
                })
                .collect(),
        }
    }

    /// The entry for `repo` (the upstream repository name), if any.
    pub fn select(&self, repo: &str) -> Option<&Arc<CachedCredentials>> {
        self.entries
            .iter()
            .find(|e| e.entry.repository.matches(repo))
    }

    pub fn entries(&self) -> &[Arc<CachedCredentials>] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(index: usize, ttl: Duration) -> CachedCredentials {
        let entry = CredentialEntry {
            repository: super::super::RepoPattern::any(),
            source: CredentialSource::Inline(Credentials::Token(SecretString::new("t"))),
        };
        CachedCredentials::new("r", index, entry, Vec::new(), None, ttl)
    }

    #[test]
    fn accounts_never_share_a_token_key() {
        let c = cached(0, Duration::from_secs(60));
        let a = Credentials::Basic {
            username: "a".into(),
            password: SecretString::new("p"),
        };
        let b = Credentials::Basic {
            username: "b".into(),
            password: SecretString::new("p"),
        };
        let a2 = Credentials::Basic {
            username: "a".into(),
            password: SecretString::new("rotated"),
        };
        assert_ne!(c.account_key(&a), c.account_key(&b));
        assert_ne!(c.account_key(&a), c.account_key(&a2));
        assert_eq!(c.account_key(&a), c.account_key(&a.clone()));
        // Same account in two entries: still separate.
        assert_ne!(
            c.account_key(&a),
            cached(1, Duration::from_secs(60)).account_key(&a)
        );
        assert!(!c.account_key(&a2).contains("rotated"));
    }

    #[test]
    fn refresh_before_expiry() {
        let c = cached(0, Duration::from_secs(300));
        let twelve_h = SystemTime::now() + Duration::from_secs(12 * 3600);
        let life = c.lifetime(Some(twelve_h));
        assert!(
            life > Duration::from_secs(8 * 3600) && life < Duration::from_secs(10 * 3600),
            "{life:?}"
        );
        // Past or unknown expiry (moto answers 2015): the configured TTL.
        assert_eq!(
            c.lifetime(Some(
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_420_070_400)
            )),
            Duration::from_secs(300)
        );
        assert_eq!(c.lifetime(None), Duration::from_secs(300));
    }

    #[test]
    fn username_override() {
        let c = apply_username(
            Credentials::Basic {
                username: String::new(),
                password: SecretString::new("{\"k\":1}"),
            },
            Some("_json_key_base64"),
        )
        .unwrap();
        match c {
            Credentials::Basic { username, password } => {
                assert_eq!(username, "_json_key_base64");
                assert_eq!(
                    password.expose(),
                    base64::engine::general_purpose::STANDARD.encode("{\"k\":1}")
                );
            }
            _ => panic!(),
        }
        assert!(apply_username(
            Credentials::Basic {
                username: String::new(),
                password: SecretString::new("p")
            },
            None
        )
        .is_err());
        let c = apply_username(Credentials::Token(SecretString::new("pat")), Some("bot")).unwrap();
        assert_eq!(
            c,
            Credentials::Basic {
                username: "bot".into(),
                password: SecretString::new("pat")
            }
        );
    }
}
