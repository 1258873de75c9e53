//! Many repositories, tags and artifacts made cheaply over HTTP (one
//! image pushed once, then mounted and its manifest put again), and a
//! reader that follows `Link: <...>; rel="next"` page after page.

use serde_json::Value;

use super::{put_manifest, sha256, Pushed, Wharf};

/// Make `repo` hold `img` (pushed to `from`) under `reference`: its blobs
/// mounted from `from`, then its manifest put.
pub fn mount_image(w: &Wharf, from: &str, img: &Pushed, repo: &str, reference: &str) {
    for d in std::iter::once(&img.config).chain(&img.layers) {
        let r = w
            .req(
                reqwest::Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?mount={d}&from={from}"),
            )
            .send()
            .unwrap();
        assert_eq!(r.status(), 201, "mount {d} into {repo}: {:?}", r.text());
    }
    let r = put_manifest(w, repo, reference, &img.media_type, &img.bytes);
    assert_eq!(
        r.status(),
        201,
        "manifest {repo}:{reference}: {:?}",
        r.text()
    );
}

/// A manifest distinct from `img`'s (annotation `n`) over the same blobs:
/// (digest, bytes).
pub fn variant(img: &Pushed, n: usize) -> (String, Vec<u8>) {
    let mut m: Value = serde_json::from_slice(&img.bytes).unwrap();
    m["annotations"] = serde_json::json!({ "n": n.to_string() });
    let bytes = serde_json::to_vec(&m).unwrap();
    (sha256(&bytes), bytes)
}

/// Put `variant(img, n)` into `repo` (which holds `img`'s blobs) under
/// `reference`; returns its digest.
pub fn put_variant(w: &Wharf, img: &Pushed, repo: &str, n: usize, reference: &str) -> String {
    let (d, bytes) = variant(img, n);
    let r = put_manifest(w, repo, reference, &img.media_type, &bytes);
    assert_eq!(r.status(), 201, "variant {n} in {repo}: {:?}", r.text());
    d
}

/// GET `path` (with the guard's credentials) and every page its `Link`
/// headers lead to: each page's JSON body, in order. A `Link` must point
/// back at this server.
pub fn follow_pages(w: &Wharf, path: &str) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut next = Some(path.to_string());
    while let Some(p) = next.take() {
        let r = w.req(reqwest::Method::GET, &p).send().unwrap();
        assert_eq!(r.status(), 200, "{p}");
        next = r.headers().get("link").map(|l| {
            let l = l.to_str().unwrap();
            assert!(l.ends_with("rel=\"next\""), "Link {l}");
            let url = &l[l.find('<').unwrap() + 1..l.find('>').unwrap()];
            url.strip_prefix(&w.url()).unwrap_or(url).to_string()
        });
        pages.push(r.json().unwrap());
        assert!(pages.len() < 1000, "pagination does not end");
    }
    pages
}

/// The strings of a JSON array (or of `key` in each of its objects).
pub fn strings_of(v: &Value, key: Option<&str>) -> Vec<String> {
    let item = |x: &Value| match key {
        Some(k) => x[k].as_str().unwrap().to_string(),
        None => x.as_str().unwrap().to_string(),
    };
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(item)
        .collect()
}
