//! Issue 11: the dashboard in a real browser (headless Chromium over
//! WebDriver): sign in, open a project, see an artifact with two tags,
//! delete it through the dialog that lists both, and check through the
//! registry API that the tags and the manifest are gone; create a robot and
//! log in with the token shown once; pin a cached image; prefetch an
//! image and watch its progress page until it is done. Each test saves
//! PNG screenshots under target/ui-screenshots/. Without Chromium the tests
//! print SKIPPED and pass.
mod support;

use std::path::PathBuf;

use support::webdriver::{available, Browser};
use support::{put_manifest, Options, Wharf, MT_OCI_MANIFEST};

fn out_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("ui-screenshots")
}

/// wharf with the test admin and a project `team`, plus `extra` config.
fn start(extra: &str) -> Wharf {
    let config = format!("{extra}\n[[projects]]\nname = \"team\"\n");
    Wharf::start_with(Options {
        config: Some(config),
        admin: true,
        ..Options::default()
    })
}

fn sign_in(b: &Browser, w: &Wharf) {
    b.goto(&format!("{}/ui/login", w.url()));
    b.type_into("input[name=username]", support::ADMIN.0);
    b.type_into("input[name=password]", support::ADMIN.1);
    b.click("button[type=submit]");
    b.find("header.top .who strong");
}

fn status(w: &Wharf, path: &str) -> u16 {
    w.req(reqwest::Method::GET, path)
        .header("accept", MT_OCI_MANIFEST)
        .send()
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn delete_an_artifact_through_the_dialog() {
    if !available() {
        return;
    }
    let w = start("remotes = []");
    let img = support::push_image(&w, "team/app", "v1", 1);
    assert_eq!(
        put_manifest(&w, "team/app", "stable", MT_OCI_MANIFEST, &img.bytes).status(),
        201
    );
    support::push_image(&w, "team/app", "v0", 2);

    let b = Browser::start(&out_dir());
    sign_in(&b, &w);
    b.screenshot("projects");
    b.click("a[href='/ui/projects/team']");
    b.click("a[href='/ui/r/team/app']");
    let row = format!("#a-{}", img.digest.trim_start_matches("sha256:"));
    let text = b.text(&row);
    assert!(
        text.contains("v1") && text.contains("stable"),
        "the artifact row shows both tags: {text}"
    );
    b.resize(1180, 760);
    b.screenshot("artifacts");

    b.click(&format!("{row} a[data-dialog]"));
    assert_eq!(
        b.run("return document.querySelector('dialog[open]') !== null"),
        true,
        "the dialog did not open"
    );
    let listed = b.text("dialog[open] ul.deleted-tags");
    assert!(
        listed.contains("v1") && listed.contains("stable"),
        "the dialog lists both tags: {listed}"
    );
    b.screenshot("delete-dialog");
    b.click("dialog[open] #confirm-delete");
    let done = b.text("main .flash");
    assert!(done.contains("v1") && done.contains("stable"), "{done}");
    b.screenshot("deleted");

    for r in ["v1", "stable", img.digest.as_str()] {
        assert_eq!(
            status(&w, &format!("/v2/team/app/manifests/{r}")),
            404,
            "{r} is still there"
        );
    }
    assert_eq!(
        status(&w, "/v2/team/app/manifests/v0"),
        200,
        "the other artifact went too"
    );
}

#[test]
fn create_a_robot_and_log_in_with_its_token() {
    if !available() {
        return;
    }
    let w = start("remotes = []");
    support::push_image(&w, "team/app", "v1", 1);
    let b = Browser::start(&out_dir());
    sign_in(&b, &w);
    b.goto(&format!("{}/ui/robots", w.url()));
    b.type_into("input[name=name]", "ci-ui");
    b.type_into("input[name=permissions]", "team=pull,push");
    b.click("form[action='/ui/robots'] button[type=submit]");
    let token = b.text(".secret .copy-row code");
    assert!(token.len() >= 20, "no token shown: {token:?}");
    let login = b.text(".secret .copy-row:nth-of-type(2) code");
    assert!(
        login.contains("docker login") && login.contains("robot$ci-ui"),
        "{login}"
    );
    assert!(
        b.try_find(".secret button[data-copy]").is_some(),
        "no copy button"
    );
    b.screenshot("robot-created");
    // Shown once: the list page does not have it.
    b.goto(&format!("{}/ui/robots", w.url()));
    assert!(!b.source().contains(&token));

    if support::docker::engine_available() {
        let cfg = tempfile::tempdir().unwrap();
        let out = support::docker::login(
            cfg.path().to_str().unwrap(),
            &w.host(),
            "robot$ci-ui",
            &token,
        );
        assert!(
            out.status.success(),
            "docker login: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The registry API with Basic credentials, always.
    let r = support::http()
        .get(format!("{}/v2/team/app/tags/list", w.url()))
        .basic_auth("robot$ci-ui", Some(&token))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "the new robot's token does not work");
    let robots: serde_json::Value = w
        .req(reqwest::Method::GET, "/api/v1/robots")
        .send()
        .unwrap()
        .json()
        .unwrap();
    let ci = robots
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "ci-ui")
        .unwrap();
    assert!(
        ci["last_used_at"].as_u64().is_some(),
        "last use not recorded: {ci}"
    );
    b.goto(&format!("{}/ui/robots", w.url()));
    b.screenshot("robots");
}

#[test]
fn pin_a_cached_image() {
    if !available() {
        return;
    }
    if !support::have("skopeo") || !std::path::Path::new(support::upstream::REGISTRY_BIN).exists() {
        eprintln!("SKIPPED: pinning needs skopeo and docker-registry for the upstream");
        return;
    }
    let mut up = support::upstream::Upstream::anonymous();
    up.push_small("lib/img", "v1", 1);
    let w = start(&up.remote_toml("up", ""));
    assert_eq!(status(&w, "/v2/up/lib/img/manifests/v1"), 200);

    let b = Browser::start(&out_dir());
    sign_in(&b, &w);
    b.goto(&format!("{}/ui/cache", w.url()));
    let page = b.source();
    assert!(
        page.contains("up/lib/img") && !page.contains("password"),
        "{page}"
    );
    b.click("form[action='/ui/cache/pin'] button");
    b.find("form[action='/ui/cache/unpin'] button");
    b.screenshot("cache");
    let v: serde_json::Value = w
        .req(reqwest::Method::GET, "/api/v1/cache")
        .send()
        .unwrap()
        .json()
        .unwrap();
    let images = v.as_array().unwrap();
    assert!(
        images
            .iter()
            .any(|i| i["repository"] == "up/lib/img" && i["pinned"] == true),
        "{v}"
    );

    // With the remote down, the page shows the last upstream error.
    up.stop();
    assert_ne!(status(&w, "/v2/up/lib/img/manifests/v2"), 200);
    b.goto(&format!("{}/ui/cache", w.url()));
    let text = b.text("main");
    assert!(text.contains("Last upstream error"), "{text}");
}

#[test]
fn prefetch_with_progress() {
    if !available() {
        return;
    }
    let up = support::fake_upstream::FakeUpstream::start();
    let img = up.add_image_sized("lib/tool", "2", 21, &[2000, 400_000]);
    // Slow enough that the progress page is seen before the end.
    up.set_blob_mode(
        &img.layers[1],
        support::fake_upstream::BlobMode::Trickle {
            chunk: 16 * 1024,
            delay: std::time::Duration::from_millis(80),
        },
    );
    let w = start(&up.remote_toml("up", None, ""));

    let b = Browser::start(&out_dir());
    sign_in(&b, &w);
    b.goto(&format!("{}/ui/cache", w.url()));
    b.type_into("input[name=image]", "up/lib/tool:2");
    b.click("form[action='/ui/cache/prefetch'] button");
    b.find("#prefetch-job");
    assert!(b.url().contains("/ui/cache/prefetch/"), "{}", b.url());
    b.resize(1180, 560);
    // Best effort: catch the page (it reloads every second, so an element
    // found may be gone before its text is read) while blobs arrive.
    for _ in 0..30 {
        if b.try_find("#prefetch-job[data-state=running]").is_none()
            || b.try_text("#prefetch-job")
                .is_some_and(|t| t.contains("fetching blobs"))
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    b.screenshot("prefetch-progress");
    // The page reloads itself (meta refresh, no script) until the job ends.
    support::wait_until(
        "the prefetch to finish in the browser",
        std::time::Duration::from_secs(60),
        || b.try_find("#prefetch-job[data-state=done]").is_some(),
    );
    let text = b.text("#prefetch-job");
    assert!(
        text.contains("done") && text.contains(&img.digest) && text.contains("3 of 3 blob(s)"),
        "{text}"
    );
    b.screenshot("prefetch-done");
    b.goto(&format!("{}/ui/cache", w.url()));
    assert!(b.text("main").contains("Recent prefetches"));
    b.screenshot("cache-recent-prefetches");
}
