//! Google Artifact Registry / GCR style `_json_key` and `_json_key_base64`
//! credentials, and the username + personal-access-token flow of GHCR /
//! Quay / ACR (issue 4), against token servers that check exactly the
//! credentials they receive: the Distribution registry's test issuer and
//! the fake registry's own token endpoint.
mod support;

use std::os::unix::fs::PermissionsExt;

use base64::Engine as _;
use support::fake_upstream::FakeUpstream;
use support::upstream::{skopeo_pull, Upstream};
use support::{Options, Wharf};

const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// A service-account key shaped like Google's (fake key material).
fn sa_key() -> String {
    serde_json::json!({
        "type": "service_account",
        "project_id": "wharf-test",
        "private_key_id": "0123456789abcdef",
        "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC-fake-key\n-----END PRIVATE KEY-----\n",
        "client_email": "puller@wharf-test.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "token_uri": "https://oauth2.googleapis.com/token"
    })
    .to_string()
}

fn key_file(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("gcp-key.json");
    std::fs::write(&p, sa_key()).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

fn get(w: &Wharf, path: &str) -> reqwest::blocking::Response {
    support::http()
        .get(format!("{}{path}", w.url()))
        .header("Accept", ACCEPT)
        .send()
        .unwrap()
}

#[test]
fn json_key_through_distribution_token_auth() {
    let key = sa_key();
    let up = Upstream::token("_json_key", &key);
    let repo = "wharf-test/images/app";
    let img = up.push_small(repo, "v1", 31);
    up.issuer().clear_requests();
    let tmp = tempfile::tempdir().unwrap();
    let path = key_file(tmp.path());
    let cfg = format!(
        "[[remotes]]\nname = \"gcr\"\nurl = \"{}\"\ncredentials = {{ secret = {{ backend = \"file\", path = \"{}\" }} }}\n",
        up.url(),
        path.display()
    );
    let w = Wharf::start_with(Options {
        config: Some(cfg),
        ..Default::default()
    });
    let dest = tmp.path().join("pulled");
    let layout = skopeo_pull(&w, &format!("gcr/{repo}:v1"), &dest, "v1");
    assert_eq!(layout.resolve("v1").digest, img.manifest.digest);
    let reqs = up.issuer().requests();
    assert!(!reqs.is_empty());
    for r in &reqs {
        assert_eq!(r.user.as_deref(), Some("_json_key"), "{r:?}");
        assert_eq!(
            r.password.as_deref(),
            Some(key.as_str()),
            "the key must be the password, verbatim"
        );
        assert!(r.granted);
        assert_eq!(r.scopes, vec![format!("repository:{repo}:pull")]);
    }
    assert!(!w.logs().contains("BEGIN PRIVATE KEY"));
}

#[test]
fn json_key_base64() {
    let up = FakeUpstream::start();
    let b64 = base64::engine::general_purpose::STANDARD.encode(sa_key());
    up.require_bearer(Some(("_json_key_base64", &b64)));
    let img = up.add_image("proj/repo/app", "v1", 32);
    let tmp = tempfile::tempdir().unwrap();
    let path = key_file(tmp.path());
    let cfg = format!(
        "[[remotes]]\nname = \"ar\"\nurl = \"{}\"\n\
         credentials = {{ username = \"_json_key_base64\", secret = {{ backend = \"file\", path = \"{}\" }} }}\n",
        up.url(),
        path.display()
    );
    let w = Wharf::start_with(Options {
        config: Some(cfg),
        ..Default::default()
    });
    let r = get(&w, "/v2/ar/proj/repo/app/manifests/v1");
    assert_eq!(r.status(), 200, "{}", w.logs());
    assert_eq!(r.bytes().unwrap().to_vec(), img.manifest);
    let granted: Vec<_> = up
        .token_requests()
        .into_iter()
        .filter(|t| t.granted)
        .collect();
    assert_eq!(granted.len(), 1);
    assert_eq!(granted[0].password.as_deref(), Some(b64.as_str()));
}

/// GHCR-style: username + PAT through the token flow; one token per scope,
/// reused for the manifest and every blob (no log-in per request); a
/// rejected PAT is refused (424 UNAUTHORIZED) naming the remote.
#[test]
fn pat_through_token_flow_and_rejection() {
    let up = FakeUpstream::start();
    up.require_bearer(Some(("octocat", "ghp_pat_value_0123")));
    let img = up.add_image("octo/app", "v1", 33);
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("pat");
    std::fs::write(&p, "ghp_pat_value_0123\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o400)).unwrap();
    let cfg = format!(
        "[[remotes]]\nname = \"ghcr.io\"\nurl = \"{}\"\n\
         credentials = {{ username = \"octocat\", secret = {{ backend = \"file\", path = \"{}\" }} }}\n",
        up.url(),
        p.display()
    );
    let w = Wharf::start_with(Options {
        config: Some(cfg),
        ..Default::default()
    });
    let r = get(&w, "/v2/ghcr.io/octo/app/manifests/v1");
    assert_eq!(r.status(), 200, "{}", w.logs());
    assert_eq!(r.bytes().unwrap().to_vec(), img.manifest);
    for d in img.blobs() {
        let r = get(&w, &format!("/v2/ghcr.io/octo/app/blobs/{d}"));
        assert_eq!(r.status(), 200);
    }
    let granted: Vec<_> = up
        .token_requests()
        .into_iter()
        .filter(|t| t.granted)
        .collect();
    assert_eq!(
        granted.len(),
        1,
        "one token for the scope, reused: {granted:?}"
    );
    assert_eq!(granted[0].user.as_deref(), Some("octocat"));
    assert_eq!(granted[0].password.as_deref(), Some("ghp_pat_value_0123"));

    // The PAT is revoked upstream: the client is told which remote refused.
    up.require_bearer(Some(("octocat", "ghp_rotated")));
    up.revoke_tokens();
    up.add_image("octo/other", "v1", 34);
    let v = support::assert_oci_error(
        get(&w, "/v2/ghcr.io/octo/other/manifests/v1"),
        424,
        "UNAUTHORIZED",
    );
    assert!(
        v["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("remote ghcr.io"),
        "{v}"
    );
    let logs = w.logs();
    assert!(logs.contains(&format!("file:{}", p.display())), "{logs}");
    assert!(!logs.contains("ghp_pat_value_0123"));
}
