//! Typed upstream failures. They keep the upstream's status and the start of
//! its error body, and never carry credentials.

/// Why talking to a remote registry failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("remote {remote} is unreachable: {reason}")]
    Unreachable { remote: String, reason: String },
    /// The remote (or its token service) answered 401/403 to wharf's own
    /// request for `repo`. `secret` names the credentials entry wharf used
    /// (its reference, never its value); `None` when wharf asked
    /// anonymously.
    #[error("{}", refusal_sentence(remote, repo, *status, secret.as_deref()))]
    Unauthorized {
        remote: String,
        status: u16,
        body: String,
        repo: String,
        secret: Option<String>,
    },
    #[error("remote {remote} answered HTTP {status}")]
    Status {
        remote: String,
        status: u16,
        body: String,
        retry_after: Option<u64>,
    },
    /// The secret holding wharf's credentials for this remote could not be
    /// read (the remote was not contacted; the log names the reference).
    #[error("wharf could not read its credentials for remote {remote} from the secret {secret}, so it did not contact the remote (wharf's log has the cause)")]
    CredentialsUnavailable { remote: String, secret: String },
    #[error("remote {remote} sent an invalid response: {message}")]
    Protocol { remote: String, message: String },
    /// The remote tried to send wharf somewhere it must not go (a redirect
    /// or token realm refused by `target`), or a storage host refused.
    #[error("remote {remote}: {reason}")]
    Refused { remote: String, reason: String },
    #[error("remote {remote} sent a {what} larger than the limit of {limit} bytes")]
    TooLarge {
        remote: String,
        what: &'static str,
        limit: u64,
    },
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
            UpstreamError::Status { status, .. } | UpstreamError::Unauthorized { status, .. } => {
                Some(*status)
            }
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

/// What a user reads when a remote refused wharf: about wharf's own
/// credentials (never a hint to `docker login` to wharf).
fn refusal_sentence(remote: &str, repo: &str, status: u16, secret: Option<&str>) -> String {
    match secret {
        Some(s) => format!("remote {remote} refused wharf's credentials for {repo} (HTTP {status}); check the secret {s}"),
        None => format!(
            "remote {remote} refused wharf's anonymous request for {repo} (HTTP {status}): the repository does not exist there, \
             or it is private and wharf has no credentials for it (add a credentials entry to remote {remote})"
        ),
    }
}

/// Keep at most 1 KiB of an upstream body, as text.
pub(crate) fn excerpt(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(1024)]);
    s.trim().to_string()
}
