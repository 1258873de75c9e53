//! [`BlobWriter`]: bytes on their way into the blob store, hashed as they
//! pass. [`BlobWriter::commit`] is the only way a blob becomes visible, and
//! it refuses unless the bytes match the digest. A writer dropped before its
//! commit leaves nothing behind (its temp object is removed).
//!
//! Pushes (upload sessions) and pull-through fetches both write through it.

use std::path::PathBuf;

use bytes::Bytes;

use super::backend::{BlobSink, ProgressHook, SinkState};
use super::StoreError;
use crate::oci::{Algorithm, Digest, Hasher, ResumableSha256};

/// The running hash: plain for one-shot writes, resumable for sessions.
enum Running {
    Plain(Hasher),
    Resumable(ResumableSha256),
}

impl Running {
    fn update(&mut self, b: &[u8]) {
        match self {
            Running::Plain(h) => h.update(b),
            Running::Resumable(h) => h.update(b),
        }
    }

    fn digest(&self) -> Digest {
        match self {
            Running::Plain(h) => h.clone().finish(),
            Running::Resumable(h) => h.finish(),
        }
    }

    fn algorithm(&self) -> Algorithm {
        match self {
            Running::Plain(h) => h.algorithm(),
            Running::Resumable(_) => Algorithm::Sha256,
        }
    }
}

/// A blob being written.
pub struct BlobWriter {
    sink: Box<dyn BlobSink>,
    hash: Running,
}

/// Where a resumable writer stands (persisted with its upload session).
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub sink: SinkState,
    /// The saved SHA-256 state of the bytes up to `sink.offset`.
    pub sha256: String,
}

impl BlobWriter {
    /// A one-shot writer hashing with `algorithm`.
    pub(super) fn new(sink: Box<dyn BlobSink>, algorithm: Algorithm) -> BlobWriter {
        BlobWriter {
            sink,
            hash: Running::Plain(Hasher::new(algorithm)),
        }
    }

    /// A writer continuing a session whose bytes so far hashed to `state`.
    pub(super) fn resumed(sink: Box<dyn BlobSink>, state: ResumableSha256) -> BlobWriter {
        BlobWriter {
            sink,
            hash: Running::Resumable(state),
        }
    }

    /// Append bytes.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        self.hash.update(&chunk);
        self.sink.write(chunk).await.map_err(StoreError::from)
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.sink.written()
    }

    /// A local file that holds the bytes written so far, if the backend
    /// keeps one (readers must stay within what the progress hook reported).
    pub fn spool(&self) -> Option<PathBuf> {
        self.sink.spool()
    }

    /// Be told how many bytes the spool holds as it grows.
    pub fn on_progress(&mut self, hook: ProgressHook) {
        self.sink.on_progress(hook);
    }

    /// Put every byte written into the spool (readers may read them all);
    /// not yet durable.
    pub async fn flush(&mut self) -> Result<(), StoreError> {
        Ok(self.sink.flush().await?)
    }

    /// The digest of everything written, hashed again with `alg` (a
    /// sha512 push into a session hashed with SHA-256): the bytes are read
    /// back from the sink in chunks (memory stays flat). No write follows.
    pub(super) async fn rehash(&mut self, alg: Algorithm) -> Result<Digest, StoreError> {
        use futures_util::StreamExt;
        let mut s = self.sink.contents().await?.into_stream(1 << 20).await?;
        let mut h = Hasher::new(alg);
        while let Some(chunk) = s.next().await {
            h.update(&chunk?);
        }
        Ok(h.finish())
    }

    /// The digest of the bytes so far, in the writer's algorithm.
    pub fn digest(&self) -> Digest {
        self.hash.digest()
    }

    /// Drop what was written since the writer was opened or resumed.
    pub(super) async fn rollback(&mut self) -> Result<(), StoreError> {
        Ok(self.sink.rollback().await?)
    }

    /// Make the bytes so far durable; returns what resumes here.
    pub(super) async fn checkpoint(&mut self) -> Result<Checkpoint, StoreError> {
        let sink = self.sink.checkpoint().await?;
        let sha256 = match &self.hash {
            Running::Resumable(h) => h.save(),
            Running::Plain(_) => String::new(),
        };
        Ok(Checkpoint { sink, sha256 })
    }

    /// Check the bytes against `expected` (`actual` overrides the running
    /// hash when the caller hashed with another algorithm: a sha512 push).
    /// On a mismatch nothing is stored.
    pub(super) fn verify_as(
        mut self,
        expected: &Digest,
        actual: Option<Digest>,
    ) -> Result<VerifiedBlob, StoreError> {
        let actual = actual.unwrap_or_else(|| self.hash.digest());
        if &actual != expected {
            self.sink.discard();
            return Err(StoreError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        Ok(VerifiedBlob {
            size: self.sink.written(),
            sink: self.sink,
            digest: expected.clone(),
        })
    }

    /// Check the bytes against `expected`; the blob is not visible until
    /// [`VerifiedBlob::commit`]. On a mismatch nothing is stored.
    pub fn verify(self, expected: &Digest) -> Result<VerifiedBlob, StoreError> {
        if self.hash.algorithm() != expected.algorithm() {
            return Err(StoreError::Corrupt(format!(
                "writer hashes {} but {expected} was expected",
                self.hash.algorithm().as_str()
            )));
        }
        self.verify_as(expected, None)
    }

    /// Verify and commit in one step; the only way a blob becomes visible.
    pub async fn commit(self, expected: &Digest) -> Result<u64, StoreError> {
        self.verify(expected)?.commit().await
    }
}

/// Bytes that matched their digest and may now become that blob (or be
/// dropped: a dropped temp is removed, nothing becomes visible).
pub struct VerifiedBlob {
    sink: Box<dyn BlobSink>,
    digest: Digest,
    size: u64,
}

impl VerifiedBlob {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Make the bytes blob `digest`; returns the size.
    pub async fn commit(self) -> Result<u64, StoreError> {
        self.sink.commit(&self.digest).await?;
        Ok(self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn temp_files(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir.join("tmp")).unwrap().count()
    }

    #[tokio::test]
    async fn commit_on_match_makes_the_blob_visible() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let data = vec![3u8; 1_500_000];
        let d = Digest::sha256_of(&data);
        let mut w = s.blobs().writer(Algorithm::Sha256).await.unwrap();
        for c in data.chunks(100_000) {
            w.write(Bytes::copy_from_slice(c)).await.unwrap();
        }
        assert_eq!(
            s.blobs().size(&d).await.unwrap(),
            None,
            "visible before its commit"
        );
        assert_eq!(w.commit(&d).await.unwrap(), data.len() as u64);
        assert_eq!(s.blobs().read_small(&d).await.unwrap().unwrap(), data);
        assert_eq!(temp_files(dir.path()), 0);
    }

    #[tokio::test]
    async fn a_mismatch_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let claimed = Digest::sha256_of(b"claimed");
        let mut w = s.blobs().writer(Algorithm::Sha256).await.unwrap();
        w.write(Bytes::from_static(b"something else"))
            .await
            .unwrap();
        let e = w.commit(&claimed).await.unwrap_err();
        assert!(matches!(e, StoreError::DigestMismatch { .. }), "{e:?}");
        assert_eq!(s.blobs().size(&claimed).await.unwrap(), None);
        assert_eq!(s.blobs().list().await.unwrap().len(), 0);
        assert_eq!(
            temp_files(dir.path()),
            0,
            "the temp file of a refused blob stayed"
        );
    }

    #[tokio::test]
    async fn a_dropped_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let mut w = s.blobs().writer(Algorithm::Sha256).await.unwrap();
        w.write(Bytes::from(vec![9u8; 2_000_000])).await.unwrap();
        w.flush().await.unwrap();
        assert_eq!(temp_files(dir.path()), 1);
        drop(w);
        assert_eq!(temp_files(dir.path()), 0);
        assert_eq!(s.blobs().list().await.unwrap().len(), 0);
    }
}
