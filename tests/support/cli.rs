//! Running the `wharf` client subcommands as users do: the real binary,
//! the server and account from the environment (`WHARF_URL`,
//! `WHARF_USER`, `WHARF_PASSWORD`), output captured.

use std::process::{Command, Output};

use serde_json::Value;

/// Run `wharf <args>` against `url`, as `creds` if given.
pub fn run_at(url: &str, creds: Option<(&str, &str)>, args: &[&str]) -> Output {
    let mut c = Command::new(super::bin());
    c.args(args)
        .env("WHARF_URL", url)
        .env_remove("WHARF_USER")
        .env_remove("WHARF_PASSWORD")
        .env_remove("WHARF_CONFIG")
        .env_remove("WHARF_DATA_DIR");
    if let Some((u, p)) = creds {
        c.env("WHARF_USER", u).env("WHARF_PASSWORD", p);
    }
    let out = c.output().unwrap();
    eprintln!(
        "wharf {args:?} -> {}\n{}{}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    out
}

/// Run a client subcommand against `w` as `user`.
pub fn as_user(w: &super::Wharf, user: &str, pass: &str, args: &[&str]) -> Output {
    run_at(&w.url(), Some((user, pass)), args)
}

/// Run a client subcommand against `w` as the admin of `Options::admin`.
pub fn as_admin(w: &super::Wharf, args: &[&str]) -> Output {
    as_user(w, super::ADMIN.0, super::ADMIN.1, args)
}

/// The JSON a successful command printed.
pub fn json_of(o: &Output) -> Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// What a command that must fail printed on stderr.
pub fn failure(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "expected a failure, got:\n{}",
        stdout(o)
    );
    stderr(o)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
