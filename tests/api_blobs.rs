//! HTTP conformance: `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`, with
//! `Range`, and content-addressed deduplication on disk.
mod support;

use support::disk::*;

use support::*;

fn blob_url(w: &Wharf, repo: &str, d: &str) -> String {
    format!("{}/v2/{repo}/blobs/{d}", w.url())
}

fn get_range(w: &Wharf, repo: &str, d: &str, range: &str) -> reqwest::blocking::Response {
    http()
        .get(blob_url(w, repo, d))
        .header("range", range)
        .send()
        .unwrap()
}

#[test]
fn get_and_head_blob() {
    let w = Wharf::start();
    let bytes = data(1, 100_000);
    let d = push_blob(&w, "team/app", &bytes);
    let r = http().get(blob_url(&w, "team/app", &d)).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "docker-content-digest"), d);
    assert_eq!(header(&r, "content-length"), bytes.len().to_string());
    assert_eq!(
        header(&r, "docker-distribution-api-version"),
        "registry/2.0"
    );
    assert!(r.headers().get("content-type").is_some());
    assert_eq!(r.bytes().unwrap().as_ref(), bytes.as_slice());

    let r = http().head(blob_url(&w, "team/app", &d)).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "docker-content-digest"), d);
    assert_eq!(header(&r, "content-length"), bytes.len().to_string());
    assert!(r.bytes().unwrap().is_empty());
}

#[test]
fn empty_blob() {
    let w = Wharf::start();
    let d = push_blob(&w, "e", b"");
    assert_eq!(
        d,
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let r = http().get(blob_url(&w, "e", &d)).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length"), "0");
    assert!(r.bytes().unwrap().is_empty());
    // Any range of an empty blob is unsatisfiable.
    let r = get_range(&w, "e", &d, "bytes=0-0");
    assert_eq!(r.status(), 416);
}

#[test]
fn range_requests() {
    let w = Wharf::start();
    let bytes = data(2, 10_000);
    let len = bytes.len();
    let d = push_blob(&w, "rng", &bytes);

    let cases: [(&str, usize, usize); 6] = [
        ("bytes=0-9", 0, 9),
        ("bytes=100-199", 100, 199),
        ("bytes=9990-", 9990, len - 1),
        ("bytes=-25", len - 25, len - 1),
        ("bytes=9999-9999", 9999, 9999),
        // An end past the blob is clamped (RFC 9110).
        ("bytes=9000-20000", 9000, len - 1),
    ];
    for (range, start, end) in cases {
        let r = get_range(&w, "rng", &d, range);
        assert_eq!(r.status(), 206, "{range}");
        assert_eq!(
            header(&r, "content-range"),
            format!("bytes {start}-{end}/{len}"),
            "{range}"
        );
        assert_eq!(
            header(&r, "content-length"),
            (end - start + 1).to_string(),
            "{range}"
        );
        assert_eq!(header(&r, "docker-content-digest"), d);
        assert_eq!(r.bytes().unwrap().as_ref(), &bytes[start..=end], "{range}");
    }
    // HEAD with a range: same headers, no body.
    let r = http()
        .head(blob_url(&w, "rng", &d))
        .header("range", "bytes=10-19")
        .send()
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(header(&r, "content-range"), format!("bytes 10-19/{len}"));
    assert_eq!(header(&r, "content-length"), "10");

    // Unsatisfiable ranges: 416 with `Content-Range: bytes */len`.
    for range in [
        "bytes=10000-",
        "bytes=20000-20010",
        "bytes=50-10",
        "bytes=-0",
        "bytes=abc-def",
    ] {
        let r = get_range(&w, "rng", &d, range);
        assert_eq!(r.status(), 416, "{range}");
        assert_eq!(
            header(&r, "content-range"),
            format!("bytes */{len}"),
            "{range}"
        );
        let ct = header(&r, "content-type");
        let status = r.status().as_u16();
        let body = r.bytes().unwrap();
        assert!(ct.starts_with("application/json"));
        let v: serde_json::Value = serde_json::from_slice(&body).expect("416 body is OCI JSON");
        assert!(v["errors"][0]["code"].is_string(), "{v}");
        assert_eq!(status, 416);
    }
}

#[test]
fn unknown_blobs() {
    let w = Wharf::start();
    let d = push_blob(&w, "has", b"content");
    let absent = sha256(b"absent");
    assert_oci_error(
        http().get(blob_url(&w, "has", &absent)).send().unwrap(),
        404,
        "BLOB_UNKNOWN",
    );
    let r = http().head(blob_url(&w, "has", &absent)).send().unwrap();
    assert_eq!(r.status(), 404);
    // A blob is only served through repositories that link it.
    assert_oci_error(
        http().get(blob_url(&w, "other", &d)).send().unwrap(),
        404,
        "BLOB_UNKNOWN",
    );
    assert_eq!(
        http()
            .head(blob_url(&w, "other", &d))
            .send()
            .unwrap()
            .status(),
        404
    );
}

#[test]
fn delete_blob() {
    let w = Wharf::start();
    let bytes = data(3, 5000);
    let d = push_blob(&w, "one", &bytes);
    push_blob(&w, "two", &bytes);
    let r = http().delete(blob_url(&w, "one", &d)).send().unwrap();
    assert_eq!(r.status(), 202);
    assert_oci_error(
        http().get(blob_url(&w, "one", &d)).send().unwrap(),
        404,
        "BLOB_UNKNOWN",
    );
    assert_eq!(
        http()
            .head(blob_url(&w, "one", &d))
            .send()
            .unwrap()
            .status(),
        404
    );
    // The other repository still has it.
    let r = http().get(blob_url(&w, "two", &d)).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().as_ref(), bytes.as_slice());
    // Deleting again, or something never pushed: BLOB_UNKNOWN.
    assert_oci_error(
        http().delete(blob_url(&w, "one", &d)).send().unwrap(),
        404,
        "BLOB_UNKNOWN",
    );
    let absent = sha256(b"absent");
    assert_oci_error(
        http().delete(blob_url(&w, "one", &absent)).send().unwrap(),
        404,
        "BLOB_UNKNOWN",
    );
    // It can be pushed again.
    push_blob(&w, "one", &bytes);
    assert_eq!(
        http().get(blob_url(&w, "one", &d)).send().unwrap().status(),
        200
    );
}

#[test]
fn same_blob_in_many_repos_is_stored_once() {
    let w = Wharf::start();
    let bytes = data(4, 64 * 1024);
    let d = push_blob(&w, "first/app", &bytes);
    assert_eq!(push_blob(&w, "second/app", &bytes), d);
    // And through a chunked upload in a third repository.
    let r = http()
        .post(format!("{}/v2/a/b/c/d/blobs/uploads/", w.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = abs_url(&w, &header(&r, "location"));
    let r = http()
        .patch(&loc)
        .header("content-type", "application/octet-stream")
        .body(bytes.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = abs_url(&w, &header(&r, "location"));
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = http().put(format!("{loc}{sep}digest={d}")).send().unwrap();
    assert_eq!(r.status(), 201);

    let hex = d.strip_prefix("sha256:").unwrap();
    let path = w
        .data_dir
        .join("blobs")
        .join("sha256")
        .join(&hex[..2])
        .join(hex);
    assert!(path.is_file(), "blob not at {}", path.display());
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    let copies: Vec<_> = files_under(&w.data_dir)
        .into_iter()
        .filter(|p| {
            std::fs::metadata(p)
                .map(|m| m.len() == bytes.len() as u64)
                .unwrap_or(false)
        })
        .collect();
    assert_eq!(
        copies,
        vec![path.clone()],
        "exactly one copy of the content on disk"
    );
    for repo in ["first/app", "second/app", "a/b/c/d"] {
        let r = http().get(blob_url(&w, repo, &d)).send().unwrap();
        assert_eq!(r.status(), 200, "{repo}");
        assert_eq!(r.bytes().unwrap().as_ref(), bytes.as_slice());
    }
}

#[test]
fn large_blob_roundtrip() {
    large_blob_roundtrip_with("");
}

#[test]
fn large_blob_roundtrip_with_sendfile() {
    large_blob_roundtrip_with("[server]\nsendfile = true\n");
}

fn large_blob_roundtrip_with(config: &str) {
    let w = Wharf::start_with(Options {
        config: (!config.is_empty()).then(|| config.to_string()),
        ..Options::default()
    });
    // Past two 16 MiB mapped chunks (plain HTTP/1.1 sends them with
    // sendfile when `server.sendfile` is on), with a tail that is not
    // page-aligned.
    let bytes = data(5, 32 * 1024 * 1024 + 4099);
    let d = push_blob(&w, "big", &bytes);
    let r = http().get(blob_url(&w, "big", &d)).send().unwrap();
    assert_eq!(r.status(), 200);
    let got = r.bytes().unwrap();
    assert_eq!(got.len(), bytes.len());
    assert_eq!(sha256(&got), d);
    let h2 = reqwest::blocking::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    // Small, large unaligned (across a chunk boundary) and tail ranges,
    // over HTTP/1.1 (mapped, sendfile) and h2c (read into buffers).
    let len = bytes.len();
    for (start, end) in [
        (4_194_300, 4_194_400),
        (4097, 16 * 1024 * 1024 + 70_000),
        (len - 200_000, len - 1),
    ] {
        let range = format!("bytes={start}-{end}");
        let r = get_range(&w, "big", &d, &range);
        assert_eq!(r.status(), 206);
        assert_eq!(r.bytes().unwrap().as_ref(), &bytes[start..=end], "{range}");
        let r = h2
            .get(blob_url(&w, "big", &d))
            .header("range", &range)
            .send()
            .unwrap();
        assert_eq!(
            (r.status().as_u16(), r.version()),
            (206, reqwest::Version::HTTP_2)
        );
        assert_eq!(
            r.bytes().unwrap().as_ref(),
            &bytes[start..=end],
            "h2 {range}"
        );
    }
    let r = h2.get(blob_url(&w, "big", &d)).send().unwrap();
    assert_eq!(sha256(&r.bytes().unwrap()), d);
}

#[test]
fn sha512_blob() {
    use sha2::Digest as _;
    let w = Wharf::start();
    let bytes = data(6, 4096);
    let d = format!("sha512:{}", hex::encode(sha2::Sha512::digest(&bytes)));
    let r = http()
        .post(format!("{}/v2/s512/blobs/uploads/?digest={d}", w.url()))
        .body(bytes.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text());
    let r = http().get(blob_url(&w, "s512", &d)).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "docker-content-digest"), d);
    assert_eq!(r.bytes().unwrap().as_ref(), bytes.as_slice());
    // A wrong sha512 is refused.
    let wrong = format!("sha512:{}", "0".repeat(128));
    let r = http()
        .post(format!("{}/v2/s512/blobs/uploads/?digest={wrong}", w.url()))
        .body(bytes.clone())
        .send()
        .unwrap();
    assert_oci_error(r, 400, "DIGEST_INVALID");
}
