//! Issue 5 with real clients: `docker login` + `docker push` + `docker pull`
//! with a robot account, skopeo with `--creds`, and wrong tokens refused.
mod support;

use std::process::Command;

use support::accounts::auth_config;
use support::docker::*;
use support::image::*;
use support::*;

#[test]
fn docker_login_push_pull_with_robot() {
    if !engine_available() {
        return;
    }
    let w = Wharf::start_with(Options {
        config: Some(auth_config()),
        ..Default::default()
    });
    let home = tempfile::tempdir().unwrap();
    let cfg = home.path().to_str().unwrap().to_string();
    let login = |user: &str, pass: &str| support::docker::login(&cfg, &w.host(), user, pass);
    let bad = login("robot$pusher", "wrong-token");
    assert!(!bad.status.success(), "login with a wrong token must fail");
    assert!(
        String::from_utf8_lossy(&bad.stderr)
            .to_lowercase()
            .contains("unauthorized"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let ok = login("robot$pusher", "pushertok");
    assert!(
        ok.status.success(),
        "login: {}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let tag = format!("{}/a/app:1", w.host());
    let _images = Images(vec![tag.clone()]);
    support::docker::build_hello(&w.host(), &tag);
    let id = stdout(&docker(&["image", "inspect", "--format", "{{.Id}}", &tag]));
    docker(&["--config", &cfg, "push", &tag]);
    docker(&["rmi", "-f", &tag]);
    docker(&["--config", &cfg, "pull", &tag]);
    assert_eq!(
        stdout(&docker(&["image", "inspect", "--format", "{{.Id}}", &tag])),
        id
    );

    // The pusher may not push to project b.
    let other = format!("{}/b/app:1", w.host());
    let _more = Images(vec![other.clone()]);
    docker(&["tag", &tag, &other]);
    let out = run(docker_cmd(&["--config", &cfg, "push", &other]));
    assert!(
        !out.status.success(),
        "push to a project without permission must fail"
    );
    // Without login, pulling private a/app fails.
    docker(&["rmi", "-f", &tag]);
    let anon = tempfile::tempdir().unwrap();
    let out = run(docker_cmd(&[
        "--config",
        anon.path().to_str().unwrap(),
        "pull",
        &tag,
    ]));
    assert!(
        !out.status.success(),
        "anonymous pull of a private project must fail"
    );
}

fn skopeo(args: &[&str]) -> std::process::Output {
    let policy = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        policy.path(),
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    let auth = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(auth.path(), "{}").unwrap();
    let out = Command::new("skopeo")
        .arg("--policy")
        .arg(policy.path())
        .args(args)
        .env("REGISTRY_AUTH_FILE", auth.path())
        .output()
        .unwrap();
    eprintln!(
        "skopeo {args:?} -> {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn skopeo_with_creds() {
    if !have("skopeo") {
        eprintln!("SKIPPED: skopeo not installed");
        return;
    }
    let w = Wharf::start_with(Options {
        config: Some(auth_config()),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(&dir.path().join("src"));
    layout.image(
        "v1",
        &ImageSpec::oci(7, vec![LayerSpec::gzip(64 * 1024), LayerSpec::tar(4096)]),
    );
    let src = layout.transport_ref("v1");
    let dst = format!("docker://{}/a/app:v1", w.host());
    // Wrong token → refused.
    let out = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "robot$pusher:nope",
        &src,
        &dst,
    ]);
    assert!(!out.status.success());
    // A robot with pull only cannot push.
    let out = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "robot$puller:pullertok",
        &src,
        &dst,
    ]);
    assert!(!out.status.success());
    // The pusher can.
    let out = skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        "robot$pusher:pushertok",
        &src,
        &dst,
    ]);
    assert!(out.status.success());
    // The puller can read it back; digests identical.
    let back = dir.path().join("back");
    let out = skopeo(&[
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--src-creds",
        "robot$puller:pullertok",
        &format!("docker://{}/a/app:v1", w.host()),
        &format!("oci:{}:v1", back.display()),
    ]);
    assert!(out.status.success());
    assert_eq!(
        OciLayout::open(&back).resolve("v1").digest,
        layout.resolve("v1").digest
    );
    // Anonymous inspect of the private project fails; of nothing public it is 401.
    let out = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{}/a/app:v1", w.host()),
    ]);
    assert!(!out.status.success());
}
