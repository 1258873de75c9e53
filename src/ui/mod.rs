//! The web dashboard at `/ui` (and `/` redirects there): server-rendered
//! HTML (maud) with a small stylesheet and script embedded in the binary,
//! served on the API's port, TLS and accounts.
//!
//! Owns: routing `/ui/...`, sessions as cookies and the CSRF check of every
//! form ([`web`]), and the pages ([`projects`], [`artifacts`], [`robots`],
//! [`ops`], [`login`]) over [`layout`]. Every page and action calls the same
//! registry functions as the `/api/v1` management API, which apply the
//! permission rules; this module never decides who may do what, never
//! touches the store, and never puts a token in a URL.

mod artifacts;
mod layout;
mod login;
mod ops;
mod projects;
mod robots;
mod web;

use http::{header, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use maud::html;

use crate::api::body::{self, Body};
use crate::api::error::ApiError;
use crate::api::handlers::Query;
use crate::api::{Api, Reply};
use crate::oci::ErrorCode;
use layout::{page, Nav};
use web::{html_status, redirect, secure_headers, Ctx, Form};

const APP_CSS: &str = include_str!("static/app.css");
const APP_JS: &str = include_str!("static/app.js");

/// Whether `path` belongs to the dashboard.
pub fn owns(path: &str) -> bool {
    path == "/" || path == "/ui" || path.starts_with("/ui/")
}

/// Serve a dashboard request. Errors become HTML pages.
pub async fn serve(api: &Api, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_string();
    if path == "/" || path == "/ui" {
        return Ok(secure_headers(redirect("/ui/"), false));
    }
    if let Some(r) = asset(&path) {
        return Ok(secure_headers(r?, true));
    }
    let ctx = Ctx::of(api, &req);
    let r = match *req.method() {
        Method::GET | Method::HEAD => get(&ctx, &req, &path).await,
        Method::POST => post(&ctx, req, &path).await,
        ref m => Err(ApiError::new(ErrorCode::Unsupported)
            .explain(format!("method {m} is not allowed here"))),
    };
    Ok(secure_headers(
        r.unwrap_or_else(|e| error_page(&ctx, e)),
        false,
    ))
}

fn asset(path: &str) -> Option<Reply> {
    let (bytes, ct) = match path {
        "/ui/static/app.css" => (APP_CSS, "text/css; charset=utf-8"),
        "/ui/static/app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        _ => return None,
    };
    Some(
        Response::builder()
            .header(header::CONTENT_TYPE, ct)
            .header(header::CONTENT_LENGTH, bytes.len())
            .body(body::full(bytes))
            .map_err(ApiError::from),
    )
}

async fn get(ctx: &Ctx<'_>, req: &Request<Incoming>, path: &str) -> Reply {
    let rest = path.strip_prefix("/ui/").unwrap_or("");
    match rest {
        "" => projects::list(ctx).await,
        "login" => login::get(ctx),
        "robots" => robots::list(ctx).await,
        "cache" => ops::cache(ctx).await,
        "storage" => ops::storage(ctx).await,
        "delete" => artifacts::confirm(ctx, &Query::of(req)).await,
        _ => {
            if let Some(p) = rest.strip_prefix("projects/") {
                return projects::repositories(
                    ctx,
                    p.trim_end_matches('/'),
                    Query::of(req).get("after"),
                )
                .await;
            }
            if let Some(repo) = rest.strip_prefix("r/") {
                return artifacts::list(
                    ctx,
                    repo.trim_end_matches('/'),
                    Query::of(req).get("page"),
                )
                .await;
            }
            Err(ApiError::new(ErrorCode::NoEndpoint)
                .explain(format!("no dashboard page at {path}")))
        }
    }
}

async fn post(ctx: &Ctx<'_>, req: Request<Incoming>, path: &str) -> Reply {
    let form = Form::read(req).await?;
    let rest = path.strip_prefix("/ui/").unwrap_or("");
    match rest {
        "login" => return login::post(ctx, form).await,
        "logout" => return login::logout(ctx, form),
        _ => {}
    }
    // Every other form changes something: accounts must exist, and the
    // form must carry this session's CSRF token.
    ctx.api.registry.require_accounts_for_changes()?;
    form.check_csrf(ctx, ctx.session.as_ref().map(|s| s.sid.as_str()))?;
    match rest {
        "projects" => projects::save(ctx, form).await,
        "artifacts/delete" => artifacts::delete(ctx, form).await,
        "tags/delete" => artifacts::delete_tag(ctx, form).await,
        "robots" => robots::create(ctx, form).await,
        "robots/revoke" => robots::revoke(ctx, form).await,
        "cache/pin" => ops::pin(ctx, form, true).await,
        "cache/unpin" => ops::pin(ctx, form, false).await,
        "cache/prefetch" => ops::prefetch(ctx, form).await,
        "storage/gc" => ops::gc(ctx, form).await,
        _ => {
            Err(ApiError::new(ErrorCode::NoEndpoint)
                .explain(format!("no dashboard action at {path}")))
        }
    }
}

/// An error as a page with the error's status and its sentence.
fn error_page(ctx: &Ctx, e: ApiError) -> Response<Body> {
    let status = e.status_code();
    let signed_out = ctx.session.is_none() && ctx.api.registry.auth.enabled();
    let body = html! {
        h1 { (status.canonical_reason().unwrap_or("Error")) }
        (layout::notice("error", html! { (e.message()) }))
        @if signed_out && matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND) {
            p { a href="/ui/login" { "Sign in" } " to see more." }
        }
        p { a href="/ui/" { "Back to the projects" } }
    };
    let mut r = html_status(status, page(ctx, Nav::None, "Error", body));
    // Retry-After only: a WWW-Authenticate would make browsers prompt.
    for (k, v) in e
        .headers()
        .iter()
        .filter(|(k, _)| *k == header::RETRY_AFTER)
    {
        r.headers_mut().insert(k.clone(), v.clone());
    }
    r
}
