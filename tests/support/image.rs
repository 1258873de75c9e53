//! Test images, generated inside the test: OCI image layout directories
//! (`oci-layout`, `index.json`, `blobs/sha256/<hex>`) that skopeo, ctr and
//! friends read directly.
//!
//! Layers are real tar archives (ustar, written here), either uncompressed
//! (`application/vnd.oci.image.layer.v1.tar`) or gzip
//! (`...tar+gzip` / Docker's `rootfs.diff.tar.gzip`). The gzip stream uses
//! deflate "stored" blocks: valid gzip that every client decompresses, at
//! the cost of a few bytes per 64 KiB and no CPU spent compressing random
//! data. The config carries the correct `rootfs.diff_ids` (sha256 of the
//! uncompressed tar), so clients that unpack and verify (containerd,
//! Docker) accept the image.
//!
//! Content is pseudo-random ([`Noise`]), generated block by block and
//! streamed to disk: a multi-GiB layer never sits in memory.
#![allow(dead_code)]

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::Digest as _;

pub use super::{
    MT_DOCKER_CONFIG, MT_DOCKER_LIST, MT_DOCKER_MANIFEST, MT_OCI_CONFIG, MT_OCI_INDEX,
    MT_OCI_MANIFEST,
};
pub const MT_OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MT_OCI_LAYER_GZIP: &str = super::MT_OCI_LAYER;
pub const MT_DOCKER_LAYER_GZIP: &str = super::MT_DOCKER_LAYER;

/// Annotation that names a tag in an OCI layout's `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Fixed timestamp for tar entries and configs (reproducible images).
const MTIME: u64 = 1_700_000_000;
const CREATED: &str = "2023-11-14T22:13:20Z";

// ---------------------------------------------------------------------------
// Pseudo-random content

const NOISE_BLOCK: usize = 1 << 20;

/// `len` bytes of deterministic pseudo-random content, different per `seed`,
/// as a `Read`. A 1 MiB xorshift block is made once; every output block is
/// that block stamped with `(seed, block number)`, so no two blocks (of this
/// or another seed) are equal and producing a GiB costs a few memcpys, even
/// in a debug build.
pub struct Noise {
    seed: u64,
    len: u64,
    pos: u64,
    base: Vec<u8>,
    block: Vec<u8>,
    block_no: u64,
}

impl Noise {
    pub fn new(seed: u64, len: u64) -> Noise {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
        if x == 0 {
            x = 1;
        }
        let mut base = vec![0u8; NOISE_BLOCK];
        for c in base.chunks_exact_mut(8) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            c.copy_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        Noise {
            seed,
            len,
            pos: 0,
            block: base.clone(),
            base,
            block_no: u64::MAX,
        }
    }

    /// Total length.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes handed out so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    fn load_block(&mut self, n: u64) {
        if self.block_no == n {
            return;
        }
        self.block.copy_from_slice(&self.base);
        self.block[..8].copy_from_slice(&self.seed.to_le_bytes());
        self.block[8..16].copy_from_slice(&n.to_le_bytes());
        // Scatter a few more stamps so that any 64 KiB window is unique too.
        for k in 1..16usize {
            let at = k * (NOISE_BLOCK / 16);
            self.block[at..at + 8]
                .copy_from_slice(&(n ^ (k as u64) << 56 ^ self.seed).to_le_bytes());
        }
        self.block_no = n;
    }
}

impl Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let n = self.pos / NOISE_BLOCK as u64;
        let off = (self.pos % NOISE_BLOCK as u64) as usize;
        self.load_block(n);
        let avail = (NOISE_BLOCK - off)
            .min((self.len - self.pos) as usize)
            .min(buf.len());
        buf[..avail].copy_from_slice(&self.block[off..off + avail]);
        self.pos += avail as u64;
        Ok(avail)
    }
}

/// All of `Noise::new(seed, len)` in memory (for small blobs only).
pub fn noise_vec(seed: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    Noise::new(seed, len as u64).read_to_end(&mut v).unwrap();
    v
}

/// sha256 (`sha256:<hex>`) of `Noise::new(seed, len)`, streamed.
pub fn noise_digest(seed: u64, len: u64) -> String {
    let mut w = HashWriter::new(io::sink());
    io::copy(&mut Noise::new(seed, len), &mut w).unwrap();
    w.digest()
}

// ---------------------------------------------------------------------------
// Writers: hashing, gzip (stored blocks), tar

/// Passes bytes through to `inner`, hashing (sha256) and counting them.
pub struct HashWriter<W> {
    pub inner: W,
    hasher: sha2::Sha256,
    count: u64,
}

impl<W: Write> HashWriter<W> {
    pub fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hasher: sha2::Sha256::new(),
            count: 0,
        }
    }
    pub fn count(&self) -> u64 {
        self.count
    }
    /// `sha256:<hex>` of everything written so far.
    pub fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.clone().finalize()))
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn crc32_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    for (i, e) in t.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *e = c;
    }
    t
}

/// gzip (RFC 1952) made of deflate stored blocks (RFC 1951 §3.2.4).
/// Call [`GzipStored::finish`] to write the final block and trailer.
pub struct GzipStored<W: Write> {
    inner: W,
    table: [u32; 256],
    crc: u32,
    total: u64,
    pending: Vec<u8>,
}

const STORED_MAX: usize = 65_535;

impl<W: Write> GzipStored<W> {
    pub fn new(mut inner: W) -> io::Result<Self> {
        // magic, CM=deflate, FLG=0, MTIME=0, XFL=0, OS=255 (unknown)
        inner.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])?;
        Ok(GzipStored {
            inner,
            table: crc32_table(),
            crc: 0xFFFF_FFFF,
            total: 0,
            pending: Vec::with_capacity(STORED_MAX),
        })
    }

    fn block(&mut self, last: bool) -> io::Result<()> {
        let len = self.pending.len() as u16;
        self.inner.write_all(&[u8::from(last)])?;
        self.inner.write_all(&len.to_le_bytes())?;
        self.inner.write_all(&(!len).to_le_bytes())?;
        self.inner.write_all(&self.pending)?;
        self.pending.clear();
        Ok(())
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.block(true)?;
        let crc = !self.crc;
        self.inner.write_all(&crc.to_le_bytes())?;
        self.inner.write_all(&(self.total as u32).to_le_bytes())?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for GzipStored<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(STORED_MAX - self.pending.len());
        let mut c = self.crc;
        for &b in &buf[..n] {
            c = self.table[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
        }
        self.crc = c;
        self.total += n as u64;
        self.pending.extend_from_slice(&buf[..n]);
        if self.pending.len() == STORED_MAX {
            self.block(false)?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// One ustar header block.
fn tar_header(name: &str, size: u64, dir: bool) -> [u8; 512] {
    fn octal(field: &mut [u8], v: u64) {
        let s = format!("{:0width$o}\0", v, width = field.len() - 1);
        assert_eq!(s.len(), field.len(), "tar field overflow");
        field.copy_from_slice(s.as_bytes());
    }
    assert!(name.len() < 100, "tar name too long: {name}");
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], if dir { 0o755 } else { 0o644 });
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], MTIME);
    h[148..156].copy_from_slice(b"        ");
    h[156] = if dir { b'5' } else { b'0' };
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[265..269].copy_from_slice(b"root");
    h[297..301].copy_from_slice(b"root");
    octal(&mut h[329..337], 0);
    octal(&mut h[337..345], 0);
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

/// A tar entry: a directory, or a file with content from a reader.
pub enum TarEntry<'a> {
    Dir(&'a str),
    File(&'a str, u64, Box<dyn Read + 'a>),
}

/// Write a complete tar archive (entries, then two zero blocks).
pub fn write_tar<W: Write>(w: &mut W, entries: Vec<TarEntry<'_>>) -> io::Result<()> {
    for e in entries {
        match e {
            TarEntry::Dir(name) => {
                let name = if name.ends_with('/') {
                    name.to_string()
                } else {
                    format!("{name}/")
                };
                w.write_all(&tar_header(&name, 0, true))?;
            }
            TarEntry::File(name, size, mut content) => {
                w.write_all(&tar_header(name, size, false))?;
                let copied = io::copy(&mut (&mut content).take(size), w)?;
                if copied != size {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "tar entry content too short",
                    ));
                }
                let pad = (512 - (size % 512) as usize) % 512;
                w.write_all(&vec![0u8; pad])?;
            }
        }
    }
    w.write_all(&[0u8; 1024])
}

// ---------------------------------------------------------------------------
// Descriptors and specs

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desc {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

impl Desc {
    pub fn json(&self) -> Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.size })
    }
    pub fn hex(&self) -> &str {
        self.digest.strip_prefix("sha256:").expect("sha256 digest")
    }
}

/// Manifest flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OCI image manifest / index, OCI config and layer media types.
    Oci,
    /// Docker image manifest v2 schema 2 / manifest list (layers are
    /// always gzip: schema 2 has no plain-tar layer type).
    Docker,
}

/// One layer to generate: a tar holding a directory and a file of `size`
/// pseudo-random bytes.
#[derive(Debug, Clone, Copy)]
pub struct LayerSpec {
    pub size: u64,
    pub gzip: bool,
}

impl LayerSpec {
    pub fn tar(size: u64) -> Self {
        LayerSpec { size, gzip: false }
    }
    pub fn gzip(size: u64) -> Self {
        LayerSpec { size, gzip: true }
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    pub layers: Vec<LayerSpec>,
    pub format: Format,
    /// Varies all content (two images with different seeds share nothing).
    pub seed: u64,
}

impl ImageSpec {
    pub fn oci(seed: u64, layers: Vec<LayerSpec>) -> Self {
        ImageSpec {
            layers,
            format: Format::Oci,
            seed,
        }
    }
    pub fn docker(seed: u64, layers: Vec<LayerSpec>) -> Self {
        ImageSpec {
            layers,
            format: Format::Docker,
            seed,
        }
    }
}

/// A generated layer.
#[derive(Debug, Clone)]
pub struct Layer {
    pub desc: Desc,
    /// sha256 of the uncompressed tar.
    pub diff_id: String,
}

/// A generated image (one platform).
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest: Desc,
    pub manifest_bytes: Vec<u8>,
    pub config: Desc,
    pub config_bytes: Vec<u8>,
    pub layers: Vec<Layer>,
    pub os: String,
    pub arch: String,
}

impl Image {
    /// Config and layer digests.
    pub fn blob_digests(&self) -> Vec<String> {
        let mut v = vec![self.config.digest.clone()];
        v.extend(self.layers.iter().map(|l| l.desc.digest.clone()));
        v
    }
}

/// A generated multi-platform image.
#[derive(Debug, Clone)]
pub struct MultiArch {
    pub index: Desc,
    pub index_bytes: Vec<u8>,
    pub images: Vec<Image>,
}

impl MultiArch {
    /// Every digest reachable from the index (manifests, configs, layers),
    /// deduplicated, index first.
    pub fn all_digests(&self) -> Vec<String> {
        let mut v = vec![self.index.digest.clone()];
        for i in &self.images {
            for d in std::iter::once(i.manifest.digest.clone()).chain(i.blob_digests()) {
                if !v.contains(&d) {
                    v.push(d);
                }
            }
        }
        v
    }
}

// ---------------------------------------------------------------------------
// The layout

/// An OCI image layout directory.
pub struct OciLayout {
    pub dir: PathBuf,
}

impl OciLayout {
    /// Create (or open) a layout at `dir`.
    pub fn create(dir: &Path) -> OciLayout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        let l = OciLayout {
            dir: dir.to_path_buf(),
        };
        if !dir.join("oci-layout").exists() {
            std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        }
        if !dir.join("index.json").exists() {
            l.write_index(
                &json!({ "schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": [] }),
            );
        }
        l
    }

    /// An existing layout (e.g. one a client wrote).
    pub fn open(dir: &Path) -> OciLayout {
        OciLayout {
            dir: dir.to_path_buf(),
        }
    }

    /// `oci:<dir>:<tag>`, the containers-transports reference.
    pub fn transport_ref(&self, tag: &str) -> String {
        format!("oci:{}:{tag}", self.dir.display())
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        self.dir.join("blobs/sha256").join(hex)
    }

    pub fn read_blob(&self, digest: &str) -> Vec<u8> {
        std::fs::read(self.blob_path(digest))
            .unwrap_or_else(|e| panic!("blob {digest} in {}: {e}", self.dir.display()))
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_file()
    }

    /// `(digest, path)` of every blob file.
    pub fn blob_files(&self) -> Vec<(String, PathBuf)> {
        let mut v: Vec<_> = std::fs::read_dir(self.dir.join("blobs/sha256"))
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_file())
            .map(|e| {
                (
                    format!("sha256:{}", e.file_name().to_string_lossy()),
                    e.path(),
                )
            })
            .collect();
        v.sort();
        v
    }

    pub fn index(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.dir.join("index.json")).unwrap()).unwrap()
    }

    fn write_index(&self, v: &Value) {
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec_pretty(v).unwrap(),
        )
        .unwrap();
    }

    /// Point `tag` at `desc` in `index.json` (replacing an older entry).
    pub fn tag(&self, tag: &str, desc: &Desc) {
        let mut idx = self.index();
        let list = idx["manifests"].as_array_mut().unwrap();
        list.retain(|m| m["annotations"][REF_NAME] != tag);
        let mut d = desc.json();
        d["annotations"] = json!({ REF_NAME: tag });
        list.push(d);
        self.write_index(&idx);
    }

    /// The descriptor `tag` names in `index.json`.
    pub fn resolve(&self, tag: &str) -> Desc {
        let idx = self.index();
        let list = idx["manifests"].as_array().unwrap();
        let m = list
            .iter()
            .find(|m| m["annotations"][REF_NAME] == tag)
            .or_else(|| if list.len() == 1 { list.first() } else { None })
            .unwrap_or_else(|| panic!("no tag {tag} in {}: {idx}", self.dir.display()));
        Desc {
            media_type: m["mediaType"].as_str().unwrap().to_string(),
            digest: m["digest"].as_str().unwrap().to_string(),
            size: m["size"].as_u64().unwrap(),
        }
    }

    /// Store small bytes as a blob.
    pub fn put_blob(&self, media_type: &str, bytes: &[u8]) -> Desc {
        let digest = super::sha256(bytes);
        let p = self.blob_path(&digest);
        if !p.exists() {
            std::fs::write(&p, bytes).unwrap();
        }
        Desc {
            media_type: media_type.to_string(),
            digest,
            size: bytes.len() as u64,
        }
    }

    /// Generate one layer, streamed to disk.
    pub fn put_layer(&self, format: Format, spec: LayerSpec, seed: u64) -> Layer {
        let gzip = spec.gzip || format == Format::Docker;
        let media_type = match (format, gzip) {
            (Format::Docker, _) => MT_DOCKER_LAYER_GZIP,
            (Format::Oci, true) => MT_OCI_LAYER_GZIP,
            (Format::Oci, false) => MT_OCI_LAYER_TAR,
        };
        let tmp = self
            .dir
            .join("blobs/sha256")
            .join(format!(".tmp-layer-{seed}-{}", std::process::id()));
        let file = BufWriter::with_capacity(1 << 20, File::create(&tmp).unwrap());
        let dir = format!("layer-{seed}");
        let data_name = format!("{dir}/data.bin");
        let readme_name = format!("{dir}/README");
        let readme = format!(
            "wharf test layer, seed {seed}, {} bytes of noise\n",
            spec.size
        );
        let entries = |_: ()| {
            vec![
                TarEntry::Dir(&dir),
                TarEntry::File(
                    &readme_name,
                    readme.len() as u64,
                    Box::new(readme.as_bytes()),
                ),
                TarEntry::File(&data_name, spec.size, Box::new(Noise::new(seed, spec.size))),
            ]
        };
        let (digest, size, diff_id) = if gzip {
            let mut outer = HashWriter::new(file);
            let mut gz = GzipStored::new(&mut outer).unwrap();
            let mut tar = HashWriter::new(&mut gz);
            write_tar(&mut tar, entries(())).unwrap();
            let diff_id = tar.digest();
            gz.finish().unwrap();
            outer.flush().unwrap();
            (outer.digest(), outer.count(), diff_id)
        } else {
            let mut tar = HashWriter::new(file);
            write_tar(&mut tar, entries(())).unwrap();
            tar.flush().unwrap();
            (tar.digest(), tar.count(), tar.digest())
        };
        let dest = self.blob_path(&digest);
        std::fs::rename(&tmp, &dest).unwrap();
        Layer {
            desc: Desc {
                media_type: media_type.to_string(),
                digest,
                size,
            },
            diff_id,
        }
    }

    /// Generate config, layers and manifest for one platform; nothing is
    /// tagged. Layer `i` has seed `seed * 1000 + i` unless `shared_first`,
    /// in which case layer 0 uses `seed * 1000` with the arch ignored (so
    /// platforms of one index share it).
    fn build_image(&self, spec: &ImageSpec, os: &str, arch: &str, arch_salt: u64) -> Image {
        let layers: Vec<Layer> = spec
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let salt = if i == 0 { 0 } else { arch_salt };
                self.put_layer(spec.format, *l, spec.seed * 1000 + salt * 100 + i as u64)
            })
            .collect();
        let history: Vec<Value> = (0..layers.len())
            .map(|i| json!({ "created": CREATED, "created_by": format!("wharf test layer {i}") }))
            .collect();
        let config = json!({
            "created": CREATED,
            "architecture": arch,
            "os": os,
            "config": { "Env": ["PATH=/"], "Cmd": ["/layer-0/README"], "Labels": { "wharf.test.seed": spec.seed.to_string() } },
            "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>() },
            "history": history,
        });
        let config_bytes = serde_json::to_vec(&config).unwrap();
        let (mt_manifest, mt_config) = match spec.format {
            Format::Oci => (MT_OCI_MANIFEST, MT_OCI_CONFIG),
            Format::Docker => (MT_DOCKER_MANIFEST, MT_DOCKER_CONFIG),
        };
        let config_desc = self.put_blob(mt_config, &config_bytes);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": mt_manifest,
            "config": config_desc.json(),
            "layers": layers.iter().map(|l| l.desc.json()).collect::<Vec<_>>(),
        });
        let manifest_bytes = serde_json::to_vec_pretty(&manifest).unwrap();
        let manifest_desc = self.put_blob(mt_manifest, &manifest_bytes);
        Image {
            manifest: manifest_desc,
            manifest_bytes,
            config: config_desc,
            config_bytes,
            layers,
            os: os.to_string(),
            arch: arch.to_string(),
        }
    }

    /// A single-platform (linux/amd64) image, tagged `tag`.
    pub fn image(&self, tag: &str, spec: &ImageSpec) -> Image {
        let img = self.build_image(spec, "linux", "amd64", 0);
        self.tag(tag, &img.manifest);
        img
    }

    /// A linux/amd64 + linux/arm64 image under one index (OCI index or
    /// Docker manifest list), tagged `tag`. The first layer is shared by
    /// both platforms, the others are per platform.
    pub fn multi_arch(&self, tag: &str, spec: &ImageSpec) -> MultiArch {
        let images = vec![
            self.build_image(spec, "linux", "amd64", 1),
            self.build_image(spec, "linux", "arm64", 2),
        ];
        let mt_index = match spec.format {
            Format::Oci => MT_OCI_INDEX,
            Format::Docker => MT_DOCKER_LIST,
        };
        let manifests: Vec<Value> = images
            .iter()
            .map(|i| {
                let mut d = i.manifest.json();
                d["platform"] = json!({ "architecture": i.arch, "os": i.os });
                d
            })
            .collect();
        let index = json!({ "schemaVersion": 2, "mediaType": mt_index, "manifests": manifests });
        let index_bytes = serde_json::to_vec_pretty(&index).unwrap();
        let desc = self.put_blob(mt_index, &index_bytes);
        self.tag(tag, &desc);
        MultiArch {
            index: desc,
            index_bytes,
            images,
        }
    }

    /// Panic unless every blob file hashes to its own name.
    pub fn verify_blobs(&self) {
        for (d, p) in self.blob_files() {
            assert_eq!(
                super::sha256_file(&p),
                d,
                "blob file {} does not match its name",
                p.display()
            );
        }
    }
}

// ---------------------------------------------------------------------------
// The containers-image `dir:` transport (any manifest type, byte-exact)

/// A directory in the `dir:` transport's format: `version`,
/// `manifest.json` (the top-level manifest or index), `<hex>.manifest.json`
/// for each instance of an index, and blobs as `<hex>`. skopeo 1.9 reads
/// only OCI manifests from an OCI layout, so Docker schema 2 images travel
/// through this format.
pub struct DirImage {
    pub dir: PathBuf,
}

const DIR_VERSION: &str = "Directory Transport Version: 1.1\n";

impl DirImage {
    pub fn open(dir: &Path) -> DirImage {
        DirImage {
            dir: dir.to_path_buf(),
        }
    }

    /// `dir:<path>`
    pub fn transport_ref(&self) -> String {
        format!("dir:{}", self.dir.display())
    }

    /// The top-level manifest, or that of one instance of an index.
    pub fn manifest(&self, instance: Option<&str>) -> Vec<u8> {
        let p = match instance {
            None => self.dir.join("manifest.json"),
            Some(d) => self.dir.join(format!(
                "{}.manifest.json",
                d.strip_prefix("sha256:").unwrap()
            )),
        };
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.dir
            .join(digest.strip_prefix("sha256:").expect("sha256 digest"))
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_file()
    }
}

fn link_or_copy(from: &Path, to: &Path) {
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to)
            .unwrap_or_else(|e| panic!("copy {} -> {}: {e}", from.display(), to.display()));
    }
}

impl OciLayout {
    /// Write the image or index `desc` (stored in this layout) as a `dir:`
    /// directory at `dest` (blobs hard-linked where possible).
    pub fn export_dir(&self, desc: &Desc, dest: &Path) -> DirImage {
        std::fs::create_dir_all(dest).unwrap();
        std::fs::write(dest.join("version"), DIR_VERSION).unwrap();
        let top = self.read_blob(&desc.digest);
        std::fs::write(dest.join("manifest.json"), &top).unwrap();
        let v: Value = serde_json::from_slice(&top).unwrap();
        let mut images = Vec::new();
        if let Some(children) = v["manifests"].as_array() {
            for c in children {
                let d = c["digest"].as_str().unwrap();
                let bytes = self.read_blob(d);
                std::fs::write(
                    dest.join(format!(
                        "{}.manifest.json",
                        d.strip_prefix("sha256:").unwrap()
                    )),
                    &bytes,
                )
                .unwrap();
                images.push(serde_json::from_slice::<Value>(&bytes).unwrap());
            }
        } else {
            images.push(v);
        }
        let out = DirImage::open(dest);
        for m in images {
            let blobs = std::iter::once(&m["config"]).chain(m["layers"].as_array().unwrap().iter());
            for b in blobs {
                let d = b["digest"].as_str().unwrap();
                if !out.has_blob(d) {
                    link_or_copy(&self.blob_path(d), &out.blob_path(d));
                }
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Fast hashing of big streams

/// sha256 (`sha256:<hex>`) of everything `r` yields. Uses the system's
/// `sha256sum` when there is one (optimised C, several times faster than a
/// debug build of the `sha2` crate), else `sha2`.
pub fn fast_sha256<R: Read>(mut r: R) -> String {
    use std::process::{Command, Stdio};
    if let Ok(mut child) = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    {
        let mut stdin = child.stdin.take().unwrap();
        io::copy(&mut r, &mut stdin).expect("feed sha256sum");
        drop(stdin);
        let out = child.wait_with_output().expect("sha256sum");
        assert!(out.status.success(), "sha256sum failed");
        let text = String::from_utf8_lossy(&out.stdout);
        let hex = text.split_whitespace().next().expect("sha256sum output");
        return format!("sha256:{hex}");
    }
    let mut w = HashWriter::new(io::sink());
    io::copy(&mut r, &mut w).unwrap();
    w.digest()
}

/// [`fast_sha256`] of `Noise::new(seed, len)`.
pub fn fast_noise_digest(seed: u64, len: u64) -> String {
    fast_sha256(Noise::new(seed, len))
}

/// [`fast_sha256`] of a file.
pub fn fast_sha256_file(path: &Path) -> String {
    fast_sha256(File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}
