//! The artifacts of a repository, grouped by digest: tags, size, media
//! type, platforms, times, referrers under their subject, pull commands;
//! deleting an artifact (a dialog listing every tag it removes) or a tag;
//! each artifact's vulnerability scan as a severity badge.
//! Listing and deletion are the registry calls behind
//! `/api/v1/repositories/...`, with the same permission checks.

use maud::{html, Markup};

use super::layout::{copy_row, csrf_field, enc, notice, page, size, time, Nav};
use super::web::{html, Ctx, Form};
use crate::api::mgmt::{parse_digest, parse_repo};
use crate::api::Reply;
use crate::auth::Action;
use crate::oci::{Digest, ErrorCode, RepoName, Tag};
use crate::registry::scan::{ScanStatus, ScanSummary};
use crate::store::Artifact;

/// The scan badge: worst severity colours it, a failure shows its reason.
fn scan_badge(s: Option<&ScanSummary>) -> Markup {
    let Some(s) = s else {
        return html! { span.muted { "not scanned" } };
    };
    let class = match (s.status, s.highest) {
        (ScanStatus::Failed, _) => "badge scan-failed".to_string(),
        (ScanStatus::Done, None) => "badge scan-clean".to_string(),
        (ScanStatus::Done, Some(h)) => format!("badge sev-{}", h.as_str().to_ascii_lowercase()),
        _ => "badge".to_string(),
    };
    html! { span class=(class) title=[s.reason.as_deref()] { (s.short()) } }
}

/// The confirmation form for deleting `a` (in the dialog, or on its own
/// page without JavaScript).
fn delete_form(ctx: &Ctx, repo: &RepoName, a: &Artifact) -> Markup {
    html! {
        h2 { "Delete this artifact?" }
        p { code { (a.digest) } }
        @if a.tags.is_empty() { p { "It has no tags." } }
        @else {
            p { "These tags will be deleted with it:" }
            ul.deleted-tags { @for t in &a.tags { li { span.tag { (t) } } } }
        }
        form method="post" action="/ui/artifacts/delete" {
            (csrf_field(ctx))
            input type="hidden" name="repo" value=(repo);
            input type="hidden" name="digest" value=(a.digest);
            button.danger.solid type="submit" id="confirm-delete" { "Delete artifact and " (a.tags.len()) " tag(s)" }
            " "
            a.button href=(format!("/ui/r/{repo}")) data-close="1" { "Cancel" }
        }
    }
}

fn dialog_id(d: &Digest) -> String {
    format!("del-{}", d.hex().get(..16).unwrap_or(""))
}

fn row(
    ctx: &Ctx,
    repo: &RepoName,
    a: &Artifact,
    scan: Option<&ScanSummary>,
    may_delete: bool,
    referrer: bool,
) -> Markup {
    let short = a.digest.to_string();
    html! {
        tr class=[referrer.then_some("referrer")] id=(format!("a-{}", a.digest.hex())) {
            td {
                @if referrer { span.muted { "↳ " } }
                @for t in &a.tags {
                    span.tag { (t) }
                    @if may_delete {
                        form.inline method="post" action="/ui/tags/delete" {
                            (csrf_field(ctx))
                            input type="hidden" name="repo" value=(repo);
                            input type="hidden" name="tag" value=(t);
                            button.danger.x type="submit" title=(format!("delete tag {t}")) aria-label=(format!("delete tag {t}")) { "×" }
                        }
                    }
                }
                @if a.tags.is_empty() { span.muted { "untagged" } }
                div.mono.muted { (short) }
                @if let Some(t) = &a.artifact_type { div { span.badge { (t) } } }
                @for (k, v) in &a.annotations { div.muted { (k) ": " (v) } }
            }
            td { (size(a.size)) }
            td.wide {
                span.mono { (a.media_type) }
                @if !a.platforms.is_empty() { div { @for p in &a.platforms { span.badge { (p) } " " } } }
            }
            td.wide { "pushed " (time(Some(a.pushed_at))) br; "pulled " (time(a.last_pulled_at)) }
            td { (scan_badge(scan)) }
            td {
                @for t in a.tags.iter().take(1) { (copy_row(&format!("docker pull {}/{repo}:{t}", ctx.host))) }
                (copy_row(&format!("docker pull {}/{repo}@{}", ctx.host, a.digest)))
                @if may_delete {
                    a.button.danger href=(format!("/ui/delete?repo={}&digest={}", enc(repo.as_str()), enc(&a.digest.to_string())))
                        data-dialog=(dialog_id(&a.digest)) { "Delete…" }
                    dialog id=(dialog_id(&a.digest)) { (delete_form(ctx, repo, a)) }
                }
            }
        }
    }
}

/// Subjects first (newest first), each followed by its referrers.
fn grouped(all: &[Artifact]) -> Vec<(&Artifact, bool)> {
    let present = |d: &Digest| all.iter().any(|a| &a.digest == d);
    let mut out = Vec::new();
    for a in all
        .iter()
        .filter(|a| a.subject.as_ref().is_none_or(|s| !present(s)))
    {
        out.push((a, false));
        out.extend(
            all.iter()
                .filter(|r| r.subject.as_ref() == Some(&a.digest))
                .map(|r| (r, true)),
        );
    }
    out
}

/// Artifacts per page.
const PAGE: usize = 50;

fn pager(repo: &RepoName, page: usize, total: usize) -> Markup {
    let pages = total.div_ceil(PAGE).max(1);
    html! {
        @if pages > 1 {
            p {
                @if page > 0 { a href=(format!("/ui/r/{repo}?page={}", page - 1)) { "← Newer" } " " }
                "Page " (page + 1) " of " (pages) " (" (total) " artifacts) "
                @if page + 1 < pages { a href=(format!("/ui/r/{repo}?page={}", page + 1)) { "Older →" } }
            }
        }
    }
}

/// `GET /ui/r/{repo}?page=`
pub async fn list(ctx: &Ctx<'_>, repo: &str, page_no: Option<&str>) -> Reply {
    let repo = parse_repo(repo)?;
    let n: usize = page_no
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
        .min(1_000_000);
    let r = &ctx.api.registry;
    let (views, total) = r
        .artifact_views(
            &ctx.id,
            &repo,
            &crate::store::PageFrom::Skip(n * PAGE),
            PAGE,
        )
        .await?;
    let scans: std::collections::HashMap<Digest, ScanSummary> = views
        .iter()
        .filter_map(|v| Some((v.artifact.digest.clone(), v.scan.clone()?)))
        .collect();
    let all: Vec<Artifact> = views.into_iter().map(|v| v.artifact).collect();
    let may_delete = ctx.session.is_some() && r.subject_may(&ctx.id, &repo, Action::Delete);
    let project = repo.first();
    let body = html! {
        p.muted { a href="/ui/" { "Projects" } " / " a href=(format!("/ui/projects/{}", enc(project))) { (project) } " / " (repo) }
        h1 { (repo) }
        @if all.is_empty() { p.muted { "No artifacts." } }
        @else {
            table.artifacts {
                thead { tr { th { "Tags / digest" } th { "Size" } th.wide { "Type" } th.wide { "Times" } th { "Scan" } th { "Pull" } } }
                tbody { @for (a, referrer) in grouped(&all) { (row(ctx, &repo, a, scans.get(&a.digest), may_delete, referrer)) } }
            }
        }
        (pager(&repo, n, total))
    };
    Ok(html(page(ctx, Nav::Projects, repo.as_str(), body)))
}

/// `GET /ui/delete?repo=&digest=`: the confirmation without JavaScript.
pub async fn confirm(ctx: &Ctx<'_>, q: &crate::api::handlers::Query) -> Reply {
    let repo = parse_repo(q.get("repo").unwrap_or(""))?;
    let d = parse_digest(q.get("digest").unwrap_or(""))?;
    let all = ctx.api.registry.artifacts(&ctx.id, &repo).await?;
    let a = all.iter().find(|a| a.digest == d).ok_or_else(|| {
        crate::api::error::ApiError::new(ErrorCode::ManifestUnknown)
            .explain(format!("{repo}@{d} not found"))
    })?;
    Ok(html(page(
        ctx,
        Nav::Projects,
        "Delete artifact",
        html! { div.card { (delete_form(ctx, &repo, a)) } },
    )))
}

fn done(ctx: &Ctx, repo: &RepoName, what: Markup) -> Reply {
    let body = html! {
        (notice("flash", what))
        p { a href=(format!("/ui/r/{repo}")) { "Back to " (repo) } }
    };
    Ok(html(page(ctx, Nav::Projects, "Deleted", body)))
}

/// `POST /ui/artifacts/delete`
pub async fn delete(ctx: &Ctx<'_>, f: Form) -> Reply {
    let repo = parse_repo(f.need("repo")?)?;
    let d = parse_digest(f.need("digest")?)?;
    let tags = ctx
        .api
        .registry
        .delete_artifact_as(&ctx.id, &repo, &d)
        .await?;
    done(
        ctx,
        &repo,
        html! {
            "Deleted " code { (d) } " from " (repo)
            @if !tags.is_empty() { " with its tags " @for t in &tags { span.tag { (t) } } }
        },
    )
}

/// `POST /ui/tags/delete`
pub async fn delete_tag(ctx: &Ctx<'_>, f: Form) -> Reply {
    let repo = parse_repo(f.need("repo")?)?;
    let t: Tag = f.need("tag")?.parse().map_err(|e: crate::oci::NameError| {
        crate::api::error::ApiError::new(ErrorCode::TagInvalid).explain(e.to_string())
    })?;
    ctx.api.registry.delete_tag_as(&ctx.id, &repo, &t).await?;
    done(
        ctx,
        &repo,
        html! { "Deleted tag " span.tag { (t) } " of " (repo) },
    )
}
