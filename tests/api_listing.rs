//! HTTP conformance: `tags/list` and `_catalog` with `n`/`last` and `Link`,
//! and the referrers API with `artifactType` filtering.
mod support;

use serde_json::{json, Value};
use support::*;

fn get(w: &Wharf, path: &str) -> reqwest::blocking::Response {
    http().get(format!("{}{path}", w.url())).send().unwrap()
}

/// Follow `Link: <...>; rel="next"` from `path`, collecting `key` of each
/// page. Returns the pages.
fn follow(w: &Wharf, path: &str, key: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut next = Some(path.to_string());
    while let Some(p) = next.take() {
        let r = get(w, &p);
        assert_eq!(r.status(), 200, "{p}");
        next = r.headers().get("link").map(|l| {
            let l = l.to_str().unwrap();
            assert!(l.ends_with("rel=\"next\""), "Link {l}");
            let url = &l[l.find('<').unwrap() + 1..l.find('>').unwrap()];
            url.strip_prefix(&w.url()).unwrap_or(url).to_string()
        });
        let v: Value = r.json().unwrap();
        let items: Vec<String> = v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect();
        pages.push(items);
        assert!(pages.len() < 100, "pagination does not end");
    }
    pages
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn tags_list_and_pagination() {
    let w = Wharf::start();
    let img = push_image(&w, "team/app", "v1", 1);
    let tags = ["v1", "v2", "latest", "1.0", "A_b", "z-last", "0"];
    for t in &tags[1..] {
        assert_eq!(
            put_manifest(&w, "team/app", t, MT_OCI_MANIFEST, &img.bytes).status(),
            201
        );
    }
    let mut sorted: Vec<String> = tags.iter().map(|s| s.to_string()).collect();
    sorted.sort();

    let r = get(&w, "/v2/team/app/tags/list");
    assert_eq!(r.status(), 200);
    assert!(header(&r, "content-type").starts_with("application/json"));
    assert!(
        r.headers().get("link").is_none(),
        "no Link without more pages"
    );
    let v: Value = r.json().unwrap();
    assert_eq!(v["name"], "team/app");
    assert_eq!(strings(&v["tags"]), sorted);

    // n=3: a Link to the next page, carrying n and last.
    let r = get(&w, "/v2/team/app/tags/list?n=3");
    assert_eq!(r.status(), 200);
    let link = header(&r, "link");
    assert!(
        link.starts_with("</v2/team/app/tags/list?")
            || link.starts_with(&format!("<{}/v2/team/app/tags/list?", w.url())),
        "{link}"
    );
    assert!(link.contains("n=3"), "{link}");
    assert!(link.contains(&format!("last={}", sorted[2])), "{link}");
    assert!(link.ends_with("rel=\"next\""), "{link}");
    let v: Value = r.json().unwrap();
    assert_eq!(strings(&v["tags"]), sorted[..3]);

    // Following the Links visits every tag once, in order.
    let pages = follow(&w, "/v2/team/app/tags/list?n=3", "tags");
    assert_eq!(pages.len(), 3);
    assert_eq!(pages.concat(), sorted);
    let pages = follow(&w, "/v2/team/app/tags/list?n=1", "tags");
    assert_eq!(pages.len(), sorted.len());

    // last alone, and last + n.
    let v: Value = get(&w, &format!("/v2/team/app/tags/list?last={}", sorted[4]))
        .json()
        .unwrap();
    assert_eq!(strings(&v["tags"]), sorted[5..]);
    let r = get(
        &w,
        &format!("/v2/team/app/tags/list?n=1&last={}", sorted[1]),
    );
    assert!(r.headers().get("link").is_some());
    let v: Value = r.json().unwrap();
    assert_eq!(strings(&v["tags"]), sorted[2..3]);
    // A last past the end: empty, no Link.
    let r = get(&w, "/v2/team/app/tags/list?n=2&last=zzz");
    assert!(r.headers().get("link").is_none());
    let v: Value = r.json().unwrap();
    assert_eq!(v["tags"], json!([]));
    // n exactly the number of tags: everything, no Link.
    let r = get(&w, &format!("/v2/team/app/tags/list?n={}", sorted.len()));
    assert!(r.headers().get("link").is_none());
    assert_eq!(strings(&r.json::<Value>().unwrap()["tags"]), sorted);
    // n=0: an empty list.
    let r = get(&w, "/v2/team/app/tags/list?n=0");
    assert!(
        r.headers().get("link").is_none(),
        "n=0 must not have a Link"
    );
    let v: Value = r.json().unwrap();
    assert_eq!(v["tags"], json!([]));
}

#[test]
fn tags_list_errors() {
    let w = Wharf::start();
    assert_oci_error(get(&w, "/v2/no/such/repo/tags/list"), 404, "NAME_UNKNOWN");
    push_image(&w, "r", "v1", 2);
    let r = get(&w, "/v2/r/tags/list?n=-1");
    assert_eq!(r.status(), 400);
    let r = get(&w, "/v2/r/tags/list?n=abc");
    assert_eq!(r.status(), 400);
    let ct = header(&r, "content-type");
    assert!(ct.starts_with("application/json"));
    // A repository with blobs but no tags lists an empty array.
    push_blob(&w, "blobs/only", b"x");
    let v: Value = get(&w, "/v2/blobs/only/tags/list").json().unwrap();
    assert_eq!(v["tags"], json!([]));
}

#[test]
fn catalog_with_deep_names() {
    let w = Wharf::start();
    let names = [
        "a/b/c/d",
        "a/b",
        "x",
        "team/app",
        "team/app/sub",
        "z9/y-y/x_x/w.w/v__v",
    ];
    for (i, n) in names.iter().enumerate() {
        push_image(&w, n, "v1", 10 + i as u64);
    }
    let mut sorted: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    sorted.sort();
    let r = get(&w, "/v2/_catalog");
    assert_eq!(r.status(), 200);
    assert!(header(&r, "content-type").starts_with("application/json"));
    assert!(r.headers().get("link").is_none());
    let v: Value = r.json().unwrap();
    assert_eq!(strings(&v["repositories"]), sorted);

    let r = get(&w, "/v2/_catalog?n=2");
    let link = header(&r, "link");
    assert!(link.contains("/v2/_catalog?"), "{link}");
    assert!(link.contains("n=2"), "{link}");
    assert!(link.ends_with("rel=\"next\""), "{link}");
    let v: Value = r.json().unwrap();
    assert_eq!(strings(&v["repositories"]), sorted[..2]);

    let pages = follow(&w, "/v2/_catalog?n=2", "repositories");
    assert_eq!(pages.len(), 3);
    assert_eq!(pages.concat(), sorted);

    // last given as a deep name (encoded or not).
    let v: Value = get(&w, "/v2/_catalog?last=a/b").json().unwrap();
    assert_eq!(strings(&v["repositories"]), sorted[1..]);
    let v: Value = get(&w, "/v2/_catalog?n=1&last=a%2Fb%2Fc%2Fd")
        .json()
        .unwrap();
    assert_eq!(strings(&v["repositories"]), sorted[2..3]);
    let v: Value = get(&w, "/v2/_catalog?n=0").json().unwrap();
    assert_eq!(v["repositories"], json!([]));
}

#[test]
fn catalog_of_empty_registry() {
    let w = Wharf::start();
    let r = get(&w, "/v2/_catalog");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    assert_eq!(v["repositories"], json!([]));
}

/// Push an artifact manifest with `subject` to `repo`; returns (digest, bytes).
fn push_referrer(
    w: &Wharf,
    repo: &str,
    subject: &Pushed,
    artifact_type: Option<&str>,
    config_mt: &str,
    note: &str,
) -> (String, Vec<u8>) {
    let cfg = b"{}".to_vec();
    let c = push_blob(w, repo, &cfg);
    let mut extra = json!({
        "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": subject.bytes.len()},
        "annotations": {"note": note},
    });
    if let Some(t) = artifact_type {
        extra["artifactType"] = json!(t);
    }
    let m = image_manifest(
        MT_OCI_MANIFEST,
        descriptor(config_mt, &c, cfg.len()),
        vec![],
        extra,
    );
    let d = sha256(&m);
    let r = put_manifest(w, repo, &d, MT_OCI_MANIFEST, &m);
    assert_eq!(r.status(), 201, "{:?}", r.text());
    assert_eq!(header(&r, "oci-subject"), subject.digest);
    (d, m)
}

#[test]
fn referrers_with_filter() {
    let w = Wharf::start();
    let img = push_image(&w, "ref/app", "v1", 20);
    let sig_t = "application/vnd.example.signature.v1";
    let sbom_t = "application/vnd.example.sbom.v1";
    let (sig, sig_bytes) = push_referrer(
        &w,
        "ref/app",
        &img,
        Some(sig_t),
        "application/vnd.oci.empty.v1+json",
        "sig",
    );
    // The second one has no artifactType: its config media type counts.
    let (sbom, sbom_bytes) = push_referrer(&w, "ref/app", &img, None, sbom_t, "sbom");

    let path = format!("/v2/ref/app/referrers/{}", img.digest);
    let r = get(&w, &path);
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), MT_OCI_INDEX);
    assert!(r.headers().get("oci-filters-applied").is_none());
    let v: Value = r.json().unwrap();
    assert_eq!(v["schemaVersion"], 2);
    assert_eq!(v["mediaType"], MT_OCI_INDEX);
    let ms = v["manifests"].as_array().unwrap();
    assert_eq!(ms.len(), 2, "{v}");
    for (d, bytes, t, note) in [
        (&sig, &sig_bytes, sig_t, "sig"),
        (&sbom, &sbom_bytes, sbom_t, "sbom"),
    ] {
        let m = ms
            .iter()
            .find(|m| m["digest"] == d.as_str())
            .unwrap_or_else(|| panic!("{d} missing: {v}"));
        assert_eq!(m["mediaType"], MT_OCI_MANIFEST);
        assert_eq!(m["size"], bytes.len());
        assert_eq!(m["artifactType"], t);
        assert_eq!(m["annotations"]["note"], note);
    }

    // Filter by artifactType.
    let r = get(&w, &format!("{path}?artifactType={sig_t}"));
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "oci-filters-applied"), "artifactType");
    let v: Value = r.json().unwrap();
    let ms = v["manifests"].as_array().unwrap();
    assert_eq!(ms.len(), 1, "{v}");
    assert_eq!(ms[0]["digest"], sig.as_str());
    let r = get(&w, &format!("{path}?artifactType={sbom_t}"));
    assert_eq!(header(&r, "oci-filters-applied"), "artifactType");
    let v: Value = r.json().unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(v["manifests"][0]["digest"], sbom.as_str());
    let r = get(&w, &format!("{path}?artifactType=application/vnd.none"));
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().unwrap()["manifests"], json!([]));

    // Referrers are per repository.
    let r = get(&w, &format!("/v2/other/referrers/{}", img.digest));
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().unwrap()["manifests"], json!([]));

    // Deleting a referrer removes it from the list.
    let r = http()
        .delete(format!("{}/v2/ref/app/manifests/{sig}", w.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let v: Value = get(&w, &path).json().unwrap();
    let ms = v["manifests"].as_array().unwrap();
    assert_eq!(ms.len(), 1, "{v}");
    assert_eq!(ms[0]["digest"], sbom.as_str());
}

#[test]
fn referrers_of_unknown_digest_is_empty_index() {
    let w = Wharf::start();
    let absent = sha256(b"no such manifest");
    for repo in ["never/pushed", "some"] {
        if repo == "some" {
            push_image(&w, "some", "v1", 30);
        }
        let r = get(&w, &format!("/v2/{repo}/referrers/{absent}"));
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-type"), MT_OCI_INDEX);
        let v: Value = r.json().unwrap();
        assert_eq!(v["schemaVersion"], 2);
        assert_eq!(v["mediaType"], MT_OCI_INDEX);
        assert_eq!(v["manifests"], json!([]));
    }
    // A referrer pushed before its subject is listed for that subject.
    let img = Pushed {
        digest: absent.clone(),
        bytes: vec![0; 10],
        media_type: MT_OCI_MANIFEST.into(),
        config: String::new(),
        layers: vec![],
    };
    let (d, _) = push_referrer(
        &w,
        "some",
        &img,
        Some("application/vnd.example.early"),
        MT_OCI_CONFIG,
        "early",
    );
    let v: Value = get(&w, &format!("/v2/some/referrers/{absent}"))
        .json()
        .unwrap();
    assert_eq!(v["manifests"][0]["digest"], d.as_str());
    // A malformed digest is a client error.
    assert_oci_error(
        get(&w, "/v2/some/referrers/sha256:totallywrong"),
        400,
        "DIGEST_INVALID",
    );
}
