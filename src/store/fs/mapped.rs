//! Blob file ranges as memory-mapped body chunks that the connection layer
//! can send with `sendfile(2)`.
//!
//! hyper writes a response body's `Bytes` to the socket itself, so a body
//! cannot say "send this file". A mapped chunk is ordinary `Bytes` holding
//! the file's own bytes (a `MAP_SHARED` read-only mapping of the page
//! cache), and it is registered here by address. The plain-TCP connection
//! wrapper ([`crate::app`]'s `ZeroCopy`) looks up every buffer hyper asks
//! it to write: a buffer inside a registered chunk is sent from the file
//! with `sendfile` instead, so its bytes never enter user space and the
//! mapping is never touched (no page faults, no resident pages). Anything
//! else that writes the chunk (TLS, HTTP/2, a test) reads the mapping and
//! sends the very same bytes, one copy fewer than a `pread`.
//!
//! Only stored blob files are mapped: they are immutable, written to a
//! temp file and renamed into place, and only ever unlinked, never
//! truncated or rewritten (an unlinked file stays readable through its
//! open descriptor and the mapping). That is what makes the mapping safe.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rustix::mm::{MapFlags, ProtFlags};

/// Largest mapped chunk handed out for sending: the mapping is never
/// touched on the `sendfile` path, so the size costs no memory, only
/// fewer `mmap` calls.
pub const CHUNK: usize = 16 * 1024 * 1024;

/// A registered chunk: `len` bytes of `file` from `offset`.
#[derive(Clone)]
struct Region {
    len: usize,
    file: Arc<File>,
    offset: u64,
}

/// Live chunks by start address (mappings never overlap while mapped).
static REGIONS: Mutex<BTreeMap<usize, Region>> = Mutex::new(BTreeMap::new());
/// How many chunks are live: lets a write skip the lookup when none is.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Where a buffer handed to a socket write lies in a blob file.
pub struct FileSlice {
    pub file: Arc<File>,
    /// File offset of the buffer's first byte.
    pub offset: u64,
    /// Bytes of the chunk from that byte on.
    pub len: usize,
}

/// The file range behind the byte at `addr`, when it lies in a live chunk.
pub fn lookup(addr: *const u8) -> Option<FileSlice> {
    if LIVE.load(Ordering::Acquire) == 0 {
        return None;
    }
    let addr = addr as usize;
    let regions = REGIONS.lock().unwrap_or_else(|e| e.into_inner());
    let (&start, r) = regions.range(..=addr).next_back()?;
    let skip = addr - start;
    (skip < r.len).then(|| FileSlice {
        file: r.file.clone(),
        offset: r.offset + skip as u64,
        len: r.len - skip,
    })
}

/// The owner of one mapping: unregisters and unmaps it when the last
/// `Bytes` referring to it is dropped.
struct Mapping {
    base: *mut std::ffi::c_void,
    map_len: usize,
    data: *const u8,
    len: usize,
}

// SAFETY: the mapping is read-only and lives until `drop`; the pointers are
// only dereferenced through `as_ref` (shared reads of immutable bytes).
unsafe impl Send for Mapping {}
// SAFETY: as above: shared, read-only access only.
unsafe impl Sync for Mapping {}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `data..data + len` lies inside the live mapping (see
        // `map`), which is read-only and backed by a blob file that is
        // never truncated, so every byte stays readable (no SIGBUS) and
        // never changes while this `Mapping` exists.
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        {
            let mut regions = REGIONS.lock().unwrap_or_else(|e| e.into_inner());
            regions.remove(&(self.data as usize));
        }
        LIVE.fetch_sub(1, Ordering::AcqRel);
        // SAFETY: `base`/`map_len` are exactly what `mmap` returned, and no
        // `Bytes` refers to the mapping any more (this is its owner's drop).
        let _ = unsafe { rustix::mm::munmap(self.base, self.map_len) };
    }
}

/// `len` bytes (> 0) of the blob file `file` from `offset`, as a mapped
/// chunk. `file` must be a stored blob (never truncated) holding at least
/// `offset + len` bytes.
pub fn map(file: &Arc<File>, offset: u64, len: usize) -> io::Result<Bytes> {
    if len == 0 {
        return Ok(Bytes::new());
    }
    let page = rustix::param::page_size() as u64;
    let aligned = offset - offset % page;
    let skip = (offset - aligned) as usize;
    let map_len = skip + len;
    // SAFETY: a fresh read-only shared mapping at an address the kernel
    // picks: it aliases no Rust object. The file is an immutable blob
    // (module docs), so the mapped bytes never change or vanish.
    let base = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            map_len,
            ProtFlags::READ,
            MapFlags::SHARED,
            file,
            aligned,
        )
    }?;
    // SAFETY: `skip < page <= map_len`: inside the mapping.
    let data = unsafe { base.cast::<u8>().add(skip) } as *const u8;
    {
        let mut regions = REGIONS.lock().unwrap_or_else(|e| e.into_inner());
        regions.insert(
            data as usize,
            Region {
                len,
                file: file.clone(),
                offset,
            },
        );
    }
    LIVE.fetch_add(1, Ordering::AcqRel);
    Ok(Bytes::from_owner(Mapping {
        base,
        map_len,
        data,
        len,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn maps_registers_and_unregisters() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        File::create(&p).unwrap().write_all(&data).unwrap();
        let f = Arc::new(File::open(&p).unwrap());
        // An unaligned offset: the chunk still starts at the right byte.
        let b = map(&f, 5000, 12_000).unwrap();
        assert_eq!(&b[..], &data[5000..17_000]);
        let s = lookup(b[100..].as_ptr()).unwrap();
        assert_eq!((s.offset, s.len), (5100, 11_900));
        assert!(lookup(b.as_ptr().wrapping_add(12_000)).is_none());
        // A slice of the chunk keeps it mapped; the last drop unmaps it.
        let tail = b.slice(11_000..);
        let addr = tail.as_ptr();
        drop(b);
        assert_eq!(lookup(addr).unwrap().offset, 16_000);
        drop(tail);
        assert!(lookup(addr).is_none());
        assert!(map(&f, 0, 0).unwrap().is_empty());
    }
}
