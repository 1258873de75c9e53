//! Tests of the Garage test harness itself (`support::garage`, no wharf
//! involved): a 1-node and a 3-node cluster start, and the S3 API answers
//! SigV4-signed PUT, GET and ListObjectsV2 end to end; the 3-node cluster
//! (replication factor 3, quorum 2) keeps serving with one node killed.
//!
//! Without a garage binary every test prints
//! `SKIPPED: no garage binary (tests/run.sh installs it)` and passes.
mod support;

use support::garage::Garage;
use support::s3::{xml_value, S3};

/// PUT `key` through `s3`, then GET it back byte for byte.
fn put_get(s3: &S3, key: &str, body: &[u8]) {
    let r = s3.put(key, body);
    assert_eq!(r.status, 200, "PUT {key} on {}: {}", s3.endpoint, r.text());
    let etag = r.etag();
    let r = s3.get(key);
    assert_eq!(r.status, 200, "GET {key} on {}: {}", s3.endpoint, r.text());
    assert_eq!(
        r.body, body,
        "GET {key} on {} returns what was PUT",
        s3.endpoint
    );
    assert_eq!(r.etag(), etag, "same ETag on GET as on PUT");
}

/// Print how long start-up took, the nodes' memory and any warning or
/// error they logged while starting, for the record.
fn report(g: &Garage) {
    for i in 0..g.len() {
        let logs = g.logs(i);
        let bad: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .collect();
        eprintln!(
            "garage node {i}: {} warning/error lines at start-up {bad:#?}",
            bad.len()
        );
    }
    let rss: Vec<String> = (0..g.len())
        .map(|i| {
            g.rss_kib(i)
                .map_or("?".into(), |k| format!("{} MiB", k / 1024))
        })
        .collect();
    let steps: Vec<String> = g
        .startup_steps
        .iter()
        .map(|(s, d)| format!("{s} {d:.0?}"))
        .collect();
    eprintln!(
        "garage: {} node(s) up, healthy, bucket and key ready in {:.0?} ({}); RSS {}",
        g.len(),
        g.startup,
        steps.join(", "),
        rss.join(", ")
    );
}

#[test]
fn single_node_put_get_list() {
    let Some(g) = Garage::start(1) else { return };
    report(&g);
    assert_eq!(g.s3_urls().len(), 1);
    let s3 = g.s3(0);

    let body = support::data(1, 100_000);
    put_get(&s3, "blobs/sha256/ab/abcdef", &body);
    put_get(&s3, "blobs/sha256/cd/cdef01", b"second");
    // Keys with characters that need encoding round-trip too.
    put_get(&s3, "repos/team/app/_manifests/tags/v1.0+build 7", b"tag");

    let r = s3.head("blobs/sha256/ab/abcdef");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length").as_deref(), Some("100000"));

    assert_eq!(
        s3.list_keys(&[("prefix", "blobs/")]),
        ["blobs/sha256/ab/abcdef", "blobs/sha256/cd/cdef01"],
        "ListObjectsV2 under blobs/"
    );
    assert_eq!(s3.list_keys(&[]).len(), 3, "whole bucket");

    let r = s3.get("no/such/key");
    assert_eq!(r.status, 404);
    assert_eq!(
        xml_value(&r.text(), "Code").as_deref(),
        Some("NoSuchKey"),
        "{}",
        r.text()
    );

    // A wrong secret is refused: requests really are checked.
    let mut bad = s3.clone();
    bad.secret_key = "0".repeat(64);
    assert_eq!(bad.get("blobs/sha256/cd/cdef01").status, 403);
}

#[test]
fn three_nodes_survive_one_node_down() {
    let Some(g) = Garage::start(3) else { return };
    report(&g);
    assert_eq!(g.replication_factor, 3);
    let urls = g.s3_urls();
    assert_eq!(urls.len(), 3);
    assert!(
        urls.iter().all(|u| u.starts_with("http://127.0.0.1:")),
        "{urls:?}"
    );

    // Written through node 0, readable and listed through every node.
    let body = support::data(2, 300_000);
    put_get(&g.s3(0), "k/one", &body);
    for i in 0..3 {
        let r = g.s3(i).get("k/one");
        assert_eq!(
            (r.status, r.body == body),
            (200, true),
            "GET k/one on node {i}"
        );
        assert_eq!(g.s3(i).list_keys(&[]), ["k/one"], "LIST on node {i}");
    }

    // One node goes away: quorum 2 of 3 still reads and writes.
    g.stop_node(2);
    assert!(!g.is_running(2));
    for i in 0..2 {
        let r = g.s3(i).get("k/one");
        assert_eq!(
            (r.status, r.body == body),
            (200, true),
            "GET k/one on node {i} with node 2 down"
        );
    }
    let two = support::data(3, 200_000);
    put_get(&g.s3(1), "k/two", &two);
    assert_eq!(
        g.s3(0).get("k/two").body,
        two,
        "node 0 reads what node 1 wrote with node 2 down"
    );
    assert_eq!(g.s3(0).list_keys(&[]), ["k/one", "k/two"]);
    let h = g.health(0).expect("node 0 health");
    assert_eq!(
        h["status"], "degraded",
        "node 0 sees the cluster degraded: {h}"
    );

    // Back up: the cluster heals and node 2 serves the object written
    // while it was away.
    g.restart_node(2);
    let r = g.s3(2).get("k/two");
    assert_eq!(
        (r.status, r.body == two),
        (200, true),
        "GET k/two on restarted node 2"
    );
    assert_eq!(g.s3(2).list_keys(&[]), ["k/one", "k/two"]);
}
