//! [`Idle`]: a socket that fails with `TimedOut` once nothing was read or
//! written for the idle timeout while the connection waits on it (idle
//! keep-alive, clients that stopped reading or sending).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A socket that fails with `TimedOut` once nothing was read or written
/// for `timeout` while the connection waits on it.
pub struct Idle<T> {
    io: T,
    sleep: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    last: tokio::time::Instant,
}

impl<T> Idle<T> {
    pub fn new(io: T, timeout: Duration) -> Idle<T> {
        let now = tokio::time::Instant::now();
        Idle {
            io,
            sleep: Box::pin(tokio::time::sleep_until(now + timeout)),
            timeout,
            last: now,
        }
    }
}

impl<T> Idle<T> {
    /// Note activity on `Ready`; on `Pending`, fail once the connection has
    /// been idle past the timeout.
    fn activity<R>(&mut self, r: Poll<io::Result<R>>, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        match r {
            Poll::Ready(r) => {
                self.last = tokio::time::Instant::now();
                Poll::Ready(r)
            }
            Poll::Pending if idle_expired(self.sleep.as_mut(), self.last, self.timeout, cx) => {
                Poll::Ready(Err(timed_out()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// On `Pending`: whether the idle deadline has passed (re-arming the timer
/// when there was activity since it was set).
fn idle_expired(
    mut sleep: Pin<&mut tokio::time::Sleep>,
    last: tokio::time::Instant,
    timeout: Duration,
    cx: &mut Context<'_>,
) -> bool {
    loop {
        if sleep.as_mut().poll(cx).is_pending() {
            return false;
        }
        let deadline = last + timeout;
        if deadline <= tokio::time::Instant::now() {
            return true;
        }
        sleep.as_mut().reset(deadline);
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "connection idle for too long")
}

impl<T: AsyncRead + Unpin> AsyncRead for Idle<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        this.activity(r, cx)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Idle<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.activity(r, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.activity(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.io).poll_flush(cx) {
            Poll::Pending if idle_expired(this.sleep.as_mut(), this.last, this.timeout, cx) => {
                Poll::Ready(Err(timed_out()))
            }
            r => r,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
