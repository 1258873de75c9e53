//! Robot accounts created through the management API, persisted in the
//! store's robots document (token hashes only; the token itself is shown
//! once at creation), and when each robot (from the API or the config
//! file) was last used, in a document of its own.

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::Perms;
use crate::store::{Doc, Store, StoreError, META_WAIT};

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
    decode(store.meta().get(Doc::Robots).await?.as_deref())
}

/// The robots of a robots document (none when there is none).
pub fn decode(doc: Option<&[u8]>) -> Result<Vec<Robot>, StoreError> {
    match doc {
        Some(b) => serde_json::from_slice(b)
            .map_err(|e| StoreError::Corrupt(format!("robots document: {e}"))),
        None => Ok(Vec::new()),
    }
}

/// The robots document of `robots` (those not from the config file).
pub fn encode(robots: &[Robot]) -> Result<bytes::Bytes, StoreError> {
    let persisted: Vec<&Robot> = robots.iter().filter(|r| !r.from_config).collect();
    let bytes =
        serde_json::to_vec_pretty(&persisted).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(bytes::Bytes::from(bytes))
}

/// `config` robots followed by the `saved` ones whose names they do not
/// take.
pub fn merge(mut config: Vec<Robot>, saved: Vec<Robot>) -> Vec<Robot> {
    for r in saved {
        if !config.iter().any(|c| c.name == r.name) {
            config.push(r);
        }
    }
    config
}

/// When each robot was last authenticated (unix seconds), as saved.
pub async fn load_use(store: &Store) -> Result<HashMap<String, u64>, StoreError> {
    Ok(decode_use(
        store.meta().get(Doc::RobotUse).await?.as_deref(),
    ))
}

fn decode_use(doc: Option<&[u8]>) -> HashMap<String, u64> {
    let Some(b) = doc else {
        return HashMap::new();
    };
    serde_json::from_slice(b).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "ignoring an unreadable robots-used document");
        HashMap::new()
    })
}

/// Merge `used` into the saved last uses (the later time wins, so another
/// replica's newer record is kept) and save them.
pub async fn save_use(store: &Store, used: &HashMap<String, u64>) -> Result<(), StoreError> {
    store
        .meta()
        .update(Doc::RobotUse, META_WAIT, |doc| {
            let mut all = decode_use(doc.as_deref());
            for (name, t) in used {
                let e = all.entry(name.clone()).or_insert(0);
                *e = (*e).max(*t);
            }
            let bytes =
                serde_json::to_vec_pretty(&all).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Ok((bytes::Bytes::from(bytes), ()))
        })
        .await
}
