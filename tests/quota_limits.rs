//! Project quotas and image size limits, with delete + GC bringing usage
//! back down (real wharf binary, open mode with configured projects).

mod support;

use support::disk::*;

use support::*;

const BASE_LAYER: usize = 2000;
const OWN_LAYER: usize = 3000;

fn config(project: &str) -> String {
    format!("remotes = []\n[storage]\ngc_grace = \"0s\"\n{project}")
}

/// With an admin: the management API (usage, GC) needs one.
fn start(project: &str) -> Wharf {
    Wharf::start_with(Options {
        config: Some(config(project)),
        admin: true,
        ..Options::default()
    })
}

/// Upload a blob (monolithic); returns the response.
fn try_push_blob(w: &Wharf, repo: &str, bytes: &[u8]) -> reqwest::blocking::Response {
    w.req(
        reqwest::Method::POST,
        &format!("/v2/{repo}/blobs/uploads/?digest={}", sha256(bytes)),
    )
    .header("content-type", "application/octet-stream")
    .body(bytes.to_vec())
    .send()
    .unwrap()
}

/// An image: a shared base layer, its own layer, a config.
struct Img {
    blobs: Vec<(String, Vec<u8>)>,
    manifest: Vec<u8>,
    digest: String,
}

fn img(seed: u64) -> Img {
    let cfg =
        format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":{seed}}}").into_bytes();
    let base = data(424242, BASE_LAYER);
    let own = data(1000 + seed, OWN_LAYER);
    let manifest = image_manifest(
        MT_OCI_MANIFEST,
        descriptor(MT_OCI_CONFIG, &sha256(&cfg), cfg.len()),
        vec![
            descriptor(MT_OCI_LAYER, &sha256(&base), base.len()),
            descriptor(MT_OCI_LAYER, &sha256(&own), own.len()),
        ],
        serde_json::json!({}),
    );
    Img {
        digest: sha256(&manifest),
        blobs: vec![
            (sha256(&cfg), cfg),
            (sha256(&base), base),
            (sha256(&own), own),
        ],
        manifest,
    }
}

/// A refused request: status, error body, the project's usage just before it.
type Refused = (u16, serde_json::Value, u64);

/// Push every blob (own layer first) and the manifest; stops at the first
/// refusal.
fn try_push(w: &Wharf, repo: &str, tag: &str, i: &Img) -> Result<(), Refused> {
    let project = repo.split('/').next().unwrap();
    for k in [2, 1, 0] {
        let before = usage(w, project);
        let r = try_push_blob(w, repo, &i.blobs[k].1);
        if r.status() != 201 {
            return Err((r.status().as_u16(), r.json().unwrap_or_default(), before));
        }
    }
    let before = usage(w, project);
    let r = put_manifest(w, repo, tag, MT_OCI_MANIFEST, &i.manifest);
    if r.status() != 201 {
        return Err((r.status().as_u16(), r.json().unwrap_or_default(), before));
    }
    Ok(())
}

fn usage(w: &Wharf, project: &str) -> u64 {
    let v: serde_json::Value = w
        .req(reqwest::Method::GET, &format!("/api/v1/projects/{project}"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    v["usage"]
        .as_u64()
        .unwrap_or_else(|| panic!("no usage in {v}"))
}

/// Pull an image back by tag and verify every digest.
fn pull_verify(w: &Wharf, repo: &str, tag: &str, i: &Img) {
    let r = w
        .req(reqwest::Method::GET, &format!("/v2/{repo}/manifests/{tag}"))
        .header("accept", MT_OCI_MANIFEST)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{repo}:{tag}");
    let body = r.bytes().unwrap();
    assert_eq!(sha256(&body), i.digest);
    for (d, _) in &i.blobs {
        let r = w
            .req(reqwest::Method::GET, &format!("/v2/{repo}/blobs/{d}"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "blob {d} of {repo}:{tag}");
        assert_eq!(&sha256(&r.bytes().unwrap()), d);
    }
}

#[test]
fn quota_refuses_then_delete_and_gc_bring_usage_down() {
    // Room for the base layer, four images and half of a fifth's own layer.
    let per = (OWN_LAYER + img(0).blobs[0].1.len() + img(0).manifest.len()) as u64;
    let quota = BASE_LAYER as u64 + 4 * per + OWN_LAYER as u64 / 2;
    let w = start(&format!(
        "[[projects]]\nname = \"team\"\nquota = \"{quota}\"\n"
    ));
    assert_eq!(usage(&w, "team"), 0);
    let mut pushed = Vec::new();
    let refused = loop {
        let i = img(pushed.len() as u64);
        let start_usage = usage(&w, "team");
        match try_push(&w, "team/app", &format!("v{}", pushed.len()), &i) {
            Ok(()) => {
                assert!(usage(&w, "team") > start_usage);
                pushed.push(i);
            }
            Err((status, body, before)) => {
                assert_eq!(status, 403, "{body}");
                assert_eq!(body["errors"][0]["code"], "DENIED", "{body}");
                let text = body.to_string();
                assert!(
                    text.contains(&format!("quota {quota} bytes"))
                        && text.contains(&format!("usage {before} bytes"))
                        && text.contains(&format!("{OWN_LAYER} bytes")),
                    "{text}"
                );
                // The refused push left nothing counted.
                assert_eq!(usage(&w, "team"), before);
                break i;
            }
        }
        assert!(pushed.len() < 10, "quota never hit");
    };
    assert_eq!(pushed.len(), 4, "images that fit");
    // The blob that did not fit is not in the repository.
    let own = &refused.blobs[2].0;
    let r = w
        .req(reqwest::Method::HEAD, &format!("/v2/team/app/blobs/{own}"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);

    // Delete the first image and collect.
    let full = usage(&w, "team");
    let first = &pushed[0];
    let r = w
        .req(
            reqwest::Method::DELETE,
            &format!("/v2/team/app/manifests/{}", first.digest),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let gc: serde_json::Value = w
        .req(reqwest::Method::POST, "/api/v1/gc")
        .body("{}")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(gc["dry_run"], false, "{gc}");
    assert!(gc["blobs_removed"].as_u64().unwrap() >= 3, "{gc}");
    let after = usage(&w, "team");
    let own_size = (OWN_LAYER + first.blobs[0].1.len() + first.manifest.len()) as u64;
    assert_eq!(after, full - own_size, "usage after delete + GC");
    // Its own blobs and manifest are gone from disk; the shared layer is not.
    for d in [&first.blobs[0].0, &first.blobs[2].0, &first.digest] {
        assert!(!blob_file(&w.data_dir, d).exists(), "{d} still on disk");
    }
    assert!(blob_file(&w.data_dir, &first.blobs[1].0).exists());
    // The refused blob (stored, never counted) was collected too.
    assert!(!blob_file(&w.data_dir, own).exists());
    // Images sharing the base layer are intact.
    for (n, i) in pushed.iter().enumerate().skip(1) {
        pull_verify(&w, "team/app", &format!("v{n}"), i);
    }
    // And the freed space can be used again.
    try_push(&w, "team/app", "again", &refused).expect("push after GC");
}

#[test]
fn same_image_under_two_tags_and_two_repositories_counts_once() {
    let w = start("[[projects]]\nname = \"team\"\nquota = \"1MiB\"\n");
    let i = img(7);
    try_push(&w, "team/one", "v1", &i).unwrap();
    let once = usage(&w, "team");
    let expected: u64 =
        i.blobs.iter().map(|(_, b)| b.len() as u64).sum::<u64>() + i.manifest.len() as u64;
    assert_eq!(once, expected);
    try_push(&w, "team/one", "latest", &i).unwrap();
    try_push(&w, "team/two", "v1", &i).unwrap();
    try_push(&w, "team/two/nested", "v9", &i).unwrap();
    assert_eq!(usage(&w, "team"), once);
    // Dedup also holds at the quota edge: a project exactly full may push
    // content it already has.
    let w2 = start(&format!(
        "[[projects]]\nname = \"team\"\nquota = \"{expected}\"\n"
    ));
    try_push(&w2, "team/one", "v1", &i).unwrap();
    try_push(&w2, "team/two", "v2", &i).expect("re-push of stored content is free");
    assert_eq!(usage(&w2, "team"), expected);
    assert!(try_push(&w2, "team/two", "v3", &img(8)).is_err());
}

#[test]
fn max_image_size_and_chunk_precheck() {
    let w = start("[[projects]]\nname = \"small\"\nmax_image_size = \"4000\"\n[[projects]]\nname = \"tiny\"\nquota = \"1000\"\n");
    // max_image_size: the blobs fit separately, the image does not.
    let i = img(1);
    let (status, body, _) = try_push(&w, "small/app", "v1", &i).unwrap_err();
    assert_eq!(status, 403);
    assert!(
        body.to_string().contains("max image size of 4000"),
        "{body}"
    );
    // A chunk announced bigger than the quota is refused before its bytes
    // are stored, and the session is gone.
    let r = w
        .req(reqwest::Method::POST, "/v2/tiny/app/blobs/uploads/")
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = abs_url(&w, &header(&r, "location"));
    let chunk = data(5, 1500);
    let r = w
        .req_url(reqwest::Method::PATCH, &loc)
        .header("content-type", "application/octet-stream")
        .header("content-range", "0-1499")
        .body(chunk)
        .send()
        .unwrap();
    let body = assert_oci_error(r, 403, "DENIED");
    assert!(body.to_string().contains("quota 1000"), "{body}");
    let r = w.req_url(reqwest::Method::GET, &loc).send().unwrap();
    assert_eq!(r.status(), 404, "the refused session was cancelled");
    assert_eq!(
        std::fs::read_dir(w.data_dir.join("uploads"))
            .unwrap()
            .count(),
        0
    );
}
