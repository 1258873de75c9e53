//! Manifests, tags, referrers and the repository catalogue.
//!
//! Manifest bytes are stored as blobs (byte-exact); a repository links a
//! manifest revision with a small file holding its media type; a tag is a
//! small file holding a digest. Writes go blob → revision link → referrer
//! link → tag, so a tag never points at a manifest that is not there.

use std::io;
use std::path::Path;

use bytes::Bytes;

use super::fsutil::{read_opt, remove_if_exists, write_atomic};
use super::{blocking, Store};
use crate::oci::{Digest, RepoName, Tag};

/// A manifest as stored: its digest, media type and exact bytes.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

impl Store {
    /// Store manifest `bytes` (digest `d`, already verified by the caller)
    /// in `repo`, optionally under `tag`, recording `subject` for referrers.
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        d: &Digest,
        media_type: &str,
        bytes: Bytes,
        tag: Option<&Tag>,
        subject: Option<&Digest>,
    ) -> io::Result<()> {
        self.put_small_blob(d, bytes).await?;
        let changed = repo.clone();
        let l = self.layout().clone();
        let cached = d.clone();
        let (repo, d, mt) = (repo.clone(), d.clone(), media_type.to_string());
        let (tag, subject) = (tag.cloned(), subject.cloned());
        let tmps = [self.temp_path(), self.temp_path(), self.temp_path()];
        blocking(move || {
            write_atomic(&tmps[0], &l.manifest_link(&repo, &d), mt.as_bytes())?;
            if let Some(s) = subject {
                write_atomic(&tmps[1], &l.referrer_link(&repo, &s, &d), b"")?;
            }
            if let Some(t) = tag {
                write_atomic(&tmps[2], &l.tag_file(&repo, &t), d.to_string().as_bytes())?;
            }
            Ok(())
        })
        .await?;
        self.inner.manifests.invalidate(&changed, &cached);
        self.usage_changed(&changed);
        Ok(())
    }

    /// The media type of manifest `d` if `repo` links it.
    pub async fn manifest_media_type(&self, repo: &RepoName, d: &Digest) -> io::Result<Option<String>> {
        let p = self.layout().manifest_link(repo, d);
        Ok(blocking(move || read_opt(&p))
            .await?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// The digest `tag` points at in `repo`.
    pub async fn resolve_tag(&self, repo: &RepoName, tag: &Tag) -> io::Result<Option<Digest>> {
        let p = self.layout().tag_file(repo, tag);
        let Some(b) = blocking(move || read_opt(&p)).await? else {
            return Ok(None);
        };
        String::from_utf8_lossy(&b)
            .trim()
            .parse()
            .map(Some)
            .map_err(|e| io::Error::other(format!("corrupt tag file for {repo}:{tag}: {e}")))
    }

    /// Manifest `d` of `repo`, if the repository links it (from the
    /// in-memory cache when possible, see [`super::manifest_cache`]).
    pub async fn get_manifest(&self, repo: &RepoName, d: &Digest) -> io::Result<Option<StoredManifest>> {
        if let Some(m) = self.inner.manifests.get(repo, d) {
            return Ok(Some(m));
        }
        let generation = self.inner.manifests.generation();
        let Some(media_type) = self.manifest_media_type(repo, d).await? else {
            return Ok(None);
        };
        let Some(bytes) = self.read_small_blob(d).await? else {
            return Ok(None);
        };
        let m = StoredManifest {
            digest: d.clone(),
            media_type,
            bytes,
        };
        self.inner.manifests.fill(generation, repo, &m);
        Ok(Some(m))
    }

    /// Point `tag` at manifest `d` (which must be linked already).
    pub async fn set_tag(&self, repo: &RepoName, tag: &Tag, d: &Digest) -> io::Result<()> {
        let p = self.layout().tag_file(repo, tag);
        let tmp = self.temp_path();
        let v = d.to_string();
        blocking(move || write_atomic(&tmp, &p, v.as_bytes())).await
    }

    /// Remove `tag`; returns whether it existed.
    pub async fn untag(&self, repo: &RepoName, tag: &Tag) -> io::Result<bool> {
        let p = self.layout().tag_file(repo, tag);
        blocking(move || remove_if_exists(&p)).await
    }

    /// Remove manifest `d` from `repo` with every tag pointing at it and its
    /// referrer link. Returns the removed tags, or `None` if not linked.
    /// The bytes stay until GC (other repositories may share them).
    pub async fn delete_manifest(
        &self,
        repo: &RepoName,
        d: &Digest,
        subject: Option<&Digest>,
    ) -> io::Result<Option<Vec<String>>> {
        let changed = repo.clone();
        let l = self.layout().clone();
        let cached = d.clone();
        let (repo, d, subject) = (repo.clone(), d.clone(), subject.cloned());
        let r = blocking(move || {
            let link = l.manifest_link(&repo, &d);
            if !link.exists() {
                return Ok(None);
            }
            let mut removed = Vec::new();
            let want = d.to_string();
            for tag in list_dir(&l.tags_dir(&repo))? {
                let p = l.tags_dir(&repo).join(&tag);
                if read_opt(&p)?.is_some_and(|b| String::from_utf8_lossy(&b).trim() == want) {
                    remove_if_exists(&p)?;
                    removed.push(tag);
                }
            }
            if let Some(s) = subject {
                remove_if_exists(&l.referrer_link(&repo, &s, &d))?;
            }
            remove_if_exists(&link)?;
            removed.sort();
            Ok(Some(removed))
        })
        .await;
        self.inner.manifests.invalidate(&changed, &cached);
        self.usage_changed(&changed);
        r
    }

    /// Tags of `repo`, sorted; `None` if the repository does not exist.
    pub async fn tags(&self, repo: &RepoName) -> io::Result<Option<Vec<String>>> {
        let l = self.layout().clone();
        let repo = repo.clone();
        blocking(move || {
            let dir = l.repo_dir(&repo);
            if !is_repository(&dir) {
                return Ok(None);
            }
            let mut tags = list_dir(&l.tags_dir(&repo))?;
            tags.sort();
            Ok(Some(tags))
        })
        .await
    }

    /// Whether `repo` exists (has any linked blob, manifest or tag).
    pub async fn repo_exists(&self, repo: &RepoName) -> bool {
        let dir = self.layout().repo_dir(repo);
        blocking(move || Ok(is_repository(&dir))).await.unwrap_or(false)
    }

    /// Whether any local repository lives under the first name component
    /// `namespace` (a valid name component: no separators, no `..`).
    pub async fn namespace_exists(&self, namespace: &str) -> bool {
        if namespace.is_empty() || namespace.contains('/') || namespace.starts_with('.') {
            return false;
        }
        let dir = self.layout().repos_dir().join(namespace);
        blocking(move || Ok(dir.is_dir())).await.unwrap_or(false)
    }

    /// Digests of manifests in `repo` whose subject is `subject`.
    pub async fn referrers(&self, repo: &RepoName, subject: &Digest) -> io::Result<Vec<Digest>> {
        let dir = self.layout().referrers_dir(repo, subject);
        let names = blocking(move || list_dir(&dir)).await?;
        let mut out: Vec<Digest> = names
            .iter()
            .filter_map(|n| n.replacen('-', ":", 1).parse().ok())
            .collect();
        out.sort();
        Ok(out)
    }

    /// Every repository name, sorted.
    pub async fn repositories(&self) -> io::Result<Vec<String>> {
        let root = self.layout().repos_dir();
        blocking(move || {
            let mut out = Vec::new();
            walk_repos(&root, String::new(), &mut out)?;
            out.sort();
            Ok(out)
        })
        .await
    }
}

fn is_repository(dir: &Path) -> bool {
    ["_manifests", "_layers", "_tags"].iter().any(|m| dir.join(m).is_dir())
}

/// Names of the entries of `dir` (empty if it does not exist), skipping
/// hidden files.
fn list_dir(dir: &Path) -> io::Result<Vec<String>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for e in rd {
        let name = e?.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            out.push(name);
        }
    }
    Ok(out)
}

fn walk_repos(dir: &Path, prefix: String, out: &mut Vec<String>) -> io::Result<()> {
    if !prefix.is_empty() && is_repository(dir) {
        out.push(prefix.clone());
    }
    for name in list_dir(dir)? {
        if name.starts_with('_') {
            continue;
        }
        let p = dir.join(&name);
        if p.is_dir() {
            let next = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            walk_repos(&p, next, out)?;
        }
    }
    Ok(())
}
