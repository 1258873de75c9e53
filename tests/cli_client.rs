//! Issue 12, CLI: the `wharf` client commands driven as users do (the real
//! binary against a real wharf): projects create/set/delete, unknown
//! projects refused, digest prefixes, robots deleted and their names
//! reused, the pull-through cache (list, pin, unpin, purge), repositories
//! marked cached, GC on the running server, ISO-8601 times in JSON,
//! network and TLS causes, `--insecure`, help text and completions.
mod support;

use serde_json::Value;
use support::cli::{as_admin, as_user, failure, json_of, run_at, stdout};
use support::fake_upstream::FakeUpstream;
use support::pki::{pki, pki_for, Pki};
use support::upstream::remote_toml;
use support::{free_port, http, push_image, Options, Wharf};

fn start(config: &str) -> Wharf {
    Wharf::start_with(Options {
        config: Some(config.into()),
        admin: true,
        ..Options::default()
    })
}

fn is_iso8601(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 20 && s.as_bytes()[10] == b'T' && s.ends_with('Z'))
}

#[test]
fn projects_are_created_changed_and_deleted_and_unknown_ones_refused() {
    let w = start("remotes = []\n[[projects]]\nname = \"fixed\"\n");
    // quota and robot permissions never create a project by accident.
    let err = failure(&as_admin(&w, &["quota", "nosuch", "1GiB"]));
    assert!(
        err.contains("project nosuch does not exist")
            && err.contains("wharf projects create nosuch"),
        "{err}"
    );
    let err = failure(&as_admin(
        &w,
        &["robot", "create", "ci", "--perm", "nosuch=pull"],
    ));
    assert!(err.contains("project nosuch does not exist"), "{err}");
    let v = json_of(&as_admin(&w, &["projects", "--json"]));
    assert!(
        v.as_array().unwrap().iter().all(|p| p["name"] != "nosuch"),
        "{v}"
    );

    let v = json_of(&as_admin(
        &w,
        &["projects", "create", "team", "--quota", "1GiB", "--json"],
    ));
    assert_eq!(
        (v["quota"].as_u64(), v["public"].as_bool()),
        (Some(1 << 30), Some(false)),
        "{v}"
    );
    assert!(failure(&as_admin(&w, &["projects", "create", "team"])).contains("already exists"));
    let v = json_of(&as_admin(
        &w,
        &[
            "projects",
            "set",
            "team",
            "--public",
            "--max-image-size",
            "100MiB",
            "--json",
        ],
    ));
    assert_eq!(
        (v["public"].as_bool(), v["max_image_size"].as_u64()),
        (Some(true), Some(100 << 20)),
        "{v}"
    );
    assert!(failure(&as_admin(&w, &["projects", "set", "team"])).contains("nothing to change"));
    let v = json_of(&as_admin(&w, &["quota", "team", "none", "--json"]));
    assert_eq!(v["quota"], Value::Null);
    let out = stdout(&as_admin(&w, &["projects"]));
    assert!(
        out.lines().next().unwrap().starts_with("PROJECT")
            && out.contains("team")
            && out.contains("public"),
        "{out}"
    );

    // Deleting: only empty projects made through the API.
    push_image(&w, "team/app", "v1", 1);
    assert!(failure(&as_admin(&w, &["projects", "delete", "team"])).contains("still holds images"));
    assert!(failure(&as_admin(&w, &["projects", "delete", "fixed"])).contains("config file"));
    assert!(as_admin(&w, &["projects", "create", "empty"])
        .status
        .success());
    assert!(as_admin(&w, &["projects", "delete", "empty"])
        .status
        .success());
    let v = json_of(&as_admin(&w, &["projects", "--json"]));
    assert!(
        v.as_array().unwrap().iter().all(|p| p["name"] != "empty"),
        "{v}"
    );

    // An unknown project or remote is an error, not an empty list.
    let err = failure(&as_admin(&w, &["repos", "nosuch"]));
    assert!(err.contains("no project or remote named nosuch"), "{err}");
}

#[test]
fn a_deleted_robots_name_is_reused_and_its_old_credentials_die() {
    let w = start("remotes = []\n[[projects]]\nname = \"team\"\n");
    let old = json_of(&as_admin(
        &w,
        &[
            "robot",
            "create",
            "ci",
            "--perm",
            "team=pull,push",
            "--json",
        ],
    ));
    assert!(
        is_iso8601(&old["created_at"]) && old["expires_at"].is_null(),
        "{old}"
    );
    let old_token = old["token"].as_str().unwrap().to_string();
    // A registry token issued to the old robot.
    let r = http()
        .get(format!(
            "{}/token?service=wharf&scope=repository:team/app:pull",
            w.url()
        ))
        .basic_auth("robot$ci", Some(&old_token))
        .send()
        .unwrap();
    let jwt = r.json::<Value>().unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(as_admin(&w, &["robot", "revoke", "ci"]).status.success());
    assert!(failure(&as_admin(
        &w,
        &["robot", "create", "ci", "--perm", "team=pull"]
    ))
    .contains("exists"));
    let out = stdout(&as_admin(&w, &["robot", "delete", "ci"]));
    assert!(out.contains("can be used again"), "{out}");
    let new = json_of(&as_admin(
        &w,
        &["robot", "create", "ci", "--perm", "team=pull", "--json"],
    ));
    let new_token = new["token"].as_str().unwrap();
    assert_ne!(new_token, old_token);
    let list = json_of(&as_admin(&w, &["robot", "list", "--json"]));
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    // Only the new robot's credentials work.
    let v2 = format!("{}/v2/team/app/tags/list", w.url());
    assert_eq!(
        http()
            .get(&v2)
            .basic_auth("robot$ci", Some(&old_token))
            .send()
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        http().get(&v2).bearer_auth(&jwt).send().unwrap().status(),
        401,
        "a token of the old robot passed for the new one"
    );
    assert_ne!(
        http()
            .get(&v2)
            .basic_auth("robot$ci", Some(new_token))
            .send()
            .unwrap()
            .status(),
        401
    );
    // Config robots are not deleted through the API; unknown ones are 404.
    assert!(failure(&as_admin(&w, &["robot", "delete", "ghost"])).contains("404"));
}

#[test]
fn delete_takes_the_digest_prefixes_the_tables_print() {
    let w = start("remotes = []\n[[projects]]\nname = \"team\"\n");
    // 18 images: after deleting one, two of the other 17 share the first
    // hex digit (pigeonhole).
    let digests: Vec<String> = (0..18)
        .map(|i| push_image(&w, "team/app", &format!("v{i}"), 100 + i).digest)
        .collect();
    let table = stdout(&as_admin(&w, &["artifacts", "team/app"]));
    assert!(table.starts_with("DIGEST"), "{table}");
    let short = &digests[0][..19];
    assert!(
        table.contains(short) && !table.contains(&digests[0]),
        "tables print short digests:\n{table}"
    );
    let arts = json_of(&as_admin(&w, &["artifacts", "team/app", "--json"]));
    assert!(
        arts.as_array()
            .unwrap()
            .iter()
            .all(|a| is_iso8601(&a["pushed_at"])),
        "{arts}"
    );

    let out = stdout(&as_admin(&w, &["delete", &format!("team/app@{short}")]));
    assert!(out.contains(&digests[0]) && out.contains("v0"), "{out}");
    // Ambiguous: the error names the candidates.
    let first = |d: &str| d.as_bytes()[7];
    let (a, b) = (1..18)
        .flat_map(|i| (i + 1..18).map(move |j| (i, j)))
        .find(|&(i, j)| first(&digests[i]) == first(&digests[j]))
        .unwrap();
    let err = failure(&as_admin(
        &w,
        &["delete", &format!("team/app@{}", &digests[a][7..8])],
    ));
    assert!(
        err.contains("ambiguous") && err.contains(&digests[a]) && err.contains(&digests[b]),
        "{err}"
    );
    let err = failure(&as_admin(&w, &["delete", "team/app@sha256:"]));
    assert!(err.contains("give a digest"), "{err}");
    // Without the algorithm, and a prefix that names nothing.
    assert!(
        as_admin(&w, &["delete", &format!("team/app@{}", &digests[a][7..30])])
            .status
            .success()
    );
    assert!(failure(&as_admin(
        &w,
        &["delete", "team/app@ffffffffffffffffffffff"]
    ))
    .contains("no artifact"));
}

#[test]
fn cache_is_listed_pinned_unpinned_and_purged_and_repos_marks_it() {
    let up = FakeUpstream::start();
    let kept = up.add_image("lib/img", "1", 1);
    up.add_image("lib/other", "2", 2);
    let w = start(&format!(
        "{}[[projects]]\nname = \"team\"\n",
        remote_toml("up", &up.url(), None)
    ));
    push_image(&w, "team/app", "v1", 9);

    let v = json_of(&as_admin(&w, &["prefetch", "up/lib/img:1", "--json"]));
    assert_eq!(
        (v["pinned"].as_bool(), v["digest"].as_str()),
        (Some(true), Some(kept.digest.as_str())),
        "{v}"
    );
    assert!(as_admin(&w, &["prefetch", "up/lib/other:2", "--no-pin"])
        .status
        .success());

    let list = json_of(&as_admin(&w, &["cache", "list", "--json"]));
    let pinned: Vec<(String, bool)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["repository"].as_str().unwrap().to_string(),
                i["pinned"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        pinned,
        [
            ("up/lib/img".to_string(), true),
            ("up/lib/other".to_string(), false)
        ]
    );
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|i| is_iso8601(&i["pushed_at"])),
        "{list}"
    );
    let table = stdout(&as_admin(&w, &["cache", "list", "up/lib/img"]));
    assert!(
        table.starts_with("REPOSITORY")
            && table.contains("pinned")
            && !table.contains("up/lib/other"),
        "{table}"
    );

    // repos: pushed and cached, marked; a remote's name lists its cache.
    let repos = json_of(&as_admin(&w, &["repos", "--json"]));
    let kinds: Vec<(String, bool)> = repos
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["cached"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("team/app".to_string(), false),
            ("up/lib/img".to_string(), true),
            ("up/lib/other".to_string(), true)
        ]
    );
    let table = stdout(&as_admin(&w, &["repos"]));
    assert!(
        table.contains("cached") && table.contains("pushed"),
        "{table}"
    );
    assert_eq!(
        json_of(&as_admin(&w, &["repos", "up", "--json"]))
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // A pinned image is not purged until unpinned (by digest prefix).
    assert!(failure(&as_admin(&w, &["cache", "purge", "up/lib/img:1"])).contains("unpin it first"));
    let v = json_of(&as_admin(
        &w,
        &[
            "cache",
            "unpin",
            &format!("up/lib/img@{}", &kept.digest[..15]),
            "--json",
        ],
    ));
    assert_eq!(v["pinned"], false);
    let v = json_of(&as_admin(&w, &["cache", "purge", "up/lib/img:1", "--json"]));
    assert_eq!(v["evicted"].as_array().unwrap().len(), 1, "{v}");
    assert!(
        v["blobs_removed"].as_u64().unwrap() >= 2,
        "layers only it needed go: {v}"
    );
    // Purging a repository spares pinned images.
    assert!(as_admin(&w, &["cache", "pin", "up/lib/other:2"])
        .status
        .success());
    let v = json_of(&as_admin(&w, &["cache", "purge", "up/lib/other", "--json"]));
    assert_eq!(v["evicted"].as_array().unwrap().len(), 0, "{v}");
    assert!(failure(&as_admin(&w, &["cache", "pin", "team/app:v1"]))
        .contains("not a pull-through cache repository"));

    // GC through the running server.
    let v = json_of(&as_admin(
        &w,
        &["gc", "--dry-run", "--grace", "0s", "--json"],
    ));
    assert_eq!(v["dry_run"], true, "{v}");
    assert!(v["blobs_removed"].as_u64().is_some(), "{v}");
    // Robots may not manage the cache.
    let robot = json_of(&as_admin(
        &w,
        &["robot", "create", "reader", "--perm", "team=pull", "--json"],
    ));
    let err = failure(&as_user(
        &w,
        "robot$reader",
        robot["token"].as_str().unwrap(),
        &["cache", "list"],
    ));
    assert!(err.contains("DENIED"), "{err}");
}

fn start_tls(p: &Pki) -> (Wharf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, &p.cert_pem).unwrap();
    std::fs::write(&key, &p.key_pem).unwrap();
    let config = format!(
        "remotes = []\n[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let w = Wharf::start_with(Options {
        config: Some(config),
        ..Options::default()
    });
    (w, dir)
}

#[test]
fn network_and_tls_errors_name_their_cause() {
    let err = failure(&run_at(
        &format!("http://127.0.0.1:{}", free_port()),
        None,
        &["projects"],
    ));
    assert!(
        err.contains("cannot reach") && err.contains("connection refused"),
        "{err}"
    );

    let good = pki("cli");
    let (w, dir) = start_tls(&good);
    let url = format!("https://{}", w.addr);
    let err = failure(&run_at(&url, None, &["projects"]));
    assert!(
        err.contains("unknown authority") && err.contains("--ca-file"),
        "{err}"
    );
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &good.ca_pem).unwrap();
    assert!(
        run_at(&url, None, &["projects", "--ca-file", ca.to_str().unwrap()])
            .status
            .success()
    );
    assert!(run_at(&url, None, &["projects", "--insecure"])
        .status
        .success());

    let other = pki_for("elsewhere", &["registry.example"]);
    let (w2, dir2) = start_tls(&other);
    let ca2 = dir2.path().join("ca.pem");
    std::fs::write(&ca2, &other.ca_pem).unwrap();
    let err = failure(&run_at(
        &format!("https://{}", w2.addr),
        None,
        &["projects", "--ca-file", ca2.to_str().unwrap()],
    ));
    assert!(err.contains("not valid for this host name"), "{err}");
}

#[test]
fn positionals_have_help_and_shells_get_completions() {
    let help = |args: &[&str]| stdout(&run_at("http://127.0.0.1:9", None, args));
    assert!(help(&["delete", "--help"]).contains("unique prefix"));
    assert!(help(&["quota", "--help"]).contains("\"none\""));
    assert!(help(&["cache", "purge", "--help"]).contains("unpinned"));
    assert!(help(&["gc", "--help"]).contains("--offline"));
    for (shell, marker) in [
        ("bash", "_wharf()"),
        ("zsh", "#compdef wharf"),
        ("fish", "complete -c wharf"),
    ] {
        let out = help(&["completion", shell]);
        assert!(
            out.contains(marker) && out.contains("prefetch") && out.contains("cache"),
            "{shell}:\n{out}"
        );
    }
}
