//! One-time pull tokens (issue 13, item 2) against the real binary: one use
//! is one pull (the manifest by tag starts it, the blobs follow in its
//! window), a spent or expired token is refused with a message saying so,
//! other images and every other request are refused, the state survives a
//! restart; with plain HTTP (Basic and the token flow), skopeo and
//! `docker login` + `docker pull`.

mod support;

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use support::cli::{as_user, stdout as cli_stdout};
use support::docker::*;
use support::upstream::skopeo;
use support::*;

const CONFIG: &str =
    "remotes = []\n[[projects]]\nname = \"fleet\"\n[[projects]]\nname = \"other\"\n";

fn start() -> Wharf {
    Wharf::start_with(Options {
        config: Some(CONFIG.into()),
        admin: true,
        ..Options::default()
    })
}

/// A token: (username, password, the issuing answer).
struct Token {
    user: String,
    pass: String,
    issued: Value,
}

fn issue_as(
    w: &Wharf,
    creds: (&str, &str),
    image: &str,
    uses: u32,
    ttl: &str,
) -> reqwest::blocking::Response {
    http()
        .post(format!("{}/api/v1/pull-tokens", w.url()))
        .basic_auth(creds.0, Some(creds.1))
        .json(&json!({"image": image, "uses": uses, "ttl": ttl}))
        .send()
        .unwrap()
}

fn issue(w: &Wharf, image: &str, uses: u32, ttl: &str) -> Token {
    let r = issue_as(w, ADMIN, image, uses, ttl);
    let status = r.status();
    let issued: Value = r.json().unwrap();
    assert_eq!(status, 201, "{issued}\n{}", w.logs());
    Token {
        user: issued["username"].as_str().unwrap().into(),
        pass: issued["password"].as_str().unwrap().into(),
        issued,
    }
}

/// `method path` with the token's Basic credentials.
fn get(w: &Wharf, t: &Token, method: Method, path: &str) -> reqwest::blocking::Response {
    http()
        .request(method, format!("{}{path}", w.url()))
        .basic_auth(&t.user, Some(&t.pass))
        .header("accept", MT_OCI_MANIFEST)
        .send()
        .unwrap()
}

/// Assert a refusal with `status` whose message contains `words`.
fn refused(r: reqwest::blocking::Response, status: u16, code: &str, words: &str) {
    let e = assert_oci_error(r, status, code);
    let m = e["errors"][0]["message"].as_str().unwrap();
    assert!(m.contains(words), "message {m:?} does not say {words:?}");
}

#[test]
fn one_use_is_one_pull_and_nothing_else_is_served() {
    let w = start();
    let app = push_image(&w, "fleet/app", "v1", 1);
    push_image(&w, "fleet/other", "v1", 2);
    let t = issue(&w, "fleet/app:v1", 1, "1h");
    assert!(t.user.starts_with("pull$"));
    assert_eq!(t.issued["digest"], app.digest.as_str());

    // Blobs come after a manifest: none is in progress yet.
    refused(
        get(
            &w,
            &t,
            Method::GET,
            &format!("/v2/fleet/app/blobs/{}", app.layers[0]),
        ),
        403,
        "DENIED",
        "no pull in progress",
    );
    // The pull: manifest by tag (the use starts), by digest, config, layers.
    assert_eq!(get(&w, &t, Method::GET, "/v2/").status(), 200);
    let r = get(&w, &t, Method::GET, "/v2/fleet/app/manifests/v1");
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().to_vec(), app.bytes);
    assert_eq!(
        get(
            &w,
            &t,
            Method::HEAD,
            &format!("/v2/fleet/app/manifests/{}", app.digest)
        )
        .status(),
        200
    );
    for d in app.layers.iter().chain([&app.config]) {
        let b = get(&w, &t, Method::GET, &format!("/v2/fleet/app/blobs/{d}"))
            .bytes()
            .unwrap();
        assert_eq!(sha256(&b), *d);
    }
    // A second pull: the token is used up.
    refused(
        get(&w, &t, Method::GET, "/v2/fleet/app/manifests/v1"),
        403,
        "DENIED",
        "used up",
    );
    assert_eq!(
        get(&w, &t, Method::HEAD, "/v2/fleet/app/manifests/v1").status(),
        403
    );
    // Nothing but this image, read-only.
    refused(
        get(&w, &t, Method::GET, "/v2/fleet/other/manifests/v1"),
        403,
        "DENIED",
        "pulls fleet/app@",
    );
    refused(
        get(&w, &t, Method::GET, "/v2/fleet/app/tags/list"),
        403,
        "DENIED",
        "pulls fleet/app@",
    );
    refused(
        get(&w, &t, Method::POST, "/v2/fleet/app/blobs/uploads/"),
        403,
        "DENIED",
        "pulls fleet/app@",
    );
    refused(
        get(
            &w,
            &t,
            Method::DELETE,
            &format!("/v2/fleet/app/manifests/{}", app.digest),
        ),
        403,
        "DENIED",
        "",
    );
    refused(
        get(&w, &t, Method::GET, "/api/v1/projects"),
        403,
        "DENIED",
        "management API",
    );

    // Audited: issued, the use, the refused second use; never the secret.
    let page: Value = w
        .req(Method::GET, "/api/v1/audit?n=100")
        .send()
        .unwrap()
        .json()
        .unwrap();
    let entries = page["entries"].as_array().unwrap();
    let of = |action: &str, result: &str| {
        entries
            .iter()
            .filter(|e| e["action"] == action && e["result"] == result)
            .count()
    };
    assert_eq!(of("pull_token.create", "ok"), 1);
    assert_eq!(of("pull_token.use", "ok"), 1);
    assert!(of("pull_token.use", "denied") >= 2);
    assert!(entries.iter().any(|e| e["action"] == "pull_token.use"
        && e["actor"] == t.user.as_str()
        && e["details"]["use"] == 1));
    assert!(
        !page.to_string().contains(&t.pass),
        "the secret is in the audit log"
    );
    assert!(!w.logs().contains(&t.pass), "the secret is in the log");
}

/// A token from `/token` for `scope`, with the token's Basic credentials.
fn bearer(w: &Wharf, t: &Token, scope: &str) -> String {
    let r = http()
        .get(format!("{}/token?service=wharf&scope={scope}", w.url()))
        .basic_auth(&t.user, Some(&t.pass))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn token_flow_expiry_and_restart() {
    let mut w = start();
    let app = push_image(&w, "fleet/app", "v1", 1);
    let two = issue(&w, "fleet/app:v1", 2, "1h");
    let jwt = bearer(&w, &two, "repository:fleet/app:pull");
    let with_jwt = |w: &Wharf, jwt: &str, path: &str| {
        http()
            .get(format!("{}{path}", w.url()))
            .bearer_auth(jwt)
            .header("accept", MT_OCI_MANIFEST)
            .send()
            .unwrap()
    };
    assert_eq!(
        with_jwt(&w, &jwt, "/v2/fleet/app/manifests/v1").status(),
        200
    );
    assert_eq!(
        with_jwt(&w, &jwt, &format!("/v2/fleet/app/blobs/{}", app.config)).status(),
        200
    );

    // Expiry: Basic says so at login, a token from before at the pull.
    let short = issue(&w, "fleet/app:v1", 5, "2s");
    let early = bearer(&w, &short, "repository:fleet/app:pull");
    std::thread::sleep(Duration::from_millis(2500));
    refused(
        get(&w, &short, Method::GET, "/v2/fleet/app/manifests/v1"),
        401,
        "UNAUTHORIZED",
        "expired",
    );
    refused(
        with_jwt(&w, &early, "/v2/fleet/app/manifests/v1"),
        403,
        "DENIED",
        "expired",
    );

    // Uses are persisted: after a restart one of two is left.
    w.restart();
    assert_eq!(
        get(&w, &two, Method::GET, "/v2/fleet/app/manifests/v1").status(),
        200
    );
    refused(
        get(&w, &two, Method::GET, "/v2/fleet/app/manifests/v1"),
        403,
        "DENIED",
        "all 2 of its pulls were spent",
    );
    // Listed without the secret; revoked, it stops working at once.
    let other = issue(&w, "fleet/app:v1", 3, "1h");
    let list: Value = w
        .req(Method::GET, "/api/v1/pull-tokens")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|t| t["username"] == two.user.as_str() && t["used"] == 2),
        "{list}"
    );
    assert!(!list.to_string().contains(&two.pass) && !list.to_string().contains(&other.pass));
    let id = other.issued["id"].as_str().unwrap();
    assert_eq!(
        w.req(Method::DELETE, &format!("/api/v1/pull-tokens/{id}"))
            .send()
            .unwrap()
            .status(),
        204
    );
    refused(
        get(&w, &other, Method::GET, "/v2/fleet/app/manifests/v1"),
        401,
        "UNAUTHORIZED",
        "is not known (revoked, or expired long ago)",
    );
    // A wrong secret is a plain bad login.
    let wrong = Token {
        pass: "nope".into(),
        ..two
    };
    refused(
        get(&w, &wrong, Method::GET, "/v2/fleet/app/manifests/v1"),
        401,
        "UNAUTHORIZED",
        "",
    );
}

#[test]
fn robots_need_issue_tokens_and_the_cli_issues() {
    let w = start();
    push_image(&w, "fleet/app", "v1", 1);
    push_image(&w, "other/app", "v1", 2);
    let robot = |name: &str, perms: Value| -> String {
        let r = w
            .req(Method::POST, "/api/v1/robots")
            .json(&json!({"name": name, "permissions": perms}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
        r.json::<Value>().unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let issuer = robot("issuer", json!({"fleet": ["issue-tokens"]}));
    let puller = robot("puller", json!({"fleet": ["pull", "push", "delete"]}));
    refused(
        issue_as(&w, ("robot$puller", &puller), "fleet/app:v1", 1, "1h"),
        403,
        "DENIED",
        "issue-tokens",
    );
    refused(
        issue_as(&w, ("robot$issuer", &issuer), "other/app:v1", 1, "1h"),
        403,
        "DENIED",
        "issue-tokens",
    );
    assert_eq!(
        issue_as(&w, ("robot$issuer", &issuer), "fleet/app:v1", 1, "1h").status(),
        201
    );
    refused(
        issue_as(&w, ADMIN, "fleet/app:v1", 1, "forever"),
        400,
        "UNSUPPORTED",
        "ttl",
    );
    refused(
        issue_as(&w, ADMIN, "fleet/app:nosuch", 1, "1h"),
        404,
        "MANIFEST_UNKNOWN",
        "nosuch",
    );

    let out = as_user(
        &w,
        "robot$issuer",
        &issuer,
        &[
            "pull-token",
            "create",
            "fleet/app:v1",
            "--uses",
            "3",
            "--ttl",
            "30m",
        ],
    );
    assert!(out.status.success());
    let text = cli_stdout(&out);
    assert!(
        text.contains("username: pull$") && text.contains("3 uses"),
        "{text}"
    );
    let listed = cli_stdout(&support::cli::as_admin(&w, &["pull-token", "list"]));
    assert!(
        listed.contains("fleet/app@sha256:")
            && listed.contains("0/3")
            && listed.contains("robot$issuer"),
        "{listed}"
    );
}

#[test]
fn skopeo_pulls_once() {
    if !have("skopeo") {
        eprintln!("SKIPPED: skopeo not installed");
        return;
    }
    let w = start();
    let app = push_image(&w, "fleet/app", "v1", 1);
    let t = issue(&w, "fleet/app:v1", 1, "1h");
    let dir = tempfile::tempdir().unwrap();
    let copy = |to: &str| {
        let args: Vec<String> = vec![
            "copy".into(),
            "--preserve-digests".into(),
            "--src-tls-verify=false".into(),
            "--src-creds".into(),
            format!("{}:{}", t.user, t.pass),
            format!("docker://{}/fleet/app:v1", w.host()),
            format!("oci:{}:v1", dir.path().join(to).display()),
        ];
        skopeo(w.tmp.path(), &args)
    };
    let first = copy("one");
    assert!(
        first.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&first.stderr),
        w.logs()
    );
    assert_eq!(
        support::image::OciLayout::open(&dir.path().join("one"))
            .resolve("v1")
            .digest,
        app.digest
    );
    let second = copy("two");
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("used up"), "{err}");
}

#[test]
fn docker_login_and_pull_once() {
    if !engine_available() {
        return;
    }
    let w = start();
    let home = tempfile::tempdir().unwrap();
    let cfg = home.path().to_str().unwrap().to_string();
    let login = |user: &str, pass: &str| {
        let out = support::docker::login(&cfg, &w.host(), user, pass);
        assert!(
            out.status.success(),
            "login as {user}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            w.logs()
        );
    };
    // The admin pushes a real image.
    login(ADMIN.0, ADMIN.1);
    let tag = format!("{}/fleet/node:1", w.host());
    let _images = Images(vec![tag.clone()]);
    support::docker::build_hello(&w.host(), &tag);
    let id = image_id(&tag);
    docker(&["--config", &cfg, "push", &tag]);
    docker(&["rmi", "-f", &tag]);

    // A node logs in with the pull token and pulls once.
    let t = issue(&w, "fleet/node:1", 1, "1h");
    login(&t.user, &t.pass);
    docker_or_explain(&["--config", &cfg, "pull", &tag], &|| w.logs());
    assert_eq!(image_id(&tag), id);
    docker(&["rmi", "-f", &tag]);
    let again = run(docker_cmd(&["--config", &cfg, "pull", &tag]));
    assert!(
        !again.status.success(),
        "a second pull with a one-use token worked"
    );
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("used up"), "docker does not show why: {err}");
}

#[test]
fn containerd_pulls_a_multi_platform_index_once() {
    let Some(ctr) = support::ctr::Ctr::connect_with_skopeo("wharf-pulltoken") else {
        return;
    };
    let w = start();
    let tmp = tempfile::tempdir().unwrap();
    let src = support::image::OciLayout::create(&tmp.path().join("src"));
    let spec = support::image::ImageSpec::oci(
        5,
        vec![
            support::image::LayerSpec::gzip(20 << 10),
            support::image::LayerSpec::tar(4096),
        ],
    );
    let multi = src.multi_arch("v1", &spec);
    let push = skopeo(
        w.tmp.path(),
        &[
            "copy".into(),
            "--all".into(),
            "--preserve-digests".into(),
            "--dest-tls-verify=false".into(),
            "--dest-creds".into(),
            format!("{}:{}", ADMIN.0, ADMIN.1),
            src.transport_ref("v1"),
            format!("docker://{}/fleet/multi:v1", w.host()),
        ],
    );
    assert!(
        push.status.success(),
        "{}",
        String::from_utf8_lossy(&push.stderr)
    );
    let t = issue(&w, "fleet/multi:v1", 1, "1h");
    assert_eq!(t.issued["digest"], multi.index.digest.as_str());

    // containerd: HEAD by tag, the index by digest, one platform's manifest
    // and blobs — one use.
    let reference = format!("{}/fleet/multi:v1", w.host());
    let creds = format!("{}:{}", t.user, t.pass);
    let pull = [
        "images",
        "pull",
        "--plain-http",
        "--user",
        &creds,
        "--snapshotter",
        support::ctr::SNAPSHOTTER,
        &reference,
    ];
    let out = ctr.run_or_explain(&pull, &|| w.logs());
    assert!(out.contains("unpacking"), "{out}");
    ctr.run(&["images", "rm", &reference]);
    ctr.clear();
    let again = ctr.output(&pull);
    assert!(
        !again.status.success(),
        "a second pull with a one-use token worked"
    );
    let page: Value = w
        .req(Method::GET, "/api/v1/audit?n=100")
        .send()
        .unwrap()
        .json()
        .unwrap();
    let uses: Vec<&Value> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "pull_token.use")
        .collect();
    assert_eq!(
        uses.iter().filter(|e| e["result"] == "ok").count(),
        1,
        "{uses:?}"
    );
    assert!(
        uses.iter()
            .any(|e| e["result"] == "denied"
                && e["error"].as_str().unwrap_or("").contains("used up")),
        "{uses:?}"
    );
}
