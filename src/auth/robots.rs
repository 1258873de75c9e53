//! Robot accounts created through the management API, persisted in the
//! store's robots document (token hashes only; the token itself is shown
//! once at creation).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::Perms;
use crate::store::{Doc, Store, StoreError};

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
    /// Random, per creation: a robot deleted and created again under the
    /// same name is a new account, and tokens carry the id they were
    /// issued for (empty for config robots and robots made before ids).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Robot {
    pub fn active(&self) -> bool {
        !self.revoked && self.expires_at.is_none_or(|e| unix_now() < e)
    }
}

/// The robots saved in the store (created through the API).
pub async fn load(store: &Store) -> Result<Vec<Robot>, StoreError> {
    match store.meta().get(Doc::Robots).await? {
        Some(b) => serde_json::from_slice(&b)
            .map_err(|e| StoreError::Corrupt(format!("robots document: {e}"))),
        None => Ok(Vec::new()),
    }
}

/// Save the robots that are not from the config file.
pub async fn save(store: &Store, robots: &[Robot]) -> Result<(), StoreError> {
    let persisted: Vec<&Robot> = robots.iter().filter(|r| !r.from_config).collect();
    let bytes =
        serde_json::to_vec_pretty(&persisted).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    store
        .meta()
        .put(Doc::Robots, bytes::Bytes::from(bytes))
        .await
}
