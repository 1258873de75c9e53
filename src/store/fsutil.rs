//! Durable small-file primitives: write-fsync-rename and directory fsync.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// fsync a directory so a rename or unlink inside it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Create `path`'s parent directories.
pub fn ensure_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(p) => fs::create_dir_all(p),
        None => Ok(()),
    }
}

/// Atomically replace `path` with `bytes`: write `tmp`, fsync, rename, fsync
/// the directory. Readers see the old content or the new, never a mix.
pub fn write_atomic(tmp: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = File::create(tmp)?;
    let res = f.write_all(bytes).and_then(|_| f.sync_all());
    drop(f);
    if let Err(e) = res {
        let _ = fs::remove_file(tmp);
        return Err(e);
    }
    commit_file(tmp, path)
}

/// Rename an already-fsynced `tmp` to `path` and fsync the directory.
pub fn commit_file(tmp: &Path, path: &Path) -> io::Result<()> {
    ensure_parent(path)?;
    if let Err(e) = fs::rename(tmp, path) {
        let _ = fs::remove_file(tmp);
        return Err(e);
    }
    if let Some(p) = path.parent() {
        sync_dir(p)?;
    }
    Ok(())
}

/// Remove a file; absent is fine. Returns whether it existed.
pub fn remove_if_exists(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Read a small file; `None` when it does not exist.
pub fn read_opt(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => Ok(None),
        Err(e) => Err(e),
    }
}
