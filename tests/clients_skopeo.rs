//! Real-client tests with skopeo: generated images go into wharf and come
//! back out with identical digests and identical bytes (`--preserve-digests`),
//! single images with a ≥ 200 MiB layer, multi-arch indexes (`--all`),
//! Docker schema 2, wharf→wharf copies (cross-repository mount),
//! `list-tags` and `delete`.
mod support;

use support::disk::*;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

use support::image::*;
use support::*;

/// `false` (after a loud line on stderr) when skopeo is not installed.
fn skopeo_available() -> bool {
    if have("skopeo") {
        return true;
    }
    eprintln!("SKIPPED: skopeo is not installed (tests/run.sh installs it)");
    false
}

/// Run skopeo; panic with its output on failure.
fn skopeo(args: &[&str]) -> Output {
    let start = Instant::now();
    let out = Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .output()
        .expect("run skopeo");
    eprintln!("skopeo {} ({:.1?})", args.join(" "), start.elapsed());
    assert!(
        out.status.success(),
        "skopeo {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `skopeo inspect --raw` of a wharf reference.
fn inspect_raw(w: &Wharf, reference: &str) -> Vec<u8> {
    skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/{reference}", w.host()),
    ])
    .stdout
}

/// Byte-compare two files without loading them whole.
fn files_equal(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (
        std::fs::File::open(a).unwrap(),
        std::fs::File::open(b).unwrap(),
    );
    if fa.metadata().unwrap().len() != fb.metadata().unwrap().len() {
        return false;
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba).unwrap();
        if n == 0 {
            return true;
        }
        fb.read_exact(&mut bb[..n]).unwrap();
        if ba[..n] != bb[..n] {
            return false;
        }
    }
}

/// Every blob `digests` names is in both layouts with identical bytes.
fn assert_same_blobs(src: &OciLayout, dst: &OciLayout, digests: &[String]) {
    for d in digests {
        assert!(
            dst.has_blob(d),
            "blob {d} missing from {}",
            dst.dir.display()
        );
        assert!(
            files_equal(&src.blob_path(d), &dst.blob_path(d)),
            "blob {d} differs after the round trip"
        );
    }
}

/// GET a blob from wharf and compare it with the layout's file (streamed).
fn assert_wharf_blob(w: &Wharf, repo: &str, layout: &OciLayout, d: &Desc) {
    let mut r = http()
        .get(format!("{}/v2/{repo}/blobs/{}", w.url(), d.digest))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "GET blob {}", d.digest);
    let mut f = std::fs::File::open(layout.blob_path(&d.digest)).unwrap();
    let (mut a, mut b) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut total = 0u64;
    loop {
        let n = f.read(&mut a).unwrap();
        if n == 0 {
            break;
        }
        r.read_exact(&mut b[..n]).unwrap();
        assert!(
            a[..n] == b[..n],
            "blob {} from wharf differs at offset ~{total}",
            d.digest
        );
        total += n as u64;
    }
    assert_eq!(
        r.read(&mut b).unwrap(),
        0,
        "blob {} from wharf is longer than {total}",
        d.digest
    );
    assert_eq!(total, d.size);
}

#[test]
fn skopeo_round_trip_multi_layer_with_200mib_layer() {
    if !skopeo_available() {
        return;
    }
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let src = OciLayout::create(&tmp.path().join("src"));
    let img = src.image(
        "v1",
        &ImageSpec::oci(
            1,
            vec![
                LayerSpec::gzip(4 << 10),
                LayerSpec::tar(200 << 20),
                LayerSpec::gzip(1 << 20),
                LayerSpec::tar(3),
            ],
        ),
    );
    eprintln!(
        "generated image with a 200 MiB layer in {:.1?}",
        t0.elapsed()
    );
    assert!(img.layers[1].desc.size >= 200 << 20);

    let w = Wharf::start();
    let dest = format!("docker://{}/team/app:1", w.host());
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &src.transport_ref("v1"),
        &dest,
    ]);

    // The registry holds the manifest byte-exact, under the same digest.
    let raw = inspect_raw(&w, "team/app:1");
    assert_eq!(
        sha256(&raw),
        img.manifest.digest,
        "manifest digest changed on the way in"
    );
    assert_eq!(raw, img.manifest_bytes);
    let r = http()
        .head(format!("{}/v2/team/app/manifests/1", w.url()))
        .header("accept", MT_OCI_MANIFEST)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "docker-content-digest"), img.manifest.digest);
    assert_eq!(header(&r, "content-type"), MT_OCI_MANIFEST);
    // Small blobs straight from wharf (the big one is checked via skopeo below).
    assert_wharf_blob(&w, "team/app", &src, &img.config);
    assert_wharf_blob(&w, "team/app", &src, &img.layers[0].desc);
    assert_wharf_blob(&w, "team/app", &src, &img.layers[3].desc);

    // And back out.
    let out = OciLayout::open(&tmp.path().join("out"));
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        &dest,
        &out.transport_ref("v1"),
    ]);
    let got = out.resolve("v1");
    assert_eq!(
        got.digest, img.manifest.digest,
        "manifest digest changed end to end"
    );
    assert_eq!(got.media_type, MT_OCI_MANIFEST);
    assert_eq!(out.read_blob(&got.digest), img.manifest_bytes);
    assert_same_blobs(&src, &out, &img.blob_digests());

    // By digest too.
    let raw = inspect_raw(&w, &format!("team/app@{}", img.manifest.digest));
    assert_eq!(raw, img.manifest_bytes);
    eprintln!(
        "skopeo round trip with a 200 MiB layer: {:.1?}",
        t0.elapsed()
    );
}

#[test]
fn skopeo_round_trip_multi_arch_index() {
    if !skopeo_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = OciLayout::create(&tmp.path().join("src"));
    let idx = src.multi_arch(
        "multi",
        &ImageSpec::oci(
            2,
            vec![LayerSpec::gzip(64 << 10), LayerSpec::tar(300 << 10)],
        ),
    );
    let w = Wharf::start();
    let dest = format!("docker://{}/team/multi:1", w.host());
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &src.transport_ref("multi"),
        &dest,
    ]);

    let raw = inspect_raw(&w, "team/multi:1");
    assert_eq!(raw, idx.index_bytes, "index changed on the way in");
    for img in &idx.images {
        let raw = inspect_raw(&w, &format!("team/multi@{}", img.manifest.digest));
        assert_eq!(raw, img.manifest_bytes, "{} manifest changed", img.arch);
    }
    let r = http()
        .get(format!("{}/v2/team/multi/manifests/1", w.url()))
        .header("accept", format!("{MT_OCI_INDEX}, {MT_OCI_MANIFEST}"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), MT_OCI_INDEX);
    assert_eq!(header(&r, "docker-content-digest"), idx.index.digest);

    let out = OciLayout::open(&tmp.path().join("out"));
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        &dest,
        &out.transport_ref("multi"),
    ]);
    let got = out.resolve("multi");
    assert_eq!(
        got.digest, idx.index.digest,
        "index digest changed end to end"
    );
    assert_eq!(got.media_type, MT_OCI_INDEX);
    assert_same_blobs(&src, &out, &idx.all_digests());

    // One platform only, chosen by skopeo: the arm64 manifest, unchanged.
    let arm = OciLayout::open(&tmp.path().join("arm"));
    skopeo(&[
        "--override-arch",
        "arm64",
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        &dest,
        &arm.transport_ref("arm"),
    ]);
    assert_eq!(arm.resolve("arm").digest, idx.images[1].manifest.digest);
    assert_same_blobs(&src, &arm, &idx.images[1].blob_digests());
    arm.verify_blobs();
}

#[test]
fn skopeo_round_trip_docker_schema2_and_manifest_list() {
    if !skopeo_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = OciLayout::create(&tmp.path().join("src"));
    let img = src.image(
        "single",
        &ImageSpec::docker(
            3,
            vec![LayerSpec::gzip(10 << 10), LayerSpec::gzip(100 << 10)],
        ),
    );
    let list = src.multi_arch(
        "list",
        &ImageSpec::docker(
            4,
            vec![LayerSpec::gzip(20 << 10), LayerSpec::gzip(30 << 10)],
        ),
    );
    // skopeo 1.9 reads only OCI manifests from an OCI layout: use `dir:`.
    let img_dir = src.export_dir(&img.manifest, &tmp.path().join("single-dir"));
    let list_dir = src.export_dir(&list.index, &tmp.path().join("list-dir"));
    let w = Wharf::start();

    let dest = format!("docker://{}/team/docker:single", w.host());
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &img_dir.transport_ref(),
        &dest,
    ]);
    assert_eq!(inspect_raw(&w, "team/docker:single"), img.manifest_bytes);
    let r = http()
        .get(format!("{}/v2/team/docker/manifests/single", w.url()))
        .header("accept", MT_DOCKER_MANIFEST)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), MT_DOCKER_MANIFEST);
    assert_eq!(header(&r, "docker-content-digest"), img.manifest.digest);

    let dest_list = format!("docker://{}/team/docker:list", w.host());
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &list_dir.transport_ref(),
        &dest_list,
    ]);
    assert_eq!(inspect_raw(&w, "team/docker:list"), list.index_bytes);
    let r = http()
        .get(format!("{}/v2/team/docker/manifests/list", w.url()))
        .header("accept", format!("{MT_DOCKER_LIST}, {MT_DOCKER_MANIFEST}"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), MT_DOCKER_LIST);
    assert_eq!(header(&r, "docker-content-digest"), list.index.digest);

    // Back out, still Docker schema 2, same bytes.
    let out = DirImage::open(&tmp.path().join("out-list"));
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        &dest_list,
        &out.transport_ref(),
    ]);
    assert_eq!(out.manifest(None), list.index_bytes);
    for i in &list.images {
        assert_eq!(
            out.manifest(Some(&i.manifest.digest)),
            i.manifest_bytes,
            "{} manifest",
            i.arch
        );
        for d in i.blob_digests() {
            assert!(
                files_equal(&src.blob_path(&d), &out.blob_path(&d)),
                "blob {d} differs after the round trip"
            );
        }
    }
    let out = DirImage::open(&tmp.path().join("out-single"));
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        &dest,
        &out.transport_ref(),
    ]);
    assert_eq!(out.manifest(None), img.manifest_bytes);
    for d in img.blob_digests() {
        assert!(
            files_equal(&src.blob_path(&d), &out.blob_path(&d)),
            "blob {d} differs after the round trip"
        );
    }
}

/// Wharf's request log lines for `path_part`.
fn request_lines<'a>(logs: &'a str, path_part: &str) -> Vec<&'a str> {
    logs.lines().filter(|l| l.contains(path_part)).collect()
}

#[test]
fn skopeo_wharf_to_wharf_mount_list_tags_delete() {
    if !skopeo_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = OciLayout::create(&tmp.path().join("src"));
    let one = src.image(
        "one",
        &ImageSpec::oci(5, vec![LayerSpec::gzip(50 << 10), LayerSpec::tar(2 << 20)]),
    );
    let two = src.image("two", &ImageSpec::oci(6, vec![LayerSpec::gzip(60 << 10)]));
    let w = Wharf::start();
    let h = w.host();
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &src.transport_ref("one"),
        &format!("docker://{h}/team/app:1"),
    ]);
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &src.transport_ref("two"),
        &format!("docker://{h}/team/app:2"),
    ]);
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &src.transport_ref("one"),
        &format!("docker://{h}/team/app:latest"),
    ]);
    let blobs_before = blob_files(&w.data_dir).len();

    // wharf → wharf, another repository: the blobs are mounted, not re-sent.
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{h}/team/app:1"),
        &format!("docker://{h}/other/copy:1"),
    ]);
    assert_eq!(inspect_raw(&w, "other/copy:1"), one.manifest_bytes);
    assert_eq!(
        blob_files(&w.data_dir).len(),
        blobs_before,
        "a copy within wharf stored new blob files"
    );
    // skopeo mounts layers it knows are in the source repository (and
    // sends the small config again): every layer must have been mounted.
    let logs = strip_ansi(&w.logs());
    let lines = request_lines(&logs, "/v2/other/copy/blobs/uploads");
    let mounted = lines
        .iter()
        .filter(|l| field(l, "method", "POST") && field(l, "status", "201"))
        .count();
    let patched = lines.iter().filter(|l| field(l, "method", "PATCH")).count();
    assert!(
        mounted >= one.layers.len() && patched <= 1,
        "layers were uploaded again instead of mounted:\n{}",
        lines.join("\n")
    );
    for d in one.blob_digests() {
        let r = http()
            .head(format!("{}/v2/other/copy/blobs/{d}", w.url()))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "blob {d} not linked into other/copy");
    }

    // list-tags
    let out = skopeo(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{h}/team/app"),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut tags: Vec<&str> = v["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tags.sort();
    assert_eq!(tags, ["1", "2", "latest"]);

    // delete: skopeo resolves the tag and deletes the manifest by digest.
    skopeo(&[
        "delete",
        "--tls-verify=false",
        &format!("docker://{h}/team/app:2"),
    ]);
    let r = http()
        .get(format!(
            "{}/v2/team/app/manifests/{}",
            w.url(),
            two.manifest.digest
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404, "deleted manifest still served");
    let r = http()
        .get(format!("{}/v2/team/app/manifests/2", w.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404, "tag of a deleted manifest still served");
    let out = skopeo(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{h}/team/app"),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut tags: Vec<&str> = v["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tags.sort();
    assert_eq!(tags, ["1", "latest"]);
    // The other tags and the copy are untouched.
    assert_eq!(inspect_raw(&w, "team/app:1"), one.manifest_bytes);
    assert_eq!(inspect_raw(&w, "other/copy:1"), one.manifest_bytes);
}

/// Whether a log line has `key=value` (text format) or `"key":"value"` /
/// `"key":value` (JSON format).
fn field(line: &str, key: &str, value: &str) -> bool {
    line.contains(&format!("{key}={value}"))
        || line.contains(&format!("\"{key}\":\"{value}\""))
        || line.contains(&format!("\"{key}\":{value}"))
}
