//! A client of one scanner adapter (`[[scanners]]` entry): `GET
//! /api/v1/metadata`, `POST /api/v1/scan`, `GET /api/v1/scan/{id}/report`.
//! Redirects are not followed (a `302` is the spec's "not ready yet").

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::report::{self, Report, ReportError, REPORT_MIME};
use crate::config::Scanner;
use crate::secrets::{without_url, SecretHeaders, SecretString};

/// The scan request's media type.
const SCAN_REQUEST_MIME: &str = "application/vnd.scanner.adapter.scan.request+json; version=1.0";
/// The scan response's media type.
const SCAN_RESPONSE_MIME: &str = "application/vnd.scanner.adapter.scan.response+json; version=1.0";
/// The metadata's media type.
const METADATA_MIME: &str = "application/vnd.scanner.adapter.metadata+json; version=1.0";

/// Largest answer read other than a report.
const MAX_SMALL: usize = 1 << 20;

/// Why talking to the adapter failed. Messages name the adapter's answer,
/// never a header value or the pull credential.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AdapterError {
    #[error("scanner {scanner} is unreachable: {detail}")]
    Unreachable { scanner: String, detail: String },
    #[error("scanner {scanner} answered {status}: {message}")]
    Status {
        scanner: String,
        status: u16,
        message: String,
    },
    #[error("scanner {scanner}: {0}", scanner = .1)]
    Report(ReportError, String),
    #[error("scanner {scanner}: {detail}")]
    Protocol { scanner: String, detail: String },
}

/// What wharf asks the adapter to scan.
pub struct ScanRequest<'a> {
    /// Base URL of wharf as the adapter reaches it.
    pub registry_url: &'a str,
    /// `Bearer <token>`: pulls exactly `repository`, briefly.
    pub authorization: &'a SecretString,
    pub repository: &'a str,
    pub digest: &'a str,
    pub tag: Option<&'a str>,
    pub mime_type: &'a str,
}

/// A report fetch's outcome.
#[derive(Debug)]
pub enum Poll {
    Ready(Report),
    /// Not ready: ask again after this long (`Refresh-After`).
    Later(Duration),
}

/// The adapter's `GET /api/v1/metadata`, as far as wharf uses it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub scanner: report::ScannerInfo,
}

/// One adapter.
pub struct Adapter {
    name: String,
    base: reqwest::Url,
    http: reqwest::Client,
    secrets: SecretHeaders,
}

#[derive(Deserialize)]
struct ScanResponse {
    id: String,
}

impl Adapter {
    pub fn new(cfg: &Scanner) -> reqwest::Result<Adapter> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wharf/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let secrets = SecretHeaders::new(&format!("scanners {}", cfg.name), &cfg.secret_headers);
        Ok(Adapter {
            name: cfg.name.clone(),
            base: cfg.url.clone(),
            http,
            secrets,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.as_str().trim_end_matches('/'))
    }

    fn protocol(&self, detail: impl Into<String>) -> AdapterError {
        AdapterError::Protocol {
            scanner: self.name.clone(),
            detail: detail.into(),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, AdapterError> {
        let req = self
            .secrets
            .apply(req)
            .await
            .map_err(|e| self.protocol(e))?;
        req.send().await.map_err(|e| AdapterError::Unreachable {
            scanner: self.name.clone(),
            detail: without_url(e),
        })
    }

    async fn body(&self, resp: reqwest::Response, max: usize) -> Result<Vec<u8>, AdapterError> {
        if resp.content_length().is_some_and(|n| n > max as u64) {
            return Err(self.protocol(format!("answer larger than {max} bytes")));
        }
        let b = resp.bytes().await.map_err(|e| AdapterError::Unreachable {
            scanner: self.name.clone(),
            detail: without_url(e),
        })?;
        if b.len() > max {
            return Err(self.protocol(format!("answer larger than {max} bytes")));
        }
        Ok(b.to_vec())
    }

    /// A non-success answer as an error with the adapter's message.
    async fn refused(&self, resp: reqwest::Response) -> AdapterError {
        let status = resp.status().as_u16();
        let body = self.body(resp, MAX_SMALL).await.unwrap_or_default();
        AdapterError::Status {
            scanner: self.name.clone(),
            status,
            message: error_message(&body),
        }
    }

    /// `GET /api/v1/metadata`.
    pub async fn metadata(&self) -> Result<Metadata, AdapterError> {
        let req = self
            .http
            .get(self.url("/api/v1/metadata"))
            .header(http::header::ACCEPT, METADATA_MIME);
        let resp = self.send(req).await?;
        if !resp.status().is_success() {
            return Err(self.refused(resp).await);
        }
        let b = self.body(resp, MAX_SMALL).await?;
        serde_json::from_slice(&b).map_err(|e| self.protocol(format!("invalid metadata: {e}")))
    }

    /// `POST /api/v1/scan`: the scan request's id.
    pub async fn submit(&self, r: &ScanRequest<'_>) -> Result<String, AdapterError> {
        let body = serde_json::json!({
            "registry": {"url": r.registry_url, "authorization": r.authorization.expose()},
            "artifact": {"repository": r.repository, "digest": r.digest, "tag": r.tag, "mime_type": r.mime_type},
        });
        let req = self
            .http
            .post(self.url("/api/v1/scan"))
            .header(http::header::CONTENT_TYPE, SCAN_REQUEST_MIME)
            .header(http::header::ACCEPT, SCAN_RESPONSE_MIME)
            .body(body.to_string());
        let resp = self.send(req).await?;
        if resp.status() != http::StatusCode::ACCEPTED && !resp.status().is_success() {
            return Err(self.refused(resp).await);
        }
        let b = self.body(resp, MAX_SMALL).await?;
        let id = serde_json::from_slice::<ScanResponse>(&b)
            .map_err(|e| self.protocol(format!("invalid scan response: {e}")))?
            .id;
        let usable = |b: u8| b.is_ascii_alphanumeric() || b"-_.:".contains(&b);
        if id.is_empty() || id.len() > 256 || !id.bytes().all(usable) {
            return Err(
                self.protocol("the scan response's id is not a usable id (letters, digits, -_.:)")
            );
        }
        Ok(id)
    }

    /// `GET /api/v1/scan/{id}/report`.
    pub async fn report(&self, id: &str) -> Result<Poll, AdapterError> {
        let path = format!("/api/v1/scan/{id}/report");
        let req = self
            .http
            .get(self.url(&path))
            .header(http::header::ACCEPT, REPORT_MIME);
        let resp = self.send(req).await?;
        if resp.status() == http::StatusCode::FOUND {
            return Ok(Poll::Later(refresh_after(resp.headers())));
        }
        if !resp.status().is_success() {
            return Err(self.refused(resp).await);
        }
        let b = self.body(resp, report::MAX_REPORT).await?;
        report::parse(&b)
            .map(Poll::Ready)
            .map_err(|e| AdapterError::Report(e, self.name.clone()))
    }
}

/// `Refresh-After: <seconds>` (default 5 s when absent or not a number).
fn refresh_after(h: &http::HeaderMap) -> Duration {
    let secs = h
        .get("refresh-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(5);
    Duration::from_secs(secs)
}

/// The spec's `{"error": {"message": ...}}`, else the start of the body.
fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Wrapped {
        error: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        message: String,
    }
    let text = match serde_json::from_slice::<Wrapped>(body) {
        Ok(w) => w.error.message,
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    let text: String = text.chars().filter(|c| !c.is_control()).take(300).collect();
    if text.trim().is_empty() {
        "(no message)".into()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_after_and_error_messages() {
        let mut h = http::HeaderMap::new();
        assert_eq!(refresh_after(&h), Duration::from_secs(5));
        h.insert("refresh-after", "1".parse().unwrap());
        assert_eq!(refresh_after(&h), Duration::from_secs(1));
        h.insert("refresh-after", "soon".parse().unwrap());
        assert_eq!(refresh_after(&h), Duration::from_secs(5));
        assert_eq!(
            error_message(br#"{"error":{"message":"unsupported mime type"}}"#),
            "unsupported mime type"
        );
        assert_eq!(error_message(b"plain\ntext"), "plaintext");
        assert_eq!(error_message(b""), "(no message)");
    }
}
