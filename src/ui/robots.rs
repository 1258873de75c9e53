//! Robot accounts (admins): list with permissions, expiry and state;
//! create (the token is shown once, with a copy button and a
//! `docker login` line); revoke. The registry calls behind
//! `/api/v1/robots`.

use std::collections::BTreeMap;

use maud::{html, Markup};

use super::layout::{copy_row, csrf_field, notice, page, time, Nav};
use super::web::{html, redirect, Ctx, Form};
use crate::api::error::ApiError;
use crate::api::Reply;
use crate::oci::ErrorCode;
use crate::registry::views::{NewRobot, RobotView};

fn state(r: &RobotView) -> &'static str {
    match (r.revoked, r.active) {
        (true, _) => "revoked",
        (false, true) => "active",
        (false, false) => "expired",
    }
}

fn table(ctx: &Ctx, robots: &[RobotView]) -> Markup {
    html! {
        table {
            thead { tr { th { "Robot" } th { "Permissions" } th { "State" } th.wide { "Created" } th { "Expires" } th { "Last used" } th {} } }
            tbody {
                @for r in robots {
                    tr {
                        td { code { (r.username) } @if r.from_config { " " span.badge { "config" } } }
                        td { @for (p, acts) in &r.permissions { span.tag { (p) "=" (acts.join(",")) } } }
                        td { (state(r)) }
                        td.wide { (time(Some(r.created_at))) }
                        td { (time(r.expires_at)) }
                        td { (time(r.last_used_at)) }
                        td {
                            @if !r.from_config && !r.revoked {
                                form.inline method="post" action="/ui/robots/revoke" {
                                    (csrf_field(ctx))
                                    input type="hidden" name="name" value=(r.name);
                                    button.danger type="submit" { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn create_form(ctx: &Ctx) -> Markup {
    html! {
        form method="post" action="/ui/robots" {
            (csrf_field(ctx))
            label { "Name " input type="text" name="name" required pattern="[a-z0-9_-]{1,64}" placeholder="ci"; }
            label { "Permissions " input type="text" name="permissions" placeholder="team=pull,push other=pull"; }
            label { "Expires in " input type="text" name="expires_in" placeholder="90d (empty: never)"; }
            button.primary type="submit" { "Create robot" }
        }
    }
}

/// `GET /ui/robots`
pub async fn list(ctx: &Ctx<'_>) -> Reply {
    let robots = ctx.api.registry.robots(&ctx.id)?;
    Ok(html(page(
        ctx,
        Nav::Robots,
        "Robots",
        body(ctx, &robots, None),
    )))
}

fn body(ctx: &Ctx, robots: &[RobotView], created: Option<&RobotView>) -> Markup {
    html! {
        h1 { "Robot accounts" }
        @if let Some(r) = created {
            (notice("flash secret", html! {
                p { "Robot " code { (r.username) } " created. Its token is shown " strong { "once" } ": copy it now." }
                (copy_row(r.token.as_deref().unwrap_or("")))
                p { "Log in with it:" }
                (copy_row(&format!("docker login {} -u '{}'", ctx.host, r.username)))
                p.muted { "…and paste the token as the password." }
            }))
        }
        (table(ctx, robots))
        h2 { "New robot" }
        div.card { (create_form(ctx)) }
    }
}

/// `project=pull,push other=pull` (spaces, commas between projects or
/// newlines separate entries).
fn permissions(spec: &str) -> Result<BTreeMap<String, Vec<String>>, ApiError> {
    let mut out = BTreeMap::new();
    for entry in spec.split_whitespace() {
        let (project, actions) = entry.split_once('=').ok_or_else(|| {
            ApiError::new(ErrorCode::BadRequest).explain(format!(
                "permissions: {entry:?} is not PROJECT=ACTIONS, e.g. team=pull,push"
            ))
        })?;
        out.insert(
            project.to_string(),
            actions
                .split(',')
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect(),
        );
    }
    Ok(out)
}

/// `POST /ui/robots`
pub async fn create(ctx: &Ctx<'_>, f: Form) -> Reply {
    let expires_in = Some(f.get("expires_in").to_string()).filter(|s| !s.is_empty());
    let new = NewRobot {
        name: f.need("name")?.to_string(),
        permissions: permissions(f.get("permissions"))?,
        expires_in,
    };
    let r = &ctx.api.registry;
    let created = r.create_robot(&ctx.id, new).await?;
    let robots = r.robots(&ctx.id)?;
    Ok(html(page(
        ctx,
        Nav::Robots,
        "Robots",
        body(ctx, &robots, Some(&created)),
    )))
}

/// `POST /ui/robots/revoke`
pub async fn revoke(ctx: &Ctx<'_>, f: Form) -> Reply {
    ctx.api
        .registry
        .revoke_robot(&ctx.id, f.need("name")?)
        .await?;
    Ok(redirect("/ui/robots"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn permission_specs() {
        let p = super::permissions(" team=pull,push\nother=pull ").unwrap();
        assert_eq!(p["team"], ["pull", "push"]);
        assert_eq!(p["other"], ["pull"]);
        assert!(super::permissions("team").is_err());
        assert!(super::permissions("").unwrap().is_empty());
    }
}
