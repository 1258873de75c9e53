//! The S3 storage backend end to end: a real wharf on a single-node Garage
//! (`support::garage`). Pushes with skopeo and with the HTTP API (monolithic
//! and chunked, above the multipart part size), pulls back byte-identical,
//! Range GETs, upload sessions resumed across a restart, pull-through into
//! the bucket, delete + GC, start-up errors and an unreachable bucket.
//!
//! Without a garage binary every test prints
//! `SKIPPED: no garage binary (tests/run.sh installs it)` and passes.
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use support::garage::Garage;
use support::image::*;
use support::s3::xml_values;
use support::upstream::{skopeo, skopeo_pull, Upstream};
use support::*;

const MIB: usize = 1 << 20;
const PREFIX: &str = "reg/";

/// A wharf on node 0's bucket with 5 MiB parts.
fn wharf_on(g: &Garage, config: &str, admin: bool) -> Wharf {
    let mut o = g.wharf_options(0, PREFIX, "5MiB", config);
    o.admin = admin;
    Wharf::start_with(o)
}

/// Keys in the bucket under `reg/<dir>`.
fn keys(g: &Garage, dir: &str) -> Vec<String> {
    g.s3(0).list_keys(&[("prefix", &format!("{PREFIX}{dir}"))])
}

/// Multipart uploads in progress in the bucket.
fn open_multipart(g: &Garage) -> Vec<String> {
    let r = g.s3(0).request("GET", "", &[("uploads", "")], &[], b"");
    xml_values(&r.text(), "Key")
}

/// No multipart upload in progress and no temp object in the bucket.
fn assert_no_leftovers(g: &Garage) {
    assert!(
        open_multipart(g).is_empty(),
        "multipart uploads left: {:?}",
        open_multipart(g)
    );
    assert!(
        keys(g, "tmp/").is_empty(),
        "temp objects left: {:?}",
        keys(g, "tmp/")
    );
}

/// The bucket key of blob `digest`.
fn blob_key(digest: &str) -> String {
    let hex = digest.trim_start_matches("sha256:");
    format!("{PREFIX}blobs/sha256/{}/{hex}", &hex[..2])
}

/// `skopeo copy` of `layout:tag` to wharf as `reference`.
fn skopeo_push(w: &Wharf, layout: &OciLayout, tag: &str, reference: &str) {
    let args: Vec<String> = vec![
        "copy".into(),
        "--preserve-digests".into(),
        "--dest-tls-verify=false".into(),
        "--dest-no-creds".into(),
        layout.transport_ref(tag),
        format!("docker://{}/{reference}", w.host()),
    ];
    let out = skopeo(w.tmp.path(), &args);
    assert!(
        out.status.success(),
        "skopeo push failed: {}\nwharf log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        w.logs()
    );
}

/// Every blob of `img` came back identical in `pulled`.
fn assert_same_image(src: &OciLayout, pulled: &OciLayout, img: &Image) {
    for d in img.blob_digests() {
        assert!(pulled.has_blob(&d), "{d} missing after the pull");
        assert_eq!(fast_sha256_file(&pulled.blob_path(&d)), d, "{d} differs");
        assert_eq!(
            std::fs::metadata(src.blob_path(&d)).unwrap().len(),
            std::fs::metadata(pulled.blob_path(&d)).unwrap().len()
        );
    }
}

fn have_skopeo() -> bool {
    if have("skopeo") {
        return true;
    }
    eprintln!("SKIPPED: skopeo is not installed (tests/run.sh installs it)");
    false
}

#[test]
fn skopeo_push_pull_byte_identical_and_after_restart() {
    let Some(g) = Garage::start(1) else { return };
    if !have_skopeo() {
        return;
    }
    let mut w = wharf_on(&g, "remotes = []\n", false);
    let tmp = tempfile::tempdir().unwrap();
    let src = OciLayout::create(&tmp.path().join("src"));
    // A 12 MiB layer (gzip of noise: as large): three 5 MiB parts, the
    // last one short. (Gzip layers: skopeo compresses tar layers when it
    // pulls into a layout.)
    let img = src.image(
        "v1",
        &ImageSpec::oci(
            3,
            vec![
                LayerSpec::gzip(4 << 10),
                LayerSpec::gzip(12 << 20),
                LayerSpec::gzip(3),
            ],
        ),
    );
    let t = Instant::now();
    skopeo_push(&w, &src, "v1", "team/app:1");
    eprintln!("skopeo push of a 12 MiB image into S3: {:.1?}", t.elapsed());
    for d in img.blob_digests() {
        assert!(
            keys(&g, "blobs/").contains(&blob_key(&d)),
            "{d} is not in the bucket"
        );
    }
    assert!(keys(&g, "repos/team/app/_tags/")
        .iter()
        .any(|k| k.ends_with("/1")));
    assert_no_leftovers(&g);

    let t = Instant::now();
    let pulled = skopeo_pull(&w, "team/app:1", &tmp.path().join("out"), "v1");
    eprintln!("skopeo pull from S3: {:.1?}", t.elapsed());
    assert_same_image(&src, &pulled, &img);

    // Nothing of the registry's state lives in the process.
    w.restart();
    let pulled = skopeo_pull(&w, "team/app:1", &tmp.path().join("again"), "v1");
    assert_same_image(&src, &pulled, &img);
    let tags: serde_json::Value = w
        .req(Method::GET, "/v2/team/app/tags/list")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["1"]));
}

/// `PATCH` `chunk` at `off` to the session at `loc`; returns the next location.
fn patch(w: &Wharf, loc: &str, off: usize, chunk: &[u8]) -> String {
    let r = w
        .req_url(Method::PATCH, loc)
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("{off}-{}", off + chunk.len() - 1))
        .body(chunk.to_vec())
        .send()
        .unwrap();
    assert_eq!(
        r.status(),
        202,
        "PATCH at {off}: {:?}\n{}",
        r.text(),
        w.logs()
    );
    abs_url(w, &header(&r, "location"))
}

fn start_session(w: &Wharf, repo: &str) -> String {
    let r = w
        .req(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    abs_url(w, &header(&r, "location"))
}

fn finish(w: &Wharf, loc: &str, digest: &str, rest: &[u8]) -> reqwest::blocking::Response {
    let sep = if loc.contains('?') { '&' } else { '?' };
    w.req_url(Method::PUT, &format!("{loc}{sep}digest={digest}"))
        .header("content-type", "application/octet-stream")
        .body(rest.to_vec())
        .send()
        .unwrap()
}

fn get_blob(
    w: &Wharf,
    repo: &str,
    digest: &str,
    range: Option<&str>,
) -> reqwest::blocking::Response {
    let mut r = w.req(Method::GET, &format!("/v2/{repo}/blobs/{digest}"));
    if let Some(range) = range {
        r = r.header("range", range);
    }
    r.send().unwrap()
}

#[test]
fn uploads_above_the_part_size_monolithic_chunked_resumed_and_ranges() {
    let Some(g) = Garage::start(1) else { return };
    let mut w = wharf_on(&g, "remotes = []\n", false);

    // Monolithic: one POST ?digest= of 12 MiB.
    let mono = data(21, 12 * MIB);
    let d_mono = push_blob(&w, "app/x", &mono);
    let r = get_blob(&w, "app/x", &d_mono, None);
    assert_eq!(r.status(), 200);
    assert_eq!(sha256(&r.bytes().unwrap()), d_mono);

    // Chunked: 3 MiB PATCHes (smaller than a part: the tail is kept
    // between requests), wharf restarted in the middle, the last chunk
    // with the PUT.
    let blob = data(22, 12 * MIB + 12345);
    let d = sha256(&blob);
    let mut loc = start_session(&w, "app/x");
    let chunks: Vec<&[u8]> = blob.chunks(3 * MIB).collect();
    let mut off = 0;
    for c in &chunks[..2] {
        loc = patch(&w, &loc, off, c);
        off += c.len();
    }
    w.restart();
    let r = w.req_url(Method::GET, &loc).send().unwrap();
    assert_eq!(r.status(), 204, "session survives the restart");
    assert_eq!(header(&r, "range"), format!("0-{}", off - 1));
    // A chunk at the wrong offset is refused; nothing changes.
    let r = w
        .req_url(Method::PATCH, &loc)
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("{}-{}", off + 1, off + 10))
        .body(vec![0u8; 10])
        .send()
        .unwrap();
    assert_eq!(r.status(), 416);
    for c in &chunks[2..chunks.len() - 1] {
        loc = patch(&w, &loc, off, c);
        off += c.len();
    }
    let r = finish(&w, &loc, &d, chunks[chunks.len() - 1]);
    assert_eq!(r.status(), 201, "{:?}\n{}", r.text(), w.logs());
    let got = get_blob(&w, "app/x", &d, None).bytes().unwrap();
    assert_eq!((got.len(), sha256(&got)), (blob.len(), d.clone()));

    // Ranges, across part boundaries.
    for (range, from, to) in [
        ("bytes=0-9", 0, 10),
        ("bytes=5242870-5242889", 5_242_870, 5_242_890),
        (
            &format!("bytes={}-", blob.len() - 100)[..],
            blob.len() - 100,
            blob.len(),
        ),
        ("bytes=-7", blob.len() - 7, blob.len()),
    ] {
        let r = get_blob(&w, "app/x", &d, Some(range));
        assert_eq!(r.status(), 206, "{range}");
        assert_eq!(
            header(&r, "content-range"),
            format!("bytes {from}-{}/{}", to - 1, blob.len())
        );
        assert_eq!(&r.bytes().unwrap()[..], &blob[from..to], "{range}");
    }
    let r = get_blob(&w, "app/x", &d, Some(&format!("bytes={}-", blob.len())));
    assert_eq!(r.status(), 416);
    let r = w
        .req(Method::HEAD, &format!("/v2/app/x/blobs/{d}"))
        .send()
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), header(&r, "content-length")),
        (200, blob.len().to_string())
    );

    // A wrong digest stores nothing, above the part size too.
    let wrong = data(23, 6 * MIB);
    let claimed = sha256(b"something else");
    let loc = start_session(&w, "app/x");
    let r = finish(&w, &loc, &claimed, &wrong);
    assert_oci_error(r, 400, "DIGEST_INVALID");
    assert_eq!(get_blob(&w, "app/x", &claimed, None).status(), 404);
    assert!(!keys(&g, "blobs/").contains(&blob_key(&claimed)));
    assert!(
        keys(&g, "uploads/").is_empty(),
        "session objects left: {:?}",
        keys(&g, "uploads/")
    );
    assert_no_leftovers(&g);
}

#[test]
fn pull_through_into_s3_serves_with_the_upstream_stopped() {
    let Some(g) = Garage::start(1) else { return };
    if !have_skopeo() {
        return;
    }
    let mut up = Upstream::anonymous();
    let img = up.push_image(
        "lib/app",
        "v1",
        &ImageSpec::oci(31, vec![LayerSpec::gzip(3_000), LayerSpec::gzip(11 << 20)]),
    );
    let w = wharf_on(&g, &up.remote_toml("up", ""), false);
    let tmp = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let first = skopeo_pull(&w, "up/lib/app:v1", &tmp.path().join("a"), "v1");
    eprintln!("cold pull-through into S3: {:.1?}", t.elapsed());
    for d in img.blob_digests() {
        assert_eq!(fast_sha256_file(&first.blob_path(&d)), d);
    }
    for d in img.blob_digests() {
        assert!(
            keys(&g, "blobs/").contains(&blob_key(&d)),
            "{d} was not cached in the bucket"
        );
        assert_eq!(up.blob_gets("lib/app", &d), 1, "{d}");
    }
    up.stop();
    let second = skopeo_pull(&w, "up/lib/app:v1", &tmp.path().join("b"), "v1");
    for d in img.blob_digests() {
        assert_eq!(fast_sha256_file(&second.blob_path(&d)), d);
    }
    assert_no_leftovers(&g);
}

#[test]
fn delete_and_gc_remove_objects_from_the_bucket() {
    let Some(g) = Garage::start(1) else { return };
    let w = wharf_on(&g, "remotes = []\n", true);
    let kept = push_image(&w, "app/kept", "v1", 1);
    let gone = push_image(&w, "app/gone", "v1", 2);
    let orphan = push_blob(&w, "app/kept", &data(99, 6 * MIB));
    let r = w
        .req(
            Method::DELETE,
            &format!("/v2/app/gone/manifests/{}", gone.digest),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = w
        .req(Method::POST, "/api/v1/gc")
        .body("{\"grace\": \"0s\"}")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text());
    let blobs = keys(&g, "blobs/");
    for d in [&orphan, &gone.digest, &gone.config] {
        assert!(!blobs.contains(&blob_key(d)), "{d} survived GC");
    }
    for d in kept.layers.iter().chain([&kept.digest, &kept.config]) {
        assert!(blobs.contains(&blob_key(d)), "GC removed {d}");
    }
    let r = w
        .req(
            Method::GET,
            &format!("/v2/app/kept/manifests/{}", kept.digest),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap(), kept.bytes);
}

/// Run `wharf serve` with `opts`' config and environment, expecting it to
/// exit during start-up; returns its output.
fn failed_start(opts: &Options) -> String {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, opts.config.as_deref().unwrap_or_default()).unwrap();
    let mut child = Command::new(bin())
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--config",
        ])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .envs(opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env_remove("WHARF_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("wharf kept running with an unusable bucket");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn start_up_fails_clearly_on_wrong_credentials_or_bucket() {
    let Some(g) = Garage::start(1) else { return };
    let mut o = g.wharf_options(0, PREFIX, "5MiB", "remotes = []\n");
    let wrong_secret = "0123456789abcdef-not-the-secret";
    o.env[1].1 = wrong_secret.into();
    let out = failed_start(&o);
    eprintln!("wrong secret:\n{out}");
    assert!(
        out.contains("wharf-test") && out.contains(&g.s3_url(0)),
        "names bucket and endpoint: {out}"
    );
    assert!(
        out.contains("credentials") || out.contains("denied"),
        "{out}"
    );
    assert!(
        !out.contains(wrong_secret) && !out.contains(&g.secret_key),
        "a secret leaked: {out}"
    );

    let o = g.wharf_options(0, PREFIX, "5MiB", "remotes = []\n");
    let mut cfg = o
        .config
        .clone()
        .unwrap()
        .replace("bucket = \"wharf-test\"", "bucket = \"no-such-bucket\"");
    let out = failed_start(&Options {
        config: Some(cfg.clone()),
        ..o.clone()
    });
    assert!(
        out.contains("no-such-bucket") && out.contains("does not exist"),
        "{out}"
    );

    cfg = o
        .config
        .clone()
        .unwrap()
        .replace(&g.s3_url(0), &format!("http://127.0.0.1:{}", free_port()));
    let out = failed_start(&Options {
        config: Some(cfg),
        ..o
    });
    assert!(
        out.contains("wharf-test") && out.contains("unreachable"),
        "{out}"
    );
}

#[test]
fn an_unreachable_bucket_fails_readiness_and_answers_unavailable() {
    let Some(g) = Garage::start(1) else { return };
    // A configured project: whether `app/x` is local does not depend on
    // reading the store.
    let w = wharf_on(
        &g,
        "remotes = []\n[[projects]]\nname = \"app\"\npublic = true\n",
        false,
    );
    let pushed = push_image(&w, "app/x", "v1", 5);
    // And a namespace that is local only because it holds content.
    push_image(&w, "other/y", "v1", 6);
    assert_eq!(w.req(Method::GET, "/readyz").send().unwrap().status(), 200);
    g.stop_node(0);
    let r = w.req(Method::GET, "/readyz").send().unwrap();
    assert_eq!(r.status(), 503, "{:?}", r.text());
    let r = get_blob(&w, "app/x", &pushed.layers[0], None);
    let body = assert_oci_error(r, 503, "UNAVAILABLE");
    assert!(
        body.to_string().contains("storage is unavailable"),
        "{body}"
    );
    let r = w
        .req(Method::GET, "/v2/other/y/manifests/v1")
        .send()
        .unwrap();
    let body = assert_oci_error(r, 503, "UNAVAILABLE");
    assert!(
        body.to_string().contains("storage is unavailable"),
        "not a 404 while the store is down: {body}"
    );
    g.restart_node(0);
    wait_until("ready again", Duration::from_secs(30), || {
        w.req(Method::GET, "/readyz")
            .send()
            .is_ok_and(|r| r.status() == 200)
    });
    let r = get_blob(&w, "app/x", &pushed.layers[0], None);
    assert_eq!(r.status(), 200);
    assert_eq!(sha256(&r.bytes().unwrap()), pushed.layers[0]);
}

/// Push (one monolithic POST) and pull a 100 MiB blob through a wharf on
/// S3 and through one on the filesystem; prints the times and wharf's peak
/// RSS (no timing assertions: a record for the README).
#[test]
fn measure_100mib_blob_s3_vs_filesystem() {
    let Some(g) = Garage::start(1) else { return };
    let blob = data(77, 100 * MIB);
    let d = sha256(&blob);
    let s3 = Wharf::start_with(g.wharf_options(0, PREFIX, "16MiB", "remotes = []\n"));
    let fs = Wharf::start_with(Options {
        config: Some("remotes = []\n".into()),
        ..Options::default()
    });
    for (name, w) in [("s3", &s3), ("filesystem", &fs)] {
        let t = Instant::now();
        assert_eq!(push_blob(w, "bench/x", &blob), d);
        let push = t.elapsed();
        let t = Instant::now();
        let got = get_blob(w, "bench/x", &d, None).bytes().unwrap();
        let pull = t.elapsed();
        assert_eq!(sha256(&got), d);
        let peak = support::disk::vm_hwm_kib(w.pid().unwrap());
        eprintln!(
            "100 MiB blob on {name}: push {push:.2?}, pull {pull:.2?}, wharf peak RSS {} MiB",
            peak / 1024
        );
    }
}

/// What a crashed wharf leaves in the bucket: a multipart upload under
/// `tmp/` (a pull-through fetch), a session's upload whose session is gone,
/// a completed temp object. The periodic cleanup removes all three; a live
/// session's upload stays.
#[test]
fn cleanup_aborts_abandoned_multipart_uploads_and_temp_objects() {
    let Some(g) = Garage::start(1) else { return };
    let s3 = g.s3(0);
    let mpu = |key: &str| {
        let r = s3.request("POST", key, &[("uploads", "")], &[], b"");
        assert_eq!(r.status, 200, "{}", r.text());
        let id = support::s3::xml_value(&r.text(), "UploadId").unwrap();
        let r = s3.request(
            "PUT",
            key,
            &[("partNumber", "1"), ("uploadId", &id)],
            &[],
            b"part",
        );
        assert_eq!(r.status, 200);
    };
    mpu(&format!("{PREFIX}tmp/0f0e0d0c-crashed-fetch"));
    mpu(&format!(
        "{PREFIX}uploads/6d8a2a0e-9c1e-4f4e-8d7b-000000000001/data"
    ));
    assert_eq!(
        s3.put(&format!("{PREFIX}tmp/completed-not-copied"), b"x")
            .status,
        200
    );
    assert_eq!(open_multipart(&g).len(), 2);
    // Age them past temp_max_age.
    std::thread::sleep(Duration::from_millis(1500));
    let w = wharf_on(
        &g,
        "remotes = []\n[storage]\ntemp_max_age = \"1s\"\ncleanup_interval = \"1s\"\n",
        false,
    );
    // A live session with data in flight is not touched.
    let loc = start_session(&w, "app/x");
    let part = data(41, 6 * MIB);
    patch(&w, &loc, 0, &part);
    wait_until("the cleanup", Duration::from_secs(30), || {
        open_multipart(&g)
            .iter()
            .all(|k| !k.contains("crashed") && !k.contains("000000000001"))
            && keys(&g, "tmp/").is_empty()
    });
    assert_eq!(
        open_multipart(&g).len(),
        1,
        "the live session's upload: {:?}",
        open_multipart(&g)
    );
    std::thread::sleep(Duration::from_millis(2500));
    let r = finish(&w, &loc, &sha256(&part), b"");
    assert_eq!(r.status(), 201, "{:?}", r.text());
    assert_no_leftovers(&g);
}

/// A wharf on node 0's bucket under `prefix`, with 5 MiB parts and
/// `s3_keys` added to its `[storage.s3]` table.
fn wharf_with_s3_keys(g: &Garage, prefix: &str, config: &str, s3_keys: &str, admin: bool) -> Wharf {
    let mut o = g.wharf_options(0, prefix, "5MiB", config);
    // The storage table is the config's last: these keys land in it.
    o.config = o.config.map(|c| format!("{c}{s3_keys}\n"));
    o.admin = admin;
    o.env.push(("RUST_LOG".into(), "debug".into()));
    Wharf::start_with(o)
}

/// `GET url` (with `range`), following nothing.
fn get_url(url: &str, range: Option<&str>) -> reqwest::blocking::Response {
    let mut r = http().get(url);
    if let Some(range) = range {
        r = r.header("range", range);
    }
    r.send().unwrap()
}

/// Secrets and signatures never reach the log.
fn assert_log_clean(g: &Garage, w: &Wharf) {
    let log = w.logs();
    assert!(!log.contains(&g.secret_key), "the S3 secret key was logged");
    assert!(
        !log.contains("X-Amz-Signature"),
        "a presigned URL was logged"
    );
}

/// `redirect = true`: blob GETs of pushed and of pulled-through blobs
/// answer 307 to a presigned Garage URL that yields the exact bytes (Range
/// honoured by Garage); HEAD, manifests, unauthorized clients and
/// unsatisfiable ranges are answered by wharf; skopeo (which follows
/// redirects) pulls byte-identical; nothing signed is logged.
#[test]
fn redirect_sends_blob_gets_to_presigned_urls() {
    let Some(g) = Garage::start(1) else { return };
    let keys_on = "redirect = true\nredirect_expiry = \"5m\"";
    let w = wharf_with_s3_keys(&g, "red/", "remotes = []\n", keys_on, true);
    let blob = data(61, 12 * MIB + 7);
    let d = push_blob(&w, "app/r", &blob);

    let r = get_blob(&w, "app/r", &d, None);
    assert_eq!(r.status(), 307, "{}", w.logs());
    let loc = header(&r, "location");
    assert!(loc.starts_with(&g.s3_url(0)), "not a Garage URL: {loc}");
    assert!(loc.contains("X-Amz-Signature="), "not presigned: {loc}");
    assert!(loc.contains("X-Amz-Expires=300"), "{loc}");
    assert_eq!(header(&r, "docker-content-digest"), d);
    assert_eq!(header(&r, "cache-control"), "no-store");
    let got = get_url(&loc, None);
    assert_eq!(got.status(), 200);
    let got = got.bytes().unwrap();
    assert_eq!((got.len(), sha256(&got)), (blob.len(), d.clone()));

    // Ranges: redirected too, and honoured by the object store.
    for (range, from, to) in [
        ("bytes=5242870-5242889", 5_242_870, 5_242_890),
        ("bytes=-7", blob.len() - 7, blob.len()),
    ] {
        let r = get_blob(&w, "app/r", &d, Some(range));
        assert_eq!(r.status(), 307, "{range}");
        let got = get_url(&header(&r, "location"), Some(range));
        assert_eq!(got.status(), 206, "{range}");
        assert_eq!(&got.bytes().unwrap()[..], &blob[from..to], "{range}");
    }
    let r = get_blob(&w, "app/r", &d, Some(&format!("bytes={}-", blob.len())));
    assert_eq!(r.status(), 416);
    // HEAD stays local; an absent blob is 404, not a redirect.
    let r = w
        .req(Method::HEAD, &format!("/v2/app/r/blobs/{d}"))
        .send()
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), header(&r, "content-length")),
        (200, blob.len().to_string())
    );
    assert_eq!(
        get_blob(&w, "app/r", &sha256(b"absent"), None).status(),
        404
    );
    // An unauthorized client never sees a URL.
    let r = http()
        .get(format!("{}/v2/app/r/blobs/{d}", w.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("location").is_none());
    assert_log_clean(&g, &w);
    drop(w);

    if !have_skopeo() {
        return;
    }
    // skopeo follows the redirects; manifests are served by wharf; a
    // pulled-through blob is redirected once committed.
    let up = Upstream::anonymous();
    let img_up = up.push_image(
        "lib/app",
        "v1",
        &ImageSpec::oci(62, vec![LayerSpec::gzip(3_000), LayerSpec::gzip(6 << 20)]),
    );
    let w = wharf_with_s3_keys(&g, "red2/", &up.remote_toml("up", ""), keys_on, false);
    let tmp = tempfile::tempdir().unwrap();
    let src = OciLayout::create(&tmp.path().join("src"));
    let img = src.image(
        "v1",
        &ImageSpec::oci(63, vec![LayerSpec::gzip(4 << 10), LayerSpec::gzip(7 << 20)]),
    );
    skopeo_push(&w, &src, "v1", "team/app:1");
    let pulled = skopeo_pull(&w, "team/app:1", &tmp.path().join("out"), "v1");
    assert_same_image(&src, &pulled, &img);
    let r = w
        .req(Method::GET, "/v2/team/app/manifests/1")
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "a manifest is never redirected");

    let first = skopeo_pull(&w, "up/lib/app:v1", &tmp.path().join("a"), "v1");
    let second = skopeo_pull(&w, "up/lib/app:v1", &tmp.path().join("b"), "v1");
    for d in img_up.blob_digests() {
        assert_eq!(fast_sha256_file(&first.blob_path(&d)), d);
        assert_eq!(fast_sha256_file(&second.blob_path(&d)), d);
        let r = get_blob(&w, "up/lib/app", &d, None);
        assert_eq!(r.status(), 307, "cached {d}");
        let got = get_url(&header(&r, "location"), None).bytes().unwrap();
        assert_eq!(sha256(&got), d);
        assert_eq!(up.blob_gets("lib/app", &d), 1, "{d}");
    }
    assert_log_clean(&g, &w);

    // With redirect off (the default) nothing changes: wharf streams.
    let off = wharf_on(&g, "remotes = []\n", false);
    let d = push_blob(&off, "app/off", &blob);
    let r = get_blob(&off, "app/off", &d, None);
    assert_eq!(r.status(), 200);
    assert_eq!(sha256(&r.bytes().unwrap()), d);
}

/// `redirect_endpoint`: wharf reaches Garage at `127.0.0.1:PORT`, clients
/// at `localhost:PORT` (as an in-cluster address and a public one). The
/// `Location` names the public address, following it yields the blob, and
/// the signature covers that host: the same URL sent to wharf's address
/// is refused.
#[test]
fn redirect_endpoint_names_the_address_clients_use() {
    let Some(g) = Garage::start(1) else { return };
    let internal = g.s3_url(0);
    let public = internal.replace("127.0.0.1", "localhost");
    assert_ne!(public, internal);
    let keys_on = format!("redirect = true\nredirect_endpoint = \"{public}/\"");
    let w = wharf_with_s3_keys(&g, "redpub/", "remotes = []\n", &keys_on, false);
    let blob = data(64, 6 * MIB + 5);
    let d = push_blob(&w, "app/p", &blob);

    let r = get_blob(&w, "app/p", &d, None);
    assert_eq!(r.status(), 307, "{}", w.logs());
    let loc = header(&r, "location");
    assert!(
        loc.starts_with(&format!("{public}/{}/redpub/blobs/", g.bucket)),
        "not at the public endpoint: {loc}"
    );
    assert!(loc.contains("X-Amz-Signature="), "not presigned: {loc}");
    let got = get_url(&loc, None);
    assert_eq!(got.status(), 200);
    let got = got.bytes().unwrap();
    assert_eq!((got.len(), sha256(&got)), (blob.len(), d.clone()));
    let r = get_url(&loc, Some("bytes=-9"));
    assert_eq!(r.status(), 206);
    assert_eq!(&r.bytes().unwrap()[..], &blob[blob.len() - 9..]);

    // Signed for the public host: Garage refuses it under another name.
    let elsewhere = loc.replacen(&public, &internal, 1);
    assert_eq!(get_url(&elsewhere, None).status(), 403);
    assert_log_clean(&g, &w);
}

/// The pull-through cache stores its manifests through the GC fence, like
/// a push: caching an image writes a reference mark for its manifest,
/// config and layers, and an eviction (here a purge, the same delete path)
/// keeps blobs marked within the last 2 minutes, so a manifest cached on
/// another replica meanwhile keeps its blobs; the next GC collects them.
#[test]
fn cached_manifests_are_fenced_like_pushes() {
    let Some(g) = Garage::start(1) else { return };
    let up = support::fake_upstream::FakeUpstream::start();
    let img = up.add_image("lib/app", "v1", 5);
    let config = format!(
        "[storage]\ngc_grace = \"0s\"\n{}",
        up.remote_toml("up", None, "")
    );
    let w = wharf_on(&g, &config, true);
    let r = w
        .req(Method::GET, "/v2/up/lib/app/manifests/v1")
        .header("accept", MT_OCI_MANIFEST)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", w.logs());
    for d in img.blobs() {
        let r = w
            .req(Method::GET, &format!("/v2/up/lib/app/blobs/{d}"))
            .send();
        assert_eq!(sha256(&r.unwrap().bytes().unwrap()), d);
    }
    let mark = |d: &str| format!("gc/refs/sha256/{}", d.trim_start_matches("sha256:"));
    let mut stored = img.blobs();
    stored.push(img.digest.clone());
    for d in &stored {
        assert_eq!(keys(&g, &mark(d)).len(), 1, "no reference mark for {d}");
    }

    let r = w
        .req(
            Method::DELETE,
            &format!("/api/v1/cache/up/lib/app/images/{}", img.digest),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", w.logs());
    let report: serde_json::Value = r.json().unwrap();
    assert_eq!(
        report["evicted"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );
    assert_eq!(
        report["blobs_removed"], 0,
        "marked 0-2 minutes ago: {report}"
    );
    let present = |d: &String| keys(&g, blob_key(d).trim_start_matches(PREFIX)).len() == 1;
    assert!(stored.iter().all(present), "a marked blob was deleted");
    // The GC (grace 0 here) takes what nothing references any more.
    let r = w.req(Method::POST, "/api/v1/gc").body("{}").send().unwrap();
    assert_eq!(r.status(), 200, "{}", w.logs());
    let gc: serde_json::Value = r.json().unwrap();
    assert_eq!(gc["blobs_removed"], stored.len(), "{gc}");
    assert!(!stored.iter().any(present), "{gc}");
}

/// Blobs above `multipart_copy_threshold` (lowered to 8 MiB here; 5 GiB,
/// AWS's CopyObject limit, by default) are committed with a multipart copy
/// (`UploadPartCopy` of ranges): a 20 MiB monolithic and a 20 MiB chunked
/// push take that path (the log says so) and pull back byte-identical; a
/// 6 MiB one does not.
#[test]
fn multipart_copy_above_the_threshold() {
    let Some(g) = Garage::start(1) else { return };
    let w = wharf_with_s3_keys(
        &g,
        PREFIX,
        "remotes = []\n",
        "multipart_copy_threshold = \"8MiB\"",
        false,
    );
    let copies = |w: &Wharf| {
        w.logs()
            .matches("multipart copy: the object is above")
            .count()
    };
    let mono = data(71, 20 * MIB + 3);
    let d_mono = push_blob(&w, "app/big", &mono);
    assert_eq!(copies(&w), 1, "{}", w.logs());

    let blob = data(72, 20 * MIB + 12345);
    let d = sha256(&blob);
    let mut loc = start_session(&w, "app/big");
    let mut off = 0;
    let chunks: Vec<&[u8]> = blob.chunks(7 * MIB).collect();
    for c in &chunks[..chunks.len() - 1] {
        loc = patch(&w, &loc, off, c);
        off += c.len();
    }
    let r = finish(&w, &loc, &d, chunks[chunks.len() - 1]);
    assert_eq!(r.status(), 201, "{:?}\n{}", r.text(), w.logs());
    assert_eq!(copies(&w), 2);

    let small = data(73, 6 * MIB);
    push_blob(&w, "app/big", &small);
    assert_eq!(copies(&w), 2, "6 MiB is below the threshold");

    for (d, bytes) in [(&d_mono, &mono), (&d, &blob)] {
        let got = get_blob(&w, "app/big", d, None).bytes().unwrap();
        assert_eq!((got.len(), sha256(&got)), (bytes.len(), d.clone()));
        let r = get_blob(&w, "app/big", d, Some("bytes=8388600-8388615"));
        assert_eq!(&r.bytes().unwrap()[..], &bytes[8_388_600..8_388_616]);
    }
    // The same 20 MiB again: the existing blob is refreshed (a multipart
    // copy onto itself), the push succeeds.
    assert_eq!(push_blob(&w, "app/other", &mono), d_mono);
    assert_eq!(copies(&w), 3);
    assert_no_leftovers(&g);
    assert!(
        keys(&g, "uploads/").is_empty(),
        "{:?}",
        keys(&g, "uploads/")
    );
}

fn sha512(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha512:{}", hex::encode(sha2::Sha512::digest(bytes)))
}

/// sha512 pushes on S3: monolithic, and chunked above the part size (the
/// session's data is read back from the bucket at the final PUT and hashed
/// again), across a restart; a wrong sha512 stores nothing.
#[test]
fn sha512_pushes_monolithic_and_chunked() {
    let Some(g) = Garage::start(1) else { return };
    let mut w = wharf_on(&g, "remotes = []\n", false);

    let small = data(81, 70_000);
    let d_small = sha512(&small);
    let r = w
        .req(
            Method::POST,
            &format!("/v2/s512/blobs/uploads/?digest={d_small}"),
        )
        .header("content-type", "application/octet-stream")
        .body(small.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text());
    let mono = data(82, 12 * MIB + 1);
    let d_mono = sha512(&mono);
    let r = w
        .req(
            Method::POST,
            &format!("/v2/s512/blobs/uploads/?digest={d_mono}"),
        )
        .header("content-type", "application/octet-stream")
        .body(mono.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text());

    // Chunked: a small one (no part: the tail only), and 12 MiB in 3 MiB
    // chunks with a restart in the middle.
    let loc = start_session(&w, "s512");
    let loc = patch(&w, &loc, 0, &small[..30_000]);
    let r = finish(&w, &loc, &d_small, &small[30_000..]);
    assert_eq!(r.status(), 201, "{:?}\n{}", r.text(), w.logs());
    let blob = data(83, 12 * MIB + 4321);
    let d = sha512(&blob);
    let mut loc = start_session(&w, "s512");
    let chunks: Vec<&[u8]> = blob.chunks(3 * MIB).collect();
    let mut off = 0;
    for (i, c) in chunks[..chunks.len() - 1].iter().enumerate() {
        loc = patch(&w, &loc, off, c);
        off += c.len();
        if i == 1 {
            w.restart();
        }
    }
    let r = finish(&w, &loc, &d, chunks[chunks.len() - 1]);
    assert_eq!(r.status(), 201, "{:?}\n{}", r.text(), w.logs());
    assert_eq!(header(&r, "docker-content-digest"), d);

    for (d, bytes) in [(&d_small, &small), (&d_mono, &mono), (&d, &blob)] {
        let r = get_blob(&w, "s512", d, None);
        assert_eq!(r.status(), 200, "{d}");
        assert_eq!(header(&r, "docker-content-digest"), *d);
        assert!(r.bytes().unwrap()[..] == bytes[..], "{d} differs");
    }

    // A wrong sha512, above the part size: refused, nothing left.
    let wrong = format!("sha512:{}", "0".repeat(128));
    let loc = start_session(&w, "s512");
    let loc = patch(&w, &loc, 0, &blob[..6 * MIB]);
    let r = finish(&w, &loc, &wrong, &blob[6 * MIB..7 * MIB]);
    assert_oci_error(r, 400, "DIGEST_INVALID");
    assert_eq!(get_blob(&w, "s512", &wrong, None).status(), 404);
    assert!(
        keys(&g, "uploads/").is_empty(),
        "{:?}",
        keys(&g, "uploads/")
    );
    assert!(!keys(&g, "blobs/sha512/")
        .iter()
        .any(|k| k.contains("/00000000")));
    assert_no_leftovers(&g);
}
