//! Typed upstream failures. They keep the upstream's status and the start of
//! its error body, and never carry credentials.

/// Why talking to a remote registry failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("remote {remote} is unreachable: {reason}")]
    Unreachable { remote: String, reason: String },
    #[error("remote {remote} rejected wharf's credentials (HTTP {status})")]
    Unauthorized { remote: String, status: u16, body: String },
    #[error("remote {remote} answered HTTP {status}")]
    Status {
        remote: String,
        status: u16,
        body: String,
        retry_after: Option<u64>,
    },
    /// The secret holding wharf's credentials for this remote could not be
    /// read (the remote was not contacted; the log names the reference).
    #[error("wharf could not load its credentials for remote {remote}")]
    CredentialsUnavailable { remote: String },
    #[error("remote {remote} sent an invalid response: {message}")]
    Protocol { remote: String, message: String },
    /// The remote tried to send wharf somewhere it must not go (a redirect
    /// or token realm refused by `target`), or a storage host refused.
    #[error("remote {remote}: {reason}")]
    Refused { remote: String, reason: String },
    #[error("remote {remote} sent a {what} larger than the limit of {limit} bytes")]
    TooLarge { remote: String, what: &'static str, limit: u64 },
}

impl UpstreamError {
    /// Failures that say nothing about the content (serve stale on these).
    pub fn is_transient(&self) -> bool {
        match self {
            UpstreamError::Unreachable { .. } => true,
            UpstreamError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// The `Retry-After` seconds of a 429/503 answer.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            UpstreamError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, UpstreamError::Status { status: 404, .. })
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            UpstreamError::Status { status, .. } | UpstreamError::Unauthorized { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The upstream's error body (first KiB), if it sent one.
    pub fn body(&self) -> &str {
        match self {
            UpstreamError::Status { body, .. } | UpstreamError::Unauthorized { body, .. } => body,
            _ => "",
        }
    }
}

/// Keep at most 1 KiB of an upstream body, as text.
pub(crate) fn excerpt(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(1024)]);
    s.trim().to_string()
}
