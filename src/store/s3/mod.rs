//! The S3 backend: every key of [`super::layout`] is an object under the
//! configured prefix of one bucket.
//!
//! - Small objects: `PutObject` replaces atomically. `create` is a HEAD
//!   then a PUT: Garage ignores conditional writes (`If-None-Match`, see
//!   tests/garage_facts.rs), so two processes creating the same key at the
//!   same instant may both believe they created it, and the second write
//!   wins. Within one process the callers that need create-once (the token
//!   key, robots) run at start-up or under their own lock.
//! - Blobs arrive through [`sink::S3Sink`]: multipart parts of
//!   `part_size`, hashed by the writer while streaming; nothing appears
//!   under a digest key before the digest matched (the upload completes to
//!   a temp or session key, then `CopyObject` puts it under the digest key:
//!   one atomic step, metadata only on Garage).
//! - Serving: `BlobData::Remote`, a ranged `GetObject` per request; with
//!   `redirect`, a presigned `GetObject` URL the client follows itself
//!   ([`BlobBackend::direct_url`]), built and signed for
//!   `redirect_endpoint` when the clients reach the store under another
//!   address than wharf does.
//! - Copies above `multipart_copy_threshold` (5 GiB, AWS's `CopyObject`
//!   limit) are multipart copies ([`copy`]): `UploadPartCopy` of ranges,
//!   aborted on failure.
//! - Modification times are the objects' `LastModified`; `touch` copies an
//!   object onto itself.
//! - Cleanup aborts multipart uploads that no live sink or session owns and
//!   deletes stale temp objects.

mod client;
mod copy;
mod part;
mod sink;

use std::collections::HashSet;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream as SdkStream;
use bytes::Bytes;

pub use client::ConnectError;
use client::{io_err, status};

use super::backend::{
    BlobBackend, BlobData, BlobSink, ByteStream, DirectUrl, ObjectMeta, ObjectStore, RangeSource,
    SinkAt,
};
use super::fs::FsBackend;
use super::layout;
use crate::config::S3Storage;
use crate::oci::Digest;
use crate::secrets::SecretString;

/// Why an S3 store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("local spool directory: {0}")]
    Local(#[from] super::StoreError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
}

/// S3 answers at most this many keys per listing page.
const PAGE: i32 = 1000;

/// The S3 backend handle (cheap to clone).
#[derive(Clone)]
pub struct S3Backend {
    inner: Arc<Inner>,
}

struct Inner {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    part_size: usize,
    /// Lifetime of presigned redirect URLs; `None`: no redirects.
    redirect: Option<Duration>,
    /// Presigns redirect URLs (for `redirect_endpoint` when set).
    presigner: aws_sdk_s3::Client,
    /// Objects above this size are copied with a multipart copy.
    copy_threshold: u64,
    /// Local spool files of pull-through fetches (followers read them).
    spool: FsBackend,
    /// Multipart uploads of temp sinks alive in this process (cleanup
    /// never aborts them).
    live: Mutex<HashSet<String>>,
}

impl S3Backend {
    /// Connect to the bucket of `cfg` (checked with a HEAD) with `keys` or
    /// the AWS default chain; `spool` holds local spool files.
    pub async fn connect(
        cfg: &S3Storage,
        keys: Option<(String, SecretString)>,
        spool: FsBackend,
    ) -> Result<S3Backend, ConnectError> {
        let client = client::client(cfg, keys).await?;
        client::check_bucket(&client, cfg).await?;
        Ok(S3Backend {
            inner: Arc::new(Inner {
                presigner: client::presigner(&client, cfg),
                client,
                bucket: cfg.bucket.clone(),
                prefix: cfg.prefix.clone(),
                part_size: cfg.part_size as usize,
                redirect: cfg.redirect,
                copy_threshold: cfg.multipart_copy_threshold,
                spool,
                live: Mutex::new(HashSet::new()),
            }),
        })
    }

    fn s3(&self) -> &aws_sdk_s3::Client {
        &self.inner.client
    }

    fn bucket(&self) -> &str {
        &self.inner.bucket
    }

    /// Multipart uploads this process is writing (cleanup leaves them).
    fn live(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.inner.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The object key of store key `key`.
    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.inner.prefix)
    }

    /// The store key of object key `full`.
    fn relative<'k>(&self, full: &'k str) -> Option<&'k str> {
        full.strip_prefix(self.inner.prefix.as_str())
    }

    async fn head(&self, key: &str) -> io::Result<Option<ObjectMeta>> {
        match self
            .s3()
            .head_object()
            .bucket(self.bucket())
            .key(self.full(key))
            .send()
            .await
        {
            Ok(o) => Ok(Some(ObjectMeta {
                size: o.content_length().unwrap_or(0).max(0) as u64,
                modified: o
                    .last_modified()
                    .and_then(|t| SystemTime::try_from(*t).ok())
                    .unwrap_or(SystemTime::UNIX_EPOCH),
            })),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(io_err("HEAD", key, e)),
        }
    }

    async fn put_bytes(&self, key: &str, bytes: Bytes) -> io::Result<()> {
        self.s3()
            .put_object()
            .bucket(self.bucket())
            .key(self.full(key))
            .body(SdkStream::from(bytes))
            .send()
            .await
            .map_err(|e| io_err("PUT", key, e))?;
        Ok(())
    }

    async fn delete_key(&self, key: &str) -> io::Result<()> {
        self.s3()
            .delete_object()
            .bucket(self.bucket())
            .key(self.full(key))
            .send()
            .await
            .map_err(|e| io_err("DELETE", key, e))?;
        Ok(())
    }

    /// `x-amz-copy-source` of store key `from`.
    fn copy_source(&self, from: &str) -> String {
        format!("{}/{}", self.bucket(), encode_key(&self.full(from)))
    }

    /// Copy `from` (of `size` bytes) to `to` (both store keys); onto
    /// itself, this refreshes the modification time. Above the copy
    /// threshold, a multipart copy.
    async fn copy(&self, from: &str, to: &str, size: u64) -> io::Result<()> {
        if size > self.inner.copy_threshold {
            return copy::multipart(self, from, to, size).await;
        }
        let source = self.copy_source(from);
        let mut req = self
            .s3()
            .copy_object()
            .bucket(self.bucket())
            .key(self.full(to))
            .copy_source(source);
        if from == to {
            req = req.metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace);
        }
        req.send().await.map_err(|e| io_err("COPY", to, e))?;
        Ok(())
    }

    /// Every object under store prefix `dir` (no delimiter): (store key,
    /// meta).
    async fn list_all(&self, dir: &str) -> io::Result<Vec<(String, ObjectMeta)>> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .s3()
                .list_objects_v2()
                .bucket(self.bucket())
                .prefix(self.full(dir))
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| io_err("LIST", dir, e))?;
            for o in page.contents() {
                let Some(k) = o.key().and_then(|k| self.relative(k)) else {
                    continue;
                };
                let modified = o
                    .last_modified()
                    .and_then(|t| SystemTime::try_from(*t).ok())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                out.push((
                    k.to_string(),
                    ObjectMeta {
                        size: o.size().unwrap_or(0).max(0) as u64,
                        modified,
                    },
                ));
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    /// Multipart uploads in progress under store prefix `dir`: (store key,
    /// upload id, initiated).
    async fn multipart_uploads(&self, dir: &str) -> io::Result<Vec<(String, String, SystemTime)>> {
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker) = (None, None);
        loop {
            let page = self
                .s3()
                .list_multipart_uploads()
                .bucket(self.bucket())
                .prefix(self.full(dir))
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| io_err("LIST uploads", dir, e))?;
            for u in page.uploads() {
                let (Some(k), Some(id)) = (u.key().and_then(|k| self.relative(k)), u.upload_id())
                else {
                    continue;
                };
                let t = u
                    .initiated()
                    .and_then(|t| SystemTime::try_from(*t).ok())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                out.push((k.to_string(), id.to_string(), t));
            }
            if page.is_truncated() != Some(true) || page.next_key_marker().is_none() {
                return Ok(out);
            }
            key_marker = page.next_key_marker().map(str::to_string);
            id_marker = page.next_upload_id_marker().map(str::to_string);
        }
    }

    /// Start a multipart upload at store key `key`; returns its id.
    async fn create_multipart(&self, key: &str) -> io::Result<String> {
        let out = self
            .s3()
            .create_multipart_upload()
            .bucket(self.bucket())
            .key(self.full(key))
            .send()
            .await
            .map_err(|e| io_err("CREATE multipart", key, e))?;
        Ok(out
            .upload_id()
            .ok_or_else(|| io::Error::other("S3 answered no UploadId"))?
            .to_string())
    }

    /// Complete multipart upload `upload` at `key` from the ETags of parts
    /// 1..=n.
    async fn complete_multipart(
        &self,
        key: &str,
        upload: &str,
        etags: &[String],
    ) -> io::Result<()> {
        use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
        let parts = etags
            .iter()
            .enumerate()
            .map(|(i, e)| {
                CompletedPart::builder()
                    .part_number(i as i32 + 1)
                    .e_tag(e)
                    .build()
            })
            .collect();
        self.s3()
            .complete_multipart_upload()
            .bucket(self.bucket())
            .key(self.full(key))
            .upload_id(upload)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| io_err("COMPLETE multipart", key, e))?;
        Ok(())
    }

    async fn abort(&self, key: &str, upload_id: &str) -> io::Result<()> {
        match self
            .s3()
            .abort_multipart_upload()
            .bucket(self.bucket())
            .key(self.full(key))
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(404) => Ok(()),
            Err(e) => Err(io_err("ABORT", key, e)),
        }
    }

    /// A ranged reader of the object at store key `key` of `len` bytes.
    fn remote(&self, key: String, len: u64) -> BlobData {
        BlobData::Remote {
            source: Arc::new(Object {
                backend: self.clone(),
                key,
            }),
            len,
        }
    }
}

/// Percent-encode a key for `x-amz-copy-source` (keeps `/`).
fn encode_key(k: &str) -> String {
    let mut out = String::with_capacity(k.len());
    for b in k.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Names directly under a listed directory: keys and sub-directories
/// (ending in `/`) relative to it, sorted bytewise, after `after`.
fn merge_names(mut names: Vec<String>, after: Option<&str>) -> Vec<String> {
    names.sort();
    names.dedup();
    if let Some(a) = after {
        names.retain(|n| n.as_str() > a);
    }
    names
}

/// One stored object, read in ranges.
struct Object {
    backend: S3Backend,
    key: String,
}

#[async_trait]
impl RangeSource for Object {
    async fn read(&self, start: u64, len: u64) -> io::Result<ByteStream> {
        use futures_util::StreamExt;
        if len == 0 {
            return Ok(futures_util::stream::empty().boxed());
        }
        let b = &self.backend;
        let out = b
            .s3()
            .get_object()
            .bucket(b.bucket())
            .key(b.full(&self.key))
            .range(format!("bytes={start}-{}", start + len - 1))
            .send()
            .await
            .map_err(|e| io_err("GET", &self.key, e))?;
        let key = self.key.clone();
        let body = futures_util::stream::unfold((out.body, key), |(mut body, key)| async move {
            let item = body.next().await?;
            let item = item.map_err(|e| io::Error::other(format!("S3 GET {key}: {e}")));
            Some((item, (body, key)))
        });
        Ok(body.boxed())
    }
}

#[async_trait]
impl ObjectStore for S3Backend {
    async fn get(&self, key: &str) -> io::Result<Option<Bytes>> {
        let out = match self
            .s3()
            .get_object()
            .bucket(self.bucket())
            .key(self.full(key))
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) if status(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(io_err("GET", key, e)),
        };
        let data = out
            .body
            .collect()
            .await
            .map_err(|e| io::Error::other(format!("S3 GET {key}: {e}")))?;
        Ok(Some(data.into_bytes()))
    }

    async fn put(&self, key: &str, bytes: Bytes) -> io::Result<()> {
        self.put_bytes(key, bytes).await
    }

    async fn create(&self, key: &str, bytes: Bytes) -> io::Result<bool> {
        // Not atomic: Garage ignores If-None-Match (see the module docs).
        if self.head(key).await?.is_some() {
            return Ok(false);
        }
        self.put_bytes(key, bytes).await?;
        Ok(true)
    }

    async fn delete(&self, key: &str) -> io::Result<bool> {
        if self.head(key).await?.is_none() {
            return Ok(false);
        }
        self.delete_key(key).await?;
        Ok(true)
    }

    async fn stat(&self, key: &str) -> io::Result<Option<ObjectMeta>> {
        self.head(key).await
    }

    async fn touch(&self, key: &str) -> io::Result<()> {
        match self.head(key).await? {
            Some(m) if m.size > 0 => self.copy(key, key, m.size).await,
            _ => self.put_bytes(key, Bytes::new()).await,
        }
    }

    async fn list(&self, dir: &str, after: Option<&str>, limit: usize) -> io::Result<Vec<String>> {
        let base = self.full(dir);
        let mut names = Vec::new();
        let mut token = None;
        // A sub-directory `after` is skipped whole: start after its last
        // possible key.
        let start = after.map(|a| {
            if a.ends_with('/') {
                format!("{base}{a}\u{10FFFF}")
            } else {
                format!("{base}{a}")
            }
        });
        loop {
            let page = self
                .s3()
                .list_objects_v2()
                .bucket(self.bucket())
                .prefix(&base)
                .delimiter("/")
                .max_keys(PAGE.min(limit.saturating_add(1).min(i32::MAX as usize) as i32))
                .set_start_after(if token.is_none() { start.clone() } else { None })
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| io_err("LIST", dir, e))?;
            let keys = page.contents().iter().filter_map(|o| o.key());
            let dirs = page.common_prefixes().iter().filter_map(|p| p.prefix());
            names.extend(
                keys.chain(dirs)
                    .filter_map(|k| k.strip_prefix(base.as_str()))
                    .filter(|n| !n.is_empty())
                    .map(str::to_string),
            );
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) && names.len() < limit => {
                    token = Some(t.to_string())
                }
                _ => break,
            }
        }
        let mut names = merge_names(names, after);
        names.truncate(limit);
        Ok(names)
    }

    async fn delete_dir(&self, dir: &str) -> io::Result<()> {
        for (k, _) in self.list_all(dir).await? {
            self.delete_key(&k).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl BlobBackend for S3Backend {
    async fn stat(&self, d: &Digest) -> io::Result<Option<ObjectMeta>> {
        self.head(&layout::blob(d)).await
    }

    async fn open(&self, d: &Digest) -> io::Result<Option<BlobData>> {
        let key = layout::blob(d);
        Ok(self.head(&key).await?.map(|m| self.remote(key, m.size)))
    }

    async fn read_small(&self, d: &Digest) -> io::Result<Option<Bytes>> {
        self.get(&layout::blob(d)).await
    }

    async fn put_small(&self, d: &Digest, bytes: Bytes) -> io::Result<()> {
        let key = layout::blob(d);
        if self.head(&key).await?.is_some() {
            return Ok(());
        }
        self.put_bytes(&key, bytes).await
    }

    async fn sink(&self, at: SinkAt) -> io::Result<Box<dyn BlobSink>> {
        Ok(Box::new(sink::S3Sink::open(self.clone(), at).await?))
    }

    async fn delete(&self, d: &Digest) -> io::Result<bool> {
        ObjectStore::delete(self, &layout::blob(d)).await
    }

    async fn touch(&self, d: &Digest) -> io::Result<()> {
        let key = layout::blob(d);
        let Some(m) = self.head(&key).await? else {
            return Ok(());
        };
        match self.copy(&key, &key, m.size).await {
            Err(_) if self.head(&key).await?.is_none() => Ok(()),
            r => r,
        }
    }

    async fn list(&self) -> io::Result<Vec<(Digest, ObjectMeta)>> {
        let mut out = Vec::new();
        for (k, m) in self.list_all(layout::BLOBS).await? {
            // blobs/<alg>/<xx>/<hex>
            let parts: Vec<&str> = k.split('/').collect();
            if let [_, alg, _, hex] = parts.as_slice() {
                if let Some(d) = layout::blob_digest(alg, hex) {
                    out.push((d, m));
                }
            }
        }
        Ok(out)
    }

    async fn open_upload(&self, _id: &str) -> io::Result<Option<BlobData>> {
        // A session's data is a multipart upload in progress: S3 cannot
        // read it back before it completes.
        Ok(None)
    }

    async fn remove_upload(&self, id: &str) -> io::Result<()> {
        for (k, upload, _) in self.multipart_uploads(&layout::upload_dir(id)).await? {
            self.abort(&k, &upload).await?;
        }
        ObjectStore::delete_dir(self, &layout::upload_dir(id)).await
    }

    async fn direct_url(&self, d: &Digest) -> io::Result<Option<DirectUrl>> {
        let Some(expiry) = self.inner.redirect else {
            return Ok(None);
        };
        let key = layout::blob(d);
        let cfg = aws_sdk_s3::presigning::PresigningConfig::expires_in(expiry)
            .map_err(|e| io::Error::other(format!("presigning {key}: {e}")))?;
        let req = self
            .inner
            .presigner
            .get_object()
            .bucket(self.bucket())
            .key(self.full(&key))
            .presigned(cfg)
            .await
            .map_err(|e| io_err("PRESIGN GET", &key, e))?;
        Ok(Some(DirectUrl::new(req.uri().to_string())))
    }

    async fn free_space(&self) -> io::Result<Option<u64>> {
        Ok(None)
    }

    async fn cleanup_temp(&self, age: Duration) -> io::Result<usize> {
        let old = |t: SystemTime| SystemTime::now().duration_since(t).unwrap_or_default() > age;
        let mut n = 0;
        let live = self.live().clone();
        // Temp uploads of sinks, and multipart copies under digest keys,
        // outlive their writer only after a crash.
        for dir in [layout::TEMP, layout::BLOBS] {
            for (k, upload, t) in self.multipart_uploads(dir).await? {
                if old(t) && !live.contains(&upload) {
                    self.abort(&k, &upload).await?;
                    n += 1;
                }
            }
        }
        // A session's upload outlives its metadata only after a crash.
        for (k, upload, t) in self.multipart_uploads(layout::UPLOADS).await? {
            let Some(id) = k
                .strip_prefix(layout::UPLOADS)
                .and_then(|r| r.split('/').next())
            else {
                continue;
            };
            if old(t) && self.head(&layout::upload_meta(id)).await?.is_none() {
                self.abort(&k, &upload).await?;
                n += 1;
            }
        }
        for (k, m) in self.list_all(layout::TEMP).await? {
            if old(m.modified) {
                self.delete_key(&k).await?;
                n += 1;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_keys() {
        assert_eq!(
            encode_key("p/blobs/sha256/ab/x y+"),
            "p/blobs/sha256/ab/x%20y%2B"
        );
        let names = vec!["b".to_string(), "a/".into(), "a.b".into(), "a/".into()];
        assert_eq!(merge_names(names.clone(), None), ["a.b", "a/", "b"]);
        assert_eq!(merge_names(names, Some("a.b")), ["a/", "b"]);
    }
}
