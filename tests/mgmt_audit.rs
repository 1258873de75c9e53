//! The audit trail: management actions and registry-API deletions are
//! recorded with who, what, when and the result, readable newest first at
//! `GET /api/v1/audit` (admins, paginated), and kept across restarts.
mod support;

use reqwest::Method;
use serde_json::Value;
use support::*;

fn start() -> Wharf {
    Wharf::start_with(Options {
        config: Some("remotes = []\n[[projects]]\nname = \"team\"\n".into()),
        admin: true,
        ..Options::default()
    })
}

fn audit_page(w: &Wharf, query: &str) -> (Value, String) {
    let r = w
        .req(Method::GET, &format!("/api/v1/audit{query}"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let link = r
        .headers()
        .get("link")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (r.json().unwrap(), link)
}

/// Every entry, following `next` from page to page.
fn all_entries(w: &Wharf, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut query = format!("?n={n}");
    loop {
        let (page, _) = audit_page(w, &query);
        out.extend(page["entries"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(next) => query = format!("?n={n}&last={next}"),
            None => return out,
        }
    }
}

fn actions(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e["actor"].as_str().unwrap(),
                e["action"].as_str().unwrap(),
                e["result"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn management_actions_are_audited_newest_first_and_survive_a_restart() {
    let mut w = start();
    let r = w
        .req(Method::PUT, "/api/v1/projects/team")
        .body(r#"{"quota": "1GiB", "public": true}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = w
        .req(Method::POST, "/api/v1/robots")
        .body(r#"{"name": "ci", "permissions": {"team": ["pull", "push"]}}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let robot: Value = r.json().unwrap();
    let token = robot["token"].as_str().unwrap().to_string();
    let one = push_image(&w, "team/app", "one", 1);
    push_image(&w, "team/app", "two", 2);
    // The robot may push but not delete: a refused deletion is recorded.
    let r = http()
        .delete(format!("{}/api/v1/repositories/team/app/tags/two", w.url()))
        .basic_auth("robot$ci", Some(&token))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = w
        .req(Method::DELETE, "/api/v1/repositories/team/app/tags/two")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // A deletion through the registry API is audited too.
    let r = w
        .req(
            Method::DELETE,
            &format!("/v2/team/app/manifests/{}", one.digest),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = w
        .req(Method::POST, "/api/v1/gc")
        .body(r#"{"dry_run": true}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = w.req(Method::DELETE, "/api/v1/robots/ci").send().unwrap();
    assert_eq!(r.status(), 204);

    let expected = [
        "admin robot.revoke ok",
        "admin gc.dry_run ok",
        "admin artifact.delete ok",
        "admin tag.delete ok",
        "robot$ci tag.delete denied",
        "admin robot.create ok",
        "admin project.update ok",
    ];
    let entries = all_entries(&w, 3);
    assert_eq!(actions(&entries), expected);
    // Pages are linked, ids unique, times RFC 3339, details useful, and the
    // robot's token appears nowhere.
    let (_, link) = audit_page(&w, "?n=2");
    assert!(
        link.contains("rel=\"next\"") && link.contains("last="),
        "{link}"
    );
    let ids: std::collections::HashSet<&str> =
        entries.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), entries.len());
    assert!(entries
        .iter()
        .all(|e| e["time"].as_str().unwrap().ends_with('Z')));
    assert_eq!(entries[2]["target"], format!("team/app@{}", one.digest));
    assert_eq!(
        entries[2]["details"]["deleted_tags"],
        serde_json::json!(["one"])
    );
    assert_eq!(entries[6]["details"]["quota"], 1u64 << 30);
    let all = serde_json::to_string(&entries).unwrap();
    assert!(
        !all.contains(&token),
        "an audit entry holds the robot's token"
    );
    let logs = w.logs();
    assert!(
        logs.contains("robot.create") && !logs.contains(&token),
        "audit log lines"
    );

    w.restart();
    assert_eq!(actions(&all_entries(&w, 100)), expected);
}

#[test]
fn the_audit_log_is_for_admins_and_validates_its_query() {
    let w = start();
    let r = w
        .req(Method::POST, "/api/v1/robots")
        .body(r#"{"name": "ci", "permissions": {"team": ["pull"]}}"#)
        .send()
        .unwrap();
    let token = r.json::<Value>().unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = http()
        .get(format!("{}/api/v1/audit", w.url()))
        .basic_auth("robot$ci", Some(&token))
        .send()
        .unwrap();
    assert_oci_error(r, 403, "DENIED");
    let r = http()
        .get(format!("{}/api/v1/audit", w.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    for bad in ["?n=x", "?last=../../etc/passwd"] {
        let r = w
            .req(Method::GET, &format!("/api/v1/audit{bad}"))
            .send()
            .unwrap();
        assert_oci_error(r, 400, "UNSUPPORTED");
    }
}
