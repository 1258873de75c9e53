//! `[storage] backend` and `[storage.s3]`: where wharf keeps what it
//! stores. The filesystem (`storage.data_dir`) is the default; `s3` keeps
//! every blob and small object in an S3-compatible bucket (AWS S3, Garage,
//! MinIO, Ceph RGW) and uses the data directory only for local spool files.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{duration, size, ConfigError};
use crate::secrets::SecretRef;

/// The smallest multipart part S3 accepts (every part but the last).
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// The largest part S3 accepts.
pub const MAX_PART_SIZE: u64 = 5 << 30;
/// Default multipart part size.
pub const DEFAULT_PART_SIZE: u64 = 16 << 20;
/// The largest object S3 copies in one `CopyObject` (AWS refuses more):
/// larger blobs are committed with a multipart copy.
pub const MAX_COPY_OBJECT: u64 = 5 << 30;
/// Default lifetime of a presigned redirect URL.
pub const DEFAULT_REDIRECT_EXPIRY: Duration = Duration::from_secs(20 * 60);
/// Longest lifetime of a presigned URL (SigV4's limit).
pub const MAX_REDIRECT_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Which backend stores the registry's content.
#[derive(Debug, Clone, Default)]
pub enum StorageBackend {
    /// Files under `storage.data_dir`.
    #[default]
    Filesystem,
    /// Objects in an S3 bucket.
    S3(Box<S3Storage>),
}

/// Validated `[storage.s3]` settings.
#[derive(Debug, Clone)]
pub struct S3Storage {
    pub bucket: String,
    /// Key prefix, empty or ending in `/`.
    pub prefix: String,
    /// `None`: the AWS default chain (`AWS_REGION`, profile), else `us-east-1`.
    pub region: Option<String>,
    /// `None`: AWS S3's own endpoint for the region.
    pub endpoint: Option<String>,
    /// `http(s)://endpoint/bucket/key` rather than `bucket.endpoint/key`.
    pub path_style: bool,
    /// Access key id + secret key (JSON keys `aws_access_key_id` and
    /// `aws_secret_access_key`, or env `username` + `password`); `None`:
    /// the AWS default credential chain.
    pub credentials: Option<SecretRef>,
    /// Multipart part size: bytes buffered per part (two buffers per upload
    /// at most).
    pub part_size: u64,
    /// PEM file with CA certificates trusted besides the system roots (a
    /// self-hosted store with a private CA). `AWS_CA_BUNDLE` is not read.
    pub ca_file: Option<PathBuf>,
    /// This replica's name in leases (who runs a GC, who fetches a blob).
    pub replica: String,
    /// How often a replica re-reads what other replicas may have changed
    /// (robots, projects, the repository catalogue, upload sessions).
    pub refresh_interval: Duration,
    /// How long a lease writer waits before reading its lease back (the
    /// store ignores conditional writes: the last writer wins, see
    /// `store::lease`).
    pub lease_settle: Duration,
    /// Answer blob `GET`s with a `307` to a presigned `GetObject` URL of
    /// this lifetime (`None`: stream through wharf).
    pub redirect: Option<Duration>,
    /// The endpoint presigned redirect URLs name (and are signed for), when
    /// clients reach the store under another address than `endpoint`
    /// (`None`: `endpoint`, or AWS's).
    pub redirect_endpoint: Option<String>,
    /// Blobs larger than this are committed with a multipart copy
    /// (`UploadPartCopy`) rather than one `CopyObject`. 5 GiB (AWS's
    /// limit); `multipart_copy_threshold`, a tuning and testing key, lowers
    /// it.
    pub multipart_copy_threshold: u64,
}

impl S3Storage {
    /// `bucket` at `endpoint` (or AWS), for messages.
    pub fn describe(&self) -> String {
        match &self.endpoint {
            Some(e) => format!("bucket {:?} at {e}", self.bucket),
            None => format!("bucket {:?} on AWS S3", self.bucket),
        }
    }

    /// Where blob `GET`s are redirected, for messages (`None`: they
    /// stream through wharf).
    pub fn describe_redirect(&self) -> Option<String> {
        let expiry = self.redirect?;
        let at = self
            .redirect_endpoint
            .as_deref()
            .or(self.endpoint.as_deref())
            .unwrap_or("AWS S3");
        Some(format!(
            "blob GETs redirect to URLs presigned for {at}, valid {} s",
            expiry.as_secs()
        ))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawS3 {
    bucket: Option<String>,
    prefix: Option<String>,
    region: Option<String>,
    endpoint: Option<String>,
    path_style: Option<bool>,
    credentials: Option<SecretRef>,
    part_size: Option<String>,
    ca_file: Option<PathBuf>,
    replica: Option<String>,
    refresh_interval: Option<String>,
    lease_settle: Option<String>,
    redirect: Option<bool>,
    redirect_expiry: Option<String>,
    redirect_endpoint: Option<String>,
    /// Not in the example config: for tests and tuning.
    multipart_copy_threshold: Option<String>,
}

/// Default `storage.s3.refresh_interval`.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(10);
/// Default `storage.s3.lease_settle`.
pub const DEFAULT_LEASE_SETTLE: Duration = Duration::from_millis(250);

/// The default replica name: the host name (a pod's name on Kubernetes)
/// and the process id, so two replicas on one host differ.
fn default_replica() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "wharf".into());
    format!("{host}-{}", std::process::id())
}

/// A replica name: 1-64 letters, digits, `-`, `_`, `.`.
fn valid_replica(r: &str) -> bool {
    (1..=64).contains(&r.len())
        && r.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `storage.backend` and `[storage.s3]` together.
pub(super) fn validate(
    backend: Option<&str>,
    s3: Option<RawS3>,
) -> Result<StorageBackend, ConfigError> {
    match backend.unwrap_or("filesystem") {
        "filesystem" => match s3 {
            Some(_) => Err(ConfigError::invalid(
                "storage.s3",
                "is set but storage.backend is \"filesystem\": set backend = \"s3\" or remove [storage.s3]",
            )),
            None => Ok(StorageBackend::Filesystem),
        },
        "s3" => Ok(StorageBackend::S3(Box::new(
            s3.ok_or_else(|| ConfigError::invalid("storage.s3", "is required when storage.backend = \"s3\" (at least `bucket`)"))?
                .validate()?,
        ))),
        other => Err(ConfigError::invalid("storage.backend", format!("{other:?}: use \"filesystem\" or \"s3\""))),
    }
}

/// S3's bucket naming rules (3-63 lowercase letters, digits, `-`, `.`;
/// starting and ending with a letter or digit).
fn valid_bucket(b: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&b.len())
        && b.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && edge(b.chars().next())
        && edge(b.chars().last())
}

/// An http(s) URL with a host and no query (`bare`: nothing but the host
/// and port, no path or credentials either), returned without a trailing
/// `/`; otherwise an error naming `key`.
fn endpoint_url(key: &str, e: &str, bare: bool) -> Result<String, ConfigError> {
    let url = reqwest::Url::parse(e).ok();
    let ok = url.as_ref().is_some_and(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.host_str().is_some()
            && u.query().is_none()
            && (!bare
                || (u.username().is_empty()
                    && u.password().is_none()
                    && u.path() == "/"
                    && u.fragment().is_none()))
    });
    if ok {
        return Ok(e.trim_end_matches('/').to_string());
    }
    // A password in the URL is not repeated in the message.
    let shown = match url {
        Some(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("<redacted>"));
            u.to_string()
        }
        _ => e.to_string(),
    };
    let only = match bare {
        true => ", with nothing after the host and port (no path, query or credentials)",
        false => "",
    };
    Err(ConfigError::invalid(
        key,
        format!("{shown:?} must be an http(s) URL like \"http://127.0.0.1:3900\"{only}"),
    ))
}

impl RawS3 {
    /// `redirect` and `redirect_expiry`: the presigned URLs' lifetime when
    /// redirecting.
    fn redirect_expiry(&self) -> Result<Option<Duration>, ConfigError> {
        let expiry = match &self.redirect_expiry {
            None => DEFAULT_REDIRECT_EXPIRY,
            Some(v) => duration("storage.s3.redirect_expiry", v)?,
        };
        if !(Duration::from_secs(60)..=MAX_REDIRECT_EXPIRY).contains(&expiry) {
            return Err(ConfigError::invalid(
                "storage.s3.redirect_expiry",
                "must be between 1m and 7d (a presigned URL's limits; a client must start its download before it expires)",
            ));
        }
        Ok(self.redirect.unwrap_or(false).then_some(expiry))
    }

    fn validate(self) -> Result<S3Storage, ConfigError> {
        let redirect = self.redirect_expiry()?;
        let bucket = self
            .bucket
            .ok_or_else(|| ConfigError::invalid("storage.s3.bucket", "is required"))?;
        if !valid_bucket(&bucket) {
            return Err(ConfigError::invalid(
                "storage.s3.bucket",
                format!(
                    "{bucket:?} is not a bucket name (3-63 lowercase letters, digits, '-' or '.')"
                ),
            ));
        }
        let prefix = match self.prefix.as_deref().map(|p| p.trim_matches('/')) {
            None | Some("") => String::new(),
            Some(p)
                if p.split('/').any(|c| c.is_empty() || c == "." || c == "..")
                    || p.contains('\\') =>
            {
                return Err(ConfigError::invalid(
                    "storage.s3.prefix",
                    format!("{p:?}: use path components like \"registry/prod\""),
                ))
            }
            Some(p) => format!("{p}/"),
        };
        let endpoint = self
            .endpoint
            .as_deref()
            .map(|e| endpoint_url("storage.s3.endpoint", e, false))
            .transpose()?;
        let redirect_endpoint = self
            .redirect_endpoint
            .as_deref()
            .map(|e| endpoint_url("storage.s3.redirect_endpoint", e, true))
            .transpose()?;
        if self.region.as_deref().is_some_and(|r| r.trim().is_empty()) {
            return Err(ConfigError::invalid(
                "storage.s3.region",
                "must not be empty (omit it for the AWS default chain)",
            ));
        }
        if let Some(c) = &self.credentials {
            c.validate(false)
                .map_err(|e| ConfigError::invalid("storage.s3.credentials", e.0))?;
        }
        let part_size = match &self.part_size {
            None => DEFAULT_PART_SIZE,
            Some(v) => size("storage.s3.part_size", v)?,
        };
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part_size) {
            return Err(ConfigError::invalid(
                "storage.s3.part_size",
                "must be between 5MiB and 5GiB (S3's multipart limits)",
            ));
        }
        if let Some(p) = &self.ca_file {
            if !p.is_file() {
                return Err(ConfigError::invalid(
                    "storage.s3.ca_file",
                    format!("{} is not a readable file", p.display()),
                ));
            }
        }
        let replica = self.replica.unwrap_or_else(default_replica);
        if !valid_replica(&replica) {
            return Err(ConfigError::invalid(
                "storage.s3.replica",
                format!("{replica:?}: use 1-64 letters, digits, '-', '_' or '.'"),
            ));
        }
        let refresh_interval = match &self.refresh_interval {
            None => DEFAULT_REFRESH,
            Some(v) => duration("storage.s3.refresh_interval", v)?,
        };
        if refresh_interval < Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                "storage.s3.refresh_interval",
                "must be at least 1s",
            ));
        }
        let lease_settle = match &self.lease_settle {
            None => DEFAULT_LEASE_SETTLE,
            Some(v) => duration("storage.s3.lease_settle", v)?,
        };
        if lease_settle > Duration::from_secs(10) {
            return Err(ConfigError::invalid(
                "storage.s3.lease_settle",
                "must be at most 10s (it delays every lease taken)",
            ));
        }
        let multipart_copy_threshold = match &self.multipart_copy_threshold {
            None => MAX_COPY_OBJECT,
            Some(v) => size("storage.s3.multipart_copy_threshold", v)?,
        };
        if !(MIN_PART_SIZE..=MAX_COPY_OBJECT).contains(&multipart_copy_threshold) {
            return Err(ConfigError::invalid(
                "storage.s3.multipart_copy_threshold",
                "must be between 5MiB and 5GiB (S3's CopyObject and part limits)",
            ));
        }
        Ok(S3Storage {
            redirect,
            redirect_endpoint,
            multipart_copy_threshold,
            replica,
            refresh_interval,
            lease_settle,
            path_style: self.path_style.unwrap_or(endpoint.is_some()),
            bucket,
            prefix,
            region: self.region,
            endpoint,
            credentials: self.credentials,
            part_size,
            ca_file: self.ca_file,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(backend: Option<&str>, t: Option<&str>) -> Result<StorageBackend, String> {
        let s3 = t
            .map(|t| toml::from_str::<RawS3>(t).map_err(|e| e.to_string()))
            .transpose()?;
        validate(backend, s3).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_errors() {
        assert!(matches!(parse(None, None), Ok(StorageBackend::Filesystem)));
        let StorageBackend::S3(s) = parse(
            Some("s3"),
            Some("bucket = \"wharf\"\nendpoint = \"http://127.0.0.1:3900/\"\nprefix = \"/reg/prod/\""),
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            (s.prefix.as_str(), s.path_style, s.part_size),
            ("reg/prod/", true, DEFAULT_PART_SIZE)
        );
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
        for (backend, t, key) in [
            (Some("s4"), None, "storage.backend"),
            (Some("s3"), None, "storage.s3"),
            (None, Some("bucket = \"b12\""), "storage.s3"),
            (Some("s3"), Some(""), "storage.s3.bucket"),
            (
                Some("s3"),
                Some("bucket = \"Bad_Name\""),
                "storage.s3.bucket",
            ),
            (
                Some("s3"),
                Some("bucket = \"wharf\"\npart_size = \"1MiB\""),
                "storage.s3.part_size",
            ),
            (
                Some("s3"),
                Some("bucket = \"wharf\"\nendpoint = \"garage:3900\""),
                "storage.s3.endpoint",
            ),
            (
                Some("s3"),
                Some("bucket = \"wharf\"\nprefix = \"a/../b\""),
                "storage.s3.prefix",
            ),
            (
                Some("s3"),
                Some("bucket = \"wharf\"\ncredentials = { backend = \"env\" }"),
                "storage.s3.credentials",
            ),
            (
                Some("s3"),
                Some("bucket = \"wharf\"\nca_file = \"/nonexistent/ca.pem\""),
                "storage.s3.ca_file",
            ),
        ] {
            let e = parse(backend, t).unwrap_err();
            assert!(e.contains(key), "{t:?}: {e}");
        }
        for (t, key) in [
            ("replica = \"a b\"", "storage.s3.replica"),
            ("refresh_interval = \"0s\"", "storage.s3.refresh_interval"),
            ("lease_settle = \"1m\"", "storage.s3.lease_settle"),
            ("redirect_expiry = \"10s\"", "storage.s3.redirect_expiry"),
            ("redirect_expiry = \"8d\"", "storage.s3.redirect_expiry"),
            (
                "multipart_copy_threshold = \"1MiB\"",
                "storage.s3.multipart_copy_threshold",
            ),
        ] {
            let e = parse(Some("s3"), Some(&format!("bucket = \"wharf\"\n{t}"))).unwrap_err();
            assert!(e.contains(key), "{t:?}: {e}");
        }
        let e = parse(Some("s3"), Some("bucket = \"wharf\"\nsecret_key = \"x\"")).unwrap_err();
        assert!(e.contains("secret_key"), "{e}");
    }

    #[test]
    fn redirects_and_copies() {
        let s3 = |t: &str| match parse(Some("s3"), Some(&format!("bucket = \"wharf\"\n{t}"))) {
            Ok(StorageBackend::S3(s)) => s,
            r => panic!("{t}: {r:?}"),
        };
        let d = s3("");
        assert_eq!(
            (d.redirect, d.multipart_copy_threshold),
            (None, MAX_COPY_OBJECT)
        );
        assert_eq!(
            s3("redirect = true").redirect,
            Some(DEFAULT_REDIRECT_EXPIRY)
        );
        let r = s3("redirect = true\nredirect_expiry = \"1h\"").redirect;
        assert_eq!(r, Some(Duration::from_secs(3600)));
        assert_eq!(s3("redirect_expiry = \"1h\"").redirect, None);
        let t = s3("multipart_copy_threshold = \"8MiB\"").multipart_copy_threshold;
        assert_eq!(t, 8 << 20);
        assert_eq!(d.redirect_endpoint, None);
        let e = s3("redirect = true\nredirect_endpoint = \"https://s3.example.com/\"");
        assert_eq!(
            e.redirect_endpoint.as_deref(),
            Some("https://s3.example.com")
        );
        let e = s3("redirect_endpoint = \"http://[::1]:3900\"").redirect_endpoint;
        assert_eq!(e.as_deref(), Some("http://[::1]:3900"));
    }

    #[test]
    fn a_redirect_endpoint_is_a_bare_http_url() {
        for bad in [
            "s3.example.com",
            "ftp://s3.example.com",
            "https://",
            "https://s3.example.com/wharf",
            "https://s3.example.com/?x=1",
            "https://s3.example.com/#top",
            "https://key:secret@s3.example.com",
            "https://key@s3.example.com",
        ] {
            let t = format!("bucket = \"wharf\"\nredirect = true\nredirect_endpoint = \"{bad}\"");
            let e = parse(Some("s3"), Some(&t)).unwrap_err();
            assert!(e.contains("storage.s3.redirect_endpoint"), "{bad}: {e}");
            assert!(e.contains("no path, query or credentials"), "{bad}: {e}");
            assert!(!e.contains("secret"), "{bad}: {e}");
        }
        // `endpoint` keeps accepting a path (a store behind a path prefix).
        let t = "bucket = \"wharf\"\nendpoint = \"http://127.0.0.1:3900/s3\"";
        assert!(parse(Some("s3"), Some(t)).is_ok());
    }
}
