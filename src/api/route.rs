//! `Route::parse`: the raw request path to a typed endpoint.
//!
//! Paths are matched from the right (`.../manifests/<ref>`, `.../blobs/<d>`)
//! so repository names of any depth work, and names containing the words
//! `manifests` or `blobs` as components still parse. The path is never
//! percent-decoded: the name, tag and digest grammars contain no `%`, so
//! encoded traversal (`%2e%2e`, `%2f`) is simply an invalid name.

use http::Method;

use crate::oci::{Digest, ErrorCode, Reference, RepoName};

use super::error::ApiError;

/// A distribution-spec endpoint, with its path parameters parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags(RepoName),
    /// `/v2/<name>/manifests/<reference>`
    Manifest(RepoName, Reference),
    /// `/v2/<name>/blobs/<digest>`
    Blob(RepoName, Digest),
    /// `/v2/<name>/blobs/uploads/`
    UploadStart(RepoName),
    /// `/v2/<name>/blobs/uploads/<uuid>`
    Upload(RepoName, String),
    /// `/v2/<name>/referrers/<digest>`
    Referrers(RepoName, Digest),
}

impl Route {
    /// Parse a raw (not percent-decoded) request path of a `method`
    /// request. A `GET`/`HEAD` of a manifest whose reference is neither a
    /// tag nor a digest is "not found" (as Distribution and zot answer, and
    /// as the conformance suite expects); other methods get the grammar
    /// error.
    pub fn parse(method: &Method, path: &str) -> Result<Route, ApiError> {
        match Self::parse_path(path) {
            Err(e)
                if matches!(*method, Method::GET | Method::HEAD)
                    && Self::is_manifest_path(path) =>
            {
                Err(ApiError::new(ErrorCode::ManifestUnknown)
                    .explain(format!("no such manifest: {}", e.message())))
            }
            r => r,
        }
    }

    /// Whether `path` ends in `/manifests/<something>` under a valid name.
    fn is_manifest_path(path: &str) -> bool {
        let segs: Vec<&str> = path.split('/').collect();
        let n = segs.len();
        n >= 5 && segs[n - 2] == "manifests" && segs[2..n - 2].join("/").parse::<RepoName>().is_ok()
    }

    fn parse_path(path: &str) -> Result<Route, ApiError> {
        let rest = match path.strip_prefix("/v2") {
            Some("") | Some("/") => return Ok(Route::Base),
            Some(r) if r.starts_with('/') => &r[1..],
            _ => return Err(not_found(path)),
        };
        if rest == "_catalog" {
            return Ok(Route::Catalog);
        }
        let segs: Vec<&str> = rest.split('/').collect();
        let n = segs.len();
        let name_of = |k: usize| -> Result<RepoName, ApiError> {
            if k == 0 {
                return Err(
                    ApiError::new(ErrorCode::NameInvalid).detail("repository name is missing")
                );
            }
            // The first k segments, as they stand in the path (no copy).
            let end = segs[..k].iter().map(|s| s.len() + 1).sum::<usize>() - 1;
            rest[..end].parse().map_err(|e: crate::oci::NameError| {
                ApiError::new(ErrorCode::NameInvalid).detail(e.to_string())
            })
        };
        let digest_of = |s: &str| -> Result<Digest, ApiError> {
            s.parse().map_err(|e: crate::oci::DigestError| {
                ApiError::new(ErrorCode::DigestInvalid).detail(e.to_string())
            })
        };
        // `.../tags/list`
        if n >= 3 && segs[n - 2] == "tags" && segs[n - 1] == "list" {
            return Ok(Route::Tags(name_of(n - 2)?));
        }
        // `.../blobs/uploads/` and `.../blobs/uploads`
        if n >= 3 && segs[n - 2] == "blobs" && segs[n - 1] == "uploads" {
            return Ok(Route::UploadStart(name_of(n - 2)?));
        }
        if n >= 4 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
            let id = segs[n - 1];
            if id.is_empty() {
                return Ok(Route::UploadStart(name_of(n - 3)?));
            }
            let id = uuid::Uuid::parse_str(id).map_err(|_| {
                ApiError::new(ErrorCode::BlobUploadUnknown).detail("upload id is not a UUID")
            })?;
            return Ok(Route::Upload(name_of(n - 3)?, id.hyphenated().to_string()));
        }
        if n >= 3 && segs[n - 2] == "manifests" {
            let name = name_of(n - 2)?;
            let reference: Reference =
                segs[n - 1].parse().map_err(|e: crate::oci::NameError| {
                    let code = match e {
                        crate::oci::NameError::BadDigest(_) => ErrorCode::DigestInvalid,
                        _ => ErrorCode::TagInvalid,
                    };
                    ApiError::new(code).detail(e.to_string())
                })?;
            return Ok(Route::Manifest(name, reference));
        }
        if n >= 3 && segs[n - 2] == "blobs" {
            let name = name_of(n - 2)?;
            return Ok(Route::Blob(name, digest_of(segs[n - 1])?));
        }
        if n >= 3 && segs[n - 2] == "referrers" {
            let name = name_of(n - 2)?;
            return Ok(Route::Referrers(name, digest_of(segs[n - 1])?));
        }
        Err(not_found(path))
    }

    /// The repository the route addresses, if any.
    pub fn repo(&self) -> Option<&RepoName> {
        match self {
            Route::Base | Route::Catalog => None,
            Route::Tags(n)
            | Route::Manifest(n, _)
            | Route::Blob(n, _)
            | Route::UploadStart(n)
            | Route::Upload(n, _)
            | Route::Referrers(n, _) => Some(n),
        }
    }
}

fn not_found(path: &str) -> ApiError {
    let shown: String = path.chars().take(200).collect();
    ApiError::new(ErrorCode::NoEndpoint).explain(format!("no registry endpoint at {shown}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    /// The error code of a PUT (grammar errors are reported as such).
    fn code(path: &str) -> &'static str {
        Route::parse(&Method::PUT, path).unwrap_err().code.as_str()
    }

    fn parse(path: &str) -> Result<Route, ApiError> {
        Route::parse(&Method::GET, path)
    }

    #[test]
    fn base_and_catalog() {
        assert_eq!(parse("/v2/").unwrap(), Route::Base);
        assert_eq!(parse("/v2").unwrap(), Route::Base);
        assert_eq!(parse("/v2/_catalog").unwrap(), Route::Catalog);
    }

    #[test]
    fn deep_names() {
        match parse("/v2/a/b/c/d/manifests/latest").unwrap() {
            Route::Manifest(n, Reference::Tag(t)) => {
                assert_eq!(n.as_str(), "a/b/c/d");
                assert_eq!(t.as_str(), "latest");
            }
            r => panic!("{r:?}"),
        }
        match parse("/v2/x/manifests/y/manifests/v1").unwrap() {
            Route::Manifest(n, _) => assert_eq!(n.as_str(), "x/manifests/y"),
            r => panic!("{r:?}"),
        }
        match parse("/v2/blobs/blobs/uploads/").unwrap() {
            Route::UploadStart(n) => assert_eq!(n.as_str(), "blobs"),
            r => panic!("{r:?}"),
        }
        match parse(&format!("/v2/a/tags/b/blobs/{D}")).unwrap() {
            Route::Blob(n, d) => {
                assert_eq!(n.as_str(), "a/tags/b");
                assert_eq!(d.to_string(), D);
            }
            r => panic!("{r:?}"),
        }
        assert!(matches!(
            parse("/v2/a/b/tags/list").unwrap(),
            Route::Tags(_)
        ));
        assert!(matches!(
            parse(&format!("/v2/a/referrers/{D}")).unwrap(),
            Route::Referrers(..)
        ));
        let id = "0b1e3f5c-2f43-4e0b-9a55-3d0ab1a9f3a1";
        assert_eq!(
            parse(&format!("/v2/a/b/blobs/uploads/{id}")).unwrap(),
            Route::Upload("a/b".parse().unwrap(), id.to_string())
        );
    }

    #[test]
    fn traversal_and_encoding_refused() {
        assert_eq!(code("/v2/../manifests/latest"), "NAME_INVALID");
        assert_eq!(code("/v2/a/../../etc/manifests/latest"), "NAME_INVALID");
        assert_eq!(code("/v2/%2e%2e/manifests/latest"), "NAME_INVALID");
        assert_eq!(code("/v2/a%2fb/manifests/latest"), "NAME_INVALID");
        assert_eq!(code("/v2/a%2Fb/tags/list"), "NAME_INVALID");
        assert_eq!(code("/v2/a//b/tags/list"), "NAME_INVALID");
        assert_eq!(code("/v2/A/tags/list"), "NAME_INVALID");
        assert_eq!(code("/v2/a/_layers/tags/list"), "NAME_INVALID");
        assert_eq!(code("/v2/manifests/latest"), "UNSUPPORTED");
        assert_eq!(code("/v2/a/blobs/uploads/../../x"), "UNSUPPORTED");
        assert_eq!(
            code("/v2/a/blobs/uploads/not-a-uuid"),
            "BLOB_UPLOAD_UNKNOWN"
        );
    }

    #[test]
    fn bad_references() {
        assert_eq!(
            code("/v2/a/manifests/sha256:totallywrong"),
            "DIGEST_INVALID"
        );
        assert_eq!(code("/v2/a/blobs/sha256:totallywrong"), "DIGEST_INVALID");
        assert_eq!(code("/v2/a/manifests/.bad"), "TAG_INVALID");
        assert_eq!(code("/v2/a/manifests/"), "TAG_INVALID");
        assert_eq!(code("/v2/a/referrers/latest"), "DIGEST_INVALID");
        assert_eq!(code("/v3/a/manifests/latest"), "UNSUPPORTED");
        assert_eq!(code("/"), "UNSUPPORTED");
    }

    #[test]
    fn reading_an_invalid_reference_is_not_found() {
        for m in [Method::GET, Method::HEAD] {
            for p in [
                "/v2/a/manifests/.INVALID_MANIFEST_NAME",
                "/v2/a/b/manifests/sha256:totallywrong",
                "/v2/a/manifests/",
            ] {
                assert_eq!(
                    Route::parse(&m, p).unwrap_err().code.as_str(),
                    "MANIFEST_UNKNOWN",
                    "{m} {p}"
                );
            }
        }
        // Not for bad names, and not for writes.
        assert_eq!(
            Route::parse(&Method::GET, "/v2/A/manifests/.bad")
                .unwrap_err()
                .code
                .as_str(),
            "NAME_INVALID"
        );
        assert_eq!(
            Route::parse(&Method::DELETE, "/v2/a/manifests/.bad")
                .unwrap_err()
                .code
                .as_str(),
            "TAG_INVALID"
        );
    }
}
