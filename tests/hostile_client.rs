//! Every client is hostile until authenticated, and then gets exactly what
//! its identity allows. Regression tests against the real binary for the
//! holes of issue "Hardening" that a client can open: management with the
//! wrong credentials (3, 4), ranged reads of unverified bytes (5), absurd
//! durations (6), quota bypass with chunked bodies (7), login floods (8),
//! Host header injection (10), unbounded resources (11), conformance (12).
mod support;

use support::disk::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use support::accounts::auth_config;
use support::fake_upstream::{BlobMode, FakeUpstream};
use support::*;

fn start(config: &str) -> Wharf {
    Wharf::start_with(Options {
        config: Some(format!("remotes = []\n{config}")),
        ..Options::default()
    })
}

/// A token from wharf's token service for `scope`, as `user`.
fn token(w: &Wharf, user: &str, pass: &str, scope: Option<&str>) -> String {
    let url = match scope {
        Some(s) => format!("{}/token?service=wharf&scope={s}", w.url()),
        None => format!("{}/token?service=wharf", w.url()),
    };
    let v: serde_json::Value = http()
        .get(url)
        .basic_auth(user, Some(pass))
        .send()
        .unwrap()
        .json()
        .unwrap();
    v["token"].as_str().unwrap().to_string()
}

fn new_robot(name: &str) -> String {
    json!({"name": name, "permissions": {"a": ["pull"]}}).to_string()
}

/// Hole 3: a token for pulling is not a management credential.
#[test]
fn management_needs_basic_credentials_or_a_management_token() {
    let w = start(&auth_config());
    let robots = format!("{}/api/v1/robots", w.url());
    for scope in [Some("repository:a/app:pull"), None] {
        let t = token(&w, "admin", "adminpw", scope);
        let r = http()
            .post(&robots)
            .bearer_auth(&t)
            .body(new_robot("sneaky"))
            .send()
            .unwrap();
        let v = assert_oci_error(r, 403, "DENIED");
        assert!(v.to_string().contains("registry:management:*"), "{v}");
    }
    let t = token(&w, "admin", "adminpw", Some("registry:management:*"));
    let r = http()
        .post(&robots)
        .bearer_auth(&t)
        .body(new_robot("via-token"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text());
    let r = http()
        .post(&robots)
        .basic_auth("admin", Some("adminpw"))
        .body(new_robot("via-basic"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text());
    // A robot gets the scope too, but stays a robot: no admin powers.
    let t = token(
        &w,
        "robot$pusher",
        "pushertok",
        Some("registry:management:*"),
    );
    let r = http()
        .post(&robots)
        .bearer_auth(&t)
        .body(new_robot("robot-made"))
        .send()
        .unwrap();
    assert_oci_error(r, 403, "DENIED");
}

/// Hole 4: without accounts, nobody can take the registry over by creating
/// the first robot.
#[test]
fn open_mode_management_is_read_only() {
    let w = Wharf::start_registry_only();
    let r = http()
        .post(format!("{}/api/v1/robots", w.url()))
        .body(new_robot("takeover"))
        .send()
        .unwrap();
    let v = assert_oci_error(r, 401, "UNAUTHORIZED");
    assert!(
        v.to_string().contains("[[auth.admins]]") && v.to_string().contains("hash-password"),
        "{v}"
    );
    for (m, path, body) in [
        ("PUT", "/api/v1/projects/x", "{}"),
        ("POST", "/api/v1/gc", "{}"),
        ("DELETE", "/api/v1/robots/x", ""),
    ] {
        let r = http()
            .request(m.parse().unwrap(), format!("{}{path}", w.url()))
            .body(body)
            .send()
            .unwrap();
        assert_eq!(r.status(), 401, "{m} {path}");
    }
    assert_eq!(
        http()
            .get(format!("{}/api/v1/projects", w.url()))
            .send()
            .unwrap()
            .status(),
        200
    );
    // The registry is still open: nothing switched authentication on.
    push_image(&w, "team/app", "v1", 1);
    assert_eq!(
        http()
            .get(format!("{}/v2/team/app/tags/list", w.url()))
            .send()
            .unwrap()
            .status(),
        200
    );
}

/// Hole 5: a ranged read of a blob whose fetch is still running waits for
/// the digest; forged bytes never go out as a complete 206.
#[test]
fn ranged_reads_of_a_blob_in_flight_wait_for_its_verification() {
    let up = FakeUpstream::start();
    let img = up.add_image_sized("lib/app", "v1", 7, &[300_000, 200_000]);
    let (good, bad) = (&img.layers[0], &img.layers[1]);
    up.set_blob_mode(
        good,
        BlobMode::Trickle {
            chunk: 50_000,
            delay: Duration::from_millis(100),
        },
    );
    up.set_blob_mode(bad, BlobMode::WrongBytes);
    let w = Wharf::start_with(Options {
        config: Some(up.remote_toml("up", None, "")),
        ..Options::default()
    });

    let r = http()
        .get(format!("{}/v2/up/lib/app/blobs/{bad}", w.url()))
        .header("range", "bytes=0-99")
        .send()
        .unwrap();
    assert_ne!(
        r.status(),
        206,
        "unverified bytes were served as a complete range"
    );
    assert_oci_error(r, 424, "UNAVAILABLE");

    // A full read starts the (slow) fetch; a range asked meanwhile gets the
    // verified bytes, with the validators of verified content.
    let full = {
        let url = format!("{}/v2/up/lib/app/blobs/{good}", w.url());
        std::thread::spawn(move || http().get(url).send().unwrap())
    };
    std::thread::sleep(Duration::from_millis(200));
    let r = http()
        .get(format!("{}/v2/up/lib/app/blobs/{good}", w.url()))
        .header("range", "bytes=10-99")
        .send()
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(header(&r, "etag"), format!("\"{good}\""));
    let all = up.blob(good).unwrap();
    assert_eq!(r.bytes().unwrap().as_ref(), &all[10..100]);
    let full = full.join().unwrap();
    assert_eq!(
        full.headers().get("cache-control").unwrap(),
        "no-store",
        "an unverified stream claimed to be cacheable"
    );
    assert!(full.headers().get("etag").is_none());
    assert_eq!(sha256(&full.bytes().unwrap()), *good);
}

/// Hole 6: durations that would overflow are refused, not wrapped.
#[test]
fn absurd_durations_are_refused() {
    let w = start(&auth_config());
    let robots = format!("{}/api/v1/robots", w.url());
    for e in ["18446744073709551615s", "1000000y"] {
        let body = json!({"name": "r1", "expires_in": e}).to_string();
        let r = http()
            .post(&robots)
            .basic_auth("admin", Some("adminpw"))
            .body(body)
            .send()
            .unwrap();
        let v = assert_oci_error(r, 400, "UNSUPPORTED");
        assert!(v.to_string().contains("expires_in"), "{v}");
    }
    let r = http()
        .post(format!("{}/api/v1/gc", w.url()))
        .basic_auth("admin", Some("adminpw"))
        .body(r#"{"grace": "9999999999999d"}"#)
        .send()
        .unwrap();
    assert_oci_error(r, 400, "UNSUPPORTED");
}

/// A body of unknown length: sent with chunked transfer encoding.
fn chunked(len: usize) -> reqwest::blocking::Body {
    reqwest::blocking::Body::new(std::io::Cursor::new(data(3, len)))
}

/// Hole 7: quota holds for chunked bodies; nothing a refused push sent
/// stays on disk.
#[test]
fn chunked_bodies_cannot_bypass_the_quota() {
    let w = Wharf::start_with(Options {
        config: Some("remotes = []\n[[projects]]\nname = \"small\"\nquota = \"1MiB\"\n".into()),
        admin: true,
        ..Options::default()
    });
    // wharf stops reading a refused body and may close the connection
    // before the client has sent it all: either way it is refused.
    let d = sha256(&data(3, 8 << 20));
    match w
        .req(
            Method::POST,
            &format!("/v2/small/app/blobs/uploads/?digest={d}"),
        )
        .body(chunked(8 << 20))
        .send()
    {
        Ok(r) => {
            let v = assert_oci_error(r, 403, "DENIED");
            assert!(v.to_string().contains("over its quota"), "{v}");
        }
        Err(e) => eprintln!("the client saw the refused POST as: {e}"),
    }
    assert_eq!(
        w.req(Method::HEAD, &format!("/v2/small/app/blobs/{d}"))
            .send()
            .unwrap()
            .status(),
        404
    );

    let r = w
        .req(Method::POST, "/v2/small/app/blobs/uploads/")
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = abs_url(&w, &header(&r, "location"));
    match w
        .req_url(Method::PATCH, &loc)
        .body(chunked(16 << 20))
        .send()
    {
        Ok(r) => {
            assert_oci_error(r, 403, "DENIED");
        }
        Err(e) => eprintln!("the client saw the refused PATCH as: {e}"),
    }
    assert_eq!(
        w.req_url(Method::GET, &loc).send().unwrap().status(),
        404,
        "the refused session is still open"
    );
    let leftovers: Vec<_> = ["blobs", "uploads", "tmp"]
        .iter()
        .flat_map(|d| files_under(&w.data_dir.join(d)))
        .collect();
    assert!(
        leftovers.is_empty(),
        "a refused push left files behind: {leftovers:?}"
    );
    let v: serde_json::Value = w
        .req(Method::GET, "/api/v1/projects/small")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["usage"], 0, "{v}");
}

/// Hole 8: 128 concurrent wrong logins cost bounded memory, valid clients
/// keep being served, and the flood is throttled with 429 + Retry-After.
#[test]
fn a_flood_of_wrong_logins_is_bounded_and_throttled() {
    let w = start(&format!(
        "{}\n[limits]\nlogin_concurrency = 2\nmax_failed_logins = 20\n",
        auth_config()
    ));
    let v2 = format!("{}/v2/", w.url());
    // The valid client's credentials are verified (and remembered) first.
    assert_eq!(
        http()
            .get(&v2)
            .basic_auth("admin", Some("adminpw"))
            .send()
            .unwrap()
            .status(),
        200
    );
    let idle = vm_hwm_kib(w.pid().unwrap());
    let flood: Vec<_> = (0..128)
        .map(|i| {
            let url = v2.clone();
            std::thread::spawn(move || {
                http()
                    .get(url)
                    .basic_auth("ghost", Some(format!("guess-{i}")))
                    .send()
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    let served = http()
        .get(&v2)
        .basic_auth("admin", Some("adminpw"))
        .send()
        .unwrap()
        .status();
    let statuses: Vec<u16> = flood
        .into_iter()
        .map(|h| h.join().unwrap().unwrap())
        .collect();
    let peak = vm_hwm_kib(w.pid().unwrap());
    eprintln!("128 wrong logins: peak RSS {idle} -> {peak} KiB; statuses: {statuses:?}");
    assert_eq!(
        served, 200,
        "a valid client was not served during the flood"
    );
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    assert!(statuses.contains(&429), "the flood was never throttled");
    assert!(
        peak < idle + 64 * 1024,
        "peak RSS grew by more than 64 MiB: {idle} -> {peak} KiB"
    );
    let r = http()
        .get(&v2)
        .basic_auth("ghost", Some("again"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(header(&r, "retry-after").parse::<u64>().unwrap() >= 1);
}

/// Send a raw request with a chosen Host header; returns the status line
/// and headers.
fn raw_head(w: &Wharf, host: &str) -> String {
    let mut s = TcpStream::connect(w.addr).unwrap();
    write!(
        s,
        "GET /v2/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split("\r\n\r\n").next().unwrap_or("").to_string()
}

/// Hole 10: the Host header is never reflected into the token realm.
#[test]
fn the_host_header_is_not_reflected_into_the_realm() {
    let w = start(&auth_config());
    let head = raw_head(&w, "evil.example:443/x?");
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("evil.example"),
        "{head}"
    );
    let head = raw_head(&w, "wharf.internal:5000");
    assert!(
        head.contains("realm=\"http://wharf.internal:5000/token\""),
        "{head}"
    );

    let w = start(&format!(
        "[server]\nexternal_url = \"https://registry.example.com\"\n{}",
        auth_config()
    ));
    let head = raw_head(&w, "evil.example:443/x?");
    assert!(
        head.contains("realm=\"https://registry.example.com/token\""),
        "{head}"
    );
    // Upload locations follow external_url too.
    let r = http()
        .post(format!("{}/v2/a/app/blobs/uploads/", w.url()))
        .basic_auth("admin", Some("adminpw"))
        .send()
        .unwrap();
    assert!(
        header(&r, "location").starts_with("https://registry.example.com/v2/a/app/blobs/uploads/"),
        "{:?}",
        r.headers()
    );
}

/// Hole 11: upload sessions, token scopes, robot permissions, referrers and
/// tag lists are bounded.
#[test]
fn per_client_and_total_resources_are_bounded() {
    let limits = "[limits]\nmax_upload_sessions = 5\nmax_upload_sessions_per_client = 3\nmax_token_scopes = 4\nmax_page_size = 5\n";
    let w = start(&format!("{limits}{}", auth_config()));
    let post = |user: &str, pass: &str| {
        http()
            .post(format!("{}/v2/a/app/blobs/uploads/", w.url()))
            .basic_auth(user, Some(pass))
            .send()
            .unwrap()
    };
    for _ in 0..3 {
        assert_eq!(post("admin", "adminpw").status(), 202);
    }
    let v = assert_oci_error(post("admin", "adminpw"), 429, "TOOMANYREQUESTS");
    assert!(
        v.to_string().contains("max_upload_sessions_per_client"),
        "{v}"
    );
    assert_eq!(post("robot$pusher", "pushertok").status(), 202);
    assert_eq!(post("robot$pusher", "pushertok").status(), 202);
    let v = assert_oci_error(post("robot$pusher", "pushertok"), 429, "TOOMANYREQUESTS");
    assert!(v.to_string().contains("limits.max_upload_sessions)"), "{v}");

    let scopes: String = (0..5)
        .map(|i| format!("&scope=repository:a/r{i}:pull"))
        .collect();
    let r = http()
        .get(format!("{}/token?service=wharf{scopes}", w.url()))
        .basic_auth("admin", Some("adminpw"))
        .send()
        .unwrap();
    assert_oci_error(r, 400, "UNSUPPORTED");

    let body = json!({"name": "escape", "permissions": {"../../etc": ["pull"]}}).to_string();
    let r = http()
        .post(format!("{}/api/v1/robots", w.url()))
        .basic_auth("admin", Some("adminpw"))
        .body(body)
        .send()
        .unwrap();
    assert_oci_error(r, 400, "UNSUPPORTED");
}

/// Hole 11, listings: no `n` means a page of `limits.max_page_size`, with a
/// `Link` to the next one; referrers are paginated the same way.
#[test]
fn listings_are_paginated() {
    let w = start("[limits]\nmax_page_size = 5\n");
    let img = push_image(&w, "team/app", "v0", 1);
    for i in 1..7 {
        assert_eq!(
            put_manifest(
                &w,
                "team/app",
                &format!("v{i}"),
                MT_OCI_MANIFEST,
                &img.bytes
            )
            .status(),
            201
        );
    }
    let r = http()
        .get(format!("{}/v2/team/app/tags/list", w.url()))
        .send()
        .unwrap();
    let link = header(&r, "link");
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["tags"].as_array().unwrap().len(), 5, "{v}");
    assert!(link.contains("n=5&last=v4"), "{link}");
    let cfg = push_blob(&w, "team/app", b"{}");
    let mut referrers = Vec::new();
    for i in 0..3 {
        let extra = json!({"subject": {"mediaType": MT_OCI_MANIFEST, "digest": img.digest, "size": img.bytes.len()}, "annotations": {"n": i.to_string()}});
        let m = image_manifest(
            MT_OCI_MANIFEST,
            descriptor(MT_OCI_CONFIG, &cfg, 2),
            vec![],
            extra,
        );
        assert_eq!(
            put_manifest(&w, "team/app", &sha256(&m), MT_OCI_MANIFEST, &m).status(),
            201
        );
        referrers.push(sha256(&m));
    }
    referrers.sort();
    let r = http()
        .get(format!(
            "{}/v2/team/app/referrers/{}?n=2",
            w.url(),
            img.digest
        ))
        .send()
        .unwrap();
    let link = header(&r, "link");
    let v: serde_json::Value = r.json().unwrap();
    let got: Vec<&str> = v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap())
        .collect();
    assert_eq!(got, referrers[..2].to_vec(), "{v}");
    let next = link.trim_start_matches('<').split('>').next().unwrap();
    let v: serde_json::Value = http()
        .get(format!("{}{next}", w.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["manifests"][0]["digest"], referrers[2], "{v}");
}

/// Hole 12: the conformance suite's invalid manifest name is "not found".
#[test]
fn an_invalid_manifest_name_is_not_found() {
    let w = Wharf::start_registry_only();
    push_image(&w, "conf/app", "v1", 3);
    for m in [Method::GET, Method::HEAD] {
        let r = http()
            .request(
                m.clone(),
                format!("{}/v2/conf/app/manifests/.INVALID_MANIFEST_NAME", w.url()),
            )
            .send()
            .unwrap();
        assert_eq!(r.status(), 404, "{m}");
        if m == Method::GET {
            assert_oci_error(r, 404, "MANIFEST_UNKNOWN");
        }
    }
    let r = put_manifest(
        &w,
        "conf/app",
        ".INVALID_MANIFEST_NAME",
        MT_OCI_MANIFEST,
        b"{}",
    );
    assert_oci_error(r, 400, "TAG_INVALID");
}
