//! The newest bytes of a fetch, kept in memory for its followers.
//!
//! A follower that keeps up with its fetch (the client that started it,
//! and any that joined early) takes its next bytes from here: the very
//! `Bytes` the upstream read produced, handed out without a copy, without
//! reading the spool back and without waiting for the spool write. The
//! window is one per fetch, shared by all its followers and bounded by
//! [`WINDOW`] bytes, so memory does not grow with the number of clients or
//! the size of the blob; a follower that falls behind the window reads the
//! spool instead, as before.
//!
//! The window holds the remote's bytes before their digest is checked:
//! followers still hold back a blob's last byte until the fetch verified
//! it (see `inflight`), so no client completes a wrong blob.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;

/// Bytes the window keeps (at least the newest chunk, whatever its size).
pub const WINDOW: u64 = 4 << 20;

/// The newest bytes of one fetch.
#[derive(Default)]
pub struct Recent {
    inner: Mutex<Window>,
}

#[derive(Default)]
struct Window {
    /// Each chunk with the offset of its first byte in the blob, in order.
    chunks: VecDeque<(u64, Bytes)>,
    /// Offset just past the newest chunk.
    end: u64,
    /// The fetch ended: keep nothing more.
    closed: bool,
}

impl Window {
    fn start(&self) -> u64 {
        self.chunks.front().map_or(self.end, |(at, _)| *at)
    }
}

impl Recent {
    fn lock(&self) -> MutexGuard<'_, Window> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Add the next chunk of the blob; drop the oldest beyond [`WINDOW`].
    pub fn push(&self, chunk: Bytes) {
        let mut w = self.lock();
        if w.closed || chunk.is_empty() {
            return;
        }
        let at = w.end;
        w.end += chunk.len() as u64;
        w.chunks.push_back((at, chunk));
        while w.chunks.len() > 1 && w.end - w.start() > WINDOW {
            w.chunks.pop_front();
        }
    }

    /// The bytes from `pos` up to the end of the chunk holding it, cut at
    /// `limit`; `None` when the window does not hold `pos` (or `pos` is
    /// not below `limit`).
    pub fn get(&self, pos: u64, limit: u64) -> Option<Bytes> {
        let w = self.lock();
        if pos < w.start() || pos >= w.end.min(limit) {
            return None;
        }
        // The last chunk starting at or before `pos`.
        let i = w
            .chunks
            .partition_point(|(at, _)| *at <= pos)
            .checked_sub(1)?;
        let (at, c) = &w.chunks[i];
        let from = (pos - at) as usize;
        let to = ((at + c.len() as u64).min(limit) - at) as usize;
        (from < to).then(|| c.slice(from..to))
    }

    /// The fetch ended: free the window (followers read the spool or the
    /// stored blob from now on).
    pub fn close(&self) {
        let mut w = self.lock();
        w.closed = true;
        w.chunks.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_the_newest_bytes_within_the_limit() {
        let r = Recent::default();
        let data: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        for c in data.chunks(100) {
            r.push(Bytes::copy_from_slice(c));
        }
        assert_eq!(&r.get(0, 300).unwrap()[..], &data[0..100]);
        assert_eq!(&r.get(150, 300).unwrap()[..], &data[150..200]);
        // Cut at the limit (the held-back last byte).
        assert_eq!(&r.get(250, 299).unwrap()[..], &data[250..299]);
        assert!(r.get(299, 299).is_none());
        assert!(r.get(300, 400).is_none(), "nothing past the end");
        r.close();
        assert!(r.get(0, 300).is_none());
        r.push(Bytes::from_static(b"late"));
        assert!(r.get(300, 400).is_none(), "a closed window keeps nothing");
    }

    #[test]
    fn memory_stays_within_the_window() {
        let r = Recent::default();
        let chunk = Bytes::from(vec![1u8; 1 << 20]);
        for _ in 0..20 {
            r.push(chunk.clone());
        }
        assert!(r.get(0, u64::MAX).is_none(), "old bytes were dropped");
        let start = 20 * (1 << 20) - WINDOW;
        assert_eq!(r.get(start, u64::MAX).unwrap().len(), 1 << 20);
        assert!(r.get(start - 1, u64::MAX).is_none());
        let w = r.lock();
        assert_eq!(w.end - w.start(), WINDOW);
    }
}
