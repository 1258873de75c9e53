//! Generated content: incompressible blobs cached under
//! `target/bench-data/`, small blobs, and OCI image manifests over them.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::Res;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

pub struct BlobFile {
    pub path: PathBuf,
    pub size: u64,
    pub digest: String,
}

/// Incompressible pseudo-random bytes (xorshift64*), cached under
/// `target/bench-data/` so repeated runs do not regenerate a GiB.
pub fn random_blob(dir: &Path, size: u64, seed: u64) -> Res<BlobFile> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("blob-{size}-{seed}.bin"));
    let sum = dir.join(format!("blob-{size}-{seed}.sha256"));
    if let (Ok(m), Ok(d)) = (std::fs::metadata(&path), std::fs::read_to_string(&sum)) {
        if m.len() == size && d.starts_with("sha256:") {
            return Ok(BlobFile {
                path,
                size,
                digest: d.trim().to_string(),
            });
        }
    }
    let mut f = io::BufWriter::with_capacity(4 << 20, File::create(&path)?);
    let mut h = Sha256::new();
    let mut rng = Noise::new(seed);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        rng.fill(&mut buf);
        let n = left.min(buf.len() as u64) as usize;
        h.update(&buf[..n]);
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    let digest = format!("sha256:{}", hex::encode(h.finalize()));
    std::fs::write(&sum, &digest)?;
    Ok(BlobFile { path, size, digest })
}

/// Incompressible pseudo-random bytes (xorshift64*), the same for the same
/// seed.
pub struct Noise(u64);

impl Noise {
    pub fn new(seed: u64) -> Noise {
        Noise(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Fill `buf` (whole 8-byte words; a shorter tail stays as it was).
    pub fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_exact_mut(8) {
            let x = &mut self.0;
            *x ^= *x >> 12;
            *x ^= *x << 25;
            *x ^= *x >> 27;
            c.copy_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
    }

    /// `len` bytes (a multiple of 8).
    pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        Noise::new(seed).fill(&mut v);
        v
    }
}

pub fn small_blob(dir: &Path, name: &str, bytes: &[u8]) -> Res<BlobFile> {
    let path = dir.join(name);
    std::fs::write(&path, bytes)?;
    Ok(BlobFile {
        path,
        size: bytes.len() as u64,
        digest: format!("sha256:{}", hex::encode(Sha256::digest(bytes))),
    })
}

pub fn sha256_file(p: &Path) -> Res<String> {
    let mut f = File::open(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

/// The sha256 digest string of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// An OCI image manifest with `config` and `layers`; `annotation`, when
/// given, makes otherwise identical manifests distinct (one per tag).
pub fn image_manifest(
    config: &BlobFile,
    layers: &[&BlobFile],
    annotation: Option<&str>,
) -> Vec<u8> {
    let layer = |b: &BlobFile| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": b.digest, "size": b.size});
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.digest, "size": config.size},
        "layers": layers.iter().map(|b| layer(b)).collect::<Vec<_>>(),
    });
    if let Some(a) = annotation {
        m["annotations"] = serde_json::json!({ "org.example.bench": a });
    }
    serde_json::to_vec(&m).expect("manifest JSON")
}

/// The config blob every generated image uses.
pub const CONFIG_JSON: &[u8] =
    br#"{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#;
