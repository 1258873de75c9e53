//! Endpoints of remote (pull-through) repositories: reads are served by the
//! proxy; writes are refused, since a remote namespace mirrors its remote.

use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;

use super::blobs::{headers, serve, serve_data};
use super::header_str;
use crate::api::body;
use crate::api::error::ApiError;
use crate::api::route::Route;
use crate::api::{Api, Reply};
use crate::oci::{Digest, ErrorCode};
use crate::proxy::inflight::Phase;
use crate::proxy::{BlobGet, RemoteTarget};

pub async fn dispatch(api: &Api, req: Request<Incoming>, route: Route, t: RemoteTarget) -> Reply {
    let m = req.method().clone();
    match (&m, route) {
        (&Method::GET | &Method::HEAD, Route::Manifest(_, r)) => {
            let man = api.registry.proxy.manifest(&t, &r).await?;
            api.registry.store.repo(&t.cache_repo).record_pull(&man.digest).await;
            api.registry
                .scan_after_cached_pull(&t.remote, &t.cache_repo, &man)
                .await;
            super::manifests::respond(&req, &r, man)
        }
        (&Method::HEAD, Route::Blob(_, d)) => {
            let len = api.registry.proxy.blob_size(&t, &d).await?;
            Ok(headers(&d)
                .status(StatusCode::OK)
                .header(header::CONTENT_LENGTH, len)
                .body(body::empty())?)
        }
        (&Method::GET, Route::Blob(_, d)) => get_blob(api, &req, &t, &d).await,
        (&Method::GET, Route::Tags(name)) => {
            let (bytes, link) = api.registry.proxy.tags(&t, req.uri().query()).await?;
            // Show the client its own name, not the remote's.
            let mut v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::new(ErrorCode::UpstreamFailed).explain(format!("remote {} sent an invalid tag list: {e}", t.remote.name))
            })?;
            v["name"] = serde_json::Value::String(name.to_string());
            let out = serde_json::to_vec(&v).unwrap_or_default();
            let mut b = Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::CONTENT_LENGTH, out.len());
            if let Some(l) = link {
                let q = l.split_once('?').map(|(_, q)| q.split('>').next().unwrap_or("")).unwrap_or("");
                b = b.header(header::LINK, format!("</v2/{name}/tags/list?{q}>; rel=\"next\""));
            }
            Ok(b.body(body::full(out))?)
        }
        (&Method::GET, Route::Referrers(route_name, d)) => {
            // Referrers of cached content, as far as they are cached.
            super::listing::referrers_of(api, &req, &route_name, &t.cache_repo, &d).await
        }
        (m, _) => Err(ApiError::new(ErrorCode::Denied).explain(format!(
            "{} is a pull-through cache of remote {}: {m} is not allowed; push to a local namespace instead",
            t.cache_repo, t.remote.name
        ))),
    }
}

async fn get_blob(api: &Api, req: &Request<Incoming>, t: &RemoteTarget, d: &Digest) -> Reply {
    let fetch = match api.registry.proxy.blob_get(t, d).await? {
        BlobGet::Ready(delivery) => return serve(req, d, delivery).await,
        BlobGet::Fetching(fetch, _) if header_str(req.headers(), header::RANGE).is_some() => fetch,
        BlobGet::Fetching(fetch, total) => {
            let sendfile = req.extensions().get::<crate::api::SendFile>().is_some();
            return stream_whole(fetch, d, total, sendfile);
        }
    };
    // A ranged read of a blob still being fetched waits until its digest
    // was verified: a range is a complete response, and its bytes must not
    // be the remote's word alone.
    let done = fetch.finished().await;
    match done.phase {
        Phase::Done => match api.registry.store.blobs().open(d).await? {
            Some(data) => serve_data(req, d, data).await,
            None => Err(ApiError::new(ErrorCode::BlobUnknown)
                .detail(format!("{d} vanished after its fetch"))),
        },
        Phase::Failed(e) => Err(e.into()),
        _ => Err(ApiError::new(ErrorCode::UpstreamFailed)
            .explain(format!("the fetch of {d} ended unexpectedly"))),
    }
}

/// The whole blob, streamed from its fetch as it arrives. Its last byte is
/// held back until the digest is verified (a mismatch aborts the
/// response), and it carries no validator or caching headers: those are for
/// verified content only.
fn stream_whole(
    fetch: std::sync::Arc<crate::proxy::inflight::Fetch>,
    d: &Digest,
    total: Option<u64>,
    sendfile: bool,
) -> Reply {
    let follower = if sendfile {
        fetch.follow_mapped(0, None)
    } else {
        fetch.follow(0, None)
    };
    let body = StreamBody::new(futures_util::TryStreamExt::map_ok(
        follower.into_stream(),
        http_body::Frame::data,
    ))
    .boxed_unsync();
    let mut b = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header("docker-content-digest", d.to_string())
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CACHE_CONTROL, "no-store");
    if let Some(len) = total {
        b = b.header(header::CONTENT_LENGTH, len);
    }
    Ok(b.body(body)?)
}
