//! The operator pages (admins): the pull-through cache (remotes with their
//! counters and credential kinds, never a secret; cached images; pin,
//! unpin, prefetch with a progress page) and storage (totals, last GC and
//! eviction, GC with a dry run first). The registry calls behind `/api/v1/cache`, `/api/v1/storage`,
//! `/api/v1/repositories/.../pins/...`, `/api/v1/prefetch` and
//! `/api/v1/gc`.

use maud::{html, Markup};

use super::layout::{csrf_field, enc, notice, page, page_refreshing, size, time, usage, Nav};
use super::web::{html, redirect, Ctx, Form};
use crate::api::mgmt::{parse_digest, parse_repo};
use crate::api::Reply;
use crate::registry::views::{
    CachedImage, GcReport, GcRequest, JobState, LastRun, PrefetchJob, PrefetchRequest, RemoteView,
};

/// Prefetch jobs listed on the cache page.
const RECENT_JOBS: usize = 10;

fn ratio(hits: u64, misses: u64) -> String {
    match hits + misses {
        0 => "—".into(),
        n => format!("{:.0}% ({hits} of {n})", hits as f64 * 100.0 / n as f64),
    }
}

fn pin_form(ctx: &Ctx, i: &CachedImage) -> Markup {
    let (action, label) = if i.pinned {
        ("/ui/cache/unpin", "Unpin")
    } else {
        ("/ui/cache/pin", "Pin")
    };
    html! {
        form.inline method="post" action=(action) {
            (csrf_field(ctx))
            input type="hidden" name="repo" value=(i.repository);
            input type="hidden" name="digest" value=(i.artifact.digest);
            button type="submit" { (label) }
        }
    }
}

fn remote(ctx: &Ctx, r: &RemoteView) -> Markup {
    html! {
        h2 { (r.name) @if r.default { " " span.badge { "default" } } }
        div.card {
            div { "URL " code { (r.url) } " · credentials: " (r.credentials.join(", ")) }
            div { "Cache usage: " (usage(r.usage, r.max_size, "no max_size")) }
            div {
                "Manifest hit ratio " (ratio(r.manifest_hits, r.manifest_misses))
                " · blob hit ratio " (ratio(r.blob_hits, r.blob_misses))
                " · stale serves " (r.stale_served)
            }
            div { "Upstream: " (r.upstream_requests) " requests, " (r.upstream_errors) " errors, " (size(r.upstream_bytes)) " fetched" }
            @if let Some((at, cause)) = &r.last_error { div.muted { "Last upstream error " (time(Some(*at))) ": " (cause) } }
        }
        @if r.images.is_empty() { p.muted { "Nothing cached from " (r.name) " yet." } }
        @else {
            table {
                thead { tr { th { "Image" } th { "Size" } th { "Last pull" } th { "Pinned" } th {} } }
                tbody {
                    @for i in &r.images {
                        tr {
                            td { (i.repository) @for t in &i.artifact.tags { " " span.tag { (t) } } div.mono.muted { (i.artifact.digest) } }
                            td { (size(i.artifact.size)) }
                            td { (time(i.artifact.last_pulled_at)) }
                            td { @if i.pinned { "pinned" } @else { "—" } }
                            td { (pin_form(ctx, i)) }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /ui/cache`
pub async fn cache(ctx: &Ctx<'_>) -> Reply {
    let v = ctx.api.registry.cache_view(&ctx.id).await?;
    let body = html! {
        h1 { "Pull-through cache" }
        div.card { "All remotes: " (usage(v.usage, v.max_size, "no [cache] max_size")) }
        div.card {
            form method="post" action="/ui/cache/prefetch" {
                (csrf_field(ctx))
                label { "Prefetch and pin " input type="text" name="image" required placeholder="docker.io/library/alpine:3.20"; }
                button.primary type="submit" { "Prefetch" }
            }
        }
        (jobs(&ctx.api.registry.prefetch_jobs(&ctx.id)?))
        @if v.remotes.is_empty() { p.muted { "No remotes configured." } }
        @for r in &v.remotes { (remote(ctx, r)) }
    };
    Ok(html(page(ctx, Nav::Cache, "Cache", body)))
}

/// `POST /ui/cache/pin` and `/ui/cache/unpin`
pub async fn pin(ctx: &Ctx<'_>, f: Form, pinned: bool) -> Reply {
    let repo = parse_repo(f.need("repo")?)?;
    let d = parse_digest(f.need("digest")?)?;
    ctx.api
        .registry
        .set_pin(&ctx.id, &repo, &crate::oci::Reference::Digest(d), pinned)
        .await?;
    Ok(redirect("/ui/cache"))
}

/// `POST /ui/cache/prefetch`: starts a job and shows its progress page.
pub async fn prefetch(ctx: &Ctx<'_>, f: Form) -> Reply {
    let image = f.need("image")?.to_string();
    let job = ctx
        .api
        .registry
        .start_prefetch(
            &ctx.id,
            PrefetchRequest {
                image,
                pin: Some(true),
            },
        )
        .await?;
    Ok(redirect(&format!("/ui/cache/prefetch/{}", enc(&job.id))))
}

fn job_state(j: &PrefetchJob) -> Markup {
    match j.state {
        JobState::Running if !j.resolved => html! { "fetching manifests" },
        JobState::Running => html! { "fetching blobs" },
        JobState::Done => html! { span.state-done { "done" } },
        JobState::Failed => html! { span.state-failed { "failed" } },
    }
}

fn job_progress(j: &PrefetchJob) -> Markup {
    html! {
        @if j.resolved {
            progress max=(j.bytes_total.max(1)) value=(j.bytes_done.min(j.bytes_total)) {}
            " " (size(j.bytes_done)) " of " (size(j.bytes_total)) ", "
            (j.blobs_done) " of " (j.blobs_total) " blob(s)"
        } @else {
            progress {}
            " " (j.manifests) " manifest(s) so far"
        }
    }
}

/// `GET /ui/cache/prefetch/{id}`: a job's progress, reloading itself while
/// it runs.
pub async fn prefetch_job(ctx: &Ctx<'_>, id: &str) -> Reply {
    let j = ctx.api.registry.prefetch_job(&ctx.id, id)?;
    let body = html! {
        h1 { "Prefetch " code { (j.image) } }
        div.card id="prefetch-job" data-state=(format!("{:?}", j.state).to_lowercase()) {
            div { "State: " (job_state(&j)) }
            div { (job_progress(&j)) }
            div.muted { "Started " (time(Some(j.started_at))) @if let Some(t) = j.finished_at { ", ended " (time(Some(t))) } }
            @if let (Some(repo), Some(d)) = (&j.repository, &j.digest) {
                div { "Cached as " code { (repo) "@" (d) } @if j.pin { " (pinned)" } }
            }
            @if let Some(e) = &j.error { (notice("error", html! { (e) })) }
        }
        @if j.state == JobState::Running { p.muted { "This page reloads itself until the prefetch ends." } }
        p { a href="/ui/cache" { "Back to the cache" } }
    };
    let title = "Prefetch";
    Ok(html(match j.state {
        JobState::Running => page_refreshing(ctx, Nav::Cache, title, 1, body),
        _ => page(ctx, Nav::Cache, title, body),
    }))
}

fn jobs(list: &[PrefetchJob]) -> Markup {
    html! {
        @if !list.is_empty() {
            h2 { "Recent prefetches" }
            table {
                thead { tr { th { "Image" } th { "State" } th { "Progress" } th { "Started" } } }
                tbody {
                    @for j in list.iter().take(RECENT_JOBS) {
                        tr {
                            td { a href=(format!("/ui/cache/prefetch/{}", enc(&j.id))) { (j.image) } }
                            td { (job_state(j)) @if let Some(e) = &j.error { div.muted { (e) } } }
                            td { (size(j.bytes_done)) " of " (size(j.bytes_total)) ", " (j.blobs_done) "/" (j.blobs_total) " blobs" }
                            td { (time(Some(j.started_at))) }
                        }
                    }
                }
            }
        }
    }
}

fn gc_report(rep: &GcReport) -> Markup {
    html! {
        div.card {
            @if rep.dry_run { strong { "Dry run: nothing was removed." } br; }
            (rep.blobs_removed) " blob(s), " (size(rep.bytes_freed)) (if rep.dry_run { " would be freed" } else { " freed" })
            "; " (rep.blobs_in_grace) " blob(s) younger than the grace period kept; "
            (rep.blobs_total) " blob(s) in total, " (rep.repositories) " repositories, " (rep.duration_ms) " ms"
            @if !rep.removed.is_empty() {
                details { summary { "Blobs" } ul { @for b in &rep.removed { li.mono { (b.digest) " (" (size(b.size)) ")" } } } }
            }
        }
    }
}

fn gc_buttons(ctx: &Ctx) -> Markup {
    html! {
        form.inline method="post" action="/ui/storage/gc" {
            (csrf_field(ctx))
            input type="hidden" name="dry_run" value="1";
            button type="submit" { "GC dry run" }
        }
        " "
        form.inline method="post" action="/ui/storage/gc" {
            (csrf_field(ctx))
            button.danger type="submit" { "Run GC" }
        }
    }
}

/// `GET /ui/storage`
pub async fn storage(ctx: &Ctx<'_>) -> Reply {
    let v = ctx
        .api
        .registry
        .storage_view(&ctx.id, ctx.api.metrics.store_totals())
        .await?;
    let body = html! {
        h1 { "Storage" }
        div.card {
            "Content: " (v.bytes.map(size).unwrap_or_else(|| "not scanned yet".into()))
            " in " (v.blobs.map(|b| b.to_string()).unwrap_or_else(|| "?".into())) " blobs, "
            (v.repositories) " repositories"
        }
        h2 { "Garbage collection" }
        (last_run(v.last_gc.as_ref(), "No GC has run yet.", false))
        p { "Run a dry run first: it shows what a GC would remove." }
        (gc_buttons(ctx))
        h2 { "Cache eviction" }
        (last_run(v.last_eviction.as_ref(), "Nothing has been evicted yet (evictions run when a cache cap is exceeded, or on a purge).", true))
    };
    Ok(html(page(ctx, Nav::Storage, "Storage", body)))
}

/// The last GC or eviction run (`images`: eviction counts images too).
fn last_run(run: Option<&LastRun>, none: &str, images: bool) -> Markup {
    let Some(r) = run else {
        return html! { p.muted { (none) } };
    };
    html! {
        div.card.last-run {
            "Last: " (time(Some(r.at))) " (" (r.trigger) ")"
            @if r.dry_run { " " strong { "dry run" } }
            br;
            @if images { (r.images_removed) " image(s), " }
            (r.blobs_removed) " blob(s), " (size(r.bytes_freed)) (if r.dry_run { " would be freed" } else { " freed" })
            " in " (r.duration_ms) " ms"
        }
    }
}

/// `POST /ui/storage/gc`
pub async fn gc(ctx: &Ctx<'_>, f: Form) -> Reply {
    let dry_run = f.checked("dry_run");
    let rep = ctx
        .api
        .registry
        .gc(
            &ctx.id,
            GcRequest {
                dry_run,
                grace: None,
            },
        )
        .await?;
    let body = html! {
        h1 { @if dry_run { "GC dry run" } @else { "GC done" } }
        (gc_report(&rep))
        @if dry_run { p { "Remove them now?" } (gc_buttons(ctx)) }
        p { a href="/ui/storage" { "Back to storage" } }
    };
    Ok(html(page(ctx, Nav::Storage, "Garbage collection", body)))
}
