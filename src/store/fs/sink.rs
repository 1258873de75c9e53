//! A blob being written to a local file: a temp file in `tmp/`, or an
//! upload session's `data`.
//!
//! Writes are pipelined: chunks are gathered (as the very `Bytes` the
//! caller received, not copied) until they add up to [`BATCH`] bytes, and
//! while the next batch fills (the caller is receiving from the network),
//! the previous one is written on a blocking-pool thread with one
//! positional vectored write (`pwritev`). At most two batches are held, so
//! memory stays bounded, and a long write never blocks the async threads.
//! Every [`SYNC_EVERY`] bytes an `fdatasync` runs in the background, so
//! the final sync before the commit has little left to flush. Readers of
//! the file (followers of a pull-through fetch) learn through the progress
//! hook how far the file is written.
//!
//! `commit` syncs the file, renames it to the blob's path and syncs the
//! directory; a temp file that is dropped uncommitted is removed.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::task::JoinHandle;

use super::fsutil::{commit_file, remove_if_exists};
use super::FsBackend;
use crate::oci::Digest;
use crate::store::backend::{BlobData, BlobSink, ProgressHook, SinkState};

/// Bytes gathered before a write is handed to the blocking pool.
pub const BATCH: usize = 512 * 1024;
/// Bytes written between background `fdatasync`s.
pub const SYNC_EVERY: u64 = 64 * 1024 * 1024;

/// A write running on the blocking pool; returns its (emptied) list for
/// reuse.
type WriteJob = JoinHandle<io::Result<Vec<Bytes>>>;

/// Largest number of buffers one `pwritev` is given (Linux's `IOV_MAX`).
const MAX_IOV: usize = 1024;

/// Write every byte of `bufs` to `file` at `at` (vectored, positional).
fn write_all_at(file: &std::fs::File, bufs: &[Bytes], mut at: u64) -> io::Result<()> {
    let (mut i, mut skip) = (0, 0);
    while i < bufs.len() {
        let slices: Vec<io::IoSlice<'_>> = std::iter::once(&bufs[i][skip..])
            .chain(bufs[i + 1..].iter().map(|b| &b[..]))
            .take(MAX_IOV)
            .map(io::IoSlice::new)
            .collect();
        let mut n = match rustix::io::pwritev(file, &slices, at) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e == rustix::io::Errno::INTR => continue,
            Err(e) => return Err(e.into()),
        };
        at += n as u64;
        // Advance past what was written.
        while n > 0 {
            let left = bufs[i].len() - skip;
            if n < left {
                skip += n;
                break;
            }
            n -= left;
            (i, skip) = (i + 1, 0);
        }
        while i < bufs.len() && bufs[i].len() == skip {
            (i, skip) = (i + 1, 0);
        }
    }
    Ok(())
}

pub struct FsSink {
    backend: FsBackend,
    path: PathBuf,
    /// A temp file (removed unless committed) or a session's data.
    temp: bool,
    file: Arc<std::fs::File>,
    /// Bytes in the file (durably or in the page cache).
    in_file: u64,
    /// Where this sink started writing (a resumed session's offset).
    base: u64,
    /// Chunks gathered, not yet handed to a write, and their length.
    batch: Vec<Bytes>,
    batch_len: usize,
    /// The other list, back from the last write.
    spare: Option<Vec<Bytes>>,
    /// The write in flight and its length.
    job: Option<(WriteJob, u64)>,
    sync: Option<JoinHandle<io::Result<()>>>,
    synced: u64,
    hook: Option<Arc<ProgressHook>>,
    done: bool,
}

async fn join<T>(h: JoinHandle<io::Result<T>>) -> io::Result<T> {
    h.await
        .map_err(|e| io::Error::other(format!("file write task failed: {e}")))?
}

impl FsSink {
    /// A sink writing `file` (at `path`) from byte `offset` on.
    pub(super) fn new(
        backend: FsBackend,
        path: PathBuf,
        temp: bool,
        file: std::fs::File,
        offset: u64,
    ) -> FsSink {
        FsSink {
            backend,
            path,
            temp,
            file: Arc::new(file),
            in_file: offset,
            base: offset,
            batch: Vec::new(),
            batch_len: 0,
            spare: None,
            job: None,
            sync: None,
            synced: offset,
            hook: None,
            done: false,
        }
    }

    /// Wait for the write in flight; start a background sync when due.
    async fn finish_job(&mut self) -> io::Result<()> {
        let Some((j, n)) = self.job.take() else {
            return Ok(());
        };
        let mut b = join(j).await?;
        b.clear();
        self.spare = Some(b);
        self.in_file += n;
        if self.in_file - self.synced >= SYNC_EVERY
            && self.sync.as_ref().is_none_or(|s| s.is_finished())
        {
            if let Some(s) = self.sync.take() {
                join(s).await?;
            }
            let file = self.file.clone();
            self.sync = Some(tokio::task::spawn_blocking(move || file.sync_data()));
            self.synced = self.in_file;
        }
        Ok(())
    }

    /// Hand the gathered batch to a write (after the previous one ended).
    async fn start_job(&mut self) -> io::Result<()> {
        self.finish_job().await?;
        if self.batch.is_empty() {
            return Ok(());
        }
        let next = self.spare.take().unwrap_or_default();
        let mut full = std::mem::replace(&mut self.batch, next);
        let n = std::mem::take(&mut self.batch_len) as u64;
        let (file, at, hook) = (self.file.clone(), self.in_file, self.hook.clone());
        self.job = Some((
            tokio::task::spawn_blocking(move || {
                write_all_at(&file, &full, at)?;
                // The chunks' memory is free to their owners again.
                full.clear();
                // In the file (page cache): readers may read it now.
                if let Some(h) = hook {
                    h(at + n);
                }
                Ok(full)
            }),
            n,
        ));
        Ok(())
    }

    /// Everything written and in the file, and the file synced.
    async fn drain(&mut self) -> io::Result<()> {
        self.start_job().await?;
        self.finish_job().await?;
        if let Some(s) = self.sync.take() {
            join(s).await?;
        }
        let file = self.file.clone();
        join(tokio::task::spawn_blocking(move || file.sync_data())).await?;
        self.synced = self.in_file;
        Ok(())
    }
}

#[async_trait]
impl BlobSink for FsSink {
    async fn write(&mut self, chunk: Bytes) -> io::Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.batch_len += chunk.len();
        self.batch.push(chunk);
        if self.batch_len >= BATCH {
            self.start_job().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.start_job().await?;
        self.finish_job().await
    }

    async fn rollback(&mut self) -> io::Result<()> {
        self.batch.clear();
        self.batch_len = 0;
        self.finish_job().await?;
        let (file, base) = (self.file.clone(), self.base);
        join(tokio::task::spawn_blocking(move || file.set_len(base))).await?;
        self.in_file = base;
        Ok(())
    }

    async fn checkpoint(&mut self) -> io::Result<SinkState> {
        self.drain().await?;
        Ok(SinkState {
            offset: self.in_file,
            backend: serde_json::Value::Null,
        })
    }

    async fn commit(mut self: Box<Self>, d: &Digest) -> io::Result<()> {
        self.drain().await?;
        let file = self.file.clone();
        join(tokio::task::spawn_blocking(move || file.sync_all())).await?;
        let (src, dest) = (
            self.path.clone(),
            self.backend.path(&crate::store::layout::blob(d)),
        );
        self.done = true;
        tokio::task::spawn_blocking(move || {
            if dest.exists() {
                // A concurrent push of the same content won: identical bytes
                // by definition. Fresh again: GC's grace period protects a
                // re-pushed blob until the manifest that needs it arrives.
                remove_if_exists(&src)?;
                return super::fsutil::touch(&dest);
            }
            commit_file(&src, &dest)
        })
        .await
        .map_err(|e| io::Error::other(format!("commit task failed: {e}")))?
    }

    fn discard(&mut self) {
        if self.temp && !self.done {
            let _ = std::fs::remove_file(&self.path);
        }
        self.done = true;
    }

    fn written(&self) -> u64 {
        self.in_file + self.job.as_ref().map_or(0, |j| j.1) + self.batch_len as u64
    }

    fn spool(&self) -> Option<PathBuf> {
        Some(self.path.clone())
    }

    fn on_progress(&mut self, hook: ProgressHook) {
        self.hook = Some(Arc::new(hook));
    }

    async fn contents(&mut self) -> io::Result<BlobData> {
        self.flush().await?;
        let path = self.path.clone();
        let file = join(tokio::task::spawn_blocking(move || {
            std::fs::File::open(path)
        }))
        .await?;
        Ok(BlobData::File {
            file,
            len: self.in_file,
        })
    }
}

impl Drop for FsSink {
    fn drop(&mut self) {
        self.discard();
    }
}
