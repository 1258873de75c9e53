//! [`Counted`]: the response body as sent, counting bytes for `/metrics`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;

use crate::api::body;
use crate::metrics::Metrics;

/// The response body as sent: counts bytes, records the request's metrics
/// when it ends or is dropped, and drops the inner body (which writes the
/// request's log line) inside the request's span.
pub struct Counted {
    inner: Option<Pin<Box<body::Logged>>>,
    metrics: Arc<Metrics>,
    route: &'static str,
    status: u16,
    start: Instant,
    bytes: u64,
    span: tracing::Span,
}

impl Counted {
    /// Count `inner` (the response to a request of route family `route`
    /// that started at `start`) and log its end inside `span`.
    pub fn new(
        inner: body::Logged,
        metrics: Arc<Metrics>,
        route: &'static str,
        status: u16,
        start: Instant,
        span: tracing::Span,
    ) -> Counted {
        Counted {
            inner: Some(Box::pin(inner)),
            metrics,
            route,
            status,
            start,
            bytes: 0,
            span,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.metrics
            .request_done(self.route, self.status, self.bytes, self.start.elapsed());
        let _in = self.span.enter();
        self.inner.take();
    }
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, io::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let r = inner.as_mut().poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &r {
            if let Some(d) = f.data_ref() {
                self.bytes += d.len() as u64;
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner
            .as_ref()
            .map(|b| b.size_hint())
            .unwrap_or_default()
    }
}
