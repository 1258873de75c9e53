//! Issue 11: the dashboard over plain HTTP against the real binary. What
//! each account sees (a robot of one project never sees another project's
//! names), CSRF refusal, cookie flags, the CSP and other headers, escaping
//! of text that comes from manifests, and read-only open mode.
mod support;

use support::accounts::hash_password;
use support::ui::{csrf_in, set_cookie, Visitor};
use support::{
    descriptor, image_manifest, push_blob, put_manifest, sha256, Options, Wharf, MT_OCI_CONFIG,
    MT_OCI_LAYER, MT_OCI_MANIFEST,
};

/// Projects `alpha` (the robot's), `bravo-secret` (not its) and public
/// `pubproj`; admin `admin`/`adminpw`; robot `alpha-bot`/`alphatok` with
/// pull and delete on alpha.
fn start() -> Wharf {
    let config = format!(
        r#"remotes = []
[auth]
[[auth.admins]]
username = "admin"
password_hash = "{}"
[[auth.robots]]
name = "alpha-bot"
token_hash = "{}"
permissions = {{ alpha = ["pull", "delete"] }}
[[projects]]
name = "alpha"
[[projects]]
name = "bravo-secret"
quota = "10MiB"
[[projects]]
name = "pubproj"
public = true
"#,
        hash_password("adminpw"),
        hash_password("alphatok")
    );
    let mut w = Wharf::start_with(Options {
        config: Some(config),
        ..Options::default()
    });
    w.creds = Some(("admin".into(), "adminpw".into()));
    w
}

/// Push a one-layer image with `annotations` under each of `tags`; returns its digest.
fn push(w: &Wharf, repo: &str, tags: &[&str], seed: u64, annotations: serde_json::Value) -> String {
    let cfg = format!("{{\"seed\":{seed}}}").into_bytes();
    let layer = support::data(seed, 500);
    let c = push_blob(w, repo, &cfg);
    let l = push_blob(w, repo, &layer);
    let m = image_manifest(
        MT_OCI_MANIFEST,
        descriptor(MT_OCI_CONFIG, &c, cfg.len()),
        vec![descriptor(MT_OCI_LAYER, &l, layer.len())],
        serde_json::json!({ "annotations": annotations }),
    );
    for t in tags {
        assert_eq!(put_manifest(w, repo, t, MT_OCI_MANIFEST, &m).status(), 201);
    }
    sha256(&m)
}

fn pages_of(v: &Visitor, paths: &[&str]) -> Vec<(String, u16, String)> {
    paths
        .iter()
        .map(|p| {
            let (s, h) = v.get(p);
            (p.to_string(), s, h)
        })
        .collect()
}

#[test]
fn pages_show_only_what_the_account_may_see() {
    let w = start();
    push(&w, "alpha/app", &["v1"], 1, serde_json::json!({}));
    push(
        &w,
        "bravo-secret/hidden-repo",
        &["t1"],
        2,
        serde_json::json!({}),
    );
    push(&w, "pubproj/open", &["latest"], 3, serde_json::json!({}));

    let robot = Visitor::sign_in(&w, "robot$alpha-bot", "alphatok");
    let paths = [
        "/ui/",
        "/ui/projects/alpha",
        "/ui/r/alpha/app",
        "/ui/projects/pubproj",
        "/ui/r/pubproj/open",
        "/ui/robots",
        "/ui/cache",
        "/ui/storage",
        "/ui/login",
    ];
    for (p, status, html) in pages_of(&robot, &paths) {
        assert!(
            !html.contains("bravo"),
            "{p} ({status}) shows project bravo-secret to robot$alpha-bot:\n{html}"
        );
        assert!(
            !html.contains("hidden-repo"),
            "{p} shows bravo's repository"
        );
    }
    let (_, home) = robot.get("/ui/");
    assert!(home.contains("alpha") && home.contains("pubproj"), "{home}");
    let (_, arts) = robot.get("/ui/r/alpha/app");
    assert!(
        arts.contains("v1") && arts.contains("Delete"),
        "the robot may delete in alpha: {arts}"
    );
    let (_, open) = robot.get("/ui/r/pubproj/open");
    assert!(
        !open.contains("Delete"),
        "no delete permission on pubproj, yet a delete button:\n{open}"
    );
    for p in ["/ui/robots", "/ui/cache", "/ui/storage"] {
        assert_eq!(robot.get(p).0, 403, "{p} is for admins");
    }
    assert_eq!(robot.get("/ui/projects/bravo-secret").0, 403);
    assert_eq!(robot.get("/ui/r/bravo-secret/hidden-repo").0, 403);
    // The robot cannot delete in bravo-secret through the form either.
    let (s, _) = robot.post(
        "/ui/tags/delete",
        &[("repo", "bravo-secret/hidden-repo"), ("tag", "t1")],
    );
    assert_eq!(s, 403);
    assert_eq!(
        w.req(
            reqwest::Method::GET,
            "/v2/bravo-secret/hidden-repo/manifests/t1"
        )
        .send()
        .unwrap()
        .status(),
        200
    );

    // Anonymous: public projects only.
    let anon = Visitor::anonymous(&w);
    let (s, home) = anon.get("/ui/");
    assert_eq!(s, 200);
    assert!(
        home.contains("pubproj") && !home.contains("alpha") && !home.contains("bravo"),
        "{home}"
    );
    let (s, html) = anon.get("/ui/r/alpha/app");
    assert_eq!(s, 403, "anonymous must sign in for a private project");
    assert!(html.contains("href=\"/ui/login\""), "{html}");

    // Admin: everything, with the quota bar and numbers.
    let admin = Visitor::sign_in(&w, "admin", "adminpw");
    let (_, home) = admin.get("/ui/");
    assert!(
        home.contains("bravo-secret") && home.contains("<meter") && home.contains("of 10 MiB"),
        "{home}"
    );
    assert!(home.contains("New project"));
}

#[test]
fn forms_need_the_session_csrf_token() {
    let w = start();
    let d = push(&w, "alpha/app", &["v1", "v2"], 1, serde_json::json!({}));
    let admin = Visitor::sign_in(&w, "admin", "adminpw");
    let manifest = |t: &str| {
        w.req(
            reqwest::Method::GET,
            &format!("/v2/alpha/app/manifests/{t}"),
        )
        .send()
        .unwrap()
        .status()
        .as_u16()
    };

    // No token, a wrong one, another session's, no session at all.
    let other = Visitor::sign_in(&w, "robot$alpha-bot", "alphatok");
    for fields in [
        vec![],
        vec![("csrf", "AAAA")],
        vec![("csrf", other.csrf.as_str())],
    ] {
        let mut f = fields.clone();
        f.extend([("repo", "alpha/app"), ("tag", "v1")]);
        let (s, body) = admin.post_exact("/ui/tags/delete", &f);
        assert_eq!(s, 403, "{fields:?}: {body}");
        assert!(body.contains("CSRF"), "{body}");
    }
    let anon = Visitor {
        csrf: admin.csrf.clone(),
        ..Visitor::anonymous(&w)
    };
    assert_eq!(
        anon.post("/ui/tags/delete", &[("repo", "alpha/app"), ("tag", "v1")])
            .0,
        403
    );
    assert_eq!(manifest("v1"), 200, "a refused form deleted the tag");

    // The right token: one tag, then the artifact with its other tag.
    assert_eq!(
        admin
            .post("/ui/tags/delete", &[("repo", "alpha/app"), ("tag", "v1")])
            .0,
        200
    );
    assert_eq!(manifest("v1"), 404);
    assert_eq!(manifest("v2"), 200);
    let (s, body) = admin.post(
        "/ui/artifacts/delete",
        &[("repo", "alpha/app"), ("digest", &d)],
    );
    assert_eq!(s, 200, "{body}");
    assert!(
        body.contains("v2"),
        "the answer names the deleted tag: {body}"
    );
    assert_eq!(manifest(&d), 404);

    // Sign-in needs the nonce cookie's token too; signing out ends the session.
    let r = support::http()
        .post(format!("{}/ui/login", w.url()))
        .form(&[("username", "admin"), ("password", "adminpw")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(admin.post("/ui/logout", &[]).0, 303);
    assert_eq!(
        admin.get("/ui/robots").0,
        403,
        "a signed-out session still works"
    );
}

#[test]
fn cookies_and_headers() {
    let w = start();
    let r = support::http().get(format!("{}/", w.url())).send().unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(support::header(&r, "location"), "/ui/");

    let (r, _) = Visitor::try_sign_in(&w, "admin", "adminpw");
    let cookie = set_cookie(&r, "wharf_session").unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=28800"] {
        assert!(cookie.contains(flag), "{flag} missing: {cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP on loopback: no Secure flag ({cookie})"
    );
    let (bad, _) = Visitor::try_sign_in(&w, "admin", "wrong");
    assert_eq!(bad.status(), 401);
    assert!(set_cookie(&bad, "wharf_session").is_none());

    let admin = Visitor::sign_in(&w, "admin", "adminpw");
    for p in ["/ui/", "/ui/robots", "/ui/nope", "/ui/static/app.js"] {
        let r = admin.get_raw(p);
        let csp = support::header(&r, "content-security-policy");
        assert!(
            csp.contains("script-src 'self'")
                && csp.contains("default-src 'none'")
                && !csp.contains("unsafe"),
            "{p}: {csp}"
        );
        assert_eq!(support::header(&r, "x-content-type-options"), "nosniff");
        assert_eq!(support::header(&r, "x-frame-options"), "DENY");
        if p != "/ui/static/app.js" {
            assert_eq!(support::header(&r, "cache-control"), "no-store");
            let html = r.text().unwrap();
            let handlers = [
                " onclick=",
                " onload=",
                " onerror=",
                " onsubmit=",
                "javascript:",
            ];
            assert!(
                !html.contains("<script>") && !handlers.iter().any(|h| html.contains(h)),
                "inline script in {p}"
            );
            assert!(!html.contains("adminpw"));
        }
    }
    let js = admin.get_raw("/ui/static/app.js");
    assert!(support::header(&js, "content-type").starts_with("text/javascript"));
    // The page's token is never in a URL.
    let (_, home) = admin.get("/ui/");
    let csrf = csrf_in(&home).unwrap();
    assert!(!home.contains(&format!("={csrf}&")) && !home.contains("?csrf="));

    // Behind https (external_url): Secure.
    let config = format!(
        "remotes = []\n[server]\nexternal_url = \"https://wharf.example\"\n{}",
        support::admin_config()
    );
    let tls = Wharf::start_with(Options {
        config: Some(config),
        ..Options::default()
    });
    let (r, _) = Visitor::try_sign_in(&tls, "admin", "adminpw");
    assert!(set_cookie(&r, "wharf_session")
        .unwrap()
        .contains("; Secure"));
}

#[test]
fn text_from_manifests_is_escaped() {
    let w = start();
    let evil = "<script>alert('owned')</script><img src=x onerror=alert(1)>";
    push(
        &w,
        "alpha/app",
        &["v1"],
        7,
        serde_json::json!({ "org.example.note": evil, "<b>key</b>": "x" }),
    );
    let admin = Visitor::sign_in(&w, "admin", "adminpw");
    let (s, html) = admin.get("/ui/r/alpha/app");
    assert_eq!(s, 200);
    assert!(
        !html.contains("<script>alert") && !html.contains("<img src=x"),
        "annotation rendered as HTML:\n{html}"
    );
    assert!(
        html.contains("&lt;script&gt;alert(") && html.contains("&lt;b&gt;key&lt;/b&gt;"),
        "annotation not shown as text:\n{html}"
    );
    // A name in the URL that is not a repository name is refused, not echoed as HTML.
    let (s, html) = admin.get("/ui/r/alpha/%3Cscript%3E");
    assert!(s == 400 || s == 404, "{s}");
    assert!(!html.contains("<script>"), "{html}");
}

#[test]
fn open_mode_is_read_only() {
    let w = Wharf::start_registry_only();
    support::push_image(&w, "team/app", "v1", 1);
    let anon = Visitor::anonymous(&w);
    let (s, html) = anon.get("/ui/r/team/app");
    assert_eq!(s, 200, "{html}");
    assert!(html.contains("v1"));
    let (s, body) = anon.post_exact("/ui/tags/delete", &[("repo", "team/app"), ("tag", "v1")]);
    assert_eq!(s, 401, "{body}");
    assert!(body.contains("no accounts"), "{body}");
    assert_eq!(
        w.req(reqwest::Method::GET, "/v2/team/app/manifests/v1")
            .send()
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn long_lists_are_paged() {
    let w = start();
    for i in 0..101 {
        push(
            &w,
            &format!("alpha/r{i:03}"),
            &["v1"],
            1,
            serde_json::json!({}),
        );
    }
    for i in 0..51 {
        push(
            &w,
            "alpha/many",
            &[&format!("t{i}")],
            100 + i,
            serde_json::json!({}),
        );
    }
    let admin = Visitor::sign_in(&w, "admin", "adminpw");
    let (_, first) = admin.get("/ui/projects/alpha");
    assert!(
        first.contains("alpha/r000") && !first.contains("alpha/r099"),
        "first page holds 100 repositories"
    );
    assert!(
        first.contains("?after=alpha%2Fr098"),
        "no link to the next page:\n{first}"
    );
    let (_, second) = admin.get("/ui/projects/alpha?after=alpha%2Fr098");
    assert!(
        second.contains("alpha/r099")
            && second.contains("alpha/r100")
            && !second.contains("alpha/r000")
    );
    assert!(!second.contains("Next page"));
    let (_, arts) = admin.get("/ui/r/alpha/many");
    assert!(
        arts.contains("Page 1 of 2 (51 artifacts)") && arts.contains("?page=1"),
        "{arts}"
    );
    let (_, older) = admin.get("/ui/r/alpha/many?page=1");
    assert_eq!(
        older.matches("class=\"mono muted\"").count(),
        1,
        "the second page holds the 51st artifact"
    );
}

#[test]
fn index_platforms_and_referrers_under_their_subject() {
    let w = start();
    let amd = support::push_image(&w, "alpha/multi", "digest", 1);
    let arm = support::push_image(&w, "alpha/multi", "digest", 2);
    let platform = |arch: &str, variant: Option<&str>| {
        let mut p = serde_json::json!({ "os": "linux", "architecture": arch });
        if let Some(v) = variant {
            p["variant"] = v.into();
        }
        p
    };
    let mut c1 = descriptor(MT_OCI_MANIFEST, &amd.digest, amd.bytes.len());
    c1["platform"] = platform("amd64", None);
    let mut c2 = descriptor(MT_OCI_MANIFEST, &arm.digest, arm.bytes.len());
    c2["platform"] = platform("arm64", Some("v8"));
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": support::MT_OCI_INDEX, "manifests": [c1, c2]
    }))
    .unwrap();
    assert_eq!(
        put_manifest(&w, "alpha/multi", "1.0", support::MT_OCI_INDEX, &index).status(),
        201
    );
    let index_digest = sha256(&index);
    // A signature whose subject is the index.
    let cfg = push_blob(&w, "alpha/multi", b"{}");
    let sig = image_manifest(
        MT_OCI_MANIFEST,
        descriptor("application/vnd.example.signature.config+json", &cfg, 2),
        vec![],
        serde_json::json!({ "subject": descriptor(support::MT_OCI_INDEX, &index_digest, index.len()), "artifactType": "application/vnd.example.signature" }),
    );
    let sig_digest = sha256(&sig);
    assert_eq!(
        put_manifest(&w, "alpha/multi", &sig_digest, MT_OCI_MANIFEST, &sig).status(),
        201
    );

    let admin = Visitor::sign_in(&w, "admin", "adminpw");
    let (_, html) = admin.get("/ui/r/alpha/multi");
    assert!(
        html.contains("linux/amd64") && html.contains("linux/arm64/v8"),
        "index platforms missing:\n{html}"
    );
    assert!(
        html.contains("application/vnd.example.signature"),
        "artifact type missing"
    );
    let subject_row = html
        .find(&format!(
            "id=\"a-{}\"",
            index_digest.trim_start_matches("sha256:")
        ))
        .expect("index row");
    let referrer_row = html
        .find(&format!(
            "class=\"referrer\" id=\"a-{}\"",
            sig_digest.trim_start_matches("sha256:")
        ))
        .expect("referrer row");
    assert!(
        referrer_row > subject_row,
        "the signature is listed under its subject"
    );
}
