//! Blobs: content files shared by all repositories, and the per-repository
//! links that say a repository may serve them.

use std::io;
use std::path::PathBuf;

use super::fsutil::{commit_file, read_opt, remove_if_exists, write_atomic};
use super::{blocking, Store};
use crate::oci::{Digest, RepoName};

impl Store {
    /// Size of a stored blob, if present.
    pub async fn blob_size(&self, d: &Digest) -> io::Result<Option<u64>> {
        match tokio::fs::metadata(self.layout().blob(d)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Open a stored blob for reading, with its size.
    pub async fn open_blob(&self, d: &Digest) -> io::Result<Option<(tokio::fs::File, u64)>> {
        match tokio::fs::File::open(self.layout().blob(d)).await {
            Ok(f) => {
                let len = f.metadata().await?.len();
                Ok(Some((f, len)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Path of a stored blob (for sendfile-style serving); may not exist.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.layout().blob(d)
    }

    /// Whether `repo` links blob `d` and its content is present.
    pub async fn repo_has_blob(&self, repo: &RepoName, d: &Digest) -> io::Result<bool> {
        let link = self.layout().layer_link(repo, d);
        Ok(tokio::fs::try_exists(link).await.unwrap_or(false) && self.blob_size(d).await?.is_some())
    }

    /// Link an existing blob into `repo` (idempotent).
    pub async fn link_blob(&self, repo: &RepoName, d: &Digest) -> io::Result<()> {
        let link = self.layout().layer_link(repo, d);
        if tokio::fs::try_exists(&link).await.unwrap_or(false) {
            return Ok(());
        }
        let tmp = self.temp_path();
        let r = blocking(move || write_atomic(&tmp, &link, b"")).await;
        self.usage_changed(repo);
        r
    }

    /// Remove `repo`'s link to `d`; the content stays until GC. Returns
    /// whether the link existed.
    pub async fn unlink_blob(&self, repo: &RepoName, d: &Digest) -> io::Result<bool> {
        let link = self.layout().layer_link(repo, d);
        let r = blocking(move || remove_if_exists(&link)).await;
        self.usage_changed(repo);
        r
    }

    /// Move a verified, fsynced file into the blob store. If the blob is
    /// already present (a concurrent push of the same content), the new copy
    /// is discarded: content-addressed files are identical by definition.
    pub async fn commit_blob_file(&self, verified: PathBuf, d: &Digest) -> io::Result<()> {
        let dest = self.layout().blob(d);
        blocking(move || {
            if dest.exists() {
                remove_if_exists(&verified)?;
                // Fresh again: GC's grace period protects a re-pushed blob
                // until the manifest that needs it arrives.
                super::gc::touch(&dest);
                return Ok(());
            }
            commit_file(&verified, &dest)
        })
        .await
    }

    /// Store a small blob (a manifest) whose digest the caller computed.
    pub async fn put_small_blob(&self, d: &Digest, bytes: bytes::Bytes) -> io::Result<()> {
        let dest = self.layout().blob(d);
        if tokio::fs::try_exists(&dest).await.unwrap_or(false) {
            return Ok(());
        }
        let tmp = self.temp_path();
        blocking(move || write_atomic(&tmp, &dest, &bytes)).await
    }

    /// Read a small blob fully (manifests only; blobs are streamed).
    pub async fn read_small_blob(&self, d: &Digest) -> io::Result<Option<bytes::Bytes>> {
        let p = self.layout().blob(d);
        Ok(blocking(move || read_opt(&p)).await?.map(bytes::Bytes::from))
    }
}
