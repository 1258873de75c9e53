//! The operator pages (admins): the pull-through cache (remotes with their
//! counters and credential kinds, never a secret; cached images; pin,
//! unpin, prefetch) and storage (totals, last GC, GC with a dry run
//! first). The registry calls behind `/api/v1/cache`, `/api/v1/storage`,
//! `/api/v1/repositories/.../pins/...`, `/api/v1/prefetch` and
//! `/api/v1/gc`.

use maud::{html, Markup};

use super::layout::{csrf_field, notice, page, size, time, usage, Nav};
use super::web::{html, redirect, Ctx, Form};
use crate::api::mgmt::{parse_digest, parse_repo};
use crate::api::Reply;
use crate::registry::views::{CachedImage, GcReport, GcRequest, PrefetchRequest, RemoteView};

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

/// `POST /ui/cache/prefetch`: waits for the fetch, then reports it.
pub async fn prefetch(ctx: &Ctx<'_>, f: Form) -> Reply {
    let image = f.need("image")?.to_string();
    let rep = ctx
        .api
        .registry
        .prefetch(
            &ctx.id,
            PrefetchRequest {
                image: image.clone(),
                pin: Some(true),
            },
        )
        .await?;
    let text = serde_json::to_string_pretty(&rep).unwrap_or_default();
    let body = html! {
        (notice("flash", html! { "Prefetched and pinned " code { (image) } }))
        pre.card.mono { (text) }
        p { a href="/ui/cache" { "Back to the cache" } }
    };
    Ok(html(page(ctx, Nav::Cache, "Prefetch", body)))
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
        @match &v.last_gc {
            Some(e) => div.card { "Last: " (e.action) " by " (e.actor) " at " (e.time) ", " (e.result)
                @if let Some(d) = &e.details { " " code { (d.to_string()) } } },
            None => p.muted { "No GC recorded in the recent audit log." },
        }
        p { "Run a dry run first: it shows what a GC would remove." }
        (gc_buttons(ctx))
    };
    Ok(html(page(ctx, Nav::Storage, "Storage", body)))
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
