//! The one place errors become HTTP: OCI JSON bodies
//! (`{"errors":[{"code","message","detail"}]}`), the status from the code's
//! descriptor ([`ErrorCode::descriptor`]), and one mapping per error type of
//! the layers below.
//!
//! docker, podman and skopeo print only `message`, so whenever wharf knows
//! what went wrong, `message` says it (and what to do); `detail` carries
//! the same text for clients that read it.

use http::{HeaderName, HeaderValue, Response};

use super::body::{self, Body};
use crate::config::format_size;
use crate::oci::ErrorCode;
use crate::proxy::inflight::FetchError;
use crate::proxy::{Missing, PolicyError, ProxyError};
use crate::registry::RegistryError;
use crate::store::StoreError;
use crate::upstream::UpstreamError;

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    message: Option<String>,
    detail: Option<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(code: ErrorCode) -> ApiError {
        ApiError {
            code,
            message: None,
            detail: None,
            headers: Vec::new(),
        }
    }

    /// What exactly went wrong, for people: the `message` clients print,
    /// repeated in `detail`.
    pub fn explain(mut self, s: impl Into<String>) -> ApiError {
        let s = s.into();
        self.detail = Some(s.clone());
        self.message = Some(s);
        self
    }

    /// Detail only (the message stays the code's default).
    pub fn detail(mut self, d: impl Into<String>) -> ApiError {
        self.detail = Some(d.into());
        self
    }

    pub fn header(mut self, name: &'static str, value: impl AsRef<str>) -> ApiError {
        if let Ok(v) = HeaderValue::from_str(value.as_ref()) {
            self.headers.push((HeaderName::from_static(name), v));
        }
        self
    }

    pub fn status_code(&self) -> http::StatusCode {
        http::StatusCode::from_u16(self.code.status())
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The extra headers the response will carry (`Retry-After`...).
    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }

    /// The message clients print.
    pub fn message(&self) -> &str {
        self.message.as_deref().unwrap_or(self.code.message())
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
                "message": self.message(),
                "detail": self.detail.as_deref().unwrap_or_default(),
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
        b.body(body::full(bytes))
            .unwrap_or_else(|_| Response::new(body::empty()))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::UploadUnknown => ApiError::new(ErrorCode::BlobUploadUnknown),
            StoreError::RangeMismatch { offset } => ApiError::new(ErrorCode::RangeInvalid)
                .detail(format!("chunk must start at byte {offset}"))
                .header("range", body::range_header(offset)),
            e @ StoreError::DigestMismatch { .. } => {
                ApiError::new(ErrorCode::DigestInvalid).explain(e.to_string())
            }
            e @ StoreError::SizeMismatch { .. } => {
                ApiError::new(ErrorCode::SizeInvalid).explain(e.to_string())
            }
            StoreError::Body(e) => {
                ApiError::new(ErrorCode::BlobUploadInvalid).detail(format!("request body: {e}"))
            }
            StoreError::Full => {
                tracing::error!("the store's disk is full");
                ApiError::new(ErrorCode::StorageFull).explain("wharf's storage is full: free space on its data volume (or run a GC), then retry")
            }
            StoreError::Unavailable(e) => {
                tracing::warn!(error = %e, "storage unavailable");
                ApiError::new(ErrorCode::Unavailable).explain("wharf's storage is unavailable (the object store does not answer): retry later")
            }
            e @ StoreError::Busy { .. } => ApiError::new(ErrorCode::Conflict)
                .explain(format!("{e}: retry when it has finished")),
            e @ (StoreError::Contended { .. } | StoreError::ReferencesExpired(_)) => {
                ApiError::new(ErrorCode::Unavailable).explain(e.to_string())
            }
            e @ (StoreError::Io(_) | StoreError::Corrupt(_) | StoreError::Locked(_)) => {
                ApiError::internal("storage error", e)
            }
        }
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> ApiError {
        StoreError::from(e).into()
    }
}

impl From<UpstreamError> for ApiError {
    fn from(e: UpstreamError) -> ApiError {
        let sentence = e.to_string();
        match &e {
            UpstreamError::Unauthorized { .. } | UpstreamError::CredentialsUnavailable { .. } => {
                ApiError::new(ErrorCode::UpstreamRefused).explain(sentence)
            }
            UpstreamError::Status {
                status: 429,
                retry_after,
                remote,
                ..
            } => {
                let wait = retry_after
                    .map(|s| format!("; retry in {s} s"))
                    .unwrap_or_default();
                let mut err = ApiError::new(ErrorCode::TooManyRequests)
                    .explain(format!(
                        "remote {remote} is rate-limiting wharf (HTTP 429){wait}"
                    ))
                    .detail(format!("{e}: {}", e.body()));
                if let Some(s) = retry_after {
                    err = err.header("retry-after", s.to_string());
                }
                err
            }
            UpstreamError::Status { status: 404, .. } => ApiError::new(ErrorCode::NameUnknown)
                .explain(sentence)
                .detail(format!("{e}: {}", e.body())),
            UpstreamError::Status { .. } => ApiError::new(ErrorCode::UpstreamFailed)
                .explain(sentence)
                .detail(format!("{e}: {}", e.body())),
            UpstreamError::Unreachable { .. }
            | UpstreamError::Protocol { .. }
            | UpstreamError::Refused { .. }
            | UpstreamError::TooLarge { .. } => {
                ApiError::new(ErrorCode::UpstreamFailed).explain(sentence)
            }
        }
    }
}

impl From<FetchError> for ApiError {
    fn from(e: FetchError) -> ApiError {
        match e {
            FetchError::Upstream(u) => u.into(),
            FetchError::StorageFull => StoreError::Full.into(),
            f @ FetchError::Io(_) => ApiError::internal("spooling a blob", f),
            f => ApiError::new(ErrorCode::UpstreamFailed).explain(f.to_string()),
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
            ProxyError::Fetch(f) => f.into(),
            e @ ProxyError::BadManifest { .. } => {
                ApiError::new(ErrorCode::UpstreamFailed).explain(e.to_string())
            }
            ProxyError::Store(s) => s.into(),
        }
    }
}

impl From<PolicyError> for ApiError {
    fn from(e: PolicyError) -> ApiError {
        let code = match e {
            PolicyError::UnknownNamespace(_) => ErrorCode::Denied,
            PolicyError::NoDefaultRemote(_) => ErrorCode::NameUnknown,
            _ => ErrorCode::NameInvalid,
        };
        ApiError::new(code).explain(e.to_string())
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> ApiError {
        match e {
            RegistryError::Store(s) => s.into(),
            RegistryError::Proxy(p) => p.into(),
            RegistryError::Policy(p) => p.into(),
            RegistryError::QuotaExceeded {
                ref project,
                quota,
                usage,
                size,
            } => {
                tracing::warn!(
                    project,
                    quota,
                    usage,
                    size,
                    "push refused: over the project's quota"
                );
                let sentence = format!(
                    "project {project} is over its quota: {} used of {}, this push needs {}",
                    format_size(usage),
                    format_size(quota),
                    format_size(size)
                );
                ApiError::new(ErrorCode::Denied)
                    .explain(sentence)
                    .detail(e.to_string())
            }
            RegistryError::ImageTooLarge {
                ref project,
                ref digest,
                size,
                max,
            } => {
                tracing::warn!(
                    project,
                    size,
                    max,
                    "push refused: over the project's max image size"
                );
                let what = digest
                    .as_ref()
                    .map_or("this push".to_string(), |d| format!("image {d}"));
                let sentence = format!(
                    "{what} is {}, more than project {project}'s max image size of {}",
                    format_size(size),
                    format_size(max)
                );
                ApiError::new(ErrorCode::Denied)
                    .explain(sentence)
                    .detail(e.to_string())
            }
            e => ApiError::new(domain_code(&e)).explain(e.to_string()),
        }
    }
}

/// The code of a domain refusal.
fn domain_code(e: &RegistryError) -> ErrorCode {
    use RegistryError as R;
    match e {
        R::NameUnknown(_) | R::NotFound(_) => ErrorCode::NameUnknown,
        R::NameInvalid(_) => ErrorCode::NameInvalid,
        R::ManifestUnknown(_) => ErrorCode::ManifestUnknown,
        R::BlobUnknown(_) => ErrorCode::BlobUnknown,
        R::ManifestInvalid(_) => ErrorCode::ManifestInvalid,
        R::ManifestBlobUnknown(_) => ErrorCode::ManifestBlobUnknown,
        R::DigestInvalid(_) => ErrorCode::DigestInvalid,
        R::QuotaExceeded { .. } | R::ImageTooLarge { .. } | R::Denied(_) => ErrorCode::Denied,
        R::BadRequest(_) => ErrorCode::BadRequest,
        R::Unauthenticated(_) => ErrorCode::Unauthorized,
        R::Conflict(_) => ErrorCode::Conflict,
        R::TooMany(_) => ErrorCode::TooManyRequests,
        R::Store(_) | R::Proxy(_) | R::Policy(_) => ErrorCode::Internal,
    }
}
