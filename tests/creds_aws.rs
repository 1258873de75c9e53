//! Remote credentials from AWS (issue 4), against the `moto` server from
//! PyPI started on a free 127.0.0.1 port: Secrets Manager (pull through a
//! htpasswd-protected Distribution registry, a failed refresh keeping the
//! last good value, rotation without restart) and ECR
//! `GetAuthorizationToken` (decoded and sent as Basic to a fake upstream
//! that demands exactly those credentials).
//!
//! The test side talks to moto with boto3 (installed with moto).
mod support;

use std::process::Command;
use std::time::Duration;

use support::fake_upstream::{parse_basic, FakeUpstream};
use support::image::{ImageSpec, LayerSpec};
use support::moto::*;
use support::upstream::{htpasswd_line, skopeo_pull, Upstream};
use support::{Options, Wharf};

const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// The AWS environment for wharf: static test keys (the standard chain's
/// env provider), no instance metadata, no profile files.
fn aws_env() -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", REGION),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/nonexistent/aws-config"),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws-credentials",
        ),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn get(w: &Wharf, path: &str) -> reqwest::blocking::Response {
    support::http()
        .get(format!("{}{path}", w.url()))
        .header("Accept", ACCEPT)
        .send()
        .unwrap()
}

/// Manifest and every blob of `img` through wharf.
fn pull_http(w: &Wharf, remote: &str, repo: &str, tag: &str, img: &support::image::Image) {
    let r = get(w, &format!("/v2/{remote}/{repo}/manifests/{tag}"));
    assert_eq!(
        r.status(),
        200,
        "{}\nwharf log:\n{}",
        r.text().unwrap_or_default(),
        w.logs()
    );
    assert_eq!(r.bytes().unwrap().to_vec(), img.manifest_bytes);
    for d in img.blob_digests() {
        let r = get(w, &format!("/v2/{remote}/{repo}/blobs/{d}"));
        assert_eq!(r.status(), 200, "{}", w.logs());
        assert_eq!(support::sha256(&r.bytes().unwrap()), d);
    }
}

#[test]
fn secretsmanager_pull_refresh_failure_and_rotation() {
    let moto = Moto::start();
    let mut up = Upstream::htpasswd("alice", "pw-one-4f1e");
    let repo = "team/app";
    let spec = |seed| ImageSpec::oci(seed, vec![LayerSpec::gzip(20_000)]);
    let v1 = up.push_image(repo, "v1", &spec(41));
    let v2 = up.push_image(repo, "v2", &spec(42));
    let v3 = up.push_image(repo, "v3", &spec(43));
    moto.put_secret(
        "wharf/corp",
        r#"{"username":"alice","password":"pw-one-4f1e"}"#,
        true,
    );

    let cfg = format!(
        "[[remotes]]\nname = \"corp\"\nurl = \"{}\"\ncredentials_ttl = \"2s\"\n\
         credentials = {{ secret = {{ backend = \"aws-secretsmanager\", id = \"wharf/corp\", region = \"{REGION}\", endpoint = \"{}\" }} }}\n",
        up.url(),
        moto.url
    );
    let w = Wharf::start_with(Options {
        config: Some(cfg),
        env: aws_env(),
        ..Default::default()
    });

    // A real client pulls through wharf.
    let tmp = tempfile::tempdir().unwrap();
    skopeo_pull(&w, &format!("corp/{repo}:v1"), &tmp.path().join("v1"), "v1");
    for d in v1.blob_digests() {
        assert_eq!(up.blob_gets(repo, &d), 1);
    }

    // The secret breaks: after the cache time the refresh fails, the last
    // good value is kept, and a warning names the reference.
    moto.put_secret("wharf/corp", "{ not json", false);
    std::thread::sleep(Duration::from_millis(2200));
    pull_http(&w, "corp", repo, "v2", &v2);
    let logs = w.logs();
    assert!(
        logs.contains("keeping the last good value")
            && logs.contains("aws-secretsmanager:wharf/corp"),
        "{logs}"
    );

    // Rotation: new password in Secrets Manager and in the registry's
    // htpasswd (Distribution reads it at start-up, so restart it). Wharf
    // picks it up after the cache time, without a restart.
    moto.put_secret(
        "wharf/corp",
        r#"{"username":"alice","password":"pw-two-9c2d"}"#,
        false,
    );
    std::fs::write(
        up.tmp.path().join("htpasswd"),
        htpasswd_line("alice", "pw-two-9c2d"),
    )
    .unwrap();
    up.stop();
    up.start();
    std::thread::sleep(Duration::from_millis(2200));
    pull_http(&w, "corp", repo, "v3", &v3);
    let logs = w.logs();
    for s in ["pw-one-4f1e", "pw-two-9c2d"] {
        assert!(!logs.contains(s), "secret in the log:\n{logs}");
    }
}

#[test]
fn secretsmanager_missing_secret_is_denied_with_reference_logged() {
    let moto = Moto::start();
    let up = FakeUpstream::start();
    up.require_basic("u", "p");
    up.add_image("a/b", "v1", 5);
    let cfg = format!(
        "[[remotes]]\nname = \"corp\"\nurl = \"{}\"\n\
         credentials = {{ secret = {{ backend = \"aws-secretsmanager\", id = \"does/not/exist\", endpoint = \"{}\" }} }}\n",
        up.url(),
        moto.url
    );
    let w = Wharf::start_with(Options {
        config: Some(cfg),
        env: aws_env(),
        ..Default::default()
    });
    let v = support::assert_oci_error(get(&w, "/v2/corp/a/b/manifests/v1"), 424, "UNAUTHORIZED");
    assert!(
        v["errors"][0]["detail"].as_str().unwrap().contains("corp"),
        "{v}"
    );
    let logs = w.logs();
    assert!(
        logs.contains("aws-secretsmanager:does/not/exist") && logs.contains("ResourceNotFound"),
        "{logs}"
    );
    // Nothing reached the upstream without credentials.
    assert_eq!(up.count("GET", "/v2/a/b/manifests/v1"), 0);
}

#[test]
fn ecr_authorization_token_used_as_basic() {
    let moto = Moto::start();
    // What moto hands out, decoded by the test independently of wharf.
    let decoded = moto.py(
        "t = ecr.get_authorization_token()['authorizationData'][0]['authorizationToken']\n\
         print(base64.b64decode(t).decode())",
    );
    let (user, pass) = decoded.split_once(':').unwrap();
    assert_eq!(user, "AWS");
    let up = FakeUpstream::start();
    up.require_basic(user, pass);
    let img = up.add_image("team/svc", "v1", 7);
    // AWS keys for the ECR call from Secrets Manager on a second remote.
    moto.put_secret(
        "ecr-keys",
        r#"{"aws_access_key_id":"AKIATESTKEY","aws_secret_access_key":"ecr-key-secret-5a"}"#,
        true,
    );
    let cfg = format!(
        "[[remotes]]\nname = \"ecr\"\nurl = \"{url}\"\ncredentials = {{ ecr = {{ region = \"{REGION}\", endpoint = \"{m}\" }} }}\n\
         [[remotes]]\nname = \"ecr2\"\nurl = \"{url}\"\n\
         credentials = {{ ecr = {{ region = \"{REGION}\", endpoint = \"{m}\", aws_credentials = {{ backend = \"aws-secretsmanager\", id = \"ecr-keys\", region = \"{REGION}\", endpoint = \"{m}\" }} }} }}\n",
        url = up.url(),
        m = moto.url
    );
    let mut env = aws_env();
    env.push(("RUST_LOG".into(), "info,wharf=debug".into()));
    let w = Wharf::start_with(Options {
        config: Some(cfg),
        env,
        ..Default::default()
    });
    for remote in ["ecr", "ecr2"] {
        let r = get(&w, &format!("/v2/{remote}/team/svc/manifests/v1"));
        assert_eq!(
            r.status(),
            200,
            "{remote}: {}\n{}",
            r.text().unwrap_or_default(),
            w.logs()
        );
        assert_eq!(r.bytes().unwrap().to_vec(), img.manifest);
    }
    let authed: Vec<(String, String)> = up
        .requests_to("GET", "/v2/team/svc/manifests/v1")
        .iter()
        .filter_map(|r| r.header("authorization").and_then(parse_basic))
        .collect();
    assert!(!authed.is_empty());
    assert!(
        authed.iter().all(|(u, p)| u == "AWS" && p == pass),
        "{authed:?}"
    );

    // A 401 with the token makes wharf call GetAuthorizationToken again,
    // once (moto hands out the same token, so the request is then refused).
    let loads = |w: &Wharf| {
        w.logs()
            .lines()
            .filter(|l| {
                l.contains("credentials loaded") && l.contains("remotes.ecr.credentials[0]")
            })
            .count()
    };
    assert_eq!(loads(&w), 1, "{}", w.logs());
    std::thread::sleep(Duration::from_millis(2100));
    up.require_basic("AWS", "some-other-token");
    up.add_image("team/svc2", "v1", 8);
    let v = support::assert_oci_error(
        get(&w, "/v2/ecr/team/svc2/manifests/v1"),
        424,
        "UNAUTHORIZED",
    );
    assert!(
        v["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("remote ecr"),
        "{v}"
    );
    assert_eq!(loads(&w), 2, "{}", w.logs());
    assert!(
        w.logs().contains("ecr:GetAuthorizationToken"),
        "{}",
        w.logs()
    );

    // check-config resolves the ECR token too.
    let cfg_path = w.tmp.path().join("check.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "[[remotes]]\nname = \"ecr\"\nurl = \"{}\"\ncredentials = {{ ecr = {{ region = \"{REGION}\", endpoint = \"{}\" }} }}\n",
            up.url(),
            moto.url
        ),
    )
    .unwrap();
    let out = Command::new(support::bin())
        .args(["check-config", "--config", cfg_path.to_str().unwrap()])
        .envs(aws_env())
        .env_remove("WHARF_CONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("from ecr") && text.contains("readable (basic credentials)"),
        "{text}"
    );
    assert!(!text.contains(pass));
    let logs = w.logs();
    assert!(
        !logs.contains(pass) && !logs.contains("ecr-key-secret-5a"),
        "{logs}"
    );
}
