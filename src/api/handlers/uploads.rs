//! Blob uploads: `POST` (session, monolithic, mount), `PATCH` (chunks),
//! `GET` (status), `PUT` (finish), `DELETE` (cancel).

use http::{header, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::{content_length, header_str, Query};
use crate::api::body::{self, range_header};
use crate::api::error::ApiError;
use crate::api::{body_stream, drained, Api, Reply};
use crate::oci::{Digest, ErrorCode, RepoName};
use crate::registry::{Mount, RegistryError};
use crate::store::StoreError;

fn upload_location(api: &Api, name: &RepoName, id: &str) -> String {
    api.location(&format!("/v2/{name}/blobs/uploads/{id}"))
}

fn accepted(api: &Api, name: &RepoName, id: &str, offset: u64, status: StatusCode) -> Reply {
    Ok(Response::builder()
        .status(status)
        .header(header::LOCATION, upload_location(api, name, id))
        .header(header::RANGE, range_header(offset))
        .header("docker-upload-uuid", id)
        .header(header::CONTENT_LENGTH, 0)
        .body(body::empty())?)
}

fn created(api: &Api, name: &RepoName, d: &Digest) -> Reply {
    Ok(Response::builder()
        .status(StatusCode::CREATED)
        .header(
            header::LOCATION,
            api.location(&format!("/v2/{name}/blobs/{d}")),
        )
        .header("docker-content-digest", d.to_string())
        .header(header::CONTENT_LENGTH, 0)
        .body(body::empty())?)
}

fn digest_param(q: &Query, key: &str) -> Result<Option<Digest>, ApiError> {
    q.get(key)
        .map(|v| {
            v.parse().map_err(|e: crate::oci::DigestError| {
                ApiError::new(ErrorCode::DigestInvalid).detail(format!("{key}: {e}"))
            })
        })
        .transpose()
}

/// Parse a chunk's `Content-Range: <start>-<end>` (also accepted with a
/// `bytes ` prefix and a `/<total>` suffix). Returns (start, length);
/// `None` when malformed.
pub fn parse_content_range(v: &str) -> Option<(u64, u64)> {
    let v = v
        .trim()
        .trim_start_matches("bytes")
        .trim_start_matches([' ', '=']);
    let v = v.split('/').next().unwrap_or("");
    let (a, b) = v.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let end: u64 = b.trim().parse().ok()?;
    // `0-18446744073709551615` would be 2^64 bytes: refused, not wrapped
    // to an empty chunk (found by fuzzing).
    let len = end.checked_sub(start)?.checked_add(1)?;
    Some((start, len))
}

/// The request's `Content-Range`, if any (see [`parse_content_range`]).
fn content_range(req: &Request<Incoming>) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(v) = header_str(req.headers(), header::CONTENT_RANGE) else {
        return Ok(None);
    };
    parse_content_range(v).map(Some).ok_or_else(|| {
        ApiError::new(ErrorCode::RangeInvalid).detail(format!("malformed Content-Range {v:?}"))
    })
}

/// Check a chunk's `Content-Range` against its `Content-Length`.
fn chunk_bounds(req: &Request<Incoming>) -> Result<(Option<u64>, Option<u64>), ApiError> {
    let len = content_length(req.headers())?;
    match content_range(req)? {
        None => Ok((None, len)),
        Some((start, n)) => {
            if let Some(l) = len {
                if l != n {
                    return Err(ApiError::new(ErrorCode::RangeInvalid).detail(format!(
                        "Content-Range covers {n} bytes but Content-Length is {l}"
                    )));
                }
            }
            Ok((Some(start), Some(n)))
        }
    }
}

pub async fn start(api: &Api, req: Request<Incoming>, name: &RepoName) -> Reply {
    let q = Query::of(&req);
    if let Some(d) = digest_param(&q, "mount")? {
        let from: Option<RepoName> = q
            .get("from")
            .map(|f| {
                f.parse().map_err(|e: crate::oci::NameError| {
                    ApiError::new(ErrorCode::NameInvalid).detail(format!("from: {e}"))
                })
            })
            .transpose()?;
        let id = crate::api::access::identity(&req);
        if api.registry.mount(&id, name, &d, from.as_ref()).await? == Mount::Mounted {
            return created(api, name, &d);
        }
        // Not mountable: fall through to a normal upload session (spec).
    }
    if let Some(d) = digest_param(&q, "digest")? {
        // Monolithic upload in the POST itself.
        let len = content_length(req.headers())?;
        let mut body = body_stream(req);
        let stored = api.registry.put_blob(name, &d, len, &mut body).await;
        drained(&mut body, stored).await?;
        return created(api, name, &d);
    }
    let id = api
        .registry
        .start_upload(name, &crate::api::client_key(&req))
        .await?;
    accepted(api, name, &id, 0, StatusCode::ACCEPTED)
}

pub async fn status(api: &Api, name: &RepoName, id: &str) -> Reply {
    let s = api.registry.upload_status(name, id).await?;
    accepted(api, name, id, s.offset, StatusCode::NO_CONTENT)
}

/// An error about a session, with the session's location so the client
/// can ask where it stands.
fn at_session(api: &Api, e: impl Into<ApiError>, name: &RepoName, id: &str) -> ApiError {
    e.into().header("location", upload_location(api, name, id))
}

pub async fn patch(api: &Api, req: Request<Incoming>, name: &RepoName, id: &str) -> Reply {
    let (start, len) = chunk_bounds(&req)?;
    let mut body = body_stream(req);
    let appended = api
        .registry
        .append_upload(name, id, start, len, &mut body)
        .await;
    let s = drained(&mut body, appended)
        .await
        .map_err(|e| at_session(api, e, name, id))?;
    accepted(api, name, id, s.offset, StatusCode::ACCEPTED)
}

pub async fn finish(api: &Api, req: Request<Incoming>, name: &RepoName, id: &str) -> Reply {
    let q = Query::of(&req);
    let Some(d) = digest_param(&q, "digest")? else {
        return Err(ApiError::new(ErrorCode::DigestInvalid)
            .explain("the digest query parameter is required"));
    };
    let (start, len) = chunk_bounds(&req)?;
    let mut body = body_stream(req);
    let finished = api
        .registry
        .finish_upload(name, id, &d, start, len, &mut body)
        .await;
    drained(&mut body, finished).await.map_err(|e| match e {
        e @ RegistryError::Store(StoreError::RangeMismatch { .. }) => at_session(api, e, name, id),
        e => e.into(),
    })?;
    created(api, name, &d)
}

pub async fn cancel(api: &Api, name: &RepoName, id: &str) -> Reply {
    api.registry.cancel_upload(name, id).await?;
    Ok(Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(body::empty())?)
}

#[cfg(test)]
mod tests {
    use super::parse_content_range;

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-99"), Some((0, 100)));
        assert_eq!(parse_content_range("bytes 100-199/200"), Some((100, 100)));
        assert_eq!(parse_content_range("bytes=5-5"), Some((5, 1)));
        for bad in ["", "5", "9-5", "a-b", "-5", "5-", "0x1-2"] {
            assert_eq!(parse_content_range(bad), None, "{bad:?}");
        }
    }

    /// A range of 2^64 bytes overflowed (a panic in debug builds, a
    /// zero-length chunk in release builds). Found by `fuzz/` target `range`.
    #[test]
    fn a_range_of_every_byte_is_refused() {
        assert_eq!(parse_content_range("0-18446744073709551615"), None);
        assert_eq!(
            parse_content_range("1-18446744073709551615"),
            Some((1, u64::MAX))
        );
        assert_eq!(
            parse_content_range("18446744073709551615-18446744073709551615"),
            Some((u64::MAX, 1))
        );
    }
}
