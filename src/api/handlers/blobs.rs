//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`, with `Range`.

use http::{header, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::header_str;
use crate::api::body;
use crate::api::error::ApiError;
use crate::api::{Api, Reply};
use crate::oci::{Digest, ErrorCode, RepoName};
use crate::registry::BlobRead;
use crate::store::{BlobData, Delivery, DirectUrl};

/// A byte range resolved against a blob of known length.
#[derive(Debug, PartialEq, Eq)]
pub enum ByteRange {
    Full,
    Part { start: u64, end: u64 },
    Unsatisfiable,
}

/// Parse a `Range` header (`bytes=a-b`, `bytes=a-`, `bytes=-n`) against
/// `len`. Multi-range and foreign units are ignored (full body), as HTTP
/// allows.
pub fn parse_range(value: Option<&str>, len: u64) -> ByteRange {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return ByteRange::Full;
    };
    if spec.contains(',') {
        return ByteRange::Full;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return ByteRange::Unsatisfiable;
    };
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.is_empty(), b.is_empty()) {
        (false, _) => {
            let Ok(start) = a.parse::<u64>() else {
                return ByteRange::Unsatisfiable;
            };
            let end = if b.is_empty() {
                len.saturating_sub(1)
            } else {
                match b.parse::<u64>() {
                    Ok(e) if e >= start => e.min(len.saturating_sub(1)),
                    _ => return ByteRange::Unsatisfiable,
                }
            };
            (start, end)
        }
        (true, false) => {
            let Ok(n) = b.parse::<u64>() else {
                return ByteRange::Unsatisfiable;
            };
            if n == 0 {
                return ByteRange::Unsatisfiable;
            }
            (len.saturating_sub(n), len.saturating_sub(1))
        }
        (true, true) => return ByteRange::Unsatisfiable,
    };
    if parsed.0 >= len {
        return ByteRange::Unsatisfiable;
    }
    ByteRange::Part {
        start: parsed.0,
        end: parsed.1,
    }
}

pub async fn get(api: &Api, req: &Request<Incoming>, name: &RepoName, d: &Digest) -> Reply {
    let read = match *req.method() {
        Method::HEAD => BlobRead::Head,
        _ => BlobRead::Get,
    };
    let delivery = api.registry.blob(name, d, read).await?;
    serve(req, d, delivery).await
}

/// Answer with `delivery`: the bytes, or a `307` to where the client
/// fetches them itself.
pub async fn serve(req: &Request<Incoming>, d: &Digest, delivery: Delivery) -> Reply {
    match delivery {
        Delivery::Data(data) => serve_data(req, d, data).await,
        Delivery::Redirect { url, len } => redirect(req, d, &url, len),
    }
}

/// `307 Temporary Redirect` to `url` (the client's `Range`, sent there too,
/// is honoured by the object store; a range outside the blob is refused
/// here). The URL expires: the answer must not be cached.
fn redirect(req: &Request<Incoming>, d: &Digest, url: &DirectUrl, len: u64) -> Reply {
    if parse_range(header_str(req.headers(), header::RANGE), len) == ByteRange::Unsatisfiable {
        return Err(unsatisfiable(len));
    }
    Ok(Response::builder()
        .status(StatusCode::TEMPORARY_REDIRECT)
        .header(header::LOCATION, url.expose())
        .header("docker-content-digest", d.to_string())
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::CONTENT_LENGTH, 0)
        .body(body::empty())?)
}

/// Headers every blob response carries.
pub fn headers(d: &Digest) -> http::response::Builder {
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header("docker-content-digest", d.to_string())
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, super::etag(d))
        .header(header::CACHE_CONTROL, "max-age=31536000")
}

/// 416 for a range outside a blob of `len` bytes.
pub fn unsatisfiable(len: u64) -> ApiError {
    ApiError::new(ErrorCode::RangeInvalid)
        .detail(format!("range not satisfiable for a blob of {len} bytes"))
        .header("content-range", format!("bytes */{len}"))
}

/// Serve a stored blob, honouring `Range` and `HEAD`.
pub async fn serve_data(req: &Request<Incoming>, d: &Digest, data: BlobData) -> Reply {
    let len = data.len();
    let head = req.method() == Method::HEAD;
    let b = headers(d);
    match parse_range(header_str(req.headers(), header::RANGE), len) {
        ByteRange::Unsatisfiable => Err(unsatisfiable(len)),
        ByteRange::Full => {
            let body = if head {
                body::empty()
            } else {
                data_range(req, data, 0, len).await?
            };
            Ok(b.status(StatusCode::OK)
                .header(header::CONTENT_LENGTH, len)
                .body(body)?)
        }
        ByteRange::Part { start, end } => {
            let n = end - start + 1;
            let body = if head {
                body::empty()
            } else {
                data_range(req, data, start, n).await?
            };
            Ok(b.status(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_LENGTH, n)
                .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}"))
                .body(body)?)
        }
    }
}

/// The body for `len` bytes of `data` from `start` (a remote object's
/// range is requested before the status line is sent, so a store that is
/// down answers an error, not a cut body).
async fn data_range(
    req: &Request<Incoming>,
    data: BlobData,
    start: u64,
    len: u64,
) -> Result<body::Body, ApiError> {
    Ok(match data {
        BlobData::File { file, .. } => {
            let sendfile = req.extensions().get::<crate::api::SendFile>().is_some();
            body::file_range(file, start, len, sendfile)
        }
        BlobData::Remote { source, .. } => {
            let s = source
                .read(start, len)
                .await
                .map_err(crate::store::StoreError::from)?;
            body::stream(s, len)
        }
    })
}

pub async fn delete(api: &Api, name: &RepoName, d: &Digest) -> Reply {
    api.registry.delete_blob(name, d).await?;
    Ok(Response::builder()
        .status(StatusCode::ACCEPTED)
        .header(header::CONTENT_LENGTH, 0)
        .body(body::empty())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use ByteRange::*;
        assert_eq!(parse_range(None, 10), Full);
        assert_eq!(
            parse_range(Some("bytes=0-4"), 10),
            Part { start: 0, end: 4 }
        );
        assert_eq!(parse_range(Some("bytes=5-"), 10), Part { start: 5, end: 9 });
        assert_eq!(parse_range(Some("bytes=-3"), 10), Part { start: 7, end: 9 });
        assert_eq!(
            parse_range(Some("bytes=8-100"), 10),
            Part { start: 8, end: 9 }
        );
        assert_eq!(parse_range(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-2"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=x-2"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), Full);
        assert_eq!(parse_range(Some("items=0-1"), 10), Full);
        assert_eq!(parse_range(Some("bytes=0-0"), 0), Unsatisfiable);
    }
}
