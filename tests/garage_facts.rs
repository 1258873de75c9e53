//! Facts about Garage's S3 API that wharf's S3 storage backend relies on,
//! checked against the real server (see `support::garage`). Each test
//! prints the requests it sends and the responses it gets (run with
//! `--no-capture` to read them) and pins the observed behaviour, so a
//! Garage upgrade that changes it fails here first.
//!
//! Without a garage binary every test prints
//! `SKIPPED: no garage binary (tests/run.sh installs it)` and passes.
mod support;

use std::path::Path;

use base64::Engine as _;
use sha2::Digest as _;
use std::time::{Duration, Instant};

use support::garage::Garage;
use support::s3::{xml_value, xml_values, S3Response, S3};

const MIB: usize = 1024 * 1024;

/// A client for node `i` that retries 503s: with `db_engine = "sqlite"`,
/// Garage sometimes answers a transient 503 "Sqlite: database is locked"
/// on a loaded machine (seen once on a 100 MiB CopyObject), and the AWS
/// SDK retries those too.
fn s3_of(g: &Garage, i: usize) -> S3 {
    g.s3(i).with_retries(3)
}

/// Print a response for the record: status, the interesting headers and
/// the start of the body.
fn show(request: &str, r: &S3Response) {
    let mut hdrs = Vec::new();
    for h in [
        "etag",
        "content-length",
        "content-range",
        "x-amz-checksum-crc32",
        "x-amz-checksum-type",
    ] {
        if let Some(v) = r.header(h) {
            hdrs.push(format!("{h}: {v}"));
        }
    }
    let body = if r.body.iter().all(|b| b.is_ascii()) {
        let t = r.text();
        if t.len() > 700 {
            format!("{}...", &t[..700])
        } else {
            t
        }
    } else {
        format!("<{} bytes>", r.body.len())
    };
    eprintln!("> {request}\n< {} [{}] {body}\n", r.status, hdrs.join("; "));
}

/// Total size of the files under `dir` (Garage's data blocks).
fn du(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let m = e.metadata().unwrap();
            total += if m.is_dir() { du(&e.path()) } else { m.len() };
        }
    }
    total
}

fn create_mpu(s3: &S3, key: &str, headers: &[(&str, &str)]) -> String {
    let r = s3.request("POST", key, &[("uploads", "")], headers, b"");
    show(
        &format!("POST /{}/{key}?uploads {headers:?}", s3.bucket),
        &r,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    xml_value(&r.text(), "UploadId").expect("UploadId")
}

fn upload_part(s3: &S3, key: &str, upload_id: &str, n: u32, body: &[u8]) -> S3Response {
    s3.request(
        "PUT",
        key,
        &[("partNumber", &n.to_string()), ("uploadId", upload_id)],
        &[],
        body,
    )
}

fn complete_xml(parts: &[(u32, String)]) -> Vec<u8> {
    let mut x = String::from("<CompleteMultipartUpload>");
    for (n, etag) in parts {
        x.push_str(&format!(
            "<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>"
        ));
    }
    x.push_str("</CompleteMultipartUpload>");
    x.into_bytes()
}

fn complete(
    s3: &S3,
    key: &str,
    upload_id: &str,
    parts: &[(u32, String)],
    headers: &[(&str, &str)],
) -> S3Response {
    s3.request(
        "POST",
        key,
        &[("uploadId", upload_id)],
        headers,
        &complete_xml(parts),
    )
}

// ---------------------------------------------------------------------------
// 1. Conditional writes

#[test]
fn conditional_put_headers_are_ignored() {
    let Some(g) = Garage::start(1) else { return };
    let s3 = s3_of(&g, 0);
    let r = s3.put("k", b"v1");
    show("PUT /wharf-test/k (v1)", &r);
    let etag_v1 = r.etag();

    // If-None-Match: * on an existing key: AWS answers 412; Garage writes.
    let r = s3.request("PUT", "k", &[], &[("if-none-match", "*")], b"v2");
    show("PUT /wharf-test/k If-None-Match: * (v2)", &r);
    assert_eq!(r.status, 200, "If-None-Match: * is ignored on PUT");
    let r = s3.get("k");
    show("GET /wharf-test/k", &r);
    assert_eq!(r.body, b"v2", "the existing object was overwritten");

    // If-Match with a wrong ETag: AWS answers 412; Garage writes.
    let r = s3.request(
        "PUT",
        "k",
        &[],
        &[("if-match", "\"00000000000000000000000000000000\"")],
        b"v3",
    );
    show("PUT /wharf-test/k If-Match: \"000...0\" (v3)", &r);
    assert_eq!(r.status, 200, "If-Match is ignored on PUT");
    assert_eq!(s3.get("k").body, b"v3");

    // If-Match on a key that does not exist: AWS answers 404; Garage writes.
    let r = s3.request("PUT", "absent", &[], &[("if-match", &etag_v1)], b"new");
    show(&format!("PUT /wharf-test/absent If-Match: {etag_v1}"), &r);
    assert_eq!(r.status, 200);

    // CompleteMultipartUpload with If-None-Match: * over an existing key.
    let id = create_mpu(&s3, "k", &[]);
    let p = upload_part(&s3, "k", &id, 1, b"v4");
    let r = complete(&s3, "k", &id, &[(1, p.etag())], &[("if-none-match", "*")]);
    show(
        "POST /wharf-test/k?uploadId=... If-None-Match: * (1 part, v4)",
        &r,
    );
    assert_eq!(
        r.status, 200,
        "If-None-Match is ignored on CompleteMultipartUpload"
    );
    assert_eq!(
        s3.get("k").body,
        b"v4",
        "the multipart upload replaced the object"
    );

    // For contrast: conditional GETs are honoured.
    let etag_v4 = s3.head("k").etag();
    let r = s3.request("GET", "k", &[], &[("if-none-match", &etag_v4)], b"");
    show(&format!("GET /wharf-test/k If-None-Match: {etag_v4}"), &r);
    assert_eq!(r.status, 304);
    let r = s3.request("GET", "k", &[], &[("if-match", "\"nope\"")], b"");
    show("GET /wharf-test/k If-Match: \"nope\"", &r);
    assert_eq!(r.status, 412);
}

// ---------------------------------------------------------------------------
// 2. CopyObject and UploadPartCopy

#[test]
fn copy_object_is_metadata_only_for_a_plain_put() {
    let Some(g) = Garage::start(1) else { return };
    let s3 = s3_of(&g, 0);
    let data_dir = g.node_dir(0).join("data");
    let big = support::data(7, 100 * MIB);

    let t = Instant::now();
    let r = s3.put("big", &big);
    let put_time = t.elapsed();
    assert_eq!(r.status, 200);
    let before = du(&data_dir);
    eprintln!(
        "PUT 100 MiB: {put_time:?}; data dir {before} bytes; node RSS {:?} KiB",
        g.rss_kib(0)
    );

    let t = Instant::now();
    let r = s3.request(
        "PUT",
        "big-copy",
        &[],
        &[("x-amz-copy-source", "/wharf-test/big")],
        b"",
    );
    let copy_time = t.elapsed();
    show(
        "PUT /wharf-test/big-copy x-amz-copy-source: /wharf-test/big",
        &r,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let after = du(&data_dir);
    eprintln!("CopyObject 100 MiB: {copy_time:?}; data dir {before} -> {after} bytes");
    assert_eq!(
        after, before,
        "no new data blocks: the copy references the source's blocks"
    );
    assert!(
        copy_time < put_time / 4,
        "copy ({copy_time:?}) much cheaper than the PUT ({put_time:?})"
    );
    let r = s3.get("big-copy");
    assert!(
        r.status == 200 && r.body == big,
        "copy reads back identical"
    );

    // UploadPartCopy: two 5 MiB ranges of `big` assembled into a new object.
    let id = create_mpu(&s3, "assembled", &[]);
    let t = Instant::now();
    let mut parts = Vec::new();
    for (n, range) in [(1u32, "bytes=0-5242879"), (2, "bytes=5242880-10485759")] {
        let r = s3.request(
            "PUT",
            "assembled",
            &[("partNumber", &n.to_string()), ("uploadId", &id)],
            &[
                ("x-amz-copy-source", "/wharf-test/big"),
                ("x-amz-copy-source-range", range),
            ],
            b"",
        );
        show(
            &format!("PUT /wharf-test/assembled?partNumber={n}&uploadId=... x-amz-copy-source-range: {range}"),
            &r,
        );
        assert_eq!(r.status, 200, "{}", r.text());
        parts.push((
            n,
            xml_value(&r.text(), "ETag").expect("CopyPartResult ETag"),
        ));
    }
    let r = complete(&s3, "assembled", &id, &parts, &[]);
    show(
        "POST /wharf-test/assembled?uploadId=... (2 copied parts)",
        &r,
    );
    assert_eq!(r.status, 200);
    eprintln!("UploadPartCopy of 2 x 5 MiB + complete: {:?}", t.elapsed());
    let r = s3.get("assembled");
    assert!(
        r.body == big[..10 * MIB],
        "assembled object is the first 10 MiB of big"
    );

    // UploadPartCopy from a small (inline) object is refused.
    s3.put("tiny", b"tiny");
    let id = create_mpu(&s3, "from-tiny", &[]);
    let r = s3.request(
        "PUT",
        "from-tiny",
        &[("partNumber", "1"), ("uploadId", &id)],
        &[("x-amz-copy-source", "/wharf-test/tiny")],
        b"",
    );
    show(
        "PUT /wharf-test/from-tiny?partNumber=1 x-amz-copy-source: /wharf-test/tiny (4 bytes)",
        &r,
    );
    assert_eq!(r.status, 400);
}

#[test]
fn copy_object_rewrites_a_multipart_object_with_a_checksum() {
    let Some(g) = Garage::start(1) else { return };
    let s3 = s3_of(&g, 0);
    let data_dir = g.node_dir(0).join("data");
    let big = support::data(8, 100 * MIB);

    // Multipart with a checksum algorithm (aws-sdk-s3 sends CRC32 ones by
    // default; Garage's rule is the same for every algorithm, and SHA-256 is
    // what the tests can compute): 10 parts of 10 MiB, each part with its
    // x-amz-checksum-sha256 (Garage refuses a part without it).
    let id = create_mpu(&s3, "mp", &[("x-amz-checksum-algorithm", "SHA256")]);
    let mut parts = Vec::new();
    for (i, chunk) in big.chunks(10 * MIB).enumerate() {
        let sum = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(chunk));
        let n = (i + 1).to_string();
        let r = s3.request(
            "PUT",
            "mp",
            &[("partNumber", &n), ("uploadId", &id)],
            &[("x-amz-checksum-sha256", &sum)],
            chunk,
        );
        assert_eq!(r.status, 200, "{}", r.text());
        parts.push((i as u32 + 1, r.etag()));
    }
    let r = complete(&s3, "mp", &id, &parts, &[]);
    show("POST /wharf-test/mp?uploadId=... (10 parts, SHA256)", &r);
    assert_eq!(r.status, 200);
    let before = du(&data_dir);

    let t = Instant::now();
    let r = s3.request(
        "PUT",
        "mp-copy",
        &[],
        &[("x-amz-copy-source", "/wharf-test/mp")],
        b"",
    );
    let copy_time = t.elapsed();
    show(
        "PUT /wharf-test/mp-copy x-amz-copy-source: /wharf-test/mp",
        &r,
    );
    assert_eq!(r.status, 200);
    let after = du(&data_dir);
    eprintln!("CopyObject of a 100 MiB multipart+SHA256 object: {copy_time:?}; data dir {before} -> {after} bytes");
    assert_eq!(
        after, before,
        "blocks are content-addressed: the rewritten copy dedups on disk"
    );
    assert!(s3.get("mp-copy").body == big);

    // The same object uploaded in parts without a checksum algorithm.
    let id = create_mpu(&s3, "mp-plain", &[]);
    let mut parts = Vec::new();
    for (i, chunk) in big.chunks(10 * MIB).enumerate() {
        parts.push((
            i as u32 + 1,
            upload_part(&s3, "mp-plain", &id, i as u32 + 1, chunk).etag(),
        ));
    }
    assert_eq!(complete(&s3, "mp-plain", &id, &parts, &[]).status, 200);
    let t = Instant::now();
    let r = s3.request(
        "PUT",
        "mp-plain-copy",
        &[],
        &[("x-amz-copy-source", "/wharf-test/mp-plain")],
        b"",
    );
    let plain_copy = t.elapsed();
    assert_eq!(r.status, 200);
    eprintln!("CopyObject of a 100 MiB multipart object without checksum: {plain_copy:?}");
    assert!(
        plain_copy * 4 < copy_time,
        "only the checksummed multipart copy rewrites the data"
    );
}

// ---------------------------------------------------------------------------
// 3. ListObjectsV2

#[test]
fn list_objects_v2_order_and_pagination() {
    let Some(g) = Garage::start(1) else { return };
    let s3 = s3_of(&g, 0);
    let keys = [
        "b", "a/c/d", "A", "a.b", "~", "a", "é", "a/b", "a-b", "a0", "Z",
    ];
    for k in keys {
        assert_eq!(s3.put(k, k.as_bytes()).status, 200);
    }
    let mut sorted: Vec<&str> = keys.to_vec();
    sorted.sort_by(|x, y| x.as_bytes().cmp(y.as_bytes()));

    let r = s3.list(&[]);
    show("GET /wharf-test?list-type=2", &r);
    assert_eq!(xml_values(&r.text(), "Key"), sorted, "UTF-8 byte order");
    assert_eq!(xml_value(&r.text(), "KeyCount").as_deref(), Some("11"));

    // Pages of 3 with continuation tokens.
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut q = vec![("max-keys", "3")];
        if let Some(t) = &token {
            q.push(("continuation-token", t));
        }
        let r = s3.list(&q);
        show(
            &format!(
                "GET /wharf-test?list-type=2&max-keys=3{}",
                token
                    .as_ref()
                    .map_or(String::new(), |t| format!("&continuation-token={t}"))
            ),
            &r,
        );
        let t = r.text();
        all.extend(xml_values(&t, "Key"));
        match xml_value(&t, "IsTruncated").as_deref() {
            Some("true") => {
                token = Some(xml_value(&t, "NextContinuationToken").expect("NextContinuationToken"))
            }
            _ => break,
        }
    }
    assert_eq!(all, sorted, "pages concatenate to the full listing");

    // start-after is exclusive and need not be an existing key.
    let r = s3.list(&[("start-after", "a/b")]);
    show("GET /wharf-test?list-type=2&start-after=a/b", &r);
    assert_eq!(xml_values(&r.text(), "Key"), ["a/c/d", "a0", "b", "~", "é"]);
    assert_eq!(
        s3.list_keys(&[("start-after", "a/")]),
        ["a/b", "a/c/d", "a0", "b", "~", "é"]
    );

    // Delimiter: common prefixes, with and without a prefix.
    let r = s3.list(&[("delimiter", "/")]);
    show("GET /wharf-test?list-type=2&delimiter=/", &r);
    assert_eq!(
        xml_values(&r.text(), "Key"),
        ["A", "Z", "a", "a-b", "a.b", "a0", "b", "~", "é"]
    );
    assert_eq!(
        xml_values(&r.text(), "Prefix"),
        ["", "a/"],
        "top Prefix, then one CommonPrefixes"
    );
    let r = s3.list(&[("prefix", "a/"), ("delimiter", "/")]);
    show("GET /wharf-test?list-type=2&prefix=a/&delimiter=/", &r);
    assert_eq!(xml_values(&r.text(), "Key"), ["a/b"]);
    assert_eq!(xml_values(&r.text(), "Prefix"), ["a/", "a/c/"]);

    // A common prefix counts as one entry of max-keys.
    let r = s3.list(&[("delimiter", "/"), ("max-keys", "5")]);
    show("GET /wharf-test?list-type=2&delimiter=/&max-keys=5", &r);
    let t = r.text();
    assert_eq!(
        xml_values(&t, "Key").len() + xml_values(&t, "Prefix").len() - 1,
        5
    );

    // max-keys is clamped to 1..=1000: 0 still returns one key.
    let r = s3.list(&[("max-keys", "0")]);
    show("GET /wharf-test?list-type=2&max-keys=0", &r);
    assert_eq!(xml_values(&r.text(), "Key"), ["A"]);
    assert_eq!(xml_value(&r.text(), "MaxKeys").as_deref(), Some("1"));
}

// ---------------------------------------------------------------------------
// 4. Read-after-write across nodes

/// Wait (up to 2 s) until `f` holds; how long it took, or `None`.
fn converges(mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
        if f() {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

/// Writes through node 0, reads at once through nodes 1 and 2. GET and
/// HEAD always see the latest PUT, overwrite and DELETE (quorum writes and
/// reads, 2 of 3). ListObjectsV2 can lag behind a DELETE: another node's
/// listing may still show the deleted key (with its old ETag) for up to
/// ~100 ms. (garage_table's range read filters out deleted entries on each
/// node before merging the quorum's answers, so one node that has not yet
/// received the delete resurrects the entry.)
#[test]
fn read_after_write_across_nodes() {
    let Some(g) = Garage::start(3) else { return };
    let (w, r1, r2) = (s3_of(&g, 0), s3_of(&g, 1), s3_of(&g, 2));
    let n = 150;
    let mut get_misses = Vec::new();
    let mut stale_lists = Vec::new();
    let list_entry = |key: &str| -> Vec<(String, String)> {
        let t = r2.list(&[("prefix", key)]).text();
        xml_values(&t, "Key")
            .into_iter()
            .zip(xml_values(&t, "ETag"))
            .collect()
    };
    for i in 0..n {
        let key = format!("raw/{i:03}");
        let body = format!("value {i}");
        let etag = w.put(&key, body.as_bytes()).etag();
        let got = r1.get(&key);
        if got.status != 200 || got.body != body.as_bytes() {
            get_misses.push(format!("GET {key} on node 1 after PUT: {}", got.status));
        }
        let want = vec![(key.clone(), etag.clone())];
        if list_entry(&key) != want {
            let lag = converges(|| list_entry(&key) == want);
            stale_lists.push(format!(
                "{key}: new key missing from node 2's listing, for {lag:?}"
            ));
        }
        if i % 3 != 0 {
            continue;
        }
        // Overwrite, then delete.
        let etag2 = w.put(&key, b"v2").etag();
        if r2.get(&key).body != b"v2" {
            get_misses.push(format!("GET {key} on node 2 after overwrite"));
        }
        let want = vec![(key.clone(), etag2.clone())];
        let before = list_entry(&key);
        if before != want {
            let lag = converges(|| list_entry(&key) == want);
            stale_lists.push(format!(
                "{key}: overwrite listed as {before:?} on node 2, for {lag:?}"
            ));
        }
        assert_eq!(w.delete(&key).status, 204);
        for (name, r) in [("node 1", &r1), ("node 2", &r2)] {
            if r.get(&key).status != 404 || r.head(&key).status != 404 {
                get_misses.push(format!("GET/HEAD {key} on {name} after DELETE"));
            }
        }
        let before = list_entry(&key);
        if !before.is_empty() {
            let lag = converges(|| list_entry(&key).is_empty());
            stale_lists.push(format!(
                "{key}: deleted, still listed as {before:?} on node 2, for {lag:?}"
            ));
        }
    }
    eprintln!(
        "read-after-write, {n} keys ({} with overwrite and delete): {} GET/HEAD misses {get_misses:#?}\n{} stale listings {stale_lists:#?}",
        n / 3,
        get_misses.len(),
        stale_lists.len()
    );
    assert!(
        get_misses.is_empty(),
        "GET/HEAD read-after-write across nodes: {get_misses:#?}"
    );
    assert!(
        !stale_lists.iter().any(|s| s.ends_with("for None")),
        "a listing did not converge in 2 s: {stale_lists:#?}"
    );
}

// ---------------------------------------------------------------------------
// 5. Presigned URLs and ranges

#[test]
fn presigned_get_and_ranges() {
    let Some(g) = Garage::start(1) else { return };
    let s3 = s3_of(&g, 0);
    let body = support::data(9, 1000);
    assert_eq!(s3.put("obj", &body).status, 200);

    let url = s3.presign("GET", "obj", Duration::from_secs(300));
    let r = s3.get_url(&url, &[]);
    show(&format!("GET {url}"), &r);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, body);
    // Presigned URL plus a Range header (not signed: fine).
    let r = s3.get_url(&url, &[("range", "bytes=100-199")]);
    show("GET <presigned> Range: bytes=100-199", &r);
    assert_eq!((r.status, r.body.as_slice()), (206, &body[100..200]));
    // Tampered and expired URLs are refused.
    let r = s3.get_url(&url.replace("/obj?", "/other?"), &[]);
    show("GET <presigned for obj, path changed to other>", &r);
    assert_eq!(r.status, 403);
    let short = s3.presign("GET", "obj", Duration::from_secs(1));
    std::thread::sleep(Duration::from_millis(2100));
    let r = s3.get_url(&short, &[]);
    show("GET <presigned, X-Amz-Expires=1, 2.1 s later>", &r);
    assert_eq!(
        r.status, 400,
        "expired: 400 InvalidRequest (AWS says 403 AccessDenied)"
    );

    for (range, status, want) in [
        ("bytes=0-9", 206, Some(&body[0..10])),
        ("bytes=990-", 206, Some(&body[990..])),
        ("bytes=-5", 206, Some(&body[995..])),
        ("bytes=990-5000", 206, Some(&body[990..])),
        ("bytes=1000-", 416, None),
    ] {
        let r = s3.request("GET", "obj", &[], &[("range", range)], b"");
        show(&format!("GET /wharf-test/obj Range: {range}"), &r);
        assert_eq!(r.status, status, "{range}");
        if let Some(w) = want {
            assert_eq!(r.body, w, "{range}");
        }
    }
}

// ---------------------------------------------------------------------------
// 6. Multipart rules

#[test]
fn multipart_limits_and_leftover_uploads() {
    let Some(g) = Garage::start(1) else { return };
    let s3 = s3_of(&g, 0);

    // Parts smaller than 5 MiB that are not the last one.
    let id = create_mpu(&s3, "small-parts", &[]);
    let p1 = upload_part(&s3, "small-parts", &id, 1, &support::data(1, MIB));
    let p2 = upload_part(&s3, "small-parts", &id, 2, &support::data(2, 1000));
    let r = complete(
        &s3,
        "small-parts",
        &id,
        &[(1, p1.etag()), (2, p2.etag())],
        &[],
    );
    show(
        "POST /wharf-test/small-parts?uploadId=... (1 MiB + 1000 B parts)",
        &r,
    );
    assert_eq!(r.status, 200, "no minimum part size: {}", r.text());
    assert_eq!(
        s3.head("small-parts").header("content-length").as_deref(),
        Some("1049576")
    );
    eprintln!("multipart ETag: {}", s3.head("small-parts").etag());

    // Part numbers: AWS allows 1..=10000; Garage takes 0 and 10001 too.
    let id = create_mpu(&s3, "numbers", &[]);
    for n in [0u32, 1, 10000, 10001] {
        let r = upload_part(&s3, "numbers", &id, n, b"x");
        show(
            &format!("PUT /wharf-test/numbers?partNumber={n}&uploadId=..."),
            &r,
        );
        assert_eq!(r.status, 200, "part number {n}");
    }

    // An upload that is never completed: listed, its parts listed, the key
    // invisible, until AbortMultipartUpload.
    let id = create_mpu(&s3, "left/over", &[]);
    upload_part(&s3, "left/over", &id, 1, &support::data(3, 2 * MIB));
    let r = s3.request("GET", "", &[("uploads", "")], &[], b"");
    show("GET /wharf-test?uploads", &r);
    assert!(xml_values(&r.text(), "UploadId").contains(&id));
    let r = s3.request("GET", "left/over", &[("uploadId", &id)], &[], b"");
    show("GET /wharf-test/left/over?uploadId=... (ListParts)", &r);
    assert_eq!(xml_values(&r.text(), "PartNumber"), ["1"]);
    assert_eq!(
        s3.head("left/over").status,
        404,
        "an unfinished upload is no object"
    );
    assert!(
        s3.list_keys(&[("prefix", "left/")]).is_empty(),
        "nor is it listed"
    );
    let r = s3.request("DELETE", "left/over", &[("uploadId", &id)], &[], b"");
    show("DELETE /wharf-test/left/over?uploadId=...", &r);
    assert_eq!(r.status, 204);
    let r = s3.request("GET", "", &[("uploads", "")], &[], b"");
    show("GET /wharf-test?uploads (after abort)", &r);
    assert!(!xml_values(&r.text(), "UploadId").contains(&id));
    let r = s3.request("GET", "left/over", &[("uploadId", &id)], &[], b"");
    show("GET /wharf-test/left/over?uploadId=... after abort", &r);
    assert_eq!(r.status, 404);

    // Nothing expires leftovers by itself (short of a bucket lifecycle
    // rule, run once a day); the CLI can sweep them.
    let id = create_mpu(&s3, "left/again", &[]);
    upload_part(&s3, "left/again", &id, 1, b"part");
    std::thread::sleep(Duration::from_millis(1100));
    let out = g.cli(
        0,
        &[
            "bucket",
            "cleanup-incomplete-uploads",
            "--older-than",
            "1s",
            "wharf-test",
        ],
    );
    eprintln!("$ garage bucket cleanup-incomplete-uploads --older-than 1s wharf-test\n{out}");
    let r = s3.request("GET", "", &[("uploads", "")], &[], b"");
    show(
        "GET /wharf-test?uploads (after cleanup-incomplete-uploads)",
        &r,
    );
    assert!(xml_values(&r.text(), "UploadId").is_empty());
}

// ---------------------------------------------------------------------------
// 8. A node dying under a 3-node cluster

/// Right after a node is SIGKILLed, the surviving nodes still answer every
/// GET and PUT (quorum 2 of 3), but the first request on a survivor that
/// sends an RPC to the dead node can stall for seconds (observed ~8.5 s,
/// once, on one of the two survivors; a small inline object's GET too):
/// the survivor's outgoing connection only fails when written to.
#[test]
fn requests_right_after_a_node_dies() {
    let Some(g) = Garage::start(3) else { return };
    let s3 = s3_of(&g, 0);
    let big = support::data(11, 300_000);
    assert_eq!(s3.put("big", &big).status, 200);
    assert_eq!(s3.put("small", b"inline").status, 200);

    g.stop_node(2);
    let mut slowest = Duration::ZERO;
    for i in 0..2 {
        for (key, body) in [("small", &b"inline"[..]), ("big", &big[..])] {
            let t = Instant::now();
            let r = s3_of(&g, i).get(key);
            let took = t.elapsed();
            slowest = slowest.max(took);
            eprintln!(
                "node 2 down: GET {key} on node {i}: {} in {took:?}",
                r.status
            );
            assert_eq!(
                (r.status, r.body == body),
                (200, true),
                "GET {key} on node {i}"
            );
        }
        let t = Instant::now();
        let r = s3_of(&g, i).put(&format!("new-{i}"), &big);
        eprintln!(
            "node 2 down: PUT new-{i} (300 kB) on node {i}: {} in {:?}",
            r.status,
            t.elapsed()
        );
        assert_eq!(r.status, 200);
        let t = Instant::now();
        let keys = s3_of(&g, i).list_keys(&[]);
        eprintln!(
            "node 2 down: LIST on node {i}: {keys:?} in {:?}",
            t.elapsed()
        );
    }
    eprintln!("slowest GET right after the kill: {slowest:?}");
    assert!(slowest < Duration::from_secs(30), "{slowest:?}");
}
