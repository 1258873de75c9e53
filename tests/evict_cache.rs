//! Pull-through cache cap: least recently pulled images are evicted, pinned
//! (prefetched) images never are.

mod support;

use support::disk::*;

use std::process::Command;
use std::time::Duration;

use support::fake_upstream::{FakeImage, FakeUpstream};
use support::*;

/// Whether `w` links manifest `d` in `repo`.
fn has_manifest(w: &Wharf, repo: &str, d: &str) -> bool {
    w.stored(&format!("repos/{repo}/_manifests/sha256/{}", &d[7..]))
}

/// A full pull through wharf: manifest by tag, then every blob (verified).
fn pull(w: &Wharf, img: &FakeImage) {
    let r = http()
        .get(format!(
            "{}/v2/up/{}/manifests/{}",
            w.url(),
            img.repo,
            img.tag
        ))
        .header("accept", MT_OCI_MANIFEST)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}:{}", img.repo, img.tag);
    assert_eq!(sha256(&r.bytes().unwrap()), img.digest);
    for d in img.blobs() {
        let b = http()
            .get(format!("{}/v2/up/{}/blobs/{d}", w.url(), img.repo))
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        assert_eq!(sha256(&b), d);
    }
}

#[test]
fn least_recently_pulled_is_evicted_pinned_is_not() {
    let up = FakeUpstream::start();
    // Each image is ~42 kB; the cap holds three.
    let pinned = up.add_image("lib/pinned", "v1", 1);
    let a = up.add_image("lib/a", "v1", 2);
    let b = up.add_image("lib/b", "v1", 3);
    let c = up.add_image("lib/c", "v1", 4);
    let config = format!(
        "[storage]\ngc_grace = \"0s\"\n[cache]\nevict_interval = \"1s\"\n{}",
        up.remote_toml("up", None, "max_size = \"150000\"")
    );
    // With an admin: prefetch is a management call (pulls stay anonymous).
    let w = Wharf::start_with(Options {
        config: Some(config),
        admin: true,
        ..Options::default()
    });

    // Prefetch + pin through the CLI (it calls the running server's API).
    let out = Command::new(bin())
        .args([
            "prefetch",
            "up/lib/pinned:v1",
            "--url",
            &w.url(),
            "--user",
            ADMIN.0,
            "--password",
            ADMIN.1,
        ])
        .env_remove("WHARF_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&pinned.digest) && stdout.contains("pinned"),
        "{stdout}"
    );
    for d in pinned.blobs() {
        assert!(w.stored(&blob_key(&d)), "prefetch did not cache {d}");
    }
    assert!(w.stored(&format!(
        "repos/up/lib/pinned/_pinned/sha256/{}",
        &pinned.digest[7..]
    )));
    // Cached: the upstream is not asked again for its blobs.
    up.clear_requests();
    pull(&w, &pinned);
    for d in pinned.blobs() {
        assert_eq!(up.blob_gets("lib/pinned", &d), 0);
    }

    pull(&w, &a);
    std::thread::sleep(Duration::from_millis(1100));
    pull(&w, &b);
    std::thread::sleep(Duration::from_millis(1100));
    // Under the cap so far: nothing goes.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(has_manifest(&w, "up/lib/a", &a.digest));
    pull(&w, &c);

    // Four images are over the cap: `a`, the least recently pulled
    // unpinned one, is evicted with its blobs.
    wait_until("eviction of up/lib/a", Duration::from_secs(15), || {
        !has_manifest(&w, "up/lib/a", &a.digest)
    });
    std::thread::sleep(Duration::from_millis(300));
    if w.on_s3() {
        // On a shared store the eviction keeps blobs a manifest marked in
        // the last 2 minutes (the cache fill did): the next GC takes them.
        let r = w
            .req(reqwest::Method::POST, "/api/v1/gc")
            .body("{}")
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{}", w.logs());
    }
    for d in a.blobs() {
        assert!(
            !w.stored(&blob_key(&d)),
            "{d} of the evicted image is still stored"
        );
    }
    for (repo, img) in [
        ("up/lib/pinned", &pinned),
        ("up/lib/b", &b),
        ("up/lib/c", &c),
    ] {
        assert!(has_manifest(&w, repo, &img.digest), "{repo} was evicted");
        for d in img.blobs() {
            assert!(w.stored(&blob_key(&d)), "{d} of {repo} removed");
        }
    }
    assert!(!w.stored("repos/up/lib/a/_tags/v1"));

    // The evicted image is simply fetched again; now `b` is the oldest and goes.
    pull(&w, &a);
    wait_until("eviction of up/lib/b", Duration::from_secs(15), || {
        !has_manifest(&w, "up/lib/b", &b.digest)
    });
    assert!(has_manifest(&w, "up/lib/pinned", &pinned.digest));
    assert!(has_manifest(&w, "up/lib/a", &a.digest));
    assert!(has_manifest(&w, "up/lib/c", &c.digest));
}
