//! Pull-through cache cap: least recently pulled images are evicted, pinned
//! (prefetched) images never are.

mod support;

use support::disk::*;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use support::fake_upstream::{FakeImage, FakeUpstream};
use support::*;

fn manifest_link(w: &Wharf, repo: &str, d: &str) -> PathBuf {
    w.data_dir
        .join("repos")
        .join(repo)
        .join("_manifests/sha256")
        .join(&d[7..])
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
        assert!(
            blob_file(&w.data_dir, &d).exists(),
            "prefetch did not cache {d}"
        );
    }
    assert!(w
        .data_dir
        .join("repos/up/lib/pinned/_pinned/sha256")
        .join(&pinned.digest[7..])
        .exists());
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
    assert!(manifest_link(&w, "up/lib/a", &a.digest).exists());
    pull(&w, &c);

    // Four images are over the cap: `a`, the least recently pulled
    // unpinned one, is evicted with its blobs.
    wait_until("eviction of up/lib/a", Duration::from_secs(15), || {
        !manifest_link(&w, "up/lib/a", &a.digest).exists()
    });
    std::thread::sleep(Duration::from_millis(300));
    for d in a.blobs() {
        assert!(
            !blob_file(&w.data_dir, &d).exists(),
            "{d} of the evicted image is still on disk"
        );
    }
    for (repo, img) in [
        ("up/lib/pinned", &pinned),
        ("up/lib/b", &b),
        ("up/lib/c", &c),
    ] {
        assert!(
            manifest_link(&w, repo, &img.digest).exists(),
            "{repo} was evicted"
        );
        for d in img.blobs() {
            assert!(blob_file(&w.data_dir, &d).exists(), "{d} of {repo} removed");
        }
    }
    assert!(!w.data_dir.join("repos/up/lib/a/_tags/v1").exists());

    // The evicted image is simply fetched again; now `b` is the oldest and goes.
    pull(&w, &a);
    wait_until("eviction of up/lib/b", Duration::from_secs(15), || {
        !manifest_link(&w, "up/lib/b", &b.digest).exists()
    });
    assert!(manifest_link(&w, "up/lib/pinned", &pinned.digest).exists());
    assert!(manifest_link(&w, "up/lib/a", &a.digest).exists());
    assert!(manifest_link(&w, "up/lib/c", &c.digest).exists());
}
