//! Docker CLI helpers for tests that drive a real Docker Engine.

use std::process::{Command, Output};
use std::time::Instant;

use super::have;

pub fn docker_cmd(args: &[&str]) -> Command {
    let mut c = Command::new("docker");
    c.args(args)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost");
    c
}

pub fn run(mut c: Command) -> Output {
    let start = Instant::now();
    let out = c.output().expect("run command");
    eprintln!("{c:?} -> {} ({:.1?})", out.status, start.elapsed());
    out
}

/// Run docker; panic with its output on failure.
pub fn docker(args: &[&str]) -> Output {
    docker_or_explain(args, &String::new)
}

/// As [`docker`], adding `context()` (e.g. wharf's log) to the panic.
pub fn docker_or_explain(args: &[&str], context: &dyn Fn() -> String) -> Output {
    let out = run(docker_cmd(args));
    assert!(
        out.status.success(),
        "docker {args:?} failed ({}):\nstdout: {}\nstderr: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        context()
    );
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Whether a Docker engine answers (the server part of `docker version`).
pub fn engine_available() -> bool {
    if !have("docker") {
        eprintln!("SKIPPED: no Docker engine (no docker CLI on PATH)");
        return false;
    }
    let out = run(docker_cmd(&["version", "--format", "{{.Server.Version}}"]));
    if !out.status.success() || stdout(&out).is_empty() {
        eprintln!(
            "SKIPPED: no Docker engine (`docker version` has no server part: {})",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return false;
    }
    eprintln!("Docker engine {}", stdout(&out));
    true
}

/// Removes the named images when dropped (also when the test panics).
pub struct Images(pub Vec<String>);

impl Drop for Images {
    fn drop(&mut self) {
        for i in &self.0 {
            let _ = docker_cmd(&["rmi", "-f", i]).output();
        }
    }
}

pub fn image_id(reference: &str) -> String {
    stdout(&docker(&[
        "image", "inspect", "--format", "{{.Id}}", reference,
    ]))
}

pub fn image_exists(reference: &str) -> bool {
    docker_cmd(&["image", "inspect", reference])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Build `tag` from `context` (a directory with a Dockerfile). The daemon has
/// no images and no registry access, which `FROM scratch` needs neither of.
/// The classic builder is tried first (the CLI may lack buildx), then the
/// default one.
pub fn build(context: &std::path::Path, tag: &str) {
    let ctx = context.to_str().unwrap();
    let mut c = docker_cmd(&["build", "-t", tag, ctx]);
    c.env("DOCKER_BUILDKIT", "0");
    let out = run(c);
    if out.status.success() {
        return;
    }
    eprintln!(
        "classic builder failed, trying the default one:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut c = docker_cmd(&["build", "-t", tag, ctx]);
    c.env("DOCKER_BUILDKIT", "1");
    let out = run(c);
    assert!(
        out.status.success(),
        "docker build failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `docker --config <config_dir> login <host> -u <user> --password-stdin`
/// with `password` on stdin; the output, whatever the outcome.
pub fn login(config_dir: &str, host: &str, user: &str, password: &str) -> Output {
    let mut c = docker_cmd(&[
        "--config",
        config_dir,
        "login",
        host,
        "-u",
        user,
        "--password-stdin",
    ]);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), password.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Build `tag`: a `FROM scratch` image holding one file, `/hello.txt`,
/// whose text names `host`.
pub fn build_hello(host: &str, tag: &str) {
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("hello.txt"), format!("hello from {host}")).unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY hello.txt /hello.txt\n",
    )
    .unwrap();
    build(ctx.path(), tag);
}
