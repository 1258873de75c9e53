//! Issue 5: the management API (`/api/v1/`) and the `wharf` subcommands
//! that wrap it (tables for people, `--json` for scripts).
mod support;

use std::process::Command;

use serde_json::Value;
use support::accounts::auth_config;
use support::cli::{as_user as wharf, json_of};
use support::{http, sha256, Options, Wharf};

/// Push an image with one layer `layer` and a config; returns the manifest digest.
fn push(w: &Wharf, repo: &str, tag: &str, layer: &[u8]) -> String {
    let c = http();
    let cfg = format!("{{\"layer\":\"{}\"}}", sha256(layer)).into_bytes();
    for b in [layer, &cfg[..]] {
        let r = c
            .post(format!(
                "{}/v2/{repo}/blobs/uploads/?digest={}",
                w.url(),
                sha256(b)
            ))
            .basic_auth("admin", Some("adminpw"))
            .body(b.to_vec())
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&cfg), "size": cfg.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(layer), "size": layer.len()}]
    });
    let bytes = serde_json::to_vec(&m).unwrap();
    let r = c
        .put(format!("{}/v2/{repo}/manifests/{tag}", w.url()))
        .basic_auth("admin", Some("adminpw"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(bytes.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    sha256(&bytes)
}

#[test]
fn artifacts_delete_and_projects() {
    let w = Wharf::start_with(Options {
        config: Some(auth_config()),
        ..Default::default()
    });
    let layer = vec![7u8; 10_000];
    let d1 = push(&w, "a/app", "v1", &layer);
    assert_eq!(
        push(&w, "a/app", "v2", &layer),
        d1,
        "same content, same digest"
    );
    let d3 = push(&w, "a/app", "v3", &vec![9u8; 5_000]);
    // The same image in a second repository of the project: stored once.
    push(&w, "a/copy", "v1", &layer);

    // Artifacts grouped by digest with every tag and a size.
    let v = json_of(&wharf(
        &w,
        "admin",
        "adminpw",
        &["artifacts", "a/app", "--json"],
    ));
    let arts = v.as_array().unwrap();
    assert_eq!(arts.len(), 2);
    let a1 = arts.iter().find(|a| a["digest"] == d1.as_str()).unwrap();
    assert_eq!(a1["tags"], serde_json::json!(["v1", "v2"]));
    assert!(
        a1["size"].as_u64().unwrap() > 10_000,
        "manifest + config + layer"
    );
    assert_eq!(
        a1["media_type"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert!(
        a1["pushed_at"].as_str().unwrap().ends_with('Z'),
        "ISO-8601 like the tables: {a1}"
    );
    // A pull is recorded.
    let r = http()
        .get(format!("{}/v2/a/app/manifests/v1", w.url()))
        .basic_auth("admin", Some("adminpw"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v = json_of(&wharf(
        &w,
        "admin",
        "adminpw",
        &["artifacts", "a/app", "--json"],
    ));
    let a1 = v
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["digest"] == d1.as_str())
        .unwrap()
        .clone();
    assert!(a1["last_pulled_at"].as_str().is_some(), "{a1}");
    // The table for people.
    let out = wharf(&w, "admin", "adminpw", &["artifacts", "a/app"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.starts_with("DIGEST") && table.contains("v1,v2") && table.contains("v3"),
        "{table}"
    );

    // Projects with usage: a/app and a/copy share the layer, counted once.
    let v = json_of(&wharf(&w, "admin", "adminpw", &["projects", "--json"]));
    let a = v
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "a")
        .unwrap()
        .clone();
    let usage = a["usage"].as_u64().unwrap();
    assert!((15_000..20_000).contains(&usage), "layer counted once: {a}");
    assert_eq!(a["repositories"], 2);
    let repos = json_of(&wharf(&w, "admin", "adminpw", &["repos", "a", "--json"]));
    let names: Vec<&str> = repos
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a/app", "a/copy"]);

    // Delete an artifact: every tag pointing at it goes, the answer lists them.
    let v = json_of(&wharf(
        &w,
        "admin",
        "adminpw",
        &["delete", &format!("a/app@{d1}"), "--json"],
    ));
    assert_eq!(v["deleted_tags"], serde_json::json!(["v1", "v2"]));
    let tags: Value = http()
        .get(format!("{}/v2/a/app/tags/list", w.url()))
        .basic_auth("admin", Some("adminpw"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["v3"]));
    // Delete a single tag.
    let out = wharf(&w, "admin", "adminpw", &["delete", "a/app:v3"]);
    assert!(out.status.success());
    let r = http()
        .get(format!("{}/v2/a/app/manifests/{d3}", w.url()))
        .basic_auth("admin", Some("adminpw"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "untagging keeps the manifest");
    // Deleting what is not there is a clear error, not a crash.
    let out = wharf(&w, "admin", "adminpw", &["delete", &format!("a/app@{d1}")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("MANIFEST_UNKNOWN"));

    // Quota update.
    let v = json_of(&wharf(
        &w,
        "admin",
        "adminpw",
        &["quota", "a", "1MiB", "--json"],
    ));
    assert_eq!(v["quota"], 1 << 20);
    let v = json_of(&wharf(&w, "admin", "adminpw", &["projects", "--json"]));
    assert_eq!(
        v.as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "a")
            .unwrap()["quota"],
        1 << 20
    );
}

#[test]
fn robots_created_listed_revoked() {
    let w = Wharf::start_with(Options {
        config: Some(auth_config()),
        ..Default::default()
    });
    let v = json_of(&wharf(
        &w,
        "admin",
        "adminpw",
        &[
            "robot",
            "create",
            "node-7",
            "--perm",
            "a=pull,push",
            "--json",
        ],
    ));
    assert_eq!(v["username"], "robot$node-7");
    let token = v["token"].as_str().unwrap().to_string();
    assert!(token.len() >= 32);
    // The new robot can push to a.
    push_as(&w, "robot$node-7", &token, 201);
    // Listed without its token.
    let out = wharf(&w, "admin", "adminpw", &["robot", "list", "--json"]);
    let list = json_of(&out);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(&token),
        "token shown only once"
    );
    let r = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "node-7")
        .unwrap();
    assert_eq!(r["permissions"]["a"], serde_json::json!(["pull", "push"]));
    assert_eq!(r["active"], true);
    // Robots may not manage robots.
    let out = wharf(&w, "robot$node-7", &token, &["robot", "list"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("DENIED"));
    // Revoked: credentials stop working at once.
    assert!(
        wharf(&w, "admin", "adminpw", &["robot", "revoke", "node-7"])
            .status
            .success()
    );
    push_as(&w, "robot$node-7", &token, 401);
    // Duplicate names and bad names are clear errors.
    let out = wharf(&w, "admin", "adminpw", &["robot", "create", "puller"]);
    assert!(!out.status.success());
    let out = wharf(&w, "admin", "adminpw", &["robot", "create", "Bad Name"]);
    assert!(!out.status.success());
    let out = wharf(
        &w,
        "admin",
        "adminpw",
        &["robot", "create", "x", "--perm", "a=fly"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown permission"));
    // An expiring robot.
    let v = json_of(&wharf(
        &w,
        "admin",
        "adminpw",
        &[
            "robot",
            "create",
            "temp",
            "--perm",
            "a=pull",
            "--expires-in",
            "1h",
            "--json",
        ],
    ));
    assert!(v["expires_at"].as_str().unwrap().ends_with('Z'), "{v}");
}

fn push_as(w: &Wharf, user: &str, pass: &str, want: u16) {
    let r = http()
        .post(format!("{}/v2/a/robot-push/blobs/uploads/", w.url()))
        .basic_auth(user, Some(pass))
        .send()
        .unwrap();
    let want_status = if want == 201 { 202 } else { want };
    assert_eq!(r.status().as_u16(), want_status);
}

#[test]
fn management_access_rules() {
    let w = Wharf::start_with(Options {
        config: Some(auth_config()),
        ..Default::default()
    });
    push(&w, "a/app", "v1", b"a");
    push(&w, "b/app", "v1", b"b");
    let c = http();
    // Anonymous: 401.
    let r = c
        .get(format!("{}/api/v1/projects", w.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    // A robot sees only its projects (and public ones).
    let v: Value = c
        .get(format!("{}/api/v1/projects", w.url()))
        .basic_auth("robot$puller", Some("pullertok"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "p"]);
    // ... cannot list another project's artifacts, nor delete in its own without `delete`.
    let r = c
        .get(format!("{}/api/v1/repositories/b/app/artifacts", w.url()))
        .basic_auth("robot$puller", Some("pullertok"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = c
        .delete(format!("{}/api/v1/repositories/a/app/tags/v1", w.url()))
        .basic_auth("robot$puller", Some("pullertok"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    // ... nor change quotas.
    let r = c
        .put(format!("{}/api/v1/projects/a", w.url()))
        .basic_auth("robot$pusher", Some("pushertok"))
        .body(r#"{"quota": 1}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    // Bad input: clear 4xx, never 500.
    for (m, path, body) in [
        ("PUT", "/api/v1/projects/a", "{not json"),
        ("PUT", "/api/v1/projects/a", r#"{"quota": "lots"}"#),
        ("PUT", "/api/v1/projects/a", r#"{"colour": "red"}"#),
        ("PUT", "/api/v1/projects/A", r#"{}"#),
        ("POST", "/api/v1/robots", r#"{"name": 5}"#),
        (
            "GET",
            "/api/v1/repositories/a/app/artifacts/sha256:nope",
            "",
        ),
        (
            "DELETE",
            "/api/v1/repositories/a/app/artifacts/sha256:nope",
            "",
        ),
        ("GET", "/api/v1/nothing", ""),
        ("GET", "/api/v1/repositories/../../etc/artifacts", ""),
    ] {
        let r = c
            .request(m.parse().unwrap(), format!("{}{path}", w.url()))
            .basic_auth("admin", Some("adminpw"))
            .body(body.to_string())
            .send()
            .unwrap();
        let s = r.status().as_u16();
        assert!((400..500).contains(&s), "{m} {path} {body}: {s}");
        let v: Value = r.json().unwrap();
        assert!(v["errors"][0]["code"].is_string());
    }
    // A CLI pointed at nothing says so.
    let out = Command::new(support::bin())
        .args(["projects"])
        .env(
            "WHARF_URL",
            format!("http://127.0.0.1:{}", support::free_port()),
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
}
