//! Real-client tests with containerd's `ctr`: images pushed to wharf with
//! skopeo are pulled (and unpacked) by the running containerd, with
//! `--plain-http` and with a `hosts.toml` that names wharf as the server.
//!
//! Uses the containerd socket found at `CONTAINERD_ADDRESS`,
//! /run/containerd/containerd.sock or Docker's own
//! /var/run/docker/containerd/containerd.sock, in a namespace of its own
//! (`wharf-test-<pid>-<n>`) that is removed afterwards. Without ctr or a
//! containerd socket every test prints `SKIPPED: ...` and returns.
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::ctr::*;
use support::image::*;
use support::*;

fn skopeo_push(layout: &OciLayout, tag: &str, dest: &str) {
    let out = Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
        ])
        .arg(layout.transport_ref(tag))
        .arg(format!("docker://{dest}"))
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo copy to {dest}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `<dir>/<host>/hosts.toml` naming wharf (plain HTTP) as the server.
fn hosts_dir(dir: &Path, w: &Wharf) -> PathBuf {
    write_hosts_toml(
        dir,
        &w.host(),
        &w.url(),
        &w.url(),
        &["pull", "resolve", "push"],
        None,
    )
}

/// `ctr images ls` line for `reference`: (media type, digest).
fn image_row(ctr: &Ctr, reference: &str) -> (String, String) {
    let out = ctr.run(&["images", "ls"]);
    let line = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(reference))
        .unwrap_or_else(|| panic!("{reference} not in ctr images ls:\n{out}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    (cols[1].to_string(), cols[2].to_string())
}

#[test]
fn ctr_pull_plain_http_and_unpack() {
    let Some(ctr) = Ctr::connect_with_skopeo("wharf-test") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = OciLayout::create(&tmp.path().join("src"));
    let img = src.image(
        "v1",
        &ImageSpec::oci(
            21,
            vec![
                LayerSpec::gzip(100 << 10),
                LayerSpec::tar(2 << 20),
                LayerSpec::gzip(5000),
            ],
        ),
    );
    let w = Wharf::start();
    skopeo_push(&src, "v1", &format!("{}/team/app:1", w.host()));

    let reference = format!("{}/team/app:1", w.host());
    let out = ctr.run(&[
        "images",
        "pull",
        "--plain-http",
        "--snapshotter",
        SNAPSHOTTER,
        &reference,
    ]);
    assert!(
        out.contains("unpacking linux/amd64"),
        "ctr did not unpack:\n{out}"
    );
    let (mt, digest) = image_row(&ctr, &reference);
    assert_eq!(mt, MT_OCI_MANIFEST);
    assert_eq!(digest, img.manifest.digest);
    let content = ctr.list(&["content", "ls", "-q"]);
    for d in std::iter::once(img.manifest.digest.clone()).chain(img.blob_digests()) {
        assert!(
            content.contains(&d),
            "{d} not in containerd's content store: {content:?}"
        );
    }
    let check = ctr.run(&["images", "check", "--snapshotter", SNAPSHOTTER]);
    let line = check
        .lines()
        .find(|l| l.starts_with(&reference))
        .unwrap_or_else(|| panic!("{check}"));
    assert!(line.contains("complete"), "image not complete: {line}");
    assert!(
        line.contains("unpacked") || line.contains("true"),
        "image not unpacked: {line}"
    );

    // The unpacked filesystem: one snapshot per layer (chain IDs derived from
    // the config's diff_ids, which containerd verified while unpacking).
    let snaps = ctr.list(&["snapshots", "--snapshotter", SNAPSHOTTER, "ls"]);
    assert_eq!(snaps.len() - 1, img.layers.len(), "snapshots: {snaps:?}");
    let mut chain = img.layers[0].diff_id.clone();
    for l in &img.layers[1..] {
        chain = sha256(format!("{chain} {}", l.diff_id).as_bytes());
    }
    assert!(
        snaps.iter().any(|s| s.starts_with(&chain)),
        "top chain ID {chain} not among {snaps:?}"
    );
    // Read the files back through a view of the top snapshot (native
    // snapshots are plain directories; `mounts` prints the bind source).
    let view = format!("wharf-view-{}", ctr.ns);
    // containerd's garbage collector is global: another test deleting
    // content in its own namespace can collect this unleased view at any
    // moment. So the view is created with its mounts printed at once, and
    // the create-and-read step is retried when the view vanished under it.
    let mut verified = false;
    let mut last = String::new();
    for _attempt in 0..4 {
        let _ = ctr.output(&["snapshots", "--snapshotter", SNAPSHOTTER, "rm", &view]);
        let out = ctr.output(&[
            "snapshots",
            "--snapshotter",
            SNAPSHOTTER,
            "view",
            "--mounts",
            &view,
            &chain,
        ]);
        let mounts = String::from_utf8_lossy(&out.stdout).into_owned();
        last = format!("{}{}", mounts, String::from_utf8_lossy(&out.stderr));
        // JSON like [{"type":"bind","source":"/var/lib/.../snapshots/7",...}]
        let source = mounts
            .split('"')
            .find(|t| t.starts_with('/') && Path::new(t).join("layer-21000").exists())
            .map(PathBuf::from);
        let Some(root) = source else { continue };
        let mut sizes = Vec::new();
        let mut ok = true;
        for i in 0..img.layers.len() {
            let seed = 21 * 1000 + i as u64;
            let data = root.join(format!("layer-{seed}/data.bin"));
            match std::fs::metadata(&data) {
                Ok(m) => {
                    assert_eq!(
                        sha256_file(&data),
                        noise_digest(seed, m.len()),
                        "content of {}",
                        data.display()
                    );
                    sizes.push(m.len());
                }
                Err(_) => ok = false,
            }
        }
        if ok {
            assert_eq!(
                sizes,
                [100u64 << 10, 2 << 20, 5000],
                "sizes of the unpacked files"
            );
            verified = true;
            break;
        }
    }
    assert!(
        verified,
        "could not read the unpacked snapshot back; last view output: {last}"
    );
    let _ = ctr.output(&["snapshots", "--snapshotter", SNAPSHOTTER, "rm", &view]);
}

#[test]
fn ctr_pull_multi_arch_with_hosts_toml() {
    let Some(ctr) = Ctr::connect_with_skopeo("wharf-test") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = OciLayout::create(&tmp.path().join("src"));
    let idx = src.multi_arch(
        "multi",
        &ImageSpec::oci(
            22,
            vec![LayerSpec::gzip(30 << 10), LayerSpec::tar(40 << 10)],
        ),
    );
    let w = Wharf::start();
    skopeo_push(&src, "multi", &format!("{}/team/multi:1", w.host()));
    let hosts = hosts_dir(&tmp.path().join("certs.d"), &w);
    let hosts = hosts.to_str().unwrap();

    // hosts.toml says http://, so no --plain-http here.
    let reference = format!("{}/team/multi:1", w.host());
    let out = ctr.run(&[
        "images",
        "pull",
        "--hosts-dir",
        hosts,
        "--platform",
        "linux/arm64",
        "--snapshotter",
        SNAPSHOTTER,
        &reference,
    ]);
    assert!(
        out.contains("unpacking linux/arm64"),
        "ctr did not unpack arm64:\n{out}"
    );
    let (mt, digest) = image_row(&ctr, &reference);
    assert_eq!(mt, MT_OCI_INDEX);
    assert_eq!(digest, idx.index.digest);
    let content = ctr.list(&["content", "ls", "-q"]);
    for d in
        std::iter::once(idx.images[1].manifest.digest.clone()).chain(idx.images[1].blob_digests())
    {
        assert!(
            content.contains(&d),
            "arm64 blob {d} not fetched: {content:?}"
        );
    }

    // Every platform, by digest.
    let by_digest = format!("{}/team/multi@{}", w.host(), idx.index.digest);
    ctr.run(&[
        "images",
        "pull",
        "--hosts-dir",
        hosts,
        "--all-platforms",
        &by_digest,
    ]);
    let content = ctr.list(&["content", "ls", "-q"]);
    for d in idx.all_digests() {
        assert!(
            content.contains(&d),
            "{d} not fetched with --all-platforms: {content:?}"
        );
    }
    let check = ctr.run(&["images", "check", "--snapshotter", SNAPSHOTTER]);
    for line in check.lines().skip(1) {
        assert!(line.contains("complete"), "incomplete image: {line}");
    }
}
