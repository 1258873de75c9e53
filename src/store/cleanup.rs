//! Removal of abandoned upload sessions and stale temp files.

use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::{blocking, Store};

/// Remove everything inside `dir` (used at start-up on `tmp/`).
pub(super) fn empty_dir(dir: &Path) -> io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            std::fs::remove_dir_all(&p)?;
        } else {
            std::fs::remove_file(&p)?;
        }
    }
    Ok(())
}

fn older_than(p: &Path, age: Duration, now: SystemTime) -> bool {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .map(|t| now.duration_since(t).unwrap_or_default() > age)
        .unwrap_or(false)
}

/// What a cleanup pass removed.
#[derive(Debug, Default, Clone, Copy)]
pub struct CleanupReport {
    pub uploads: usize,
    pub temp_files: usize,
}

impl Store {
    /// Remove upload sessions idle for longer than `upload_age` and temp
    /// files older than `temp_age`. Sessions in use are never touched.
    pub async fn cleanup(&self, upload_age: Duration, temp_age: Duration) -> io::Result<CleanupReport> {
        let layout = self.layout().clone();
        let candidates = blocking(move || {
            let now = SystemTime::now();
            let mut report = CleanupReport::default();
            for e in std::fs::read_dir(layout.tmp_dir())? {
                let p = e?.path();
                if older_than(&p, temp_age, now) && super::fsutil::remove_if_exists(&p)? {
                    report.temp_files += 1;
                }
            }
            let mut stale = Vec::new();
            for e in std::fs::read_dir(layout.uploads_dir())? {
                let e = e?;
                let id = e.file_name().to_string_lossy().into_owned();
                let data = e.path().join("data");
                let probe = if data.exists() { data } else { e.path() };
                if older_than(&probe, upload_age, now) {
                    stale.push(id);
                }
            }
            Ok((report, stale))
        })
        .await?;
        let (mut report, stale) = candidates;
        for id in stale {
            // Atomically: skip it if a request holds it, else close it so a
            // request that already looked it up gets "unknown", not a
            // missing file.
            if !self.claim_idle_session(&id) {
                continue;
            }
            let dir = self.layout().upload_dir(&id);
            match tokio::fs::remove_dir_all(&dir).await {
                Ok(()) => report.uploads += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }
}
