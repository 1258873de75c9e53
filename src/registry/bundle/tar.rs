//! The slice of the tar format an OCI image layout needs: ustar headers
//! for regular files with short names (every layout path fits ustar's 100
//! bytes), written and read as streams. Hand-written (about 150 lines)
//! instead of the `tar` crate because that crate is synchronous
//! (`std::io::Read`/`Write`): streaming it over an async body would need a
//! blocking bridge thread per bundle, and we only need the regular-file
//! subset. Other entry types met on import (directories, PAX or GNU long
//! name headers) are skipped.

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};

/// Size of a tar block (headers and padding).
pub const BLOCK: usize = 512;

/// The two zero blocks that end an archive.
pub fn trailer() -> Bytes {
    Bytes::from(vec![0u8; 2 * BLOCK])
}

/// Zero bytes that pad `len` bytes of content to a whole block.
pub fn padding(len: u64) -> Bytes {
    let rem = (len % BLOCK as u64) as usize;
    Bytes::from(vec![0u8; if rem == 0 { 0 } else { BLOCK - rem }])
}

/// A ustar header for a regular file `name` of `size` bytes.
pub fn header(name: &str, size: u64) -> Result<Bytes, String> {
    if name.len() > 100 {
        return Err(format!("tar entry name {name:?} is longer than 100 bytes"));
    }
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    if size < 1 << 33 {
        octal(&mut h[124..136], size);
    } else {
        // Past 8 GiB: GNU's base-256 size (high bit set, big-endian).
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    }
    octal(&mut h[136..148], 0);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    octal(&mut h[148..155], u64::from(sum));
    Ok(Bytes::copy_from_slice(&h))
}

/// Write `v` as zero-padded octal with a NUL terminator into `field`.
fn octal(field: &mut [u8], v: u64) {
    let digits = field.len() - 1;
    let s = format!("{v:0digits$o}");
    field[..digits].copy_from_slice(&s.as_bytes()[s.len() - digits..]);
    field[digits] = 0;
}

/// One entry's header as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The path, without a leading `./`.
    pub name: String,
    pub size: u64,
    /// A regular file (others are skipped by the caller).
    pub is_file: bool,
}

/// Parse a header block; `None` for a zero block (the end).
pub fn parse_header(h: &[u8]) -> Result<Option<Entry>, String> {
    if h.iter().all(|&b| b == 0) {
        return Ok(None);
    }
    let stored = parse_octal(&h[148..156]).ok_or("a tar header has an unreadable checksum")?;
    let sum: u64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    if sum != stored {
        return Err("a tar header's checksum does not match (not a tar file, or damaged)".into());
    }
    let field = |r: std::ops::Range<usize>| {
        let f = &h[r];
        let end = f.iter().position(|&b| b == 0).unwrap_or(f.len());
        String::from_utf8_lossy(&f[..end]).into_owned()
    };
    let mut name = field(0..100);
    if &h[257..262] == b"ustar" {
        let prefix = field(345..500);
        if !prefix.is_empty() {
            name = format!("{prefix}/{name}");
        }
    }
    let size = if h[124] & 0x80 != 0 {
        if h[124] & 0x7f != 0 || h[125..128].iter().any(|&b| b != 0) {
            return Err("a tar entry is larger than 16 EiB".into());
        }
        u64::from_be_bytes(h[128..136].try_into().unwrap_or_default())
    } else {
        parse_octal(&h[124..136]).ok_or("a tar header has an unreadable size")?
    };
    let name = name.trim_start_matches("./").to_string();
    Ok(Some(Entry {
        name,
        size,
        is_file: matches!(h[156], b'0' | 0 | b'7'),
    }))
}

fn parse_octal(f: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(f).ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c == ' ');
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

/// Reads a tar archive from a stream of byte chunks, holding at most one
/// chunk plus one header in memory.
pub struct Reader<S> {
    body: S,
    buf: BytesMut,
    /// Content bytes of the current entry not yet read.
    left: u64,
    /// Padding after the current entry's content.
    pad: u64,
}

/// Why reading the archive failed.
#[derive(Debug)]
pub enum ReadError {
    /// The archive is malformed (or ends early).
    Format(String),
    /// The body could not be read.
    Body(String),
}

impl<S, E> Reader<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    pub fn new(body: S) -> Reader<S> {
        Reader {
            body,
            buf: BytesMut::new(),
            left: 0,
            pad: 0,
        }
    }

    /// Make `buf` hold at least `n` bytes; false at the end of the body.
    async fn fill(&mut self, n: usize) -> Result<bool, ReadError> {
        while self.buf.len() < n {
            match self.body.next().await {
                Some(Ok(b)) => self.buf.extend_from_slice(&b),
                Some(Err(e)) => return Err(ReadError::Body(e.to_string())),
                None => return Ok(false),
            }
        }
        Ok(true)
    }

    /// The next entry's header (skipping what is left of the current
    /// one); `None` at the end of the archive.
    pub async fn next_entry(&mut self) -> Result<Option<Entry>, ReadError> {
        while self.chunk().await?.is_some() {}
        let mut pad = self.pad;
        while pad > 0 {
            if !self.fill(1).await? {
                return Err(ReadError::Format("the archive ends inside padding".into()));
            }
            let n = (pad as usize).min(self.buf.len());
            let _ = self.buf.split_to(n);
            pad -= n as u64;
        }
        self.pad = 0;
        if !self.fill(BLOCK).await? {
            if self.buf.is_empty() {
                // Some writers omit the trailer.
                return Ok(None);
            }
            return Err(ReadError::Format("the archive ends inside a header".into()));
        }
        let h = self.buf.split_to(BLOCK);
        let Some(e) = parse_header(&h).map_err(ReadError::Format)? else {
            return Ok(None);
        };
        self.left = e.size;
        self.pad = padding(e.size).len() as u64;
        Ok(Some(e))
    }

    /// The next piece of the current entry's content; `None` when it is
    /// all read.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, ReadError> {
        if self.left == 0 {
            return Ok(None);
        }
        if !self.fill(1).await? {
            return Err(ReadError::Format(
                "the archive ends inside an entry (truncated bundle?)".into(),
            ));
        }
        let n = (self.left as usize).min(self.buf.len());
        self.left -= n as u64;
        Ok(Some(self.buf.split_to(n).freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, data) in files {
            out.extend_from_slice(&header(name, data.len() as u64).unwrap());
            out.extend_from_slice(data);
            out.extend_from_slice(&padding(data.len() as u64));
        }
        out.extend_from_slice(&trailer());
        out
    }

    #[tokio::test]
    async fn written_archives_read_back_in_any_chunking() {
        let big = vec![7u8; 3000];
        let tar = archive(&[("oci-layout", b"{}"), ("blobs/sha256/ab", &big)]);
        for chunk in [1, 100, 512, 4096] {
            let parts: Vec<Result<Bytes, String>> = tar
                .chunks(chunk)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            let mut r = Reader::new(futures_util::stream::iter(parts));
            let e = r.next_entry().await.unwrap().unwrap();
            assert_eq!(
                (e.name.as_str(), e.size, e.is_file),
                ("oci-layout", 2, true)
            );
            // Skipping an unread entry works too.
            let e = r.next_entry().await.unwrap().unwrap();
            assert_eq!(e.name, "blobs/sha256/ab");
            let mut got = Vec::new();
            while let Some(c) = r.chunk().await.unwrap() {
                got.extend_from_slice(&c);
            }
            assert_eq!(got, big);
            assert!(r.next_entry().await.unwrap().is_none());
        }
    }

    #[test]
    fn sizes_past_8_gib_use_base_256() {
        for size in [0, 5, (1 << 33) - 1, 1 << 33, 20 << 30] {
            let h = header("blobs/sha256/ab", size).unwrap();
            assert_eq!(parse_header(&h).unwrap().unwrap().size, size);
        }
    }

    #[tokio::test]
    async fn damage_and_truncation_are_errors() {
        let mut tar = archive(&[("a", b"hello")]);
        tar[0] = b'b';
        let mut r = Reader::new(futures_util::stream::iter([Ok::<_, String>(Bytes::from(
            tar,
        ))]));
        assert!(
            matches!(r.next_entry().await, Err(ReadError::Format(m)) if m.contains("checksum"))
        );
        let tar = archive(&[("a", &[1u8; 2000])]);
        let cut = Bytes::copy_from_slice(&tar[..1000]);
        let mut r = Reader::new(futures_util::stream::iter([Ok::<_, String>(cut)]));
        r.next_entry().await.unwrap().unwrap();
        assert!(r.next_entry().await.is_err());
    }

    /// A cheap stand-in for the `bundle_tar` fuzz target in every test
    /// run: damaged and truncated archives in several chunkings end in an
    /// entry list or an error, and complete entries yield their size.
    #[test]
    fn damaged_archives_never_panic_or_hang() {
        let good = archive(&[("oci-layout", b"{}"), ("blobs/sha256/ab", &[9u8; 1500])]);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..400 {
            let mut tar = good.clone();
            for _ in 0..(round % 7 + 1) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed % tar.len() as u64) as usize;
                tar[at] = (seed >> 32) as u8;
            }
            tar.truncate(tar.len() - (round * 13) % tar.len());
            let (entries, error) = crate::fuzzing::read_bundle_tar(&tar, 1 + round % 600);
            for (i, (e, n)) in entries.iter().enumerate() {
                if error.is_none() || i + 1 < entries.len() {
                    assert_eq!(*n, e.size, "round {round}");
                }
            }
        }
    }
}
