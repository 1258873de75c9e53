//! HTTP conformance: client errors. Bad names, traversal attempts (raw on
//! the socket, since HTTP client libraries normalize `..` and `%2e%2e`),
//! malformed references, methods an endpoint does not have, oversized
//! manifests, bad `Content-Range`, bad query parameters. Every one must be a
//! 4xx with an OCI JSON body, never a 500, and must not touch anything
//! outside the data directory.
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::*;

const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// A response read off the wire.
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Send `method target` exactly as given (no normalization) and read the
/// whole response (`Connection: close`).
fn raw(w: &Wharf, method: &str, target: &str, body: &[u8]) -> Raw {
    let mut s = TcpStream::connect(w.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        w.host(),
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let split = buf
        .windows(4)
        .position(|x| x == b"\r\n\r\n")
        .expect("no header end");
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = buf[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Raw {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|x| x == b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&b[..eol])
                .split(';')
                .next()
                .unwrap()
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
    out
}

/// Assert an OCI error on a raw response.
fn raw_error(r: &Raw, status: u16, code: &str) {
    check_oci_error(r.status, r.header("content-type"), &r.body, status, code);
}

/// A 4xx with an OCI JSON body (any code).
fn client_error(r: &Raw, what: &str) {
    assert!(
        (400..500).contains(&r.status),
        "{what}: status {} body {}",
        r.status,
        r.text()
    );
    let v: serde_json::Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|_| panic!("{what}: body is not JSON: {}", r.text()));
    assert!(v["errors"][0]["code"].is_string(), "{what}: {v}");
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("application/json"),
        "{what}"
    );
}

/// The store must not have grown anything outside `repos/<valid names>`:
/// no file anywhere named like a traversal target.
fn nothing_escaped(w: &Wharf) {
    let parent = w.data_dir.parent().unwrap();
    for e in std::fs::read_dir(parent).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        assert!(
            n == "data" || n.starts_with("wharf-") || n.starts_with("config-"),
            "unexpected file next to the data dir: {n}"
        );
    }
}

#[test]
fn bad_repository_names() {
    let w = Wharf::start_registry_only();
    let long = "a".repeat(256);
    let cases = [
        "/v2/UPPER/tags/list".to_string(),
        "/v2/a//b/tags/list".to_string(),
        "/v2/-a/tags/list".to_string(),
        "/v2/a-/tags/list".to_string(),
        "/v2/a..b/tags/list".to_string(),
        "/v2/a___b/tags/list".to_string(),
        "/v2/a/_layers/tags/list".to_string(),
        "/v2/a/.hidden/tags/list".to_string(),
        "/v2/sp%20ace/tags/list".to_string(),
        format!("/v2/{long}/tags/list"),
        "/v2/UPPER/manifests/latest".to_string(),
        format!("/v2/UPPER/blobs/{D}"),
        "/v2/UPPER/blobs/uploads/".to_string(),
        format!("/v2/UPPER/referrers/{D}"),
    ];
    for p in &cases {
        let r = raw(&w, "GET", p, b"");
        raw_error(&r, 400, "NAME_INVALID");
    }
    let r = raw(&w, "POST", "/v2/UPPER/blobs/uploads/", b"");
    raw_error(&r, 400, "NAME_INVALID");
    let r = raw(&w, "PUT", "/v2/Bad/manifests/v1", b"{}");
    raw_error(&r, 400, "NAME_INVALID");
    // The cross-repo mount source is validated too.
    let r = raw(
        &w,
        "POST",
        &format!("/v2/ok/blobs/uploads/?mount={D}&from=Bad..Name"),
        b"",
    );
    raw_error(&r, 400, "NAME_INVALID");
    // A valid name of 255 characters is fine.
    let name = format!("{}/{}", "a".repeat(127), "b".repeat(127));
    let r = raw(&w, "GET", &format!("/v2/{name}/tags/list"), b"");
    raw_error(&r, 404, "NAME_UNKNOWN");
}

#[test]
fn traversal_attempts_are_refused() {
    let w = Wharf::start();
    push_image(&w, "victim", "v1", 1);
    let manifest = image_manifest(
        MT_OCI_MANIFEST,
        descriptor(MT_OCI_CONFIG, D, 0),
        vec![],
        serde_json::json!({}),
    );
    let targets = [
        "/v2/../manifests/latest",
        "/v2/../../etc/manifests/latest",
        "/v2/a/../victim/manifests/v1",
        "/v2/victim/../../../tmp/manifests/v1",
        "/v2/%2e%2e/manifests/latest",
        "/v2/%2E%2E/%2e%2e/etc/manifests/latest",
        "/v2/a/%2e%2e/victim/manifests/v1",
        "/v2/.%2e/manifests/latest",
        "/v2/a%2Fb/manifests/latest",
        "/v2/a%2fb/tags/list",
        "/v2/..%2F..%2Fetc/tags/list",
        "/v2/%2e%2e%2f%2e%2e%2fetc/tags/list",
        "/v2/a%5C..%5Cb/tags/list",
        "/v2/a\\..\\b/tags/list",
        "/v2/a/%00/tags/list",
        "/v2/./victim/manifests/v1",
        "/v2/victim/./manifests/v1",
    ];
    for t in targets {
        for m in ["GET", "HEAD", "PUT", "DELETE"] {
            let body: &[u8] = if m == "PUT" { &manifest } else { b"" };
            let r = raw(&w, m, t, body);
            if m == "HEAD" {
                assert!((400..500).contains(&r.status), "HEAD {t}: {}", r.status);
            } else {
                client_error(&r, &format!("{m} {t}"));
            }
        }
    }
    // Traversal in the tag or digest position.
    for t in [
        "/v2/victim/manifests/..",
        "/v2/victim/manifests/%2e%2e",
        "/v2/victim/manifests/..%2F..%2Fv1",
        "/v2/victim/manifests/sha256:..%2F..%2Fetc",
        "/v2/victim/blobs/sha256:..",
        "/v2/victim/blobs/..%2Fsha256",
        "/v2/victim/blobs/uploads/..%2F..%2Fx",
        "/v2/victim/referrers/..",
    ] {
        for m in ["GET", "PUT", "DELETE", "PATCH"] {
            let r = raw(&w, m, t, b"x");
            client_error(&r, &format!("{m} {t}"));
        }
    }
    // Upload ids are UUIDs, nothing else.
    let r = raw(&w, "PATCH", "/v2/victim/blobs/uploads/..", b"x");
    client_error(&r, "PATCH uploads/..");
    let r = raw(
        &w,
        "PUT",
        &format!("/v2/victim/blobs/uploads/%2e%2e%2f%2e%2e?digest={D}"),
        b"",
    );
    client_error(&r, "PUT encoded traversal upload id");
    // The victim is untouched and nothing was written outside the store.
    let r = http()
        .get(format!("{}/v2/victim/manifests/v1", w.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    nothing_escaped(&w);
    let v: serde_json::Value = http()
        .get(format!("{}/v2/_catalog", w.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["repositories"], serde_json::json!(["victim"]));
}

#[test]
fn malformed_references() {
    let w = Wharf::start();
    push_image(&w, "r", "v1", 2);
    let long_tag = "t".repeat(129);
    let digest_cases = [
        "sha256:totallywrong",
        "sha256:",
        "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555",
        "sha512:abc",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        ":abc",
        "sha256:zzb0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ];
    for d in digest_cases {
        // Reading a reference that is no digest is "not found" (as
        // Distribution and zot answer, and the conformance suite expects);
        // writing one is a grammar error.
        for m in ["GET", "HEAD", "DELETE", "PUT"] {
            let r = raw(&w, m, &format!("/v2/r/manifests/{d}"), b"{}");
            match m {
                "HEAD" => assert_eq!(r.status, 404, "HEAD manifests/{d}"),
                "GET" => raw_error(&r, 404, "MANIFEST_UNKNOWN"),
                _ => raw_error(&r, 400, "DIGEST_INVALID"),
            }
        }
        for m in ["GET", "DELETE"] {
            raw_error(
                &raw(&w, m, &format!("/v2/r/blobs/{d}"), b""),
                400,
                "DIGEST_INVALID",
            );
        }
        raw_error(
            &raw(&w, "GET", &format!("/v2/r/referrers/{d}"), b""),
            400,
            "DIGEST_INVALID",
        );
        // As query parameters.
        raw_error(
            &raw(
                &w,
                "POST",
                &format!("/v2/r/blobs/uploads/?digest={d}"),
                b"x",
            ),
            400,
            "DIGEST_INVALID",
        );
        raw_error(
            &raw(
                &w,
                "POST",
                &format!("/v2/r/blobs/uploads/?mount={d}&from=r"),
                b"",
            ),
            400,
            "DIGEST_INVALID",
        );
    }
    for t in [".bad", "-bad", long_tag.as_str(), "a+b", "a%20b", "tag!"] {
        raw_error(
            &raw(&w, "GET", &format!("/v2/r/manifests/{t}"), b""),
            404,
            "MANIFEST_UNKNOWN",
        );
        assert_eq!(
            raw(&w, "HEAD", &format!("/v2/r/manifests/{t}"), b"").status,
            404,
            "HEAD manifests/{t}"
        );
        raw_error(
            &raw(&w, "PUT", &format!("/v2/r/manifests/{t}"), b"{}"),
            400,
            "TAG_INVALID",
        );
    }
    // A tag of exactly 128 characters is valid (and unknown).
    let t128 = format!("_{}", "x".repeat(127));
    raw_error(
        &raw(&w, "GET", &format!("/v2/r/manifests/{t128}"), b""),
        404,
        "MANIFEST_UNKNOWN",
    );
}

#[test]
fn methods_an_endpoint_does_not_have() {
    let w = Wharf::start();
    let id = "0b1e3f5c-2f43-4e0b-9a55-3d0ab1a9f3a1";
    let cases = [
        ("POST", "/v2/".to_string()),
        ("DELETE", "/v2/".to_string()),
        ("PUT", "/v2/_catalog".to_string()),
        ("DELETE", "/v2/_catalog".to_string()),
        ("POST", "/v2/r/tags/list".to_string()),
        ("DELETE", "/v2/r/tags/list".to_string()),
        ("POST", "/v2/r/manifests/v1".to_string()),
        ("PATCH", "/v2/r/manifests/v1".to_string()),
        ("POST", format!("/v2/r/blobs/{D}")),
        ("PUT", format!("/v2/r/blobs/{D}")),
        ("PATCH", format!("/v2/r/blobs/{D}")),
        ("GET", "/v2/r/blobs/uploads/".to_string()),
        ("PUT", "/v2/r/blobs/uploads/".to_string()),
        ("DELETE", "/v2/r/blobs/uploads/".to_string()),
        ("POST", format!("/v2/r/blobs/uploads/{id}")),
        ("PUT", format!("/v2/r/referrers/{D}")),
        ("DELETE", format!("/v2/r/referrers/{D}")),
        ("OPTIONS", "/v2/r/manifests/v1".to_string()),
        ("TRACE", "/v2/".to_string()),
        ("BREW", "/v2/r/manifests/v1".to_string()),
    ];
    for (m, p) in &cases {
        let r = raw(&w, m, p, b"");
        raw_error(&r, 405, "UNSUPPORTED");
    }
    // Paths that are no endpoint at all.
    for p in [
        "/v1/",
        "/v3/r/tags/list",
        "/v2/r",
        "/v2/r/other/x",
        "/v2/r/tags",
        "/v2/manifests/latest",
        "/favicon.ico",
    ] {
        let r = raw(&w, "GET", p, b"");
        assert_eq!(r.status, 404, "{p}: {}", r.text());
        client_error(&r, p);
    }
    // The root is the dashboard's front door.
    let r = raw(&w, "GET", "/", b"");
    assert_eq!(r.status, 303, "{}", r.text());
}

#[test]
fn oversized_manifest() {
    let w = Wharf::start();
    let cfg = b"{}".to_vec();
    let c = push_blob(&w, "big", &cfg);
    let pad = "x".repeat(5 * 1024 * 1024);
    let m = image_manifest(
        MT_OCI_MANIFEST,
        descriptor(MT_OCI_CONFIG, &c, cfg.len()),
        vec![],
        serde_json::json!({"annotations": {"pad": pad}}),
    );
    let r = put_manifest(&w, "big", "huge", MT_OCI_MANIFEST, &m);
    let status = r.status().as_u16();
    assert_eq!(status, 413);
    assert_oci_error(r, 413, "SIZE_INVALID");
    assert_oci_error(
        http()
            .get(format!("{}/v2/big/manifests/huge", w.url()))
            .send()
            .unwrap(),
        404,
        "MANIFEST_UNKNOWN",
    );
    // Just under the default 4 MiB limit is accepted.
    let pad = "x".repeat(4 * 1024 * 1024 - 2000);
    let m = image_manifest(
        MT_OCI_MANIFEST,
        descriptor(MT_OCI_CONFIG, &c, cfg.len()),
        vec![],
        serde_json::json!({"annotations": {"pad": pad}}),
    );
    assert!(m.len() < 4 * 1024 * 1024);
    assert_eq!(
        put_manifest(&w, "big", "large", MT_OCI_MANIFEST, &m).status(),
        201
    );
}

#[test]
fn bad_content_range() {
    let w = Wharf::start();
    let r = http()
        .post(format!("{}/v2/cr/blobs/uploads/", w.url()))
        .send()
        .unwrap();
    let loc = abs_url(&w, &header(&r, "location"));
    let first = http()
        .patch(&loc)
        .header("content-range", "0-9")
        .body(vec![1u8; 10])
        .send()
        .unwrap();
    assert_eq!(first.status(), 202);
    for bad in [
        "garbage",
        "10",
        "10-",
        "-19",
        "a-b",
        "19-10",
        "10-19-20",
        "bytes=x-y",
        "99999999999999999999-1",
    ] {
        let r = http()
            .patch(&loc)
            .header("content-range", bad)
            .body(vec![2u8; 10])
            .send()
            .unwrap();
        let st = r.status().as_u16();
        assert!(st == 400 || st == 416, "Content-Range {bad:?}: {st}");
        assert_oci_error(r, st, "BLOB_UPLOAD_INVALID");
    }
    // Content-Range that disagrees with the body's length.
    let r = http()
        .patch(&loc)
        .header("content-range", "10-29")
        .body(vec![2u8; 10])
        .send()
        .unwrap();
    let st = r.status().as_u16();
    assert!(st == 400 || st == 416, "length mismatch: {st}");
    // None of these changed the session.
    let r = http().get(&loc).send().unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "range"), "0-9");
    // The same checks on the final PUT.
    let mut body = vec![1u8; 10];
    body.extend_from_slice(&[3u8; 5]);
    let d = sha256(&body);
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = http()
        .put(format!("{loc}{sep}digest={d}"))
        .header("content-range", "nonsense")
        .body(vec![3u8; 5])
        .send()
        .unwrap();
    let st = r.status().as_u16();
    assert!(st == 400 || st == 416, "PUT with bad Content-Range: {st}");
    let r = http()
        .put(format!("{loc}{sep}digest={d}"))
        .header("content-range", "10-14")
        .body(vec![3u8; 5])
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text());
}

#[test]
fn bad_query_parameters() {
    let w = Wharf::start();
    push_image(&w, "q", "v1", 3);
    for q in ["n=-1", "n=abc", "n=1.5", "n=99999999999999999999999"] {
        let r = raw(&w, "GET", &format!("/v2/q/tags/list?{q}"), b"");
        assert_eq!(r.status, 400, "{q}: {}", r.text());
        client_error(&r, q);
        let r = raw(&w, "GET", &format!("/v2/_catalog?{q}"), b"");
        assert_eq!(r.status, 400, "catalog {q}");
        client_error(&r, q);
    }
    // Huge n is clamped, not an error.
    let r = raw(&w, "GET", "/v2/q/tags/list?n=1000000", b"");
    assert_eq!(r.status, 200, "{}", r.text());
    // A PUT to an upload without digest.
    let r = http()
        .post(format!("{}/v2/q/blobs/uploads/", w.url()))
        .send()
        .unwrap();
    let loc = abs_url(&w, &header(&r, "location"));
    assert_oci_error(http().put(&loc).send().unwrap(), 400, "DIGEST_INVALID");
    assert_oci_error(
        http().put(format!("{loc}?digest=")).send().unwrap(),
        400,
        "DIGEST_INVALID",
    );
}

/// Whatever arrives, the answer is never a 5xx and always OCI JSON on
/// errors.
#[test]
fn never_a_server_error() {
    // No remotes: with the default Docker Hub remote and no network, reads
    // of never-pushed repositories rightly answer 503.
    let w = Wharf::start_registry_only();
    push_image(&w, "n", "v1", 4);
    let healthy = push_image(&w, "healthy", "v1", 6);
    let names = [
        "n", "N", "..", "%2e%2e", "a%2Fb", "a/b/c/d", "x", "_", "", "%00", "a%ffb", "\u{e9}",
    ];
    let tails = [
        "manifests/v1".to_string(),
        "manifests/sha256:totallywrong".to_string(),
        format!("manifests/{D}"),
        format!("blobs/{D}"),
        "blobs/sha256:totallywrong".to_string(),
        "blobs/uploads/".to_string(),
        "blobs/uploads/not-a-uuid".to_string(),
        "blobs/uploads/0b1e3f5c-2f43-4e0b-9a55-3d0ab1a9f3a1".to_string(),
        "tags/list".to_string(),
        "tags/list?n=x&last=%ff".to_string(),
        format!("referrers/{D}?artifactType=%ff%fe"),
        "referrers/sha256:totallywrong".to_string(),
    ];
    for n in names {
        for t in &tails {
            let path = if n.is_empty() {
                format!("/v2/{t}")
            } else {
                format!("/v2/{n}/{t}")
            };
            for m in ["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE"] {
                let r = raw(&w, m, &path, b"garbage");
                assert!(r.status < 500, "{m} {path}: {} {}", r.status, r.text());
                if r.status >= 400 && m != "HEAD" && !r.body.is_empty() {
                    client_error(&r, &format!("{m} {path}"));
                }
            }
        }
    }
    nothing_escaped(&w);
    // Still healthy, and repositories not addressed are untouched.
    let r = http()
        .get(format!("{}/v2/healthy/manifests/v1", w.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().as_ref(), healthy.bytes.as_slice());
}

/// A valid local name of the maximum length (255) works with the default
/// config too: the default remote's cache name for it may be too long, but
/// that must not make the local repository unusable.
#[test]
fn longest_local_name_with_default_remote() {
    let w = Wharf::start();
    let name = format!("{}/{}", "a".repeat(127), "b".repeat(127));
    assert_eq!(name.len(), 255);
    let img = push_image(&w, &name, "v1", 5);
    let r = http()
        .get(format!("{}/v2/{name}/manifests/v1", w.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text());
    assert_eq!(header(&r, "docker-content-digest"), img.digest);
    let r = http()
        .get(format!("{}/v2/{name}/tags/list", w.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// A chunk whose body ends before its Content-Length is rolled back: the
/// session keeps exactly what it had.
#[test]
fn truncated_chunk_is_rolled_back() {
    let w = Wharf::start();
    let r = http()
        .post(format!("{}/v2/trunc/blobs/uploads/", w.url()))
        .send()
        .unwrap();
    let loc = header(&r, "location");
    let full = abs_url(&w, &loc);
    assert_eq!(
        http()
            .patch(&full)
            .header("content-range", "0-3")
            .body("abcd")
            .send()
            .unwrap()
            .status(),
        202
    );
    let mut s = TcpStream::connect(w.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let path = loc.strip_prefix(&w.url()).unwrap_or(&loc).to_string();
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\nContent-Range: 4-13\r\nContent-Length: 10\r\n\r\nefgh",
        w.host()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert!(!text.starts_with("HTTP/1.1 5"), "{text}");
    assert!(!text.starts_with("HTTP/1.1 202"), "{text}");
    // Give the server a moment to finish the rollback.
    let mut range = String::new();
    for _ in 0..50 {
        let r = http().get(&full).send().unwrap();
        assert_eq!(r.status(), 204);
        range = header(&r, "range");
        if range == "0-3" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(range, "0-3", "the cut chunk must not be kept");
    let d = sha256(b"abcdefghij");
    let sep = if full.contains('?') { '&' } else { '?' };
    let r = http()
        .put(format!("{full}{sep}digest={d}"))
        .header("content-range", "4-9")
        .body("efghij")
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text());
    let r = http()
        .get(format!("{}/v2/trunc/blobs/{d}", w.url()))
        .send()
        .unwrap();
    assert_eq!(r.bytes().unwrap().as_ref(), b"abcdefghij");
}
