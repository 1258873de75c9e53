//! The routing table of the pull-through cache (issue 3), against a running
//! wharf with fake upstreams (`support::fake_upstream`) on 127.0.0.1:
//!
//! - `/v2/<remote>/<rest>` goes to `<remote>`, repository `<rest>`;
//! - an unmatched first segment goes to the default remote (reads of names
//!   that are not local repositories);
//! - containerd's `?ns=<host>` selects the remote by host, including
//!   configured `hosts` aliases; an unknown host is refused with 403 DENIED
//!   and wharf makes no connection for it (a listening fake at that host
//!   records nothing);
//! - writes (upload POST/PATCH/PUT, manifest PUT, DELETE) to remote names
//!   are refused with DENIED and never reach the remote, while pushes to
//!   local names work next to the remotes;
//! - an upstream 404 is remembered for `negative_ttl`.
//!
//! `library/` insertion only applies to Docker Hub (decided by the remote's
//! URL host), which a test on 127.0.0.1 cannot be: it is covered by the unit
//! tests in `src/proxy/policy.rs`.
mod support;

use std::time::Duration;

use support::fake_upstream::{FakeImage, FakeUpstream};
use support::{assert_oci_error, header, http, Options, Wharf};

const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// Two fakes: `a` (the default remote) and `b` (with a `hosts` alias), plus
/// a wharf routing to them.
struct Setup {
    a: FakeUpstream,
    b: FakeUpstream,
    w: Wharf,
}

fn setup(extra_b: &str) -> Setup {
    let a = FakeUpstream::start();
    let b = FakeUpstream::start();
    let config = format!(
        "{}\n{}",
        a.remote_toml("a", None, "default = true"),
        b.remote_toml(
            "b",
            None,
            &format!("hosts = [\"registry.b.test:5000\"]\n{extra_b}")
        )
    );
    let w = Wharf::start_with(Options {
        config: Some(config),
        ..Default::default()
    });
    Setup { a, b, w }
}

fn get(w: &Wharf, path: &str) -> reqwest::blocking::Response {
    http()
        .get(format!("{}{path}", w.url()))
        .header("Accept", ACCEPT)
        .send()
        .expect("GET through wharf")
}

/// GET a manifest through wharf and check it is `img`'s.
fn assert_manifest(w: &Wharf, path: &str, img: &FakeImage) {
    let r = get(w, path);
    assert_eq!(r.status(), 200, "GET {path}; wharf log:\n{}", w.logs());
    assert_eq!(
        header(&r, "docker-content-digest"),
        img.digest,
        "GET {path}"
    );
    assert_eq!(r.bytes().unwrap().to_vec(), img.manifest, "GET {path}");
}

fn assert_blob(w: &Wharf, path: &str, digest: &str) {
    let r = get(w, path);
    assert_eq!(r.status(), 200, "GET {path}; wharf log:\n{}", w.logs());
    assert_eq!(support::sha256(&r.bytes().unwrap()), digest, "GET {path}");
}

/// Requests the fake received whose path starts with `prefix`.
fn hits(f: &FakeUpstream, prefix: &str) -> usize {
    f.requests()
        .iter()
        .filter(|r| r.path.starts_with(prefix))
        .count()
}

#[test]
fn prefix_routes_to_the_named_remote() {
    let s = setup("");
    let in_a = s.a.add_image("team/app", "v1", 401);
    let in_b = s.b.add_image("team/app", "v1", 402);

    assert_manifest(&s.w, "/v2/b/team/app/manifests/v1", &in_b);
    assert_manifest(
        &s.w,
        &format!("/v2/b/team/app/manifests/{}", in_b.digest),
        &in_b,
    );
    assert_blob(
        &s.w,
        &format!("/v2/b/team/app/blobs/{}", in_b.layers[0]),
        &in_b.layers[0],
    );
    assert_manifest(&s.w, "/v2/a/team/app/manifests/v1", &in_a);
    assert_eq!(
        s.b.count("GET", "/v2/team/app/manifests/v1"),
        1,
        "{:#?}",
        s.b.requests()
    );
    assert_eq!(s.b.blob_gets("team/app", &in_b.layers[0]), 1);
    assert_eq!(s.a.count("GET", "/v2/team/app/manifests/v1"), 1);
    // The remote never sees the prefix.
    assert_eq!(
        hits(&s.a, "/v2/a/") + hits(&s.b, "/v2/b/") + hits(&s.a, "/v2/b/") + hits(&s.b, "/v2/a/"),
        0
    );

    // Deep names keep every segment after the prefix.
    let deep = s.b.add_image("org/group/sub/img", "1.0", 403);
    assert_manifest(&s.w, "/v2/b/org/group/sub/img/manifests/1.0", &deep);
    assert_eq!(s.b.count("GET", "/v2/org/group/sub/img/manifests/1.0"), 1);

    // A remote's name alone is not a repository on it.
    assert_oci_error(get(&s.w, "/v2/b/manifests/v1"), 400, "NAME_INVALID");
    // An unknown repository on a remote is the remote's 404.
    assert_oci_error(
        get(&s.w, "/v2/b/nope/manifests/v1"),
        404,
        "MANIFEST_UNKNOWN",
    );
}

#[test]
fn unmatched_names_go_to_the_default_remote() {
    let s = setup("");
    let img = s.a.add_image("team/svc", "v2", 404);
    s.b.add_image("team/svc", "v2", 405);

    assert_manifest(&s.w, "/v2/team/svc/manifests/v2", &img);
    assert_eq!(
        s.a.count("GET", "/v2/team/svc/manifests/v2"),
        1,
        "{:#?}",
        s.a.requests()
    );
    assert_eq!(
        hits(&s.b, "/v2/team/"),
        0,
        "the non-default remote was asked"
    );
    // Blobs of that repository follow once it is being pulled through wharf.
    for d in img.blobs() {
        assert_blob(&s.w, &format!("/v2/team/svc/blobs/{d}"), &d);
    }
    // Cached under the default remote's prefix too: same content, no new fetch.
    let before = s.a.requests().len();
    assert_manifest(&s.w, "/v2/a/team/svc/manifests/v2", &img);
    assert_blob(
        &s.w,
        &format!("/v2/a/team/svc/blobs/{}", img.layers[1]),
        &img.layers[1],
    );
    assert_eq!(
        s.a.requests().len(),
        before,
        "the prefixed name did not share the default's cache"
    );

    // Single-segment names on a remote that is not Docker Hub: no library/.
    let solo = s.a.add_image("solo", "latest", 406);
    assert_manifest(&s.w, "/v2/solo/manifests/latest", &solo);
    assert_eq!(s.a.count("GET", "/v2/solo/manifests/latest"), 1);
    assert_eq!(hits(&s.a, "/v2/library/"), 0);
}

#[test]
fn ns_selects_remote_by_host_and_alias() {
    let s = setup("");
    let in_a = s.a.add_image("team/app", "v1", 407);
    let in_b = s.b.add_image("team/app", "v1", 408);
    let in_a_prefixlike = s.a.add_image("b/x", "v1", 409);

    // The remote's own host:port (from its url)...
    assert_manifest(
        &s.w,
        &format!("/v2/team/app/manifests/v1?ns={}", s.b.host()),
        &in_b,
    );
    assert_blob(
        &s.w,
        &format!("/v2/team/app/blobs/{}?ns={}", in_b.layers[0], s.b.host()),
        &in_b.layers[0],
    );
    // ...and a configured alias.
    assert_manifest(
        &s.w,
        &format!(
            "/v2/team/app/manifests/{}?ns=registry.b.test:5000",
            in_b.digest
        ),
        &in_b,
    );
    assert_manifest(
        &s.w,
        &format!("/v2/team/app/manifests/v1?ns={}", s.a.host()),
        &in_a,
    );
    assert_eq!(
        s.b.count("GET", "/v2/team/app/manifests/v1"),
        1,
        "{:#?}",
        s.b.requests()
    );
    assert_eq!(s.b.blob_gets("team/app", &in_b.layers[0]), 1);
    assert_eq!(s.a.count("GET", "/v2/team/app/manifests/v1"), 1);
    // The upstream sees the plain path, not the ns parameter.
    assert!(
        s.b.requests().iter().all(|r| !r.target.contains("ns=")),
        "{:#?}",
        s.b.requests()
    );

    // ns wins over a first segment that names a remote: `b/x` on remote a.
    assert_manifest(
        &s.w,
        &format!("/v2/b/x/manifests/v1?ns={}", s.a.host()),
        &in_a_prefixlike,
    );
    assert_eq!(s.a.count("GET", "/v2/b/x/manifests/v1"), 1);
}

#[test]
fn unknown_ns_is_denied_without_dialing_it() {
    let s = setup("");
    // A registry that is listening and has the image, but is not configured:
    // wharf must refuse and never connect to it.
    let stranger = FakeUpstream::start();
    stranger.add_image("team/app", "v1", 410);
    let d = stranger.add_blob(b"stranger's blob".to_vec());

    let paths = [
        "/v2/team/app/manifests/v1".to_string(),
        format!("/v2/team/app/blobs/{d}"),
        "/v2/team/app/tags/list".to_string(),
    ];
    for p in &paths {
        let v = assert_oci_error(
            get(&s.w, &format!("{p}?ns={}", stranger.host())),
            403,
            "DENIED",
        );
        let detail = v.to_string();
        assert!(
            detail.contains(&stranger.host()),
            "the error should name the refused host: {detail}"
        );
        let r = http()
            .head(format!("{}{p}?ns={}", s.w.url(), stranger.host()))
            .send()
            .unwrap();
        assert_eq!(r.status(), 403, "HEAD {p}");
    }
    // Writes with an unknown ns are refused the same way.
    let r = http()
        .post(format!(
            "{}/v2/team/app/blobs/uploads/?ns={}",
            s.w.url(),
            stranger.host()
        ))
        .send()
        .unwrap();
    assert_oci_error(r, 403, "DENIED");
    // Hosts that only look like configured ones.
    // The configured IP with a port no remote uses.
    let other_port = (1..)
        .map(|i| s.a.addr.port().wrapping_add(i))
        .find(|p| *p != s.b.addr.port())
        .unwrap();
    for ns in [
        "registry.b.test".to_string(), // alias without its port
        format!("127.0.0.1:{other_port}"),
        "docker.io".to_string(), // Docker Hub is not configured here
        "evil.example".to_string(),
    ] {
        assert_oci_error(
            get(&s.w, &format!("/v2/team/app/manifests/v1?ns={ns}")),
            403,
            "DENIED",
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        stranger.requests().is_empty(),
        "wharf dialed an unconfigured host: {:#?}",
        stranger.requests()
    );
    assert_eq!(hits(&s.a, "/v2/team/"), 0, "{:#?}", s.a.requests());
    assert_eq!(hits(&s.b, "/v2/team/"), 0, "{:#?}", s.b.requests());
}

#[test]
fn writes_to_remote_namespaces_are_denied_local_pushes_work() {
    let s = setup("");
    let img = s.b.add_image("team/app", "v1", 411);
    let c = http();
    let url = |p: &str| format!("{}{p}", s.w.url());
    let blob = b"a blob someone tries to push".to_vec();
    let bd = support::sha256(&blob);
    let manifest = img.manifest.clone();

    let denied = |what: &str, r: reqwest::blocking::Response| {
        let v = assert_oci_error(r, 403, "DENIED");
        eprintln!("{what}: {}", v["errors"][0]["detail"]);
    };
    for (prefix, q) in [
        ("/v2/b/team/app", String::new()),
        ("/v2/team/app", format!("?ns={}", s.b.host())),
    ] {
        let q2 = if q.is_empty() {
            "?".to_string()
        } else {
            format!("{q}&")
        };
        denied(
            "POST upload",
            c.post(url(&format!("{prefix}/blobs/uploads/{q}")))
                .send()
                .unwrap(),
        );
        denied(
            "POST monolithic",
            c.post(url(&format!("{prefix}/blobs/uploads/{q2}digest={bd}")))
                .header("content-type", "application/octet-stream")
                .body(blob.clone())
                .send()
                .unwrap(),
        );
        denied(
            "POST mount",
            c.post(url(&format!(
                "{prefix}/blobs/uploads/{q2}mount={}&from=mine/app",
                img.layers[0]
            )))
            .send()
            .unwrap(),
        );
        denied(
            "PATCH upload",
            c.patch(url(&format!(
                "{prefix}/blobs/uploads/3f0a7c2e-8b1d-4c5e-9f6a-1b2c3d4e5f60{q}"
            )))
            .body(blob.clone())
            .send()
            .unwrap(),
        );
        denied(
            "PUT upload",
            c.put(url(&format!(
                "{prefix}/blobs/uploads/3f0a7c2e-8b1d-4c5e-9f6a-1b2c3d4e5f60{q2}digest={bd}"
            )))
            .send()
            .unwrap(),
        );
        denied(
            "PUT manifest",
            c.put(url(&format!("{prefix}/manifests/v2{q}")))
                .header("content-type", support::MT_OCI_MANIFEST)
                .body(manifest.clone())
                .send()
                .unwrap(),
        );
        denied(
            "DELETE manifest",
            c.delete(url(&format!("{prefix}/manifests/{}{q}", img.digest)))
                .send()
                .unwrap(),
        );
        denied(
            "DELETE tag",
            c.delete(url(&format!("{prefix}/manifests/v1{q}")))
                .send()
                .unwrap(),
        );
        denied(
            "DELETE blob",
            c.delete(url(&format!("{prefix}/blobs/{}{q}", img.layers[0])))
                .send()
                .unwrap(),
        );
    }
    let writes: Vec<_> =
        s.b.requests()
            .into_iter()
            .filter(|r| r.method != "GET" && r.method != "HEAD")
            .collect();
    assert!(writes.is_empty(), "a write reached the remote: {writes:#?}");

    // Pushes to local names work next to the remotes (with a default remote
    // configured), and are served locally without asking any remote.
    let pushed = support::push_image(&s.w, "mine/app", "v1", 412);
    let r = get(&s.w, "/v2/mine/app/manifests/v1");
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "docker-content-digest"), pushed.digest);
    assert_eq!(r.bytes().unwrap().to_vec(), pushed.bytes);
    for d in &pushed.layers {
        assert_blob(&s.w, &format!("/v2/mine/app/blobs/{d}"), d);
    }
    let r = http()
        .delete(format!(
            "{}/v2/mine/app/manifests/{}",
            s.w.url(),
            pushed.digest
        ))
        .send()
        .unwrap();
    assert!(
        r.status() == 202 || r.status() == 405,
        "DELETE of a local manifest: {}",
        r.status()
    );
    assert_eq!(
        hits(&s.a, "/v2/mine/") + hits(&s.b, "/v2/mine/"),
        0,
        "a local push/pull reached a remote"
    );

    // Nothing got into the remote namespace by the refused writes.
    let r = get(&s.w, &format!("/v2/b/team/app/blobs/{bd}"));
    assert_eq!(r.status(), 404, "a refused blob push is readable");
}

#[test]
fn upstream_404_is_cached_for_negative_ttl() {
    let s = setup("negative_ttl = \"2s\"\ntag_ttl = \"1h\"");
    let path = "/v2/b/team/late/manifests/v1";
    let up_path = "/v2/team/late/manifests/v1";

    assert_oci_error(get(&s.w, path), 404, "MANIFEST_UNKNOWN");
    let first = s.b.count("GET", up_path) + s.b.count("HEAD", up_path);
    assert!(
        first >= 1,
        "wharf did not ask the upstream: {:#?}",
        s.b.requests()
    );

    // The image appears upstream, but within negative_ttl wharf keeps
    // answering 404 without asking again.
    let img = s.b.add_image("team/late", "v1", 413);
    for _ in 0..3 {
        assert_oci_error(get(&s.w, path), 404, "MANIFEST_UNKNOWN");
    }
    assert_eq!(
        s.b.count("GET", up_path) + s.b.count("HEAD", up_path),
        first,
        "negative cache not used"
    );

    // By digest too.
    let missing = support::sha256(b"no such manifest");
    let dpath = format!("/v2/b/team/late/manifests/{missing}");
    let up_dpath = format!("/v2/team/late/manifests/{missing}");
    assert_oci_error(get(&s.w, &dpath), 404, "MANIFEST_UNKNOWN");
    let dfirst = s.b.count("GET", &up_dpath);
    assert!(dfirst >= 1);
    assert_oci_error(get(&s.w, &dpath), 404, "MANIFEST_UNKNOWN");
    assert_eq!(
        s.b.count("GET", &up_dpath),
        dfirst,
        "negative cache not used for a digest"
    );

    // After negative_ttl the upstream is asked again and the image is found.
    std::thread::sleep(Duration::from_millis(2300));
    assert_manifest(&s.w, path, &img);
    assert!(s.b.count("GET", up_path) > first);
}
