//! What tests inspect on disk and in /proc: the files of wharf's
//! filesystem store (blobs at `blobs/<alg>/<first two hex>/<hex>`, the one
//! layout fact the tests rely on) and a process's peak resident set.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Every regular file under `dir`, recursively (empty when `dir` is missing).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Where the filesystem store keeps the blob `digest` (`sha256:<hex>`).
pub fn blob_file(data_dir: &Path, digest: &str) -> PathBuf {
    let (alg, hex) = digest.split_once(':').expect("digest is <alg>:<hex>");
    data_dir.join("blobs").join(alg).join(&hex[..2]).join(hex)
}

/// The store key of blob `digest` (for [`super::Wharf::stored`]).
pub fn blob_key(digest: &str) -> String {
    let (alg, hex) = digest.split_once(':').expect("digest is <alg>:<hex>");
    format!("blobs/{alg}/{}/{hex}", &hex[..2])
}

/// Every blob file of the store under `data_dir`.
pub fn blob_files(data_dir: &Path) -> Vec<PathBuf> {
    files_under(&data_dir.join("blobs"))
}

/// The peak resident set (`VmHWM`) of process `pid` in KiB.
pub fn vm_hwm_kib(pid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status:\n{status}"))
}
