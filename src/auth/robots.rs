//! Robot accounts created through the management API, persisted in
//! `<data_dir>/auth/robots.json` (token hashes only; the token itself is
//! shown once at creation).

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::Perms;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Robot {
    pub name: String,
    /// argon2 PHC string of the token.
    pub token_hash: String,
    pub permissions: BTreeMap<String, Perms>,
    pub created_at: u64,
    /// Unix seconds; `None` never expires.
    pub expires_at: Option<u64>,
    #[serde(default)]
    pub revoked: bool,
    /// Defined in the config file (not revocable through the API).
    #[serde(skip)]
    pub from_config: bool,
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Robot {
    pub fn active(&self) -> bool {
        !self.revoked && self.expires_at.is_none_or(|e| unix_now() < e)
    }
}

/// The persisted robots.
pub struct RobotFile {
    path: PathBuf,
    tmp_dir: PathBuf,
}

impl RobotFile {
    pub fn new(path: PathBuf, tmp_dir: PathBuf) -> RobotFile {
        RobotFile { path, tmp_dir }
    }

    pub fn load(&self) -> io::Result<Vec<Robot>> {
        match std::fs::read(&self.path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| io::Error::other(format!("{} is corrupt: {e}", self.path.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    pub fn save(&self, robots: &[Robot]) -> io::Result<()> {
        let persisted: Vec<&Robot> = robots.iter().filter(|r| !r.from_config).collect();
        let bytes = serde_json::to_vec_pretty(&persisted).map_err(io::Error::other)?;
        let tmp = self.tmp_dir.join(uuid::Uuid::new_v4().to_string());
        crate::store::fsutil::write_atomic(&tmp, &self.path, &bytes)
    }
}
