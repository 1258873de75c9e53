//! What users read when something goes wrong, asserted on the stderr of the
//! real clients (skopeo always; the Docker Engine when one answers):
//! the quota sentence on a push over quota, the remote and the cause when a
//! remote is unreachable, wharf's own credentials (never "docker login")
//! when a remote refuses them, a read-only mirror, and a missing default
//! remote.
mod support;

use std::process::Output;

use support::docker::{docker_cmd, engine_available, run, Images};
use support::image::*;
use support::upstream::{remote_toml_with, skopeo, Upstream};
use support::*;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `skopeo copy` a generated image with one `layer`-byte layer to
/// `wharf/<dest>`; returns the output (which may be a failure).
fn skopeo_push(w: &Wharf, dest: &str, layer: u64) -> Output {
    let layout = OciLayout::create(
        &w.tmp
            .path()
            .join(format!("layout-{}", dest.replace(['/', ':'], "-"))),
    );
    layout.image("v1", &ImageSpec::oci(7, vec![LayerSpec::gzip(layer)]));
    let args = vec![
        "copy".to_string(),
        "--dest-tls-verify=false".to_string(),
        "--dest-no-creds".to_string(),
        layout.transport_ref("v1"),
        format!("docker://{}/{dest}", w.host()),
    ];
    skopeo(w.tmp.path(), &args)
}

fn skopeo_inspect(w: &Wharf, image: &str) -> Output {
    let args = vec![
        "inspect".to_string(),
        "--raw".to_string(),
        "--tls-verify=false".to_string(),
        "--no-creds".to_string(),
        format!("docker://{}/{image}", w.host()),
    ];
    skopeo(w.tmp.path(), &args)
}

/// `docker pull` (the daemon dials wharf); `None` without an engine.
fn docker_pull(image: &str) -> Option<Output> {
    if !engine_available() {
        return None;
    }
    let _cleanup = Images(vec![image.to_string()]);
    Some(run(docker_cmd(&["pull", image])))
}

/// The docker-login hint that sends users the wrong way.
fn assert_no_login_hint(out: &str) {
    assert!(
        !out.contains("docker login"),
        "the error sends the user to `docker login`:\n{out}"
    );
}

#[test]
fn a_push_over_quota_says_so_in_skopeo_and_docker() {
    let w = Wharf::start_with(Options {
        config: Some("remotes = []\n[[projects]]\nname = \"team\"\nquota = \"10KiB\"\n".into()),
        ..Options::default()
    });
    let out = skopeo_push(&w, "team/app:v1", 200 << 10);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("project team is over its quota")
            && t.contains("of 10 KiB")
            && t.contains("this push needs"),
        "{t}"
    );
    if !engine_available() {
        return;
    }
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("big.bin"), noise_vec(3, 300 << 10)).unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY big.bin /big.bin\n",
    )
    .unwrap();
    let tag = format!("{}/team/docker:v1", w.host());
    let _cleanup = Images(vec![tag.clone()]);
    support::docker::build(ctx.path(), &tag);
    let out = run(docker_cmd(&["push", &tag]));
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("project team is over its quota") && t.contains("this push needs"),
        "docker push shows no quota sentence:\n{t}"
    );
    assert!(
        w.logs().contains("over the project's quota"),
        "quota refusals are logged at warn"
    );
}

#[test]
fn an_unreachable_remote_is_named_with_the_cause() {
    let dead = free_port();
    let cfg = remote_toml_with(
        "gone",
        &format!("http://127.0.0.1:{dead}"),
        None,
        "max_retries = 0",
    );
    let w = Wharf::start_with(Options {
        config: Some(cfg),
        ..Options::default()
    });
    let out = skopeo_inspect(&w, "gone/team/app:v1");
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("remote gone is unreachable")
            && t.contains(&format!("127.0.0.1:{dead}"))
            && t.contains("connection refused"),
        "{t}"
    );
    // No bare status code either (a port such as 46503 is not one).
    let without_ports = t
        .replace(&format!("127.0.0.1:{dead}"), "")
        .replace(&w.host(), "");
    assert!(!without_ports.contains("503"), "{t}");
    // The log has the upstream cause of the manifest failure at warn.
    let logs = w.logs();
    assert!(
        logs.contains("upstream manifest fetch failed") && logs.contains("connection refused"),
        "{logs}"
    );
    if let Some(out) = docker_pull(&format!("{}/gone/team/app:v1", w.host())) {
        let t = text(&out);
        assert!(!out.status.success(), "{t}");
        assert!(
            t.contains("remote gone is unreachable") && t.contains("connection refused"),
            "docker pull hides the cause:\n{t}"
        );
        assert_no_login_hint(&t);
    }
}

#[test]
fn a_remote_refusing_wharfs_credentials_points_at_the_secret() {
    let mut up = Upstream::htpasswd("puller", "right-password");
    up.start();
    up.push_small("team/app", "v1", 1);
    let cfg = format!(
        "{}[remotes.credentials]\nsecret = {{ backend = \"env\", username = \"UP_USER\", password = \"UP_PASS\" }}\n",
        remote_toml_with("corp", &up.url(), None, "max_retries = 0")
    );
    let w = Wharf::start_with(Options {
        config: Some(cfg),
        env: vec![
            ("UP_USER".into(), "puller".into()),
            ("UP_PASS".into(), "wrong-password".into()),
        ],
        ..Options::default()
    });
    let out = skopeo_inspect(&w, "corp/team/app:v1");
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("remote corp refused wharf's credentials for team/app")
            && t.contains("check the secret remotes.corp.credentials[0]"),
        "{t}"
    );
    assert!(!t.contains("wrong-password"), "{t}");
    if let Some(out) = docker_pull(&format!("{}/corp/team/app:v1", w.host())) {
        let t = text(&out);
        assert!(!out.status.success(), "{t}");
        assert!(
            t.contains("refused wharf's credentials") && t.contains("check the secret"),
            "docker pull:\n{t}"
        );
        assert_no_login_hint(&t);
    }
    // Anonymous (no credentials entry): the sentence says wharf has none.
    let w2 = Wharf::start_with(Options {
        config: Some(remote_toml_with("corp", &up.url(), None, "max_retries = 0")),
        ..Options::default()
    });
    let t = text(&skopeo_inspect(&w2, "corp/team/app:v1"));
    assert!(
        t.contains("refused wharf's anonymous request for team/app")
            && t.contains("add a credentials entry"),
        "{t}"
    );
}

#[test]
fn a_mirror_refuses_pushes_and_serves_pulls() {
    let mut up = Upstream::anonymous();
    up.start();
    let img = up.push_small("team/app", "v1", 2);
    let cfg = format!(
        "[server]\nmode = \"mirror\"\n{}",
        remote_toml_with("up", &up.url(), None, "default = true")
    );
    let w = Wharf::start_with(Options {
        config: Some(cfg),
        ..Options::default()
    });
    let out = skopeo_push(&w, "mine/app:v1", 1000);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("read-only mirror"), "{t}");
    // Unprefixed names go to the default remote; nothing local exists.
    let out = skopeo_inspect(&w, "team/app:v1");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(sha256(&out.stdout), img.manifest.digest);
    let r = w
        .req(
            reqwest::Method::DELETE,
            &format!("/v2/team/app/manifests/{}", img.manifest.digest),
        )
        .send()
        .unwrap();
    let v = assert_oci_error(r, 403, "DENIED");
    assert!(v.to_string().contains("read-only mirror"), "{v}");
}

#[test]
fn without_a_default_remote_an_unprefixed_pull_says_why() {
    let w = Wharf::start_with(Options {
        config: Some(remote_toml_with("corp", "http://127.0.0.1:9", None, "")),
        ..Options::default()
    });
    let out = skopeo_inspect(&w, "library/alpine:3");
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("no default remote") && t.contains("default = true"),
        "{t}"
    );
    assert!(
        w.logs().contains("no remote has default = true"),
        "serve warns at start-up:\n{}",
        w.logs()
    );
}
