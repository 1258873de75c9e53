//! No secret in wharf's output (issue 4): full authenticated pulls with
//! `RUST_LOG=debug` — a Bearer-token registry with credentials from a
//! file, a Basic registry with credentials from AWS Secrets Manager (moto),
//! plus a rejected account — then every secret value, its Basic encoding
//! and every bearer token issued must be absent from everything wharf
//! wrote (stdout and stderr).
mod support;

use std::os::unix::fs::PermissionsExt;

use base64::Engine as _;
use support::moto::*;
use support::upstream::{skopeo_pull, Upstream};
use support::{Options, Wharf};

#[test]
fn debug_logs_of_authenticated_pulls_hold_no_secret() {
    let token_pass = "tok3n-Pass-Value-8d1f";
    let basic_pass = "b4sic-Pass-Value-2e7a";
    let wrong_pass = "wr0ng-Pass-Value-c3b9";
    let tok = Upstream::token("tokuser", token_pass);
    let basic = Upstream::htpasswd("basicuser", basic_pass);
    tok.push_small("sec/app", "v1", 61);
    basic.push_small("sec/app", "v1", 62);
    let moto = Moto::start();
    moto.put_secret(
        "wharf/basic",
        &format!(r#"{{"username":"basicuser","password":"{basic_pass}"}}"#),
        true,
    );

    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("tok.json");
    std::fs::write(
        &file,
        format!(r#"{{"username":"tokuser","password":"{token_pass}"}}"#),
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = format!(
        "[[remotes]]\nname = \"tok\"\nurl = \"{}\"\ncredentials = [\n\
         {{ repository = \"denied/*\", secret = {{ backend = \"env\", username = \"WRONG_U\", password = \"WRONG_P\" }} }},\n\
         {{ secret = {{ backend = \"file\", path = \"{}\" }} }},\n]\n\
         [[remotes]]\nname = \"basic\"\nurl = \"{}\"\n\
         credentials = {{ secret = {{ backend = \"aws-secretsmanager\", id = \"wharf/basic\", region = \"us-east-1\", endpoint = \"{}\" }} }}\n",
        tok.url(),
        file.display(),
        basic.url(),
        moto.url
    );
    let env: Vec<(String, String)> = [
        ("RUST_LOG", "debug"),
        ("WRONG_U", "tokuser"),
        ("WRONG_P", wrong_pass),
        ("AWS_ACCESS_KEY_ID", "AKIAREDACTIONTEST"),
        ("AWS_SECRET_ACCESS_KEY", "aws-Secret-Key-Value-77f0"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/nonexistent/aws-config"),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws-credentials",
        ),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let w = Wharf::start_with(Options {
        config: Some(cfg),
        env,
        ..Default::default()
    });

    skopeo_pull(&w, "tok/sec/app:v1", &tmp.path().join("a"), "x");
    skopeo_pull(&w, "basic/sec/app:v1", &tmp.path().join("b"), "x");
    let r = support::http()
        .get(format!("{}/v2/tok/denied/app/manifests/v1", w.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 424);
    let body = r.text().unwrap();

    let logs = w.logs();
    assert!(logs.contains("DEBUG"), "debug logging is not on:\n{logs}");
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut secrets: Vec<String> = vec![
        token_pass.into(),
        basic_pass.into(),
        wrong_pass.into(),
        "aws-Secret-Key-Value-77f0".into(),
        b64(&format!("tokuser:{token_pass}")),
        b64(&format!("basicuser:{basic_pass}")),
        b64(&format!("tokuser:{wrong_pass}")),
    ];
    // Every bearer token the issuer signed is a JWT starting with the
    // base64url of `{"typ":"JWT"...`; none may be logged.
    secrets.push(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT""#)[..16]
            .to_string(),
    );
    assert!(tok.issuer().requests().iter().any(|r| r.granted));
    for s in &secrets {
        assert!(
            !logs.contains(s.as_str()),
            "wharf's output contains a secret ({s}):\n{logs}"
        );
        assert!(
            !body.contains(s.as_str()),
            "error body contains a secret: {body}"
        );
    }
}
