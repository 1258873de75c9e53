//! A minimal S3 client for tests: path-style requests signed with AWS
//! Signature Version 4 by the `aws-sigv4` crate, sent with a blocking
//! reqwest client.
//!
//! It is deliberately thin (one generic [`S3::request`] plus a few
//! shorthands) so tests can send exactly the headers and query parameters
//! they want to probe (conditional headers, ranges, multipart calls...) and
//! see the raw status, headers and body, errors included.
//!
//! ```ignore
//! let s3 = S3::new("http://127.0.0.1:3900", "garage", "bucket", "GK...", "secret");
//! assert_eq!(s3.put("a/b", b"hi").status, 200);
//! assert_eq!(s3.get("a/b").body, b"hi");
//! let keys = xml_values(&s3.list(&[("prefix", "a/")]).text(), "Key");
//! ```

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
    SignatureLocation, SigningSettings, UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;

/// Where and as whom to send S3 requests (path-style addressing:
/// `{endpoint}/{bucket}/{key}`).
#[derive(Clone)]
pub struct S3 {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_key: String,
    /// How many times [`S3::request`] sends a request again after a 503
    /// (0 unless set with [`S3::with_retries`]).
    pub retries_503: u32,
    client: reqwest::blocking::Client,
}

/// A whole S3 response (body read to the end).
#[derive(Debug)]
pub struct S3Response {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl S3Response {
    /// The body as (lossy) UTF-8, e.g. an XML listing or error.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header as a string, if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// The `ETag` header (with its quotes, as sent).
    pub fn etag(&self) -> String {
        self.header("etag")
            .unwrap_or_else(|| panic!("no ETag in {} response: {}", self.status, self.text()))
    }
}

/// Percent-encode everything but RFC 3986 unreserved characters (and `/`
/// when `keep_slash`), the encoding SigV4 expects for S3 paths and query
/// strings.
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The text of every `<tag>...</tag>` element in `xml`, in document order
/// (no nesting or attributes: enough for S3 listings and errors).
pub fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        rest = &rest[i + open.len()..];
        let Some(j) = rest.find(&close) else { break };
        out.push(xml_unescape(&rest[..j]));
        rest = &rest[j + close.len()..];
    }
    out
}

/// The first `<tag>` value in `xml`, if any.
pub fn xml_value(xml: &str, tag: &str) -> Option<String> {
    xml_values(xml, tag).into_iter().next()
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

impl S3 {
    pub fn new(
        endpoint: &str,
        region: &str,
        bucket: &str,
        access_key_id: &str,
        secret_key: &str,
    ) -> S3 {
        S3 {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            region: region.to_string(),
            bucket: bucket.to_string(),
            access_key_id: access_key_id.to_string(),
            secret_key: secret_key.to_string(),
            retries_503: 0,
            client: reqwest::blocking::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
        }
    }

    /// The same credentials and bucket against another endpoint (another
    /// node of the cluster).
    pub fn with_endpoint(&self, endpoint: &str) -> S3 {
        S3 {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            ..self.clone()
        }
    }

    /// The same client, sending a request up to `n` more times when it gets
    /// 503 Service Unavailable (as the AWS SDKs' standard retry mode does),
    /// after 100 ms, 200 ms... Each retry is reported on stderr.
    pub fn with_retries(&self, n: u32) -> S3 {
        S3 {
            retries_503: n,
            ..self.clone()
        }
    }

    /// Unsigned URL of `key` in the bucket (`key` empty: the bucket itself),
    /// with `query` appended (encoded, in the given order).
    pub fn url(&self, key: &str, query: &[(&str, &str)]) -> String {
        let mut url = format!("{}/{}", self.endpoint, uri_encode(&self.bucket, false));
        if !key.is_empty() {
            url.push('/');
            url.push_str(&uri_encode(key, true));
        }
        if !query.is_empty() {
            let q: Vec<String> = query
                .iter()
                .map(|(k, v)| format!("{}={}", uri_encode(k, false), uri_encode(v, false)))
                .collect();
            url.push('?');
            url.push_str(&q.join("&"));
        }
        url
    }

    fn settings(location: SignatureLocation, expires_in: Option<Duration>) -> SigningSettings {
        let mut s = SigningSettings::default();
        // S3 signs the path as sent (no double encoding, no `..` folding)
        // and wants x-amz-content-sha256 on every header-signed request.
        s.percent_encoding_mode = PercentEncodingMode::Single;
        s.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        s.payload_checksum_kind = match location {
            SignatureLocation::Headers => PayloadChecksumKind::XAmzSha256,
            _ => PayloadChecksumKind::NoHeader,
        };
        s.signature_location = location;
        s.expires_in = expires_in;
        s
    }

    /// Sign `method url` with `headers` and `body`; returns the headers to
    /// add (`location` = headers) or the signed URL (`location` = query).
    fn sign(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: SignableBody<'_>,
        settings: SigningSettings,
    ) -> http::Request<()> {
        let identity = Credentials::new(
            &self.access_key_id,
            &self.secret_key,
            None,
            None,
            "wharf-tests",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .expect("signing params")
            .into();
        let signable = SignableRequest::new(method, url, headers.iter().copied(), body)
            .expect("signable request");
        let (instructions, _signature) = sign(signable, &params).expect("sign").into_parts();
        let mut req = http::Request::builder()
            .method(method)
            .uri(url)
            .body(())
            .expect("request");
        instructions.apply_to_request_http1x(&mut req);
        req
    }

    /// Send one signed request: `method` on `key` (empty: the bucket) with
    /// `query` parameters, extra `headers` (signed too) and `body` (its
    /// SHA-256 goes into `x-amz-content-sha256`). Transport errors panic;
    /// S3 errors come back as a response (503s after `retries_503` retries).
    pub fn request(
        &self,
        method: &str,
        key: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> S3Response {
        let mut attempt = 0;
        loop {
            let r = self.request_once(method, key, query, headers, body);
            if r.status != 503 || attempt >= self.retries_503 {
                return r;
            }
            attempt += 1;
            eprintln!(
                "S3 {method} /{}/{key} got 503, retry {attempt}: {}",
                self.bucket,
                r.text()
            );
            std::thread::sleep(Duration::from_millis(100 << (attempt - 1)));
        }
    }

    fn request_once(
        &self,
        method: &str,
        key: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> S3Response {
        let url = self.url(key, query);
        let signed = self.sign(
            method,
            &url,
            headers,
            SignableBody::Bytes(body),
            S3::settings(SignatureLocation::Headers, None),
        );
        let mut rb = self.client.request(method.parse().expect("method"), &url);
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        for (k, v) in signed.headers() {
            rb = rb.header(k, v);
        }
        let resp = rb
            .body(body.to_vec())
            .send()
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .unwrap_or_else(|e| panic!("{method} {url}: reading body: {e}"))
            .to_vec();
        S3Response {
            status,
            headers,
            body,
        }
    }

    /// A presigned URL (signature in the query string, `UNSIGNED-PAYLOAD`)
    /// for `method` on `key`, valid for `expires_in`.
    pub fn presign(&self, method: &str, key: &str, expires_in: Duration) -> String {
        let url = self.url(key, &[]);
        let signed = self.sign(
            method,
            &url,
            &[],
            SignableBody::UnsignedPayload,
            S3::settings(SignatureLocation::QueryParams, Some(expires_in)),
        );
        let uri = signed.uri();
        format!(
            "{}{}",
            self.endpoint,
            uri.path_and_query().expect("signed URL has a path")
        )
    }

    /// Plain (unsigned) GET of `url`, e.g. a presigned one.
    pub fn get_url(&self, url: &str, headers: &[(&str, &str)]) -> S3Response {
        let mut rb = self.client.get(url);
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        let resp = rb.send().unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().expect("read body").to_vec();
        S3Response {
            status,
            headers,
            body,
        }
    }

    /// PutObject.
    pub fn put(&self, key: &str, body: &[u8]) -> S3Response {
        self.request("PUT", key, &[], &[], body)
    }

    /// GetObject.
    pub fn get(&self, key: &str) -> S3Response {
        self.request("GET", key, &[], &[], b"")
    }

    /// HeadObject.
    pub fn head(&self, key: &str) -> S3Response {
        self.request("HEAD", key, &[], &[], b"")
    }

    /// DeleteObject.
    pub fn delete(&self, key: &str) -> S3Response {
        self.request("DELETE", key, &[], &[], b"")
    }

    /// ListObjectsV2 with extra `query` parameters (`prefix`, `delimiter`,
    /// `max-keys`, `start-after`, `continuation-token`).
    pub fn list(&self, query: &[(&str, &str)]) -> S3Response {
        let mut q = vec![("list-type", "2")];
        q.extend_from_slice(query);
        self.request("GET", "", &q, &[], b"")
    }

    /// The keys of one ListObjectsV2 page (panics unless 200).
    pub fn list_keys(&self, query: &[(&str, &str)]) -> Vec<String> {
        let r = self.list(query);
        assert_eq!(r.status, 200, "ListObjectsV2 {query:?}: {}", r.text());
        xml_values(&r.text(), "Key")
    }
}
