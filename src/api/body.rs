//! Response bodies: small in-memory ones, streamed file ranges, and the
//! wrapper that writes one log line per request when the body is done.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};

use crate::store::fs::chunks::{ChunkReader, PendingRead};

/// Every response body wharf sends.
pub type Body = UnsyncBoxBody<Bytes, io::Error>;

/// Read size for streamed files: large enough to keep syscalls and
/// blocking-pool hand-offs rare, small enough that memory per download
/// stays flat (at most [`crate::store::fs::chunks::POOL`] chunks per download).
pub const FILE_CHUNK: usize = 512 * 1024;

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Ranges shorter than this are read, not mapped (a `pread` is cheaper
/// than a mapping for a few pages).
const MAP_MIN: u64 = 64 * 1024;

/// Stream `len` bytes of the blob file `file` starting at `start`.
///
/// With `sendfile` (plain HTTP/1.x, see [`crate::api::SendFile`]) the
/// chunks are mappings of the file that the connection sends with
/// `sendfile(2)`: no copy through wharf's memory (see
/// [`crate::store::fs::mapped`]). Otherwise (TLS, HTTP/2) each chunk is
/// one `pread` into a recycled buffer (see [`crate::store::fs::chunks`]),
/// and the next chunk is read while hyper writes the current one.
pub fn file_range(file: std::fs::File, start: u64, len: u64, sendfile: bool) -> Body {
    if sendfile && len >= MAP_MIN {
        return MappedBody {
            file: std::sync::Arc::new(file),
            next: start,
            end: start.saturating_add(len),
        }
        .boxed_unsync();
    }
    FileBody {
        reader: ChunkReader::new(file, FILE_CHUNK),
        next: start,
        sent: start,
        end: start.saturating_add(len),
        pending: None,
    }
    .boxed_unsync()
}

/// A body of `len` bytes from a stream (a remote object's range). A stream
/// that ends early or fails aborts the response (no short body passes as
/// complete).
pub fn stream(s: crate::store::backend::ByteStream, len: u64) -> Body {
    use futures_util::StreamExt;
    let mut left = len;
    let checked = s.map(move |item| {
        let b = item?;
        left = left
            .checked_sub(b.len() as u64)
            .ok_or_else(|| io::Error::other("stored object longer than its size"))?;
        Ok(Frame::data(b))
    });
    http_body_util::StreamBody::new(checked).boxed_unsync()
}

/// A body of unknown length from a stream (an export's tar); a failing
/// stream aborts the response.
pub fn chunked(s: crate::store::backend::ByteStream) -> Body {
    use futures_util::StreamExt;
    http_body_util::StreamBody::new(s.map(|item| item.map(Frame::data))).boxed_unsync()
}

/// A file range as a response body, reading one chunk ahead.
struct FileBody {
    reader: ChunkReader,
    /// Offset of the next chunk to read.
    next: u64,
    /// Offset of the first byte not yet handed to hyper.
    sent: u64,
    end: u64,
    /// The chunk being read (at offset `next - its length`).
    pending: Option<PendingRead>,
}

impl FileBody {
    fn start_next(&mut self) {
        let len = (self.end - self.next).min(self.reader.chunk_size() as u64) as usize;
        self.pending = Some(self.reader.start(self.next, len));
        self.next += len as u64;
    }
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        if this.pending.is_none() {
            if this.next >= this.end {
                return Poll::Ready(None);
            }
            this.start_next();
        }
        let Some(p) = this.pending.as_mut() else {
            return Poll::Ready(None);
        };
        let r = std::task::ready!(Pin::new(p).poll(cx));
        this.pending = None;
        match r {
            Ok(buf) => {
                let chunk = this.reader.finish(buf);
                this.sent += chunk.len() as u64;
                // Read ahead while hyper writes this chunk.
                if this.next < this.end {
                    this.start_next();
                }
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Err(e) => {
                this.next = this.end;
                this.sent = this.end;
                Poll::Ready(Some(Err(e)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_none() && self.next >= self.end
    }

    fn size_hint(&self) -> SizeHint {
        // Bytes not yet handed to hyper.
        SizeHint::with_exact(self.end - self.sent)
    }
}

/// A blob file range as mapped chunks (sent with `sendfile` by the
/// connection).
struct MappedBody {
    file: std::sync::Arc<std::fs::File>,
    next: u64,
    end: u64,
}

impl http_body::Body for MappedBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        if this.next >= this.end {
            return Poll::Ready(None);
        }
        let len = (this.end - this.next).min(crate::store::fs::mapped::CHUNK as u64) as usize;
        // mmap does no I/O (pages are faulted in, or sent, later): cheap
        // enough for the async thread.
        let r = crate::store::fs::mapped::map(&this.file, this.next, len);
        this.next = if r.is_ok() {
            this.next + len as u64
        } else {
            this.end
        };
        Poll::Ready(Some(r.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.end
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.end - self.next)
    }
}

/// The `Range` header value for an upload at `offset` bytes (`0-0` when
/// empty, as Distribution does).
pub fn range_header(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

pin_project_lite::pin_project! {
    /// Counts bytes sent and logs the request when the body ends or is
    /// dropped (a client that disconnects is logged too, with `complete=false`).
    pub struct Logged {
        #[pin]
        inner: Body,
        method: http::Method,
        // Path and query as received (`ns=` routing shows in the log).
        target: http::Uri,
        status: u16,
        start: Instant,
        bytes: u64,
        // The response's Content-Length: hyper stops polling a body once
        // that many bytes went out, so reaching it also means complete.
        expected: Option<u64>,
        done: bool,
    }

    impl PinnedDrop for Logged {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let ms = this.start.elapsed().as_micros() as f64 / 1000.0;
            let path_and_query = this
                .target
                .path_and_query()
                .map_or(this.target.path(), |pq| pq.as_str());
            tracing::info!(
                method = %this.method,
                target = %path_and_query,
                status = *this.status,
                bytes = *this.bytes,
                complete = *this.done,
                duration_ms = format_args!("{ms:.1}"),
                "request"
            );
        }
    }
}

impl Logged {
    /// Log the response to `method target` when it is dropped. A response
    /// without a body (HEAD, 204, 304, empty) is complete from the start.
    pub fn new(
        inner: Body,
        method: http::Method,
        target: http::Uri,
        status: u16,
        start: Instant,
        expected: Option<u64>,
    ) -> Logged {
        let bodiless = method == http::Method::HEAD
            || status == 204
            || status == 304
            || http_body::Body::is_end_stream(&inner)
            || expected == Some(0);
        Logged {
            inner,
            method,
            target,
            status,
            start,
            bytes: 0,
            expected,
            done: bodiless,
        }
    }
}

impl http_body::Body for Logged {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let mut this = self.project();
        let r = this.inner.as_mut().poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    *this.bytes += d.len() as u64;
                }
                // hyper stops polling once the body says it has ended, or
                // once Content-Length bytes went out.
                if this.inner.is_end_stream() || Some(*this.bytes) == *this.expected {
                    *this.done = true;
                }
            }
            Poll::Ready(None) => *this.done = true,
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
