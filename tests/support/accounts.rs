//! Accounts for auth tests: an admin, two robots, projects a, b (private)
//! and p (public), with hashes made by the wharf binary itself.

use std::io::Write;
use std::process::{Command, Stdio};

/// Hash a secret with the wharf binary (`wharf hash-password`).
pub fn hash_password(secret: &str) -> String {
    let mut c = Command::new(super::bin())
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(c.stdin.take().unwrap(), "{secret}").unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

pub fn auth_config() -> String {
    format!(
        r#"
[auth]
[[auth.admins]]
username = "admin"
password_hash = "{}"
[[auth.robots]]
name = "puller"
token_hash = "{}"
permissions = {{ a = ["pull"] }}
[[auth.robots]]
name = "pusher"
token_hash = "{}"
permissions = {{ a = ["push"] }}
[[projects]]
name = "a"
[[projects]]
name = "b"
[[projects]]
name = "p"
public = true
"#,
        hash_password("adminpw"),
        hash_password("pullertok"),
        hash_password("pushertok")
    )
}
