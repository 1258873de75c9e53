//! The dashboard's HTTP plumbing: who the request is (session cookie),
//! the CSRF check of every form, form bodies, cookies with the right flags,
//! and the security headers every dashboard response carries.

use std::collections::HashMap;

use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use maud::Markup;

use crate::api::body::{self, Body};
use crate::api::error::ApiError;
use crate::api::{read_limited, Api};
use crate::auth::session::Session;
use crate::auth::Identity;
use crate::oci::ErrorCode;

/// The session cookie (path `/ui`, HttpOnly, SameSite=Strict, Secure
/// under TLS).
pub const SESSION_COOKIE: &str = "wharf_session";
/// The sign-in form's CSRF nonce cookie.
pub const LOGIN_COOKIE: &str = "wharf_login";

/// Largest form body.
const MAX_FORM: usize = 64 * 1024;

/// No inline script or style, nothing from elsewhere, no framing.
pub const CSP: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
                       form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Who a dashboard request is, and what its pages need to know.
pub struct Ctx<'a> {
    pub api: &'a Api,
    pub id: Identity,
    pub session: Option<Session>,
    /// Whether cookies get `Secure` (TLS, or an https external URL).
    pub secure: bool,
    /// `host[:port]` for pull commands.
    pub host: String,
    /// The sign-in form's nonce, from its cookie.
    pub login_nonce: Option<String>,
    /// The client's address (for the login guard).
    pub client: Option<std::net::IpAddr>,
}

/// A cookie's value from the request's `Cookie` headers.
fn cookie<'r>(req: &'r Request<Incoming>, name: &str) -> Option<&'r str> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl<'a> Ctx<'a> {
    pub fn of(api: &'a Api, req: &Request<Incoming>) -> Ctx<'a> {
        let auth = &api.registry.auth;
        let (id, session) = match cookie(req, SESSION_COOKIE).and_then(|c| auth.session_identity(c))
        {
            Some((id, s)) => (id, Some(s)),
            None => (Identity::anonymous(), None),
        };
        let secure = api.tls
            || api
                .external_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://"));
        let host = crate::api::access::base_url(api, req.headers(), req.uri())
            .ok()
            .map(|u| {
                u.split_once("://")
                    .map_or(u.clone(), |(_, h)| h.trim_end_matches('/').to_string())
            })
            .unwrap_or_else(|| "localhost".into());
        let login_nonce = cookie(req, LOGIN_COOKIE).map(str::to_string);
        let client = crate::api::access::client_addr(req);
        Ctx {
            api,
            id,
            session,
            secure,
            host,
            login_nonce,
            client,
        }
    }

    /// Whether the request is an admin (or wharf has no accounts).
    pub fn admin(&self) -> bool {
        self.api.registry.is_admin(&self.id)
    }

    /// The CSRF token for this session's forms (empty when signed out).
    pub fn csrf(&self) -> String {
        self.session
            .as_ref()
            .map(|s| self.api.registry.auth.sessions().csrf(&s.sid))
            .unwrap_or_default()
    }

    /// `Set-Cookie` for `name=value` living `max_age` seconds (0 clears it).
    pub fn set_cookie(&self, name: &str, value: &str, max_age: u64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{name}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
    }
}

/// A parsed `application/x-www-form-urlencoded` body.
pub struct Form(HashMap<String, String>);

impl Form {
    pub async fn read(req: Request<Incoming>) -> Result<Form, ApiError> {
        let bytes = read_limited(req, MAX_FORM).await?;
        Ok(Form(form_urlencoded::parse(&bytes).into_owned().collect()))
    }

    /// A field, trimmed ("" when absent).
    pub fn get(&self, k: &str) -> &str {
        self.0.get(k).map_or("", |v| v.trim())
    }

    /// A required field.
    pub fn need(&self, k: &str) -> Result<&str, ApiError> {
        match self.get(k) {
            "" => Err(ApiError::new(ErrorCode::BadRequest)
                .explain(format!("the form field {k} is missing"))),
            v => Ok(v),
        }
    }

    /// A checkbox.
    pub fn checked(&self, k: &str) -> bool {
        !self.get(k).is_empty()
    }

    /// Refuse a form whose `csrf` field is not the token of `id`.
    pub fn check_csrf(&self, ctx: &Ctx, id: Option<&str>) -> Result<(), ApiError> {
        let sessions = ctx.api.registry.auth.sessions();
        match id {
            Some(id) if sessions.csrf_ok(id, self.get("csrf")) => Ok(()),
            _ => Err(ApiError::new(ErrorCode::Denied)
                .explain("this form is stale or did not come from this dashboard (CSRF check failed): reload the page and retry")),
        }
    }
}

/// A 200 HTML page.
pub fn html(m: Markup) -> Response<Body> {
    html_status(StatusCode::OK, m)
}

pub fn html_status(status: StatusCode, m: Markup) -> Response<Body> {
    let bytes = m.into_string().into_bytes();
    let mut r = Response::new(body::full(bytes));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

/// `303 See Other` to `to` (a path under this dashboard).
pub fn redirect(to: &str) -> Response<Body> {
    let mut r = Response::new(body::empty());
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Add a `Set-Cookie` header.
pub fn with_cookie(mut r: Response<Body>, cookie: &str) -> Response<Body> {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// The headers every dashboard response carries.
pub fn secure_headers(mut r: Response<Body>, cacheable: bool) -> Response<Body> {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    let cache = if cacheable {
        "public, max-age=3600"
    } else {
        "no-store"
    };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}
