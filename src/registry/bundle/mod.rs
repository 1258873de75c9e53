//! Offline bundles: images as an OCI image layout in one tar stream.
//!
//! [`Registry::export_bundle`] collects the manifests (every child of an
//! index) and blobs of some images, local or cached from a remote, and
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

mod tar;

use std::collections::HashSet;

use bytes::Bytes;
use futures_util::{stream, Stream, StreamExt};
use serde::{Deserialize, Serialize};

use super::admin::split_image;
use super::{Intent, Registry, RegistryError, Result, Target};
use crate::auth::Identity;
use crate::oci::manifest::{self, Manifest};
use crate::oci::{Algorithm, Digest, Reference, RepoName};
use crate::store::backend::ByteStream;
use crate::store::{StoreError, StoredManifest};

/// The tag of an image in `index.json` (OCI image layout).
pub const REF_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// An image's repository path within its namespace (remote or project).
pub const REPO_ANNOTATION: &str = "io.wharf.repository";
/// The full name the image had where it was exported.
pub const SOURCE_ANNOTATION: &str = "io.wharf.source";
/// Read size for blobs streamed into a bundle.
const CHUNK: usize = 256 * 1024;
const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

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

/// A piece of the tar being written.
enum Part {
    Bytes(Bytes),
    Blob(Digest),
}

/// The content of an export, collected before the first byte is sent.
#[derive(Default)]
struct Plan {
    seen: HashSet<Digest>,
    /// `(digest, size, manifest bytes)`; blobs have no bytes here.
    items: Vec<(Digest, u64, Option<Bytes>)>,
    index: Vec<serde_json::Value>,
}

impl Plan {
    fn add(&mut self, d: &Digest, size: u64, bytes: Option<Bytes>) {
        if self.seen.insert(d.clone()) {
            self.items.push((d.clone(), size, bytes));
        }
    }
}

fn blob_name(d: &Digest) -> Result<String> {
    if d.algorithm() != Algorithm::Sha256 {
        return Err(RegistryError::BadRequest(format!(
            "{d}: bundles hold sha256 content only"
        )));
    }
    Ok(format!("blobs/sha256/{}", d.hex()))
}

fn store_err(e: StoreError) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl Registry {
    /// An OCI image layout tar of `images` (`name:tag` or `name@digest`),
    /// streamed (admins only).
    pub async fn export_bundle(&self, id: &Identity, images: &[String]) -> Result<ByteStream> {
        self.require_admin(id)?;
        if images.is_empty() {
            return Err(RegistryError::BadRequest(
                "name at least one image to export: ?image=<name>:<tag>".into(),
            ));
        }
        let mut plan = Plan::default();
        for image in images {
            self.plan_image(image, &mut plan).await?;
        }
        let index = serde_json::json!({
            "schemaVersion": 2, "mediaType": manifest::OCI_INDEX, "manifests": plan.index,
        });
        let index = Bytes::from(serde_json::to_vec_pretty(&index).unwrap_or_default());
        let mut parts = Vec::new();
        for (name, data) in [
            ("oci-layout", Bytes::from_static(OCI_LAYOUT)),
            ("index.json", index),
        ] {
            push_file(&mut parts, name, data.len() as u64)?;
            parts.push(Part::Bytes(tar::padding(data.len() as u64)));
            parts.insert(parts.len() - 1, Part::Bytes(data));
        }
        for (d, size, bytes) in plan.items {
            push_file(&mut parts, &blob_name(&d)?, size)?;
            parts.push(match bytes {
                Some(b) => Part::Bytes(b),
                None => Part::Blob(d),
            });
            parts.push(Part::Bytes(tar::padding(size)));
        }
        parts.push(Part::Bytes(tar::trailer()));
        let store = self.store.clone();
        Ok(stream::iter(parts)
            .then(move |p| part_stream(store.clone(), p))
            .flatten()
            .boxed())
    }

    /// Add `image` (its manifests and blobs) to `plan`.
    async fn plan_image(&self, image: &str, plan: &mut Plan) -> Result<()> {
        let (name, reference) = split_image(image)?;
        let target = match self.resolve(&name, None, Intent::PullManifest).await {
            Err(RegistryError::Policy(e)) => return Err(RegistryError::BadRequest(e.to_string())),
            other => other?,
        };
        let (path, source) = match &target {
            Target::Remote(t) => (t.upstream_repo.to_string(), t.cache_repo.clone()),
            Target::Local(n) => (n.rest().map_or(n.to_string(), |r| r.to_string()), n.clone()),
        };
        // A remote image is completed in the cache first (cheap when it is
        // all there); without the remote, what the cache holds may do.
        let fetch_error = match &target {
            Target::Remote(t) => {
                let progress = crate::proxy::PrefetchProgress::default();
                let r = self.proxy.prefetch(t, &reference, false, image, &progress);
                r.await.err().map(|e| e.to_string())
            }
            Target::Local(_) => None,
        };
        let root = self.export_manifest(&target, &reference).await?;
        let mut annotations = serde_json::Map::new();
        if let Reference::Tag(t) = &reference {
            annotations.insert(REF_ANNOTATION.into(), t.to_string().into());
        }
        annotations.insert(REPO_ANNOTATION.into(), path.into());
        annotations.insert(SOURCE_ANNOTATION.into(), source.to_string().into());
        plan.index.push(serde_json::json!({
            "mediaType": root.media_type, "digest": root.digest,
            "size": root.bytes.len(), "annotations": annotations,
        }));
        let mut todo = vec![root];
        while let Some(m) = todo.pop() {
            let parsed = Manifest::parse(&m.bytes, Some(&m.media_type))
                .map_err(|e| RegistryError::ManifestInvalid(format!("{}: {e}", m.digest)))?;
            for child in &parsed.manifests {
                let c = self
                    .export_manifest(&target, &Reference::Digest(child.digest.clone()))
                    .await?;
                todo.push(c);
            }
            for b in stored_blobs(&parsed) {
                self.check_exportable(&source, &b.digest, image, fetch_error.as_deref())
                    .await?;
                plan.add(&b.digest, b.size, None);
            }
            plan.add(&m.digest, m.bytes.len() as u64, Some(m.bytes.clone()));
        }
        Ok(())
    }

    /// A manifest of a local or remote image (a remote one is fetched
    /// into the cache when missing).
    async fn export_manifest(&self, t: &Target, r: &Reference) -> Result<StoredManifest> {
        match t {
            Target::Local(n) => self.manifest(n, r).await,
            Target::Remote(t) => Ok(self.proxy.manifest(t, r).await?),
        }
    }

    /// Refuse to export a blob the store does not hold for `repo`
    async fn check_exportable(
        &self,
        repo: &RepoName,
        d: &Digest,
        image: &str,
        fetch_error: Option<&str>,
    ) -> Result<()> {
        let linked = self.store.repo(repo).links_blob(d).await?;
        if linked && self.store.blobs().size(d).await?.is_some() {
            return Ok(());
        }
        let why = fetch_error.map_or(String::new(), |e| format!(" (fetching it failed: {e})"));
        Err(RegistryError::BlobUnknown(format!(
            "blob {d} of {image} is not in this wharf{why}"
        )))
    }

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
    m.config
        .iter()
        .chain(&m.layers)
        .filter(|b| b.urls.as_ref().is_none_or(|u| u.is_empty()))
}

/// The bytes of one part of an export.
async fn part_stream(store: crate::store::Store, p: Part) -> ByteStream {
    let fail = |e: std::io::Error| stream::once(async { Err(e) }).boxed();
    match p {
        Part::Bytes(b) => stream::once(async { Ok(b) }).boxed(),
        Part::Blob(d) => match store.blobs().open(&d).await {
            Ok(Some(data)) => data.into_stream(CHUNK).await.unwrap_or_else(fail),
            Ok(None) => fail(std::io::Error::other(format!(
                "{d} vanished during the export"
            ))),
            Err(e) => fail(store_err(e)),
        },
    }
}

fn push_file(parts: &mut Vec<Part>, name: &str, size: u64) -> Result<()> {
    let h = tar::header(name, size).map_err(RegistryError::BadRequest)?;
    parts.push(Part::Bytes(h));
    Ok(())
}
