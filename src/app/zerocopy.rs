//! [`ZeroCopy`]: a plain TCP socket that sends mapped blob chunks with
//! `sendfile(2)`.
//!
//! hyper writes each response body chunk through this socket. A chunk made
//! by [`crate::store::fs::mapped::map`] is a mapping of a blob file: when a
//! buffer to write starts inside one, the bytes go from the file to the
//! socket in the kernel (`sendfile`), never copied into or out of wharf's
//! memory, as nginx's `sendfile on` does. Every other buffer is written as
//! usual. The chunk holds the file's very bytes, so the result on the wire
//! is the same either way; only plain (non-TLS) connections use this
//! wrapper, and blob handlers map chunks only for HTTP/1.x responses on
//! them (HTTP/2 frames its data itself).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use crate::store::fs::mapped::{self, FileSlice};

/// A TCP stream whose writes of mapped blob chunks use `sendfile`.
pub struct ZeroCopy {
    io: TcpStream,
}

impl ZeroCopy {
    pub fn new(io: TcpStream) -> ZeroCopy {
        ZeroCopy { io }
    }

    /// Send up to `want` bytes of `s` from its file.
    fn poll_sendfile(
        &mut self,
        cx: &mut Context<'_>,
        s: &FileSlice,
        want: usize,
    ) -> Poll<io::Result<usize>> {
        let want = want.min(s.len);
        loop {
            std::task::ready!(self.io.poll_write_ready(cx))?;
            let mut offset = s.offset;
            match self.io.try_io(Interest::WRITABLE, || {
                rustix::fs::sendfile(&self.io, &*s.file, Some(&mut offset), want)
                    .map_err(io::Error::from)
            }) {
                // The file ended early: blobs are never truncated, so this
                // is a broken store; fail the response, never send short.
                Ok(0) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "blob file shorter than its mapped chunk",
                    )))
                }
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncRead for ZeroCopy {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for ZeroCopy {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if !buf.is_empty() {
            if let Some(s) = mapped::lookup(buf.as_ptr()) {
                return self.poll_sendfile(cx, &s, buf.len());
            }
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    /// Buffers before the first mapped one are written together (a
    /// response head); a mapped buffer at the front is sent from its file.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut before = 0;
        for (i, b) in bufs.iter().enumerate() {
            if b.is_empty() {
                continue;
            }
            if let Some(s) = mapped::lookup(b.as_ptr()) {
                if before == 0 {
                    return self.poll_sendfile(cx, &s, b.len());
                }
                return Pin::new(&mut self.io).poll_write_vectored(cx, &bufs[..i]);
            }
            before += b.len();
        }
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
