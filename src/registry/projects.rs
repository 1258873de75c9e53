//! Projects: local namespaces with visibility, a quota and a maximum image
//! size. They come from `[[projects]]` in the config and from the
//! management API (persisted in the store's projects document, which wins
//! over the config for a project defined in both).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use bytes::Bytes;

use crate::config::Project;
use crate::store::{Doc, Store, StoreError, META_WAIT};

pub struct Projects {
    store: Store,
    list: RwLock<Vec<Project>>,
    /// Projects defined in the config file (they come back on every start,
    /// so the API cannot delete them).
    configured: Vec<Project>,
    /// Versions of the projects document read here, in the order they
    /// were read (reads and changes take turns, see `store::meta`): the
    /// last issued, and the one installed in `list` (never an older one).
    seq: (AtomicU64, AtomicU64),
}

impl Projects {
    /// The configured projects, overlaid with the ones saved in the store.
    pub async fn load(store: Store, configured: &[Project]) -> Result<Projects, StoreError> {
        let doc = store.meta().get(Doc::Projects).await?;
        let list = overlay(configured, doc.as_deref())?;
        Ok(Projects {
            store,
            list: RwLock::new(list),
            configured: configured.to_vec(),
            seq: (AtomicU64::new(0), AtomicU64::new(0)),
        })
    }

    /// Read the projects document again: projects created, changed or
    /// removed by other replicas sharing the store (run every
    /// `storage.s3.refresh_interval`).
    pub async fn reload(&self) -> Result<(), StoreError> {
        let (seq, doc) = self
            .store
            .meta()
            .read_in_turn(Doc::Projects, || self.next_seq())
            .await?;
        self.install(overlay(&self.configured, doc.as_deref())?, seq);
        Ok(())
    }

    fn next_seq(&self) -> u64 {
        self.seq.0.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Make `list` (version `seq`) this replica's, unless a newer version
    /// is installed already.
    fn install(&self, list: Vec<Project>, seq: u64) {
        let mut cur = self.list.write().unwrap_or_else(|e| e.into_inner());
        if self.seq.1.load(Ordering::SeqCst) <= seq {
            self.seq.1.store(seq, Ordering::SeqCst);
            *cur = list;
        }
    }

    /// Change the projects: `f` edits the latest list (the configured
    /// projects overlaid with the document read under its lock and lease,
    /// see `store::meta`), which is saved (every project: on the next
    /// start the saved document wins over the config for a project in
    /// both) and becomes this replica's at once.
    async fn change<T>(&self, f: impl FnOnce(&mut Vec<Project>) -> T) -> Result<T, StoreError> {
        let (seq, list, out) = self
            .store
            .meta()
            .update(Doc::Projects, META_WAIT, |doc| {
                let mut list = overlay(&self.configured, doc.as_deref())?;
                let out = f(&mut list);
                let bytes = serde_json::to_vec_pretty(&list)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok::<_, StoreError>((Bytes::from(bytes), (self.next_seq(), list, out)))
            })
            .await?;
        self.install(list, seq);
        Ok(out)
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
        self.change(|list| match list.iter_mut().find(|q| q.name == p.name) {
            Some(q) => *q = p,
            None => {
                list.push(p);
                list.sort_by(|a, b| a.name.cmp(&b.name));
            }
        })
        .await
    }

    /// Remove a project defined through the API; returns whether it existed.
    pub async fn remove(&self, name: &str) -> Result<bool, StoreError> {
        self.change(|list| {
            let before = list.len();
            list.retain(|p| p.name != name);
            list.len() != before
        })
        .await
    }
}

/// The configured projects overlaid with the ones of the projects document
/// `doc`, sorted by name.
fn overlay(configured: &[Project], doc: Option<&[u8]>) -> Result<Vec<Project>, StoreError> {
    let mut list = configured.to_vec();
    if let Some(b) = doc {
        let saved: Vec<Project> = serde_json::from_slice(b)
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
