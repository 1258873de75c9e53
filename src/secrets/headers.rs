//! Request headers whose values come from secrets (`secret_headers` of
//! `[[notifications]]` and `[[scanners]]`): a token is sent as written, a
//! username/password as `Basic`. Values are resolved through the cache of
//! [`CachedCredentials`] and marked sensitive; they never reach a log.

use std::time::Duration;

use super::{
    CachedCredentials, CredentialEntry, CredentialSource, Credentials, RepoPattern, SecretRef,
};

/// How long a resolved secret header is used before it is read again.
const SECRET_TTL: Duration = Duration::from_secs(300);

/// Headers resolved from secrets, in config order.
pub struct SecretHeaders(Vec<(String, CachedCredentials)>);

impl SecretHeaders {
    /// `owner` names the config entry in errors (`notifications hooks`).
    pub fn new(owner: &str, refs: &[(String, SecretRef)]) -> SecretHeaders {
        let list = refs
            .iter()
            .enumerate()
            .map(|(i, (h, r))| {
                let entry = CredentialEntry {
                    repository: RepoPattern::any(),
                    source: CredentialSource::Secret {
                        reference: r.clone(),
                        username: None,
                    },
                };
                let owner = format!("{owner} header {h}");
                let c = CachedCredentials::new(&owner, i, entry, Vec::new(), None, SECRET_TTL);
                (h.clone(), c)
            })
            .collect();
        SecretHeaders(list)
    }

    /// `req` with every header set; the error names the header, never a
    /// value.
    pub async fn apply(
        &self,
        mut req: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, String> {
        for (h, c) in &self.0 {
            let creds = c
                .get()
                .await
                .map_err(|e| format!("secret header {h}: {e}"))?;
            let mut v = http::HeaderValue::from_str(&header_value(&creds))
                .map_err(|_| format!("secret header {h}: not a valid header value"))?;
            v.set_sensitive(true);
            req = req.header(h.as_str(), v);
        }
        Ok(req)
    }
}

/// A header value for `c`: a token as is, a username/password as `Basic`.
fn header_value(c: &Credentials) -> String {
    match c {
        Credentials::Token(t) => t.expose().to_string(),
        Credentials::Basic { username, password }
        | Credentials::Refresh {
            username,
            token: password,
        } => {
            use base64::Engine as _;
            let raw = format!("{username}:{}", password.expose());
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        }
    }
}

/// A reqwest error's text without the URL (it may carry a token in its
/// query); the log line names the endpoint's URL separately.
pub fn without_url(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut src = std::error::Error::source(&e);
    let mut detail = String::new();
    while let Some(s) = src {
        detail = s.to_string();
        src = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}
