//! The page shell (head, navigation, who is signed in) and the small
//! pieces several pages share: sizes, times, usage bars, copy buttons,
//! hidden CSRF fields. Everything goes through maud, which escapes every
//! interpolated value.

use std::time::{Duration, UNIX_EPOCH};

use maud::{html, Markup, DOCTYPE};

use super::web::Ctx;
use crate::config::format_size;

/// Which navigation entry a page belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Projects,
    Robots,
    Cache,
    Storage,
    None,
}

/// A whole page: `title`, the navigation with `current` marked, `body`.
pub fn page(ctx: &Ctx, current: Nav, title: &str, body: Markup) -> Markup {
    let link = |nav: Nav, href: &str, label: &str| {
        html! { a href=(href) class=[(nav == current).then_some("current")] { (label) } }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · wharf" }
                link rel="stylesheet" href="/ui/static/app.css";
                script src="/ui/static/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/ui/" { "wharf" }
                    (link(Nav::Projects, "/ui/", "Projects"))
                    @if ctx.admin() {
                        (link(Nav::Robots, "/ui/robots", "Robots"))
                        (link(Nav::Cache, "/ui/cache", "Cache"))
                        (link(Nav::Storage, "/ui/storage", "Storage"))
                    }
                    span.who {
                        @if let Some(s) = &ctx.session {
                            span { "Signed in as " strong { (s.sub) } }
                            form.inline method="post" action="/ui/logout" {
                                (csrf_field(ctx))
                                button type="submit" { "Sign out" }
                            }
                        } @else if ctx.api.registry.auth.enabled() {
                            span { "Anonymous: public projects only" }
                            a href="/ui/login" { "Sign in" }
                        } @else {
                            span { "No accounts configured: read-only" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The hidden CSRF field of a form.
pub fn csrf_field(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name="csrf" value=(ctx.csrf()); }
}

/// `10 KiB`
pub fn size(n: u64) -> String {
    format_size(n)
}

/// Unix seconds as RFC 3339 (UTC), or a dash.
pub fn time(secs: Option<u64>) -> String {
    match secs {
        Some(s) if s > 0 => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(s)).to_string()
        }
        _ => "—".into(),
    }
}

/// Usage against an optional limit: a bar with the numbers (`unlimited`
/// names the missing limit).
pub fn usage(used: u64, limit: Option<u64>, unlimited: &str) -> Markup {
    match limit {
        Some(max) => {
            let pct = used.saturating_mul(100).checked_div(max).unwrap_or(100);
            html! {
                meter min="0" max=(max) low=(max * 7 / 10) high=(max * 9 / 10) optimum="0" value=(used.min(max)) title=(format!("{pct}%")) {}
                " " (size(used)) " of " (size(max)) " (" (pct) "%)"
            }
        }
        None => html! { (size(used)) span.muted { " (" (unlimited) ")" } },
    }
}

/// A command with a copy button.
pub fn copy_row(text: &str) -> Markup {
    html! {
        div.copy-row {
            code { (text) }
            button type="button" data-copy=(text) { "Copy" }
        }
    }
}

/// A message box (`kind`: `flash` or `error`).
pub fn notice(kind: &str, m: Markup) -> Markup {
    html! { div class=(format!("card {kind}")) { (m) } }
}

/// A path segment or query value, percent-encoded.
pub fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
