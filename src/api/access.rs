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
use crate::auth::{Action, Identity, Subject};
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

/// The token realm: configured, or this server as the client addressed it.
fn realm(api: &Api, headers: &HeaderMap, uri: &http::Uri) -> String {
    if let Some(r) = &api.registry.auth.config().realm {
        return r.clone();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("localhost")
        .replace(['"', '\\'], "");
    let scheme = if api.tls { "https" } else { "http" };
    format!("{scheme}://{host}/token")
}

/// 401 with a Bearer challenge for `scope`.
pub fn challenge(api: &Api, req: &Request<Incoming>, scope: Option<String>, detail: &str) -> ApiError {
    let mut v = format!("Bearer realm=\"{}\",service=\"{}\"", realm(api, req.headers(), req.uri()), crate::auth::token::SERVICE);
    if let Some(s) = scope {
        v.push_str(&format!(",scope=\"{s}\""));
    }
    ApiError::new(ErrorCode::Unauthorized).detail(detail).header("www-authenticate", v)
}

impl Api {
    /// Authenticate the request and check it may do what `route` does.
    pub(super) async fn authorize(&self, req: &Request<Incoming>, route: &Route, remote: bool) -> Result<Identity, ApiError> {
        let auth = &self.registry.auth;
        if !auth.enabled() {
            return Ok(Identity::anonymous());
        }
        let id = auth
            .authenticate(req.headers())
            .await
            .map_err(|e| challenge(self, req, None, &e.to_string()))?;
        let Some(action) = required_action(req.method(), route) else {
            // /v2/ and the catalog: any identified client (the catalog is
            // filtered to what the client may pull).
            if id.is_anonymous() && id.token_access.is_none() {
                let scope = matches!(route, Route::Catalog).then(|| "registry:catalog:*".to_string());
                return Err(challenge(self, req, scope, "authentication required"));
            }
            return Ok(id);
        };
        let Some(repo) = route.repo() else { return Ok(id) };
        if auth.allowed(&id, repo.as_str(), action, remote) {
            return Ok(id);
        }
        let scope = format!("repository:{repo}:{}", scope_actions(action));
        // Anonymous, or a token that lacks a scope its subject could have:
        // send the client (back) to the token service.
        if id.is_anonymous() || (id.token_access.is_some() && auth.subject_allowed(&id.subject, repo.as_str(), action, remote)) {
            return Err(challenge(self, req, Some(scope), "authentication required"));
        }
        Err(ApiError::new(ErrorCode::Denied).detail(format!(
            "{} may not {} {repo}",
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
        if req.method() == Method::POST {
            let body = http_body_util::Limited::new(req.into_body(), 64 * 1024)
                .collect()
                .await
                .map_err(|_| ApiError::new(ErrorCode::BadRequest).explain("the token request body is too large or unreadable"))?
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
                return Err(ApiError::new(ErrorCode::BadRequest)
                    .explain("only grant_type=password is supported; use GET /token with Basic credentials"));
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
        let bad = || ApiError::new(ErrorCode::Unauthorized).detail("invalid username or password");
        let auth = &self.registry.auth;
        let subject = match form_creds {
            Some((u, p)) => auth.check_basic(&u, &p).await.ok_or_else(bad)?,
            None => auth.authenticate(&basic).await.map_err(|_| bad())?.subject,
        };
        let mut access = Vec::new();
        for s in scopes.iter().filter(|s| !s.is_empty()) {
            let name = s.split(':').nth(1).unwrap_or("");
            let remote = self.registry.is_remote(name).await;
            if let Some(a) = auth.grant(&subject, s, |_| remote) {
                access.push(a);
            }
        }
        let (token, ttl) = auth.issue_token(&subject, access).map_err(|e| ApiError::internal("signing token", e))?;
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

/// The identity attached to a request by `authorize` (anonymous if none).
pub fn identity<B>(req: &Request<B>) -> Identity {
    req.extensions().get::<Identity>().cloned().unwrap_or_else(Identity::anonymous)
}
