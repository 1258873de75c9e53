//! The last garbage collection and the last cache eviction, each kept as a
//! small document (replaced by the next run) so the dashboard and `GET
//! /api/v1/storage` show them after a restart. GC records itself; the
//! proxy's evictor records evictions and purges. Recording never fails the
//! run it describes: an error is logged.

use serde::{Deserialize, Serialize};

use super::layout::Doc;
use super::{Result, Store, StoreError};

/// Which kind of run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    Gc,
    Eviction,
}

impl RunKind {
    fn doc(self) -> Doc {
        match self {
            RunKind::Gc => Doc::LastGc,
            RunKind::Eviction => Doc::LastEviction,
        }
    }
}

/// What one GC or eviction run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LastRun {
    /// When it ended (RFC 3339 on the wire).
    #[serde(with = "crate::timefmt::rfc3339")]
    pub at: u64,
    /// Nothing was removed; the counts say what would have been.
    pub dry_run: bool,
    /// Why it ran: `api`, `schedule`, `offline` (GC); the cap that was
    /// exceeded (a remote's name, `cache.max_size`) or `purge` (eviction).
    pub trigger: String,
    /// Images evicted (eviction; 0 for GC).
    pub images_removed: usize,
    pub blobs_removed: usize,
    pub bytes_freed: u64,
    pub duration_ms: u64,
}

impl Store {
    /// Keep `run` as the last of its kind (errors are logged only).
    pub async fn record_run(&self, kind: RunKind, run: &LastRun) {
        let res = match serde_json::to_vec_pretty(run) {
            Ok(b) => self.meta().put(kind.doc(), b.into()).await,
            Err(e) => Err(StoreError::Corrupt(e.to_string())),
        };
        if let Err(e) = res {
            tracing::warn!(error = %e, ?kind, "could not record the last run");
        }
    }

    /// The last run of `kind`, if one was recorded.
    pub async fn last_run(&self, kind: RunKind) -> Result<Option<LastRun>> {
        match self.meta().get(kind.doc()).await? {
            None => Ok(None),
            Some(b) => match serde_json::from_slice(&b) {
                Ok(r) => Ok(Some(r)),
                Err(e) => {
                    tracing::warn!(error = %e, ?kind, "ignoring an unreadable last-run record");
                    Ok(None)
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_are_kept_per_kind() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.last_run(RunKind::Eviction).await.unwrap(), None);
        let run = LastRun {
            at: 1_800_000_000,
            trigger: "up".into(),
            images_removed: 2,
            blobs_removed: 3,
            bytes_freed: 4,
            ..LastRun::default()
        };
        s.record_run(RunKind::Eviction, &run).await;
        assert_eq!(s.last_run(RunKind::Eviction).await.unwrap(), Some(run));
        assert_eq!(s.last_run(RunKind::Gc).await.unwrap(), None);
    }
}
