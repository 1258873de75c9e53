//! A remote is hostile: it may redirect anywhere, challenge with a realm it
//! controls, or send endless bodies. These tests run the real wharf against
//! small servers written here and check that wharf never gives a remote
//! more than the request it was sent (issue "Hardening", holes 1, 2, 9).
mod support;

use support::disk::*;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::fake_upstream::{basic_header, Conn, Request, Response, Server};
use support::upstream::remote_toml_with;
use support::*;

const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A server that records every request and answers with `answer`.
struct Recorder {
    server: Server,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl Recorder {
    fn start(answer: impl Fn(&Request) -> Response + Send + Sync + 'static) -> Recorder {
        let seen: Arc<Mutex<Vec<Request>>> = Arc::default();
        let s2 = seen.clone();
        let server = Server::start(move |req: Request, conn: &mut Conn| {
            let resp = answer(&req);
            s2.lock().unwrap().push(req.clone());
            let _ = resp.write(&mut conn.stream, req.method == "HEAD");
        });
        Recorder { server, seen }
    }

    fn url(&self) -> String {
        self.server.url()
    }

    fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }
}

fn start_wharf(remotes: &str) -> Wharf {
    Wharf::start_with(Options {
        config: Some(format!("[storage]\ngc_grace = \"0s\"\n{remotes}")),
        ..Options::default()
    })
}

fn get(w: &Wharf, path: &str) -> reqwest::blocking::Response {
    http().get(format!("{}{path}", w.url())).send().unwrap()
}

const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Hole 1: remote A (Basic auth) redirects a blob to storage host B, which
/// answers 401 with a Bearer challenge whose realm is C. wharf must not
/// send A's credentials to C, must not learn that challenge for A, and
/// must keep using Basic for A's other repositories.
#[test]
fn a_redirect_targets_challenge_never_gets_the_remotes_credentials() {
    let realm_c = Recorder::start(|_| Response::json(200, &serde_json::json!({"token": "stolen"})));
    let realm = format!("{}/token", realm_c.url());
    let storage_b = Recorder::start(move |_| {
        Response::new(401).header(
            "WWW-Authenticate",
            format!("Bearer realm=\"{realm}\",service=\"b\""),
        )
    });
    let b_url = storage_b.url();
    let creds = basic_header("user", "s3cret");
    let remote_a = Recorder::start(move |req| {
        if req.header("authorization") != Some(creds.as_str()) {
            return Response::new(401).header("WWW-Authenticate", "Basic realm=\"a\"");
        }
        if req.path.contains("/blobs/") {
            return Response::new(307).header("Location", format!("{b_url}/data?x=1"));
        }
        Response::new(200).header("Content-Type", MT_MANIFEST).body(format!(
            "{{\"schemaVersion\":2,\"mediaType\":\"{MT_MANIFEST}\",\"config\":{{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"{D}\",\"size\":0}},\"layers\":[]}}"
        ))
    });
    let w = start_wharf(&remote_toml_with(
        "a",
        &remote_a.url(),
        Some(("user", "s3cret")),
        "",
    ));

    let r = get(&w, &format!("/v2/a/team/app/blobs/{D}"));
    let v = assert_oci_error(r, 424, "UNAVAILABLE");
    assert!(
        v.to_string().contains("storage host") && v.to_string().contains("refused"),
        "{v}"
    );
    // Once more: still nothing learned.
    assert_eq!(
        get(&w, &format!("/v2/a/team/other/blobs/{D}")).status(),
        424
    );
    assert!(
        realm_c.requests().is_empty(),
        "the realm named by a redirect target was contacted: {:?}",
        realm_c.requests()
    );
    for r in storage_b.requests() {
        assert!(
            r.header("authorization").is_none(),
            "the storage host got credentials: {r:?}"
        );
    }
    // A's own challenge is unchanged: its manifests still pull with Basic.
    let r = get(&w, "/v2/a/team/third/manifests/v1");
    assert_eq!(r.status(), 200, "{:?}", r.text());
    assert!(realm_c.requests().is_empty());
}

/// Hole 2: only blob downloads follow redirects; manifests, tag lists and
/// referrers never leave the remote's origin, and no request goes to an
/// internal address a remote names.
#[test]
fn redirects_never_reach_internal_services() {
    let internal = Recorder::start(|_| {
        Response::json(200, &serde_json::json!({"name": "x", "tags": ["SECRET"]}))
    });
    let target = format!("http://localhost:{}/secret", internal.server.addr.port());
    let remote = Recorder::start(move |_| Response::new(302).header("Location", target.clone()));
    let w = start_wharf(&remote_toml_with("evil", &remote.url(), None, ""));
    for path in [
        "/v2/evil/app/tags/list".to_string(),
        "/v2/evil/app/manifests/v1".to_string(),
        format!("/v2/evil/app/blobs/{D}"),
    ] {
        let r = get(&w, &path);
        let status = r.status().as_u16();
        let text = r.text().unwrap_or_default();
        assert!(
            !text.contains("SECRET"),
            "{path}: an internal service's answer reached the client: {text}"
        );
        assert_eq!(status, 424, "{path}: {text}");
        assert!(text.contains("refused a redirect"), "{path}: {text}");
    }
    // Referrers of a remote are answered from the cache alone.
    assert!(!get(&w, &format!("/v2/evil/app/referrers/{D}"))
        .text()
        .unwrap()
        .contains("SECRET"));
    assert!(
        internal.requests().is_empty(),
        "wharf contacted the internal service: {:?}",
        internal.requests()
    );
}

/// A blob may be redirected to a storage host (here on wharf's own host,
/// another port), but a tag list may not, and an allow-list pins hosts.
#[test]
fn blob_redirects_follow_storage_hosts_and_the_allow_list() {
    let blob = data(5, 100_000);
    let d = sha256(&blob);
    let b2 = blob.clone();
    let storage = Recorder::start(move |_| {
        Response::new(200)
            .header("Content-Type", "application/octet-stream")
            .body(b2.clone())
    });
    let s_url = storage.url();
    let remote = Recorder::start(move |req| {
        Response::new(307).header("Location", format!("{s_url}{}", req.path))
    });
    let open = remote_toml_with("up", &remote.url(), None, "");
    let pinned = remote_toml_with(
        "pinned",
        &remote.url(),
        None,
        "redirect_hosts = [\"*.storage.example\"]",
    );
    let w = start_wharf(&format!("{open}{pinned}"));

    let r = get(&w, &format!("/v2/up/app/blobs/{d}"));
    assert_eq!(r.status(), 200);
    assert_eq!(sha256(&r.bytes().unwrap()), d);
    let n = storage.requests().len();
    assert_oci_error(get(&w, "/v2/up/app/tags/list"), 424, "UNAVAILABLE");
    assert_eq!(
        storage.requests().len(),
        n,
        "a tag list followed a redirect to another host"
    );
    let r = get(&w, &format!("/v2/pinned/app/blobs/{}", sha256(b"other")));
    let v = assert_oci_error(r, 424, "UNAVAILABLE");
    assert!(v.to_string().contains("redirect_hosts"), "{v}");
    assert_eq!(
        storage.requests().len(),
        n,
        "a host outside redirect_hosts was contacted"
    );
}

/// Write `len` bytes of `fill` after a header block (no Content-Length:
/// the body ends when the connection closes), giving up when the reader
/// stops reading.
fn endless(conn: &mut Conn, content_type: &str, len: usize) {
    let head =
        format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nConnection: close\r\n\r\n");
    if conn.stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    let chunk = vec![b' '; 1 << 20];
    let _ = conn.stream.set_write_timeout(Some(Duration::from_secs(5)));
    for _ in 0..len / chunk.len() {
        if conn.stream.write_all(&chunk).is_err() {
            return;
        }
    }
}

/// Hole 9: a 256 MiB manifest, a 32 MiB tag list and a 4 MiB token answer
/// are cut off at their limits; wharf's memory stays bounded.
#[test]
fn huge_bodies_from_a_remote_are_cut_off() {
    let token = Server::start(|_req, conn: &mut Conn| endless(conn, "application/json", 4 << 20));
    let realm = format!("{}/token", token.url());
    let remote = Server::start(move |req: Request, conn: &mut Conn| {
        if req.path.starts_with("/v2/tok/") && req.header("authorization").is_none() {
            let r = Response::new(401).header(
                "WWW-Authenticate",
                format!("Bearer realm=\"{realm}\",service=\"x\""),
            );
            let _ = r.write(&mut conn.stream, false);
        } else if req.path.ends_with("/tags/list") {
            endless(conn, "application/json", 32 << 20);
        } else {
            endless(conn, MT_MANIFEST, 256 << 20);
        }
    });
    let w = start_wharf(&remote_toml_with("big", &remote.url(), None, ""));
    let idle = vm_hwm_kib(w.pid().unwrap());

    let v = assert_oci_error(get(&w, "/v2/big/app/manifests/v1"), 424, "UNAVAILABLE");
    assert!(
        v.to_string().contains("big")
            && v.to_string()
                .contains("manifest larger than the limit of 4194304 bytes"),
        "{v}"
    );
    let v = assert_oci_error(get(&w, "/v2/big/app/tags/list"), 424, "UNAVAILABLE");
    assert!(
        v.to_string().contains("tag list larger than the limit"),
        "{v}"
    );
    let v = assert_oci_error(get(&w, "/v2/big/tok/app/manifests/v1"), 424, "UNAVAILABLE");
    assert!(
        v.to_string()
            .contains("token response larger than the limit"),
        "{v}"
    );
    let peak = vm_hwm_kib(w.pid().unwrap());
    eprintln!("wharf peak RSS: idle {idle} KiB, after the huge bodies {peak} KiB");
    assert!(
        peak < idle + 64 * 1024,
        "memory grew with the remote's bodies: {idle} -> {peak} KiB"
    );
}
