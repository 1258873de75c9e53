//! Several wharf replicas on one bucket (issue 14): a three-node Garage
//! cluster (replication factor 3, `support::garage`) and two wharf
//! replicas, A through Garage node 0 and B through node 1, on the same
//! bucket and prefix. No sticky sessions: any replica serves any request.
//!
//! - a chunked push whose POST lands on A, whose PATCHes land on B then A
//!   (parts of one multipart upload from two processes) and whose PUT
//!   lands on A; the blob pulled through B is byte-identical;
//! - a tag pushed through A is served by B at once, a tag moved or a
//!   manifest deleted through A is seen by B at once (B's manifest cache
//!   cannot serve it), and skopeo pulls the image through B;
//! - a robot created through A works on B, and once revoked through A is
//!   refused by B within `storage.s3.refresh_interval`;
//! - 40 robots created at once, 20 through A and 20 through B: all 40
//!   exist afterwards on both (changes of the robots document are
//!   serialized by its lease, none is lost);
//! - a pull token with 3 uses pulled by 8 clients at once, split between
//!   A and B: 3 pulls start, 5 are refused as used up; revoked through A,
//!   B refuses its next blob request at once;
//! - cold pull-through of one blob by 8 clients split between A and B:
//!   the upstream sees one GET for the whole cluster (the fetch lease);
//! - GC asked of both replicas at once: one runs, the other answers 409
//!   naming the replica that holds the GC lease;
//! - A killed (SIGKILL) while a chunk streams into it: nothing partial is
//!   visible, B reports the last durable offset and the push finishes
//!   through B;
//! - a Garage node stopped between two chunks of a push (the rest goes
//!   through B) and while B streams the blob (after its first MiB; with
//!   12 MiB much of the rest may already be on its way): both complete.
//!
//! Without a garage binary every test prints
//! `SKIPPED: no garage binary (tests/run.sh installs it)` and passes.
mod support;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use reqwest::Method;
use support::fake_upstream::{BlobMode, FakeUpstream};
use support::garage::Garage;
use support::*;

const MIB: usize = 1 << 20;
const PREFIX: &str = "cluster/";
/// How often the replicas re-read robots and projects in these tests.
const REFRESH: Duration = Duration::from_secs(1);
/// No remotes, one project: `team/...` is local on every replica.
const LOCAL: &str = "remotes = []\n\n[[projects]]\nname = \"team\"\n";

/// Replica `name` on Garage node `node`, sharing the bucket and prefix
/// with every other replica of the test; `lease_settle` as given.
fn replica(g: &Garage, node: usize, name: &str, config: &str, settle: &str) -> Wharf {
    let mut o = g.wharf_options(node, PREFIX, "5MiB", config);
    // The [storage.s3] table is last: these lines belong to it.
    let extra = format!(
        "replica = \"{name}\"\nrefresh_interval = \"{}s\"\nlease_settle = \"{settle}\"\n",
        REFRESH.as_secs()
    );
    o.config = Some(o.config.unwrap_or_default() + &extra);
    o.admin = true;
    Wharf::start_with(o)
}

/// `n` base URLs, alternately replica `a`'s and `b`'s.
fn alternating(a: &Wharf, b: &Wharf, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| if i % 2 == 0 { a.url() } else { b.url() })
        .collect()
}

/// `f(i, url)` for every URL, each on a thread of its own, all released
/// together; the results in the URLs' order.
fn at_once<T: Send + 'static>(
    urls: Vec<String>,
    f: impl Fn(usize, &str) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let barrier = Arc::new(Barrier::new(urls.len()));
    let f = Arc::new(f);
    let handles: Vec<_> = urls
        .into_iter()
        .enumerate()
        .map(|(i, url)| {
            let (barrier, f) = (barrier.clone(), f.clone());
            std::thread::spawn(move || {
                barrier.wait();
                f(i, &url)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// Replicas A (node 0) and B (node 1).
fn two_replicas(g: &Garage, config: &str, settle: &str) -> (Wharf, Wharf) {
    let a = replica(g, 0, "replica-a", config, settle);
    let b = replica(g, 1, "replica-b", config, settle);
    (a, b)
}

/// The upload URL on `to` of a session whose Location another replica
/// answered (the same path on another host).
fn on(to: &Wharf, location: &str) -> String {
    let path = location
        .strip_prefix("http://")
        .and_then(|l| l.find('/').map(|i| &l[i..]))
        .unwrap_or(location);
    format!("{}{path}", to.url())
}

/// PATCH `chunk` at `start` to session `location` through `w`; returns
/// the next Location.
fn patch(w: &Wharf, location: &str, start: usize, chunk: &[u8]) -> String {
    let r = w
        .req_url(Method::PATCH, &on(w, location))
        .header("content-type", "application/octet-stream")
        .header(
            "content-range",
            format!("{start}-{}", start + chunk.len() - 1),
        )
        .body(chunk.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "PATCH on {}:\n{}", w.url(), w.logs());
    header(&r, "location")
}

/// Open an upload session of `repo` through `w`; returns its Location.
fn start_upload(w: &Wharf, repo: &str) -> String {
    let r = w
        .req(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "{}", w.logs());
    header(&r, "location")
}

/// Finish session `location` through `w` with `last` as its last chunk;
/// the blob must then be `digest`.
fn finish_upload(w: &Wharf, location: &str, digest: &str, last: &[u8]) {
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = w
        .req_url(
            Method::PUT,
            &format!("{}{sep}digest={digest}", on(w, location)),
        )
        .header("content-type", "application/octet-stream")
        .body(last.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "PUT on {}:\n{}", w.url(), w.logs());
}

/// The sha256 of blob `digest` of `repo` as `w` serves it.
fn served_digest(w: &Wharf, repo: &str, digest: &str) -> String {
    let got = w
        .req(Method::GET, &format!("/v2/{repo}/blobs/{digest}"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    sha256(&got)
}

#[test]
fn chunked_push_across_replicas_and_tags_seen_at_once() {
    let Some(g) = Garage::start(3) else { return };
    let (a, b) = two_replicas(&g, LOCAL, "250ms");
    let repo = "team/app";
    // 6 + 3 + 2 MiB: the first PATCH (on B) uploads a 5 MiB part and
    // leaves a tail, the second (on A) continues the same multipart upload.
    let blob = data(14, 11 * MIB);
    let digest = sha256(&blob);
    let loc = start_upload(&a, repo);
    let loc = patch(&b, &loc, 0, &blob[..6 * MIB]);
    let loc = patch(&a, &loc, 6 * MIB, &blob[6 * MIB..9 * MIB]);
    let status = b.req_url(Method::GET, &on(&b, &loc)).send().unwrap();
    assert_eq!(status.status(), 204);
    assert_eq!(header(&status, "range"), format!("0-{}", 9 * MIB - 1));
    finish_upload(&a, &loc, &digest, &blob[9 * MIB..]);
    assert_eq!(
        served_digest(&b, repo, &digest),
        digest,
        "the blob pulled through B"
    );

    // A manifest tagged through A is served by B at once, by tag and in
    // B's tag list; B reads it (filling its manifest cache).
    let config_bytes = b"{\"architecture\":\"amd64\",\"os\":\"linux\"}";
    let config = push_blob(&a, repo, config_bytes);
    let config_desc = descriptor(MT_OCI_CONFIG, &config, config_bytes.len());
    let push_tagged = |layer: serde_json::Value| {
        let m = image_manifest(
            MT_OCI_MANIFEST,
            config_desc.clone(),
            vec![layer],
            serde_json::json!({}),
        );
        let r = put_manifest(&a, repo, "v1", MT_OCI_MANIFEST, &m);
        assert_eq!(r.status(), 201, "{}", a.logs());
        header(&r, "docker-content-digest")
    };
    let d1 = push_tagged(descriptor(MT_OCI_LAYER, &digest, blob.len()));
    let by_tag = |w: &Wharf| {
        w.req(Method::GET, &format!("/v2/{repo}/manifests/v1"))
            .header("accept", MT_OCI_MANIFEST)
            .send()
            .unwrap()
    };
    let r = by_tag(&b);
    assert_eq!(r.status(), 200, "{}", b.logs());
    assert_eq!(header(&r, "docker-content-digest"), d1);
    let tags: serde_json::Value = b
        .req(Method::GET, &format!("/v2/{repo}/tags/list"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));

    // Moved through A: B follows at once.
    let layer2 = push_blob(&a, repo, b"another layer");
    let d2 = push_tagged(descriptor(MT_OCI_LAYER, &layer2, 13));
    assert_eq!(header(&by_tag(&b), "docker-content-digest"), d2);

    // Deleted through A: B's cached copy of d1 is not served.
    let by_digest = |w: &Wharf, d: &str| {
        w.req(Method::GET, &format!("/v2/{repo}/manifests/{d}"))
            .header("accept", MT_OCI_MANIFEST)
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(by_digest(&b, &d1), 200);
    let r = a
        .req(Method::DELETE, &format!("/v2/{repo}/manifests/{d1}"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        by_digest(&b, &d1),
        404,
        "B served a manifest deleted through A"
    );

    // skopeo pulls the image through B.
    if have("skopeo") {
        let tmp = tempfile::tempdir().unwrap();
        let out = support::upstream::skopeo(
            tmp.path(),
            &[
                "copy".into(),
                "--preserve-digests".into(),
                "--src-tls-verify=false".into(),
                format!("--src-creds={}:{}", ADMIN.0, ADMIN.1),
                format!("docker://{}/{repo}:v1", b.host()),
                format!("oci:{}:v1", tmp.path().join("pulled").display()),
            ],
        );
        assert!(
            out.status.success(),
            "skopeo pull through B: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            b.logs()
        );
        // The image pulled is the one tagged through A (its manifest
        // digest is in the layout's index).
        let index = std::fs::read_to_string(tmp.path().join("pulled/index.json")).unwrap();
        assert!(index.contains(&d2), "{index}");
    } else {
        eprintln!("skopeo part SKIPPED: skopeo is not installed");
    }
}

/// `GET /v2/` on `w` as `user`: the status.
fn v2_as(w: &Wharf, user: &str, token: &str) -> u16 {
    http()
        .get(format!("{}/v2/", w.url()))
        .basic_auth(user, Some(token))
        .send()
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn a_robot_revoked_through_a_is_refused_by_b_within_the_refresh_interval() {
    let Some(g) = Garage::start(3) else { return };
    let (a, b) = two_replicas(&g, LOCAL, "250ms");
    let r = a
        .req(Method::POST, "/api/v1/robots")
        .json(&serde_json::json!({"name": "ci", "permissions": {"team": ["pull"]}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", a.logs());
    let v: serde_json::Value = r.json().unwrap();
    let token = v["token"].as_str().unwrap().to_string();
    let user = "robot$ci";
    assert_eq!(v2_as(&a, user, &token), 200);
    // Bound: one refresh interval plus a store read (waited for with a
    // generous timeout; the time it took is printed).
    let bound = REFRESH * 10;
    // Polled at half the refresh interval: a few refusals only (each one
    // counts against the login throttle).
    let poll = |want: u16| {
        let t = Instant::now();
        while v2_as(&b, user, &token) != want {
            assert!(
                t.elapsed() < bound,
                "B never answered {want}:\n{}",
                b.logs()
            );
            std::thread::sleep(REFRESH / 2);
        }
        t.elapsed()
    };
    let took = poll(200);
    eprintln!("robot created on A accepted by B after {took:?}");
    let r = a.req(Method::DELETE, "/api/v1/robots/ci").send().unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(v2_as(&a, user, &token), 401, "A refuses at once");
    let took = poll(401);
    eprintln!("robot revoked on A refused by B after {took:?}");
}

/// The items a management API listing `GET path` on `w` answers (a bare
/// array, or one under `field`).
fn api_list(w: &Wharf, path: &str, field: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value = w.req(Method::GET, path).send().unwrap().json().unwrap();
    v.as_array()
        .or(v[field].as_array())
        .cloned()
        .unwrap_or_default()
}

/// The robot names `w` lists.
fn robot_names(w: &Wharf) -> Vec<String> {
    api_list(w, "/api/v1/robots", "robots")
        .iter()
        .filter_map(|r| r["name"].as_str().map(String::from))
        .collect()
}

#[test]
fn robots_created_at_once_through_both_replicas_all_exist_on_both() {
    let Some(g) = Garage::start(3) else { return };
    let (a, b) = two_replicas(&g, LOCAL, "250ms");
    const N: usize = 40;
    let t = Instant::now();
    let answers = at_once(alternating(&a, &b, N), |i, url| {
        let r = http()
            .post(format!("{url}/api/v1/robots"))
            .basic_auth(ADMIN.0, Some(ADMIN.1))
            .json(
                &serde_json::json!({"name": format!("bot-{i}"), "permissions": {"team": ["pull"]}}),
            )
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    });
    for (status, body) in answers {
        assert_eq!(status, 201, "{body}\nA:\n{}\nB:\n{}", a.logs(), b.logs());
    }
    eprintln!(
        "{N} robots created through A and B at once in {:?}",
        t.elapsed()
    );
    let want: Vec<String> = (0..N).map(|i| format!("bot-{i}")).collect();
    let missing = |w: &Wharf| -> Vec<String> {
        let names = robot_names(w);
        want.iter()
            .filter(|n| !names.contains(n))
            .cloned()
            .collect()
    };
    for (label, w) in [("A", &a), ("B", &b)] {
        let deadline = Instant::now() + REFRESH * 10;
        while !missing(w).is_empty() && Instant::now() < deadline {
            std::thread::sleep(REFRESH / 4);
        }
        let lost = missing(w);
        assert!(
            lost.is_empty(),
            "replica {label} lacks {lost:?} (every create answered 201)\nA:\n{}\nB:\n{}",
            a.logs(),
            b.logs()
        );
    }
}

/// `GET path` on `w` with pull token (`user`, `pass`): status and body.
fn get_as(w: &Wharf, user: &str, pass: &str, path: &str) -> (u16, String) {
    let r = http()
        .get(format!("{}{path}", w.url()))
        .basic_auth(user, Some(pass))
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

#[test]
fn a_pull_tokens_uses_are_counted_once_across_replicas_and_its_revocation_is_at_once() {
    let Some(g) = Garage::start(3) else { return };
    let (a, b) = two_replicas(&g, LOCAL, "250ms");
    let app = push_image(&a, "team/app", "v1", 7);
    let r = a
        .req(Method::POST, "/api/v1/pull-tokens")
        .json(&serde_json::json!({"image": "team/app:v1", "uses": 3, "ttl": "1h"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", a.logs());
    let v: serde_json::Value = r.json().unwrap();
    let (user, pass) = (
        v["username"].as_str().unwrap().to_string(),
        v["password"].as_str().unwrap().to_string(),
    );
    // 8 pulls start at once, 4 through each replica: 3 uses, so 3 start.
    const N: usize = 8;
    let t = Instant::now();
    let answers = at_once(alternating(&a, &b, N), {
        let (user, pass) = (user.clone(), pass.clone());
        move |_, url| {
            let r = http()
                .get(format!("{url}/v2/team/app/manifests/v1"))
                .basic_auth(&user, Some(&pass))
                .send()
                .unwrap();
            (r.status().as_u16(), r.text().unwrap())
        }
    });
    eprintln!(
        "{N} pulls started through A and B at once in {:?}",
        t.elapsed()
    );
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    let used_up = answers
        .iter()
        .filter(|(s, body)| *s == 403 && body.contains("used up"))
        .count();
    assert_eq!(
        (ok, used_up),
        (3, N - 3),
        "{answers:?}\nA:\n{}\nB:\n{}",
        a.logs(),
        b.logs()
    );
    // Both replicas list the 3 spent uses.
    for w in [&a, &b] {
        let list = api_list(w, "/api/v1/pull-tokens", "tokens");
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0]["used"], 3, "{list:?}");
    }
    // The windows are open: a blob through B works; revoked on A, B
    // refuses the next blob at once (no refresh interval to wait).
    let blob = format!("/v2/team/app/blobs/{}", app.layers[0]);
    assert_eq!(get_as(&b, &user, &pass, &blob).0, 200);
    let id = user.strip_prefix("pull$").unwrap();
    let r = a
        .req(Method::DELETE, &format!("/api/v1/pull-tokens/{id}"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204, "{}", a.logs());
    let (status, body) = get_as(&b, &user, &pass, &blob);
    assert!(
        status == 401 || status == 403,
        "B served a revoked token's blob: {status} {body}"
    );
    assert!(body.contains("not known"), "{body}");
}

#[test]
fn cold_pull_through_from_two_replicas_is_one_upstream_get() {
    let Some(g) = Garage::start(3) else { return };
    let up = FakeUpstream::start();
    let img = up.add_image_sized("lib/big", "v1", 41, &[12 * MIB]);
    let layer = img.layers[0].clone();
    // Slow enough that every client asks while the first fetch runs.
    up.set_blob_mode(
        &layer,
        BlobMode::Trickle {
            chunk: 256 << 10,
            delay: Duration::from_millis(40),
        },
    );
    let config = up.remote_toml("up", None, "");
    let (a, b) = two_replicas(&g, &config, "250ms");
    const CLIENTS: usize = 8;
    let t0 = Instant::now();
    let results = at_once(alternating(&a, &b, CLIENTS), {
        let layer = layer.clone();
        move |_, url| {
            let r = http()
                .get(format!("{url}/v2/up/lib/big/blobs/{layer}"))
                .basic_auth(ADMIN.0, Some(ADMIN.1))
                .send()
                .map_err(|e| e.to_string())?;
            let status = r.status().as_u16();
            let body = r.bytes().map_err(|e| e.to_string())?;
            Ok::<_, String>((status, sha256(&body)))
        }
    });
    let gets = up.blob_gets("lib/big", &layer);
    eprintln!(
        "{CLIENTS} clients (4 per replica), 12 MiB cold blob: {gets} upstream GET(s) in {:?}",
        t0.elapsed()
    );
    for r in &results {
        assert_eq!(
            r.as_ref().ok(),
            Some(&(200, layer.clone())),
            "A:\n{}\nB:\n{}",
            a.logs(),
            b.logs()
        );
    }
    assert_eq!(gets, 1, "one upstream GET for the whole cluster");
}

#[test]
fn gc_asked_of_both_replicas_at_once_runs_once() {
    let Some(g) = Garage::start(3) else { return };
    // A long settle: both requests read the free lease before either's
    // read-back, so they race for it (the one left answers 409).
    let (a, b) = two_replicas(&g, LOCAL, "2s");
    push_image(&a, "team/app", "v1", 3);
    let mut answers = at_once(alternating(&a, &b, 2), |_, url| {
        let r = http()
            .post(format!("{url}/api/v1/gc"))
            .basic_auth(ADMIN.0, Some(ADMIN.1))
            .body("{}")
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    });
    answers.sort();
    assert_eq!(answers[0].0, 200, "{answers:?}");
    assert_eq!(answers[1].0, 409, "{answers:?}");
    let err: serde_json::Value = serde_json::from_str(&answers[1].1).unwrap();
    let msg = err["errors"][0]["message"].as_str().unwrap();
    assert!(msg.contains("already running on replica replica-"), "{msg}");
    // Released when done: the next GC runs.
    wait_until(
        "the GC lease to be released",
        Duration::from_secs(10),
        || {
            b.req(Method::POST, "/api/v1/gc")
                .body("{}")
                .send()
                .unwrap()
                .status()
                == 200
        },
    );
}

/// A request body that hands out `data` a MiB at a time, pausing between
/// pieces (so the process receiving it can be killed in the middle).
struct Slow {
    data: Vec<u8>,
    at: usize,
}

impl std::io::Read for Slow {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at > 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
        let n = buf.len().min(MIB).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[test]
fn a_push_cut_by_kill_9_of_a_continues_through_b() {
    let Some(g) = Garage::start(3) else { return };
    let (mut a, b) = two_replicas(&g, LOCAL, "250ms");
    let repo = "team/crash";
    let blob = data(15, 12 * MIB);
    let digest = sha256(&blob);
    let loc = start_upload(&a, repo);
    // First chunk durable through A.
    let loc = patch(&a, &loc, 0, &blob[..6 * MIB]);
    // The second one streams into A, which is killed in the middle.
    let url = on(&a, &loc);
    let rest = blob[6 * MIB..].to_vec();
    let cut = std::thread::spawn(move || {
        http()
            .patch(url)
            .basic_auth(ADMIN.0, Some(ADMIN.1))
            .header("content-type", "application/octet-stream")
            .body(reqwest::blocking::Body::new(Slow { data: rest, at: 0 }))
            .send()
            .map(|r| r.status().as_u16())
    });
    std::thread::sleep(Duration::from_millis(300));
    a.kill();
    assert!(
        cut.join().unwrap().is_err(),
        "the cut request got an answer"
    );
    // Nothing partial is visible; B knows where the session stands.
    let r = b
        .req(Method::HEAD, &format!("/v2/{repo}/blobs/{digest}"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = b.req_url(Method::GET, &on(&b, &loc)).send().unwrap();
    assert_eq!(r.status(), 204, "{}", b.logs());
    let range = header(&r, "range");
    let offset: usize = range.rsplit('-').next().unwrap().parse::<usize>().unwrap() + 1;
    assert_eq!(offset, 6 * MIB, "only whole chunks are durable: {range}");
    // The client retries the rest through B.
    let loc = patch(&b, &header(&r, "location"), offset, &blob[offset..]);
    finish_upload(&b, &loc, &digest, b"");
    assert_eq!(served_digest(&b, repo, &digest), digest);
}

#[test]
fn a_garage_node_lost_mid_push_and_mid_pull() {
    use std::io::Read;
    let Some(g) = Garage::start(3) else { return };
    let (a, b) = two_replicas(&g, LOCAL, "250ms");
    let repo = "team/nodes";
    let blob = data(16, 12 * MIB);
    let digest = sha256(&blob);
    // Push: a node dies between chunks; quorum (2 of 3) still writes.
    let loc = start_upload(&a, repo);
    let loc = patch(&a, &loc, 0, &blob[..6 * MIB]);
    g.stop_node(2);
    let loc = patch(&b, &loc, 6 * MIB, &blob[6 * MIB..]);
    finish_upload(&a, &loc, &digest, b"");
    g.restart_node(2);
    // Pull: a node dies while B streams the blob.
    let mut r = http()
        .get(format!("{}/v2/{repo}/blobs/{digest}", b.url()))
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut got = vec![0u8; MIB];
    r.read_exact(&mut got).unwrap();
    g.stop_node(2);
    r.read_to_end(&mut got).unwrap();
    assert_eq!(sha256(&got), digest, "{}", b.logs());
}
