//! The pull-through cache and the store as operators see them (the
//! dashboard's cache and storage pages, `GET /api/v1/storage`): remotes
//! with their counters and cached images, storage totals with the last
//! garbage collection. Admins only, like GC and prefetch. Changing the
//! cache (pin, purge) is [`super::cache`].

use std::sync::atomic::Ordering::Relaxed;

use super::views::{CacheView, RemoteView, StorageView};
use super::{Registry, Result};
use crate::auth::Identity;

/// How many audit entries the storage view looks through for the last GC.
const GC_LOOKBACK: usize = 200;

/// What kind of credentials a source is, without any reference or value.
fn credential_kind(s: &crate::secrets::CredentialSource) -> String {
    let d = s.describe();
    d.split([':', ' ']).next().unwrap_or("").to_string()
}

impl Registry {
    /// Every remote with its counters and cached images (admins).
    pub async fn cache_view(&self, id: &Identity) -> Result<CacheView> {
        self.require_admin(id)?;
        let mut remotes = Vec::new();
        let stats = self.proxy.remote_stats();
        for r in self.proxy.router().remotes() {
            let Some((_, p, u)) = stats.iter().find(|(n, _, _)| *n == r.name) else {
                continue;
            };
            let mut credentials: Vec<String> = r
                .credentials
                .iter()
                .map(|c| credential_kind(&c.source))
                .collect();
            if credentials.is_empty() {
                credentials.push("anonymous".into());
            }
            remotes.push(RemoteView {
                name: r.name.clone(),
                url: r.url.to_string(),
                default: r.default,
                credentials,
                max_size: r.max_size,
                usage: self.store.usage(&r.name).await?,
                manifest_hits: p.manifest_hits.load(Relaxed),
                manifest_misses: p.manifest_misses.load(Relaxed),
                blob_hits: p.blob_hits.load(Relaxed),
                blob_misses: p.blob_misses.load(Relaxed),
                stale_served: p.stale_served.load(Relaxed),
                upstream_requests: u.requests.load(Relaxed),
                upstream_errors: u.errors.load(Relaxed),
                upstream_bytes: u.bytes.load(Relaxed),
                last_error: u.last_error(),
                images: self.cached_images_of(&r.name).await?,
            });
        }
        let names: Vec<String> = remotes.iter().map(|r| r.name.clone()).collect();
        Ok(CacheView {
            max_size: self.proxy.evictor().global_cap(),
            usage: self.store.group_usage(&names).await?,
            remotes,
        })
    }

    /// Storage totals (`scanned`: bytes and blobs from the last scan) and
    /// the last GC (admins).
    pub async fn storage_view(
        &self,
        id: &Identity,
        scanned: Option<(u64, u64)>,
    ) -> Result<StorageView> {
        self.require_admin(id)?;
        let page = self.audit_page(id, None, GC_LOOKBACK).await?;
        Ok(StorageView {
            bytes: scanned.map(|s| s.0),
            blobs: scanned.map(|s| s.1),
            repositories: self.store.all_repositories().await?.len(),
            last_gc: page
                .entries
                .into_iter()
                .find(|e| e.action.starts_with("gc.")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_kinds_never_name_the_secret() {
        use crate::secrets::{CredentialSource, Credentials, SecretString};
        let inline = CredentialSource::Inline(Credentials::Basic {
            username: "u".into(),
            password: SecretString::new("hunter2"),
        });
        assert_eq!(credential_kind(&inline), "inline");
    }
}
