//! HTTP conformance: blob uploads. Sessions, monolithic POST, cross-repo
//! mount (explicit and automatic), chunked PATCH with `Content-Range`
//! (in order, out of order, repeated), status, finish with and without a
//! last chunk, cancel, digest mismatch, resume after a restart, and
//! concurrent pushes of one blob and one tag.
mod support;

use support::disk::*;

use reqwest::blocking::Response;
use support::*;

fn start_session(w: &Wharf, repo: &str) -> String {
    let r = http()
        .post(format!("{}/v2/{repo}/blobs/uploads/", w.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "{:?}", r.text());
    abs_url(w, &header(&r, "location"))
}

fn with_digest(loc: &str, d: &str) -> String {
    let sep = if loc.contains('?') { '&' } else { '?' };
    format!("{loc}{sep}digest={d}")
}

fn patch(loc: &str, range: Option<(usize, usize)>, chunk: &[u8]) -> Response {
    let mut r = http()
        .patch(loc)
        .header("content-type", "application/octet-stream")
        .body(chunk.to_vec());
    if let Some((a, b)) = range {
        r = r.header("content-range", format!("{a}-{b}"));
    }
    r.send().unwrap()
}

fn status(loc: &str) -> Response {
    http().get(loc).send().unwrap()
}

fn blob(w: &Wharf, repo: &str, d: &str) -> Response {
    http()
        .get(format!("{}/v2/{repo}/blobs/{d}", w.url()))
        .send()
        .unwrap()
}

/// Push `bytes` in chunks of `chunk` with Content-Range; returns the
/// Location after the last PATCH.
fn patch_all(w: &Wharf, mut loc: String, bytes: &[u8], from: usize, chunk: usize) -> String {
    let mut off = from;
    while off < bytes.len() {
        let end = (off + chunk).min(bytes.len());
        let r = patch(&loc, Some((off, end - 1)), &bytes[off..end]);
        assert_eq!(r.status(), 202, "chunk {off}-{}: {:?}", end - 1, r.text());
        assert_eq!(header(&r, "range"), format!("0-{}", end - 1));
        loc = abs_url(w, &header(&r, "location"));
        off = end;
    }
    loc
}

#[test]
fn post_opens_a_session() {
    let w = Wharf::start();
    let r = http()
        .post(format!("{}/v2/a/b/c/d/blobs/uploads/", w.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = header(&r, "location");
    let id = header(&r, "docker-upload-uuid");
    assert!(loc.contains("/v2/a/b/c/d/blobs/uploads/"), "{loc}");
    assert!(loc.contains(&id), "Location {loc} names the upload {id}");
    assert_eq!(header(&r, "range"), "0-0");
    assert_eq!(header(&r, "content-length"), "0");
    // Without the trailing slash too.
    let r = http()
        .post(format!("{}/v2/a/b/c/d/blobs/uploads", w.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_ne!(
        header(&r, "docker-upload-uuid"),
        id,
        "each POST opens a new session"
    );
    // Status of the fresh session.
    let r = status(&abs_url(&w, &loc));
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "range"), "0-0");
    assert_eq!(header(&r, "docker-upload-uuid"), id);
    assert!(header(&r, "location").contains(&id));
}

#[test]
fn monolithic_post() {
    let w = Wharf::start();
    let bytes = data(1, 20_000);
    let d = sha256(&bytes);
    let r = http()
        .post(format!("{}/v2/mono/blobs/uploads/?digest={d}", w.url()))
        .header("content-type", "application/octet-stream")
        .body(bytes.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "docker-content-digest"), d);
    let loc = header(&r, "location");
    assert!(loc.ends_with(&format!("/v2/mono/blobs/{d}")), "{loc}");
    let r = http().get(abs_url(&w, &loc)).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().as_ref(), bytes.as_slice());

    // Wrong digest: DIGEST_INVALID, nothing stored.
    let wrong = sha256(b"not these bytes");
    let r = http()
        .post(format!("{}/v2/mono/blobs/uploads/?digest={wrong}", w.url()))
        .body(bytes.clone())
        .send()
        .unwrap();
    assert_oci_error(r, 400, "DIGEST_INVALID");
    assert_oci_error(blob(&w, "mono", &wrong), 404, "BLOB_UNKNOWN");
    assert!(!blob_file(&w.data_dir, &wrong).exists());
    // No upload session is left behind.
    let left: Vec<_> = std::fs::read_dir(w.data_dir.join("uploads"))
        .map(|rd| rd.flatten().collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "leftover upload sessions: {left:?}");
}

#[test]
fn cross_repo_mount_with_from() {
    let w = Wharf::start();
    let bytes = data(2, 3000);
    let d = push_blob(&w, "src/app", &bytes);
    let r = http()
        .post(format!(
            "{}/v2/dst/app/blobs/uploads/?mount={d}&from=src/app",
            w.url()
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "docker-content-digest"), d);
    assert!(header(&r, "location").ends_with(&format!("/v2/dst/app/blobs/{d}")));
    let r = blob(&w, "dst/app", &d);
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().as_ref(), bytes.as_slice());

    // `from` does not have it (though it exists elsewhere): fall back to a
    // session (202), which can then be used as a normal upload.
    let r = http()
        .post(format!(
            "{}/v2/third/blobs/uploads/?mount={d}&from=empty/repo",
            w.url()
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "range"), "0-0");
    let loc = abs_url(&w, &header(&r, "location"));
    assert_oci_error(blob(&w, "third", &d), 404, "BLOB_UNKNOWN");
    let r = http()
        .put(with_digest(&loc, &d))
        .body(bytes.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(blob(&w, "third", &d).status(), 200);

    // Absent everywhere: 202 session.
    let absent = sha256(b"absent");
    let r = http()
        .post(format!(
            "{}/v2/fourth/blobs/uploads/?mount={absent}&from=src/app",
            w.url()
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(r.headers().get("docker-upload-uuid").is_some());
}

#[test]
fn automatic_mount_without_from() {
    let w = Wharf::start();
    let bytes = data(3, 3000);
    let d = push_blob(&w, "somewhere/else", &bytes);
    let r = http()
        .post(format!("{}/v2/auto/blobs/uploads/?mount={d}", w.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "docker-content-digest"), d);
    assert!(header(&r, "location").ends_with(&format!("/v2/auto/blobs/{d}")));
    let r = blob(&w, "auto", &d);
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().as_ref(), bytes.as_slice());
    // Not present anywhere: a normal session.
    let absent = sha256(b"nowhere");
    let r = http()
        .post(format!("{}/v2/auto/blobs/uploads/?mount={absent}", w.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "range"), "0-0");
}

#[test]
fn chunked_upload_in_order() {
    let w = Wharf::start();
    let bytes = data(4, 100_000);
    let d = sha256(&bytes);
    let loc = start_session(&w, "chunky");
    let loc = patch_all(&w, loc, &bytes, 0, 30_000);
    let r = status(&loc);
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "range"), format!("0-{}", bytes.len() - 1));
    assert!(r.headers().get("location").is_some());
    // Nothing visible before the PUT.
    assert_oci_error(blob(&w, "chunky", &d), 404, "BLOB_UNKNOWN");
    let r = http().put(with_digest(&loc, &d)).send().unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "docker-content-digest"), d);
    assert!(header(&r, "location").ends_with(&format!("/v2/chunky/blobs/{d}")));
    let r = blob(&w, "chunky", &d);
    assert_eq!(r.bytes().unwrap().as_ref(), bytes.as_slice());
    // The finished session is gone.
    assert_oci_error(status(&loc), 404, "BLOB_UPLOAD_UNKNOWN");
    assert_oci_error(patch(&loc, None, b"x"), 404, "BLOB_UPLOAD_UNKNOWN");
}

#[test]
fn chunked_upload_streamed_without_content_range() {
    let w = Wharf::start();
    let bytes = data(5, 50_000);
    let d = sha256(&bytes);
    let mut loc = start_session(&w, "stream");
    for (i, c) in bytes.chunks(20_000).enumerate() {
        let r = patch(&loc, None, c);
        assert_eq!(r.status(), 202);
        let end = (i * 20_000 + c.len()) - 1;
        assert_eq!(header(&r, "range"), format!("0-{end}"));
        loc = abs_url(&w, &header(&r, "location"));
    }
    let r = http().put(with_digest(&loc, &d)).send().unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        blob(&w, "stream", &d).bytes().unwrap().as_ref(),
        bytes.as_slice()
    );
}

#[test]
fn finish_with_a_last_chunk() {
    let w = Wharf::start();
    let bytes = data(6, 40_000);
    let d = sha256(&bytes);
    let loc = start_session(&w, "last");
    let loc = patch_all(&w, loc, &bytes[..25_000], 0, 10_000);
    // The last chunk in the PUT, with its Content-Range.
    let r = http()
        .put(with_digest(&loc, &d))
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("25000-{}", bytes.len() - 1))
        .body(bytes[25_000..].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text());
    assert_eq!(
        blob(&w, "last", &d).bytes().unwrap().as_ref(),
        bytes.as_slice()
    );

    // The whole blob in the PUT of a fresh session (POST-PUT monolithic).
    let bytes = data(7, 12_345);
    let d = sha256(&bytes);
    let loc = start_session(&w, "last");
    let r = http()
        .put(with_digest(&loc, &d))
        .body(bytes.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        blob(&w, "last", &d).bytes().unwrap().as_ref(),
        bytes.as_slice()
    );

    // A PUT whose last chunk starts at the wrong offset: 416 with the Range.
    let bytes = data(8, 2000);
    let d = sha256(&bytes);
    let loc = start_session(&w, "last");
    let loc = patch_all(&w, loc, &bytes[..1000], 0, 1000);
    let r = http()
        .put(with_digest(&loc, &d))
        .header("content-range", "1500-1999")
        .body(bytes[1000..1500].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(header(&r, "range"), "0-999");
    assert_oci_error(r, 416, "BLOB_UPLOAD_INVALID");
    let r = status(&loc);
    assert_eq!(header(&r, "range"), "0-999");
}

#[test]
fn out_of_order_and_repeated_chunks_get_416() {
    let w = Wharf::start();
    let bytes = data(9, 30_000);
    let d = sha256(&bytes);
    let loc = start_session(&w, "ooo");
    // Chunk that does not start at 0 on an empty session.
    let r = patch(&loc, Some((10_000, 19_999)), &bytes[10_000..20_000]);
    assert_eq!(r.status(), 416);
    assert_eq!(header(&r, "range"), "0-0");
    assert!(r.headers().get("location").is_some());
    assert_oci_error(r, 416, "BLOB_UPLOAD_INVALID");

    let loc = patch_all(&w, loc, &bytes[..10_000], 0, 10_000);
    // A gap.
    let r = patch(&loc, Some((20_000, 29_999)), &bytes[20_000..]);
    assert_eq!(r.status(), 416);
    assert_eq!(header(&r, "range"), "0-9999");
    let v = assert_oci_error(r, 416, "BLOB_UPLOAD_INVALID");
    assert!(v["errors"][0]["detail"].is_string());
    // The first chunk again.
    let r = patch(&loc, Some((0, 9_999)), &bytes[..10_000]);
    assert_eq!(r.status(), 416);
    assert_eq!(header(&r, "range"), "0-9999");
    // An overlapping one.
    let r = patch(&loc, Some((5_000, 14_999)), &bytes[5_000..15_000]);
    assert_eq!(r.status(), 416);
    assert_eq!(header(&r, "range"), "0-9999");
    // The session is unharmed: status, then continue and finish.
    let r = status(&loc);
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "range"), "0-9999");
    let loc = patch_all(&w, loc, &bytes, 10_000, 10_000);
    let r = http().put(with_digest(&loc, &d)).send().unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        blob(&w, "ooo", &d).bytes().unwrap().as_ref(),
        bytes.as_slice()
    );
}

#[test]
fn cancel_upload() {
    let w = Wharf::start();
    let bytes = data(10, 5000);
    let loc = start_session(&w, "cancel");
    let loc = patch_all(&w, loc, &bytes, 0, 5000);
    let r = http().delete(&loc).send().unwrap();
    assert_eq!(r.status(), 204);
    assert_oci_error(status(&loc), 404, "BLOB_UPLOAD_UNKNOWN");
    assert_oci_error(patch(&loc, None, b"more"), 404, "BLOB_UPLOAD_UNKNOWN");
    assert_oci_error(
        http()
            .put(with_digest(&loc, &sha256(&bytes)))
            .send()
            .unwrap(),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    assert_oci_error(
        http().delete(&loc).send().unwrap(),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    assert_oci_error(blob(&w, "cancel", &sha256(&bytes)), 404, "BLOB_UNKNOWN");
    let left: Vec<_> = std::fs::read_dir(w.data_dir.join("uploads"))
        .map(|rd| rd.flatten().collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "cancelled session data left: {left:?}");
}

#[test]
fn unknown_sessions() {
    let w = Wharf::start();
    let id = "0b1e3f5c-2f43-4e0b-9a55-3d0ab1a9f3a1";
    let loc = format!("{}/v2/x/blobs/uploads/{id}", w.url());
    assert_oci_error(status(&loc), 404, "BLOB_UPLOAD_UNKNOWN");
    assert_oci_error(
        patch(&loc, Some((0, 2)), b"abc"),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    assert_oci_error(
        http()
            .put(with_digest(&loc, &sha256(b"abc")))
            .send()
            .unwrap(),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    assert_oci_error(
        http().delete(&loc).send().unwrap(),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    // Not a UUID.
    assert_oci_error(
        status(&format!("{}/v2/x/blobs/uploads/nope", w.url())),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    // A session belongs to the repository that opened it.
    let own = start_session(&w, "owner");
    let id = own.rsplit('/').next().unwrap().split('?').next().unwrap();
    let foreign = format!("{}/v2/thief/blobs/uploads/{id}", w.url());
    assert_oci_error(status(&foreign), 404, "BLOB_UPLOAD_UNKNOWN");
    assert_oci_error(patch(&foreign, None, b"x"), 404, "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(status(&own).status(), 204);
}

#[test]
fn put_digest_mismatch_stores_nothing() {
    let w = Wharf::start();
    let bytes = data(11, 8000);
    let loc = start_session(&w, "mm");
    let loc = patch_all(&w, loc, &bytes, 0, 4000);
    let wrong = sha256(b"wrong");
    let r = http().put(with_digest(&loc, &wrong)).send().unwrap();
    assert_oci_error(r, 400, "DIGEST_INVALID");
    assert_oci_error(blob(&w, "mm", &wrong), 404, "BLOB_UNKNOWN");
    assert_oci_error(blob(&w, "mm", &sha256(&bytes)), 404, "BLOB_UNKNOWN");
    assert!(!blob_file(&w.data_dir, &wrong).exists());
    assert!(!blob_file(&w.data_dir, &sha256(&bytes)).exists());
    // Missing digest parameter.
    let loc = start_session(&w, "mm");
    let r = http().put(&loc).body(bytes.clone()).send().unwrap();
    assert_oci_error(r, 400, "DIGEST_INVALID");
    // Malformed digest parameter.
    let loc = start_session(&w, "mm");
    let r = http()
        .put(with_digest(&loc, "sha256:totallywrong"))
        .body(bytes.clone())
        .send()
        .unwrap();
    assert_oci_error(r, 400, "DIGEST_INVALID");
}

#[test]
fn upload_resumes_after_restart() {
    let mut w = Wharf::start();
    let bytes = data(12, 200_000);
    let d = sha256(&bytes);
    let loc = start_session(&w, "resume/app");
    let loc = patch_all(&w, loc, &bytes[..120_000], 0, 40_000);
    w.restart();
    let r = status(&loc);
    assert_eq!(r.status(), 204, "session survives a restart");
    assert_eq!(header(&r, "range"), "0-119999");
    let loc = abs_url(&w, &header(&r, "location"));
    // A wrong offset is still refused after the restart.
    let r = patch(&loc, Some((0, 9)), &bytes[..10]);
    assert_eq!(r.status(), 416);
    assert_eq!(header(&r, "range"), "0-119999");
    let loc = patch_all(&w, loc, &bytes[..160_000], 120_000, 40_000);
    // Restart once more between the chunks and the final PUT.
    w.restart();
    let r = http()
        .put(with_digest(&loc, &d))
        .header("content-range", format!("160000-{}", bytes.len() - 1))
        .body(bytes[160_000..].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text());
    let r = blob(&w, "resume/app", &d);
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().as_ref(), bytes.as_slice());
    assert_eq!(
        sha256(&std::fs::read(blob_file(&w.data_dir, &d)).unwrap()),
        d
    );
}

#[test]
fn resume_after_kill_then_wrong_digest_is_refused() {
    let mut w = Wharf::start();
    let bytes = data(13, 50_000);
    let loc = start_session(&w, "rk");
    let loc = patch_all(&w, loc, &bytes, 0, 25_000);
    w.kill();
    w.restart();
    // After a restart the hash is rebuilt from disk: a wrong digest is
    // still detected.
    let r = http()
        .put(with_digest(&loc, &sha256(b"nope")))
        .send()
        .unwrap();
    assert_oci_error(r, 400, "DIGEST_INVALID");
    assert!(!blob_file(&w.data_dir, &sha256(&bytes)).exists());
}

#[test]
fn concurrent_pushes_of_one_blob_and_one_tag() {
    let w = Wharf::start();
    let url = w.url();
    let blob_bytes = data(14, 300_000);
    let bd = sha256(&blob_bytes);
    let cfg = b"{\"os\":\"linux\"}".to_vec();
    let cd = push_blob(&w, "conc", &cfg);

    let threads: Vec<_> = (0..8)
        .map(|i| {
            let url = url.clone();
            let blob_bytes = blob_bytes.clone();
            let bd = bd.clone();
            let cfg_desc = descriptor(MT_OCI_CONFIG, &cd, cfg.len());
            std::thread::spawn(move || {
                let c = http();
                // Half monolithic, half chunked.
                if i % 2 == 0 {
                    let r = c
                        .post(format!("{url}/v2/conc/blobs/uploads/?digest={bd}"))
                        .body(blob_bytes.clone())
                        .send()
                        .unwrap();
                    assert_eq!(r.status(), 201, "thread {i}: {:?}", r.text());
                } else {
                    let r = c
                        .post(format!("{url}/v2/conc/blobs/uploads/"))
                        .send()
                        .unwrap();
                    assert_eq!(r.status(), 202);
                    let mut loc = r.headers()["location"].to_str().unwrap().to_string();
                    if loc.starts_with('/') {
                        loc = format!("{url}{loc}");
                    }
                    for (k, part) in blob_bytes.chunks(100_000).enumerate() {
                        let start = k * 100_000;
                        let r = c
                            .patch(&loc)
                            .header(
                                "content-range",
                                format!("{start}-{}", start + part.len() - 1),
                            )
                            .body(part.to_vec())
                            .send()
                            .unwrap();
                        assert_eq!(r.status(), 202, "thread {i}");
                        loc = r.headers()["location"].to_str().unwrap().to_string();
                        if loc.starts_with('/') {
                            loc = format!("{url}{loc}");
                        }
                    }
                    let sep = if loc.contains('?') { '&' } else { '?' };
                    let r = c.put(format!("{loc}{sep}digest={bd}")).send().unwrap();
                    assert_eq!(r.status(), 201, "thread {i}: {:?}", r.text());
                }
                // Every thread pushes its own manifest under the same tag.
                let m = image_manifest(
                    MT_OCI_MANIFEST,
                    cfg_desc,
                    vec![descriptor(MT_OCI_LAYER, &bd, blob_bytes.len())],
                    serde_json::json!({"annotations": {"thread": i.to_string()}}),
                );
                let r = c
                    .put(format!("{url}/v2/conc/manifests/latest"))
                    .header("content-type", MT_OCI_MANIFEST)
                    .body(m.clone())
                    .send()
                    .unwrap();
                assert_eq!(r.status(), 201, "thread {i}: {:?}", r.text());
                sha256(&m)
            })
        })
        .collect();
    let digests: Vec<String> = threads
        .into_iter()
        .map(|t| t.join().expect("pusher thread"))
        .collect();

    // The blob is complete and stored once.
    let r = blob(&w, "conc", &bd);
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().as_ref(), blob_bytes.as_slice());
    assert_eq!(
        std::fs::read(blob_file(&w.data_dir, &bd)).unwrap(),
        blob_bytes
    );
    // The tag points at one of the eight manifests, whose bytes match.
    let r = http()
        .get(format!("{url}/v2/conc/manifests/latest"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let d = header(&r, "docker-content-digest");
    assert!(
        digests.contains(&d),
        "tag points at {d}, not one of the pushed manifests"
    );
    assert_eq!(sha256(&r.bytes().unwrap()), d);
    // Every manifest is reachable by digest.
    for d in &digests {
        let r = http()
            .get(format!("{url}/v2/conc/manifests/{d}"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(&sha256(&r.bytes().unwrap()), d);
    }
    let tags: serde_json::Value = http()
        .get(format!("{url}/v2/conc/tags/list"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["latest"]));
    // No temp files or sessions are left behind.
    let tmp: Vec<_> = std::fs::read_dir(w.data_dir.join("tmp"))
        .map(|rd| rd.flatten().collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "temp files left: {tmp:?}");
    let up: Vec<_> = std::fs::read_dir(w.data_dir.join("uploads"))
        .map(|rd| rd.flatten().collect())
        .unwrap_or_default();
    assert!(up.is_empty(), "upload sessions left: {up:?}");
}

#[test]
fn abandoned_uploads_and_stale_temp_files_are_cleaned_up() {
    let w = Wharf::start_with(Options {
        config: Some("[storage]\nupload_max_age = \"2s\"\ncleanup_interval = \"1s\"\n".into()),
        ..Options::default()
    });
    let bytes = data(15, 10_000);
    let abandoned = patch_all(&w, start_session(&w, "gc"), &bytes[..5_000], 0, 5_000);
    let mut active = patch_all(&w, start_session(&w, "gc"), &bytes[..1_000], 0, 1_000);
    // Temp files: one from long ago, one fresh.
    let tmp = w.data_dir.join("tmp");
    let old = tmp.join("stale-temp-file");
    let fresh = tmp.join("fresh-temp-file");
    std::fs::write(&old, b"old").unwrap();
    std::fs::write(&fresh, b"new").unwrap();
    let f = std::fs::File::options().write(true).open(&old).unwrap();
    f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3 * 3600))
        .unwrap();
    drop(f);

    // Keep one session busy with small chunks while the other ages.
    let mut off = 1_000;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(8);
    while std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(400));
        let r = patch(&active, Some((off, off + 99)), &bytes[off..off + 100]);
        assert_eq!(r.status(), 202, "an active session must not be cleaned up");
        active = abs_url(&w, &header(&r, "location"));
        off += 100;
        if status(&abandoned).status() == 404 {
            break;
        }
    }
    assert_oci_error(status(&abandoned), 404, "BLOB_UPLOAD_UNKNOWN");
    assert!(!old.exists(), "stale temp file not removed");
    assert!(fresh.exists(), "fresh temp file removed");
    // The active one finishes fine.
    let r = http()
        .put(with_digest(&active, &sha256(&bytes[..off])))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[test]
fn chunked_upload_with_sha512_digest() {
    use sha2::Digest as _;
    let w = Wharf::start();
    let bytes = data(16, 70_000);
    let d = format!("sha512:{}", hex::encode(sha2::Sha512::digest(&bytes)));
    let loc = patch_all(&w, start_session(&w, "s512"), &bytes, 0, 30_000);
    let r = http().put(with_digest(&loc, &d)).send().unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text());
    assert_eq!(header(&r, "docker-content-digest"), d);
    let r = blob(&w, "s512", &d);
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().as_ref(), bytes.as_slice());
    assert!(w.on_s3() || blob_file(&w.data_dir, &d).is_file());
}

#[test]
fn sessions_do_not_create_repositories() {
    let w = Wharf::start();
    let loc = start_session(&w, "only/session");
    patch(&loc, Some((0, 2)), b"abc");
    let r = http()
        .post(format!(
            "{}/v2/mounted/blobs/uploads/?mount={}",
            w.url(),
            sha256(b"absent")
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let v: serde_json::Value = http()
        .get(format!("{}/v2/_catalog", w.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["repositories"], serde_json::json!([]));
    // Monolithic POST with the wrong digest creates nothing either.
    let r = http()
        .post(format!(
            "{}/v2/failed/blobs/uploads/?digest={}",
            w.url(),
            sha256(b"x")
        ))
        .body("y")
        .send()
        .unwrap();
    assert_oci_error(r, 400, "DIGEST_INVALID");
    let v: serde_json::Value = http()
        .get(format!("{}/v2/_catalog", w.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["repositories"], serde_json::json!([]));
}

#[test]
fn mount_into_the_same_repository_and_empty_monolithic_body() {
    let w = Wharf::start();
    let bytes = data(17, 1000);
    let d = push_blob(&w, "same", &bytes);
    let r = http()
        .post(format!(
            "{}/v2/same/blobs/uploads/?mount={d}&from=same",
            w.url()
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    // A monolithic POST whose body does not match its digest (empty body).
    let other = sha256(&data(18, 10));
    let r = http()
        .post(format!("{}/v2/same/blobs/uploads/?digest={other}", w.url()))
        .send()
        .unwrap();
    assert_oci_error(r, 400, "DIGEST_INVALID");
}

/// Docker's client streams PATCH bodies with chunked transfer encoding and
/// no Content-Length or Content-Range.
#[test]
fn chunked_transfer_encoding_bodies() {
    let w = Wharf::start();
    let bytes = data(19, 1_500_000);
    let d = sha256(&bytes);
    let loc = start_session(&w, "te");
    let r = http()
        .patch(&loc)
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(
            bytes[..1_000_000].to_vec(),
        )))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "{:?}", r.text());
    assert_eq!(header(&r, "range"), "0-999999");
    let loc = abs_url(&w, &header(&r, "location"));
    let r = http()
        .put(with_digest(&loc, &d))
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(
            bytes[1_000_000..].to_vec(),
        )))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text());
    assert_eq!(
        blob(&w, "te", &d).bytes().unwrap().as_ref(),
        bytes.as_slice()
    );
    // Monolithic POST with a streamed body.
    let bytes = data(20, 300_000);
    let d = sha256(&bytes);
    let r = http()
        .post(format!("{}/v2/te/blobs/uploads/?digest={d}", w.url()))
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(
            bytes.clone(),
        )))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text());
    assert_eq!(
        blob(&w, "te", &d).bytes().unwrap().as_ref(),
        bytes.as_slice()
    );
}
