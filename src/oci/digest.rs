//! Content digests (`algorithm:encoded`) and the streaming hasher that
//! produces them.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256, Sha512};

/// A digest algorithm wharf can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the lowercase hex encoding.
    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// Why a string is not a digest wharf accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("digest must have the form <algorithm>:<hex>")]
    Malformed,
    #[error("digest algorithm {0:?} is not supported (use sha256 or sha512)")]
    UnsupportedAlgorithm(String),
    #[error("{algorithm} digest must be {len} lowercase hex characters")]
    BadEncoding { algorithm: &'static str, len: usize },
}

/// A validated digest such as `sha256:e3b0c442…`. The hex part is always
/// lowercase and of the algorithm's exact length, so it is safe to use as a
/// file name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    /// The whole digest, `algorithm:hex`: kept as text because it is
    /// mostly used as text (headers, keys, paths, logs), which then needs
    /// no formatting.
    text: String,
}

impl Digest {
    /// A digest from its parts; `hex` must already be valid for `algorithm`.
    fn from_parts(algorithm: Algorithm, hex: &str) -> Digest {
        let alg = algorithm.as_str();
        let mut text = String::with_capacity(alg.len() + 1 + hex.len());
        text.push_str(alg);
        text.push(':');
        text.push_str(hex);
        Digest { algorithm, text }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The encoded (hex) part.
    pub fn hex(&self) -> &str {
        &self.text[self.algorithm.as_str().len() + 1..]
    }

    /// `algorithm:hex`, as [`Display`](fmt::Display) writes it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Digest of a byte slice (convenience for small payloads such as
    /// manifests).
    pub fn of(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        let mut h = Hasher::new(algorithm);
        h.update(bytes);
        h.finish()
    }

    pub fn sha256_of(bytes: &[u8]) -> Digest {
        Digest::of(Algorithm::Sha256, bytes)
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (alg, enc) = s.split_once(':').ok_or(DigestError::Malformed)?;
        // The spec's grammar: algorithm-component ([a-z0-9]+) joined by [+._-].
        if alg.is_empty()
            || enc.is_empty()
            || !alg
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
        {
            return Err(DigestError::Malformed);
        }
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other => return Err(DigestError::UnsupportedAlgorithm(other.to_string())),
        };
        if enc.len() != algorithm.hex_len()
            || !enc
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError::BadEncoding {
                algorithm: algorithm.as_str(),
                len: algorithm.hex_len(),
            });
        }
        Ok(Digest {
            algorithm,
            text: s.to_string(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Incremental hasher for one algorithm; bytes are fed as they stream.
#[derive(Clone)]
pub enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            Hasher::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest::from_parts(algorithm, &hex)
    }
}

/// SHA-256 whose running state can be saved and restored, so that an upload
/// session can continue hashing on a later request, after a restart, or on
/// another replica, without reading back what it already received.
///
/// Built on `sha2::compress256` (the same block function, with the same
/// CPU-feature dispatch, as `sha2::Sha256`); the state is the eight words,
/// the partial block and the length.
#[derive(Clone)]
pub struct ResumableSha256 {
    state: [u32; 8],
    block: [u8; 64],
    /// Bytes in `block` (always < 64).
    filled: usize,
    /// Bytes hashed so far.
    len: u64,
}

const SHA256_IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// Size of a saved [`ResumableSha256`] state.
const SAVED_LEN: usize = 32 + 64 + 1 + 8;

impl Default for ResumableSha256 {
    fn default() -> Self {
        ResumableSha256 {
            state: SHA256_IV,
            block: [0; 64],
            filled: 0,
            len: 0,
        }
    }
}

impl ResumableSha256 {
    pub fn new() -> ResumableSha256 {
        ResumableSha256::default()
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn compress(state: &mut [u32; 8], block: &[u8]) {
        use sha2::digest::generic_array::GenericArray;
        sha2::compress256(state, std::slice::from_ref(GenericArray::from_slice(block)));
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.filled > 0 {
            let take = (64 - self.filled).min(data.len());
            self.block[self.filled..self.filled + take].copy_from_slice(&data[..take]);
            self.filled += take;
            data = &data[take..];
            if self.filled < 64 {
                return;
            }
            let block = self.block;
            Self::compress(&mut self.state, &block);
            self.filled = 0;
        }
        let mut blocks = data.chunks_exact(64);
        for b in &mut blocks {
            Self::compress(&mut self.state, b);
        }
        let rest = blocks.remainder();
        self.block[..rest.len()].copy_from_slice(rest);
        self.filled = rest.len();
    }

    /// The digest of everything hashed (the state itself is not consumed).
    pub fn finish(&self) -> Digest {
        let mut state = self.state;
        let mut tail = [0u8; 128];
        tail[..self.filled].copy_from_slice(&self.block[..self.filled]);
        tail[self.filled] = 0x80;
        let total = if self.filled < 56 { 64 } else { 128 };
        tail[total - 8..total].copy_from_slice(&(self.len * 8).to_be_bytes());
        for b in tail[..total].chunks_exact(64) {
            Self::compress(&mut state, b);
        }
        let mut out = [0u8; 32];
        for (i, w) in state.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
        }
        Digest::from_parts(Algorithm::Sha256, &hex::encode(out))
    }

    /// The state as a hex string, for [`restore`](Self::restore).
    pub fn save(&self) -> String {
        let mut b = Vec::with_capacity(SAVED_LEN);
        for w in self.state {
            b.extend_from_slice(&w.to_be_bytes());
        }
        b.extend_from_slice(&self.block);
        b.push(self.filled as u8);
        b.extend_from_slice(&self.len.to_be_bytes());
        hex::encode(b)
    }

    /// A state saved by [`save`](Self::save); `None` when malformed.
    pub fn restore(saved: &str) -> Option<ResumableSha256> {
        let b = hex::decode(saved).ok()?;
        if b.len() != SAVED_LEN {
            return None;
        }
        let mut state = [0u32; 8];
        for (i, w) in state.iter_mut().enumerate() {
            *w = u32::from_be_bytes(b[i * 4..i * 4 + 4].try_into().ok()?);
        }
        let mut block = [0u8; 64];
        block.copy_from_slice(&b[32..96]);
        let filled = b[96] as usize;
        let len = u64::from_be_bytes(b[97..105].try_into().ok()?);
        if filled >= 64 || len % 64 != filled as u64 {
            return None;
        }
        Some(ResumableSha256 {
            state,
            block,
            filled,
            len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_prints_sha256() {
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(Digest::sha256_of(b""), d);
    }

    #[test]
    fn resumable_sha256_matches_and_survives_save() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for split in [0usize, 1, 55, 56, 63, 64, 65, 127, 128, 4096, 9_999, 10_000] {
            let mut h = ResumableSha256::new();
            h.update(&data[..split]);
            let mut back = ResumableSha256::restore(&h.save()).unwrap();
            // Feed the rest in odd pieces.
            for piece in data[split..].chunks(37) {
                back.update(piece);
            }
            assert_eq!(back.finish(), Digest::sha256_of(&data), "split at {split}");
            assert_eq!(back.len(), data.len() as u64);
        }
        assert_eq!(ResumableSha256::new().finish().to_string(), EMPTY);
        assert!(ResumableSha256::restore("zz").is_none());
        assert!(ResumableSha256::restore(&"00".repeat(SAVED_LEN)).is_some());
    }

    #[test]
    fn parses_sha512() {
        let d = Digest::of(Algorithm::Sha512, b"abc");
        let back: Digest = d.to_string().parse().unwrap();
        assert_eq!(back, d);
        assert_eq!(back.hex().len(), 128);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            ":abc",
            "sha256:totallywrong",
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
            "sha256:../../../../etc/passwd",
            "sha512:abcd",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad:?} accepted");
        }
        assert!(matches!(
            "md5:abcd".parse::<Digest>(),
            Err(DigestError::UnsupportedAlgorithm(_))
        ));
    }
}
