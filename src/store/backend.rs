//! What a storage backend implements: two small traits.
//!
//! - [`ObjectStore`]: small objects by key (tags, links, session metadata,
//!   robots, projects, the token key). Every write is atomic and durable
//!   when it returns; a listing is sorted bytewise.
//! - [`BlobBackend`]: content by digest, streamed in and out, written only
//!   through a [`BlobSink`] whose `commit` is the one way a blob appears.
//!
//! Everything above (repositories, uploads, GC, usage) is written once
//! against these traits; keys come from [`super::layout`]. The filesystem
//! backend is [`super::fs`]; an object-storage backend implements the same
//! two traits.

use std::io;
use std::path::PathBuf;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::oci::Digest;

/// Size and modification time of an object or blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    pub modified: SystemTime,
}

/// Small objects by key. Keys are `/`-separated relative paths built by
/// [`super::layout`]; a "directory" is a key prefix ending in `/`.
#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// The object's bytes, `None` when absent.
    async fn get(&self, key: &str) -> io::Result<Option<Bytes>>;
    /// Replace the object atomically (readers see the old or the new bytes,
    /// never a mix); durable when this returns.
    async fn put(&self, key: &str, bytes: Bytes) -> io::Result<()>;
    /// Create the object only if it does not exist; returns whether this call
    /// created it. The object is private to wharf (mode 0600 on disk).
    async fn create(&self, key: &str, bytes: Bytes) -> io::Result<bool>;
    /// Remove the object; returns whether it existed.
    async fn delete(&self, key: &str) -> io::Result<bool>;
    async fn stat(&self, key: &str) -> io::Result<Option<ObjectMeta>>;
    /// Set the modification time to now (creating an empty object if absent).
    async fn touch(&self, key: &str) -> io::Result<()>;
    /// Names directly under `dir`, sorted bytewise; sub-directories end in
    /// `/`. Only names after `after` (exclusive), at most `limit`.
    async fn list(&self, dir: &str, after: Option<&str>, limit: usize) -> io::Result<Vec<String>>;
    /// Remove everything under `dir`.
    async fn delete_dir(&self, dir: &str) -> io::Result<()>;
}

/// How a stored blob is read.
pub enum BlobData {
    /// A local file of `len` bytes (served with positional reads).
    File { file: std::fs::File, len: u64 },
    /// A remote object of `len` bytes, streamed in ranges (object storage).
    Remote {
        source: std::sync::Arc<dyn RangeSource>,
        len: u64,
    },
}

/// A URL from which a client may GET a blob itself (a presigned URL of the
/// object store). It carries a signature: `Debug` prints only its scheme,
/// host and path, and nothing should log [`DirectUrl::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct DirectUrl(String);

impl DirectUrl {
    pub fn new(url: String) -> DirectUrl {
        DirectUrl(url)
    }

    /// The whole URL, signature included (for the `Location` header only).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for DirectUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bare = self.0.split(['?', '#']).next().unwrap_or_default();
        write!(f, "DirectUrl({bare}?<signed>)")
    }
}

/// A stream of a blob's bytes.
pub type ByteStream = futures_util::stream::BoxStream<'static, io::Result<Bytes>>;

/// Reads ranges of one stored object (one request per range).
#[async_trait]
pub trait RangeSource: Send + Sync {
    /// Bytes `[start, start + len)`, streamed.
    async fn read(&self, start: u64, len: u64) -> io::Result<ByteStream>;
}

impl BlobData {
    pub fn len(&self) -> u64 {
        match self {
            BlobData::File { len, .. } | BlobData::Remote { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where a sink writes before its commit.
#[derive(Debug, Clone)]
pub enum SinkAt {
    /// A fresh temporary object, removed unless committed.
    Temp,
    /// The data of upload session `id`, continuing from `resume` (bytes past
    /// the state's offset are dropped: that is how a failed chunk is rolled
    /// back).
    Upload { id: String, resume: SinkState },
}

/// What a backend needs to continue a session's data (persisted with the
/// session).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SinkState {
    /// Bytes durably written.
    pub offset: u64,
    /// Backend-specific (e.g. a multipart upload id and its parts).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub backend: serde_json::Value,
}

/// Called with the number of bytes that readers of the spool can now read.
pub type ProgressHook = Box<dyn Fn(u64) + Send + Sync>;

/// Content on its way into the blob store.
#[async_trait]
pub trait BlobSink: Send {
    /// Append bytes (they may be written in the background; errors surface
    /// on a later call at the latest on `checkpoint`/`commit`).
    async fn write(&mut self, chunk: Bytes) -> io::Result<()>;
    /// Put everything written into the spool (not necessarily durable yet).
    async fn flush(&mut self) -> io::Result<()>;
    /// Make everything written durable; the returned state resumes here.
    async fn checkpoint(&mut self) -> io::Result<SinkState>;
    /// Make the bytes blob `d` (the caller verified the digest). If the blob
    /// exists already, this copy is dropped and the existing one refreshed.
    async fn commit(self: Box<Self>, d: &Digest) -> io::Result<()>;
    /// Drop what this sink wrote, back to where it started (a session's
    /// failed chunk).
    async fn rollback(&mut self) -> io::Result<()>;
    /// Drop everything written (a temp object is removed; an upload
    /// session's data is left to its owner).
    fn discard(&mut self);
    /// Bytes handed to `write` so far (including what came before a resume).
    fn written(&self) -> u64;
    /// A local file holding the bytes written so far, readable while the
    /// sink grows (followers of a pull-through fetch read it).
    fn spool(&self) -> Option<PathBuf>;
    /// Be told whenever more bytes are readable from [`spool`](Self::spool).
    fn on_progress(&mut self, hook: ProgressHook);
    /// Everything written so far, readable whole (a sha512 push hashes it
    /// again). No `write` may follow; `commit` may.
    async fn contents(&mut self) -> io::Result<BlobData>;
}

/// Content by digest.
#[async_trait]
pub trait BlobBackend: Send + Sync + 'static {
    async fn stat(&self, d: &Digest) -> io::Result<Option<ObjectMeta>>;
    async fn open(&self, d: &Digest) -> io::Result<Option<BlobData>>;
    /// Read a small blob (a manifest) whole.
    async fn read_small(&self, d: &Digest) -> io::Result<Option<Bytes>>;
    /// Store a small blob whose digest the caller computed.
    async fn put_small(&self, d: &Digest, bytes: Bytes) -> io::Result<()>;
    async fn sink(&self, at: SinkAt) -> io::Result<Box<dyn BlobSink>>;
    async fn delete(&self, d: &Digest) -> io::Result<bool>;
    /// Refresh the blob's modification time (GC's grace period).
    async fn touch(&self, d: &Digest) -> io::Result<()>;
    /// Every blob, with its size and modification time.
    async fn list(&self) -> io::Result<Vec<(Digest, ObjectMeta)>>;
    /// An upload session's data as written so far (to hash it again with
    /// another algorithm).
    async fn open_upload(&self, id: &str) -> io::Result<Option<BlobData>>;
    /// Remove an upload session's data.
    async fn remove_upload(&self, id: &str) -> io::Result<()>;
    /// A URL from which a client may fetch committed blob `d` itself, when
    /// the backend is configured to send clients there (S3's `redirect`).
    async fn direct_url(&self, _d: &Digest) -> io::Result<Option<DirectUrl>> {
        Ok(None)
    }
    /// Bytes that can still be written, when the backend knows (a local
    /// disk does; object storage does not).
    async fn free_space(&self) -> io::Result<Option<u64>>;
    /// Remove temp objects older than `age` (writes that never finished);
    /// returns how many.
    async fn cleanup_temp(&self, age: std::time::Duration) -> io::Result<usize>;
}

impl BlobData {
    /// The blob's bytes as a stream of chunks of at most `chunk` bytes
    /// (memory stays flat whatever the blob's size).
    pub async fn into_stream(self, chunk: usize) -> io::Result<ByteStream> {
        use futures_util::StreamExt;
        use tokio::io::AsyncReadExt;
        match self {
            BlobData::File { file, len } => {
                let file = tokio::fs::File::from_std(file).take(len);
                Ok(tokio_util::io::ReaderStream::with_capacity(file, chunk).boxed())
            }
            BlobData::Remote { source, len } => source.read(0, len).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_direct_url_debug_hides_its_signature() {
        let u = DirectUrl::new(
            "http://127.0.0.1:3900/b/blobs/x?X-Amz-Credential=GK1&X-Amz-Signature=abc123".into(),
        );
        let shown = format!("{u:?}");
        assert_eq!(shown, "DirectUrl(http://127.0.0.1:3900/b/blobs/x?<signed>)");
        assert!(u.expose().ends_with("abc123"));
    }
}
