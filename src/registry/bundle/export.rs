//! Writing bundles: the plan (which manifests and blobs, collected before
//! the first byte is sent) and the tar stream built from it.
//!
//! `--platform` narrows an index to the one image of that platform (it
//! becomes the bundle's image, as `docker pull --platform` would store
//! it); `--with-referrers` adds every manifest the store holds that refers
//! to an exported one (signatures, SBOMs, and what refers to those), each
//! with its blobs, as untagged `index.json` entries of the same
//! repository, so an import links them and serves them through the
//! referrers API.

use std::collections::HashSet;

use bytes::Bytes;
use futures_util::{stream, StreamExt};

use super::{stored_blobs, tar, REF_ANNOTATION, REPO_ANNOTATION, SOURCE_ANNOTATION};
use crate::auth::Identity;
use crate::oci::manifest::{self, Manifest};
use crate::oci::{Algorithm, Digest, Platform, Reference, RepoName};
use crate::registry::admin::split_image;
use crate::registry::{Intent, Registry, RegistryError, Result, Target};
use crate::store::backend::ByteStream;
use crate::store::{StoreError, StoredManifest};

/// Read size for blobs streamed into a bundle.
const CHUNK: usize = 256 * 1024;
const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// What an export includes beyond the named images.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Only this platform of each index.
    pub platform: Option<Platform>,
    /// Also the manifests referring to the exported ones.
    pub with_referrers: bool,
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

    /// An `index.json` entry for `m` in repository `path` of `source`.
    fn entry(&mut self, m: &StoredManifest, tag: Option<String>, path: &str, source: &RepoName) {
        let mut annotations = serde_json::Map::new();
        if let Some(t) = tag {
            annotations.insert(REF_ANNOTATION.into(), t.into());
        }
        annotations.insert(REPO_ANNOTATION.into(), path.into());
        annotations.insert(SOURCE_ANNOTATION.into(), source.to_string().into());
        self.index.push(serde_json::json!({
            "mediaType": m.media_type, "digest": m.digest,
            "size": m.bytes.len(), "annotations": annotations,
        }));
    }
}

/// One image being planned: where it comes from and how it is named.
struct Source<'a> {
    image: &'a str,
    target: Target,
    /// Its repository within its namespace (`index.json`'s path).
    path: String,
    /// The repository that holds it in this store.
    repo: RepoName,
    /// Why completing a remote image in the cache failed, if it did.
    fetch_error: Option<String>,
}

impl Registry {
    /// An OCI image layout tar of `images` (`name:tag` or `name@digest`),
    /// streamed (admins only).
    pub async fn export_bundle(
        &self,
        id: &Identity,
        images: &[String],
        opts: &ExportOptions,
    ) -> Result<ByteStream> {
        self.require_admin(id)?;
        if images.is_empty() {
            return Err(RegistryError::BadRequest(
                "name at least one image to export: ?image=<name>:<tag>".into(),
            ));
        }
        let mut plan = Plan::default();
        for image in images {
            self.plan_image(image, opts, &mut plan).await?;
        }
        let parts = tar_parts(plan)?;
        let store = self.store.clone();
        Ok(stream::iter(parts)
            .then(move |p| part_stream(store.clone(), p))
            .flatten()
            .boxed())
    }

    /// Add `image` (its manifests and blobs, and what `opts` asks for) to
    /// `plan`.
    async fn plan_image(&self, image: &str, opts: &ExportOptions, plan: &mut Plan) -> Result<()> {
        let (name, reference) = split_image(image)?;
        let src = self.export_source(image, &name, &reference).await?;
        let mut root = self.export_manifest(&src.target, &reference).await?;
        if let Some(p) = &opts.platform {
            root = self.select_platform(&src, root, p).await?;
        }
        let tag = match &reference {
            Reference::Tag(t) => Some(t.to_string()),
            Reference::Digest(_) => None,
        };
        plan.entry(&root, tag, &src.path, &src.repo);
        let mut walked = self.plan_tree(&src, root, plan).await?;
        if opts.with_referrers {
            self.plan_referrers(&src, &mut walked, plan).await?;
        }
        Ok(())
    }

    /// Where `name` lives; a remote image is completed in the cache first
    /// (cheap when it is all there); without the remote, what the cache
    /// holds may do.
    async fn export_source<'a>(
        &self,
        image: &'a str,
        name: &RepoName,
        reference: &Reference,
    ) -> Result<Source<'a>> {
        let target = match self.resolve(name, None, Intent::PullManifest).await {
            Err(RegistryError::Policy(e)) => return Err(RegistryError::BadRequest(e.to_string())),
            other => other?,
        };
        let (path, repo) = match &target {
            Target::Remote(t) => (t.upstream_repo.to_string(), t.cache_repo.clone()),
            Target::Local(n) => (n.rest().map_or(n.to_string(), |r| r.to_string()), n.clone()),
        };
        let fetch_error = match &target {
            Target::Remote(t) => {
                let progress = crate::proxy::PrefetchProgress::default();
                let r = self.proxy.prefetch(t, reference, false, image, &progress);
                r.await.err().map(|e| e.to_string())
            }
            Target::Local(_) => None,
        };
        Ok(Source {
            image,
            target,
            path,
            repo,
            fetch_error,
        })
    }

    /// The image of `root` for platform `want`: the matching entry of an
    /// index, or `root` itself when its config says it is of `want` (or
    /// says nothing).
    async fn select_platform(
        &self,
        src: &Source<'_>,
        root: StoredManifest,
        want: &Platform,
    ) -> Result<StoredManifest> {
        let parsed = parse(&root)?;
        if !manifest::is_index(&root.media_type) {
            return match self.config_platform(&parsed).await? {
                Some(p) if !want.accepts(&p) => Err(RegistryError::ManifestUnknown(format!(
                    "{} is a single {p} image, not {want}; export it without --platform",
                    src.image
                ))),
                _ => Ok(root),
            };
        }
        let mut offered = Vec::new();
        for child in &parsed.manifests {
            let Some(p) = child.platform.as_ref().and_then(Platform::from_json) else {
                continue;
            };
            if want.accepts(&p) {
                let r = Reference::Digest(child.digest.clone());
                return self.export_manifest(&src.target, &r).await;
            }
            offered.push(p.to_string());
        }
        Err(RegistryError::ManifestUnknown(format!(
            "{} has no {want} image; it has: {}",
            src.image,
            if offered.is_empty() {
                "none with a platform".into()
            } else {
                offered.join(", ")
            }
        )))
    }

    /// The platform an image's config names, when it is in the store.
    async fn config_platform(&self, m: &Manifest) -> Result<Option<Platform>> {
        let Some(cfg) = &m.config else {
            return Ok(None);
        };
        let Some(bytes) = self.store.blobs().read_small(&cfg.digest).await? else {
            return Ok(None);
        };
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        Ok(Platform::from_json(&v))
    }

    /// Add `root`, its children and all their blobs to `plan`; returns
    /// the digests of the manifests walked.
    async fn plan_tree(
        &self,
        src: &Source<'_>,
        root: StoredManifest,
        plan: &mut Plan,
    ) -> Result<Vec<Digest>> {
        let mut walked = Vec::new();
        let mut todo = vec![root];
        while let Some(m) = todo.pop() {
            let parsed = parse(&m)?;
            for child in &parsed.manifests {
                let r = Reference::Digest(child.digest.clone());
                todo.push(self.export_manifest(&src.target, &r).await?);
            }
            for b in stored_blobs(&parsed) {
                self.check_exportable(src, &b.digest).await?;
                plan.add(&b.digest, b.size, None);
            }
            walked.push(m.digest.clone());
            plan.add(&m.digest, m.bytes.len() as u64, Some(m.bytes));
        }
        Ok(walked)
    }

    /// Add the referrers the store holds of every manifest in `subjects`
    /// (and of those referrers, and so on) to `plan`, each as an untagged
    /// `index.json` entry.
    async fn plan_referrers(
        &self,
        src: &Source<'_>,
        subjects: &mut Vec<Digest>,
        plan: &mut Plan,
    ) -> Result<()> {
        let repo = self.store.repo(&src.repo);
        while let Some(subject) = subjects.pop() {
            for d in repo.referrers(&subject).await? {
                if plan.seen.contains(&d) {
                    continue;
                }
                let Some(m) = repo.manifest(&d).await? else {
                    continue;
                };
                plan.entry(&m, None, &src.path, &src.repo);
                subjects.extend(self.plan_tree(src, m, plan).await?);
            }
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

    /// Refuse to export a blob the store does not hold for the image.
    async fn check_exportable(&self, src: &Source<'_>, d: &Digest) -> Result<()> {
        let linked = self.store.repo(&src.repo).links_blob(d).await?;
        if linked && self.store.blobs().size(d).await?.is_some() {
            return Ok(());
        }
        let why = src
            .fetch_error
            .as_ref()
            .map_or(String::new(), |e| format!(" (fetching it failed: {e})"));
        Err(RegistryError::BlobUnknown(format!(
            "blob {d} of {} is not in this wharf{why}",
            src.image
        )))
    }
}

fn parse(m: &StoredManifest) -> Result<Manifest> {
    Manifest::parse(&m.bytes, Some(&m.media_type))
        .map_err(|e| RegistryError::ManifestInvalid(format!("{}: {e}", m.digest)))
}

/// The tar of `plan`: `oci-layout`, `index.json`, then every blob.
fn tar_parts(plan: Plan) -> Result<Vec<Part>> {
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
    Ok(parts)
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
