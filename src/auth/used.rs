//! When each robot was last used: kept in memory for the views, and
//! written through to the store so it survives a restart — at most once
//! per [`SAVE_EVERY`] per robot, so a pull storm does not write per
//! request (a restart may lose up to that much of the newest uses).
//! Writes run in the background and merge with what is saved (the later
//! time wins), so replicas sharing a store never move a time backwards.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::robots::{self, unix_now};
use crate::store::{Store, StoreError};

/// Least time between two saves of one robot's last use.
pub const SAVE_EVERY: Duration = Duration::from_secs(60);

pub struct RobotUse {
    store: Store,
    /// Robot name → last authenticated (unix seconds).
    last: moka::sync::Cache<String, u64>,
    /// Robot name → the last use this process saved.
    saved: Mutex<HashMap<String, u64>>,
    /// One save at a time (each merges with the document).
    writing: Arc<tokio::sync::Mutex<()>>,
}

impl RobotUse {
    /// The saved last uses of `store`'s robots.
    pub async fn load(store: Store) -> Result<RobotUse, StoreError> {
        let saved = robots::load_use(&store).await?;
        let last = moka::sync::Cache::new(100_000);
        for (name, t) in &saved {
            last.insert(name.clone(), *t);
        }
        Ok(RobotUse {
            store,
            last,
            saved: Mutex::new(saved),
            writing: Default::default(),
        })
    }

    pub fn get(&self, name: &str) -> Option<u64> {
        self.last.get(name)
    }

    /// Robot `name` was authenticated now.
    pub fn touch(&self, name: &str) {
        let now = unix_now();
        self.last.insert(name.to_string(), now);
        let due = {
            let mut saved = self.saved.lock().unwrap_or_else(|e| e.into_inner());
            let due = saved
                .get(name)
                .is_none_or(|t| now.saturating_sub(*t) >= SAVE_EVERY.as_secs());
            if due {
                saved.insert(name.to_string(), now);
            }
            due
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if due {
            let (store, writing) = (self.store.clone(), self.writing.clone());
            let used: HashMap<String, u64> = HashMap::from([(name.to_string(), now)]);
            rt.spawn(async move {
                let _one = writing.lock().await;
                if let Err(e) = robots::save_use(&store, &used).await {
                    tracing::warn!(error = %e, "could not save robot last-use times");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn uses_are_saved_once_per_interval_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let u = RobotUse::load(store.clone()).await.unwrap();
        assert_eq!(u.get("ci"), None);
        u.touch("ci");
        let first = u.get("ci").unwrap();
        // The save runs in the background: wait for it.
        for _ in 0..100 {
            if robots::load_use(&store).await.unwrap().contains_key("ci") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            robots::load_use(&store).await.unwrap().get("ci"),
            Some(&first)
        );
        // Within the interval: remembered, not written again.
        assert_eq!(u.saved.lock().unwrap().get("ci"), Some(&first));
        u.touch("ci");
        assert_eq!(u.saved.lock().unwrap().get("ci"), Some(&first));
        let again = RobotUse::load(store).await.unwrap();
        assert_eq!(again.get("ci"), Some(first));
    }
}
