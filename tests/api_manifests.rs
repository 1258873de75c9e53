//! HTTP conformance: `GET /v2/` and the manifest endpoints (GET, HEAD, PUT,
//! DELETE by tag and by digest, content negotiation, validation errors,
//! `subject`/`OCI-Subject`).
mod support;

use serde_json::json;
use support::*;

fn get(w: &Wharf, path: &str, accept: Option<&str>) -> reqwest::blocking::Response {
    let mut r = http().get(format!("{}{path}", w.url()));
    if let Some(a) = accept {
        r = r.header("accept", a);
    }
    r.send().unwrap()
}

fn head(w: &Wharf, path: &str, accept: Option<&str>) -> reqwest::blocking::Response {
    let mut r = http().head(format!("{}{path}", w.url()));
    if let Some(a) = accept {
        r = r.header("accept", a);
    }
    r.send().unwrap()
}

fn delete(w: &Wharf, path: &str) -> reqwest::blocking::Response {
    http().delete(format!("{}{path}", w.url())).send().unwrap()
}

/// `MANIFEST_BLOB_UNKNOWN`: the spec pairs no status with this code;
/// Distribution and zot answer 400, wharf has answered 404. Accept both.
fn blob_unknown(r: reqwest::blocking::Response) {
    let st = r.status().as_u16();
    assert!(
        st == 400 || st == 404,
        "MANIFEST_BLOB_UNKNOWN with status {st}"
    );
    assert_oci_error(r, st, "MANIFEST_BLOB_UNKNOWN");
}

const ALL_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

#[test]
fn base_endpoint() {
    let w = Wharf::start_registry_only();
    for r in [
        get(&w, "/v2/", None),
        head(&w, "/v2/", None),
        get(&w, "/v2", None),
    ] {
        assert_eq!(r.status(), 200);
        assert_eq!(
            header(&r, "docker-distribution-api-version"),
            "registry/2.0"
        );
    }
    // Every response carries the version header, errors included.
    let r = get(&w, "/v2/nope/manifests/latest", None);
    assert_eq!(
        header(&r, "docker-distribution-api-version"),
        "registry/2.0"
    );
    assert_oci_error(r, 404, "NAME_UNKNOWN");
}

#[test]
fn get_and_head_by_tag_and_digest_are_byte_exact() {
    let w = Wharf::start();
    let img = push_image(&w, "team/app", "v1", 1);
    for path in [
        "/v2/team/app/manifests/v1".to_string(),
        format!("/v2/team/app/manifests/{}", img.digest),
    ] {
        let r = get(&w, &path, Some(ALL_ACCEPT));
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(header(&r, "content-type"), MT_OCI_MANIFEST);
        assert_eq!(header(&r, "docker-content-digest"), img.digest);
        assert_eq!(header(&r, "content-length"), img.bytes.len().to_string());
        assert_eq!(
            header(&r, "docker-distribution-api-version"),
            "registry/2.0"
        );
        assert_eq!(
            r.bytes().unwrap().as_ref(),
            img.bytes.as_slice(),
            "bytes served byte-exact"
        );

        let r = head(&w, &path, Some(ALL_ACCEPT));
        assert_eq!(r.status(), 200, "HEAD {path}");
        assert_eq!(header(&r, "content-type"), MT_OCI_MANIFEST);
        assert_eq!(header(&r, "docker-content-digest"), img.digest);
        assert_eq!(header(&r, "content-length"), img.bytes.len().to_string());
        assert!(r.bytes().unwrap().is_empty(), "HEAD has no body");
    }
    // No Accept at all: the stored bytes.
    let r = get(&w, "/v2/team/app/manifests/v1", None);
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().as_ref(), img.bytes.as_slice());
}

#[test]
fn odd_formatting_is_preserved() {
    let w = Wharf::start();
    let cfg = b"{}".to_vec();
    let c = push_blob(&w, "fmt", &cfg);
    // Unusual whitespace, key order and unknown fields: stored as received.
    let body = format!(
        "{{\n\t\"layers\" : [ ],   \"x-unknown\": {{\"a\": [1,2,3]}},\n\"config\":{{\"size\":2,\"digest\":\"{c}\",\"mediaType\":\"{MT_OCI_CONFIG}\"}},\"schemaVersion\":2,\"mediaType\":\"{MT_OCI_MANIFEST}\"}}\n\n"
    );
    let r = put_manifest(&w, "fmt", "odd", MT_OCI_MANIFEST, body.as_bytes());
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "docker-content-digest"), sha256(body.as_bytes()));
    let r = get(&w, "/v2/fmt/manifests/odd", None);
    assert_eq!(r.bytes().unwrap().as_ref(), body.as_bytes());
}

#[test]
fn put_by_tag_returns_location_and_digest() {
    let w = Wharf::start();
    let cfg = b"{\"os\":\"linux\"}".to_vec();
    let c = push_blob(&w, "a/b/c/d", &cfg);
    let m = image_manifest(
        MT_OCI_MANIFEST,
        descriptor(MT_OCI_CONFIG, &c, cfg.len()),
        vec![],
        json!({}),
    );
    let d = sha256(&m);
    let r = put_manifest(&w, "a/b/c/d", "latest", MT_OCI_MANIFEST, &m);
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "docker-content-digest"), d);
    let loc = header(&r, "location");
    assert!(
        loc.ends_with(&format!("/v2/a/b/c/d/manifests/{d}")),
        "{loc}"
    );
    assert!(r.headers().get("oci-subject").is_none());
    let r = http().get(abs_url(&w, &loc)).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().as_ref(), m.as_slice());

    // Re-tagging moves the tag; the old manifest stays reachable by digest.
    let m2 = image_manifest(
        MT_OCI_MANIFEST,
        descriptor(MT_OCI_CONFIG, &c, cfg.len()),
        vec![],
        json!({"annotations": {"v": "2"}}),
    );
    assert_eq!(
        put_manifest(&w, "a/b/c/d", "latest", MT_OCI_MANIFEST, &m2).status(),
        201
    );
    let r = get(&w, "/v2/a/b/c/d/manifests/latest", None);
    assert_eq!(header(&r, "docker-content-digest"), sha256(&m2));
    assert_eq!(
        get(&w, &format!("/v2/a/b/c/d/manifests/{d}"), None).status(),
        200
    );
    // Pushing the identical manifest again is idempotent.
    assert_eq!(
        put_manifest(&w, "a/b/c/d", "latest", MT_OCI_MANIFEST, &m2).status(),
        201
    );
}

#[test]
fn put_by_digest() {
    let w = Wharf::start();
    let cfg = b"{}".to_vec();
    let c = push_blob(&w, "r", &cfg);
    let m = image_manifest(
        MT_OCI_MANIFEST,
        descriptor(MT_OCI_CONFIG, &c, cfg.len()),
        vec![],
        json!({}),
    );
    let d = sha256(&m);
    let r = put_manifest(&w, "r", &d, MT_OCI_MANIFEST, &m);
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "docker-content-digest"), d);
    assert!(header(&r, "location").ends_with(&format!("/v2/r/manifests/{d}")));
    let r = get(&w, &format!("/v2/r/manifests/{d}"), None);
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().as_ref(), m.as_slice());
    // No tag was created.
    let tags: serde_json::Value = get(&w, "/v2/r/tags/list", None).json().unwrap();
    assert_eq!(tags["tags"], json!([]));

    // A digest that does not match the body: DIGEST_INVALID, nothing stored.
    let other = sha256(b"something else");
    assert_oci_error(
        put_manifest(&w, "r", &other, MT_OCI_MANIFEST, &m),
        400,
        "DIGEST_INVALID",
    );
    assert_oci_error(
        get(&w, &format!("/v2/r/manifests/{other}"), None),
        404,
        "MANIFEST_UNKNOWN",
    );
}

#[test]
fn sha512_manifest_digest() {
    use sha2::Digest as _;
    let w = Wharf::start();
    let cfg = b"{}".to_vec();
    let c = push_blob(&w, "r", &cfg);
    let m = image_manifest(
        MT_OCI_MANIFEST,
        descriptor(MT_OCI_CONFIG, &c, cfg.len()),
        vec![],
        json!({}),
    );
    let d = format!("sha512:{}", hex::encode(sha2::Sha512::digest(&m)));
    let r = put_manifest(&w, "r", &d, MT_OCI_MANIFEST, &m);
    assert_eq!(r.status(), 201, "{:?}", r.text());
    let r = get(&w, &format!("/v2/r/manifests/{d}"), None);
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "docker-content-digest"), d);
    assert_eq!(r.bytes().unwrap().as_ref(), m.as_slice());
}

/// Push one manifest of each of the four types and check `Accept`.
#[test]
fn accept_negotiation() {
    let w = Wharf::start();
    let repo = "neg";
    let cfg = b"{\"architecture\":\"amd64\",\"os\":\"linux\"}".to_vec();
    let layer = data(7, 500);
    let c = push_blob(&w, repo, &cfg);
    let l = push_blob(&w, repo, &layer);

    let docker = image_manifest(
        MT_DOCKER_MANIFEST,
        descriptor(MT_DOCKER_CONFIG, &c, cfg.len()),
        vec![descriptor(MT_DOCKER_LAYER, &l, layer.len())],
        json!({}),
    );
    let oci = image_manifest(
        MT_OCI_MANIFEST,
        descriptor(MT_OCI_CONFIG, &c, cfg.len()),
        vec![descriptor(MT_OCI_LAYER, &l, layer.len())],
        json!({}),
    );
    assert_eq!(
        put_manifest(&w, repo, "docker", MT_DOCKER_MANIFEST, &docker).status(),
        201
    );
    assert_eq!(
        put_manifest(&w, repo, "oci", MT_OCI_MANIFEST, &oci).status(),
        201
    );
    let plat = json!({"architecture": "amd64", "os": "linux"});
    let list = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": MT_DOCKER_LIST,
        "manifests": [{"mediaType": MT_DOCKER_MANIFEST, "digest": sha256(&docker), "size": docker.len(), "platform": plat}],
    }))
    .unwrap();
    let index = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": MT_OCI_INDEX,
        "manifests": [{"mediaType": MT_OCI_MANIFEST, "digest": sha256(&oci), "size": oci.len(), "platform": plat}],
    }))
    .unwrap();
    assert_eq!(
        put_manifest(&w, repo, "list", MT_DOCKER_LIST, &list).status(),
        201
    );
    assert_eq!(
        put_manifest(&w, repo, "index", MT_OCI_INDEX, &index).status(),
        201
    );

    let cases = [
        ("docker", MT_DOCKER_MANIFEST, &docker),
        ("oci", MT_OCI_MANIFEST, &oci),
        ("list", MT_DOCKER_LIST, &list),
        ("index", MT_OCI_INDEX, &index),
    ];
    for (tag, mt, bytes) in cases {
        let path = format!("/v2/{repo}/manifests/{tag}");
        // Exactly its own type.
        let r = get(&w, &path, Some(mt));
        assert_eq!(r.status(), 200, "{tag} with Accept {mt}");
        assert_eq!(header(&r, "content-type"), mt);
        assert_eq!(header(&r, "docker-content-digest"), sha256(bytes));
        assert_eq!(r.bytes().unwrap().as_ref(), bytes.as_slice());
        // All four, with q-values, the way docker/containerd send them.
        let r = get(&w, &path, Some(&format!("{ALL_ACCEPT};q=0.9, */*;q=0.1")));
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-type"), mt);
        // Several Accept header lines.
        let r = http()
            .get(format!("{}{path}", w.url()))
            .header("accept", "application/vnd.example+json")
            .header("accept", mt)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{tag}: separate Accept lines");
        // Wildcard.
        let r = get(&w, &path, Some("*/*"));
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-type"), mt);
        // HEAD negotiates the same way.
        let r = head(&w, &path, Some(mt));
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-type"), mt);
        assert_eq!(header(&r, "content-length"), bytes.len().to_string());
    }
    // A client that only understands Docker schema 2 cannot get an OCI
    // manifest or index (Distribution answers MANIFEST_UNKNOWN).
    assert_oci_error(
        get(&w, "/v2/neg/manifests/oci", Some(MT_DOCKER_MANIFEST)),
        404,
        "MANIFEST_UNKNOWN",
    );
    assert_oci_error(
        get(&w, "/v2/neg/manifests/index", Some(MT_DOCKER_MANIFEST)),
        404,
        "MANIFEST_UNKNOWN",
    );
    let r = head(&w, "/v2/neg/manifests/index", Some(MT_OCI_MANIFEST));
    assert_eq!(r.status(), 404);
}

#[test]
fn invalid_manifests_are_manifest_invalid() {
    let w = Wharf::start();
    let cfg = b"{}".to_vec();
    let c = push_blob(&w, "bad", &cfg);
    let good = image_manifest(
        MT_OCI_MANIFEST,
        descriptor(MT_OCI_CONFIG, &c, cfg.len()),
        vec![],
        json!({}),
    );

    // Not JSON.
    assert_oci_error(
        put_manifest(&w, "bad", "t", MT_OCI_MANIFEST, b"{not json"),
        400,
        "MANIFEST_INVALID",
    );
    assert_oci_error(
        put_manifest(&w, "bad", "t", MT_OCI_MANIFEST, b""),
        400,
        "MANIFEST_INVALID",
    );
    assert_oci_error(
        put_manifest(&w, "bad", "t", MT_OCI_MANIFEST, b"[1,2]"),
        400,
        "MANIFEST_INVALID",
    );
    // Wrong schemaVersion.
    let v1 = String::from_utf8(good.clone())
        .unwrap()
        .replace("\"schemaVersion\": 2", "\"schemaVersion\": 1");
    assert_ne!(v1.as_bytes(), good.as_slice());
    assert_oci_error(
        put_manifest(&w, "bad", "t", MT_OCI_MANIFEST, v1.as_bytes()),
        400,
        "MANIFEST_INVALID",
    );
    // Unknown mediaType in the body and no manifest Content-Type.
    let weird = image_manifest(
        "application/vnd.example.weird+json",
        descriptor(MT_OCI_CONFIG, &c, cfg.len()),
        vec![],
        json!({}),
    );
    assert_oci_error(
        put_manifest(&w, "bad", "t", "application/vnd.example.weird+json", &weird),
        400,
        "MANIFEST_INVALID",
    );
    // Content-Type disagrees with the body's mediaType.
    assert_oci_error(
        put_manifest(&w, "bad", "t", MT_DOCKER_MANIFEST, &good),
        400,
        "MANIFEST_INVALID",
    );
    assert_oci_error(
        put_manifest(&w, "bad", "t", MT_OCI_INDEX, &good),
        400,
        "MANIFEST_INVALID",
    );
    // An image manifest without a config; an index without manifests.
    let no_cfg = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST, "layers": []}),
    )
    .unwrap();
    assert_oci_error(
        put_manifest(&w, "bad", "t", MT_OCI_MANIFEST, &no_cfg),
        400,
        "MANIFEST_INVALID",
    );
    let no_list =
        serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": MT_OCI_INDEX})).unwrap();
    assert_oci_error(
        put_manifest(&w, "bad", "t", MT_OCI_INDEX, &no_list),
        400,
        "MANIFEST_INVALID",
    );
    // A descriptor with a malformed digest.
    let bad_desc = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
        "config": {"mediaType": MT_OCI_CONFIG, "digest": "sha256:totallywrong", "size": 2}, "layers": []
    }))
    .unwrap();
    assert_oci_error(
        put_manifest(&w, "bad", "t", MT_OCI_MANIFEST, &bad_desc),
        400,
        "MANIFEST_INVALID",
    );

    // Nothing was tagged by any of these.
    let r = get(&w, "/v2/bad/manifests/t", None);
    assert_oci_error(r, 404, "MANIFEST_UNKNOWN");
    // And the good one still goes in.
    assert_eq!(
        put_manifest(&w, "bad", "t", MT_OCI_MANIFEST, &good).status(),
        201
    );
}

#[test]
fn missing_blobs_are_manifest_blob_unknown() {
    let w = Wharf::start();
    let cfg = b"{}".to_vec();
    let layer = data(3, 100);
    let c = push_blob(&w, "mb", &cfg);
    let l = push_blob(&w, "mb", &layer);
    let absent = sha256(b"never pushed");

    // Missing config.
    let m = image_manifest(
        MT_OCI_MANIFEST,
        descriptor(MT_OCI_CONFIG, &absent, 12),
        vec![],
        json!({}),
    );
    blob_unknown(put_manifest(&w, "mb", "t", MT_OCI_MANIFEST, &m));
    // Missing layer.
    let m = image_manifest(
        MT_OCI_MANIFEST,
        descriptor(MT_OCI_CONFIG, &c, cfg.len()),
        vec![
            descriptor(MT_OCI_LAYER, &l, layer.len()),
            descriptor(MT_OCI_LAYER, &absent, 12),
        ],
        json!({}),
    );
    blob_unknown(put_manifest(&w, "mb", "t", MT_OCI_MANIFEST, &m));
    // Same for Docker schema 2.
    let m = image_manifest(
        MT_DOCKER_MANIFEST,
        descriptor(MT_DOCKER_CONFIG, &c, cfg.len()),
        vec![descriptor(MT_DOCKER_LAYER, &absent, 12)],
        json!({}),
    );
    blob_unknown(put_manifest(&w, "mb", "t", MT_DOCKER_MANIFEST, &m));
    // A blob that exists only in another repository does not count.
    let m = image_manifest(
        MT_OCI_MANIFEST,
        descriptor(MT_OCI_CONFIG, &c, cfg.len()),
        vec![descriptor(MT_OCI_LAYER, &l, layer.len())],
        json!({}),
    );
    blob_unknown(put_manifest(&w, "other", "t", MT_OCI_MANIFEST, &m));
    assert_eq!(
        put_manifest(&w, "mb", "t", MT_OCI_MANIFEST, &m).status(),
        201
    );

    // An index whose child manifest is missing.
    let child_missing = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2, "mediaType": MT_OCI_INDEX,
        "manifests": [
            {"mediaType": MT_OCI_MANIFEST, "digest": sha256(&m), "size": m.len()},
            {"mediaType": MT_OCI_MANIFEST, "digest": absent, "size": 12},
        ]
    }))
    .unwrap();
    blob_unknown(put_manifest(
        &w,
        "mb",
        "multi",
        MT_OCI_INDEX,
        &child_missing,
    ));
    // A Docker manifest list likewise.
    let list_missing = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2, "mediaType": MT_DOCKER_LIST,
        "manifests": [{"mediaType": MT_DOCKER_MANIFEST, "digest": absent, "size": 12}]
    }))
    .unwrap();
    blob_unknown(put_manifest(
        &w,
        "mb",
        "multi",
        MT_DOCKER_LIST,
        &list_missing,
    ));
    // A child that is a blob (not a manifest) of the repository does not count either.
    let blob_child = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2, "mediaType": MT_OCI_INDEX,
        "manifests": [{"mediaType": MT_OCI_MANIFEST, "digest": l, "size": layer.len()}]
    }))
    .unwrap();
    blob_unknown(put_manifest(&w, "mb", "multi", MT_OCI_INDEX, &blob_child));
    assert_oci_error(
        get(&w, "/v2/mb/manifests/multi", None),
        404,
        "MANIFEST_UNKNOWN",
    );

    // With the child present the index is accepted.
    let ok = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2, "mediaType": MT_OCI_INDEX,
        "manifests": [{"mediaType": MT_OCI_MANIFEST, "digest": sha256(&m), "size": m.len()}]
    }))
    .unwrap();
    assert_eq!(
        put_manifest(&w, "mb", "multi", MT_OCI_INDEX, &ok).status(),
        201
    );
}

#[test]
fn subject_gets_oci_subject_header() {
    let w = Wharf::start();
    let img = push_image(&w, "s", "v1", 4);
    let empty = b"{}".to_vec();
    let e = push_blob(&w, "s", &empty);
    let sig = image_manifest(
        MT_OCI_MANIFEST,
        descriptor("application/vnd.oci.empty.v1+json", &e, 2),
        vec![],
        json!({
            "artifactType": "application/vnd.example.sig",
            "subject": {"mediaType": MT_OCI_MANIFEST, "digest": img.digest, "size": img.bytes.len()},
        }),
    );
    let d = sha256(&sig);
    let r = put_manifest(&w, "s", &d, MT_OCI_MANIFEST, &sig);
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "oci-subject"), img.digest);
    // The subject need not exist (spec: registries accept it anyway).
    let absent = sha256(b"no such subject");
    let sig2 = image_manifest(
        MT_OCI_MANIFEST,
        descriptor("application/vnd.oci.empty.v1+json", &e, 2),
        vec![],
        json!({"subject": {"mediaType": MT_OCI_MANIFEST, "digest": absent, "size": 10}}),
    );
    let r = put_manifest(&w, "s", "dangling", MT_OCI_MANIFEST, &sig2);
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "oci-subject"), absent);
}

#[test]
fn delete_by_digest_removes_tags() {
    let w = Wharf::start();
    let img = push_image(&w, "del/app", "v1", 5);
    for t in ["v2", "latest"] {
        assert_eq!(
            put_manifest(&w, "del/app", t, MT_OCI_MANIFEST, &img.bytes).status(),
            201
        );
    }
    let other = push_image(&w, "del/app", "keep", 6);

    let r = delete(&w, &format!("/v2/del/app/manifests/{}", img.digest));
    assert_eq!(r.status(), 202);
    assert_oci_error(
        get(&w, &format!("/v2/del/app/manifests/{}", img.digest), None),
        404,
        "MANIFEST_UNKNOWN",
    );
    assert_eq!(
        head(&w, &format!("/v2/del/app/manifests/{}", img.digest), None).status(),
        404
    );
    for t in ["v1", "v2", "latest"] {
        assert_oci_error(
            get(&w, &format!("/v2/del/app/manifests/{t}"), None),
            404,
            "MANIFEST_UNKNOWN",
        );
    }
    let tags: serde_json::Value = get(&w, "/v2/del/app/tags/list", None).json().unwrap();
    assert_eq!(tags["tags"], json!(["keep"]));
    // The other manifest is untouched.
    let r = get(&w, "/v2/del/app/manifests/keep", None);
    assert_eq!(header(&r, "docker-content-digest"), other.digest);
    // Deleting again: unknown.
    assert_oci_error(
        delete(&w, &format!("/v2/del/app/manifests/{}", img.digest)),
        404,
        "MANIFEST_UNKNOWN",
    );
    // Can be pushed again afterwards.
    assert_eq!(
        put_manifest(&w, "del/app", "again", MT_OCI_MANIFEST, &img.bytes).status(),
        201
    );
    assert_eq!(get(&w, "/v2/del/app/manifests/again", None).status(), 200);
}

#[test]
fn delete_by_tag_only_untags() {
    let w = Wharf::start();
    let img = push_image(&w, "ut", "v1", 8);
    assert_eq!(
        put_manifest(&w, "ut", "v2", MT_OCI_MANIFEST, &img.bytes).status(),
        201
    );
    let r = delete(&w, "/v2/ut/manifests/v1");
    assert_eq!(r.status(), 202);
    assert_oci_error(
        get(&w, "/v2/ut/manifests/v1", None),
        404,
        "MANIFEST_UNKNOWN",
    );
    let r = get(&w, "/v2/ut/manifests/v2", None);
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().as_ref(), img.bytes.as_slice());
    assert_eq!(
        get(&w, &format!("/v2/ut/manifests/{}", img.digest), None).status(),
        200
    );
    let tags: serde_json::Value = get(&w, "/v2/ut/tags/list", None).json().unwrap();
    assert_eq!(tags["tags"], json!(["v2"]));
    assert_oci_error(delete(&w, "/v2/ut/manifests/v1"), 404, "MANIFEST_UNKNOWN");
    assert_oci_error(
        delete(&w, "/v2/ut/manifests/never"),
        404,
        "MANIFEST_UNKNOWN",
    );
}

#[test]
fn unknown_manifests() {
    // No remotes: a never-pushed repository is unknown here, not proxied.
    let w = Wharf::start_registry_only();
    push_image(&w, "known", "v1", 9);
    let absent = sha256(b"absent");
    assert_oci_error(
        get(&w, "/v2/known/manifests/v9", None),
        404,
        "MANIFEST_UNKNOWN",
    );
    assert_oci_error(
        get(&w, &format!("/v2/known/manifests/{absent}"), None),
        404,
        "MANIFEST_UNKNOWN",
    );
    assert_eq!(head(&w, "/v2/known/manifests/v9", None).status(), 404);
    // A repository that does not exist.
    let r = get(&w, "/v2/unknown/repo/manifests/v1", None);
    assert_oci_error(r, 404, "NAME_UNKNOWN");
    let r = get(&w, &format!("/v2/unknown/manifests/{absent}"), None);
    assert_eq!(r.status(), 404);
    // A manifest of one repository is not visible through another.
    let img = push_image(&w, "one", "v1", 10);
    push_image(&w, "two", "v1", 11);
    assert_oci_error(
        get(&w, &format!("/v2/two/manifests/{}", img.digest), None),
        404,
        "MANIFEST_UNKNOWN",
    );
}

#[test]
fn media_type_from_body_or_content_type() {
    let w = Wharf::start();
    let cfg = b"{}".to_vec();
    let c = push_blob(&w, "mt", &cfg);
    // No Content-Type header: the body's mediaType is used.
    let m = image_manifest(
        MT_DOCKER_MANIFEST,
        descriptor(MT_DOCKER_CONFIG, &c, cfg.len()),
        vec![],
        json!({}),
    );
    let r = http()
        .put(format!("{}/v2/mt/manifests/nohdr", w.url()))
        .body(m.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text());
    assert_eq!(
        header(&get(&w, "/v2/mt/manifests/nohdr", None), "content-type"),
        MT_DOCKER_MANIFEST
    );
    // Content-Type with parameters.
    let m = image_manifest(
        MT_OCI_MANIFEST,
        descriptor(MT_OCI_CONFIG, &c, cfg.len()),
        vec![],
        json!({"annotations": {"p": "1"}}),
    );
    let r = put_manifest(
        &w,
        "mt",
        "params",
        &format!("{MT_OCI_MANIFEST}; charset=utf-8"),
        &m,
    );
    assert_eq!(r.status(), 201, "{:?}", r.text());
    assert_eq!(
        header(&get(&w, "/v2/mt/manifests/params", None), "content-type"),
        MT_OCI_MANIFEST
    );
    // No mediaType in the body: the Content-Type header says what it is.
    let bare = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "config": {"mediaType": MT_OCI_CONFIG, "digest": c, "size": cfg.len()},
        "layers": []
    }))
    .unwrap();
    let r = put_manifest(&w, "mt", "bare", MT_OCI_MANIFEST, &bare);
    assert_eq!(r.status(), 201, "{:?}", r.text());
    let r = get(&w, "/v2/mt/manifests/bare", Some(MT_OCI_MANIFEST));
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), MT_OCI_MANIFEST);
    assert_eq!(r.bytes().unwrap().as_ref(), bare.as_slice());
}

#[test]
fn foreign_layers_need_not_be_pushed() {
    let w = Wharf::start();
    let cfg = b"{}".to_vec();
    let c = push_blob(&w, "win", &cfg);
    let mut foreign = descriptor(
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        &sha256(b"windows base"),
        12,
    );
    foreign["urls"] = json!(["https://example.invalid/layer"]);
    let m = image_manifest(
        MT_DOCKER_MANIFEST,
        descriptor(MT_DOCKER_CONFIG, &c, cfg.len()),
        vec![foreign],
        json!({}),
    );
    let r = put_manifest(&w, "win", "v1", MT_DOCKER_MANIFEST, &m);
    assert_eq!(r.status(), 201, "{:?}", r.text());
}
