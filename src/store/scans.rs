//! [`Scans`]: the documents of manifests' vulnerability scans, by digest
//! (a state with the severity summary, and the full report). The store
//! keeps their bytes; `registry::scan` defines their shape.

use bytes::Bytes;

use super::layout::{self, ScanDoc};
use super::{Result, Store};
use crate::oci::Digest;

/// The scan facet of a [`Store`].
pub struct Scans<'a> {
    store: &'a Store,
}

impl<'a> Scans<'a> {
    pub(super) fn new(store: &'a Store) -> Scans<'a> {
        Scans { store }
    }

    pub async fn get(&self, d: &Digest, doc: ScanDoc) -> Result<Option<Bytes>> {
        Ok(self.store.objects().get(&layout::scan_doc(d, doc)).await?)
    }

    /// Replace a document atomically.
    pub async fn put(&self, d: &Digest, doc: ScanDoc, bytes: Bytes) -> Result<()> {
        Ok(self
            .store
            .objects()
            .put(&layout::scan_doc(d, doc), bytes)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn documents_round_trip_per_digest() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let d = Digest::sha256_of(b"m");
        assert!(s.scans().get(&d, ScanDoc::State).await.unwrap().is_none());
        s.scans()
            .put(&d, ScanDoc::State, Bytes::from_static(b"{}"))
            .await
            .unwrap();
        let got = s.scans().get(&d, ScanDoc::State).await.unwrap();
        assert_eq!(got.as_deref(), Some(&b"{}"[..]));
        assert!(s.scans().get(&d, ScanDoc::Report).await.unwrap().is_none());
    }
}
