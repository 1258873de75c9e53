//! Keeps the pull-through cache under its caps: each remote's `max_size`
//! and `[cache] max_size` over all remotes together.
//!
//! One background task checks the caps every `cache.evict_interval`, and
//! shortly after fetches ([`fetched`] wakes it; checks are at least
//! [`MIN_GAP`] apart, so a burst of fetches costs one check). A check that
//! finds usage under the cap only sums file sizes; the eviction itself (see
//! [`Store::evict`]) only touches remote namespaces, never projects.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::Remote;
use crate::store::Store;

/// Minimum time between two checks triggered by fetches.
pub const MIN_GAP: Duration = Duration::from_millis(500);

fn wake() -> &'static Notify {
    static N: std::sync::OnceLock<Notify> = std::sync::OnceLock::new();
    N.get_or_init(Notify::new)
}

/// Tell the evictor that cached content grew.
pub fn fetched() {
    wake().notify_one();
}

/// Whether any cap is configured.
pub fn enabled(remotes: &[Arc<Remote>], global: Option<u64>) -> bool {
    global.is_some() || remotes.iter().any(|r| r.max_size.is_some())
}

/// One pass over every cap.
pub async fn check(store: &Store, remotes: &[Arc<Remote>], global: Option<u64>) {
    for r in remotes {
        if let Some(cap) = r.max_size {
            evict_logged(store, std::slice::from_ref(&r.name), cap, &r.name).await;
        }
    }
    if let Some(cap) = global {
        let names: Vec<String> = remotes.iter().map(|r| r.name.clone()).collect();
        evict_logged(store, &names, cap, "cache.max_size").await;
    }
}

/// Evict under `cap` across the cache namespaces `names`; log what went.
/// `scope` names the cap in the log (a remote, or `cache.max_size`).
async fn evict_logged(store: &Store, names: &[String], cap: u64, scope: &str) {
    match store.evict(names, cap).await {
        Ok(rep) if !rep.evicted.is_empty() => tracing::info!(
            scope,
            cap,
            before = rep.usage_before,
            after = rep.usage_after,
            images = rep.evicted.len(),
            bytes_freed = rep.bytes_freed,
            "cache over its cap: evicted least recently pulled images"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(scope, error = %e, "cache eviction failed"),
    }
}

/// Run forever: check on every tick and after fetches.
pub async fn run(store: Store, remotes: Vec<Arc<Remote>>, global: Option<u64>, interval: Duration) {
    if !enabled(&remotes, global) {
        return;
    }
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = wake().notified() => {
                // Let the image's blobs arrive before measuring.
                tokio::time::sleep(MIN_GAP).await;
            }
        }
        check(&store, &remotes, global).await;
    }
}
