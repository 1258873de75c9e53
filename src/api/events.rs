//! Registry requests as notification events: what a distribution-API
//! request was (from its method, route and headers) and, once it
//! succeeded, the event it makes (from the response's headers). Only
//! translation happens here; queueing and delivery are [`crate::notify`]'s.

use http::{header, HeaderMap, Method, Request};

use super::handlers::Query;
use super::route::Route;
use super::{Api, ClientAddr};
use crate::config::EventKind;
use crate::notify::event::{Draft, RequestRecord, Target, BLOB_MEDIA_TYPE};
use crate::oci::{Digest, Reference};

/// A request that becomes an event if it succeeds.
pub(crate) struct Pending {
    kind: EventKind,
    repository: String,
    reference: Option<Reference>,
    /// The blob of a blob route or an upload's `digest`/`mount` parameter.
    blob: Option<Digest>,
    from: Option<String>,
    /// A pushed manifest's media type and size, from the request.
    pushed: Option<(String, u64)>,
    request: RequestRecord,
    actor: String,
}

/// The event `req` would make, when an endpoint wants that kind.
pub(crate) fn pending<B>(api: &Api, req: &Request<B>, route: &Route) -> Option<Pending> {
    let q = || Query::of(req);
    let digest_param = |k: &str| q().get(k).and_then(|v| v.parse::<Digest>().ok());
    let (kind, repository, reference, blob) = match (req.method(), route) {
        (&Method::GET, Route::Manifest(n, r)) => (EventKind::Pull, n, Some(r.clone()), None),
        (&Method::GET, Route::Blob(n, d)) => (EventKind::Pull, n, None, Some(d.clone())),
        (&Method::PUT, Route::Manifest(n, r)) => (EventKind::Push, n, Some(r.clone()), None),
        (&Method::PUT, Route::Upload(n, _)) => (EventKind::Push, n, None, digest_param("digest")),
        (&Method::POST, Route::UploadStart(n)) => {
            match (digest_param("mount"), digest_param("digest")) {
                (Some(d), _) => (EventKind::Mount, n, None, Some(d)),
                (None, Some(d)) => (EventKind::Push, n, None, Some(d)),
                (None, None) => return None,
            }
        }
        (&Method::DELETE, Route::Manifest(n, r)) => (EventKind::Delete, n, Some(r.clone()), None),
        (&Method::DELETE, Route::Blob(n, d)) => (EventKind::Delete, n, None, Some(d.clone())),
        _ => return None,
    };
    if !api.registry.notifier.wants(kind) {
        return None;
    }
    let h = |name: header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let pushed = (kind == EventKind::Push && reference.is_some()).then(|| {
        let len = h(header::CONTENT_LENGTH).parse().unwrap_or(0);
        (h(header::CONTENT_TYPE), len)
    });
    Some(Pending {
        kind,
        repository: repository.to_string(),
        reference,
        blob,
        from: (kind == EventKind::Mount)
            .then(|| q().get("from").map(str::to_string))
            .flatten(),
        pushed,
        request: RequestRecord {
            id: crate::telemetry::request_id()
                .map(|r| r.to_string())
                .unwrap_or_default(),
            addr: req
                .extensions()
                .get::<ClientAddr>()
                .map(|a| a.0.to_string())
                .unwrap_or_default(),
            host: h(header::HOST),
            method: req.method().to_string(),
            useragent: h(header::USER_AGENT),
        },
        actor: super::access::identity(req).subject.username(),
    })
}

/// Emit `p`'s event if `resp` says the request did what it asked (a full
/// GET, or a blob GET redirected to the object store; a created push, an
/// accepted delete, a mount that mounted).
pub(crate) async fn observed(api: &Api, p: Pending, status: http::StatusCode, headers: &HeaderMap) {
    let status = status.as_u16();
    let done = match p.kind {
        EventKind::Pull => status == 200 || (status == 307 && p.blob.is_some()),
        EventKind::Push | EventKind::Mount => status == 201,
        EventKind::Delete => status == 202,
        EventKind::CacheFetch => false,
    };
    if !done {
        return;
    }
    let header = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let digest = header(header::HeaderName::from_static("docker-content-digest"))
        .or_else(|| p.blob.as_ref().map(Digest::to_string))
        .or_else(|| match &p.reference {
            Some(Reference::Digest(d)) => Some(d.to_string()),
            _ => None,
        })
        .unwrap_or_default();
    let (media_type, size) = match (&p.pushed, &p.blob, p.kind) {
        (Some((mt, len)), _, _) => (mt.clone(), *len),
        // A redirected pull has no body: the size is the stored blob's.
        (None, Some(d), k) if matches!(k, EventKind::Push | EventKind::Mount) || status == 307 => (
            BLOB_MEDIA_TYPE.to_string(),
            api.registry
                .store
                .blobs()
                .size(d)
                .await
                .ok()
                .flatten()
                .unwrap_or(0),
        ),
        (None, Some(_), _) => (BLOB_MEDIA_TYPE.to_string(), content_length(headers)),
        (None, None, EventKind::Delete) => (String::new(), 0),
        (None, None, _) => (
            header(header::CONTENT_TYPE).unwrap_or_default(),
            content_length(headers),
        ),
    };
    let url = match (&p.reference, &p.blob) {
        (Some(_), _) if !digest.is_empty() => {
            api.location(&format!("/v2/{}/manifests/{digest}", p.repository))
        }
        (_, Some(d)) => api.location(&format!("/v2/{}/blobs/{d}", p.repository)),
        _ => String::new(),
    };
    let draft = Draft {
        kind: p.kind,
        target: Target {
            media_type,
            size,
            length: size,
            digest,
            repository: p.repository,
            url,
            tag: match p.reference {
                Some(Reference::Tag(t)) => Some(t.to_string()),
                _ => None,
            },
            from_repository: p.from,
            remote: None,
        },
        request: p.request,
        actor: p.actor,
    };
    match p.kind {
        // The client learns of a change only once its event is queued.
        EventKind::Push | EventKind::Mount | EventKind::Delete => {
            api.registry.notifier.emit_durable(draft).await
        }
        _ => api.registry.notifier.emit(draft),
    }
}

fn content_length(headers: &HeaderMap) -> u64 {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
