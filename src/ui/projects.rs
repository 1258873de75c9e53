//! Projects (usage against quota, admins create and change them) and the
//! repositories of one project. Lists come from the same registry calls as
//! `GET /api/v1/projects` and `/api/v1/projects/{p}/repositories`, so a
//! robot sees exactly its projects and anonymous visitors the public ones.

use maud::{html, Markup};

use super::layout::{csrf_field, enc, page, size, usage, Nav};
use super::web::{html, redirect, Ctx, Form};
use crate::api::error::ApiError;
use crate::api::Reply;
use crate::oci::ErrorCode;
use crate::registry::views::{ProjectUpdate, ProjectView};

fn project_form(ctx: &Ctx, p: Option<&ProjectView>) -> Markup {
    let size_text = |v: Option<u64>| v.map(size).unwrap_or_default();
    html! {
        form.inline method="post" action="/ui/projects" {
            (csrf_field(ctx))
            @match p {
                Some(p) => input type="hidden" name="name" value=(p.name);,
                None => label { "Name " input type="text" name="name" required pattern="[a-z0-9]+([._-][a-z0-9]+)*"; },
            }
            label { input type="checkbox" name="public" value="1" checked[p.is_some_and(|p| p.public)]; " public" }
            label { "Quota " input type="text" name="quota" placeholder="e.g. 10GiB (empty: none)" value=(size_text(p.and_then(|p| p.quota))); }
            label { "Max image size " input type="text" name="max_image_size" placeholder="empty: none" value=(size_text(p.and_then(|p| p.max_image_size))); }
            button.primary type="submit" { @if p.is_some() { "Save" } @else { "Create project" } }
        }
    }
}

/// `GET /ui/`: the projects the visitor may see.
pub async fn list(ctx: &Ctx<'_>) -> Reply {
    let projects = ctx.api.registry.project_views(&ctx.id).await?;
    let admin = ctx.admin() && ctx.api.registry.auth.enabled();
    let body = html! {
        h1 { "Projects" }
        @if projects.is_empty() { p.muted { "No project to show." } }
        @else {
            table {
                thead { tr { th { "Project" } th { "Visibility" } th { "Repositories" } th { "Usage" } th.wide { "Max image size" } } }
                tbody {
                    @for p in &projects {
                        tr {
                            td { a href=(format!("/ui/projects/{}", enc(&p.name))) { (p.name) } }
                            td { @if p.public { span.badge.public { "public" } } @else { span.badge.private { "private" } } }
                            td { (p.repositories) }
                            td { (usage(p.usage, p.quota, "no quota")) }
                            td.wide { (p.max_image_size.map(size).unwrap_or_else(|| "—".into())) }
                        }
                    }
                }
            }
        }
        @if admin {
            h2 { "New project" }
            div.card { (project_form(ctx, None)) }
        }
    };
    Ok(html(page(ctx, Nav::Projects, "Projects", body)))
}

/// Repositories per page.
const PAGE: usize = 100;

/// `GET /ui/projects/{p}?after=`: a page of its repositories (and, for
/// admins, its settings).
pub async fn repositories(ctx: &Ctx<'_>, name: &str, after: Option<&str>) -> Reply {
    let r = &ctx.api.registry;
    let (repos, more) = r
        .project_repositories_page(&ctx.id, name, after, PAGE)
        .await?;
    let project = r.project_view(&ctx.id, name).await.ok();
    let body = html! {
        p.muted { a href="/ui/" { "Projects" } " / " (name) }
        h1 { "Project " (name) }
        @if let Some(p) = &project {
            div.card {
                "Usage: " (usage(p.usage, p.quota, "no quota"))
                @if let Some(m) = p.max_image_size { " · max image size " (size(m)) }
            }
            @if ctx.admin() && r.auth.enabled() {
                details.card { summary { "Settings" } (project_form(ctx, Some(p))) }
            }
        }
        @if repos.is_empty() { p.muted { "No repositories yet." } }
        @else {
            table {
                thead { tr { th { "Repository" } th { "Artifacts" } th { "Tags" } } }
                tbody {
                    @for repo in &repos {
                        tr {
                            td { a href=(format!("/ui/r/{}", repo.name)) { (repo.name) } }
                            td { (repo.artifacts) }
                            td { (repo.tags) }
                        }
                    }
                }
            }
        }
        p {
            @if after.is_some() { a href=(format!("/ui/projects/{}", enc(name))) { "← First page" } " " }
            @if let (true, Some(last)) = (more, repos.last()) {
                a href=(format!("/ui/projects/{}?after={}", enc(name), enc(&last.name))) { "Next page →" }
            }
        }
    };
    Ok(html(page(ctx, Nav::Projects, name, body)))
}

/// A size field: empty removes the limit.
fn size_field(f: &Form, k: &str) -> Result<Option<Option<u64>>, ApiError> {
    match f.get(k) {
        "" => Ok(Some(None)),
        v => crate::config::parse_size(v)
            .map(|n| Some(Some(n)))
            .map_err(|e| ApiError::new(ErrorCode::BadRequest).explain(format!("{k}: {e}"))),
    }
}

/// `POST /ui/projects`: create or change a project (admins).
pub async fn save(ctx: &Ctx<'_>, f: Form) -> Reply {
    let name = f.need("name")?;
    let u = ProjectUpdate {
        public: Some(f.checked("public")),
        quota: size_field(&f, "quota")?,
        max_image_size: size_field(&f, "max_image_size")?,
    };
    ctx.api.registry.update_project(&ctx.id, name, u).await?;
    Ok(redirect(&format!("/ui/projects/{}", enc(name))))
}
