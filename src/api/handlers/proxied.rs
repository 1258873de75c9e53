//! Endpoints of remote (pull-through) repositories: reads are served by the
//! proxy; writes are refused, since a remote namespace mirrors its remote.

use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;

use super::blobs::{headers, parse_range, serve_data, unsatisfiable, ByteRange};
use super::{header_str, Query};
use crate::api::body;
use crate::api::error::ApiError;
use crate::api::route::Route;
use crate::api::{Api, Reply};
use crate::oci::{Digest, ErrorCode};
use crate::proxy::{BlobSource, RemoteTarget};

pub async fn dispatch(api: &Api, req: Request<Incoming>, route: Route, t: RemoteTarget) -> Reply {
    let m = req.method().clone();
    match (&m, route) {
        (&Method::GET | &Method::HEAD, Route::Manifest(_, r)) => {
            let man = api.registry.proxy.manifest(&t, &r).await?;
            api.registry.store.repo(&t.cache_repo).record_pull(&man.digest).await;
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
        (&Method::GET, Route::Referrers(_, d)) => {
            // Referrers of cached content, as far as they are cached.
            super::listing::referrers_of(api, &t.cache_repo, &d, Query::of(&req).get("artifactType")).await
        }
        (m, _) => Err(ApiError::new(ErrorCode::Denied).explain(format!(
            "{} is a pull-through cache of remote {}: {m} is not allowed; push to a local namespace instead",
            t.cache_repo, t.remote.name
        ))),
    }
}

async fn get_blob(api: &Api, req: &Request<Incoming>, t: &RemoteTarget, d: &Digest) -> Reply {
    let range = header_str(req.headers(), header::RANGE);
    match api.registry.proxy.blob(t, d).await? {
        BlobSource::Local(data) => serve_data(req, d, data).await,
        BlobSource::Fetching(fetch, total) => {
            let follow = |start: u64, end: Option<u64>| {
                StreamBody::new(futures_util::TryStreamExt::map_ok(
                    fetch.follow(start, end).into_stream(),
                    http_body::Frame::data,
                ))
                .boxed_unsync()
            };
            let Some(len) = total else {
                // No Content-Length from the remote: stream chunked, whole.
                return Ok(headers(d).status(StatusCode::OK).body(follow(0, None))?);
            };
            match parse_range(range, len) {
                ByteRange::Unsatisfiable => Err(unsatisfiable(len)),
                ByteRange::Full => Ok(headers(d)
                    .status(StatusCode::OK)
                    .header(header::CONTENT_LENGTH, len)
                    .body(follow(0, None))?),
                ByteRange::Part { start, end } => Ok(headers(d)
                    .status(StatusCode::PARTIAL_CONTENT)
                    .header(header::CONTENT_LENGTH, end - start + 1)
                    .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}"))
                    .body(follow(start, Some(end + 1)))?),
            }
        }
    }
}
