//! The one place errors become HTTP: OCI JSON bodies
//! (`{"errors":[{"code","message","detail"}]}`) with the spec's status.

use http::{HeaderName, HeaderValue, Response, StatusCode};

use super::body::{self, Body};
use crate::oci::ErrorCode;
use crate::proxy::inflight::FetchError;
use crate::proxy::{Missing, ProxyError};
use crate::store::StoreError;
use crate::upstream::UpstreamError;

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    status: Option<u16>,
    detail: Option<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(code: ErrorCode) -> ApiError {
        ApiError {
            code,
            status: None,
            detail: None,
            headers: Vec::new(),
        }
    }

    /// Human detail: what exactly was wrong.
    pub fn detail(mut self, d: impl Into<String>) -> ApiError {
        self.detail = Some(d.into());
        self
    }

    /// Override the code's default status (e.g. 413 for an oversized body).
    pub fn status(mut self, s: u16) -> ApiError {
        self.status = Some(s);
        self
    }

    pub fn header(mut self, name: &'static str, value: impl AsRef<str>) -> ApiError {
        if let Ok(v) = HeaderValue::from_str(value.as_ref()) {
            self.headers.push((HeaderName::from_static(name), v));
        }
        self
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status.unwrap_or(self.code.status())).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// Internal failure: logged in full here, reported without internals.
    pub fn internal(context: &str, e: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "{context}");
        ApiError::new(ErrorCode::Internal).detail(context.to_string())
    }

    pub fn into_response(self) -> Response<Body> {
        let status = self.status_code();
        let json = serde_json::json!({
            "errors": [{
                "code": self.code.as_str(),
                "message": self.code.message(),
                "detail": self.detail.unwrap_or_default(),
            }]
        });
        let bytes = serde_json::to_vec(&json).unwrap_or_default();
        let mut b = Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::CONTENT_LENGTH, bytes.len());
        for (k, v) in self.headers {
            b = b.header(k, v);
        }
        b.body(body::full(bytes)).unwrap_or_else(|_| Response::new(body::empty()))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::UploadUnknown => ApiError::new(ErrorCode::BlobUploadUnknown),
            StoreError::RangeMismatch { offset } => ApiError::new(ErrorCode::RangeInvalid)
                .detail(format!("chunk must start at byte {offset}"))
                .header("range", body::range_header(offset)),
            e @ StoreError::DigestMismatch { .. } => ApiError::new(ErrorCode::DigestInvalid).detail(e.to_string()),
            e @ StoreError::SizeMismatch { .. } => ApiError::new(ErrorCode::SizeInvalid).detail(e.to_string()),
            StoreError::Body(e) => ApiError::new(ErrorCode::BlobUploadInvalid).detail(format!("request body: {e}")),
            StoreError::Io(e) => ApiError::internal("storage error", e),
        }
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> ApiError {
        ApiError::internal("storage error", e)
    }
}

impl From<UpstreamError> for ApiError {
    fn from(e: UpstreamError) -> ApiError {
        match &e {
            UpstreamError::Unauthorized { remote, status, .. } => ApiError::new(ErrorCode::Denied).detail(format!(
                "remote {remote} refused access (HTTP {status}): the repository does not exist there, or wharf's credentials for it are missing or wrong"
            )),
            UpstreamError::Status { status: 429, retry_after, .. } => {
                let mut err = ApiError::new(ErrorCode::TooManyRequests).detail(format!("{e}: {}", e.body()));
                if let Some(s) = retry_after {
                    err = err.header("retry-after", s.to_string());
                }
                err
            }
            UpstreamError::Status { status, .. } => {
                let code = if *status == 404 { ErrorCode::NameUnknown } else { ErrorCode::Unavailable };
                let http = if *status == 404 { 404 } else { 502 };
                ApiError::new(code).status(http).detail(format!("{e}: {}", e.body()))
            }
            UpstreamError::CredentialsUnavailable { .. } => {
                ApiError::new(ErrorCode::Denied).detail(format!("{e}; the remote was not contacted (see wharf's log)"))
            }
            UpstreamError::Unreachable { .. } => ApiError::new(ErrorCode::Unavailable).detail(e.to_string()),
            UpstreamError::Protocol { .. } => ApiError::new(ErrorCode::Unavailable).status(502).detail(e.to_string()),
        }
    }
}

impl From<ProxyError> for ApiError {
    fn from(e: ProxyError) -> ApiError {
        match e {
            ProxyError::NotFound { kind, .. } => {
                let code = match kind {
                    Missing::Manifest => ErrorCode::ManifestUnknown,
                    Missing::Blob => ErrorCode::BlobUnknown,
                    Missing::Repository => ErrorCode::NameUnknown,
                };
                ApiError::new(code).detail(e.to_string())
            }
            ProxyError::Upstream(u) => u.into(),
            ProxyError::Fetch(FetchError::Upstream(u)) => u.into(),
            ProxyError::Fetch(f @ FetchError::Io(_)) => ApiError::internal("spooling a blob", f),
            ProxyError::Fetch(f) => ApiError::new(ErrorCode::Unavailable).status(502).detail(f.to_string()),
            e @ ProxyError::BadManifest { .. } => ApiError::new(ErrorCode::Unavailable).status(502).detail(e.to_string()),
            ProxyError::Io(io) => ApiError::internal("storage error", io),
        }
    }
}
