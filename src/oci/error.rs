//! The error codes wharf answers with: the OCI distribution-spec codes plus
//! the few Docker Distribution codes clients know. Each code has exactly one
//! [`Descriptor`]: the code string clients match on, the HTTP status, and
//! the default message (the spec's wording). Nothing else in wharf picks a
//! status for an error.

/// One row of the table: what a client sees for a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    /// The `code` field, e.g. `BLOB_UNKNOWN`.
    pub code: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// The default `message` (handlers usually replace it with a sentence
    /// about the request at hand).
    pub message: &'static str,
}

/// An error kind as it appears in `{"errors":[{"code": ...}]}`, with its
/// status. Several kinds may share a code string when the spec gives one
/// code two statuses (e.g. `SIZE_INVALID` as 400 and as 413).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    /// A request body over a configured limit (413).
    TooLarge,
    TagInvalid,
    Unauthorized,
    Denied,
    /// The thing to create exists already (409).
    Conflict,
    /// A method the endpoint does not have (405).
    Unsupported,
    /// A path that is no endpoint (404).
    NoEndpoint,
    /// A malformed parameter or body outside the registry grammar (400).
    BadRequest,
    TooManyRequests,
    /// A chunk that does not continue the upload (416).
    RangeInvalid,
    /// Storage or a dependency is unavailable right now (503).
    Unavailable,
    /// The remote registry is unreachable, failed or sent something invalid
    /// and nothing cached can answer (424, see below).
    UpstreamFailed,
    /// The remote registry refused wharf's own credentials (424).
    UpstreamRefused,
    /// The store's disk is full (507).
    StorageFull,
    /// A bug or an unexpected failure (500); logged in full.
    Internal,
}

impl ErrorCode {
    /// The one descriptor of this code.
    pub const fn descriptor(self) -> Descriptor {
        use ErrorCode::*;
        let (code, status, message) = match self {
            BlobUnknown => ("BLOB_UNKNOWN", 404, "blob unknown to registry"),
            BlobUploadInvalid => ("BLOB_UPLOAD_INVALID", 400, "blob upload invalid"),
            BlobUploadUnknown => (
                "BLOB_UPLOAD_UNKNOWN",
                404,
                "blob upload unknown to registry",
            ),
            DigestInvalid => (
                "DIGEST_INVALID",
                400,
                "provided digest did not match uploaded content",
            ),
            // 400 as Distribution answers (the spec ties no status to it).
            ManifestBlobUnknown => (
                "MANIFEST_BLOB_UNKNOWN",
                400,
                "manifest references a manifest or blob unknown to registry",
            ),
            ManifestInvalid => ("MANIFEST_INVALID", 400, "manifest invalid"),
            ManifestUnknown => ("MANIFEST_UNKNOWN", 404, "manifest unknown to registry"),
            NameInvalid => ("NAME_INVALID", 400, "invalid repository name"),
            NameUnknown => ("NAME_UNKNOWN", 404, "repository name not known to registry"),
            SizeInvalid => (
                "SIZE_INVALID",
                400,
                "provided length did not match content length",
            ),
            TooLarge => ("SIZE_INVALID", 413, "request body too large"),
            TagInvalid => ("TAG_INVALID", 400, "invalid tag"),
            Unauthorized => ("UNAUTHORIZED", 401, "authentication required"),
            Denied => ("DENIED", 403, "requested access to the resource is denied"),
            Conflict => ("DENIED", 409, "the resource already exists"),
            Unsupported => ("UNSUPPORTED", 405, "the operation is unsupported"),
            NoEndpoint => ("UNSUPPORTED", 404, "no such endpoint"),
            BadRequest => ("UNSUPPORTED", 400, "malformed request"),
            TooManyRequests => ("TOOMANYREQUESTS", 429, "too many requests"),
            RangeInvalid => (
                "BLOB_UPLOAD_INVALID",
                416,
                "requested range not satisfiable",
            ),
            Unavailable => ("UNAVAILABLE", 503, "service unavailable"),
            // 424, not 502/503: Docker Engine and containers/image (podman,
            // skopeo) print the error `message` only for 4xx answers and
            // show "received unexpected HTTP status: 503" otherwise, and
            // the user must read which remote failed and why. Codes are
            // ones Docker knows, and neither DENIED nor *_UNKNOWN, which
            // Docker prefixes with a misleading "may require 'docker
            // login'".
            UpstreamFailed => ("UNAVAILABLE", 424, "the remote registry failed"),
            UpstreamRefused => (
                "UNAUTHORIZED",
                424,
                "the remote registry refused wharf's credentials",
            ),
            StorageFull => ("UNAVAILABLE", 507, "the registry's storage is full"),
            Internal => ("UNKNOWN", 500, "internal error"),
        };
        Descriptor {
            code,
            status,
            message,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.descriptor().code
    }

    /// The HTTP status of this code.
    pub fn status(self) -> u16 {
        self.descriptor().status
    }

    /// The default message of this code.
    pub fn message(self) -> &'static str {
        self.descriptor().message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_sane_descriptor() {
        use ErrorCode::*;
        for c in [
            BlobUnknown,
            BlobUploadInvalid,
            BlobUploadUnknown,
            DigestInvalid,
            ManifestBlobUnknown,
            ManifestInvalid,
            ManifestUnknown,
            NameInvalid,
            NameUnknown,
            SizeInvalid,
            TooLarge,
            TagInvalid,
            Unauthorized,
            Denied,
            Conflict,
            Unsupported,
            NoEndpoint,
            BadRequest,
            TooManyRequests,
            RangeInvalid,
            Unavailable,
            UpstreamFailed,
            UpstreamRefused,
            StorageFull,
            Internal,
        ] {
            let d = c.descriptor();
            assert!((400..600).contains(&d.status), "{c:?}");
            assert!(
                d.code.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
                "{c:?}"
            );
            assert!(!d.message.is_empty());
        }
    }
}
