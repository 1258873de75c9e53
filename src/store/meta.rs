//! [`Meta`]: documents that are not per repository — robots and projects
//! created at run time, the token signing key. The store keeps their bytes;
//! their owners (`auth`, `registry`) define their shape.

use bytes::Bytes;

use super::layout::{self, Doc};
use super::{Result, Store};

/// The document facet of a [`Store`].
pub struct Meta<'a> {
    store: &'a Store,
}

impl<'a> Meta<'a> {
    pub(super) fn new(store: &'a Store) -> Meta<'a> {
        Meta { store }
    }

    pub async fn get(&self, doc: Doc) -> Result<Option<Bytes>> {
        Ok(self.store.objects().get(layout::doc(doc)).await?)
    }

    /// Replace a document atomically.
    pub async fn put(&self, doc: Doc, bytes: Bytes) -> Result<()> {
        Ok(self.store.objects().put(layout::doc(doc), bytes).await?)
    }

    /// The document, created from `init` (kept private) if it does not exist
    /// yet. When two writers race, both end up with the one that was stored.
    pub async fn get_or_create(&self, doc: Doc, init: Bytes) -> Result<Bytes> {
        if let Some(b) = self.get(doc).await? {
            return Ok(b);
        }
        self.store
            .objects()
            .create(layout::doc(doc), init.clone())
            .await?;
        // A shared store may ignore create-only writes: let a racing
        // replica's write land, then everyone reads the one that stayed.
        if let Some(c) = self.store.cluster() {
            tokio::time::sleep(c.settle).await;
        }
        Ok(self.get(doc).await?.unwrap_or(init))
    }
}
