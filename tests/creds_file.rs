//! Remote credentials from the `file` backend (issue 4): JSON and TOML
//! documents, a Docker `config.json`, a Kubernetes-style secret directory,
//! the permission check at start-up, and the errors a client sees when the
//! secret is missing or malformed. Upstream: the hand-written fake registry
//! demanding exactly one Basic account.
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use support::fake_upstream::FakeUpstream;
use support::{Options, Wharf};

const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

fn write_secret(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn remote(up: &FakeUpstream, creds: &str) -> String {
    format!(
        "[[remotes]]\nname = \"corp\"\nurl = \"{}\"\ncredentials = {creds}\n",
        up.url()
    )
}

fn get_manifest(w: &Wharf, repo: &str, tag: &str) -> reqwest::blocking::Response {
    support::http()
        .get(format!("{}/v2/corp/{repo}/manifests/{tag}", w.url()))
        .header("Accept", ACCEPT)
        .send()
        .unwrap()
}

fn assert_pulls(w: &Wharf, up: &FakeUpstream, repo: &str, seed: u64) {
    let img = up.add_image(repo, "v1", seed);
    let r = get_manifest(w, repo, "v1");
    assert_eq!(
        r.status(),
        200,
        "{}\nwharf log:\n{}",
        r.text().unwrap_or_default(),
        w.logs()
    );
    assert_eq!(r.bytes().unwrap().to_vec(), img.manifest);
    for b in img.blobs() {
        let r = support::http()
            .get(format!("{}/v2/corp/{repo}/blobs/{b}", w.url()))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(support::sha256(&r.bytes().unwrap()), b);
    }
}

#[test]
fn json_and_toml_files() {
    let up = FakeUpstream::start();
    up.require_basic("robot", "s3cret:json");
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("creds.json");
    write_secret(
        &json,
        r#"{"username":"robot","password":"s3cret:json"}"#,
        0o600,
    );
    let w = Wharf::start_with(Options {
        config: Some(remote(
            &up,
            &format!(
                "{{ secret = {{ backend = \"file\", path = \"{}\" }} }}",
                json.display()
            ),
        )),
        ..Default::default()
    });
    assert_pulls(&w, &up, "team/app", 1);
    drop(w);

    up.require_basic("robot", "s3cret toml");
    let toml = tmp.path().join("creds.toml");
    write_secret(
        &toml,
        "username = \"robot\"\npassword = \"s3cret toml\"\n",
        0o400,
    );
    let w = Wharf::start_with(Options {
        config: Some(remote(
            &up,
            &format!(
                "{{ secret = {{ backend = \"file\", path = \"{}\" }} }}",
                toml.display()
            ),
        )),
        ..Default::default()
    });
    assert_pulls(&w, &up, "team/app2", 2);
}

#[test]
fn docker_config_json_auths_entry() {
    let up = FakeUpstream::start();
    up.require_basic("dockeruser", "pa:ss");
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("config.json");
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    // Two entries: the one for the remote's host is chosen.
    let doc = serde_json::json!({
        "auths": {
            "https://index.docker.io/v1/": { "auth": b64("hub:wrong") },
            up.host(): { "auth": b64("dockeruser:pa:ss") },
        }
    });
    write_secret(&path, &doc.to_string(), 0o600);
    let w = Wharf::start_with(Options {
        config: Some(remote(
            &up,
            &format!(
                "{{ secret = {{ backend = \"file\", path = \"{}\" }} }}",
                path.display()
            ),
        )),
        ..Default::default()
    });
    assert_pulls(&w, &up, "lib/app", 3);
}

#[test]
fn kubernetes_secret_directory() {
    let up = FakeUpstream::start();
    up.require_basic("k8s-bot", "mounted-pass");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mount");
    std::fs::create_dir(&dir).unwrap();
    write_secret(&dir.join("username"), "k8s-bot\n", 0o400);
    write_secret(&dir.join("password"), "mounted-pass\n", 0o400);
    let w = Wharf::start_with(Options {
        config: Some(remote(
            &up,
            &format!(
                "{{ secret = {{ backend = \"file\", path = \"{}\" }} }}",
                dir.display()
            ),
        )),
        ..Default::default()
    });
    assert_pulls(&w, &up, "k/app", 4);
}

/// Run `wharf <args>` to completion (it must exit by itself).
fn run_wharf(args: &[&str]) -> (i32, String) {
    let mut child = Command::new(support::bin())
        .args(args)
        .env_remove("WHARF_CONFIG")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("wharf {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn group_readable_file_is_refused_at_start_up() {
    let up = FakeUpstream::start();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("creds.json");
    write_secret(
        &path,
        r#"{"username":"u","password":"too-open-secret"}"#,
        0o640,
    );
    let cfg = tmp.path().join("wharf.toml");
    std::fs::write(
        &cfg,
        remote(
            &up,
            &format!(
                "{{ secret = {{ backend = \"file\", path = \"{}\" }} }}",
                path.display()
            ),
        ),
    )
    .unwrap();
    let port = support::free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let data = tmp.path().join("data");
    let (code, out) = run_wharf(&[
        "serve",
        "--listen",
        &listen,
        "--data-dir",
        data.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains(&path.display().to_string()), "{out}");
    assert!(out.contains("readable by group or others"), "{out}");
    assert!(out.contains("remotes[0].credentials"), "{out}");
    assert!(!out.contains("too-open-secret"), "{out}");

    // check-config says the same; chmod 600 fixes it.
    let (code, out) = run_wharf(&["check-config", "--config", cfg.to_str().unwrap()]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("readable by group or others"), "{out}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, out) = run_wharf(&["check-config", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("  corp ")
            && out.contains("credentials[0]")
            && out.contains("readable (basic credentials)"),
        "{out}"
    );
    assert!(!out.contains("too-open-secret"), "{out}");
}

#[test]
fn check_config_reports_each_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good.json");
    write_secret(&good, r#"{"token":"tok-value-123"}"#, 0o600);
    let bad = tmp.path().join("bad.json");
    write_secret(
        &bad,
        r#"{"username": "u", "password": "half-a-secret"#,
        0o600,
    );
    let cfg = tmp.path().join("wharf.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[remotes]]\nname = \"a\"\nurl = \"http://127.0.0.1:9\"\ncredentials = [\n  {{ repository = \"x/*\", secret = {{ backend = \"file\", path = \"{}\" }} }},\n  {{ secret = {{ backend = \"file\", path = \"{}\" }} }},\n  {{ secret = {{ backend = \"file\", path = \"{}\" }} }},\n]\n[[remotes]]\nname = \"b\"\nurl = \"http://127.0.0.1:9\"\n",
            good.display(),
            bad.display(),
            tmp.path().join("missing.json").display()
        ),
    )
    .unwrap();
    let (code, out) = run_wharf(&["check-config", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("credentials[0] for \"x/*\" from file")
            && out.contains("readable (token credentials)"),
        "{out}"
    );
    assert!(
        out.contains("credentials[1]") && out.contains("CANNOT BE READ: malformed secret"),
        "{out}"
    );
    assert!(
        out.contains("credentials[2]") && out.contains("no such file"),
        "{out}"
    );
    assert!(
        out.contains("  b http://127.0.0.1:9/\n    credentials: none (anonymous)"),
        "{out}"
    );
    for s in ["tok-value-123", "half-a-secret"] {
        assert!(!out.contains(s), "check-config printed a secret:\n{out}");
    }
}

/// Missing, then malformed, then fixed: the client gets 424 UNAUTHORIZED naming the
/// remote; the log names the secret reference; nothing from the failures
/// is cached, so fixing the file is enough.
#[test]
fn missing_and_malformed_secret_then_fixed() {
    let up = FakeUpstream::start();
    up.require_basic("robot", "fixed-pass");
    let img = up.add_image("team/app", "v1", 9);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("later.json");
    let w = Wharf::start_with(Options {
        config: Some(format!(
            "{}credentials_ttl = \"1s\"\n",
            remote(
                &up,
                &format!(
                    "{{ secret = {{ backend = \"file\", path = \"{}\" }} }}",
                    path.display()
                )
            )
        )),
        ..Default::default()
    });
    let r = get_manifest(&w, "team/app", "v1");
    let v = support::assert_oci_error(r, 424, "UNAUTHORIZED");
    let detail = v["errors"][0]["detail"].as_str().unwrap_or("").to_string();
    assert!(detail.contains("corp"), "{detail}");
    let logs = w.logs();
    assert!(
        logs.contains(&format!("file:{}", path.display())),
        "log does not name the secret reference:\n{logs}"
    );

    write_secret(
        &path,
        "{\"username\": \"robot\", \"password\": \"fixed-pass\"",
        0o600,
    );
    let r = get_manifest(&w, "team/app", "v1");
    support::assert_oci_error(r, 424, "UNAUTHORIZED");
    assert!(w.logs().contains("malformed secret"), "{}", w.logs());
    assert!(!w.logs().contains("fixed-pass"));

    write_secret(
        &path,
        r#"{"username": "robot", "password": "fixed-pass"}"#,
        0o600,
    );
    let r = get_manifest(&w, "team/app", "v1");
    assert_eq!(r.status(), 200, "{}", w.logs());
    assert_eq!(r.bytes().unwrap().to_vec(), img.manifest);
}

/// Wrong credentials at the upstream: 424 UNAUTHORIZED naming the remote, the log
/// names the reference, and a rotated file is picked up without restart.
#[test]
fn rejected_then_rotated_file() {
    let up = FakeUpstream::start();
    up.require_basic("robot", "new-pass");
    let img = up.add_image("team/app", "v1", 10);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("creds.json");
    write_secret(
        &path,
        r#"{"username":"robot","password":"old-pass"}"#,
        0o600,
    );
    let w = Wharf::start_with(Options {
        config: Some(format!(
            "{}credentials_ttl = \"1s\"\n",
            remote(
                &up,
                &format!(
                    "{{ secret = {{ backend = \"file\", path = \"{}\" }} }}",
                    path.display()
                )
            )
        )),
        ..Default::default()
    });
    let v = support::assert_oci_error(get_manifest(&w, "team/app", "v1"), 424, "UNAUTHORIZED");
    assert!(
        v["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("remote corp"),
        "{v}"
    );
    let logs = w.logs();
    assert!(
        logs.contains("rejected wharf's credentials")
            && logs.contains(&format!("file:{}", path.display())),
        "{logs}"
    );

    write_secret(
        &path,
        r#"{"username":"robot","password":"new-pass"}"#,
        0o600,
    );
    std::thread::sleep(Duration::from_millis(1100));
    let r = get_manifest(&w, "team/app", "v1");
    assert_eq!(r.status(), 200, "{}", w.logs());
    assert_eq!(r.bytes().unwrap().to_vec(), img.manifest);
    for s in ["old-pass", "new-pass"] {
        assert!(!w.logs().contains(s));
    }
}

/// OAuth2 refresh tokens (Docker's `identitytoken`): exchanged at the realm
/// by a form POST (`grant_type=refresh_token`, the token in the body, never
/// in a URL), access tokens cached until they expire, refreshed on a 401.
#[test]
fn refresh_token_is_exchanged_cached_and_refreshed_on_401() {
    let up = FakeUpstream::start();
    let refresh = "rt-0f3c-refresh-secret";
    up.require_oauth_refresh(refresh);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("oauth.json");
    write_secret(
        &path,
        &format!(r#"{{"username":"robot","refresh_token":"{refresh}"}}"#),
        0o600,
    );
    let w = Wharf::start_with(Options {
        config: Some(remote(
            &up,
            &format!(
                "{{ secret = {{ backend = \"file\", path = \"{}\" }} }}",
                path.display()
            ),
        )),
        ..Default::default()
    });
    assert_pulls(&w, &up, "team/app", 11);

    let grants = up.token_requests();
    assert!(
        !grants.is_empty() && grants.iter().all(|g| g.granted),
        "{grants:#?}"
    );
    for g in &grants {
        assert_eq!(g.method, "POST", "{g:?}");
        assert_eq!(g.grant_type.as_deref(), Some("refresh_token"));
        assert_eq!(g.client_id.as_deref(), Some("wharf"));
        assert_eq!(
            g.scopes,
            vec!["repository:team/app:pull".to_string()],
            "{g:?}"
        );
    }
    assert!(
        up.requests().iter().all(|r| !r.target.contains(refresh)),
        "the refresh token went into a URL"
    );

    // Cached: another upstream request (a tag wharf has not seen) asks
    // the token service nothing.
    let issued = up.tokens_issued();
    up.add_image("team/app", "v2", 14);
    assert_eq!(get_manifest(&w, "team/app", "v2").status(), 200);
    assert_eq!(
        up.tokens_issued(),
        issued,
        "a cached access token was not reused"
    );

    // The registry forgets its tokens: wharf refreshes on the 401.
    up.revoke_tokens();
    up.add_image("team/app", "v3", 15);
    let r = get_manifest(&w, "team/app", "v3");
    assert_eq!(r.status(), 200, "{}", w.logs());
    assert!(
        up.tokens_issued() > issued,
        "no new access token after the 401"
    );
    assert!(
        !w.logs().contains(refresh),
        "the refresh token is in wharf's log"
    );
}

/// A Docker config with an `identitytoken` uses it as a refresh token; a
/// refresh token the realm refuses is 424 UNAUTHORIZED naming the secret.
#[test]
fn docker_identitytoken_and_a_refused_refresh_token() {
    let up = FakeUpstream::start();
    up.require_oauth_refresh("rt-identity-77");
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("config.json");
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let doc = serde_json::json!({
        "auths": { up.host(): { "auth": b64("<token>:"), "identitytoken": "rt-identity-77" } }
    });
    write_secret(&path, &doc.to_string(), 0o600);
    let w = Wharf::start_with(Options {
        config: Some(remote(
            &up,
            &format!(
                "{{ secret = {{ backend = \"file\", path = \"{}\" }} }}",
                path.display()
            ),
        )),
        ..Default::default()
    });
    assert_pulls(&w, &up, "lib/tool", 12);
    drop(w);

    up.require_oauth_refresh("rt-rotated-elsewhere");
    up.revoke_tokens();
    let w = Wharf::start_with(Options {
        config: Some(remote(
            &up,
            &format!(
                "{{ secret = {{ backend = \"file\", path = \"{}\" }} }}",
                path.display()
            ),
        )),
        ..Default::default()
    });
    up.add_image("lib/other", "v1", 13);
    let v = support::assert_oci_error(get_manifest(&w, "lib/other", "v1"), 424, "UNAUTHORIZED");
    let msg = v["errors"][0]["message"].as_str().unwrap();
    assert!(msg.contains(&format!("file:{}", path.display())), "{msg}");
    assert!(!w.logs().contains("rt-identity-77"));
}
