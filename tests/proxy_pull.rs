//! Pull-through cache (issue 3), end to end: real clients (skopeo,
//! reqwest) pull through a real wharf process from a real upstream
//! (Debian's Distribution registry, `support::upstream`) or from the
//! misbehaving fake (`support::fake_upstream`), everything on 127.0.0.1.
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::fake_upstream::{basic_header, BlobMode, FakeUpstream, Fault};
use support::image::{Image, ImageSpec, LayerSpec, OciLayout};
use support::upstream::{skopeo_pull, Upstream};
use support::{Options, Wharf};

const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

fn wharf_with(remotes: &str) -> Wharf {
    Wharf::start_with(Options {
        config: Some(remotes.to_string()),
        ..Default::default()
    })
}

/// The pulled layout holds exactly `img`: same manifest digest (so the
/// manifest bytes are identical) and every blob byte-identical.
fn assert_same_image(layout: &OciLayout, tag: &str, img: &Image) {
    assert_eq!(
        layout.resolve(tag).digest,
        img.manifest.digest,
        "manifest digest through wharf"
    );
    assert_eq!(layout.read_blob(&img.manifest.digest), img.manifest_bytes);
    for d in img.blob_digests() {
        assert_eq!(support::sha256(&layout.read_blob(&d)), d, "blob {d}");
    }
    layout.verify_blobs();
}

/// Cold pull: each blob fetched exactly once from the upstream; warm pull:
/// zero more blob fetches, and no manifest fetch within the tag TTL.
fn cold_then_warm(up: &Upstream, seed: u64) {
    let repo = "team/app";
    let img = up.push_image(
        repo,
        "v1",
        &ImageSpec::oci(
            seed,
            vec![LayerSpec::gzip(300_000), LayerSpec::gzip(1_000_000)],
        ),
    );
    if up.mode == support::upstream::AuthMode::Token {
        // From here on only wharf talks to the issuer (skopeo talks to wharf).
        up.issuer().clear_requests();
    }
    let w = wharf_with(&up.remote_toml("up", "tag_ttl = \"5m\""));
    let tmp = tempfile::tempdir().unwrap();

    let cold = skopeo_pull(&w, &format!("up/{repo}:v1"), &tmp.path().join("cold"), "v1");
    assert_same_image(&cold, "v1", &img);
    for d in img.blob_digests() {
        assert_eq!(
            up.blob_gets(repo, &d),
            1,
            "cold pull: upstream GETs of {d}: {:#?}",
            up.access_log()
        );
    }
    let manifest_requests = up
        .access_log()
        .iter()
        .filter(|e| e.path.starts_with(&format!("/v2/{repo}/manifests/")))
        .count();

    let warm = skopeo_pull(&w, &format!("up/{repo}:v1"), &tmp.path().join("warm"), "v1");
    assert_same_image(&warm, "v1", &img);
    for d in img.blob_digests() {
        assert_eq!(up.blob_gets(repo, &d), 1, "warm pull fetched {d} again");
    }
    let after = up
        .access_log()
        .iter()
        .filter(|e| e.path.starts_with(&format!("/v2/{repo}/manifests/")))
        .count();
    assert_eq!(
        after, manifest_requests,
        "warm pull within the tag TTL contacted the upstream for manifests"
    );

    // By digest too.
    let by_digest = skopeo_pull(
        &w,
        &format!("up/{repo}@{}", img.manifest.digest),
        &tmp.path().join("digest"),
        "d",
    );
    assert_same_image(&by_digest, "d", &img);
    for d in img.blob_digests() {
        assert_eq!(up.blob_gets(repo, &d), 1);
    }
}

#[test]
fn pull_through_anonymous_upstream() {
    let up = Upstream::anonymous();
    cold_then_warm(&up, 101);
}

#[test]
fn pull_through_htpasswd_upstream() {
    let up = Upstream::htpasswd("alice", "pa:ss word");
    cold_then_warm(&up, 102);
    // Every request wharf made after the challenge carried credentials
    // that the registry accepted: no 401 except (at most) the first ping
    // per connection/challenge round.
    let blob_401s = up
        .access_log()
        .iter()
        .filter(|e| e.path.contains("/blobs/") && e.status == 401)
        .count();
    assert_eq!(blob_401s, 0, "{:#?}", up.access_log());
}

#[test]
fn pull_through_token_upstream() {
    let up = Upstream::token("robot", "pat-secret");
    cold_then_warm(&up, 103);
    // Wharf (not skopeo, which spoke only to wharf) asked the issuer:
    // with the configured account, for pull access to exactly the repository.
    let reqs = up.issuer().requests();
    assert!(!reqs.is_empty(), "wharf never asked the token issuer");
    for r in &reqs {
        assert_eq!(r.user.as_deref(), Some("robot"), "{r:?}");
        assert_eq!(r.password.as_deref(), Some("pat-secret"));
        assert!(r.granted);
        for s in &r.scopes {
            assert_eq!(s, "repository:team/app:pull", "scope asked for: {r:?}");
        }
    }
    // Tokens are cached: far fewer token requests than upstream requests.
    let upstream_requests = up.access_log().len();
    assert!(
        reqs.len() * 3 <= upstream_requests.max(3),
        "{} token requests for {upstream_requests} upstream requests",
        reqs.len()
    );
}

#[test]
fn pull_with_upstream_stopped_after_warm_pull() {
    let mut up = Upstream::anonymous();
    let img = up.push_small("lib/tool", "2.0", 104);
    let w = wharf_with(&up.remote_toml("up", "tag_ttl = \"1s\""));
    let tmp = tempfile::tempdir().unwrap();
    skopeo_pull(&w, "up/lib/tool:2.0", &tmp.path().join("warm"), "t");
    up.stop();
    // Past the tag TTL: revalidation fails (connection refused), the cached
    // manifest is served.
    std::thread::sleep(Duration::from_millis(1500));
    let by_tag = skopeo_pull(&w, "up/lib/tool:2.0", &tmp.path().join("tag"), "t");
    assert_same_image(&by_tag, "t", &img);
    let by_digest = skopeo_pull(
        &w,
        &format!("up/lib/tool@{}", img.manifest.digest),
        &tmp.path().join("dig"),
        "d",
    );
    assert_same_image(&by_digest, "d", &img);
}

fn get(w: &Wharf, path: &str) -> reqwest::blocking::Response {
    support::http()
        .get(format!("{}{path}", w.url()))
        .header("Accept", ACCEPT)
        .send()
        .expect("GET through wharf")
}

#[test]
fn cached_tag_served_when_upstream_answers_429_or_503_after_ttl() {
    let f = FakeUpstream::start();
    let img = f.add_image("org/app", "v1", 105);
    let w = wharf_with(&f.remote_toml("up", None, "tag_ttl = \"1s\""));
    let r = get(&w, "/v2/up/org/app/manifests/v1");
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().to_vec(), img.manifest);

    for fault in [Fault::too_many(Some(60)), Fault::unavailable()] {
        std::thread::sleep(Duration::from_millis(1200));
        f.fail_all(fault.clone());
        let before = f.requests().len();
        let r = get(&w, "/v2/up/org/app/manifests/v1");
        assert_eq!(
            r.status(),
            200,
            "{fault:?}: cached tag not served; log:\n{}",
            w.logs()
        );
        assert_eq!(support::header(&r, "docker-content-digest"), img.digest);
        assert_eq!(r.bytes().unwrap().to_vec(), img.manifest);
        assert!(
            f.requests().len() > before,
            "{fault:?}: wharf did not try to revalidate after the TTL"
        );
        f.heal();
    }
}

#[test]
fn wrong_bytes_are_never_served_complete_nor_cached() {
    let f = FakeUpstream::start();
    let img = f.add_image_sized("bad/img", "v1", 106, &[4 << 20]);
    let d = img.layers[0].clone();
    f.set_blob_mode(&d, BlobMode::WrongBytes);
    let w = wharf_with(&f.remote_toml("up", None, ""));
    let path = format!("/v2/up/bad/img/blobs/{d}");

    for attempt in 0..2 {
        let r = get(&w, &path);
        if r.status() == 200 {
            let body = r.bytes();
            assert!(
                body.is_err(),
                "attempt {attempt}: client received a complete 200 body for wrong bytes"
            );
        }
    }
    // Not cached: each attempt went upstream.
    assert!(
        f.blob_gets("bad/img", &d) >= 2,
        "wrong bytes were cached: {}",
        f.blob_gets("bad/img", &d)
    );

    f.heal();
    let before = f.blob_gets("bad/img", &d);
    let r = get(&w, &path);
    assert_eq!(r.status(), 200);
    assert_eq!(support::sha256(&r.bytes().unwrap()), d);
    assert_eq!(f.blob_gets("bad/img", &d), before + 1);
    // Now cached.
    let r = get(&w, &path);
    assert_eq!(support::sha256(&r.bytes().unwrap()), d);
    assert_eq!(f.blob_gets("bad/img", &d), before + 1);
}

#[test]
fn client_disconnect_mid_blob_fetch_completes_and_caches() {
    let f = FakeUpstream::start();
    let img = f.add_image_sized("slow/img", "v1", 107, &[4 << 20]);
    let d = img.layers[0].clone();
    // ~0.8 s upstream transfer.
    f.set_blob_mode(
        &d,
        BlobMode::Trickle {
            chunk: 256 << 10,
            delay: Duration::from_millis(50),
        },
    );
    let w = wharf_with(&f.remote_toml("up", None, ""));

    let mut s = TcpStream::connect(w.addr).unwrap();
    write!(
        s,
        "GET /v2/up/slow/img/blobs/{d} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        w.host()
    )
    .unwrap();
    let mut buf = vec![0u8; 64 << 10];
    let mut got = 0;
    while got < 100_000 {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "wharf closed early");
        got += n;
    }
    drop(s);

    // Let the upstream transfer finish, then take the upstream away.
    std::thread::sleep(Duration::from_millis(2500));
    f.fail_all(Fault::Reset);
    let r = get(&w, &format!("/v2/up/slow/img/blobs/{d}"));
    assert_eq!(
        r.status(),
        200,
        "blob not cached after the first client left; log:\n{}",
        w.logs()
    );
    assert_eq!(support::sha256(&r.bytes().unwrap()), d);
    assert_eq!(f.blob_gets("slow/img", &d), 1);
}

#[test]
fn concurrent_cold_clients_share_one_upstream_get() {
    let f = FakeUpstream::start();
    let img = f.add_image_sized("many/img", "v1", 108, &[8 << 20]);
    let d = img.layers[0].clone();
    f.set_blob_mode(
        &d,
        BlobMode::Trickle {
            chunk: 512 << 10,
            delay: Duration::from_millis(40),
        },
    );
    let w = wharf_with(&f.remote_toml("up", None, ""));
    let url = format!("{}/v2/up/many/img/blobs/{d}", w.url());
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || -> Result<String, String> {
                let r = support::http()
                    .get(&url)
                    .send()
                    .map_err(|e| format!("{e:?}"))?;
                if r.status() != 200 {
                    return Err(format!("status {}", r.status()));
                }
                Ok(support::sha256(
                    &r.bytes().map_err(|e| format!("body: {e:?}"))?,
                ))
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let gets = f.blob_gets("many/img", &d);
    assert!(
        results.iter().all(|r| r.as_deref() == Ok(d.as_str())) && gets == 1,
        "results: {results:#?}\nupstream GETs: {gets}\nwharf log:\n{}",
        w.logs()
    );
}

#[test]
fn authorization_not_forwarded_to_redirect_host() {
    let f = FakeUpstream::start();
    let storage = FakeUpstream::start();
    let img = f.add_image("redir/img", "v1", 109);
    f.require_basic("u", "p");
    f.redirect_blobs_to(&storage);
    let w = wharf_with(&f.remote_toml("up", Some(("u", "p")), ""));
    let d = img.layers[1].clone();
    let r = get(&w, &format!("/v2/up/redir/img/blobs/{d}"));
    assert_eq!(r.status(), 200, "log:\n{}", w.logs());
    assert_eq!(support::sha256(&r.bytes().unwrap()), d);
    let to_main = f.requests_to("GET", &format!("/v2/redir/img/blobs/{d}"));
    assert!(!to_main.is_empty());
    assert_eq!(
        to_main.last().unwrap().header("authorization"),
        Some(basic_header("u", "p").as_str())
    );
    let to_storage = storage.requests_to("GET", &format!("/storage/{d}"));
    assert_eq!(to_storage.len(), 1);
    assert_eq!(
        to_storage[0].header("authorization"),
        None,
        "Authorization forwarded across hosts"
    );
}

#[test]
fn upstream_429_with_retry_after_is_retried() {
    let f = FakeUpstream::start();
    let img = f.add_image("retry/img", "v1", 110);
    let w = wharf_with(&f.remote_toml("up", None, ""));
    let d = img.layers[0].clone();
    f.fail_where(Some("/blobs/"), Some(1), Fault::too_many(Some(1)));
    let r = get(&w, &format!("/v2/up/retry/img/blobs/{d}"));
    assert_eq!(r.status(), 200, "log:\n{}", w.logs());
    assert_eq!(support::sha256(&r.bytes().unwrap()), d);
    let gets = f.requests_to("GET", &format!("/v2/retry/img/blobs/{d}"));
    assert_eq!(gets.len(), 2, "one 429, one retry");
    let gap = gets[1].at.duration_since(gets[0].at);
    assert!(
        gap >= Duration::from_millis(900),
        "Retry-After: 1 not honoured (retried after {gap:?})"
    );
}
