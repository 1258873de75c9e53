//! The buffer a multipart part gathers in: one anonymous memory mapping per
//! part, unmapped when the part's upload has finished with it.
//!
//! Why not a `Vec<u8>`: glibc's malloc raises its mmap threshold to the
//! size of the first large block freed, then serves later part-sized
//! vectors from its heaps and keeps what they free. A 1 GiB push through
//! 16 MiB parts left wharf's resident memory about 50 MiB above where it
//! started (the benchmark's O4 row). A mapping goes back to the kernel the
//! moment its last `Bytes` is dropped, whatever the allocator does.

use std::io;

use bytes::Bytes;
use memmap2::MmapMut;

/// A part being filled: up to `cap` bytes.
pub struct PartBuf {
    /// Mapped on the first byte written, so an idle sink holds nothing.
    map: Option<MmapMut>,
    len: usize,
    cap: usize,
}

impl PartBuf {
    /// An empty buffer for parts of `cap` bytes.
    pub fn new(cap: usize) -> PartBuf {
        PartBuf {
            map: None,
            len: 0,
            cap: cap.max(1),
        }
    }

    /// A buffer holding `bytes` already (a session's tail).
    pub fn with(bytes: &[u8], cap: usize) -> io::Result<PartBuf> {
        let mut b = PartBuf::new(cap.max(bytes.len()));
        b.push(bytes)?;
        Ok(b)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len == self.cap
    }

    /// Copy in as much of `data` as fits; how much that was.
    pub fn push(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = (self.cap - self.len).min(data.len());
        if n == 0 {
            return Ok(0);
        }
        if self.map.is_none() {
            self.map = Some(MmapMut::map_anon(self.cap)?);
        }
        let map = self.map.as_mut().expect("mapped above");
        map[self.len..self.len + n].copy_from_slice(&data[..n]);
        self.len += n;
        Ok(n)
    }

    /// The bytes gathered so far.
    pub fn as_slice(&self) -> &[u8] {
        match &self.map {
            Some(m) => &m[..self.len],
            None => &[],
        }
    }

    /// Hand the gathered bytes over without copying them, leaving the
    /// buffer empty (its next byte maps a new part).
    pub fn take(&mut self) -> Bytes {
        let len = std::mem::take(&mut self.len);
        match self.map.take() {
            Some(map) => Bytes::from_owner(Filled { map, len }),
            None => Bytes::new(),
        }
    }
}

/// A filled mapping, owned by the `Bytes` made of it.
struct Filled {
    map: MmapMut,
    len: usize,
}

impl AsRef<[u8]> for Filled {
    fn as_ref(&self) -> &[u8] {
        &self.map[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_to_its_size_then_hands_the_bytes_over() {
        let mut b = PartBuf::new(10);
        assert!(b.is_empty());
        assert_eq!(b.take(), Bytes::new());
        assert_eq!(b.push(b"hello").unwrap(), 5);
        assert_eq!(b.push(b"wonderful").unwrap(), 5);
        assert!(b.is_full());
        assert_eq!(b.push(b"more").unwrap(), 0);
        assert_eq!(b.as_slice(), b"hellowonde");
        assert_eq!(b.take(), Bytes::from_static(b"hellowonde"));
        assert!(b.is_empty());
        assert_eq!(b.push(b"rful").unwrap(), 4);
        assert_eq!(b.as_slice(), b"rful");
    }

    #[test]
    fn starts_with_a_tail_longer_than_a_part() {
        let b = PartBuf::with(b"0123456789", 4).unwrap();
        assert_eq!(b.as_slice(), b"0123456789");
        assert!(b.is_full());
    }
}
