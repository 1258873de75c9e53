//! Response bodies: small in-memory ones, streamed file ranges, and the
//! wrapper that writes one log line per request when the body is done.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body::{Frame, SizeHint};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full, StreamBody};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

/// Every response body wharf sends.
pub type Body = UnsyncBoxBody<Bytes, io::Error>;

/// Read size for streamed files: large enough to keep syscalls rare, small
/// enough that memory per download stays flat.
pub const FILE_CHUNK: usize = 256 * 1024;

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed_unsync()
}

/// Stream `len` bytes of `file` starting at `start`.
pub async fn file_range(mut file: tokio::fs::File, start: u64, len: u64) -> io::Result<Body> {
    if start > 0 {
        file.seek(io::SeekFrom::Start(start)).await?;
    }
    let stream = ReaderStream::with_capacity(file.take(len), FILE_CHUNK).map_ok(Frame::data);
    Ok(StreamBody::new(stream).boxed_unsync())
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
        path: String,
        status: u16,
        start: Instant,
        bytes: u64,
        done: bool,
    }

    impl PinnedDrop for Logged {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            tracing::info!(
                method = %this.method,
                path = %this.path,
                status = *this.status,
                bytes = *this.bytes,
                complete = *this.done,
                duration_ms = this.start.elapsed().as_secs_f64() * 1000.0,
                "request"
            );
        }
    }
}

impl Logged {
    pub fn new(inner: Body, method: http::Method, path: String, status: u16, start: Instant) -> Logged {
        Logged {
            inner,
            method,
            path,
            status,
            start,
            bytes: 0,
            done: false,
        }
    }
}

impl http_body::Body for Logged {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let mut this = self.project();
        let r = this.inner.as_mut().poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    *this.bytes += d.len() as u64;
                }
                // hyper stops polling once the body says it has ended.
                if this.inner.is_end_stream() {
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
