//! [`Blobs`]: content by digest, shared by every repository. Which
//! repository may serve a blob is [`super::Repo`]'s business (its links).

use bytes::Bytes;

use super::backend::{BlobData, DirectUrl, ObjectMeta, SinkAt};
use super::{BlobWriter, Result, Store};
use crate::oci::{Algorithm, Digest};

/// How a client's `GET` of a committed blob is answered.
pub enum Delivery {
    /// Wharf serves the bytes.
    Data(BlobData),
    /// The client fetches the blob of `len` bytes from the object store
    /// itself (a presigned URL; `storage.s3.redirect`).
    Redirect { url: DirectUrl, len: u64 },
}

/// The blob facet of a [`Store`].
pub struct Blobs<'a> {
    store: &'a Store,
}

impl<'a> Blobs<'a> {
    pub(super) fn new(store: &'a Store) -> Blobs<'a> {
        Blobs { store }
    }

    /// Size of a stored blob, if present.
    pub async fn size(&self, d: &Digest) -> Result<Option<u64>> {
        Ok(self.store.blob_backend().stat(d).await?.map(|m| m.size))
    }

    pub async fn stat(&self, d: &Digest) -> Result<Option<ObjectMeta>> {
        Ok(self.store.blob_backend().stat(d).await?)
    }

    /// Open a stored blob for reading.
    pub async fn open(&self, d: &Digest) -> Result<Option<BlobData>> {
        Ok(self.store.blob_backend().open(d).await?)
    }

    /// How to answer a client's `GET` of committed blob `d` (never a
    /// `HEAD`: that is answered from the store's metadata): a redirect to
    /// the object store when the backend sends clients there, else the
    /// data. `None` when the blob is absent.
    pub async fn deliver(&self, d: &Digest) -> Result<Option<Delivery>> {
        match self.open(d).await? {
            Some(data) => Ok(Some(self.delivery(d, data).await?)),
            None => Ok(None),
        }
    }

    /// [`Blobs::deliver`] for blob `d` opened as `data`.
    pub async fn delivery(&self, d: &Digest, data: BlobData) -> Result<Delivery> {
        Ok(match self.store.blob_backend().direct_url(d).await? {
            Some(url) => Delivery::Redirect {
                url,
                len: data.len(),
            },
            None => Delivery::Data(data),
        })
    }

    /// Refuse early (`StoreError::Full`) when a blob of `len` bytes cannot
    /// fit on the store's disk, before anything is written.
    pub async fn ensure_room(&self, len: u64) -> Result<()> {
        // What a blob needs, plus room for the small files that follow it.
        const SLACK: u64 = 1 << 20;
        match self.store.blob_backend().free_space().await? {
            Some(free) if free < len.saturating_add(SLACK) => Err(super::StoreError::Full),
            _ => Ok(()),
        }
    }

    /// A writer for a new blob hashed with `algorithm`; nothing is visible
    /// until [`BlobWriter::commit`].
    pub async fn writer(&self, algorithm: Algorithm) -> Result<BlobWriter> {
        let sink = self.store.blob_backend().sink(SinkAt::Temp).await?;
        Ok(BlobWriter::new(sink, algorithm))
    }

    /// Store a small blob (a manifest) whose digest the caller computed
    /// from `bytes`.
    pub async fn put_small(&self, d: &Digest, bytes: Bytes) -> Result<()> {
        self.store.blob_backend().put_small(d, bytes).await?;
        self.store.note_content_changed();
        Ok(())
    }

    /// Read a small blob fully (manifests only; blobs are streamed).
    pub async fn read_small(&self, d: &Digest) -> Result<Option<Bytes>> {
        Ok(self.store.blob_backend().read_small(d).await?)
    }

    /// Remove a blob's content (GC and eviction only).
    pub async fn delete(&self, d: &Digest) -> Result<bool> {
        let gone = self.store.blob_backend().delete(d).await?;
        self.store.note_content_changed();
        Ok(gone)
    }

    /// Refresh a blob's modification time (GC's grace period).
    pub async fn touch(&self, d: &Digest) -> Result<()> {
        Ok(self.store.blob_backend().touch(d).await?)
    }

    /// Every blob with its size and modification time.
    pub async fn list(&self) -> Result<Vec<(Digest, ObjectMeta)>> {
        Ok(self.store.blob_backend().list().await?)
    }

    /// Sum of the sizes of `digests` present in the store.
    pub async fn total_size(&self, digests: impl IntoIterator<Item = &Digest>) -> Result<u64> {
        let mut n = 0;
        for d in digests {
            n += self.size(d).await?.unwrap_or(0);
        }
        Ok(n)
    }
}
