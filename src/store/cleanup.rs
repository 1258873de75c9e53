//! Removal of abandoned upload sessions and stale temp objects.

use std::time::{Duration, SystemTime};

use super::{Result, Store};

/// What a cleanup pass removed.
#[derive(Debug, Default, Clone, Copy)]
pub struct CleanupReport {
    pub uploads: usize,
    pub temp_files: usize,
}

impl Store {
    /// Remove upload sessions idle for longer than `upload_age` and temp
    /// objects older than `temp_age`. Sessions in use are never touched.
    pub async fn cleanup(&self, upload_age: Duration, temp_age: Duration) -> Result<CleanupReport> {
        let temp_files = self.blob_backend().cleanup_temp(temp_age).await?;
        let now = SystemTime::now();
        let mut uploads = 0;
        for (id, written) in self.uploads().list().await? {
            let idle =
                written.is_some_and(|t| now.duration_since(t).unwrap_or_default() > upload_age);
            if idle && self.uploads().remove_if_idle(&id).await {
                uploads += 1;
            }
        }
        Ok(CleanupReport {
            uploads,
            temp_files,
        })
    }
}
