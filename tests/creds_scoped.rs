//! Credentials scoped by repository pattern within one remote (issue 4):
//! the first matching entry's account is used for that repository's token
//! requests, and accounts never share tokens. Upstream: Debian's
//! Distribution registry with Bearer token auth; the test's token issuer
//! records which account asked for which scope.
mod support;

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

fn pull(w: &Wharf, repo: &str, img: &support::image::Image) {
    let r = get(w, &format!("/v2/corp/{repo}/manifests/v1"));
    assert_eq!(
        r.status(),
        200,
        "{repo}: {}\n{}",
        r.text().unwrap_or_default(),
        w.logs()
    );
    assert_eq!(r.bytes().unwrap().to_vec(), img.manifest_bytes);
    for d in img.blob_digests() {
        let r = get(w, &format!("/v2/corp/{repo}/blobs/{d}"));
        assert_eq!(r.status(), 200);
        assert_eq!(support::sha256(&r.bytes().unwrap()), d);
    }
}

#[test]
fn first_matching_pattern_picks_the_account() {
    let up = Upstream::token("pusher", "push-pass");
    let iss = up.issuer();
    iss.add_user("team-a-bot", "a-pass-1");
    iss.add_user("team-a-deep", "deep-pass-3");
    iss.add_user("fallback-bot", "f-pass-2");
    let a = up.push_small("team-a/app", "v1", 51);
    let deep = up.push_small("team-a/special/app", "v1", 52);
    let other = up.push_small("other/app", "v1", 53);
    let b = up.push_small("team-b/app", "v1", 54);
    iss.clear_requests();

    // Order matters: `team-a/special/*` must come before `team-a/*` to win.
    let cfg = format!(
        "[[remotes]]\nname = \"corp\"\nurl = \"{}\"\ncredentials = [\n\
         {{ repository = \"team-a/special/*\", secret = {{ backend = \"env\", username = \"DEEP_U\", password = \"DEEP_P\" }} }},\n\
         {{ repository = \"team-a/*\", secret = {{ backend = \"env\", username = \"A_U\", password = \"A_P\" }} }},\n\
         {{ repository = \"team-b/*\", secret = {{ backend = \"env\", username = \"B_U\", password = \"B_P\" }} }},\n\
         {{ repository = \"*\", secret = {{ backend = \"env\", username = \"F_U\", password = \"F_P\" }} }},\n\
         ]\n",
        up.url()
    );
    let env = [
        ("DEEP_U", "team-a-deep"),
        ("DEEP_P", "deep-pass-3"),
        ("A_U", "team-a-bot"),
        ("A_P", "a-pass-1"),
        ("B_U", "team-b-bot"),
        ("B_P", "not-a-known-account"),
        ("F_U", "fallback-bot"),
        ("F_P", "f-pass-2"),
    ];
    let w = Wharf::start_with(Options {
        config: Some(cfg),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    });
    pull(&w, "team-a/app", &a);
    pull(&w, "team-a/special/app", &deep);
    pull(&w, "other/app", &other);

    let reqs = iss.requests();
    let users_for = |repo: &str| -> Vec<String> {
        reqs.iter()
            .filter(|r| {
                r.scopes
                    .iter()
                    .any(|s| s == &format!("repository:{repo}:pull"))
            })
            .map(|r| r.user.clone().unwrap_or_default())
            .collect()
    };
    for (repo, user) in [
        ("team-a/app", "team-a-bot"),
        ("team-a/special/app", "team-a-deep"),
        ("other/app", "fallback-bot"),
    ] {
        let users = users_for(repo);
        assert!(!users.is_empty(), "no token request for {repo}: {reqs:?}");
        assert!(
            users.iter().all(|u| u == user),
            "{repo} used {users:?}, want {user}"
        );
    }

    // team-b's account is wrong: only team-b is refused, naming the remote;
    // the log names team-b's entry, and other repositories still work.
    let v = support::assert_oci_error(
        get(&w, "/v2/corp/team-b/app/manifests/v1"),
        424,
        "UNAUTHORIZED",
    );
    assert!(
        v["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("remote corp"),
        "{v}"
    );
    assert!(
        w.logs().contains("credentials[2] (env:B_U,B_P)"),
        "{}",
        w.logs()
    );
    let _ = b;
    let r = get(&w, "/v2/corp/other/app/manifests/v1");
    assert_eq!(r.status(), 200);
}
