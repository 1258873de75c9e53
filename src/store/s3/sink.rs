//! A blob on its way into the bucket.
//!
//! Bytes gather in a buffer; every full `part_size` becomes a multipart
//! part, uploaded in the background while the next one fills (so memory is
//! at most two parts per sink, whatever the blob's size). The multipart
//! upload targets a temp key (`tmp/<uuid>`) or the session's data key
//! (`uploads/<id>/data`), never a digest key: on `commit` (after the
//! writer verified the digest) it is completed there and copied under the
//! digest key in one `CopyObject`, then the temp object is deleted. A blob
//! smaller than a part is one `PutObject` straight to its digest key.
//!
//! An upload session's checkpoint must be durable, but S3 refuses parts
//! under 5 MiB (except the last): the bytes after the last part are
//! written as a small object `uploads/<id>/tail.<offset>` and the state
//! (upload id, part ETags, bytes in parts) goes into `SinkState.backend`.
//! Resuming reads the tail back; parts or tails past the state (a failed
//! chunk, a crash) are overwritten or ignored.
//!
//! A sha512 push reads its bytes back before the commit
//! ([`BlobSink::contents`]): the multipart upload is completed at its own
//! key (sealed), read with ranged GETs, and `commit` then only copies it.
//! A session sealed by a `PUT` whose commit failed is found complete by the
//! retry (its object holds every byte) and not completed twice.
//!
//! Temp sinks (pull-through fetches) also write a local spool file through
//! the filesystem backend, so followers can read the bytes as they arrive.

use std::io;

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream as SdkStream;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use super::client::io_err;
use super::part::PartBuf;
use super::S3Backend;
use crate::oci::Digest;
use crate::store::backend::{BlobBackend, BlobData, BlobSink, ProgressHook, SinkAt, SinkState};
use crate::store::layout;

/// What an upload session persists of its multipart upload.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Multipart {
    /// Created with the first full part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    upload_id: Option<String>,
    /// ETags of parts 1..=n.
    #[serde(default)]
    parts: Vec<String>,
    /// Bytes in those parts.
    #[serde(default)]
    uploaded: u64,
}

/// Where a sink started (what `rollback` returns to).
struct Base {
    mp: Multipart,
    tail: Bytes,
    offset: u64,
}

pub struct S3Sink {
    backend: S3Backend,
    /// The multipart upload's store key.
    key: String,
    /// The upload session, for a session's sink.
    session: Option<String>,
    mp: Multipart,
    /// Bytes after `mp.uploaded` (less than a part; mapped once per part,
    /// handed to the upload without a copy).
    buf: PartBuf,
    /// The part being uploaded: its ETag when done.
    inflight: Option<JoinHandle<io::Result<String>>>,
    base: Base,
    spool: Option<Box<dyn BlobSink>>,
    written: u64,
    /// The multipart upload was completed at `key` (its contents were read
    /// back: a sha512 push); `commit` only copies it.
    sealed: bool,
    done: bool,
}

fn corrupt(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl S3Sink {
    pub(super) async fn open(backend: S3Backend, at: SinkAt) -> io::Result<S3Sink> {
        let (key, session, spool, mp, tail, offset) = match at {
            SinkAt::Temp => {
                let spool = backend.inner.spool.sink(SinkAt::Temp).await?;
                let key = layout::temp_object(&uuid::Uuid::new_v4().to_string());
                (
                    key,
                    None,
                    Some(spool),
                    Multipart::default(),
                    Bytes::new(),
                    0,
                )
            }
            SinkAt::Upload { id, resume } => {
                let mp: Multipart = match resume.backend {
                    serde_json::Value::Null if resume.offset == 0 => Multipart::default(),
                    serde_json::Value::Null => {
                        return Err(corrupt(format!(
                            "upload {id} has data but no multipart state"
                        )))
                    }
                    v => serde_json::from_value(v)
                        .map_err(|e| corrupt(format!("upload {id}: multipart state: {e}")))?,
                };
                let tail = read_tail(&backend, &id, &mp, resume.offset).await?;
                (
                    layout::upload_data(&id),
                    Some(id),
                    None,
                    mp,
                    tail,
                    resume.offset,
                )
            }
        };
        let part_size = backend.inner.part_size;
        Ok(S3Sink {
            buf: PartBuf::with(&tail, part_size)?,
            base: Base {
                mp: mp.clone(),
                tail,
                offset,
            },
            backend,
            key,
            session,
            mp,
            inflight: None,
            spool,
            written: offset,
            sealed: false,
            done: false,
        })
    }

    fn part_size(&self) -> usize {
        self.backend.inner.part_size
    }

    /// Wait for the part in flight and record its ETag.
    async fn finish_part(&mut self) -> io::Result<()> {
        if let Some(j) = self.inflight.take() {
            let etag = j
                .await
                .map_err(|e| io::Error::other(format!("part upload task failed: {e}")))??;
            self.mp.parts.push(etag);
        }
        Ok(())
    }

    async fn upload_id(&mut self) -> io::Result<String> {
        if let Some(id) = &self.mp.upload_id {
            return Ok(id.clone());
        }
        let id = self.backend.create_multipart(&self.key).await?;
        if self.session.is_none() {
            self.backend.live().insert(id.clone());
        }
        self.mp.upload_id = Some(id.clone());
        Ok(id)
    }

    /// Upload `data` as the next part, in the background.
    async fn start_part(&mut self, data: Bytes) -> io::Result<()> {
        self.finish_part().await?;
        let upload = self.upload_id().await?;
        let n = self.mp.parts.len() as i32 + 1;
        self.mp.uploaded += data.len() as u64;
        let (b, key) = (self.backend.clone(), self.key.clone());
        self.inflight = Some(tokio::spawn(async move {
            upload_part(&b, &key, &upload, n, data).await
        }));
        Ok(())
    }

    /// Complete the multipart upload (with the buffer as its last part).
    async fn complete(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() || self.mp.parts.is_empty() {
            let last = self.buf.take();
            self.start_part(last).await?;
        }
        self.finish_part().await?;
        let upload = self.mp.upload_id.clone().unwrap_or_default();
        self.backend
            .complete_multipart(&self.key, &upload, &self.mp.parts)
            .await
    }

    /// Complete the multipart upload at `key`, so its bytes can be read.
    /// A session sealed by an earlier request whose commit then failed is
    /// complete already (its object has every byte).
    async fn seal(&mut self) -> io::Result<()> {
        if self.sealed {
            return Ok(());
        }
        let earlier = match &self.session {
            Some(_) => self.backend.head(&self.key).await?,
            None => None,
        };
        if earlier.is_none_or(|m| m.size != self.written) {
            self.complete().await?;
        }
        self.sealed = true;
        Ok(())
    }

    fn forget_upload(&self) {
        if let Some(id) = &self.mp.upload_id {
            self.backend.live().remove(id);
        }
    }
}

async fn upload_part(
    b: &S3Backend,
    key: &str,
    upload: &str,
    n: i32,
    data: Bytes,
) -> io::Result<String> {
    let out = b
        .s3()
        .upload_part()
        .bucket(b.bucket())
        .key(b.full(key))
        .upload_id(upload)
        .part_number(n)
        .content_length(data.len() as i64)
        .body(SdkStream::from(data))
        .send()
        .await
        .map_err(|e| io_err("PUT part", key, e))?;
    out.e_tag()
        .map(str::to_string)
        .ok_or_else(|| io::Error::other(format!("S3 PUT part {n} of {key}: no ETag")))
}

/// A session's bytes between its last part and `offset`.
async fn read_tail(b: &S3Backend, id: &str, mp: &Multipart, offset: u64) -> io::Result<Bytes> {
    let len = offset
        .checked_sub(mp.uploaded)
        .ok_or_else(|| corrupt(format!("upload {id}: offset before its parts' end")))?;
    if len == 0 {
        return Ok(Bytes::new());
    }
    use crate::store::backend::ObjectStore;
    match b.get(&layout::upload_tail(id, mp.uploaded)).await? {
        Some(t) if t.len() as u64 >= len => Ok(t.slice(..len as usize)),
        _ => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("upload {id}: data after byte {} vanished", mp.uploaded),
        )),
    }
}

#[async_trait]
impl BlobSink for S3Sink {
    async fn write(&mut self, chunk: Bytes) -> io::Result<()> {
        if let Some(s) = self.spool.as_mut() {
            s.write(chunk.clone()).await?;
        }
        self.written += chunk.len() as u64;
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            let n = self.buf.push(rest)?;
            rest = &rest[n..];
            if self.buf.is_full() {
                let part = self.buf.take();
                self.start_part(part).await?;
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self.spool.as_mut() {
            Some(s) => s.flush().await,
            None => Ok(()),
        }
    }

    async fn checkpoint(&mut self) -> io::Result<SinkState> {
        self.finish_part().await?;
        if let (Some(id), false) = (&self.session, self.buf.is_empty()) {
            use crate::store::backend::ObjectStore;
            let tail = Bytes::copy_from_slice(self.buf.as_slice());
            self.backend
                .put(&layout::upload_tail(id, self.mp.uploaded), tail)
                .await?;
        }
        let backend = serde_json::to_value(&self.mp).map_err(io::Error::other)?;
        Ok(SinkState {
            offset: self.written,
            backend,
        })
    }

    async fn commit(mut self: Box<Self>, d: &Digest) -> io::Result<()> {
        self.finish_part().await?;
        let blob = layout::blob(d);
        let b = self.backend.clone();
        if b.head(&blob).await?.is_some() {
            // Same content committed already: refresh it (GC's grace).
            BlobBackend::touch(&b, d).await?;
            match self.mp.upload_id.clone() {
                _ if self.sealed => b.delete_key(&self.key).await?,
                Some(id) => b.abort(&self.key, &id).await?,
                None => {}
            }
        } else if self.mp.upload_id.is_none() {
            // Smaller than a part: one atomic PUT of verified bytes.
            b.put_bytes(&blob, self.buf.take()).await?;
        } else {
            self.seal().await?;
            b.copy(&self.key, &blob, self.written).await?;
            b.delete_key(&self.key).await?;
        }
        self.forget_upload();
        if let Some(s) = self.spool.as_mut() {
            s.discard();
        }
        self.done = true;
        Ok(())
    }

    async fn rollback(&mut self) -> io::Result<()> {
        if let Some(j) = self.inflight.take() {
            let _ = j.await;
        }
        if let Some(s) = self.spool.as_mut() {
            s.rollback().await?;
        }
        self.mp = self.base.mp.clone();
        self.buf = PartBuf::with(&self.base.tail, self.part_size())?;
        self.written = self.base.offset;
        Ok(())
    }

    fn discard(&mut self) {
        if let Some(s) = self.spool.as_mut() {
            s.discard();
        }
        if self.done {
            return;
        }
        self.done = true;
        if let Some(j) = self.inflight.take() {
            j.abort();
        }
        // A session's upload belongs to the session (removed with it).
        if self.session.is_some() {
            return;
        }
        self.forget_upload();
        if let (Some(id), Ok(rt)) = (
            self.mp.upload_id.clone(),
            tokio::runtime::Handle::try_current(),
        ) {
            let (b, key) = (self.backend.clone(), self.key.clone());
            rt.spawn(async move {
                if let Err(e) = b.abort(&key, &id).await {
                    tracing::warn!(key, error = %e, "could not abort a multipart upload (cleanup retries)");
                }
            });
        }
    }

    fn written(&self) -> u64 {
        self.written
    }

    fn spool(&self) -> Option<std::path::PathBuf> {
        self.spool.as_ref().and_then(|s| s.spool())
    }

    fn on_progress(&mut self, hook: ProgressHook) {
        if let Some(s) = self.spool.as_mut() {
            s.on_progress(hook);
        }
    }

    async fn contents(&mut self) -> io::Result<BlobData> {
        self.finish_part().await?;
        self.seal().await?;
        Ok(self.backend.remote(self.key.clone(), self.written))
    }
}

impl Drop for S3Sink {
    fn drop(&mut self) {
        self.discard();
    }
}
