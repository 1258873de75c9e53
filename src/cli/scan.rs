//! `wharf scan <repo>@<digest>|<repo>:<tag> [--wait]`: ask the running
//! server to scan an image manifest, optionally wait for the outcome.

use std::time::Duration;

use reqwest::Method;

use super::client::Client;
use super::manage::full_digest;
use super::output::{show, when, Busy};
use crate::registry::scan::{ArtifactView, ScanStatus, ScanSummary};

/// How often `--wait` asks for the state.
const POLL: Duration = Duration::from_millis(500);

/// `<repo>@<digest or prefix>` or `<repo>:<tag>` → repository and digest.
async fn resolve(c: &Client, image: &str) -> Result<(String, String), String> {
    if let Some((repo, prefix)) = image.split_once('@') {
        return Ok((repo.to_string(), full_digest(c, repo, prefix).await?));
    }
    let Some((repo, tag)) = image.rsplit_once(':').filter(|(_, t)| !t.contains('/')) else {
        return Err(format!(
            "{image:?}: name the image as <repository>:<tag> or <repository>@<digest>"
        ));
    };
    let arts: Vec<ArtifactView> = c.get_all(&format!("repositories/{repo}/artifacts")).await?;
    arts.into_iter()
        .find(|a| a.artifact.tags.iter().any(|t| t == tag))
        .map(|a| (repo.to_string(), a.artifact.digest.to_string()))
        .ok_or_else(|| format!("{repo} has no tag {tag}"))
}

pub async fn scan(c: &Client, image: String, wait: bool) -> Result<(), String> {
    let (repo, digest) = resolve(c, &image).await?;
    let path = format!("repositories/{repo}/artifacts/{digest}/scan");
    let mut s: ScanSummary = c.call(Method::POST, &path, None::<&()>).await?;
    if wait {
        let _busy = Busy::start(&format!("scanning {repo}@{digest}"));
        while !s.status.ended() {
            tokio::time::sleep(POLL).await;
            s = c.get(&path).await?;
        }
    }
    show(c.conn.json, &s, |s| print(&repo, &digest, s));
    match (&s.status, &s.reason) {
        (ScanStatus::Failed, Some(r)) => Err(format!("the scan failed: {r}")),
        _ => Ok(()),
    }
}

fn print(repo: &str, digest: &str, s: &ScanSummary) {
    println!("{repo}@{digest}: {} (scanner {})", s.short(), s.scanner);
    if s.status == ScanStatus::Done {
        println!("scanned {}", when(s.scanned_at));
    } else if !s.status.ended() {
        println!("follow it with `wharf scan {repo}@{digest} --wait` or `wharf artifacts {repo}`");
    }
}

/// The SCAN column of `wharf artifacts`.
pub fn column(s: Option<&ScanSummary>) -> String {
    s.map_or_else(|| "-".to_string(), ScanSummary::short)
}
