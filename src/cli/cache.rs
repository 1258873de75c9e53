//! The pull-through cache and the store from the command line: `cache
//! list|pin|unpin|purge`, `prefetch`, and `gc` on the running server. The
//! long calls show a spinner on a terminal.

use reqwest::Method;

use super::args::CacheCmd;
use super::client::Client;
use super::manage::{resolve_prefix, short};
use super::output::{human_size, show, table, when, Busy};
use crate::registry::views::{
    CachedImage, EvictReport, GcReport, GcRequest, PinView, PrefetchReport, PrefetchRequest,
};

/// An image argument: `repo`, `repo:tag` or `repo@digest-prefix`.
enum ImageArg<'a> {
    Repo(&'a str),
    Tag(&'a str, &'a str),
    Digest(&'a str, &'a str),
}

fn parse_image(s: &str) -> ImageArg<'_> {
    if let Some((repo, d)) = s.split_once('@') {
        return ImageArg::Digest(repo, d);
    }
    match s.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => ImageArg::Tag(repo, tag),
        _ => ImageArg::Repo(s),
    }
}

/// `repo` and the reference (tag or full digest) for the server's path.
async fn reference(c: &Client, image: &str) -> Result<(String, String), String> {
    match parse_image(image) {
        ImageArg::Tag(repo, tag) => Ok((repo.into(), tag.into())),
        ImageArg::Digest(repo, d) if d.parse::<crate::oci::Digest>().is_ok() => {
            Ok((repo.into(), d.into()))
        }
        ImageArg::Digest(repo, prefix) => {
            let all: Vec<CachedImage> = c.get("cache").await?;
            let ds = all
                .into_iter()
                .filter(|i| i.repository == repo)
                .map(|i| i.artifact.digest.to_string());
            Ok((repo.into(), resolve_prefix(repo, prefix, ds)?))
        }
        ImageArg::Repo(_) => Err(format!("give {image}:<tag> or {image}@<digest>")),
    }
}

pub async fn cache(c: &Client, cmd: CacheCmd) -> Result<(), String> {
    match cmd {
        CacheCmd::List { prefix } => list(c, prefix.as_deref()).await,
        CacheCmd::Pin { image } => pin(c, &image, true).await,
        CacheCmd::Unpin { image } => pin(c, &image, false).await,
        CacheCmd::Purge { image } => purge(c, &image).await,
    }
}

async fn list(c: &Client, prefix: Option<&str>) -> Result<(), String> {
    let mut v: Vec<CachedImage> = c.get("cache").await?;
    v.retain(|i| prefix.is_none_or(|p| i.repository.starts_with(p)));
    show(c.conn.json, &v, |v| {
        let rows = v
            .iter()
            .map(|i| {
                let a = &i.artifact;
                vec![
                    i.repository.clone(),
                    short(&a.digest.to_string()),
                    if a.tags.is_empty() {
                        "-".into()
                    } else {
                        a.tags.join(",")
                    },
                    human_size(a.size),
                    when(Some(a.pushed_at)),
                    when(a.last_pulled_at),
                    if i.pinned { "pinned" } else { "" }.into(),
                ]
            })
            .collect();
        table(
            &[
                "REPOSITORY",
                "DIGEST",
                "TAGS",
                "SIZE",
                "CACHED",
                "LAST PULLED",
                "PIN",
            ],
            &["SIZE"],
            rows,
        );
    });
    Ok(())
}

async fn pin(c: &Client, image: &str, on: bool) -> Result<(), String> {
    let (repo, r) = reference(c, image).await?;
    let method = if on { Method::PUT } else { Method::DELETE };
    let v: PinView = c
        .call(method, &format!("cache/{repo}/pins/{r}"), None::<&()>)
        .await?;
    show(c.conn.json, &v, |v| {
        let what = if v.pinned { "pinned" } else { "unpinned" };
        println!("{what} {}@{}", v.repository, v.digest);
    });
    Ok(())
}

async fn purge(c: &Client, image: &str) -> Result<(), String> {
    let path = match parse_image(image) {
        ImageArg::Repo(repo) => format!("cache/{repo}"),
        _ => {
            let (repo, r) = reference(c, image).await?;
            format!("cache/{repo}/images/{r}")
        }
    };
    let busy = Busy::start(&format!("purging {image}"));
    let v: EvictReport = c.call(Method::DELETE, &path, None::<&()>).await?;
    drop(busy);
    show(c.conn.json, &v, |v| {
        for e in &v.evicted {
            println!("purged {e}");
        }
        println!(
            "{} image(s) purged, {} blob(s) removed, {} freed",
            v.evicted.len(),
            v.blobs_removed,
            human_size(v.bytes_freed)
        );
    });
    Ok(())
}

pub async fn prefetch(c: &Client, image: String, pin: bool) -> Result<(), String> {
    let body = PrefetchRequest {
        image: image.clone(),
        pin: Some(pin),
    };
    let busy = Busy::start(&format!("prefetching {image}"));
    let v: PrefetchReport = c.call(Method::POST, "prefetch", Some(&body)).await?;
    drop(busy);
    show(c.conn.json, &v, |v| {
        println!(
            "{image} -> {} {}: {} manifests, {} blobs, {}{}",
            v.repository,
            v.digest,
            v.manifests,
            v.blobs,
            human_size(v.bytes),
            if v.pinned { ", pinned" } else { "" }
        );
    });
    Ok(())
}

/// `wharf gc` on the running server (`POST /api/v1/gc`).
pub async fn gc(c: &Client, dry_run: bool, grace: Option<String>) -> Result<(), String> {
    let body = GcRequest { dry_run, grace };
    let busy = Busy::start("collecting garbage");
    let report: GcReport = c.call(Method::POST, "gc", Some(&body)).await?;
    drop(busy);
    show(c.conn.json, &report, super::local::print_gc);
    Ok(())
}
