//! Reading files in large chunks off the async threads, with recycled
//! buffers: how blob files and spool files are served.
//!
//! hyper cannot send a file with `sendfile(2)`: a response body is a stream
//! of `Bytes` that hyper writes to the socket itself, so every byte is
//! copied once from the page cache into user memory and once into the
//! socket. This module keeps everything else off that path:
//!
//! - one positional read (`pread`) per chunk, in a blocking-pool thread,
//!   straight into the buffer that becomes the body chunk (a
//!   `tokio::fs::File` reads into its own buffer and copies from it, and
//!   caps reads at its buffer size);
//! - the buffer of a chunk is reused once hyper has written and dropped
//!   it (`Bytes::try_into_mut`), so a long download neither allocates nor
//!   zeroes memory per chunk. A reader keeps at most [`POOL`] buffers:
//!   memory per download is bounded, whatever the file size.

use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};

/// Buffers a reader recycles: the chunk hyper is writing, the one being
/// read ahead, and one spare while hyper drops the previous one.
pub const POOL: usize = 3;

/// Reads chunks of one file at given offsets.
pub struct ChunkReader {
    file: Arc<File>,
    chunk: usize,
    pool: usize,
    /// Chunks handed out; their buffers are reused once nobody else holds them.
    handed_out: VecDeque<Bytes>,
}

/// A chunk being read (a blocking-pool task).
pub struct PendingRead(tokio::task::JoinHandle<io::Result<BytesMut>>);

impl Future for PendingRead {
    type Output = io::Result<BytesMut>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.0).poll(cx) {
            Poll::Ready(Ok(r)) => Poll::Ready(r),
            Poll::Ready(Err(e)) => {
                Poll::Ready(Err(io::Error::other(format!("file read task failed: {e}"))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl ChunkReader {
    /// A reader of `file` with chunks of at most `chunk` bytes, recycling
    /// up to [`POOL`] buffers (for a reader that reads ahead).
    pub fn new(file: File, chunk: usize) -> ChunkReader {
        ChunkReader::with_pool(file, chunk, POOL)
    }

    /// As [`new`](Self::new), recycling up to `pool` buffers (at least 1).
    pub fn with_pool(file: File, chunk: usize, pool: usize) -> ChunkReader {
        ChunkReader {
            file: Arc::new(file),
            chunk: chunk.max(1),
            pool: pool.max(1),
            handed_out: VecDeque::with_capacity(pool.max(1)),
        }
    }

    /// The largest chunk this reader returns.
    pub fn chunk_size(&self) -> usize {
        self.chunk
    }

    /// A buffer of exactly `len` bytes (`len <= chunk`): a recycled one
    /// if hyper is done with it, else a new one.
    fn buffer(&mut self, len: usize) -> BytesMut {
        for _ in 0..self.handed_out.len() {
            let Some(b) = self.handed_out.pop_front() else {
                break;
            };
            match b.try_into_mut() {
                Ok(mut m) if m.len() >= len => {
                    m.truncate(len);
                    return m;
                }
                // Free now, but too small (a short last chunk): drop it.
                Ok(_) => {}
                Err(b) => self.handed_out.push_back(b),
            }
        }
        BytesMut::zeroed(len)
    }

    /// Start reading `len` bytes (at most the chunk size) at `pos`. The
    /// read fails with `UnexpectedEof` if the file ends first.
    pub fn start(&mut self, pos: u64, len: usize) -> PendingRead {
        let len = len.min(self.chunk);
        let mut buf = self.buffer(len);
        let file = self.file.clone();
        PendingRead(tokio::task::spawn_blocking(move || {
            let mut filled = 0;
            while filled < len {
                match file.read_at(&mut buf[filled..], pos + filled as u64) {
                    Ok(0) => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!(
                                "file ended at {} while {len} bytes were read at {pos}",
                                pos + filled as u64
                            ),
                        ))
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(buf)
        }))
    }

    /// Turn a finished read into a body chunk, remembering its buffer
    /// for reuse.
    pub fn finish(&mut self, buf: BytesMut) -> Bytes {
        let b = buf.freeze();
        // Only full-size buffers are worth keeping; the pool is bounded.
        if b.len() == self.chunk {
            if self.handed_out.len() >= self.pool {
                self.handed_out.pop_front();
            }
            self.handed_out.push_back(b.clone());
        }
        b
    }

    /// Read `len` bytes (at most the chunk size) at `pos`.
    pub async fn read(&mut self, pos: u64, len: usize) -> io::Result<Bytes> {
        let buf = self.start(pos, len).await?;
        Ok(self.finish(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[tokio::test]
    async fn reads_and_recycles() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::File::create(&p).unwrap().write_all(&data).unwrap();
        let mut r = ChunkReader::new(File::open(&p).unwrap(), 4096);
        let a = r.read(0, 4096).await.unwrap();
        assert_eq!(&a[..], &data[..4096]);
        let ptr = a.as_ptr();
        drop(a);
        // The first buffer is free again: reused, and refilled correctly.
        let b = r.read(4096, 4096).await.unwrap();
        assert_eq!(b.as_ptr(), ptr);
        assert_eq!(&b[..], &data[4096..8192]);
        // Held chunks are not overwritten.
        let c = r.read(8192, 10_000 - 8192).await.unwrap();
        assert_eq!(&c[..], &data[8192..]);
        assert_eq!(&b[..], &data[4096..8192]);
        // Past the end: an error, not a short chunk.
        assert_eq!(
            r.read(9000, 4096).await.unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }
}
