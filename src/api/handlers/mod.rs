//! Endpoint handlers, one file per endpoint family.

pub mod blobs;
pub mod listing;
pub mod manifests;
pub mod proxied;
pub mod uploads;

use http::{header, HeaderMap, Response, StatusCode};

use super::body;
use super::error::ApiError;
use super::Reply;
use crate::oci::ErrorCode;

/// `GET /v2/`: the API version check.
pub fn base() -> Reply {
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, 2)
        .body(body::full("{}"))?)
}

/// Query parameters of a request, in order.
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn of<B>(req: &http::Request<B>) -> Query {
        Query(
            req.uri()
                .query()
                .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The strong validator of content `d`: its quoted digest.
pub fn etag(d: &crate::oci::Digest) -> String {
    let mut v = String::with_capacity(d.as_str().len() + 2);
    v.push('"');
    v.push_str(d.as_str());
    v.push('"');
    v
}

/// A header's value as a string, if present and visible ASCII.
pub fn header_str(h: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// `Content-Length`, if present; a malformed one is a client error.
pub fn content_length(h: &HeaderMap) -> Result<Option<u64>, ApiError> {
    match h.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| {
                ApiError::new(ErrorCode::SizeInvalid).explain("malformed Content-Length")
            }),
    }
}

impl From<http::Error> for ApiError {
    fn from(e: http::Error) -> ApiError {
        ApiError::internal("building response", e)
    }
}
