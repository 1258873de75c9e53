//! [`EventQueue`]: notification events waiting for delivery, per endpoint.
//! Each batch of events is one small object written once and removed once
//! its endpoint took it, so a queue survives restarts and a second backend
//! needs nothing new. The events' shape belongs to `crate::notify`.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::layout;
use super::{Result, Store};

/// The notification-queue facet of a [`Store`].
pub struct EventQueue<'a> {
    store: &'a Store,
}

impl<'a> EventQueue<'a> {
    pub(super) fn new(store: &'a Store) -> EventQueue<'a> {
        EventQueue { store }
    }

    /// Store a batch of `count` events for `endpoint`; returns its id.
    pub async fn append(&self, endpoint: &str, count: usize, batch: Bytes) -> Result<String> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let id = layout::event_batch_id(nanos, rand::random(), count);
        self.store
            .objects()
            .put(&layout::event_batch(endpoint, &id), batch)
            .await?;
        Ok(id)
    }

    /// Ids of up to `limit` batches of `endpoint`, oldest first.
    pub async fn ids(&self, endpoint: &str, limit: usize) -> Result<Vec<String>> {
        let names = self
            .store
            .objects()
            .list(&layout::events_dir(endpoint), None, limit)
            .await?;
        Ok(names
            .iter()
            .filter_map(|n| layout::event_listed_id(n))
            .map(str::to_string)
            .collect())
    }

    /// The batch `id`, `None` when it is gone.
    pub async fn read(&self, endpoint: &str, id: &str) -> Result<Option<Bytes>> {
        Ok(self
            .store
            .objects()
            .get(&layout::event_batch(endpoint, id))
            .await?)
    }

    /// Drop batch `id` (delivered, or dropped as the oldest of a full queue).
    pub async fn remove(&self, endpoint: &str, id: &str) -> Result<()> {
        self.store
            .objects()
            .delete(&layout::event_batch(endpoint, id))
            .await?;
        Ok(())
    }

    /// How many events `endpoint` has queued (read from the batch ids).
    pub async fn pending(&self, endpoint: &str) -> Result<u64> {
        let names = self
            .store
            .objects()
            .list(&layout::events_dir(endpoint), None, usize::MAX)
            .await?;
        Ok(names
            .iter()
            .filter_map(|n| layout::event_listed_id(n))
            .filter_map(layout::event_batch_count)
            .map(|c| c as u64)
            .sum())
    }

    /// How many events batch `id` holds.
    pub fn count_of(id: &str) -> usize {
        layout::event_batch_count(id).unwrap_or(0)
    }
}
