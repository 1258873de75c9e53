//! The OpenAPI document of `/api/v1` (issue 12) is served publicly at
//! `/api/v1/openapi.json` and stays true: this test calls every documented
//! operation against a real wharf (admin Basic auth, a fake remote for the
//! cache) and checks that each answer's status is documented for it and
//! its body validates against the documented schema (JSON Schema 2020-12,
//! formats checked). An endpoint added without documentation, or a view
//! type changed without its schema, fails here.
mod support;

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};
use support::fake_upstream::FakeUpstream;
use support::scanner::{FakeScanner, Reports};
use support::upstream::remote_toml;
use support::{http, push_image, wait_prefetch, wait_until, Options, Wharf};

struct Spec {
    doc: Value,
    covered: BTreeSet<(String, String)>,
}

impl Spec {
    /// The schema documented for `method template` answering `status`,
    /// `None` for a documented answer without a body.
    fn response_schema(&self, method: &str, template: &str, status: u16) -> Option<Value> {
        let op = &self.doc["paths"][template][method.to_lowercase()];
        assert!(op.is_object(), "{method} {template} is not documented");
        let mut r = op["responses"][status.to_string()].clone();
        assert!(
            r.is_object(),
            "{method} {template} answered {status}, which is not documented"
        );
        if let Some(p) = r["$ref"].as_str() {
            r = self.doc.pointer(p.trim_start_matches('#')).unwrap().clone();
        }
        let s = r["content"]["application/json"]["schema"].clone();
        (!s.is_null()).then_some(s)
    }

    /// Validate `body` against `schema` with the document's components.
    fn validate(&self, what: &str, schema: &Value, body: &Value) {
        let mut root = schema.clone();
        root["components"] = self.doc["components"].clone();
        let v = jsonschema::options()
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("{what}: bad schema: {e}"));
        let errors: Vec<String> = v
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{what}: the answer does not match the document:\n{}\n{body:#}",
            errors.join("\n")
        );
    }
}

/// Call `method path` (as the admin unless `anonymous`), check the answer
/// against `template`'s documentation and return (status, body).
fn call(
    spec: &mut Spec,
    w: &Wharf,
    method: &str,
    template: &str,
    path: &str,
    body: Option<Value>,
    anonymous: bool,
) -> (u16, Value) {
    let url = format!("{}{path}", w.url());
    let m: Method = method.parse().unwrap();
    let mut req = if anonymous {
        http().request(m, &url)
    } else {
        w.req_url(m, &url)
    };
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let text = r.text().unwrap();
    let what = format!("{method} {path} -> {status}");
    spec.covered
        .insert((method.to_lowercase(), template.to_string()));
    let value = match spec.response_schema(method, template, status) {
        Some(schema) => {
            assert_eq!(ctype.as_deref(), Some("application/json"), "{what}");
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"));
            spec.validate(&what, &schema, &v);
            v
        }
        None => {
            assert!(
                text.is_empty(),
                "{what}: a body where none is documented: {text}"
            );
            Value::Null
        }
    };
    (status, value)
}

#[test]
fn every_documented_operation_answers_as_documented() {
    let up = FakeUpstream::start();
    up.add_image("lib/img", "1", 1);
    up.add_image("lib/other", "2", 2);
    let scanner = FakeScanner::start(Reports::Canned, "team/other");
    let w = Wharf::start_with(Options {
        config: Some(format!(
            "{}[[projects]]\nname = \"team\"\n{}",
            remote_toml("up", &up.url(), None),
            scanner.toml()
        )),
        env: vec![("SCANNER_AUTH".into(), "Bearer t".into())],
        admin: true,
        ..Options::default()
    });
    let app = push_image(&w, "team/app", "v1", 1);
    push_image(&w, "team/app", "v2", 2);

    // Public, and exactly the embedded document.
    let r = http()
        .get(format!("{}/api/v1/openapi.json", w.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().unwrap();
    let embedded: Value = serde_json::from_str(include_str!("../src/api/openapi.json")).unwrap();
    assert_eq!(doc, embedded);
    assert_eq!(doc["openapi"], "3.1.0");
    let mut s = Spec {
        doc,
        covered: BTreeSet::new(),
    };
    let spec = &mut s;

    let ok = |(status, _): (u16, Value), want: u16| assert_eq!(status, want);
    ok(
        call(
            spec,
            &w,
            "GET",
            "/api/v1/openapi.json",
            "/api/v1/openapi.json",
            None,
            true,
        ),
        200,
    );
    ok(
        call(
            spec,
            &w,
            "GET",
            "/api/v1/projects",
            "/api/v1/projects",
            None,
            true,
        ),
        401,
    );
    ok(
        call(
            spec,
            &w,
            "GET",
            "/api/v1/projects",
            "/api/v1/projects",
            None,
            false,
        ),
        200,
    );
    ok(
        call(
            spec,
            &w,
            "POST",
            "/api/v1/projects",
            "/api/v1/projects",
            Some(json!({"name": "made", "quota": "1GiB"})),
            false,
        ),
        201,
    );
    ok(
        call(
            spec,
            &w,
            "POST",
            "/api/v1/projects",
            "/api/v1/projects",
            Some(json!({"name": "made"})),
            false,
        ),
        409,
    );
    ok(
        call(
            spec,
            &w,
            "POST",
            "/api/v1/projects",
            "/api/v1/projects",
            Some(json!({"name": "x", "colour": 1})),
            false,
        ),
        400,
    );
    let p = "/api/v1/projects/{project}";
    ok(
        call(spec, &w, "GET", p, "/api/v1/projects/team", None, false),
        200,
    );
    ok(
        call(spec, &w, "GET", p, "/api/v1/projects/nosuch", None, false),
        404,
    );
    ok(
        call(
            spec,
            &w,
            "PUT",
            p,
            "/api/v1/projects/team",
            Some(json!({"public": true, "max_image_size": 1_000_000})),
            false,
        ),
        200,
    );
    ok(
        call(
            spec,
            &w,
            "PUT",
            p,
            "/api/v1/projects/nosuch",
            Some(json!({"public": true})),
            false,
        ),
        404,
    );
    ok(
        call(spec, &w, "DELETE", p, "/api/v1/projects/made", None, false),
        204,
    );
    ok(
        call(spec, &w, "DELETE", p, "/api/v1/projects/team", None, false),
        409,
    );
    let pr = "/api/v1/projects/{project}/repositories";
    ok(
        call(
            spec,
            &w,
            "GET",
            pr,
            "/api/v1/projects/team/repositories",
            None,
            false,
        ),
        200,
    );
    ok(
        call(
            spec,
            &w,
            "GET",
            pr,
            "/api/v1/projects/nosuch/repositories",
            None,
            false,
        ),
        404,
    );
    ok(
        call(
            spec,
            &w,
            "GET",
            "/api/v1/repositories",
            "/api/v1/repositories",
            None,
            false,
        ),
        200,
    );
    let arts = "/api/v1/repositories/{repository}/artifacts";
    ok(
        call(
            spec,
            &w,
            "GET",
            arts,
            "/api/v1/repositories/team/app/artifacts",
            None,
            false,
        ),
        200,
    );
    ok(
        call(
            spec,
            &w,
            "GET",
            arts,
            "/api/v1/repositories/team/none/artifacts",
            None,
            false,
        ),
        404,
    );
    let tag = "/api/v1/repositories/{repository}/tags/{tag}";
    ok(
        call(
            spec,
            &w,
            "DELETE",
            tag,
            "/api/v1/repositories/team/app/tags/v2",
            None,
            false,
        ),
        200,
    );
    ok(
        call(
            spec,
            &w,
            "DELETE",
            tag,
            "/api/v1/repositories/team/app/tags/v2",
            None,
            false,
        ),
        404,
    );
    let art = "/api/v1/repositories/{repository}/artifacts/{digest}";
    ok(
        call(
            spec,
            &w,
            "DELETE",
            art,
            &format!("/api/v1/repositories/team/app/artifacts/{}", app.digest),
            None,
            false,
        ),
        200,
    );
    ok(
        call(
            spec,
            &w,
            "DELETE",
            art,
            "/api/v1/repositories/team/app/artifacts/sha256:nope",
            None,
            false,
        ),
        400,
    );

    ok(
        call(
            spec,
            &w,
            "POST",
            "/api/v1/robots",
            "/api/v1/robots",
            Some(json!({"name": "ci", "permissions": {"team": ["pull"]}, "expires_in": "1d"})),
            false,
        ),
        201,
    );
    ok(
        call(
            spec,
            &w,
            "POST",
            "/api/v1/robots",
            "/api/v1/robots",
            Some(json!({"name": "ci"})),
            false,
        ),
        409,
    );
    ok(
        call(
            spec,
            &w,
            "POST",
            "/api/v1/robots",
            "/api/v1/robots",
            Some(json!({"name": "x", "permissions": {"nosuch": ["pull"]}})),
            false,
        ),
        404,
    );
    ok(
        call(
            spec,
            &w,
            "GET",
            "/api/v1/robots",
            "/api/v1/robots",
            None,
            false,
        ),
        200,
    );
    let robot = "/api/v1/robots/{name}";
    ok(
        call(spec, &w, "DELETE", robot, "/api/v1/robots/ci", None, false),
        204,
    );
    ok(
        call(
            spec,
            &w,
            "DELETE",
            robot,
            "/api/v1/robots/ci?purge=true",
            None,
            false,
        ),
        204,
    );
    ok(
        call(spec, &w, "DELETE", robot, "/api/v1/robots/ci", None, false),
        404,
    );

    let (status, a) = call(
        spec,
        &w,
        "POST",
        "/api/v1/prefetch",
        "/api/v1/prefetch",
        Some(json!({"image": "up/lib/img:1"})),
        false,
    );
    assert_eq!(status, 202);
    let (status, b) = call(
        spec,
        &w,
        "POST",
        "/api/v1/prefetch",
        "/api/v1/prefetch",
        Some(json!({"image": "up/lib/other:2", "pin": false})),
        false,
    );
    assert_eq!(status, 202);
    let ret = "/api/v1/projects/{project}/retention";
    let rules =
        json!({"rules": [{"tags": "v*", "keep_latest": 1}, {"untagged_older_than": "30d"}]});
    ok(
        call(
            spec,
            &w,
            "PUT",
            ret,
            "/api/v1/projects/team/retention",
            Some(rules),
            false,
        ),
        200,
    );
    let both = json!({"rules": [{"keep_latest": 1, "untagged_older_than": "1d"}]});
    ok(
        call(
            spec,
            &w,
            "PUT",
            ret,
            "/api/v1/projects/team/retention",
            Some(both),
            false,
        ),
        400,
    );
    ok(
        call(
            spec,
            &w,
            "GET",
            ret,
            "/api/v1/projects/team/retention",
            None,
            false,
        ),
        200,
    );
    ok(
        call(
            spec,
            &w,
            "GET",
            ret,
            "/api/v1/projects/nosuch/retention",
            None,
            false,
        ),
        404,
    );
    let run = "/api/v1/projects/{project}/retention/run";
    ok(
        call(
            spec,
            &w,
            "POST",
            run,
            "/api/v1/projects/team/retention/run?dry_run=true",
            None,
            false,
        ),
        200,
    );
    ok(
        call(
            spec,
            &w,
            "POST",
            run,
            "/api/v1/projects/team/retention/run",
            None,
            false,
        ),
        200,
    );
    ok(
        call(
            spec,
            &w,
            "POST",
            run,
            "/api/v1/projects/team/retention/run?dry_run=maybe",
            None,
            false,
        ),
        400,
    );
    push_image(&w, "team/node", "v1", 3);
    let pt = "/api/v1/pull-tokens";
    ok(
        call(
            spec,
            &w,
            "POST",
            pt,
            pt,
            Some(json!({"image": "team/node:v1", "uses": 1, "ttl": "1h"})),
            false,
        ),
        201,
    );
    ok(
        call(
            spec,
            &w,
            "POST",
            pt,
            pt,
            Some(json!({"image": "team/node:v1", "uses": 0, "ttl": "1h"})),
            false,
        ),
        400,
    );
    ok(
        call(
            spec,
            &w,
            "POST",
            pt,
            pt,
            Some(json!({"image": "team/node:nosuch", "uses": 1, "ttl": "1h"})),
            false,
        ),
        404,
    );
    let (_, tokens) = call(spec, &w, "GET", pt, pt, None, false);
    let token_id = tokens[0]["id"].as_str().unwrap().to_string();
    let one = "/api/v1/pull-tokens/{id}";
    ok(
        call(
            spec,
            &w,
            "DELETE",
            one,
            &format!("/api/v1/pull-tokens/{token_id}"),
            None,
            false,
        ),
        204,
    );
    ok(
        call(
            spec,
            &w,
            "DELETE",
            one,
            &format!("/api/v1/pull-tokens/{token_id}"),
            None,
            false,
        ),
        404,
    );

    ok(
        call(
            spec,
            &w,
            "POST",
            "/api/v1/prefetch",
            "/api/v1/prefetch",
            Some(json!({"image": "team/app:v1"})),
            false,
        ),
        400,
    );
    for job in [&a, &b] {
        let id = job["id"].as_str().unwrap();
        assert_eq!(wait_prefetch(&w, id)["state"], "done");
        ok(
            call(
                spec,
                &w,
                "GET",
                "/api/v1/prefetch/{id}",
                &format!("/api/v1/prefetch/{id}"),
                None,
                false,
            ),
            200,
        );
    }
    ok(
        call(
            spec,
            &w,
            "GET",
            "/api/v1/prefetch/{id}",
            "/api/v1/prefetch/nosuch",
            None,
            false,
        ),
        404,
    );
    ok(
        call(
            spec,
            &w,
            "GET",
            "/api/v1/prefetch",
            "/api/v1/prefetch",
            None,
            false,
        ),
        200,
    );
    ok(
        call(
            spec,
            &w,
            "GET",
            "/api/v1/cache",
            "/api/v1/cache",
            None,
            false,
        ),
        200,
    );
    let pin = "/api/v1/cache/{repository}/pins/{reference}";
    ok(
        call(
            spec,
            &w,
            "DELETE",
            pin,
            "/api/v1/cache/up/lib/img/pins/1",
            None,
            false,
        ),
        200,
    );
    ok(
        call(
            spec,
            &w,
            "PUT",
            pin,
            "/api/v1/cache/up/lib/other/pins/2",
            None,
            false,
        ),
        200,
    );
    ok(
        call(
            spec,
            &w,
            "PUT",
            pin,
            "/api/v1/cache/up/lib/img/pins/nosuch",
            None,
            false,
        ),
        404,
    );
    let image = "/api/v1/cache/{repository}/images/{reference}";
    ok(
        call(
            spec,
            &w,
            "DELETE",
            image,
            "/api/v1/cache/up/lib/other/images/2",
            None,
            false,
        ),
        409,
    );
    ok(
        call(
            spec,
            &w,
            "DELETE",
            image,
            "/api/v1/cache/up/lib/img/images/1",
            None,
            false,
        ),
        200,
    );
    ok(
        call(
            spec,
            &w,
            "DELETE",
            "/api/v1/cache/{repository}",
            "/api/v1/cache/up/lib/other",
            None,
            false,
        ),
        200,
    );
    ok(
        call(
            spec,
            &w,
            "DELETE",
            "/api/v1/cache/{repository}",
            "/api/v1/cache/team/app",
            None,
            false,
        ),
        400,
    );

    ok(
        call(
            spec,
            &w,
            "POST",
            "/api/v1/gc",
            "/api/v1/gc",
            Some(json!({"dry_run": true, "grace": "0s"})),
            false,
        ),
        200,
    );
    ok(
        call(
            spec,
            &w,
            "POST",
            "/api/v1/gc",
            "/api/v1/gc",
            Some(json!({"grace": "forever"})),
            false,
        ),
        400,
    );
    ok(
        call(
            spec,
            &w,
            "GET",
            "/api/v1/audit",
            "/api/v1/audit?n=3",
            None,
            false,
        ),
        200,
    );
    ok(
        call(
            spec,
            &w,
            "GET",
            "/api/v1/storage",
            "/api/v1/storage",
            None,
            false,
        ),
        200,
    );
    ok(
        call(
            spec,
            &w,
            "GET",
            "/api/v1/audit",
            "/api/v1/audit?n=x",
            None,
            false,
        ),
        400,
    );

    // Bundles: errors through `call`; a real round trip (a tar, not
    // JSON) checked against the documented import answer by hand.
    ok(
        call(
            spec,
            &w,
            "GET",
            "/api/v1/export",
            "/api/v1/export",
            None,
            false,
        ),
        400,
    );
    ok(
        call(
            spec,
            &w,
            "POST",
            "/api/v1/import",
            "/api/v1/import",
            None,
            false,
        ),
        400,
    );
    ok(
        call(
            spec,
            &w,
            "POST",
            "/api/v1/import",
            "/api/v1/import?project=team",
            None,
            false,
        ),
        400,
    );
    let tar = w
        .req(Method::GET, "/api/v1/export?image=up/lib/other:2")
        .send()
        .unwrap();
    assert_eq!(tar.status(), 200);
    let r = w
        .req(Method::POST, "/api/v1/import?project=team")
        .body(tar.bytes().unwrap())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let report: Value = r.json().unwrap();
    let schema = spec.response_schema("POST", "/api/v1/import", 200).unwrap();
    spec.validate("POST /api/v1/import -> 200", &schema, &report);
    assert_eq!(report["images"][0]["repository"], "team/lib/other");

    scanning(spec, &w);

    // Every documented operation was called.
    let mut documented = BTreeSet::new();
    for (path, item) in s.doc["paths"].as_object().unwrap() {
        for m in item
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "parameters")
        {
            documented.insert((m.clone(), path.clone()));
        }
    }
    let missed: Vec<_> = documented.difference(&s.covered).collect();
    assert!(missed.is_empty(), "documented but never called: {missed:?}");
}

/// The scanning endpoints: settings, a scan through the fake adapter, its
/// state and report.
fn scanning(spec: &mut Spec, w: &Wharf) {
    let digest = push_image(w, "team/scanned", "s1", 9).digest;
    let settings = "/api/v1/projects/{project}/scanning";
    let body = json!({"scan_on_push": false, "prevent_severity": null});
    let at = "/api/v1/projects/team/scanning";
    assert_eq!(call(spec, w, "PUT", settings, at, Some(body), false).0, 200);
    assert_eq!(call(spec, w, "GET", settings, at, None, false).0, 200);
    let scan = "/api/v1/repositories/{repository}/artifacts/{digest}/scan";
    let path = format!("/api/v1/repositories/team/scanned/artifacts/{digest}/scan");
    assert_eq!(call(spec, w, "POST", scan, &path, None, false).0, 202);
    wait_until("the scan", std::time::Duration::from_secs(60), || {
        call(spec, w, "GET", scan, &path, None, false).1["status"] == "done"
    });
    let report = "/api/v1/repositories/{repository}/artifacts/{digest}/scan/report";
    let (status, r) = call(
        spec,
        w,
        "GET",
        report,
        &format!("{path}/report"),
        None,
        false,
    );
    assert_eq!(
        (status, r["vulnerabilities"].as_array().map(Vec::len)),
        (200, Some(4))
    );
}
