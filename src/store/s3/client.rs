//! Building the S3 client and turning its errors into `io::Error`s.
//!
//! The client is `aws-sdk-s3` on the same HTTP stack as wharf's other AWS
//! calls (aws-smithy-http-client, rustls + ring). Checksums are sent only
//! when an operation requires them: a multipart upload created with a
//! checksum algorithm makes Garage rewrite the data on CopyObject (see
//! tests/garage_facts.rs), and the digest check is wharf's own anyway.
//! `AWS_CA_BUNDLE` is not read by this SDK (tests/aws_ca_bundle.rs); an
//! extra CA is `storage.s3.ca_file`.

use std::io;
use std::time::Duration;

use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};

use crate::config::S3Storage;
use crate::secrets::SecretString;

/// Why the bucket could not be used at start-up. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot read storage.s3.ca_file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("S3 {target}: {reason}")]
    Bucket { target: String, reason: String },
}

/// An S3 client for `cfg`, with `keys` (access key id, secret key) or the
/// AWS default credential chain.
pub async fn client(
    cfg: &S3Storage,
    keys: Option<(String, SecretString)>,
) -> Result<aws_sdk_s3::Client, ConnectError> {
    use aws_smithy_http_client::tls::{
        rustls_provider::CryptoMode, Provider, TlsContext, TrustStore,
    };
    let mut http =
        aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring));
    if let Some(path) = &cfg.ca_file {
        let pem = std::fs::read(path).map_err(|e| ConnectError::CaFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let trust = TrustStore::default().with_pem_certificate(pem.as_slice());
        let tls = TlsContext::builder()
            .with_trust_store(trust)
            .build()
            .map_err(|e| ConnectError::CaFile {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        http = http.tls_context(tls);
    }
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .build();
    // Without a region the default chain (env, profile, IMDS) runs on the
    // HTTP client given here; us-east-1 when it finds none.
    let mut l = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http.build_https())
        .timeout_config(timeouts);
    if let Some(r) = &cfg.region {
        l = l.region(Region::new(r.clone()));
    }
    if let Some((id, secret)) = keys {
        l = l.credentials_provider(Credentials::new(
            id,
            secret.expose(),
            None,
            None,
            "wharf-storage",
        ));
    }
    let sdk = l.load().await;
    let mut b = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(cfg.path_style)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if sdk.region().is_none() {
        b = b.region(Region::new("us-east-1"));
    }
    if let Some(e) = &cfg.endpoint {
        b = b.endpoint_url(e);
    }
    Ok(aws_sdk_s3::Client::from_conf(b.build()))
}

/// The client that presigns redirect URLs: `client` itself, or with
/// `storage.s3.redirect_endpoint` as its endpoint, so that the URL names
/// the host clients use and the signature covers that host. Presigning
/// sends nothing: this client never makes a request.
pub fn presigner(client: &aws_sdk_s3::Client, cfg: &S3Storage) -> aws_sdk_s3::Client {
    match &cfg.redirect_endpoint {
        None => client.clone(),
        Some(e) => {
            aws_sdk_s3::Client::from_conf(client.config().to_builder().endpoint_url(e).build())
        }
    }
}

/// Check that the bucket answers and the credentials may use it.
pub async fn check_bucket(
    client: &aws_sdk_s3::Client,
    cfg: &S3Storage,
) -> Result<(), ConnectError> {
    let fail = |reason: String| ConnectError::Bucket {
        target: cfg.describe(),
        reason,
    };
    match client.head_bucket().bucket(&cfg.bucket).send().await {
        Ok(_) => Ok(()),
        Err(e) => Err(fail(match status(&e) {
            Some(403) => "access denied: check storage.s3.credentials (and that the key may read and write this bucket)".into(),
            Some(404) => "the bucket does not exist: create it first".into(),
            Some(400) | Some(301) => format!("refused (HTTP {}): check storage.s3.region and storage.s3.path_style", status(&e).unwrap_or(0)),
            Some(s) => format!("HTTP {s}: {}", DisplayErrorContext(&e)),
            None => format!("unreachable: {}", DisplayErrorContext(&e)),
        })),
    }
}

/// The HTTP status of a failed call, if the server answered.
pub fn status<E, R>(e: &SdkError<E, R>) -> Option<u16>
where
    R: HasStatus,
{
    e.raw_response().map(|r| r.status_code())
}

/// What [`status`] needs of a raw response.
pub trait HasStatus {
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

/// An SDK error as an `io::Error` naming the operation: `NotConnected` when
/// the store could not be reached (wharf answers 503 "storage
/// unavailable"), `Other` for an answer that was an error.
pub fn io_err<E, R>(op: &str, key: &str, e: SdkError<E, R>) -> io::Error
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + HasStatus,
{
    let unreachable = matches!(e, SdkError::DispatchFailure(_) | SdkError::TimeoutError(_))
        || status(&e).is_some_and(|s| s == 503);
    let kind = if unreachable {
        io::ErrorKind::NotConnected
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(kind, format!("S3 {op} {key}: {}", DisplayErrorContext(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(redirect_endpoint: Option<&str>) -> S3Storage {
        S3Storage {
            bucket: "wharf".into(),
            prefix: String::new(),
            region: Some("garage".into()),
            endpoint: Some("http://garage.storage.svc:3900".into()),
            path_style: true,
            credentials: None,
            part_size: crate::config::MIN_PART_SIZE,
            ca_file: None,
            replica: "a".into(),
            refresh_interval: Duration::from_secs(10),
            lease_settle: Duration::from_millis(250),
            redirect: Some(Duration::from_secs(300)),
            redirect_endpoint: redirect_endpoint.map(String::from),
            multipart_copy_threshold: 5 << 30,
        }
    }

    /// The URL a presigner of `cfg` makes for key `k` (no request is sent).
    async fn presigned(cfg: &S3Storage) -> String {
        let keys = ("GK1".to_string(), SecretString::new("secret"));
        let c = client(cfg, Some(keys)).await.unwrap();
        let p =
            aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(300)).unwrap();
        let req = presigner(&c, cfg)
            .get_object()
            .bucket("wharf")
            .key("blobs/sha256/ab/abcd")
            .presigned(p)
            .await
            .unwrap();
        req.uri().to_string()
    }

    #[tokio::test]
    async fn presigned_urls_name_the_redirect_endpoint() {
        let inside = presigned(&settings(None)).await;
        assert!(
            inside.starts_with("http://garage.storage.svc:3900/wharf/blobs/sha256/ab/abcd?"),
            "{inside}"
        );
        let public = presigned(&settings(Some("https://s3.example.com"))).await;
        assert!(
            public.starts_with("https://s3.example.com/wharf/blobs/sha256/ab/abcd?"),
            "{public}"
        );
        assert!(public.contains("X-Amz-Signature="), "{public}");
        // The host is signed: the two signatures differ.
        let sig = |u: &str| u.split("X-Amz-Signature=").nth(1).map(String::from);
        assert_ne!(sig(&inside), sig(&public));
    }
}
