//! Retention policies (issue 13, item 6) against the real binary: a
//! repository of 30 tags, a dry run that lists exactly what would go, a
//! real run that deletes it (audited) and a GC that frees the blobs, the
//! kept images still pulling; the untagged-by-age rule, rules set at run
//! time surviving a restart, and the schedule.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use support::cli::{as_admin, json_of, stdout};
use support::disk::blob_file;
use support::*;

const CI: &str = r#"remotes = []
[storage]
gc_grace = "0s"
[[projects]]
name = "ci"
[[projects.retention]]
tags = "v*"
keep_latest = 10
"#;

fn start(config: &str) -> Wharf {
    Wharf::start_with(Options {
        config: Some(config.to_string()),
        admin: true,
        ..Options::default()
    })
}

fn api(w: &Wharf, method: Method, path: &str, body: Option<Value>) -> Value {
    let mut r = w.req(method, path);
    if let Some(b) = body {
        r = r
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let r = r.send().unwrap();
    let status = r.status();
    let text = r.text().unwrap();
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap()
}

fn tags(w: &Wharf, repo: &str) -> BTreeSet<String> {
    let v = api(w, Method::GET, &format!("/v2/{repo}/tags/list"), None);
    v["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

fn strings(v: &Value, key: &str) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x[key].as_str().unwrap().to_string())
        .collect()
}

fn audit_actions(w: &Wharf) -> Vec<(String, String, String)> {
    let page = api(w, Method::GET, "/api/v1/audit?n=1000", None);
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().into(),
                e["actor"].as_str().unwrap().into(),
                e["target"].as_str().unwrap().into(),
            )
        })
        .collect()
}

#[test]
fn thirty_tags_keep_ten_dry_run_then_delete_audit_and_gc() {
    let w = start(CI);
    let pushed: Vec<Pushed> = (1..=30)
        .map(|i| push_image(&w, "ci/app", &format!("v{i:02}"), i))
        .collect();
    // `latest` matches no rule and points at v05: v05's image must stay.
    let r = put_manifest(&w, "ci/app", "latest", MT_OCI_MANIFEST, &pushed[4].bytes);
    assert_eq!(r.status(), 201);
    push_image(&w, "ci/app", "dev-1", 31);
    assert_eq!(tags(&w, "ci/app").len(), 32);

    let doomed_tags: BTreeSet<String> = (1..=20).map(|i| format!("v{i:02}")).collect();
    let doomed: BTreeSet<String> = (1..=20)
        .filter(|i| *i != 5)
        .map(|i| pushed[i - 1].digest.clone())
        .collect();

    // Dry run (API): exactly v01..v20, and their images except v05's.
    let dry = api(
        &w,
        Method::POST,
        "/api/v1/projects/ci/retention/run?dry_run=true",
        None,
    );
    assert_eq!(dry["dry_run"], true);
    assert_eq!(strings(&dry["tags"], "tag"), doomed_tags, "{dry:#}");
    assert_eq!(strings(&dry["artifacts"], "digest"), doomed, "{dry:#}");
    assert!(dry["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["reason"] == "tags removed"));
    assert_eq!(dry["tags_kept"], 12);
    assert!(dry.get("gc").is_none());
    assert_eq!(tags(&w, "ci/app").len(), 32, "a dry run deleted something");
    // The CLI says the same.
    let out = as_admin(&w, &["retention", "run", "ci", "--dry-run"]);
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("would delete 20 tags and 19 artifacts; 12 tags kept"),
        "{}",
        stdout(&out)
    );

    // The real run (CLI, JSON): deleted, then GC freed the images' blobs.
    let run = json_of(&as_admin(&w, &["retention", "--json", "run", "ci"]));
    assert_eq!(run["dry_run"], false);
    assert_eq!(strings(&run["tags"], "tag"), doomed_tags);
    assert_eq!(strings(&run["artifacts"], "digest"), doomed);
    let gc = &run["gc"];
    assert!(gc["blobs_removed"].as_u64().unwrap() >= 19 * 4, "{gc:#}");
    let mut want: BTreeSet<String> = (21..=30).map(|i| format!("v{i:02}")).collect();
    want.extend(["latest".to_string(), "dev-1".to_string()]);
    assert_eq!(tags(&w, "ci/app"), want);
    for (i, p) in pushed.iter().enumerate() {
        let gone = doomed.contains(&p.digest);
        for d in p.layers.iter().chain([&p.config, &p.digest]) {
            assert_eq!(
                !blob_file(&w.data_dir, d).exists(),
                gone,
                "image {} blob {d}",
                i + 1
            );
        }
    }

    // What stays pulls: manifests by tag, blobs byte-exact.
    for (tag, p) in [
        ("v30", &pushed[29]),
        ("v21", &pushed[20]),
        ("latest", &pushed[4]),
    ] {
        let r = w
            .req(Method::GET, &format!("/v2/ci/app/manifests/{tag}"))
            .header("accept", MT_OCI_MANIFEST)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{tag}");
        assert_eq!(r.bytes().unwrap().to_vec(), p.bytes);
        for d in &p.layers {
            let b = w
                .req(Method::GET, &format!("/v2/ci/app/blobs/{d}"))
                .send()
                .unwrap()
                .bytes()
                .unwrap();
            assert_eq!(sha256(&b), *d);
        }
    }
    let r = w
        .req(Method::GET, "/v2/ci/app/manifests/v01")
        .send()
        .unwrap();
    assert_oci_error(r, 404, "MANIFEST_UNKNOWN");

    // Every deletion is audited, by the admin who ran it.
    let audit = audit_actions(&w);
    let count = |action: &str| {
        audit
            .iter()
            .filter(|(a, who, _)| a == action && who == "admin")
            .count()
    };
    assert_eq!(count("tag.delete"), 20);
    assert_eq!(count("artifact.delete"), 19);
    assert_eq!(count("retention.dry_run"), 2);
    assert_eq!(count("retention.run"), 1);
    assert!(audit
        .iter()
        .any(|(a, _, t)| a == "tag.delete" && t == "ci/app:v01"));

    // A second run finds nothing more.
    let again = api(&w, Method::POST, "/api/v1/projects/ci/retention/run", None);
    assert!(
        again["tags"].as_array().unwrap().is_empty()
            && again["artifacts"].as_array().unwrap().is_empty(),
        "{again:#}"
    );
}

#[test]
fn untagged_older_than_set_at_run_time_survives_restart() {
    let mut w = start("remotes = []\n[storage]\ngc_grace = \"0s\"\n");
    api(
        &w,
        Method::POST,
        "/api/v1/projects",
        Some(json!({"name": "rt"})),
    );
    let rules = json!({"rules": [{"untagged_older_than": "2s"}]});
    assert_eq!(
        api(
            &w,
            Method::PUT,
            "/api/v1/projects/rt/retention",
            Some(rules.clone())
        ),
        rules
    );
    // Refusals name the problem.
    let r = w
        .req(Method::PUT, "/api/v1/projects/rt/retention")
        .body(r#"{"rules":[{"keep_latest":1,"untagged_older_than":"1d"}]}"#)
        .send()
        .unwrap();
    let e = assert_oci_error(r, 400, "UNSUPPORTED");
    assert!(
        e["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("rules[0]"),
        "{e}"
    );
    let r = w
        .req(Method::POST, "/api/v1/projects/nosuch/retention/run")
        .send()
        .unwrap();
    assert_oci_error(r, 404, "NAME_UNKNOWN");

    let tagged = push_image(&w, "rt/app", "v1", 1);
    let old = push_image(&w, "rt/app", "digest", 2);
    std::thread::sleep(Duration::from_millis(2500));
    let young = push_image(&w, "rt/app", "digest", 3);

    w.restart();
    assert_eq!(
        api(&w, Method::GET, "/api/v1/projects/rt/retention", None),
        rules
    );
    let dry = api(
        &w,
        Method::POST,
        "/api/v1/projects/rt/retention/run?dry_run=true",
        None,
    );
    assert_eq!(
        strings(&dry["artifacts"], "digest"),
        BTreeSet::from([old.digest.clone()]),
        "{dry:#}"
    );
    assert_eq!(dry["artifacts"][0]["reason"], "untagged");
    let run = api(&w, Method::POST, "/api/v1/projects/rt/retention/run", None);
    assert_eq!(
        strings(&run["artifacts"], "digest"),
        BTreeSet::from([old.digest.clone()])
    );
    assert!(
        !blob_file(&w.data_dir, &old.layers[0]).exists(),
        "GC did not free the untagged image"
    );
    for kept in [&tagged, &young] {
        let r = w
            .req(
                Method::GET,
                &format!("/v2/rt/app/manifests/{}", kept.digest),
            )
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

#[test]
fn the_schedule_applies_rules_by_itself() {
    let w = start("remotes = []\n[retention]\ninterval = \"1s\"\n[[projects]]\nname = \"nightly\"\n[[projects.retention]]\nkeep_latest = 1\n");
    for i in 1..=3 {
        push_image(&w, "nightly/app", &format!("build-{i}"), i);
    }
    wait_until(
        "the scheduled retention run",
        Duration::from_secs(60),
        || tags(&w, "nightly/app").len() == 1,
    );
    assert_eq!(
        tags(&w, "nightly/app"),
        BTreeSet::from(["build-3".to_string()])
    );
    let audit = audit_actions(&w);
    assert!(
        audit.iter().any(|(a, who, t)| a == "tag.delete"
            && who == "system:retention"
            && t == "nightly/app:build-1"),
        "{audit:?}"
    );
}
