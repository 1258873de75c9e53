//! Remote credentials from the `env` backend (issue 4): variables named in
//! the config, read by wharf at run time, against Debian's Distribution
//! registry with htpasswd Basic auth and the fake registry's token flow.
mod support;

use support::fake_upstream::FakeUpstream;
use support::upstream::Upstream;
use support::{Options, Wharf};

const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

fn get(w: &Wharf, path: &str) -> reqwest::blocking::Response {
    support::http()
        .get(format!("{}{path}", w.url()))
        .header("Accept", ACCEPT)
        .send()
        .unwrap()
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn env_username_and_password_against_htpasswd_registry() {
    let up = Upstream::htpasswd("envuser", "env-pass-77");
    let img = up.push_small("team/app", "v1", 21);
    let cfg = format!(
        "[[remotes]]\nname = \"corp\"\nurl = \"{}\"\n\
         credentials = {{ secret = {{ backend = \"env\", username = \"CORP_USER\", password = \"CORP_PASS\" }} }}\n",
        up.url()
    );
    let w = Wharf::start_with(Options {
        config: Some(cfg),
        env: env(&[("CORP_USER", "envuser"), ("CORP_PASS", "env-pass-77")]),
        ..Default::default()
    });
    let r = get(&w, "/v2/corp/team/app/manifests/v1");
    assert_eq!(r.status(), 200, "{}", w.logs());
    assert_eq!(r.bytes().unwrap().to_vec(), img.manifest_bytes);
    for d in img.blob_digests() {
        let r = get(&w, &format!("/v2/corp/team/app/blobs/{d}"));
        assert_eq!(r.status(), 200);
        assert_eq!(support::sha256(&r.bytes().unwrap()), d);
    }
    assert!(!w.logs().contains("env-pass-77"));
}

#[test]
fn env_password_with_entry_username_through_token_flow() {
    let up = FakeUpstream::start();
    up.require_bearer(Some(("robot$ci", "pat-from-env-31")));
    let img = up.add_image("org/tool", "1.0", 22);
    let cfg = format!(
        "[[remotes]]\nname = \"quay\"\nurl = \"{}\"\n\
         credentials = {{ username = \"robot$ci\", secret = {{ backend = \"env\", password = \"QUAY_TOKEN\" }} }}\n",
        up.url()
    );
    let w = Wharf::start_with(Options {
        config: Some(cfg),
        env: env(&[("QUAY_TOKEN", "pat-from-env-31")]),
        ..Default::default()
    });
    let r = get(&w, "/v2/quay/org/tool/manifests/1.0");
    assert_eq!(r.status(), 200, "{}", w.logs());
    assert_eq!(r.bytes().unwrap().to_vec(), img.manifest);
    let granted: Vec<_> = up
        .token_requests()
        .into_iter()
        .filter(|t| t.granted)
        .collect();
    assert_eq!(granted.len(), 1, "{granted:?}");
    assert_eq!(granted[0].user.as_deref(), Some("robot$ci"));
    assert_eq!(
        granted[0].scopes,
        vec!["repository:org/tool:pull".to_string()]
    );
}

#[test]
fn missing_variable_is_denied_and_named_in_the_log() {
    let up = FakeUpstream::start();
    up.require_basic("u", "p");
    up.add_image("a/b", "v1", 23);
    let cfg = format!(
        "[[remotes]]\nname = \"corp\"\nurl = \"{}\"\n\
         credentials = {{ secret = {{ backend = \"env\", username = \"NOPE_USER\", password = \"NOPE_PASS\" }} }}\n",
        up.url()
    );
    let w = Wharf::start_with(Options {
        config: Some(cfg),
        ..Default::default()
    });
    let v = support::assert_oci_error(get(&w, "/v2/corp/a/b/manifests/v1"), 424, "UNAUTHORIZED");
    assert!(
        v["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("remote corp"),
        "{v}"
    );
    let logs = w.logs();
    assert!(
        logs.contains("env:NOPE_USER,NOPE_PASS") && logs.contains("NOPE_PASS is not set"),
        "{logs}"
    );
    assert_eq!(up.count("GET", "/v2/a/b/manifests/v1"), 0);
}
