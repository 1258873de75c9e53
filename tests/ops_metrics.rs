//! Observability (issue 6): `/metrics` counts a cold then a warm pull
//! through a test upstream as misses then hits, parses as Prometheus text
//! and has no unbounded labels; `/healthz` and `/readyz`; the request id
//! reaches the upstream and every log line of the request.
mod support;

use std::collections::HashMap;

use support::fake_upstream::FakeUpstream;
use support::{Options, Wharf};

const ACCEPT: &str =
    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";

fn scrape(w: &Wharf) -> HashMap<String, f64> {
    w.metrics()
}

const BLOBS_200: &str = "wharf_http_requests_total{route=\"blob\",status=\"200\"}";

/// A scrape once `n` blob GETs have been counted as finished: a request is
/// counted when the server sees its body end, which can be just after the
/// client read the last byte.
fn scrape_after_blob_gets(w: &Wharf, n: usize) -> HashMap<String, f64> {
    let mut m = HashMap::new();
    support::wait_until(
        &format!("{n} finished blob GETs in /metrics"),
        std::time::Duration::from_secs(10),
        || {
            m = scrape(w);
            m.get(BLOBS_200).copied().unwrap_or(0.0) >= n as f64
        },
    );
    m
}

fn get(m: &HashMap<String, f64>, series: &str) -> f64 {
    *m.get(series)
        .unwrap_or_else(|| panic!("no series {series} in {:#?}", m.keys().collect::<Vec<_>>()))
}

fn cache(m: &HashMap<String, f64>, kind: &str, result: &str) -> f64 {
    get(
        m,
        &format!("wharf_cache_requests_total{{remote=\"up\",kind=\"{kind}\",result=\"{result}\"}}"),
    )
}

/// Pull `repo:tag` through wharf like a client: manifest, then every blob.
fn pull(w: &Wharf, repo: &str, tag: &str, blobs: &[String], request_id: &str) {
    let c = support::http();
    let r = c
        .get(format!("{}/v2/up/{repo}/manifests/{tag}", w.url()))
        .header("accept", ACCEPT)
        .header("x-request-id", request_id)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(support::header(&r, "x-request-id"), request_id);
    for (i, d) in blobs.iter().enumerate() {
        let r = c
            .get(format!("{}/v2/up/{repo}/blobs/{d}", w.url()))
            .header("x-request-id", format!("{request_id}-blob{i}"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(support::sha256(&r.bytes().unwrap()), *d);
    }
}

#[test]
fn cold_then_warm_pull_moves_miss_then_hit_counters() {
    let up = FakeUpstream::start();
    let img = up.add_image_sized("team/app", "v1", 71, &[3000, 200_000]);
    let blobs = img.blobs();
    let w = Wharf::start_with(Options {
        config: Some(up.remote_toml("up", None, "tag_ttl = \"5m\"")),
        ..Default::default()
    });

    let m0 = scrape(&w);
    assert_eq!(cache(&m0, "manifest", "miss"), 0.0);
    assert_eq!(
        get(&m0, "wharf_upstream_requests_total{remote=\"up\"}"),
        0.0
    );

    pull(&w, "team/app", "v1", &blobs, "cold-pull-1");
    let m1 = scrape_after_blob_gets(&w, blobs.len());
    assert_eq!(cache(&m1, "manifest", "miss"), 1.0);
    assert_eq!(cache(&m1, "manifest", "hit"), 0.0);
    assert_eq!(cache(&m1, "blob", "miss"), blobs.len() as f64);
    assert_eq!(cache(&m1, "blob", "hit"), 0.0);
    assert!(get(&m1, "wharf_upstream_requests_total{remote=\"up\"}") >= 1.0 + blobs.len() as f64);
    let upstream_bytes = get(&m1, "wharf_upstream_bytes_total{remote=\"up\"}");
    assert!(
        upstream_bytes >= 203_000.0,
        "upstream bytes {upstream_bytes}"
    );
    assert_eq!(get(&m1, "wharf_blob_fetches_total"), blobs.len() as f64);
    assert!(get(&m1, "wharf_upstream_response_seconds_count{remote=\"up\"}") >= 1.0);
    assert_eq!(get(&m1, BLOBS_200), blobs.len() as f64);
    assert!(get(&m1, "wharf_http_response_bytes_total{route=\"blob\"}") >= 203_000.0);
    let up_requests = get(&m1, "wharf_upstream_requests_total{remote=\"up\"}");
    // A fetch commits (fsync, rename) just after its client read the last
    // byte; a GET before that joins the fetch and counts as a miss. The
    // warm pull starts once every fetch has left the in-flight table.
    support::wait_until(
        "no fetch in flight",
        std::time::Duration::from_secs(10),
        || get(&scrape(&w), "wharf_spool_files") == 0.0,
    );

    pull(&w, "team/app", "v1", &blobs, "warm-pull-1");
    let m2 = scrape_after_blob_gets(&w, 2 * blobs.len());
    assert_eq!(cache(&m2, "manifest", "miss"), 1.0, "warm pull missed");
    assert_eq!(cache(&m2, "manifest", "hit"), 1.0);
    assert_eq!(cache(&m2, "blob", "miss"), blobs.len() as f64);
    assert_eq!(cache(&m2, "blob", "hit"), blobs.len() as f64);
    assert_eq!(
        get(&m2, "wharf_upstream_requests_total{remote=\"up\"}"),
        up_requests,
        "warm pull went upstream"
    );
    assert_eq!(get(&m2, BLOBS_200), 2.0 * blobs.len() as f64);
    assert_eq!(get(&m2, "wharf_spool_files"), 0.0);
    assert_eq!(get(&m2, "wharf_gc_runs_total"), 0.0);

    // No unbounded label values: no repository names, no digests.
    let text = support::http()
        .get(format!("{}/metrics", w.url()))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        !text.contains("team/app") && !text.contains("sha256:"),
        "{text}"
    );

    // The request id went to the upstream with the cold requests.
    let manifest_reqs = up.requests_to("GET", "/v2/team/app/manifests/v1");
    assert_eq!(manifest_reqs.len(), 1);
    assert_eq!(manifest_reqs[0].header("x-request-id"), Some("cold-pull-1"));
    let blob_reqs = up.requests_to("GET", &format!("/v2/team/app/blobs/{}", blobs[1]));
    assert_eq!(
        blob_reqs[0].header("x-request-id"),
        Some("cold-pull-1-blob1")
    );
}

/// Wait until `f` accepts a scrape.
fn until(
    w: &Wharf,
    what: &str,
    mut f: impl FnMut(&HashMap<String, f64>) -> bool,
) -> HashMap<String, f64> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let m = scrape(w);
        if f(&m) {
            return m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} never happened: {m:#?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn store_gauges_follow_a_push_without_a_restart() {
    let w = Wharf::start_with(Options {
        config: Some("remotes = []\n".into()),
        ..Default::default()
    });
    until(&w, "first store scan", |m| {
        m.get("wharf_store_blobs") == Some(&0.0)
    });
    support::push_image(&w, "team/local", "v1", 5);
    // Rescanned a moment after the push (not only every minute).
    let m = until(&w, "store gauges moving", |m| {
        m.get("wharf_store_blobs") == Some(&4.0)
    });
    assert!(
        get(&m, "wharf_store_bytes") > 4000.0,
        "config, 2 layers and the manifest"
    );
}

#[test]
fn process_series_and_build_info() {
    let w = Wharf::start_with(Options {
        config: Some("remotes = []\n".into()),
        ..Default::default()
    });
    let m = scrape(&w);
    for s in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "process_threads",
    ] {
        assert!(get(&m, s) > 0.0, "{s}");
    }
    assert!(get(&m, "process_cpu_seconds_total") >= 0.0);
    let build = m
        .keys()
        .find(|k| k.starts_with("wharf_build_info{"))
        .expect("wharf_build_info");
    assert!(
        build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
        "{build}"
    );
    assert_eq!(get(&m, build), 1.0);
}

#[test]
fn health_and_readiness() {
    let w = Wharf::start_with(Options {
        config: Some("remotes = []\n".into()),
        ..Default::default()
    });
    let c = support::http();
    let r = c.get(format!("{}/healthz", w.url())).send().unwrap();
    assert_eq!(r.status(), 200);
    let r = c.get(format!("{}/readyz", w.url())).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        c.head(format!("{}/readyz", w.url()))
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.post(format!("{}/healthz", w.url()))
            .send()
            .unwrap()
            .status(),
        405
    );

    // The store's temp directory replaced by a file: not writable, not ready
    // (but alive).
    let tmp = w.data_dir.join("tmp");
    std::fs::remove_dir_all(&tmp).unwrap();
    std::fs::write(&tmp, b"not a directory").unwrap();
    let r = c.get(format!("{}/readyz", w.url())).send().unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().unwrap().contains("store not writable"));
    assert_eq!(
        c.get(format!("{}/healthz", w.url()))
            .send()
            .unwrap()
            .status(),
        200
    );
    std::fs::remove_file(&tmp).unwrap();
    std::fs::create_dir(&tmp).unwrap();
    assert_eq!(
        c.get(format!("{}/readyz", w.url()))
            .send()
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn json_logs_carry_the_request_id_on_every_line() {
    let up = FakeUpstream::start();
    let img = up.add_image("team/logs", "v1", 72);
    let w = Wharf::start_with(Options {
        config: Some(format!(
            "[log]\nformat = \"json\"\n{}",
            up.remote_toml("up", None, "")
        )),
        ..Default::default()
    });
    pull(&w, "team/logs", "v1", &img.blobs(), "json-req-7");
    // The blob fetch logs "blob cached" from its own task after the
    // response; give it a moment.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let logs = w.logs();
    let mut request_lines = 0;
    for line in logs.lines().filter(|l| l.contains("json-req-7")) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let id = v["span"]["id"].as_str().unwrap_or_default();
        assert!(id.starts_with("json-req-7"), "{line}");
        request_lines += 1;
    }
    // Per request: the access line; for the cold manifest also "manifest
    // cached"; for each blob also "blob cached".
    assert!(request_lines >= 2 + 2 * img.blobs().len(), "{logs}");
    assert!(
        logs.lines()
            .any(|l| l.contains("manifest cached") && l.contains("\"id\":\"json-req-7\"")),
        "{logs}"
    );
    assert!(
        logs.lines()
            .any(|l| l.contains("blob cached") && l.contains("json-req-7-blob")),
        "{logs}"
    );
}

#[test]
fn request_lines_carry_the_query_the_identity_and_complete_heads() {
    let w = Wharf::start_with(Options {
        config: Some("remotes = []\n".into()),
        admin: true,
        ..Default::default()
    });
    let p = support::push_image(&w, "team/logged", "v1", 9);
    let r = w
        .req(
            reqwest::Method::HEAD,
            &format!("/v2/team/logged/manifests/{}", p.digest),
        )
        .header("accept", ACCEPT)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = w
        .req(reqwest::Method::GET, "/v2/team/logged/tags/list?n=1")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let logs = w.logs();
    let head = logs
        .lines()
        .find(|l| l.contains("method=HEAD") && l.contains(&p.digest))
        .unwrap_or_else(|| panic!("no HEAD line:\n{logs}"));
    assert!(
        head.contains("complete=true") && head.contains("user=admin"),
        "{head}"
    );
    let ms = head
        .split("duration_ms=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    assert!(
        ms.split('.').nth(1).is_some_and(|d| d.len() == 1),
        "milliseconds with one decimal: {head}"
    );
    assert!(
        logs.lines()
            .any(|l| l.contains("target=/v2/team/logged/tags/list?n=1")),
        "the query is logged:\n{logs}"
    );
}
