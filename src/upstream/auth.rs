//! Challenge-driven authentication to one remote.
//!
//! The first 401 tells us the scheme (`WWW-Authenticate`). For `Bearer`, a
//! token is fetched from the realm for exactly the scope needed
//! (`repository:<name>:pull`), with Basic credentials when configured, and
//! cached until shortly before it expires. For `Basic`, the credentials are
//! sent directly. Credentials go only to the remote's own origin and to the
//! realm it names.
//!
//! Which credentials: the remote's first credentials entry whose repository
//! pattern matches the upstream repository ([`RemoteCredentials`]); values
//! come from the secrets resolver, which caches and re-reads them. Tokens
//! are cached per account *and* scope, so two accounts never share one. A
//! rejection (401 from the token service or the registry) makes the
//! resolver re-read the secret once, which is also how an ECR token is
//! refreshed on a 401. Logs name the secret reference, never a value.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use http::HeaderValue;
use serde::Deserialize;
use tokio::sync::RwLock;

use super::error::UpstreamError;
use crate::config::Remote;
use crate::secrets::{CachedCredentials, Credentials, RemoteCredentials, SecretString};

/// What the remote asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
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

/// The credentials chosen for one request.
struct Chosen<'a> {
    entry: &'a Arc<CachedCredentials>,
    creds: Credentials,
}

/// Auth state for one remote.
pub struct Authenticator {
    remote: String,
    /// The remote as configured (for the realm rules of `target`).
    config: Arc<Remote>,
    creds: RemoteCredentials,
    challenge: RwLock<Option<Challenge>>,
    /// `account|scope` → (token, refresh-after). Entries also expire after
    /// an hour.
    tokens: moka::future::Cache<String, Arc<(SecretString, Instant)>>,
}

impl Authenticator {
    pub fn new(remote: &Arc<Remote>) -> Authenticator {
        Authenticator {
            remote: remote.name.clone(),
            config: remote.clone(),
            creds: RemoteCredentials::new(remote.credential_info()),
            challenge: RwLock::new(None),
            tokens: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(3600))
                .build(),
        }
    }

    fn basic_value(creds: &Credentials) -> Option<HeaderValue> {
        match creds {
            Credentials::Basic { username, password } => {
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

    /// Resolve the credentials for `repo`: `None` when no entry matches
    /// (anonymous). A secret that cannot be loaded is a
    /// `CredentialsUnavailable` error naming the remote (the log names the
    /// secret reference).
    async fn choose(&self, repo: &str) -> Result<Option<Chosen<'_>>, UpstreamError> {
        let Some(entry) = self.creds.select(repo) else {
            return Ok(None);
        };
        match entry.get().await {
            Ok(creds) => Ok(Some(Chosen { entry, creds })),
            Err(e) => {
                tracing::warn!(remote = %self.remote, secret = %entry.reference(), error = %e, "no credentials for the upstream request");
                Err(UpstreamError::CredentialsUnavailable {
                    remote: self.remote.clone(),
                    secret: entry.reference(),
                })
            }
        }
    }

    /// The `Authorization` value for a request for `repo` needing `scope`,
    /// if any.
    pub async fn header_for(
        &self,
        http: &reqwest::Client,
        repo: &str,
        scope: &str,
    ) -> Result<Option<HeaderValue>, UpstreamError> {
        let chosen = self.choose(repo).await?;
        let ch = self.challenge.read().await.clone();
        match ch {
            None => Ok(match chosen.as_ref().map(|c| &c.creds) {
                Some(Credentials::Token(t)) => Self::bearer_value(t),
                _ => None,
            }),
            Some(Challenge::Basic) => Ok(chosen.as_ref().and_then(|c| Self::basic_value(&c.creds))),
            Some(Challenge::Bearer { realm, service }) => {
                let key = self.token_key(chosen.as_ref(), scope);
                if let Some(t) = self.tokens.get(&key).await {
                    if Instant::now() < t.1 {
                        return Ok(Self::bearer_value(&t.0));
                    }
                }
                let t = match self
                    .fetch_token(http, &realm, service.as_deref(), scope, chosen.as_ref())
                    .await
                {
                    Err(UpstreamError::Unauthorized { .. }) if chosen.is_some() => {
                        // Rejected by the token service: re-read the secret
                        // once (it may have been rotated) and try again.
                        let entry = chosen.as_ref().map(|c| c.entry.clone());
                        if let Some(e) = &entry {
                            e.invalidate().await;
                        }
                        let again = self.choose(repo).await?;
                        let key2 = self.token_key(again.as_ref(), scope);
                        let r = self
                            .fetch_token(http, &realm, service.as_deref(), scope, again.as_ref())
                            .await;
                        if let (Err(UpstreamError::Unauthorized { status, .. }), Some(c)) =
                            (&r, &again)
                        {
                            tracing::warn!(remote = %self.remote, secret = %c.entry.reference(), status, "the token service rejected wharf's credentials");
                        }
                        let t = r?;
                        let v = Self::bearer_value(&t.0);
                        self.tokens.insert(key2, t).await;
                        return Ok(v);
                    }
                    r => r?,
                };
                let v = Self::bearer_value(&t.0);
                self.tokens.insert(key, t).await;
                Ok(v)
            }
        }
    }

    fn token_key(&self, chosen: Option<&Chosen<'_>>, scope: &str) -> String {
        match chosen {
            Some(c) => format!("{}|{scope}", c.entry.account_key(&c.creds)),
            None => format!("anonymous|{scope}"),
        }
    }

    /// Learn from a 401: remember the challenge and drop any cached token
    /// for `scope`, so the next `header_for` fetches a fresh one. When
    /// credentials were sent (`sent_auth`), they are re-read too.
    /// Only responses from the remote's own origin may teach a challenge
    /// (the caller makes sure); a changed realm is logged.
    pub async fn on_unauthorized(
        &self,
        www_authenticate: Option<&str>,
        repo: &str,
        scope: &str,
        sent_auth: bool,
    ) {
        if let Some(c) = www_authenticate.and_then(parse_challenge) {
            let mut known = self.challenge.write().await;
            if let (
                Some(Challenge::Bearer { realm: old, .. }),
                Challenge::Bearer { realm: new, .. },
            ) = (&*known, &c)
            {
                if old != new {
                    tracing::warn!(remote = %self.remote, old_realm = %old, new_realm = %new, "the remote changed its token realm");
                }
            }
            *known = Some(c);
        }
        if let (true, Some(e)) = (sent_auth, self.creds.select(repo)) {
            if let Ok(creds) = e.get().await {
                self.tokens
                    .invalidate(&format!("{}|{scope}", e.account_key(&creds)))
                    .await;
            }
            e.invalidate().await;
        }
        self.tokens.invalidate(&format!("anonymous|{scope}")).await;
    }

    /// The remote refused a request made with wharf's credentials (the
    /// final 401/403): say which secret reference was used.
    /// The remote answered 401/403 to wharf's request for `repo`: log it
    /// and return the reference of the credentials entry used, if any.
    pub fn rejected(&self, repo: &str, status: u16) -> Option<String> {
        match self.creds.select(repo) {
            Some(e) => {
                tracing::warn!(remote = %self.remote, repository = repo, secret = %e.reference(), status, "the remote rejected wharf's credentials");
                Some(e.reference())
            }
            // Anonymous: Docker Hub answers 401 for repositories that do not
            // exist, so this is no operator problem by itself.
            None => {
                tracing::debug!(remote = %self.remote, repository = repo, status, "the remote refused an anonymous request (no credentials entry matches)");
                None
            }
        }
    }

    async fn fetch_token(
        &self,
        http: &reqwest::Client,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        chosen: Option<&Chosen<'_>>,
    ) -> Result<Arc<(SecretString, Instant)>, UpstreamError> {
        let refused = |reason: String| UpstreamError::Refused {
            remote: self.remote.clone(),
            reason,
        };
        let mut url = reqwest::Url::parse(realm)
            .map_err(|e| refused(format!("token realm {realm:?} is not a URL: {e}")))?;
        super::target::check_realm(&self.config, &url, chosen.is_some()).map_err(|reason| {
            tracing::warn!(remote = %self.remote, %reason, "token realm refused");
            refused(reason)
        })?;
        let req = match chosen.map(|c| &c.creds) {
            Some(Credentials::Refresh { token, .. }) => {
                Self::refresh_request(http, url, service, scope, token)
            }
            creds => {
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    q.append_pair("scope", scope);
                }
                let mut req = http.get(url);
                if let Some(v) = creds.and_then(Self::credentials_value) {
                    req = req.header(http::header::AUTHORIZATION, v);
                }
                req
            }
        };
        let resp = req
            .timeout(self.config.request_timeout)
            .send()
            .await
            .map_err(|e| UpstreamError::Unreachable {
                remote: self.remote.clone(),
                reason: format!("token service: {}", super::describe(&e)),
            })?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            // The realm's body is not passed on: it may be any service's.
            let body = super::body::excerpt_of(resp).await;
            tracing::debug!(remote = %self.remote, status, body = %body, "token service refused");
            return Err(match status {
                401 | 403 => UpstreamError::Unauthorized {
                    remote: self.remote.clone(),
                    status,
                    body: String::new(),
                    repo: repo_of(scope).to_string(),
                    secret: chosen.map(|c| c.entry.reference()),
                },
                _ => UpstreamError::Status {
                    remote: self.remote.clone(),
                    status,
                    body: String::new(),
                    retry_after: None,
                },
            });
        }
        let body = super::body::read_limited(resp, super::body::MAX_TOKEN_RESPONSE)
            .await
            .map_err(|e| match e {
                super::body::ReadError::TooLarge => UpstreamError::TooLarge {
                    remote: self.remote.clone(),
                    what: "token response",
                    limit: super::body::MAX_TOKEN_RESPONSE as u64,
                },
                super::body::ReadError::Broken(e) => UpstreamError::Unreachable {
                    remote: self.remote.clone(),
                    reason: format!("token service: {}", super::describe(&e)),
                },
            })?;
        let reply: TokenReply =
            serde_json::from_slice(&body).map_err(|e| UpstreamError::Protocol {
                remote: self.remote.clone(),
                message: format!("token response is not JSON: {e}"),
            })?;
        let token = reply
            .token
            .or(reply.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| UpstreamError::Protocol {
                remote: self.remote.clone(),
                message: "token response has no token".into(),
            })?;
        // Refresh a little before expiry (tokens default to 60 s).
        let life = Duration::from_secs(reply.expires_in.unwrap_or(60).clamp(1, 24 * 3600));
        let refresh_after =
            Instant::now() + life.mul_f64(0.9).saturating_sub(Duration::from_secs(1));
        Ok(Arc::new((SecretString::new(token), refresh_after)))
    }

    /// The `Authorization` value that presents `creds` to a token service
    /// (a refresh token goes in a form instead: [`Self::refresh_request`]).
    fn credentials_value(creds: &Credentials) -> Option<HeaderValue> {
        match creds {
            c @ Credentials::Basic { .. } => Self::basic_value(c),
            Credentials::Token(t) => Self::bearer_value(t),
            Credentials::Refresh { .. } => None,
        }
    }

    /// The OAuth2 refresh-token grant of the registry token spec: a form
    /// POST to the realm (the token is in the body, never in a URL).
    fn refresh_request(
        http: &reqwest::Client,
        url: reqwest::Url,
        service: Option<&str>,
        scope: &str,
        token: &SecretString,
    ) -> reqwest::RequestBuilder {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "refresh_token")
            .append_pair("refresh_token", token.expose())
            .append_pair("client_id", "wharf")
            .append_pair("scope", scope);
        if let Some(s) = service {
            form.append_pair("service", s);
        }
        http.post(url)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form.finish())
    }
}

/// The repository of a `repository:<name>:<actions>` scope.
fn repo_of(scope: &str) -> &str {
    let rest = scope.strip_prefix("repository:").unwrap_or(scope);
    rest.rsplit_once(':').map_or(rest, |(name, _)| name)
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
