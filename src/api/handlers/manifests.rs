//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.

use http::{header, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::api::body;
use crate::api::error::ApiError;
use crate::api::{read_limited, Api, Reply};
use crate::oci::manifest;
use crate::oci::{ErrorCode, Reference, RepoName};
use crate::store::StoredManifest;

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
    let m = api.registry.manifest(name, r).await?;
    if req.method() == Method::GET {
        let id = crate::api::access::identity(req);
        api.registry.check_pull_policy(&id, name, &m.digest).await?;
    }
    api.registry.store.repo(name).record_pull(&m.digest).await;
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
    let body = if req.method() == Method::HEAD {
        body::empty()
    } else {
        body::full(m.bytes)
    };
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, &m.media_type)
        .header(header::CONTENT_LENGTH, len)
        .header("docker-content-digest", m.digest.as_str())
        .header(header::ETAG, super::etag(&m.digest))
        .body(body)?)
}

pub async fn put(api: &Api, req: Request<Incoming>, name: &RepoName, r: &Reference) -> Reply {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = read_limited(req, api.registry.limits.max_manifest_size).await?;
    let accepted = api
        .registry
        .put_manifest(name, r, content_type.as_deref(), bytes)
        .await?;
    let d = accepted.digest;
    let mut b = Response::builder()
        .status(StatusCode::CREATED)
        .header(
            header::LOCATION,
            api.location(&format!("/v2/{name}/manifests/{d}")),
        )
        .header("docker-content-digest", d.to_string())
        .header(header::CONTENT_LENGTH, 0);
    if let Some(s) = accepted.subject {
        b = b.header("oci-subject", s.to_string());
    }
    Ok(b.body(body::empty())?)
}

pub async fn delete(api: &Api, req: &Request<Incoming>, name: &RepoName, r: &Reference) -> Reply {
    api.registry
        .delete_reference(&crate::api::access::identity(req), name, r)
        .await?;
    Ok(Response::builder()
        .status(StatusCode::ACCEPTED)
        .header(header::CONTENT_LENGTH, 0)
        .body(body::empty())?)
}
