//! `wharf check-config [--probe]`: the effective settings, the warnings,
//! readable secret references, and (with `--probe`) each remote's answer to
//! wharf's credentials — ok, credentials refused, or unreachable with the
//! cause. Never a secret, never "config OK" before a problem.
mod support;

use std::process::Command;

use support::upstream::{remote_toml_with, Upstream};
use support::*;

/// Run `wharf check-config` on `toml`; (exit code, stdout + stderr).
fn check(toml: &str, extra: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("wharf.toml");
    std::fs::write(&path, toml).unwrap();
    let out = Command::new(bin())
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .args(extra)
        .envs(env.iter().copied())
        .env_remove("WHARF_CONFIG")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    (out.status.code().unwrap_or(-1), text)
}

fn env_creds(remote: &str, url: &str) -> String {
    format!(
        "{}[remotes.credentials]\nsecret = {{ backend = \"env\", username = \"UP_USER\", password = \"UP_PASS\" }}\n",
        remote_toml_with(remote, url, None, "max_retries = 0")
    )
}

#[test]
fn probe_tells_ok_refused_and_unreachable_apart() {
    let mut up = Upstream::htpasswd("puller", "right-password");
    up.start();
    let dead = free_port();
    let toml = format!(
        "{}{}",
        env_creds("corp", &up.url()),
        remote_toml_with(
            "gone",
            &format!("http://127.0.0.1:{dead}"),
            None,
            "max_retries = 0"
        )
    );

    let (code, out) = check(
        &toml,
        &["--probe"],
        &[("UP_USER", "puller"), ("UP_PASS", "right-password")],
    );
    assert_eq!(code, 1, "one remote is unreachable");
    assert!(out.contains("probe: ok (corp answered"), "{out}");
    assert!(
        out.contains("probe: UNREACHABLE: remote gone is unreachable")
            && out.contains("connection refused"),
        "{out}"
    );
    assert!(
        !out.contains("config OK") && out.contains("1 problem(s)"),
        "{out}"
    );

    let (code, out) = check(
        &env_creds("corp", &up.url()),
        &["--probe"],
        &[("UP_USER", "puller"), ("UP_PASS", "wrong-password")],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("probe: CREDENTIALS REFUSED: remote corp refused wharf's credentials")
            && out.contains("check the secret remotes.corp.credentials[0]"),
        "{out}"
    );
    assert!(
        !out.contains("wrong-password") && !out.contains("right-password"),
        "a secret was printed:\n{out}"
    );

    let (code, out) = check(
        &env_creds("corp", &up.url()),
        &["--probe"],
        &[("UP_USER", "puller"), ("UP_PASS", "right-password")],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("config OK (every remote answered)"), "{out}");
}

#[test]
fn without_probe_nothing_claims_a_credential_works() {
    let toml = env_creds("corp", "http://127.0.0.1:9");
    let (code, out) = check(&toml, &[], &[("UP_USER", "u"), ("UP_PASS", "p")]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("readable (basic credentials)") && out.contains("not probed"),
        "{out}"
    );
    assert!(!out.contains("probe:") && !out.contains("works"), "{out}");
    // A reference that cannot be read is a problem, and "config OK" never
    // comes first.
    let (code, out) = check(&toml, &[], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("CANNOT BE READ") && !out.contains("config OK"),
        "{out}"
    );
}

#[test]
fn prints_the_settings_that_matter_and_the_warnings() {
    let toml = "[server]\nlisten = \"0.0.0.0:5000\"\n[[projects]]\nname = \"team\"\nquota = \"10GiB\"\npublic = true\n";
    let (code, out) = check(toml, &[], &[]);
    assert_eq!(code, 0, "{out}");
    for want in [
        "listen      0.0.0.0:5000 (plain HTTP)",
        "mode        registry",
        "auth        open",
        "project     team (public, quota 10 GiB)",
        "docker.io",
        "anyone who reaches it can push",
    ] {
        assert!(out.contains(want), "missing {want:?}:\n{out}");
    }
    let (_, out) = check(
        "[server]\nlisten = \"0.0.0.0:5000\"\nmode = \"mirror\"\n",
        &[],
        &[],
    );
    assert!(
        out.contains("mode        mirror") && !out.contains("warnings"),
        "{out}"
    );
}
