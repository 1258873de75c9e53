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

/// Create `path` with `bytes` only if it does not exist (mode 0600): write a
/// private temp file, then hard-link it into place, which fails when the
/// target exists. Returns whether this call created it.
pub fn create_new(tmp: &Path, path: &Path, bytes: &[u8]) -> io::Result<bool> {
    let mut o = fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o.open(tmp)?;
    let res = f.write_all(bytes).and_then(|_| f.sync_all());
    drop(f);
    if let Err(e) = res {
        let _ = fs::remove_file(tmp);
        return Err(e);
    }
    ensure_parent(path)?;
    let linked = fs::hard_link(tmp, path);
    let _ = fs::remove_file(tmp);
    match linked {
        Ok(()) => {
            if let Some(p) = path.parent() {
                sync_dir(p)?;
            }
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Set a file's mtime to now, creating it empty if absent.
pub fn touch(p: &Path) -> io::Result<()> {
    ensure_parent(p)?;
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(p)?;
    f.set_modified(std::time::SystemTime::now())
}

/// Names of the entries of `dir` (empty if it does not exist), hidden files
/// skipped, directories suffixed with `/`, sorted bytewise.
pub fn list_dir(dir: &Path) -> io::Result<Vec<String>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(Vec::new())
        }
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e?;
        let mut name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if e.file_type()?.is_dir() {
            name.push('/');
        }
        out.push(name);
    }
    out.sort_unstable();
    Ok(out)
}

/// Remove everything inside `dir` (used at start-up on `tmp/`).
pub fn empty_dir(dir: &Path) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            fs::remove_dir_all(&p)?;
        } else {
            fs::remove_file(&p)?;
        }
    }
    Ok(())
}
