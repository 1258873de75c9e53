//! Challenge-driven authentication to one remote.
//!
//! The first 401 tells us the scheme (`WWW-Authenticate`). For `Bearer`, a
//! token is fetched from the realm for exactly the scope needed
//! (`repository:<name>:pull`), with Basic credentials when configured, and
//! cached until shortly before it expires. For `Basic`, the credentials are
//! sent directly. Credentials go only to the remote's own origin and to the
//! realm it names.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use http::HeaderValue;
use serde::Deserialize;
use tokio::sync::RwLock;

use super::error::{excerpt, UpstreamError};
use crate::secrets::{Credentials, SecretString};

/// What the remote asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer { realm: String, service: Option<String> },
}

/// Parse a `WWW-Authenticate` header value.
pub fn parse_challenge(v: &str) -> Option<Challenge> {
    let v = v.trim();
    let (scheme, rest) = v.split_once(char::is_whitespace).unwrap_or((v, ""));
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => {
            let params = parse_params(rest);
            let realm = params.get("realm")?.clone();
            Some(Challenge::Bearer {
                realm,
                service: params.get("service").cloned(),
            })
        }
        _ => None,
    }
}

/// `k="v", k2=v2` with quoted values that may contain commas.
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            val.push(n)
                        }
                    }
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                val.push(*c);
                chars.next();
            }
        }
        out.insert(key.trim().to_ascii_lowercase(), val.trim().to_string());
    }
    out
}

#[derive(Deserialize)]
struct TokenReply {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// Auth state for one remote.
pub struct Authenticator {
    remote: String,
    creds: Option<Credentials>,
    challenge: RwLock<Option<Challenge>>,
    /// scope → (token, refresh-after). Entries also expire after an hour.
    tokens: moka::future::Cache<String, Arc<(SecretString, Instant)>>,
}

impl Authenticator {
    pub fn new(remote: String, creds: Option<Credentials>) -> Authenticator {
        Authenticator {
            remote,
            creds,
            challenge: RwLock::new(None),
            tokens: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(3600))
                .build(),
        }
    }

    fn basic_value(&self) -> Option<HeaderValue> {
        match &self.creds {
            Some(Credentials::Basic { username, password }) => {
                let raw = format!("{}:{}", username, password.expose());
                let enc = base64::engine::general_purpose::STANDARD.encode(raw);
                let mut v = HeaderValue::from_str(&format!("Basic {enc}")).ok()?;
                v.set_sensitive(true);
                Some(v)
            }
            _ => None,
        }
    }

    fn bearer_value(token: &SecretString) -> Option<HeaderValue> {
        let mut v = HeaderValue::from_str(&format!("Bearer {}", token.expose())).ok()?;
        v.set_sensitive(true);
        Some(v)
    }

    /// The `Authorization` value for a request needing `scope`, if any.
    pub async fn header_for(&self, http: &reqwest::Client, scope: &str) -> Result<Option<HeaderValue>, UpstreamError> {
        let ch = self.challenge.read().await.clone();
        match ch {
            None => Ok(match &self.creds {
                Some(Credentials::Token(t)) => Self::bearer_value(t),
                _ => None,
            }),
            Some(Challenge::Basic) => Ok(self.basic_value()),
            Some(Challenge::Bearer { realm, service }) => {
                if let Some(t) = self.tokens.get(scope).await {
                    if Instant::now() < t.1 {
                        return Ok(Self::bearer_value(&t.0));
                    }
                }
                let t = self.fetch_token(http, &realm, service.as_deref(), scope).await?;
                let v = Self::bearer_value(&t.0);
                self.tokens.insert(scope.to_string(), t).await;
                Ok(v)
            }
        }
    }

    /// Learn from a 401: remember the challenge and drop any cached token
    /// for `scope`, so the next `header_for` fetches a fresh one.
    pub async fn on_unauthorized(&self, www_authenticate: Option<&str>, scope: &str) {
        if let Some(c) = www_authenticate.and_then(parse_challenge) {
            *self.challenge.write().await = Some(c);
        }
        self.tokens.invalidate(scope).await;
    }

    async fn fetch_token(
        &self,
        http: &reqwest::Client,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<Arc<(SecretString, Instant)>, UpstreamError> {
        let mut url = reqwest::Url::parse(realm).map_err(|e| UpstreamError::Protocol {
            remote: self.remote.clone(),
            message: format!("token realm {realm:?} is not a URL: {e}"),
        })?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            q.append_pair("scope", scope);
        }
        let mut req = http.get(url);
        match &self.creds {
            Some(Credentials::Basic { .. }) => {
                if let Some(v) = self.basic_value() {
                    req = req.header(http::header::AUTHORIZATION, v);
                }
            }
            Some(Credentials::Token(t)) => {
                if let Some(v) = Self::bearer_value(t) {
                    req = req.header(http::header::AUTHORIZATION, v);
                }
            }
            None => {}
        }
        let resp = req.send().await.map_err(|e| UpstreamError::Unreachable {
            remote: self.remote.clone(),
            reason: format!("token service: {}", super::describe(&e)),
        })?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.unwrap_or_default();
        if status == 401 || status == 403 {
            return Err(UpstreamError::Unauthorized {
                remote: self.remote.clone(),
                status,
                body: excerpt(&body),
            });
        }
        if !(200..300).contains(&status) {
            return Err(UpstreamError::Status {
                remote: self.remote.clone(),
                status,
                body: excerpt(&body),
                retry_after: None,
            });
        }
        let reply: TokenReply = serde_json::from_slice(&body).map_err(|e| UpstreamError::Protocol {
            remote: self.remote.clone(),
            message: format!("token response is not JSON: {e}"),
        })?;
        let token = reply.token.or(reply.access_token).filter(|t| !t.is_empty()).ok_or_else(|| {
            UpstreamError::Protocol {
                remote: self.remote.clone(),
                message: "token response has no token".into(),
            }
        })?;
        // Refresh a little before expiry (tokens default to 60 s).
        let life = Duration::from_secs(reply.expires_in.unwrap_or(60).max(1));
        let refresh_after = Instant::now() + life.mul_f64(0.9).saturating_sub(Duration::from_secs(1));
        Ok(Arc::new((SecretString::new(token), refresh_after)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        assert_eq!(parse_challenge("Basic realm=\"x\""), Some(Challenge::Basic));
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into())
            })
        );
        assert_eq!(
            parse_challenge("bearer realm=http://127.0.0.1:1/token"),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:1/token".into(),
                service: None
            })
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge("Bearer service=\"x\""), None);
    }
}
