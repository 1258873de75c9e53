//! Issue 5: who may do what. A permission matrix over anonymous, a robot
//! with pull on A, a robot with push on A, and an admin, against pull,
//! push, delete and catalog on private projects A and B and public P; plus
//! the Docker token flow and robots created through the config.
mod support;

use reqwest::blocking::{Client, RequestBuilder};
use support::accounts::auth_config;
use support::{http, sha256, Options, Wharf};

#[derive(Clone, Copy, Debug)]
enum Who {
    Anon,
    Puller,
    Pusher,
    Admin,
}

fn with(who: Who, rb: RequestBuilder) -> RequestBuilder {
    match who {
        Who::Anon => rb,
        Who::Puller => rb.basic_auth("robot$puller", Some("pullertok")),
        Who::Pusher => rb.basic_auth("robot$pusher", Some("pushertok")),
        Who::Admin => rb.basic_auth("admin", Some("adminpw")),
    }
}

/// Push a one-blob image as admin; returns the manifest digest.
fn seed(c: &Client, base: &str, repo: &str) -> String {
    let blob = format!("layer of {repo}").into_bytes();
    let cfg = b"{}".to_vec();
    for b in [&blob, &cfg] {
        let r = with(
            Who::Admin,
            c.post(format!(
                "{base}/v2/{repo}/blobs/uploads/?digest={}",
                sha256(b)
            )),
        )
        .body(b.clone())
        .send()
        .unwrap();
        assert_eq!(r.status(), 201, "seed blob");
    }
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&cfg), "size": cfg.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(&blob), "size": blob.len()}]
    });
    let bytes = serde_json::to_vec(&m).unwrap();
    let r = with(Who::Admin, c.put(format!("{base}/v2/{repo}/manifests/v1")))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(bytes.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "seed manifest");
    sha256(&bytes)
}

/// What a cell expects: allowed (any status other than 401/403), 401, or 403.
#[derive(Debug, PartialEq, Clone, Copy)]
enum Want {
    Ok,
    Unauth,
    Denied,
}

fn outcome(status: u16) -> Want {
    match status {
        401 => Want::Unauth,
        403 => Want::Denied,
        _ => Want::Ok,
    }
}

/// One cell row of the matrix: (operation, its request, [anon, puller, pusher, admin]).
type Cell<'a> = (&'a str, Box<dyn Fn(Who) -> u16 + 'a>, [Want; 4]);

#[test]
fn permission_matrix() {
    let w = Wharf::start_with(Options {
        config: Some(auth_config()),
        ..Default::default()
    });
    let c = http();
    let base = w.url();
    for repo in ["a/app", "b/app", "p/app"] {
        seed(&c, &base, repo);
    }
    use Want::*;
    use Who::*;
    // (operation, [anon, puller, pusher, admin])
    let pull = |repo: &str| format!("{base}/v2/{repo}/manifests/v1");
    let cells: Vec<Cell> = vec![
        (
            "pull a",
            Box::new(|who| {
                with(who, c.get(pull("a/app")))
                    .send()
                    .unwrap()
                    .status()
                    .as_u16()
            }),
            [Unauth, Ok, Ok, Ok],
        ),
        (
            "pull b",
            Box::new(|who| {
                with(who, c.get(pull("b/app")))
                    .send()
                    .unwrap()
                    .status()
                    .as_u16()
            }),
            [Unauth, Denied, Denied, Ok],
        ),
        (
            "pull public p",
            Box::new(|who| {
                with(who, c.get(pull("p/app")))
                    .send()
                    .unwrap()
                    .status()
                    .as_u16()
            }),
            [Ok, Ok, Ok, Ok],
        ),
        (
            "push a",
            Box::new(|who| {
                with(who, c.post(format!("{base}/v2/a/app/blobs/uploads/")))
                    .send()
                    .unwrap()
                    .status()
                    .as_u16()
            }),
            [Unauth, Denied, Ok, Ok],
        ),
        (
            "push b",
            Box::new(|who| {
                with(who, c.post(format!("{base}/v2/b/app/blobs/uploads/")))
                    .send()
                    .unwrap()
                    .status()
                    .as_u16()
            }),
            [Unauth, Denied, Denied, Ok],
        ),
        (
            "push public p",
            Box::new(|who| {
                with(who, c.post(format!("{base}/v2/p/app/blobs/uploads/")))
                    .send()
                    .unwrap()
                    .status()
                    .as_u16()
            }),
            [Unauth, Denied, Denied, Ok],
        ),
        (
            "delete a (absent tag)",
            Box::new(|who| {
                with(
                    who,
                    c.delete(format!("{base}/v2/a/app/manifests/nosuchtag")),
                )
                .send()
                .unwrap()
                .status()
                .as_u16()
            }),
            [Unauth, Denied, Denied, Ok],
        ),
        (
            "delete b (absent tag)",
            Box::new(|who| {
                with(
                    who,
                    c.delete(format!("{base}/v2/b/app/manifests/nosuchtag")),
                )
                .send()
                .unwrap()
                .status()
                .as_u16()
            }),
            [Unauth, Denied, Denied, Ok],
        ),
        (
            "tags a",
            Box::new(|who| {
                with(who, c.get(format!("{base}/v2/a/app/tags/list")))
                    .send()
                    .unwrap()
                    .status()
                    .as_u16()
            }),
            [Unauth, Ok, Ok, Ok],
        ),
        (
            "catalog",
            Box::new(|who| {
                with(who, c.get(format!("{base}/v2/_catalog")))
                    .send()
                    .unwrap()
                    .status()
                    .as_u16()
            }),
            [Unauth, Ok, Ok, Ok],
        ),
        (
            "base /v2/",
            Box::new(|who| {
                with(who, c.get(format!("{base}/v2/")))
                    .send()
                    .unwrap()
                    .status()
                    .as_u16()
            }),
            [Unauth, Ok, Ok, Ok],
        ),
    ];
    let mut failures = Vec::new();
    for (name, op, want) in &cells {
        for (i, who) in [Anon, Puller, Pusher, Admin].into_iter().enumerate() {
            let status = op(who);
            if outcome(status) != want[i] {
                failures.push(format!(
                    "{name} as {who:?}: got {status}, want {:?}",
                    want[i]
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "matrix cells wrong:\n{}",
        failures.join("\n")
    );

    // 401s carry a Bearer challenge pointing at the token service.
    let r = c.get(pull("a/app")).send().unwrap();
    let ch = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(ch.starts_with("Bearer realm=\"http://"), "{ch}");
    assert!(
        ch.contains("service=\"wharf\"") && ch.contains("scope=\"repository:a/app:pull\""),
        "{ch}"
    );
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED");
    // 403s are OCI DENIED.
    let r = with(Puller, c.get(pull("b/app"))).send().unwrap();
    assert_eq!(
        r.json::<serde_json::Value>().unwrap()["errors"][0]["code"],
        "DENIED"
    );
    // A wrong token is 401, not 403.
    let r = c
        .get(pull("a/app"))
        .basic_auth("robot$puller", Some("wrong"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    // The catalog shows each client only what it may pull.
    let cat = |who| -> Vec<String> {
        let v: serde_json::Value = with(who, c.get(format!("{base}/v2/_catalog")))
            .send()
            .unwrap()
            .json()
            .unwrap();
        v["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(cat(Puller), ["a/app", "p/app"]);
    assert_eq!(cat(Admin), ["a/app", "b/app", "p/app"]);
}

/// The Docker token flow: challenge → /token with Basic → JWT carrying only
/// the granted subset → requests with the JWT.
#[test]
fn token_flow_grants_exact_scopes() {
    let w = Wharf::start_with(Options {
        config: Some(auth_config()),
        ..Default::default()
    });
    let c = http();
    let base = w.url();
    seed(&c, &base, "a/app");
    let token = |who: Who, scope: &str| -> serde_json::Value {
        let r = with(
            who,
            c.get(format!("{base}/token?service=wharf&scope={scope}")),
        )
        .send()
        .unwrap();
        assert_eq!(r.status(), 200);
        r.json().unwrap()
    };
    let claims = |t: &str| -> serde_json::Value {
        use base64::Engine;
        let payload = t.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap()
    };
    let t = token(Who::Puller, "repository:a/app:pull,push");
    let jwt = t["token"].as_str().unwrap().to_string();
    assert!(t["expires_in"].as_u64().unwrap() > 0);
    let cl = claims(&jwt);
    assert_eq!(cl["sub"], "robot$puller");
    assert_eq!(
        cl["access"][0]["actions"],
        serde_json::json!(["pull"]),
        "push not granted to a puller"
    );
    let r = c
        .get(format!("{base}/v2/a/app/manifests/v1"))
        .bearer_auth(&jwt)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // The JWT does not reach beyond its scope.
    let r = c
        .post(format!("{base}/v2/a/app/blobs/uploads/"))
        .bearer_auth(&jwt)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    // Anonymous token: nothing on private A.
    let t = token(Who::Anon, "repository:a/app:pull");
    assert_eq!(
        claims(t["token"].as_str().unwrap())["access"][0]["actions"],
        serde_json::json!([])
    );
    // Wrong credentials at /token → 401.
    let r = c
        .get(format!("{base}/token?scope=repository:a/app:pull"))
        .basic_auth("robot$puller", Some("x"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    // A tampered token is rejected.
    let r = c
        .get(format!("{base}/v2/a/app/manifests/v1"))
        .bearer_auth(format!("{jwt}x"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    // OAuth2 password grant (POST) works too.
    let r = c
        .post(format!("{base}/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", "robot$pusher"),
            ("password", "pushertok"),
            ("scope", "repository:a/app:push"),
            ("service", "wharf"),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let jwt: serde_json::Value = r.json().unwrap();
    assert_eq!(
        claims(jwt["access_token"].as_str().unwrap())["access"][0]["actions"],
        serde_json::json!(["push"])
    );
}

/// Open mode: no accounts configured, anyone may push and pull.
#[test]
fn open_without_accounts() {
    let w = Wharf::start();
    let c = http();
    let r = c.get(format!("{}/v2/", w.url())).send().unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(format!("{}/v2/team/app/blobs/uploads/", w.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
}

/// A mount from a repository the client may not pull does not happen.
#[test]
fn cross_project_mount_refused() {
    let w = Wharf::start_with(Options {
        config: Some(auth_config()),
        ..Default::default()
    });
    let c = http();
    let base = w.url();
    seed(&c, &base, "b/app");
    let secret = sha256(b"layer of b/app");
    for url in [
        format!("{base}/v2/a/app/blobs/uploads/?mount={secret}&from=b/app"),
        format!("{base}/v2/a/app/blobs/uploads/?mount={secret}"),
    ] {
        let r = with(Who::Pusher, c.post(url)).send().unwrap();
        assert_eq!(
            r.status(),
            202,
            "must fall back to an upload session, not mount"
        );
    }
    let r = with(
        Who::Pusher,
        c.head(format!("{base}/v2/a/app/blobs/{secret}")),
    )
    .send()
    .unwrap();
    assert_eq!(r.status(), 404);
}
