//! Projects: local namespaces with visibility, a quota and a maximum image
//! size. They come from `[[projects]]` in the config and from the
//! management API (persisted in the store's projects document, which wins
//! over the config for a project defined in both).

use std::sync::RwLock;

use bytes::Bytes;

use crate::config::Project;
use crate::store::{Doc, Store, StoreError};

pub struct Projects {
    store: Store,
    list: RwLock<Vec<Project>>,
    /// Projects defined in the config file (they come back on every start,
    /// so the API cannot delete them).
    configured: Vec<Project>,
}

impl Projects {
    /// The configured projects, overlaid with the ones saved in the store.
    pub async fn load(store: Store, configured: &[Project]) -> Result<Projects, StoreError> {
        let list = read(&store, configured).await?;
        Ok(Projects {
            store,
            list: RwLock::new(list),
            configured: configured.to_vec(),
        })
    }

    /// Read the projects document again: projects created, changed or
    /// removed by other replicas sharing the store (run every
    /// `storage.s3.refresh_interval`, and before every change here).
    pub async fn reload(&self) -> Result<(), StoreError> {
        let list = read(&self.store, &self.configured).await?;
        *self.list.write().unwrap_or_else(|e| e.into_inner()) = list;
        Ok(())
    }

    async fn reload_if_shared(&self) -> Result<(), StoreError> {
        match self.store.cluster() {
            Some(_) => self.reload().await,
            None => Ok(()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Project>> {
        self.list.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, name: &str) -> Option<Project> {
        // The list is kept sorted by name.
        let list = self.read();
        list.binary_search_by(|p| p.name.as_str().cmp(name))
            .ok()
            .map(|i| list[i].clone())
    }

    /// Every project, sorted by name.
    pub fn all(&self) -> Vec<Project> {
        self.read().clone()
    }

    /// Whether `name` is defined in the config file.
    pub fn in_config(&self, name: &str) -> bool {
        self.configured.iter().any(|p| p.name == name)
    }

    /// Create or update a project (persisted).
    pub async fn put(&self, p: Project) -> Result<(), StoreError> {
        self.reload_if_shared().await?;
        let all = {
            let mut list = self.list.write().unwrap_or_else(|e| e.into_inner());
            match list.iter_mut().find(|q| q.name == p.name) {
                Some(q) => *q = p,
                None => {
                    list.push(p);
                    list.sort_by(|a, b| a.name.cmp(&b.name));
                }
            }
            list.clone()
        };
        self.save(&all).await
    }

    /// Remove a project defined through the API; returns whether it existed.
    pub async fn remove(&self, name: &str) -> Result<bool, StoreError> {
        self.reload_if_shared().await?;
        let all = {
            let mut list = self.list.write().unwrap_or_else(|e| e.into_inner());
            let before = list.len();
            list.retain(|p| p.name != name);
            if list.len() == before {
                return Ok(false);
            }
            list.clone()
        };
        self.save(&all).await.map(|()| true)
    }

    /// Persist every project (on the next start the saved document wins
    /// over the config for a project in both).
    async fn save(&self, all: &[Project]) -> Result<(), StoreError> {
        let bytes =
            serde_json::to_vec_pretty(all).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.store
            .meta()
            .put(Doc::Projects, Bytes::from(bytes))
            .await
    }
}

/// The configured projects overlaid with the ones saved in the store,
/// sorted by name.
async fn read(store: &Store, configured: &[Project]) -> Result<Vec<Project>, StoreError> {
    let mut list = configured.to_vec();
    if let Some(b) = store.meta().get(Doc::Projects).await? {
        let saved: Vec<Project> = serde_json::from_slice(&b)
            .map_err(|e| StoreError::Corrupt(format!("projects document: {e}")))?;
        for p in saved {
            match list.iter_mut().find(|q| q.name == p.name) {
                Some(q) => *q = p,
                None => list.push(p),
            }
        }
    }
    list.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(list)
}

impl crate::auth::PublicProjects for Projects {
    fn is_public(&self, name: &str) -> bool {
        self.get(name).is_some_and(|p| p.public)
    }
}
