//! Vulnerability scanning through Harbor's Pluggable Scanner API v1.1,
//! against a fake adapter written for the tests (`support::scanner`): scan
//! on push and on demand (API and CLI), the pull credential the adapter is
//! given (pulls its repository, nothing else), the severity summary in the
//! artifacts API and CLI, the project policy refusing pulls (also as
//! skopeo shows it), reports surviving a restart, and failures (adapter
//! down, malformed report) read back as a failed status with the reason.
mod support;

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use support::scanner::{scanner_toml, FakeScanner, Reports};
use support::upstream::skopeo;
use support::*;

const WAIT: Duration = Duration::from_secs(60);

/// A wharf with the admin account, projects `team` (`team_options`) and
/// `other`, and `scanner` as its `[[scanners]]` entry.
fn wharf(scanner: &str, team_options: &str) -> Wharf {
    Wharf::start_with(Options {
        config: Some(format!(
            "remotes = []\n[[projects]]\nname = \"team\"\n{team_options}\n[[projects]]\nname = \"other\"\n{scanner}"
        )),
        env: vec![("SCANNER_AUTH".into(), "Bearer adapter-s3cret".into())],
        admin: true,
        ..Options::default()
    })
}

/// `GET /api/v1/...` as the admin, as JSON.
fn get(w: &Wharf, path: &str) -> Value {
    let r = w
        .req(Method::GET, &format!("/api/v1/{path}"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().unwrap()
}

/// The artifact `digest` of `repo` in the artifacts listing.
fn listed(w: &Wharf, repo: &str, digest: &str) -> Value {
    let all = get(w, &format!("repositories/{repo}/artifacts"));
    all.as_array()
        .unwrap()
        .iter()
        .find(|a| a["digest"] == digest)
        .cloned()
        .unwrap_or_else(|| panic!("{digest} not listed: {all}"))
}

/// Wait until `repo@digest`'s scan ended; its summary.
fn ended(w: &Wharf, repo: &str, digest: &str) -> Value {
    let path = format!("repositories/{repo}/artifacts/{digest}/scan");
    let mut last = Value::Null;
    wait_until("the scan to end", WAIT, || {
        let r = w
            .req(Method::GET, &format!("/api/v1/{path}"))
            .send()
            .unwrap();
        last = r.json().unwrap_or(Value::Null);
        matches!(last["status"].as_str(), Some("done" | "failed"))
    });
    last
}

fn assert_canned_counts(s: &Value) {
    assert_eq!(s["status"], "done", "{s}");
    assert_eq!(
        (&s["critical"], &s["high"], &s["medium"], &s["low"]),
        (
            &Value::from(1),
            &Value::from(2),
            &Value::from(1),
            &Value::from(0)
        ),
        "{s}"
    );
    assert_eq!(s["scanner"], "fake");
    assert!(s["scanned_at"].is_string(), "{s}");
}

#[test]
fn scan_on_push_summary_policy_and_restart() {
    let fake = FakeScanner::start(Reports::Canned, "other/app");
    let mut w = wharf(
        &fake.toml(),
        "scan_on_push = true\nprevent_severity = \"high\"",
    );
    push_image(&w, "other/app", "v1", 2);
    let img = push_image(&w, "team/app", "v1", 1);
    assert_canned_counts(&ended(&w, "team/app", &img.digest));
    assert_canned_counts(&listed(&w, "team/app", &img.digest)["scan"]);

    let seen = fake.seen();
    let s = seen
        .iter()
        .find(|s| s.digest == img.digest)
        .expect("scan request");
    assert_eq!(
        (s.repository.as_str(), s.mime_type.as_str()),
        ("team/app", img.media_type.as_str())
    );
    assert_eq!(s.adapter_auth.as_deref(), Some("Bearer adapter-s3cret"));
    assert_eq!(s.own_status, 200, "the credential pulls its repository");
    assert!(
        matches!(s.other_status, 401 | 403),
        "the credential pulled another repository: {}",
        s.other_status
    );
    assert!(
        !w.logs().contains("adapter-s3cret"),
        "a secret reached the log"
    );

    let report = get(
        &w,
        &format!("repositories/team/app/artifacts/{}/scan/report", img.digest),
    );
    assert_eq!(report["vulnerabilities"].as_array().unwrap().len(), 4);
    assert_eq!(report["vulnerabilities"][0]["id"], "CVE-1");

    let refused = w
        .req(Method::GET, "/v2/team/app/manifests/v1")
        .send()
        .unwrap();
    let body = assert_oci_error(refused, 403, "DENIED");
    let msg = body["errors"][0]["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains(&format!(
            "image {} has 3 vulnerabilities at High or above (policy: High)",
            img.digest
        )),
        "{msg}"
    );
    // A HEAD (existence check) still answers.
    let head = w
        .req(Method::HEAD, "/v2/team/app/manifests/v1")
        .send()
        .unwrap();
    assert_eq!(head.status(), 200);
    if have("skopeo") {
        let args: Vec<String> = [
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            "admin:adminpw",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("docker://{}/team/app:v1", w.host())])
        .collect();
        let out = skopeo(w.tmp.path(), &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            err.contains("3 vulnerabilities at High or above"),
            "skopeo said: {err}"
        );
    }

    w.restart();
    assert_canned_counts(&listed(&w, "team/app", &img.digest)["scan"]);
    let again = w
        .req(Method::GET, "/v2/team/app/manifests/v1")
        .send()
        .unwrap();
    assert_oci_error(again, 403, "DENIED");
    let table = cli::stdout(&cli::as_admin(&w, &["artifacts", "team/app"]));
    assert!(table.contains("1 critical, 2 high, 1 medium"), "{table}");
}

#[test]
fn on_demand_scans_through_the_api_and_the_cli() {
    let fake = FakeScanner::start(Reports::Canned, "other/app");
    let w = wharf(&fake.toml(), "");
    let img = push_image(&w, "team/app", "v1", 3);
    assert!(fake.seen().is_empty(), "scanned without scan_on_push");
    assert!(listed(&w, "team/app", &img.digest).get("scan").is_none());

    let path = format!(
        "/api/v1/repositories/team/app/artifacts/{}/scan",
        img.digest
    );
    let r = w.req(Method::POST, &path).send().unwrap();
    assert_eq!(r.status(), 202);
    assert!(header(&r, "location").ends_with(&path));
    let started: Value = r.json().unwrap();
    assert!(
        matches!(started["status"].as_str(), Some("pending" | "running")),
        "{started}"
    );
    assert_canned_counts(&ended(&w, "team/app", &img.digest));
    // Without a policy the image pulls.
    let m = w
        .req(Method::GET, "/v2/team/app/manifests/v1")
        .send()
        .unwrap();
    assert_eq!(m.status(), 200);

    let img2 = push_image(&w, "team/app", "v2", 4);
    let out = cli::as_admin(&w, &["scan", "team/app:v2", "--wait"]);
    assert!(out.status.success(), "{}", cli::stderr(&out));
    assert!(cli::stdout(&out).contains("1 critical, 2 high, 1 medium"));
    assert_canned_counts(&listed(&w, "team/app", &img2.digest)["scan"]);

    // Scan settings over the API, then a pull refused by them.
    let put = w
        .req(Method::PUT, "/api/v1/projects/team/scanning")
        .json(&serde_json::json!({"scan_on_push": false, "prevent_severity": "critical"}))
        .send()
        .unwrap();
    assert_eq!(put.status(), 200);
    let s = get(&w, "projects/team/scanning");
    assert_eq!(
        (&s["prevent_severity"], &s["scanner"]),
        (&Value::from("critical"), &Value::from("fake"))
    );
    let refused = w
        .req(Method::GET, "/v2/team/app/manifests/v2")
        .send()
        .unwrap();
    let body = assert_oci_error(refused, 403, "DENIED");
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("1 vulnerabilities at Critical or above"));
    let bad = w
        .req(Method::PUT, "/api/v1/projects/team/scanning")
        .json(&serde_json::json!({"prevent_severity": "dire"}))
        .send()
        .unwrap();
    assert_oci_error(bad, 400, "UNSUPPORTED");
}

#[test]
fn adapter_down_and_malformed_reports_read_back_as_failed() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let w = wharf(&scanner_toml(&dead), "scan_on_push = true");
    let img = push_image(&w, "team/app", "v1", 5);
    let s = ended(&w, "team/app", &img.digest);
    assert_eq!(s["status"], "failed", "{s}");
    assert!(
        s["reason"]
            .as_str()
            .unwrap()
            .contains("scanner fake is unreachable"),
        "{s}"
    );
    assert_eq!(
        listed(&w, "team/app", &img.digest)["scan"]["status"],
        "failed"
    );
    let r = w
        .req(
            Method::GET,
            &format!(
                "/api/v1/repositories/team/app/artifacts/{}/scan/report",
                img.digest
            ),
        )
        .send()
        .unwrap();
    let body = assert_oci_error(r, 404, "NAME_UNKNOWN");
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("unreachable"));

    let fake = FakeScanner::start(Reports::Malformed, "other/app");
    let w2 = wharf(&fake.toml(), "");
    let img = push_image(&w2, "team/app", "v1", 6);
    let r = w2
        .req(
            Method::POST,
            &format!(
                "/api/v1/repositories/team/app/artifacts/{}/scan",
                img.digest
            ),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let s = ended(&w2, "team/app", &img.digest);
    assert_eq!(s["status"], "failed", "{s}");
    assert!(
        s["reason"]
            .as_str()
            .unwrap()
            .contains("not a vulnerability report v1.1"),
        "{s}"
    );
    // Unknown digests and non-scannable requests are clear errors.
    let unknown = format!(
        "/api/v1/repositories/team/app/artifacts/sha256:{}/scan",
        "0".repeat(64)
    );
    let r = w2.req(Method::POST, &unknown).send().unwrap();
    assert_oci_error(r, 404, "MANIFEST_UNKNOWN");
}

#[test]
fn cached_images_are_scanned_on_their_first_pull() {
    let up = support::fake_upstream::FakeUpstream::start();
    up.add_image("lib/img", "1", 1);
    let fake = FakeScanner::start(Reports::Canned, "team/app");
    let remote =
        support::upstream::remote_toml_with("up", &up.url(), None, "scan_on_first_pull = true");
    let w = Wharf::start_with(Options {
        config: Some(format!("{remote}{}", fake.toml())),
        env: vec![("SCANNER_AUTH".into(), "Bearer adapter-s3cret".into())],
        admin: true,
        ..Options::default()
    });
    let r = w
        .req(Method::GET, "/v2/up/lib/img/manifests/1")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let digest = header(&r, "docker-content-digest");
    assert_canned_counts(&ended(&w, "up/lib/img", &digest));
    let seen = fake.seen();
    assert_eq!(seen.len(), 1, "scanned once");
    assert_eq!(
        (seen[0].repository.as_str(), seen[0].own_status),
        ("up/lib/img", 200)
    );
}
