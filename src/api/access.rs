//! Authorization at the edge: which action a route needs, 401 challenges
//! that send clients to the token service, 403 for valid-but-not-allowed,
//! and the token service itself (`GET`/`POST /token`, Docker token spec).

use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::body;
use super::error::ApiError;
use super::route::Route;
use super::{Api, Reply};
use crate::auth::{Action, AuthError, Identity, Subject};
use crate::oci::ErrorCode;

/// The action a route needs on its repository.
pub fn required_action(method: &Method, route: &Route) -> Option<Action> {
    match route {
        Route::Base | Route::Catalog => None,
        Route::Tags(_) | Route::Referrers(..) => Some(Action::Pull),
        Route::Manifest(..) | Route::Blob(..) => Some(match *method {
            Method::GET | Method::HEAD => Action::Pull,
            Method::DELETE => Action::Delete,
            _ => Action::Push,
        }),
        Route::UploadStart(_) | Route::Upload(..) => Some(Action::Push),
    }
}

fn scope_actions(a: Action) -> &'static str {
    match a {
        Action::Pull => "pull",
        Action::Push => "pull,push",
        Action::Delete => "delete",
    }
}

/// Whether `s` is a plain `host[:port]`: a DNS name, an IPv4 address or a
/// bracketed IPv6 address, and an optional port. Nothing a client can use
/// to smuggle a path, a query or quotes into a URL wharf builds.
pub fn valid_authority(s: &str) -> bool {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, _)) if !h.ends_with(']') && h.contains(':') => (s, None),
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    if port.is_some_and(|p| {
        p.is_empty()
            || p.len() > 5
            || !p.bytes().all(|b| b.is_ascii_digit())
            || p.parse::<u16>().is_err()
    }) {
        return false;
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// How clients reach this server: `server.external_url`, else the scheme
/// and the request's Host (refused unless a plain `host[:port]`).
pub fn base_url(api: &Api, headers: &HeaderMap, uri: &http::Uri) -> Result<String, ApiError> {
    if let Some(u) = &api.external_url {
        return Ok(u.clone());
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("localhost");
    if !valid_authority(host) {
        let shown: String = host.chars().take(100).collect();
        return Err(ApiError::new(ErrorCode::BadRequest)
            .explain(format!("the Host header {shown:?} is not a host[:port]")));
    }
    let scheme = if api.tls { "https" } else { "http" };
    Ok(format!("{scheme}://{host}"))
}

/// The token realm: `auth.realm`, or this server's `/token`.
fn realm(api: &Api, headers: &HeaderMap, uri: &http::Uri) -> Result<String, ApiError> {
    if let Some(r) = &api.registry.auth.config().realm {
        return Ok(r.clone());
    }
    Ok(format!("{}/token", base_url(api, headers, uri)?))
}

/// 401 with a Bearer challenge for `scope` (400 if the request's Host is
/// not usable in a realm).
pub fn challenge(
    api: &Api,
    req: &Request<Incoming>,
    scope: Option<String>,
    detail: &str,
) -> ApiError {
    let realm = match realm(api, req.headers(), req.uri()) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let mut v = format!(
        "Bearer realm=\"{realm}\",service=\"{}\"",
        crate::auth::token::SERVICE
    );
    if let Some(s) = scope {
        v.push_str(&format!(",scope=\"{s}\""));
    }
    ApiError::new(ErrorCode::Unauthorized)
        .detail(detail)
        .header("www-authenticate", v)
}

impl Api {
    /// Authenticate the request and check it may do what `route` does.
    pub(super) async fn authorize(
        &self,
        req: &Request<Incoming>,
        route: &Route,
        remote: bool,
    ) -> Result<Identity, ApiError> {
        let auth = &self.registry.auth;
        if !auth.enabled() {
            return Ok(Identity::anonymous());
        }
        let id = auth
            .authenticate(req.headers(), client_addr(req))
            .await
            .map_err(|e| {
                refused_login(e.clone())
                    .unwrap_or_else(|| challenge(self, req, None, &e.to_string()))
            })?;
        record_identity(&id);
        let Some(action) = required_action(req.method(), route) else {
            // /v2/ and the catalog: any identified client (the catalog is
            // filtered to what the client may pull).
            if id.is_anonymous() && id.token_access.is_none() {
                let scope =
                    matches!(route, Route::Catalog).then(|| "registry:catalog:*".to_string());
                return Err(challenge(self, req, scope, "authentication required"));
            }
            return Ok(id);
        };
        let Some(repo) = route.repo() else {
            return Ok(id);
        };
        if auth.allowed(&id, repo.as_str(), action, remote) {
            return Ok(id);
        }
        let scope = format!("repository:{repo}:{}", scope_actions(action));
        // Anonymous, or a token that lacks a scope its subject could have:
        // send the client (back) to the token service.
        if id.is_anonymous()
            || (id.token_access.is_some()
                && auth.subject_allowed(&id.subject, repo.as_str(), action, remote))
        {
            return Err(challenge(self, req, Some(scope), "authentication required"));
        }
        Err(ApiError::new(ErrorCode::Denied).explain(format!(
            "{} may not {} {repo}: its permissions do not cover this repository",
            id.subject.username(),
            action.as_str()
        )))
    }

    /// `GET /token` (Basic credentials, `scope` query parameters) and
    /// `POST /token` (OAuth2 password grant form).
    pub(super) async fn token(&self, req: Request<Incoming>) -> Reply {
        let mut scopes: Vec<String> = Vec::new();
        let mut form_creds: Option<(String, String)> = None;
        let basic = req.headers().clone();
        let addr = client_addr(&req);
        if req.method() == Method::POST {
            let body = http_body_util::Limited::new(req.into_body(), 64 * 1024)
                .collect()
                .await
                .map_err(|_| {
                    ApiError::new(ErrorCode::BadRequest)
                        .explain("the token request body is too large or unreadable")
                })?
                .to_bytes();
            let (mut user, mut pass, mut grant) = (None, None, None);
            for (k, v) in form_urlencoded::parse(&body) {
                match &*k {
                    "scope" => scopes.extend(v.split(' ').map(str::to_string)),
                    "username" => user = Some(v.into_owned()),
                    "password" => pass = Some(v.into_owned()),
                    "grant_type" => grant = Some(v.into_owned()),
                    _ => {}
                }
            }
            if grant.as_deref() != Some("password") {
                return Err(ApiError::new(ErrorCode::BadRequest).explain(
                    "only grant_type=password is supported; use GET /token with Basic credentials",
                ));
            }
            form_creds = user.zip(pass);
        } else {
            let q = req.uri().query().unwrap_or("");
            for (k, v) in form_urlencoded::parse(q.as_bytes()) {
                if k == "scope" {
                    scopes.extend(v.split(' ').map(str::to_string));
                }
            }
        }
        let max = self.registry.limits.bounds.max_token_scopes;
        if scopes.len() > max {
            return Err(ApiError::new(ErrorCode::BadRequest).explain(format!(
                "a token request may ask for at most {max} scopes (limits.max_token_scopes), this one asks for {}",
                scopes.len()
            )));
        }
        let bad = |e: AuthError| {
            refused_login(e).unwrap_or_else(|| {
                ApiError::new(ErrorCode::Unauthorized).explain("invalid username or password")
            })
        };
        let auth = &self.registry.auth;
        let subject = match form_creds {
            Some((u, p)) => auth.check_basic(&u, &p, addr).await.map_err(bad)?,
            None => auth.authenticate(&basic, addr).await.map_err(bad)?.subject,
        };
        let mut access = Vec::new();
        for s in scopes.iter().filter(|s| !s.is_empty()) {
            let name = crate::auth::Scope::parse(s).map_or("", |s| s.name);
            let remote = self.registry.is_remote(name).await;
            if let Some(a) = auth.grant(&subject, s, |_| remote) {
                access.push(a);
            }
        }
        let (token, ttl) = auth
            .issue_token(&subject, access)
            .map_err(|e| ApiError::internal("signing token", e))?;
        let json = serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": ttl.as_secs(),
        });
        let bytes = serde_json::to_vec(&json).unwrap_or_default();
        if subject != Subject::Anonymous {
            tracing::debug!(user = %subject.username(), scopes = scopes.len(), "token issued");
        }
        Ok(Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, bytes.len())
            .header(header::CACHE_CONTROL, "no-store")
            .body(body::full(bytes))?)
    }
}

/// The address of the client (set by the accept loop).
pub fn client_addr<B>(req: &Request<B>) -> Option<std::net::IpAddr> {
    req.extensions().get::<super::ClientAddr>().map(|a| a.0)
}

/// A login refused before its credentials were checked: `429` with
/// `Retry-After`. `None` for plain bad credentials (the caller challenges).
pub fn refused_login(e: AuthError) -> Option<ApiError> {
    let retry = match e {
        AuthError::Throttled(d) => d.as_secs().max(1),
        AuthError::Busy => 1,
        _ => return None,
    };
    Some(
        ApiError::new(ErrorCode::TooManyRequests)
            .explain(e.to_string())
            .header("retry-after", retry.to_string()),
    )
}

/// The identity attached to a request by `authorize` (anonymous if none).
pub fn identity<B>(req: &Request<B>) -> Identity {
    req.extensions()
        .get::<Identity>()
        .cloned()
        .unwrap_or_else(Identity::anonymous)
}

/// Put who made the request into its span (and so into its log line).
pub(super) fn record_identity(id: &Identity) {
    if !id.is_anonymous() {
        tracing::Span::current().record("user", tracing::field::display(id.subject.username()));
    }
}

#[cfg(test)]
mod tests {
    use super::valid_authority;

    #[test]
    fn authorities() {
        for ok in [
            "wharf.example",
            "wharf.example:5000",
            "127.0.0.1:5000",
            "[::1]:5000",
            "[fe80::1]",
            "localhost",
        ] {
            assert!(valid_authority(ok), "{ok}");
        }
        for bad in [
            "evil.example:443/x?",
            "a\"b",
            "a b",
            "",
            "host:",
            "host:99999",
            "host:80:80",
            "::1",
            "a..b",
            "x/y",
            "h:1x",
            "[::1",
            "user@host",
        ] {
            assert!(!valid_authority(bad), "{bad}");
        }
    }
}
