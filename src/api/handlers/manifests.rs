//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.

use http::{header, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::api::body;
use crate::api::error::ApiError;
use crate::api::{read_limited, Api, Reply};
use crate::oci::manifest::{self, Manifest};
use crate::oci::{Digest, ErrorCode, Reference, RepoName};
use crate::store::StoredManifest;

/// Resolve a reference to a stored manifest of `name`.
pub async fn lookup(api: &Api, name: &RepoName, r: &Reference) -> Result<StoredManifest, ApiError> {
    let d = match r {
        Reference::Digest(d) => d.clone(),
        Reference::Tag(t) => match api.store.resolve_tag(name, t).await? {
            Some(d) => d,
            None if !api.store.repo_exists(name).await => {
                return Err(ApiError::new(ErrorCode::NameUnknown).detail(format!("repository {name} not found")))
            }
            None => return Err(ApiError::new(ErrorCode::ManifestUnknown).detail(format!("tag {t} not found in {name}"))),
        },
    };
    api.store
        .get_manifest(name, &d)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::ManifestUnknown).detail(format!("{r} not found in {name}")))
}

/// Whether the client's `Accept` admits `media_type`. A client that names
/// manifest types but not this one, and no wildcard, is refused; anything
/// else (no Accept, `*/*`, plain `application/json`) gets the stored bytes.
fn acceptable(req: &Request<Incoming>, media_type: &str) -> bool {
    let mut named_manifest_type = false;
    for v in req.headers().get_all(header::ACCEPT) {
        let Ok(v) = v.to_str() else { continue };
        for item in v.split(',') {
            let t = item.split(';').next().unwrap_or("").trim();
            if t == media_type || t == "*/*" || t == "application/*" {
                return true;
            }
            if manifest::is_manifest_type(t) {
                named_manifest_type = true;
            }
        }
    }
    !named_manifest_type
}

pub async fn get(api: &Api, req: &Request<Incoming>, name: &RepoName, r: &Reference) -> Reply {
    let m = lookup(api, name, r).await?;
    api.store.record_pull(name, &m.digest).await;
    respond(req, r, m)
}

/// The `GET`/`HEAD` response for a stored manifest (local or cached).
pub fn respond(req: &Request<Incoming>, r: &Reference, m: StoredManifest) -> Reply {
    if !acceptable(req, &m.media_type) {
        return Err(ApiError::new(ErrorCode::ManifestUnknown).detail(format!(
            "{r} is a {} manifest, which the request's Accept header does not admit",
            m.media_type
        )));
    }
    let len = m.bytes.len();
    let body = if req.method() == Method::HEAD { body::empty() } else { body::full(m.bytes) };
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, &m.media_type)
        .header(header::CONTENT_LENGTH, len)
        .header("docker-content-digest", m.digest.to_string())
        .header(header::ETAG, format!("\"{}\"", m.digest))
        .body(body)?)
}

/// Check that everything `m` references is present in `name`.
async fn check_references(api: &Api, name: &RepoName, m: &Manifest) -> Result<(), ApiError> {
    let missing = |d: &Digest, what: &str| {
        ApiError::new(ErrorCode::ManifestBlobUnknown).detail(format!("{what} {d} is not in {name}"))
    };
    if manifest::is_index(&m.media_type) {
        for child in &m.manifests {
            if api.store.manifest_media_type(name, &child.digest).await?.is_none() {
                return Err(missing(&child.digest, "manifest"));
            }
        }
        return Ok(());
    }
    if let Some(c) = &m.config {
        if !api.store.repo_has_blob(name, &c.digest).await? {
            return Err(missing(&c.digest, "config blob"));
        }
    }
    for l in &m.layers {
        // Foreign (non-distributable) layers live at their `urls`.
        if l.urls.as_ref().is_some_and(|u| !u.is_empty()) {
            continue;
        }
        if !api.store.repo_has_blob(name, &l.digest).await? {
            return Err(missing(&l.digest, "layer"));
        }
    }
    Ok(())
}

pub async fn put(api: &Api, req: Request<Incoming>, name: &RepoName, r: &Reference) -> Reply {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = read_limited(req, api.max_manifest_size).await?;
    let digest = match r {
        Reference::Digest(want) => {
            let got = Digest::of(want.algorithm(), &bytes);
            if &got != want {
                return Err(ApiError::new(ErrorCode::DigestInvalid)
                    .detail(format!("manifest content has digest {got}, not {want}")));
            }
            got
        }
        Reference::Tag(_) => Digest::sha256_of(&bytes),
    };
    let m = Manifest::parse(&bytes, content_type.as_deref())
        .map_err(|e| ApiError::new(ErrorCode::ManifestInvalid).detail(e.to_string()))?;
    // Held until the revision is linked: no GC sweep in between (see store::gc).
    let _gc = api.store.gc_read().await;
    check_references(api, name, &m).await?;
    super::quota::check_manifest(api, name, &digest, &m, bytes.len() as u64).await?;
    let tag = match r {
        Reference::Tag(t) => Some(t),
        Reference::Digest(_) => None,
    };
    let subject = m.subject.as_ref().map(|s| &s.digest);
    api.store.put_manifest(name, &digest, &m.media_type, bytes, tag, subject).await?;
    let mut b = Response::builder()
        .status(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{name}/manifests/{digest}"))
        .header("docker-content-digest", digest.to_string())
        .header(header::CONTENT_LENGTH, 0);
    if let Some(s) = subject {
        b = b.header("oci-subject", s.to_string());
    }
    Ok(b.body(body::empty())?)
}

pub async fn delete(api: &Api, name: &RepoName, r: &Reference) -> Reply {
    match r {
        Reference::Tag(t) => {
            if !api.store.untag(name, t).await? {
                return Err(ApiError::new(ErrorCode::ManifestUnknown).detail(format!("tag {t} not found in {name}")));
            }
        }
        Reference::Digest(d) => {
            let subject = match api.store.get_manifest(name, d).await? {
                Some(m) => Manifest::parse(&m.bytes, Some(&m.media_type))
                    .ok()
                    .and_then(|p| p.subject)
                    .map(|s| s.digest),
                None => None,
            };
            if api.store.delete_manifest(name, d, subject.as_ref()).await?.is_none() {
                return Err(ApiError::new(ErrorCode::ManifestUnknown).detail(format!("{d} not found in {name}")));
            }
        }
    }
    Ok(Response::builder()
        .status(StatusCode::ACCEPTED)
        .header(header::CONTENT_LENGTH, 0)
        .body(body::empty())?)
}
