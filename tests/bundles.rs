//! Offline bundles (issue 13, item 1) against the real binary: a wharf
//! with an upstream exports a cached image (CLI and API) as an OCI image
//! layout tar; a second wharf whose remote of the same name is unreachable
//! imports it and serves `<remote>/<repo>:<tag>` byte-identical; a
//! tampered bundle is refused naming the digest, leaving nothing served;
//! project images round-trip into another project.

mod support;

use reqwest::Method;
use serde_json::Value;
use support::cli::as_admin;
use support::fake_upstream::{FakeImage, FakeUpstream};
use support::*;

const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// A remote named `up` at `url`, an admin, and the project `edge`.
fn wharf(remote_url: &str) -> Wharf {
    Wharf::start_with(Options {
        config: Some(format!(
            "[[remotes]]\nname = \"up\"\nurl = \"{remote_url}\"\n[[projects]]\nname = \"team\"\n[[projects]]\nname = \"edge\"\n"
        )),
        admin: true,
        ..Options::default()
    })
}

/// The site without uplink: `up` points at a closed port.
fn offline() -> Wharf {
    wharf("http://127.0.0.1:9")
}

fn get(w: &Wharf, path: &str) -> reqwest::blocking::Response {
    w.req(Method::GET, path)
        .header("Accept", ACCEPT)
        .send()
        .unwrap()
}

/// The JSON answer to a GET of `path`.
fn get_json(w: &Wharf, path: &str) -> Value {
    get(w, path).json().unwrap()
}

/// Pull `repo:tag` from `w` with plain GETs; assert the manifest bytes
/// are `manifest` and every blob's bytes match its digest.
fn assert_pulls(w: &Wharf, repo: &str, tag: &str, manifest: &[u8], blobs: &[String]) {
    let r = get(w, &format!("/v2/{repo}/manifests/{tag}"));
    assert_eq!(r.status(), 200, "{repo}:{tag}\n{}", w.logs());
    assert_eq!(r.bytes().unwrap().to_vec(), manifest);
    for d in blobs {
        let r = get(w, &format!("/v2/{repo}/blobs/{d}"));
        assert_eq!(r.status(), 200, "{repo}@{d}\n{}", w.logs());
        assert_eq!(&sha256(&r.bytes().unwrap()), d);
    }
}

/// `(name, content offset, size)` of every entry of a tar.
fn entries(tar: &[u8]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 512 <= tar.len() && tar[at] != 0 {
        let h = &tar[at..at + 512];
        let end = h[..100].iter().position(|&b| b == 0).unwrap_or(100);
        let name = String::from_utf8_lossy(&h[..end]).into_owned();
        let size = std::str::from_utf8(&h[124..135])
            .unwrap()
            .trim_matches(['\0', ' ']);
        let size = usize::from_str_radix(size, 8).unwrap();
        out.push((name, at + 512, size));
        at += 512 + size.div_ceil(512) * 512;
    }
    out
}

/// `tar` rebuilt from the entries `keep` chooses, in the order given by
/// `key` (header, content and padding copied verbatim).
fn rebuild(tar: &[u8], keep: impl Fn(&str) -> bool, key: impl Fn(&str) -> u8) -> Vec<u8> {
    let mut es: Vec<_> = entries(tar).into_iter().filter(|e| keep(&e.0)).collect();
    es.sort_by_key(|e| key(&e.0));
    let mut out = Vec::new();
    for (_, at, size) in es {
        out.extend_from_slice(&tar[at - 512..at + size.div_ceil(512) * 512]);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn export_api(w: &Wharf, images: &[&str]) -> Vec<u8> {
    let q: Vec<String> = images.iter().map(|i| format!("image={i}")).collect();
    let r = w
        .req(Method::GET, &format!("/api/v1/export?{}", q.join("&")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text());
    assert_eq!(header(&r, "content-type"), "application/x-tar");
    r.bytes().unwrap().to_vec()
}

fn import_api(w: &Wharf, query: &str, tar: Vec<u8>) -> reqwest::blocking::Response {
    w.req(Method::POST, &format!("/api/v1/import?{query}"))
        .body(tar)
        .send()
        .unwrap()
}

/// An upstream holding `lib/app:1`, and a wharf that pulled it through.
fn cached() -> (FakeUpstream, Wharf, FakeImage) {
    let f = FakeUpstream::start();
    let img = f.add_image("lib/app", "1", 21);
    let a = wharf(&f.url());
    assert_pulls(&a, "up/lib/app", "1", &img.manifest, &img.blobs());
    (f, a, img)
}

#[test]
fn a_cached_image_exported_with_the_cli_pulls_offline_from_another_wharf() {
    let (_f, a, img) = cached();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bundle.tar");
    let file_s = file.to_str().unwrap();
    let out = as_admin(&a, &["export", "up/lib/app:1", "-o", file_s]);
    assert!(out.status.success());

    let tar = std::fs::read(&file).unwrap();
    let names: Vec<String> = entries(&tar).into_iter().map(|e| e.0).collect();
    assert_eq!(
        names[..2],
        ["oci-layout".to_string(), "index.json".to_string()]
    );
    let mut want: Vec<String> = img.blobs();
    want.push(img.digest.clone());
    for d in &want {
        let n = format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    let (_, at, size) = entries(&tar)
        .into_iter()
        .find(|e| e.0 == "index.json")
        .unwrap();
    let index: Value = serde_json::from_slice(&tar[at..at + size]).unwrap();
    let m = &index["manifests"][0];
    assert_eq!(m["digest"], img.digest.as_str());
    assert_eq!(m["annotations"]["org.opencontainers.image.ref.name"], "1");
    assert_eq!(m["annotations"]["io.wharf.repository"], "lib/app");

    let b = offline();
    let out = as_admin(&b, &["import", file_s, "--remote", "up"]);
    assert!(out.status.success(), "{}", b.logs());
    assert!(support::cli::stdout(&out).contains("up/lib/app:1"));
    assert_pulls(&b, "up/lib/app", "1", &img.manifest, &img.blobs());
    assert_pulls(&b, "up/lib/app", &img.digest, &img.manifest, &[]);
    // Pinned: cache eviction never removes what an offline site imported.
    let cache = get_json(&b, "/api/v1/cache");
    assert!(
        cache.to_string().contains("\"pinned\":true"),
        "an imported image is not pinned: {cache}"
    );
    assert_ctr_fetches(&b, &img);
    if have("skopeo") {
        // Offline through a real client; digests preserved, so the
        // manifest must be the very bytes the upstream served.
        let oci = tempfile::tempdir().unwrap();
        let args: Vec<String> = [
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            &format!("--src-creds={}:{}", ADMIN.0, ADMIN.1),
            &format!("docker://{}/up/lib/app:1", b.host()),
            &format!("oci:{}:1", oci.path().display()),
        ]
        .map(str::to_string)
        .to_vec();
        let out = support::upstream::skopeo(b.tmp.path(), &args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let layout = support::image::OciLayout::open(oci.path());
        assert_eq!(layout.resolve("1").digest, img.digest);
        for d in img.blobs() {
            assert_eq!(sha256(&layout.read_blob(&d)), d);
        }
    }
}

/// containerd fetches the imported image from the offline wharf
/// (`content fetch`: the fake layers are not real tarballs to unpack).
fn assert_ctr_fetches(b: &Wharf, img: &FakeImage) {
    let Some(ctr) = support::ctr::Ctr::connect("wharf-bundle") else {
        return;
    };
    let user = format!("{}:{}", ADMIN.0, ADMIN.1);
    let reference = format!("{}/up/lib/app:1", b.host());
    ctr.run_or_explain(
        &[
            "content",
            "fetch",
            "--plain-http",
            "--user",
            &user,
            &reference,
        ],
        &|| b.logs(),
    );
    let content = ctr.content();
    for d in std::iter::once(img.digest.clone()).chain(img.blobs()) {
        assert!(
            content.contains(&d),
            "{d} not fetched by containerd: {content:?}"
        );
    }
}

#[test]
fn a_tampered_bundle_is_refused_naming_the_digest_and_nothing_is_served() {
    let (_f, a, img) = cached();
    let mut tar = export_api(&a, &["up/lib/app:1"]);
    let victim = img.layers.last().unwrap().clone();
    let name = format!("blobs/sha256/{}", victim.trim_start_matches("sha256:"));
    let (_, at, _) = entries(&tar).into_iter().find(|e| e.0 == name).unwrap();
    tar[at + 10] ^= 0xff;

    let b = offline();
    let v = assert_oci_error(import_api(&b, "remote=up", tar), 400, "DIGEST_INVALID");
    let msg = v["errors"][0]["message"].as_str().unwrap();
    assert!(msg.contains(&victim), "{msg}");
    assert_ne!(get(&b, "/v2/up/lib/app/manifests/1").status(), 200);
    assert_ne!(
        get(&b, &format!("/v2/up/lib/app/manifests/{}", img.digest)).status(),
        200
    );
    let cache = get_json(&b, "/api/v1/cache");
    assert_eq!(cache.as_array().map(Vec::len), Some(0), "{cache}");
    let audit = get_json(&b, "/api/v1/audit");
    let e = &audit["entries"][0];
    assert_eq!(
        (e["action"].as_str(), e["result"].as_str()),
        (Some("bundle.import"), Some("failed")),
        "{audit}"
    );
}

#[test]
fn an_image_never_pulled_is_fetched_for_the_export() {
    let f = FakeUpstream::start();
    let img = f.add_image("lib/fresh", "2", 41);
    let a = wharf(&f.url());
    let tar = export_api(&a, &["up/lib/fresh:2"]);
    let names: Vec<String> = entries(&tar).into_iter().map(|e| e.0).collect();
    for d in img.blobs() {
        assert!(
            names.contains(&format!("blobs/sha256/{}", &d[7..])),
            "{d}: {names:?}"
        );
    }
    let b = offline();
    assert_eq!(import_api(&b, "remote=up", tar).status(), 200);
    assert_pulls(&b, "up/lib/fresh", "2", &img.manifest, &img.blobs());
    // With its remote unreachable and nothing cached, the export says why.
    let r = b
        .req(Method::GET, "/api/v1/export?image=up/lib/none:1")
        .send()
        .unwrap();
    assert!(r.status().as_u16() >= 400, "{}", r.status());
    let v: Value = r.json().unwrap();
    assert!(v["errors"][0]["message"].is_string(), "{v}");
}

#[test]
fn a_project_image_moves_into_another_project() {
    let a = offline();
    let pushed = push_image(&a, "team/app", "v1", 5);
    let tar = export_api(&a, &["team/app:v1"]);

    let b = offline();
    // A bundle that lacks a layer is refused naming it; nothing is linked.
    let layer = pushed.layers[0].trim_start_matches("sha256:").to_string();
    let lacking = rebuild(&tar, |n| !n.ends_with(&layer), |_| 0);
    let v = assert_oci_error(
        import_api(&b, "project=edge", lacking),
        400,
        "MANIFEST_BLOB_UNKNOWN",
    );
    let msg = v["errors"][0]["message"].as_str().unwrap();
    assert!(msg.contains(&pushed.layers[0]), "{msg}");
    assert_ne!(get(&b, "/v2/edge/app/manifests/v1").status(), 200);
    // Entry order does not matter: index.json last, blobs reversed.
    let reordered = rebuild(
        &tar,
        |_| true,
        |n| match n {
            "index.json" => 255,
            "oci-layout" => 0,
            _ => 255 - n.as_bytes()[13],
        },
    );
    let r = import_api(&b, "project=edge", reordered);
    assert_eq!(r.status(), 200);
    let report: Value = r.json().unwrap();
    assert_eq!(report["images"][0]["repository"], "edge/app");
    assert_eq!(report["images"][0]["tag"], "v1");
    let mut blobs = pushed.layers.clone();
    blobs.push(pushed.config.clone());
    assert_pulls(&b, "edge/app", "v1", &pushed.bytes, &blobs);
}

#[test]
fn bad_requests_are_refused_with_a_reason() {
    let b = offline();
    let status_and_message = |r: reqwest::blocking::Response| {
        let status = r.status().as_u16();
        let v: Value = r.json().unwrap();
        (
            status,
            v["errors"][0]["message"].as_str().unwrap_or("").to_string(),
        )
    };
    let (s, m) = status_and_message(b.req(Method::GET, "/api/v1/export").send().unwrap());
    assert_eq!(s, 400, "{m}");
    assert!(m.contains("image"), "{m}");
    let (s, m) = status_and_message(import_api(&b, "", vec![]));
    assert_eq!(s, 400, "{m}");
    assert!(m.contains("remote"), "{m}");
    let (s, m) = status_and_message(import_api(&b, "remote=nope", vec![]));
    assert_eq!(s, 400, "{m}");
    assert!(m.contains("nope"), "{m}");
    let (s, m) = status_and_message(import_api(&b, "project=edge", vec![7u8; 2048]));
    assert_eq!(s, 400, "{m}");
    assert!(m.contains("invalid bundle"), "{m}");
    let (s, m) = status_and_message(import_api(&b, "project=edge", vec![]));
    assert_eq!(s, 400, "{m}");
    assert!(m.contains("index.json"), "{m}");
    let anon = http()
        .get(format!("{}/api/v1/export?image=team/app:v1", b.url()))
        .send()
        .unwrap();
    assert_eq!(anon.status(), 401);
}

/// Export and import stream: a 96 MiB layer passes through both wharfs
/// without their peak resident memory growing by anything near its size.
#[test]
fn memory_does_not_grow_with_blob_size() {
    const LAYER: usize = 96 << 20;
    const BOUND_KIB: u64 = 40 << 10;
    let f = FakeUpstream::start();
    let img = f.add_image_sized("lib/big", "1", 31, &[LAYER]);
    let a = wharf(&f.url());
    for d in img.blobs() {
        let mut r = get(&a, &format!("/v2/up/lib/big/blobs/{d}"));
        assert_eq!(r.status(), 200);
        std::io::copy(&mut r, &mut std::io::sink()).unwrap();
    }
    assert_eq!(get(&a, "/v2/up/lib/big/manifests/1").status(), 200);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.tar");
    let before = support::disk::vm_hwm_kib(a.pid().unwrap());
    let mut r = a
        .req(Method::GET, "/api/v1/export?image=up/lib/big:1")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    std::io::copy(&mut r, &mut std::fs::File::create(&file).unwrap()).unwrap();
    let grew = support::disk::vm_hwm_kib(a.pid().unwrap()).saturating_sub(before);
    eprintln!("export: peak RSS grew by {grew} KiB for a {LAYER}-byte layer");
    assert!(grew < BOUND_KIB, "export peak RSS grew by {grew} KiB");
    assert!(std::fs::metadata(&file).unwrap().len() > LAYER as u64);

    let b = offline();
    let before = support::disk::vm_hwm_kib(b.pid().unwrap());
    let body = reqwest::blocking::Body::new(std::fs::File::open(&file).unwrap());
    let r = b
        .req(Method::POST, "/api/v1/import?remote=up")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", b.logs());
    let grew = support::disk::vm_hwm_kib(b.pid().unwrap()).saturating_sub(before);
    eprintln!("import: peak RSS grew by {grew} KiB for a {LAYER}-byte layer");
    assert!(grew < BOUND_KIB, "import peak RSS grew by {grew} KiB");
    let layer = img.layers[0].clone();
    let mut r = get(&b, &format!("/v2/up/lib/big/blobs/{layer}"));
    assert_eq!(r.status(), 200);
    let mut h = sha2::Sha256::default();
    std::io::copy(&mut r, &mut h).unwrap();
    use sha2::Digest as _;
    assert_eq!(format!("sha256:{}", hex::encode(h.finalize())), layer);
}

/// `team/multi:v1`: an index of a linux/amd64 and a linux/arm64/v8 image,
/// a signature of the index with an SBOM of that signature, and an
/// attestation of the arm64 image.
struct Multi {
    index: Pushed,
    amd64: Pushed,
    arm64: Pushed,
    signature: String,
    sbom: String,
    attestation: String,
}

fn push_multi(a: &Wharf) -> Multi {
    let repo = "team/multi";
    let amd64 = push_image(a, repo, "digest", 41);
    let arm64 = push_image(a, repo, "digest", 42);
    let entry = |p: &Pushed, platform: Value| {
        let mut d = descriptor(&p.media_type, &p.digest, p.bytes.len());
        d["platform"] = platform;
        d
    };
    let bytes = serde_json::to_vec_pretty(&serde_json::json!({
        "schemaVersion": 2, "mediaType": MT_OCI_INDEX,
        "manifests": [
            entry(&amd64, serde_json::json!({"os": "linux", "architecture": "amd64"})),
            entry(&arm64, serde_json::json!({"os": "linux", "architecture": "arm64", "variant": "v8"})),
        ],
    }))
    .unwrap();
    assert_eq!(
        put_manifest(a, repo, "v1", MT_OCI_INDEX, &bytes).status(),
        201
    );
    let index = Pushed {
        digest: sha256(&bytes),
        bytes,
        media_type: MT_OCI_INDEX.into(),
        config: String::new(),
        layers: vec![],
    };
    let sig_type = Some("application/vnd.example.signature.v1");
    let (signature, sig_bytes) = push_referrer(a, repo, &index, sig_type, MT_OCI_CONFIG, "sig");
    let sig = Pushed {
        digest: signature.clone(),
        bytes: sig_bytes,
        media_type: MT_OCI_MANIFEST.into(),
        config: String::new(),
        layers: vec![],
    };
    let (sbom, _) = push_referrer(a, repo, &sig, None, "application/spdx+json", "sbom");
    let (attestation, _) = push_referrer(a, repo, &arm64, None, MT_OCI_CONFIG, "attest");
    Multi {
        index,
        amd64,
        arm64,
        signature,
        sbom,
        attestation,
    }
}

fn bundle_names(tar: &[u8]) -> Vec<String> {
    entries(tar).into_iter().map(|e| e.0).collect()
}

fn holds(names: &[String], digest: &str) -> bool {
    names.contains(&format!(
        "blobs/sha256/{}",
        digest.trim_start_matches("sha256:")
    ))
}

/// The digests `GET /v2/<repo>/referrers/<subject>` lists.
fn referrers(w: &Wharf, repo: &str, subject: &str) -> Vec<String> {
    let v = get_json(w, &format!("/v2/{repo}/referrers/{subject}"));
    let list = v["manifests"].as_array().cloned().unwrap_or_default();
    list.iter()
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .collect()
}

/// `wharf export <args> -o <file>` into a new temp dir; (dir, file).
fn export_cli(w: &Wharf, args: &[&str]) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bundle.tar").to_str().unwrap().to_string();
    let mut all = vec!["export"];
    all.extend_from_slice(args);
    all.extend(["-o", file.as_str()]);
    let out = as_admin(w, &all);
    assert!(out.status.success(), "{}", w.logs());
    (dir, file)
}

#[test]
fn referrers_travel_with_their_images() {
    let a = offline();
    let m = push_multi(&a);
    let (_dir, file) = export_cli(&a, &["team/multi:v1", "--with-referrers"]);
    let file_s = file.as_str();
    let tar = std::fs::read(&file).unwrap();
    let names = bundle_names(&tar);
    for d in [
        &m.index.digest,
        &m.amd64.digest,
        &m.arm64.digest,
        &m.signature,
        &m.sbom,
        &m.attestation,
    ] {
        assert!(holds(&names, d), "{d} missing from {names:?}");
    }
    // Without the flag, no referrer goes along.
    let plain = bundle_names(&export_api(&a, &["team/multi:v1"]));
    assert!(
        holds(&plain, &m.arm64.digest) && !holds(&plain, &m.signature),
        "{plain:?}"
    );

    let b = offline();
    let out = as_admin(&b, &["import", file_s, "--project", "edge"]);
    assert!(out.status.success(), "{}", b.logs());
    assert_pulls(&b, "edge/multi", "v1", &m.index.bytes, &[]);
    assert_eq!(
        referrers(&b, "edge/multi", &m.index.digest),
        vec![m.signature.clone()]
    );
    assert_eq!(
        referrers(&b, "edge/multi", &m.signature),
        vec![m.sbom.clone()]
    );
    assert_eq!(
        referrers(&b, "edge/multi", &m.arm64.digest),
        vec![m.attestation.clone()]
    );
}

#[test]
fn a_platform_export_holds_that_image_only() {
    let a = offline();
    let m = push_multi(&a);
    let args = [
        "team/multi:v1",
        "--platform",
        "linux/arm64",
        "--with-referrers",
    ];
    let (_dir, file) = export_cli(&a, &args);
    let file_s = file.as_str();
    let names = bundle_names(&std::fs::read(&file).unwrap());
    for d in m
        .arm64
        .layers
        .iter()
        .chain([&m.arm64.digest, &m.attestation])
    {
        assert!(holds(&names, d), "{d} missing from {names:?}");
    }
    // Not the index, its other image, nor the index's signature (it signs
    // a digest this bundle does not hold).
    for d in m
        .amd64
        .layers
        .iter()
        .chain([&m.amd64.digest, &m.index.digest, &m.signature])
    {
        assert!(!holds(&names, d), "{d} is in {names:?}");
    }

    let b = offline();
    let out = as_admin(&b, &["import", file_s, "--project", "edge"]);
    assert!(out.status.success(), "{}", b.logs());
    let mut blobs = m.arm64.layers.clone();
    blobs.push(m.arm64.config.clone());
    assert_pulls(&b, "edge/multi", "v1", &m.arm64.bytes, &blobs);

    // A platform the image lacks, or a malformed one, is named.
    let refused = |query: &str, status: u16, code: &str| {
        let r = a.req(Method::GET, &format!("/api/v1/export?{query}"));
        let v = assert_oci_error(r.send().unwrap(), status, code);
        v["errors"][0]["message"].as_str().unwrap().to_string()
    };
    let msg = refused(
        "image=team/multi:v1&platform=linux/s390x",
        404,
        "MANIFEST_UNKNOWN",
    );
    assert!(
        msg.contains("linux/s390x") && msg.contains("linux/amd64, linux/arm64/v8"),
        "{msg}"
    );
    let msg = refused("image=team/multi:v1&platform=arm64", 400, "UNSUPPORTED");
    assert!(msg.contains("os/architecture"), "{msg}");
    // A single-platform image of another platform (push_image's configs
    // say linux/amd64).
    let query = format!("image=team/multi@{}&platform=linux/arm64", m.amd64.digest);
    let msg = refused(&query, 404, "MANIFEST_UNKNOWN");
    assert!(msg.contains("single linux/amd64 image"), "{msg}");
}
