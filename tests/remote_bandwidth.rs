//! `max_bandwidth` per remote (issue 13, item 7): every blob download from
//! that remote shares one cap. A 10 MiB cold fetch at 2 MiB/s cannot finish
//! in under 4 s (a lower bound only: tests never bound timings from above),
//! two concurrent fetches share the cap rather than getting it each, the
//! bytes are intact, and the cap and the time held back show in /metrics.
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::fake_upstream::FakeUpstream;
use support::{bin, http, sha256, Options, Wharf};

const MIB: usize = 1 << 20;

fn capped_wharf(up: &FakeUpstream, cap: &str) -> Wharf {
    Wharf::start_with(Options {
        config: Some(up.remote_toml("up", None, &format!("max_bandwidth = \"{cap}\""))),
        ..Default::default()
    })
}

/// GET a blob through wharf; its bytes must hash to `digest`.
fn fetch(w: &Wharf, repo: &str, digest: &str) {
    let r = http()
        .get(format!("{}/v2/up/{repo}/blobs/{digest}", w.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(sha256(&r.bytes().unwrap()), digest);
}

#[test]
fn a_cold_fetch_keeps_under_the_cap() {
    let up = FakeUpstream::start();
    let img = up.add_image_sized("team/big", "v1", 91, &[10 * MIB]);
    let layer = img.layers[0].clone();
    let w = capped_wharf(&up, "2MiB/s");

    let t = Instant::now();
    fetch(&w, "team/big", &layer);
    let took = t.elapsed();
    eprintln!("10 MiB at 2 MiB/s: {took:.2?}");
    // 10 MiB at 2 MiB/s is 5 s; the burst allowance is a quarter second.
    assert!(
        took >= Duration::from_secs(4),
        "10 MiB arrived in {took:.2?}, faster than 2 MiB/s allows"
    );

    let m = w.metrics();
    assert_eq!(
        m["wharf_upstream_bandwidth_limit_bytes{remote=\"up\"}"],
        (2 * MIB) as f64
    );
    let held = m["wharf_upstream_throttled_seconds_total{remote=\"up\"}"];
    assert!(held >= 3.0, "held back only {held} s");

    // Warm: served from the store, not capped.
    fetch(&w, "team/big", &layer);
}

#[test]
fn concurrent_fetches_share_one_cap() {
    let up = FakeUpstream::start();
    let a = up.add_image_sized("team/a", "v1", 92, &[4 * MIB]);
    let b = up.add_image_sized("team/b", "v1", 93, &[4 * MIB]);
    let (da, db) = (a.layers[0].clone(), b.layers[0].clone());
    let w = capped_wharf(&up, "2MiB/s");

    let t = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| fetch(&w, "team/a", &da));
        s.spawn(|| fetch(&w, "team/b", &db));
    });
    let took = t.elapsed();
    eprintln!("2 × 4 MiB at a shared 2 MiB/s: {took:.2?}");
    // 8 MiB together at 2 MiB/s is 4 s; each alone at the full cap would
    // take 2 s.
    assert!(
        took >= Duration::from_secs(3),
        "8 MiB arrived in {took:.2?}: the cap was not shared"
    );
}

#[test]
fn a_cap_too_low_for_the_speed_floor_is_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("wharf.toml");
    std::fs::write(
        &path,
        "[[remotes]]\nname = \"up\"\nurl = \"http://127.0.0.1:9\"\nmax_bandwidth = \"4KiB/s\"\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("remotes[0].max_bandwidth"), "{text}");
    assert!(text.contains("min_speed"), "{text}");
}
