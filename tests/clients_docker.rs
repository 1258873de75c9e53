//! Real-client tests with the Docker Engine: `docker build` a tiny image
//! `FROM scratch`, `docker push` it to wharf, remove it locally, `docker
//! pull` it back and compare image IDs; and `docker pull` of images skopeo
//! pushed (OCI manifest, OCI index).
//!
//! Docker treats registries on 127.0.0.0/8 as insecure, so plain HTTP to
//! `127.0.0.1:PORT` works with no daemon configuration. The daemon (not the
//! CLI) dials wharf, so this needs a daemon in this host's network namespace;
//! the test checks that it can reach wharf. Without an engine every test
//! prints `SKIPPED: no Docker engine` and returns.
mod support;

use std::process::Command;
use std::time::Instant;

use support::docker::*;
use support::image::*;
use support::*;

/// The manifest digest wharf serves for `repo:tag`.
fn wharf_digest(w: &Wharf, repo: &str, tag: &str) -> String {
    let r = http()
        .head(format!("{}/v2/{repo}/manifests/{tag}", w.url()))
        .header(
            "accept",
            format!("{MT_DOCKER_MANIFEST}, {MT_DOCKER_LIST}, {MT_OCI_MANIFEST}, {MT_OCI_INDEX}"),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "HEAD manifest {repo}:{tag}");
    header(&r, "docker-content-digest")
}

#[test]
fn docker_build_push_rmi_pull_same_image_id() {
    if !engine_available() {
        return;
    }
    let t0 = Instant::now();
    let w = Wharf::start();
    let tag = format!("{}/team/app:1", w.host());
    let _cleanup = Images(vec![tag.clone()]);

    // A unique file, so the image ID is this run's own.
    let ctx = tempfile::tempdir().unwrap();
    let unique = format!(
        "wharf docker test {} {:?}\n",
        std::process::id(),
        std::time::SystemTime::now()
    );
    std::fs::write(ctx.path().join("hello.txt"), &unique).unwrap();
    std::fs::write(ctx.path().join("noise.bin"), noise_vec(42, 256 << 10)).unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY hello.txt /hello.txt\nCOPY noise.bin /data/noise.bin\nCMD [\"/hello.txt\"]\n",
    )
    .unwrap();
    build(ctx.path(), &tag);
    let id = image_id(&tag);
    eprintln!("built {tag} as {id}");

    let out = docker(&["push", &tag]);
    let pushed = stdout(&out);
    // "1: digest: sha256:... size: N"
    let digest = pushed
        .split_whitespace()
        .skip_while(|t| *t != "digest:")
        .nth(1)
        .unwrap_or_else(|| panic!("no digest in docker push output:\n{pushed}"))
        .to_string();
    assert_eq!(
        wharf_digest(&w, "team/app", "1"),
        digest,
        "wharf serves another manifest than docker pushed"
    );

    docker(&["rmi", &tag]);
    assert!(!image_exists(&tag), "image still present after docker rmi");

    docker(&["pull", &tag]);
    assert_eq!(image_id(&tag), id, "image ID changed after push + pull");
    let repo_digests = stdout(&docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        &tag,
    ]));
    assert!(
        repo_digests.contains(&format!("{}/team/app@{digest}", w.host())),
        "RepoDigests {repo_digests} do not name {digest}"
    );

    // Pull by digest too.
    docker(&["rmi", &tag]);
    let by_digest = format!("{}/team/app@{digest}", w.host());
    let _cleanup2 = Images(vec![by_digest.clone()]);
    docker(&["pull", &by_digest]);
    assert_eq!(image_id(&by_digest), id);
    eprintln!("docker build/push/pull round trip: {:.1?}", t0.elapsed());
}

#[test]
fn docker_pulls_oci_images_pushed_by_skopeo() {
    if !engine_available() {
        return;
    }
    if !have("skopeo") {
        eprintln!("SKIPPED: skopeo is not installed (tests/run.sh installs it)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = OciLayout::create(tmp.path());
    let salt = std::process::id() as u64 * 10;
    let img = src.image(
        "one",
        &ImageSpec::oci(
            salt + 1,
            vec![LayerSpec::gzip(100 << 10), LayerSpec::tar(300 << 10)],
        ),
    );
    let idx = src.multi_arch(
        "multi",
        &ImageSpec::oci(salt + 2, vec![LayerSpec::gzip(50 << 10)]),
    );
    let w = Wharf::start();
    for (tag, repo) in [("one", "team/oci:1"), ("multi", "team/multi:1")] {
        let out = Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "--all",
                "--preserve-digests",
                "--dest-tls-verify=false",
            ])
            .arg(src.transport_ref(tag))
            .arg(format!("docker://{}/{repo}", w.host()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo copy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let one = format!("{}/team/oci:1", w.host());
    let multi = format!("{}/team/multi:1", w.host());
    let _cleanup = Images(vec![one.clone(), multi.clone()]);
    docker(&["pull", &one]);
    // Docker's image ID is the config digest.
    assert_eq!(image_id(&one), img.config.digest);
    docker(&["pull", "--platform", "linux/amd64", &multi]);
    assert_eq!(
        image_id(&multi),
        idx.images[0].config.digest,
        "docker picked the wrong platform"
    );
    let repo_digests = stdout(&docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        &multi,
    ]));
    assert!(
        repo_digests.contains(&idx.index.digest),
        "RepoDigests {repo_digests} do not name the index"
    );
}
