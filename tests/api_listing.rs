//! HTTP conformance: `tags/list` and `_catalog` with `n`/`last` and `Link`,
//! and the referrers API with `artifactType` filtering.
mod support;

use serde_json::{json, Value};
use support::fill::{follow_pages, mount_image, put_variant};
use support::*;

fn get(w: &Wharf, path: &str) -> reqwest::blocking::Response {
    http().get(format!("{}{path}", w.url())).send().unwrap()
}

/// Follow `Link: <...>; rel="next"` from `path`, collecting `key` of each
/// page. Returns the pages.
fn follow(w: &Wharf, path: &str, key: &str) -> Vec<Vec<String>> {
    follow_pages(w, path)
        .iter()
        .map(|v| strings(&v[key]))
        .collect()
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

fn catalog(w: &Wharf, n: usize) -> Vec<String> {
    follow(w, &format!("/v2/_catalog?n={n}"), "repositories").concat()
}

/// How many times wharf rebuilt its repository index by walking the store.
fn walks(w: &Wharf) -> usize {
    w.logs()
        .matches("repository index rebuilt from the store")
        .count()
}

#[test]
fn catalog_pages_hundreds_of_repositories_across_restarts() {
    let mut w = Wharf::start_registry_only();
    let img = push_image(&w, "seed/base", "v1", 1);
    let mut names = vec!["seed/base".to_string()];
    for i in 0..240 {
        let r = format!("ns{}/app{i:03}", i % 4);
        mount_image(&w, "seed/base", &img, &r, "v1");
        names.push(r);
    }
    names.sort();
    let pages = follow(&w, "/v2/_catalog?n=37", "repositories");
    assert_eq!(pages.len(), names.len().div_ceil(37));
    assert_eq!(pages.concat(), names);
    // A repository is listed as soon as its push is answered.
    mount_image(&w, "seed/base", &img, "ns0/app-just-pushed", "v1");
    names.push("ns0/app-just-pushed".into());
    names.sort();
    assert_eq!(catalog(&w, 50), names);
    let r = get(&w, "/v2/_catalog?n=5&last=ns3/app239");
    assert!(r.headers().get("link").is_none());
    let v: Value = r.json().unwrap();
    assert_eq!(strings(&v["repositories"]), ["seed/base"]);

    // A clean stop saves the index; the next start answers from it
    // without walking the store.
    let walked = walks(&w);
    assert!(w.stop());
    let index = w.data_dir.join("index/catalog.json");
    assert!(index.is_file(), "a clean stop saves the repository index");
    w.restart();
    assert_eq!(catalog(&w, 100), names);
    assert_eq!(walks(&w), walked, "an index saved at a clean stop is used");
    assert!(
        !index.exists(),
        "the index is removed while wharf runs (a crash must not leave a stale one)"
    );

    // A crash: no index; the next start walks.
    mount_image(&w, "seed/base", &img, "late/after-load", "v1");
    names.push("late/after-load".into());
    names.sort();
    w.kill();
    w.restart();
    assert_eq!(catalog(&w, 100), names);
    assert_eq!(walks(&w), walked + 1);

    // Deleted while stopped: rebuilt.
    assert!(w.stop());
    std::fs::remove_file(&index).unwrap();
    w.restart();
    assert_eq!(catalog(&w, 100), names);
    assert_eq!(walks(&w), walked + 2);

    // Stale (the store changed by hand while wharf was stopped): a removed
    // repository disappears, a copied one appears.
    assert!(w.stop());
    assert!(index.is_file());
    let repos = w.data_dir.join("repos");
    std::fs::remove_dir_all(repos.join("ns1/app001")).unwrap();
    names.retain(|n| n != "ns1/app001");
    let copy = std::process::Command::new("cp")
        .arg("-a")
        .arg(repos.join("ns2/app002"))
        .arg(repos.join("ns2/copied"))
        .status()
        .unwrap();
    assert!(copy.success());
    names.push("ns2/copied".into());
    names.sort();
    w.restart();
    assert_eq!(catalog(&w, 100), names);
    assert_eq!(walks(&w), walked + 3, "a stale index is not trusted");
}

#[test]
fn tag_pages_follow_pushes_and_deletes() {
    let w = Wharf::start_registry_only();
    let img = push_image(&w, "team/many", "t0000", 1);
    let mut tags = vec!["t0000".to_string()];
    for i in 1..300 {
        let t = format!("t{i:04}");
        // Every tenth tag gets its own manifest, the rest share the first.
        if i % 10 == 0 {
            put_variant(&w, &img, "team/many", i, &t);
        } else {
            assert_eq!(
                put_manifest(&w, "team/many", &t, &img.media_type, &img.bytes).status(),
                201
            );
        }
        tags.push(t);
    }
    let pages = follow(&w, "/v2/team/many/tags/list?n=64", "tags");
    assert_eq!(pages.len(), 5);
    assert_eq!(pages.concat(), tags);

    // A new tag is listed at once; a deleted one is gone at once.
    assert_eq!(
        put_manifest(&w, "team/many", "a-new-tag", &img.media_type, &img.bytes).status(),
        201
    );
    let r = w
        .req(reqwest::Method::DELETE, "/v2/team/many/manifests/t0150")
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "{:?}", r.text());
    tags.retain(|t| t != "t0150");
    tags.insert(0, "a-new-tag".into());
    assert_eq!(
        follow(&w, "/v2/team/many/tags/list?n=64", "tags").concat(),
        tags
    );

    // Deleting a manifest removes exactly the tags pointing at it.
    let d = put_variant(&w, &img, "team/many", 10_000, "t0007");
    let r = w
        .req(
            reqwest::Method::DELETE,
            &format!("/v2/team/many/manifests/{d}"),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    tags.retain(|t| t != "t0007");
    assert_eq!(
        follow(&w, "/v2/team/many/tags/list?n=1000", "tags").concat(),
        tags
    );
    let r = get(&w, "/v2/team/many/manifests/t0008");
    assert_eq!(r.status(), 200, "tags of other manifests stay");
}
