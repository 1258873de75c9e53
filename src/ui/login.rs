//! Sign-in and sign-out. Credentials are checked by the same code as the
//! registry API's Basic auth (argon2 under the login guard); a success
//! starts a signed session cookie. The sign-in form carries a CSRF token
//! bound to a nonce cookie, so another site cannot sign a browser in.

use http::StatusCode;
use maud::{html, Markup};

use super::layout::{notice, page, Nav};
use super::web::{html_status, redirect, with_cookie, Ctx, Form, LOGIN_COOKIE, SESSION_COOKIE};
use crate::api::Reply;

/// How long a sign-in form stays valid.
const LOGIN_FORM_TTL: u64 = 3600;

fn form(ctx: &Ctx, csrf: &str, error: Option<&str>) -> Markup {
    let body = html! {
        div.login.card {
            h1 { "Sign in" }
            @if let Some(e) = error { (notice("error", html! { (e) })) }
            form method="post" action="/ui/login" {
                input type="hidden" name="csrf" value=(csrf);
                label { "Username " span.muted { "(an admin, or robot$name)" }
                    input type="text" name="username" autocomplete="username" required autofocus; }
                label { "Password or robot token"
                    input type="password" name="password" autocomplete="current-password" required; }
                p { button.primary type="submit" { "Sign in" } }
            }
        }
    };
    page(ctx, Nav::None, "Sign in", body)
}

/// The sign-in form, with a fresh nonce cookie.
fn show(ctx: &Ctx, status: StatusCode, error: Option<&str>) -> Reply {
    let sessions = ctx.api.registry.auth.sessions();
    let nonce = sessions.nonce();
    let r = html_status(status, form(ctx, &sessions.csrf(&nonce), error));
    Ok(with_cookie(
        r,
        &ctx.set_cookie(LOGIN_COOKIE, &nonce, LOGIN_FORM_TTL),
    ))
}

/// `GET /ui/login`
pub fn get(ctx: &Ctx) -> Reply {
    show(ctx, StatusCode::OK, None)
}

/// `POST /ui/login`
pub async fn post(ctx: &Ctx<'_>, f: Form) -> Reply {
    f.check_csrf(ctx, ctx.login_nonce.as_deref())?;
    let auth = &ctx.api.registry.auth;
    ctx.api.registry.require_accounts_for_changes()?;
    match auth
        .check_basic(f.need("username")?, f.get("password"), ctx.client)
        .await
    {
        Ok(subject) => {
            let (cookie, _) = auth.sessions().start(&subject.username());
            let ttl = auth.sessions().ttl().as_secs();
            let r = with_cookie(
                redirect("/ui/"),
                &ctx.set_cookie(SESSION_COOKIE, &cookie, ttl),
            );
            Ok(with_cookie(r, &ctx.set_cookie(LOGIN_COOKIE, "", 0)))
        }
        Err(e) => match crate::api::access::refused_login(e) {
            Some(throttled) => Err(throttled),
            None => show(
                ctx,
                StatusCode::UNAUTHORIZED,
                Some("Invalid username or password."),
            ),
        },
    }
}

/// `POST /ui/logout`
pub fn logout(ctx: &Ctx, f: Form) -> Reply {
    let Some(s) = &ctx.session else {
        return Ok(redirect("/ui/login"));
    };
    f.check_csrf(ctx, Some(&s.sid))?;
    ctx.api.registry.auth.sessions().end(s);
    Ok(with_cookie(
        redirect("/ui/login"),
        &ctx.set_cookie(SESSION_COOKIE, "", 0),
    ))
}
