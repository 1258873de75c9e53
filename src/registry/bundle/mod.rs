//! Offline bundles: images as an OCI image layout in one tar stream.
//!
//! [`Registry::export_bundle`] (in `export`) collects the manifests
//! (every child of an index) and blobs of some images, local or cached from a remote, and
//! streams `oci-layout`, `index.json` and `blobs/sha256/<hex>` without
//! holding any blob in memory. [`Registry::import_bundle`] reads such a
//! tar as it arrives: every blob goes through a [`crate::store::BlobWriter`]
//! and is committed only when its bytes match its name, so a tampered
//! bundle is refused naming the digest. Tags and manifest links are made
//! only after the whole tar was read and checked: a refused bundle links
//! nothing (blobs it left unreferenced go at the next GC).
//!
//! Where images land: `index.json` carries each image's tag
//! (`org.opencontainers.image.ref.name`) and its path within its namespace
//! ([`REPO_ANNOTATION`]: `lib/app` for `up/lib/app` cached from remote
//! `up`, `app` for project image `team/app`); an import puts it under the
//! remote's cache (`<remote>/<path>`, served offline as if pulled) or a
//! project (`<project>/<path>`).

mod export;
pub(crate) mod tar;

pub use export::ExportOptions;

use bytes::Bytes;
use futures_util::Stream;
use serde::{Deserialize, Serialize};

use super::{Registry, RegistryError, Result};
use crate::auth::Identity;
use crate::oci::manifest::{self, Manifest};
use crate::oci::{Algorithm, Digest, Reference, RepoName};
use crate::store::{StoreError, StoredManifest};

/// The tag of an image in `index.json` (OCI image layout).
pub const REF_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// An image's repository path within its namespace (remote or project).
pub const REPO_ANNOTATION: &str = "io.wharf.repository";
/// The full name the image had where it was exported.
pub const SOURCE_ANNOTATION: &str = "io.wharf.source";

/// Where an import puts the images.
#[derive(Debug, Clone)]
pub enum ImportInto {
    /// A remote's cache: `<remote>/<path>`.
    Remote(String),
    /// A local project: `<project>/<path>`.
    Project(String),
}

/// One image imported.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImportedImage {
    pub repository: String,
    pub tag: Option<String>,
    pub digest: String,
}

/// What an import did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportReport {
    pub images: Vec<ImportedImage>,
    pub blobs: usize,
    pub bytes: u64,
}

impl Registry {
    /// Read an OCI image layout tar from `body` into `into` (admins only).
    pub async fn import_bundle<S, E>(
        &self,
        id: &Identity,
        into: ImportInto,
        body: S,
    ) -> Result<ImportReport>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        self.require_admin(id)?;
        let namespace = self.import_namespace(&into)?;
        let op = async {
            let (index, blobs, bytes) = self.read_bundle(body).await?;
            // An edge site may have no uplink to fetch an evicted image
            // again: what is imported into a cache stays until unpinned.
            let pin = matches!(into, ImportInto::Remote(_));
            let images = self.link_bundle(&namespace, &index, pin).await?;
            Ok(ImportReport {
                images,
                blobs,
                bytes,
            })
        };
        let details = |r: &ImportReport| serde_json::to_value(r).ok();
        self.audited(id, "bundle.import", &namespace, op, details)
            .await
    }

    /// The first segment the imported repositories go under.
    fn import_namespace(&self, into: &ImportInto) -> Result<String> {
        match into {
            ImportInto::Remote(r) => match self.namespaces().router().by_name(r) {
                Some(_) => Ok(r.clone()),
                None => Err(RegistryError::BadRequest(format!(
                    "no remote named {r:?} is configured; add a [[remotes]] entry with that name (its url may be unreachable)"
                ))),
            },
            ImportInto::Project(p) => match self.projects.get(p) {
                Some(_) => Ok(p.clone()),
                None => Err(RegistryError::NotFound(format!(
                    "project {p:?} does not exist; create it first"
                ))),
            },
        }
    }

    /// Stream the tar's blobs into the store (each verified against its
    /// name) and return `index.json` with the blob count and bytes.
    async fn read_bundle<S, E>(&self, body: S) -> Result<(Bytes, usize, u64)>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let bad = |m: String| RegistryError::BadRequest(format!("invalid bundle: {m}"));
        let mut r = tar::Reader::new(body);
        let (mut index, mut blobs, mut bytes) = (None, 0, 0);
        let max_index = self.limits.max_manifest_size.max(1 << 20) as u64;
        while let Some(e) = r.next_entry().await.map_err(|e| read_err(&bad, e))? {
            if !e.is_file {
                continue;
            }
            if e.name == "index.json" {
                if e.size > max_index {
                    return Err(bad(format!("index.json is larger than {max_index} bytes")));
                }
                let mut buf = Vec::new();
                while let Some(c) = r.chunk().await.map_err(|e| read_err(&bad, e))? {
                    buf.extend_from_slice(&c);
                }
                index = Some(Bytes::from(buf));
            } else if let Some(hex) = e.name.strip_prefix("blobs/sha256/") {
                let d: Digest = format!("sha256:{hex}")
                    .parse()
                    .map_err(|_| bad(format!("{} is not a sha256 blob name", e.name)))?;
                self.store.blobs().ensure_room(e.size).await?;
                let mut w = self.store.blobs().writer(Algorithm::Sha256).await?;
                while let Some(c) = r.chunk().await.map_err(|e| read_err(&bad, e))? {
                    w.write(c).await?;
                }
                let n = w.commit(&d).await.map_err(|err| match err {
                    StoreError::DigestMismatch { actual, .. } => RegistryError::DigestInvalid(format!(
                        "bundle entry {} holds content with digest {actual}, not {d}: the bundle was altered or damaged; nothing was imported",
                        e.name
                    )),
                    err => err.into(),
                })?;
                blobs += 1;
                bytes += n;
            }
        }
        let index = index.ok_or_else(|| bad("it has no index.json".into()))?;
        Ok((index, blobs, bytes))
    }

    /// Check every image of `index` is complete in the store, then link
    /// blobs, manifests and tags into `<namespace>/<path>` (and pin each
    /// image when `pin`).
    async fn link_bundle(
        &self,
        namespace: &str,
        index: &[u8],
        pin: bool,
    ) -> Result<Vec<ImportedImage>> {
        let bad = |m: String| RegistryError::BadRequest(format!("invalid bundle: {m}"));
        let index = Manifest::parse(index, Some(manifest::OCI_INDEX))
            .map_err(|e| bad(format!("index.json: {e}")))?;
        let mut plans = Vec::new();
        for desc in &index.manifests {
            let ann = desc.annotations.clone().unwrap_or_default();
            let path = ann.get(REPO_ANNOTATION).ok_or_else(|| {
                bad(format!(
                    "index.json entry {} has no {REPO_ANNOTATION} annotation (the repository to import into)",
                    desc.digest
                ))
            })?;
            let repo: RepoName = format!("{namespace}/{path}")
                .parse()
                .map_err(|e| bad(format!("repository {namespace}/{path}: {e}")))?;
            let tag = match ann.get(REF_ANNOTATION) {
                Some(t) => Some(
                    t.parse::<crate::oci::Tag>()
                        .map_err(|e| bad(format!("tag {t:?}: {e}")))?,
                ),
                None => None,
            };
            let order = self.bundle_manifests(&desc.digest).await?;
            plans.push((repo, tag, desc.digest.clone(), order));
        }
        let mut out = Vec::new();
        for (repo, tag, root, order) in plans {
            for (m, parsed) in &order {
                for b in stored_blobs(parsed) {
                    self.store.repo(&repo).link_blob(&b.digest).await?;
                }
                let r = match (&tag, m.digest == root) {
                    (Some(t), true) => Reference::Tag(t.clone()),
                    _ => Reference::Digest(m.digest.clone()),
                };
                self.put_manifest(&repo, &r, Some(&m.media_type), m.bytes.clone())
                    .await?;
            }
            if pin {
                self.store.repo(&repo).pin(&root).await?;
            }
            out.push(ImportedImage {
                repository: repo.to_string(),
                tag: tag.map(|t| t.to_string()),
                digest: root.to_string(),
            });
        }
        Ok(out)
    }

    /// The manifests under `root` (children before their index), all read
    /// from the store and every blob they need present; else which is missing.
    async fn bundle_manifests(&self, root: &Digest) -> Result<Vec<(StoredManifest, Manifest)>> {
        let missing = |d: &Digest| {
            RegistryError::ManifestBlobUnknown(format!(
                "invalid bundle: it lacks {d}, which its images need; nothing was imported"
            ))
        };
        let mut out = Vec::new();
        let mut todo = vec![root.clone()];
        while let Some(d) = todo.pop() {
            let bytes = self
                .store
                .blobs()
                .read_small(&d)
                .await?
                .ok_or_else(|| missing(&d))?;
            let parsed = Manifest::parse(&bytes, None)
                .map_err(|e| RegistryError::ManifestInvalid(format!("bundle manifest {d}: {e}")))?;
            for b in stored_blobs(&parsed) {
                if self.store.blobs().size(&b.digest).await?.is_none() {
                    return Err(missing(&b.digest));
                }
            }
            todo.extend(parsed.manifests.iter().map(|c| c.digest.clone()));
            let m = StoredManifest {
                digest: d,
                media_type: parsed.media_type.clone(),
                bytes,
            };
            out.push((m, parsed));
        }
        out.reverse();
        Ok(out)
    }
}

fn read_err(bad: &impl Fn(String) -> RegistryError, e: tar::ReadError) -> RegistryError {
    match e {
        tar::ReadError::Format(m) => bad(m),
        tar::ReadError::Body(m) => RegistryError::BadRequest(format!("reading the bundle: {m}")),
    }
}

/// The config and layers of `m` that live in a registry (foreign layers
/// live at their `urls`).
fn stored_blobs(m: &Manifest) -> impl Iterator<Item = &manifest::Descriptor> {
    m.config.iter().chain(&m.layers).filter(|b| !b.is_foreign())
}
