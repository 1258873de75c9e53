//! `[limits]`: bounds on what one client (or all of them together) can make
//! wharf hold or compute.

use std::time::Duration;

use serde::Deserialize;

use super::{duration, ConfigError};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    max_upload_sessions: Option<usize>,
    max_upload_sessions_per_client: Option<usize>,
    max_token_scopes: Option<usize>,
    max_page_size: Option<usize>,
    login_concurrency: Option<usize>,
    login_queue_timeout: Option<String>,
    max_failed_logins: Option<u32>,
    failed_login_window: Option<String>,
}

/// Validated `[limits]`.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Upload sessions open at once, all clients together.
    pub max_upload_sessions: usize,
    /// Upload sessions one client (account, or address when anonymous) may
    /// have open.
    pub max_upload_sessions_per_client: usize,
    /// Scopes in one `/token` request.
    pub max_token_scopes: usize,
    /// Largest page of `tags/list`, `_catalog` and referrers (also the page
    /// size when a client asks for no `n`).
    pub max_page_size: usize,
    /// Password and token hashes (argon2, ~19 MiB each) verified at once.
    pub login_concurrency: usize,
    /// How long a login waits for a verification slot before `429`.
    pub login_queue_timeout: Duration,
    /// Failed logins per account or per client address within
    /// `failed_login_window` before further attempts get `429`.
    pub max_failed_logins: u32,
    pub failed_login_window: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_upload_sessions: 1000,
            max_upload_sessions_per_client: 50,
            max_token_scopes: 32,
            max_page_size: 10_000,
            login_concurrency: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .min(8),
            login_queue_timeout: Duration::from_secs(10),
            max_failed_logins: 10,
            failed_login_window: Duration::from_secs(60),
        }
    }
}

impl RawLimits {
    pub(super) fn validate(self) -> Result<Limits, ConfigError> {
        let d = Limits::default();
        let at_least_1 = |key: &str, v: Option<usize>, default: usize| match v {
            Some(0) => Err(ConfigError::invalid(key, "must be at least 1")),
            Some(n) => Ok(n),
            None => Ok(default),
        };
        let login_concurrency = match self.login_concurrency {
            Some(0) | None => d.login_concurrency,
            Some(n) => n,
        };
        let max_failed_logins = match self.max_failed_logins {
            Some(0) => {
                return Err(ConfigError::invalid(
                    "limits.max_failed_logins",
                    "must be at least 1",
                ))
            }
            v => v.unwrap_or(d.max_failed_logins),
        };
        Ok(Limits {
            max_upload_sessions: at_least_1(
                "limits.max_upload_sessions",
                self.max_upload_sessions,
                d.max_upload_sessions,
            )?,
            max_upload_sessions_per_client: at_least_1(
                "limits.max_upload_sessions_per_client",
                self.max_upload_sessions_per_client,
                d.max_upload_sessions_per_client,
            )?,
            max_token_scopes: at_least_1(
                "limits.max_token_scopes",
                self.max_token_scopes,
                d.max_token_scopes,
            )?,
            max_page_size: at_least_1("limits.max_page_size", self.max_page_size, d.max_page_size)?,
            login_concurrency,
            login_queue_timeout: match self.login_queue_timeout {
                Some(v) => duration("limits.login_queue_timeout", &v)?,
                None => d.login_queue_timeout,
            },
            max_failed_logins,
            failed_login_window: match self.failed_login_window {
                Some(v) => duration("limits.failed_login_window", &v)?,
                None => d.failed_login_window,
            },
        })
    }
}
