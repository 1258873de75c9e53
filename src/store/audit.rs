//! [`AuditLog`]: the persistent list of management actions. The store keeps
//! each entry as one small object (so appends never rewrite anything and a
//! second backend needs nothing new), newest first by key; the entry's
//! shape belongs to `registry::audit`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::layout;
use super::{Result, Store};

/// Days listed per call when looking for the next page.
const DAYS_PER_LIST: usize = 1000;

/// The audit facet of a [`Store`].
pub struct AuditLog<'a> {
    store: &'a Store,
}

impl<'a> AuditLog<'a> {
    pub(super) fn new(store: &'a Store) -> AuditLog<'a> {
        AuditLog { store }
    }

    /// A fresh entry id for an action at `at` (ids order newest first).
    pub fn new_id(at: SystemTime) -> String {
        let nanos = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
        layout::audit_id(nanos, rand::random())
    }

    /// Store an entry under `id` (from [`new_id`](Self::new_id)).
    pub async fn append(&self, id: &str, entry: Bytes) -> Result<()> {
        let key = layout::audit_entry(id)
            .ok_or_else(|| super::StoreError::Corrupt(format!("bad audit id {id}")))?;
        Ok(self.store.objects().put(&key, entry).await?)
    }

    /// Up to `limit` entries, newest first, strictly older than the entry
    /// `after` (an id from an earlier page) when given.
    pub async fn page(&self, after: Option<&str>, limit: usize) -> Result<Vec<(String, Bytes)>> {
        let objects = self.store.objects();
        let start_day = after.and_then(layout::audit_day);
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        for day in objects.list(layout::AUDIT, None, DAYS_PER_LIST).await? {
            let dir = format!("{}{day}", layout::AUDIT);
            if start_day.as_ref().is_some_and(|s| dir < *s) {
                continue;
            }
            let from = after
                .filter(|_| start_day.as_deref() == Some(dir.as_str()))
                .map(|id| format!("{id}.json"));
            for name in objects
                .list(&dir, from.as_deref(), limit - out.len())
                .await?
            {
                let Some(id) = layout::audit_listed_id(&name) else {
                    continue;
                };
                if let Some(b) = objects.get(&format!("{dir}{name}")).await? {
                    out.push((id.to_string(), b));
                }
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Remove whole days older than `keep`; returns how many days went.
    pub async fn prune(&self, keep: Duration) -> Result<usize> {
        let oldest_kept = SystemTime::now().checked_sub(keep).unwrap_or(UNIX_EPOCH);
        let cutoff_day = (oldest_kept
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            / 86_400) as u32;
        let objects = self.store.objects();
        let mut removed = 0;
        for day in objects.list(layout::AUDIT, None, DAYS_PER_LIST).await? {
            if layout::audit_dir_day(&day).is_some_and(|d| d < cutoff_day) {
                objects
                    .delete_dir(&format!("{}{day}", layout::AUDIT))
                    .await?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pages_run_newest_first_across_days() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let log = store.audit();
        let day = Duration::from_secs(86_400);
        let t0 = SystemTime::now() - day * 3;
        let mut ids = Vec::new();
        for i in 0..7u32 {
            let at = t0 + day * (i / 3) + Duration::from_secs(u64::from(i));
            let id = AuditLog::new_id(at);
            log.append(&id, Bytes::from(i.to_string())).await.unwrap();
            ids.push(id);
        }
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = log.page(after.as_deref(), 3).await.unwrap();
            if page.is_empty() {
                break;
            }
            after = page.last().map(|(id, _)| id.clone());
            seen.extend(
                page.into_iter()
                    .map(|(_, b)| String::from_utf8(b.to_vec()).unwrap()),
            );
        }
        assert_eq!(seen, ["6", "5", "4", "3", "2", "1", "0"]);
    }

    #[tokio::test]
    async fn prune_drops_old_days_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let log = store.audit();
        let old = SystemTime::now() - Duration::from_secs(10 * 86_400);
        log.append(&AuditLog::new_id(old), Bytes::from_static(b"old"))
            .await
            .unwrap();
        log.append(
            &AuditLog::new_id(SystemTime::now()),
            Bytes::from_static(b"new"),
        )
        .await
        .unwrap();
        assert_eq!(log.prune(Duration::from_secs(5 * 86_400)).await.unwrap(), 1);
        let left = log.page(None, 10).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(&left[0].1[..], b"new");
        assert!(layout::audit_day("../etc/passwd").is_none());
    }
}
