//! `[[notifications]]`: registry events in Distribution's envelope format,
//! delivered at least once to a receiver written here — through a receiver
//! outage and a wharf restart — plus `cache-fetch` events of the
//! pull-through cache, once per fetched blob.
mod support;

use std::collections::HashSet;
use std::time::Duration;

use reqwest::Method;
use support::fake_upstream::FakeUpstream;
use support::receiver::{Mode, Receiver};
use support::{push_image, Options, Wharf};

const WAIT: Duration = Duration::from_secs(30);

fn endpoint_toml(r: &Receiver, extra: &str) -> String {
    format!(
        "\n[[notifications]]\nname = \"hook\"\nurl = \"{}\"\nbackoff = \"100ms\"\nbackoff_max = \"400ms\"\n{extra}\n",
        r.url()
    )
}

fn registry_with(r: &Receiver, extra: &str) -> Wharf {
    Wharf::start_with(Options {
        config: Some(format!("remotes = []\n{}", endpoint_toml(r, extra))),
        env: vec![("HOOK_TOKEN".into(), "Bearer hook-s3cret".into())],
        ..Options::default()
    })
}

/// The tags of the unique manifest push events received.
fn pushed_tags(r: &Receiver) -> HashSet<String> {
    r.unique("push")
        .iter()
        .filter_map(|e| e["target"]["tag"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn push_pull_and_delete_arrive_in_distributions_envelope() {
    let r = Receiver::start();
    let w = registry_with(
        &r,
        "headers = { \"X-Team\" = \"registry\" }\nsecret_headers = { Authorization = { backend = \"env\", token = \"HOOK_TOKEN\" } }",
    );
    let img = push_image(&w, "team/app", "v1", 1);
    let m = w
        .req(Method::GET, "/v2/team/app/manifests/v1")
        .send()
        .unwrap();
    assert_eq!(m.status(), 200);
    let b = w
        .req(
            Method::GET,
            &format!("/v2/team/app/blobs/{}", img.layers[0]),
        )
        .send()
        .unwrap();
    assert_eq!(b.status(), 200);
    let d = w
        .req(
            Method::DELETE,
            &format!("/v2/team/app/manifests/{}", img.digest),
        )
        .send()
        .unwrap();
    assert_eq!(d.status(), 202);
    r.wait_for("push, pull and delete events", WAIT, |r| {
        !r.unique("delete").is_empty() && r.unique("pull").len() == 2
    });

    // Headers: the envelope's media type, static and secret headers.
    let req = &r.requests()[0];
    assert_eq!(
        req.header("content-type"),
        Some("application/vnd.docker.distribution.events.v1+json")
    );
    assert_eq!(req.header("x-team"), Some("registry"));
    assert_eq!(req.header("authorization"), Some("Bearer hook-s3cret"));

    // Pushes: three blobs, then the manifest under its tag.
    let pushes = r.unique("push");
    assert_eq!(pushes.len(), 4, "{pushes:#?}");
    let manifest = pushes
        .iter()
        .find(|e| e["target"]["tag"] == "v1")
        .expect("a manifest push event");
    let t = &manifest["target"];
    assert_eq!(t["digest"], img.digest);
    assert_eq!(t["repository"], "team/app");
    assert_eq!(t["mediaType"], img.media_type);
    assert_eq!(t["size"], img.bytes.len());
    assert_eq!(t["length"], img.bytes.len());
    assert_eq!(t["url"], format!("/v2/team/app/manifests/{}", img.digest));
    assert_eq!(manifest["request"]["method"], "PUT");
    assert_eq!(manifest["request"]["addr"], "127.0.0.1");
    assert!(!manifest["source"]["instanceID"]
        .as_str()
        .unwrap()
        .is_empty());
    assert!(manifest["timestamp"].as_str().unwrap().ends_with('Z'));
    let blobs: HashSet<&str> = pushes
        .iter()
        .filter(|e| e["target"]["tag"].is_null())
        .map(|e| e["target"]["digest"].as_str().unwrap())
        .collect();
    let want: HashSet<&str> = img
        .layers
        .iter()
        .map(String::as_str)
        .chain([img.config.as_str()])
        .collect();
    assert_eq!(blobs, want);

    // Pulls: the manifest by tag and one blob; deletes: the manifest.
    let pulls = r.unique("pull");
    assert!(
        pulls
            .iter()
            .any(|e| e["target"]["tag"] == "v1" && e["target"]["digest"] == img.digest),
        "{pulls:#?}"
    );
    assert!(pulls
        .iter()
        .any(|e| e["target"]["digest"] == img.layers[0].as_str()
            && e["target"]["mediaType"] == "application/octet-stream"));
    assert_eq!(r.unique("delete")[0]["target"]["digest"], img.digest);

    // HEAD requests and failed requests make no events.
    let _ = w
        .req(Method::HEAD, "/v2/team/app/manifests/v1")
        .send()
        .unwrap();
    let _ = w
        .req(Method::GET, "/v2/team/app/manifests/nope")
        .send()
        .unwrap();
    push_image(&w, "team/app", "after", 2);
    r.wait_for("the next push", WAIT, |r| pushed_tags(r).contains("after"));
    assert_eq!(r.unique("pull").len(), 2, "HEAD or a 404 made an event");
    assert!(
        !w.logs().contains("hook-s3cret"),
        "a secret header value reached the log"
    );
}

#[test]
fn an_outage_and_a_restart_lose_no_event() {
    let r = Receiver::start();
    r.set(Mode::Unavailable);
    let mut w = registry_with(&r, "");
    for i in 0..5 {
        push_image(&w, "team/app", &format!("v{i}"), i);
    }
    for i in 0..5 {
        assert_eq!(
            w.req(Method::GET, &format!("/v2/team/app/manifests/v{i}"))
                .send()
                .unwrap()
                .status(),
            200
        );
    }
    std::thread::sleep(Duration::from_millis(600));
    let failures = w
        .metrics()
        .get("wharf_notification_delivery_failures_total{endpoint=\"hook\"}")
        .copied()
        .unwrap_or(0.0);
    assert!(
        failures >= 1.0,
        "the receiver answered 503: deliveries should have failed"
    );
    assert!(r.events().is_empty());

    // A graceful restart with everything still queued.
    assert!(w.stop(), "wharf exited with an error");
    w.restart();
    r.set(Mode::Reset);
    for i in 5..10 {
        push_image(&w, "team/app", &format!("v{i}"), i);
    }
    // A crash: the pushes' events were stored before their 201s.
    w.kill();
    w.restart();
    r.set(Mode::Up);
    let want: HashSet<String> = (0..10).map(|i| format!("v{i}")).collect();
    r.wait_for("every push event", WAIT, |r| pushed_tags(r) == want);
    r.wait_for("every pull event", WAIT, |r| r.unique("pull").len() == 5);
    // 10 images of 3 blobs and a manifest each, once per id.
    r.wait_for("every blob push event", WAIT, |r| {
        r.unique("push").len() == 40
    });
    let ids: Vec<String> = r
        .events()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), 45, "each event has its own id");
    support::wait_until("an empty queue", WAIT, || {
        w.metrics()
            .get("wharf_notification_events_pending{endpoint=\"hook\"}")
            == Some(&0.0)
    });
}

#[test]
fn cache_fetch_events_come_once_per_fetched_content() {
    let up = FakeUpstream::start();
    let img = up.add_image("lib/app", "1", 7);
    let r = Receiver::start();
    let w = Wharf::start_with(Options {
        config: Some(format!(
            "{}{}",
            up.remote_toml("up", None, ""),
            endpoint_toml(&r, "events = [\"cache-fetch\"]")
        )),
        ..Options::default()
    });
    for _ in 0..2 {
        assert_eq!(
            w.req(Method::GET, "/v2/up/lib/app/manifests/1")
                .send()
                .unwrap()
                .status(),
            200
        );
        for d in img.layers.iter().chain([&img.config]) {
            let b = w
                .req(Method::GET, &format!("/v2/up/lib/app/blobs/{d}"))
                .send()
                .unwrap();
            assert_eq!(b.status(), 200);
            let _ = b.bytes().unwrap();
        }
    }
    r.wait_for("a cache-fetch event per blob and the manifest", WAIT, |r| {
        r.unique("cache-fetch").len() == 4
    });
    std::thread::sleep(Duration::from_millis(500));
    let events = r.unique("cache-fetch");
    assert_eq!(
        events.len(),
        4,
        "second pulls were served from the cache: {events:#?}"
    );
    assert!(
        r.events().iter().all(|e| e["action"] == "cache-fetch"),
        "the endpoint asked for cache-fetch only"
    );
    let manifest = events
        .iter()
        .find(|e| e["target"]["digest"] == img.digest)
        .expect("the manifest's event");
    assert_eq!(manifest["target"]["remote"], "up");
    assert_eq!(manifest["target"]["tag"], "1");
    let sizes: u64 = events
        .iter()
        .map(|e| e["target"]["size"].as_u64().unwrap())
        .sum();
    let want: usize = img
        .layers
        .iter()
        .chain([&img.config])
        .map(|d| up.blob(d).unwrap().len())
        .sum::<usize>()
        + img.manifest.len();
    assert_eq!(sizes, want as u64);
}

#[test]
fn bad_endpoint_config_is_refused_at_start() {
    let out = std::process::Command::new(support::bin())
        .args(["check-config", "--config"])
        .arg({
            let dir = tempfile::tempdir().unwrap().keep();
            let p = dir.join("wharf.toml");
            std::fs::write(&p, "[[notifications]]\nname = \"hook\"\nurl = \"http://127.0.0.1:9/\"\nevents = [\"pushed\"]\n").unwrap();
            p
        })
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("notifications[0].events") && text.contains("pushed"),
        "{text}"
    );
}
