//! The only place that turns names and digests into paths.
//!
//! ```text
//! <root>/wharf.lock
//! <root>/blobs/<alg>/<hex[0..2]>/<hex>          content, shared by all repositories
//! <root>/tmp/<uuid>                            files being written (removed at start-up)
//! <root>/uploads/<uuid>/{data,meta.json}       upload sessions
//! <root>/repos/<name>/_layers/<alg>/<hex>      blob linked into the repository
//! <root>/repos/<name>/_manifests/<alg>/<hex>   manifest revision; content: its media type
//! <root>/repos/<name>/_tags/<tag>              content: the tagged digest
//! <root>/repos/<name>/_referrers/<alg>/<hex>/<alg>-<hex>   subject -> referrer
//! <root>/repos/<name>/_pinned/<alg>/<hex>      cached manifest pinned (never evicted)
//! ```
//!
//! Repository names, tags, digests and upload ids arrive here already
//! validated (see `oci`), and their grammars admit no `..`, no separators
//! other than `/` between name components, and no leading `_`, so a
//! repository directory can never collide with the `_*` metadata folders.

use std::path::{Path, PathBuf};

use crate::oci::{Digest, RepoName, Tag};

#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: PathBuf) -> Layout {
        Layout { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn lock_file(&self) -> PathBuf {
        self.root.join("wharf.lock")
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    pub fn blob(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.blobs_dir()
            .join(d.algorithm().as_str())
            .join(&hex[..2])
            .join(hex)
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn tmp_file(&self) -> PathBuf {
        self.tmp_dir().join(uuid::Uuid::new_v4().to_string())
    }

    pub fn uploads_dir(&self) -> PathBuf {
        self.root.join("uploads")
    }

    /// `id` must be a UUID (checked by the caller).
    pub fn upload_dir(&self, id: &str) -> PathBuf {
        self.uploads_dir().join(id)
    }

    pub fn upload_data(&self, id: &str) -> PathBuf {
        self.upload_dir(id).join("data")
    }

    pub fn upload_meta(&self, id: &str) -> PathBuf {
        self.upload_dir(id).join("meta.json")
    }

    pub fn repos_dir(&self) -> PathBuf {
        self.root.join("repos")
    }

    pub fn repo_dir(&self, name: &RepoName) -> PathBuf {
        let mut p = self.repos_dir();
        for c in name.components() {
            p.push(c);
        }
        p
    }

    fn digest_path(base: PathBuf, d: &Digest) -> PathBuf {
        base.join(d.algorithm().as_str()).join(d.hex())
    }

    pub fn layer_link(&self, name: &RepoName, d: &Digest) -> PathBuf {
        Self::digest_path(self.repo_dir(name).join("_layers"), d)
    }

    pub fn manifests_dir(&self, name: &RepoName) -> PathBuf {
        self.repo_dir(name).join("_manifests")
    }

    pub fn manifest_link(&self, name: &RepoName, d: &Digest) -> PathBuf {
        Self::digest_path(self.manifests_dir(name), d)
    }

    pub fn tags_dir(&self, name: &RepoName) -> PathBuf {
        self.repo_dir(name).join("_tags")
    }

    pub fn tag_file(&self, name: &RepoName, tag: &Tag) -> PathBuf {
        self.tags_dir(name).join(tag.as_str())
    }

    pub fn referrers_dir(&self, name: &RepoName, subject: &Digest) -> PathBuf {
        Self::digest_path(self.repo_dir(name).join("_referrers"), subject)
    }

    pub fn pins_dir(&self, name: &RepoName) -> PathBuf {
        self.repo_dir(name).join("_pinned")
    }

    pub fn pin_file(&self, name: &RepoName, d: &Digest) -> PathBuf {
        Self::digest_path(self.pins_dir(name), d)
    }

    pub fn referrer_link(&self, name: &RepoName, subject: &Digest, referrer: &Digest) -> PathBuf {
        self.referrers_dir(name, subject)
            .join(format!("{}-{}", referrer.algorithm().as_str(), referrer.hex()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_under_root() {
        let l = Layout::new(PathBuf::from("/data"));
        let d = Digest::sha256_of(b"x");
        let n: RepoName = "a/b/c".parse().unwrap();
        assert!(l.blob(&d).starts_with("/data/blobs/sha256/"));
        assert_eq!(
            l.layer_link(&n, &d),
            PathBuf::from(format!("/data/repos/a/b/c/_layers/sha256/{}", d.hex()))
        );
        let t: Tag = "v1".parse().unwrap();
        assert_eq!(l.tag_file(&n, &t), PathBuf::from("/data/repos/a/b/c/_tags/v1"));
    }
}
