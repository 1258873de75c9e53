//! containerd's `ctr` for client tests: a namespace of the test's own on
//! the running containerd, removed (with its images, content, snapshots and
//! leases) on drop, and the `hosts.toml` files that point containerd at
//! wharf.
//!
//! The socket is `CONTAINERD_ADDRESS`, /run/containerd/containerd.sock or
//! Docker's own /var/run/docker/containerd/containerd.sock. Without ctr or
//! a socket, [`Ctr::connect`] prints a loud `SKIPPED: ...` line and returns
//! `None`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// The snapshotter used to unpack: plain directories, works on any
/// filesystem and needs no mounts.
pub const SNAPSHOTTER: &str = "native";

static NS_SEQ: AtomicUsize = AtomicUsize::new(0);

fn socket() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(a) = std::env::var("CONTAINERD_ADDRESS") {
        candidates.push(a.trim_start_matches("unix://").into());
    }
    candidates.push("/run/containerd/containerd.sock".into());
    candidates.push("/var/run/docker/containerd/containerd.sock".into());
    candidates
        .into_iter()
        .find(|p| std::fs::metadata(p).is_ok())
}

/// `ctr` bound to one containerd socket and one namespace of this test's.
pub struct Ctr {
    address: PathBuf,
    pub ns: String,
    /// Extra environment for every ctr run (e.g. proxy traps).
    pub env: Vec<(String, String)>,
}

impl Ctr {
    /// A fresh namespace `<prefix>-<pid>-<n>`; `None` (after a loud SKIPPED
    /// line) when ctr or containerd is missing.
    pub fn connect(prefix: &str) -> Option<Ctr> {
        if !super::have("ctr") {
            eprintln!("SKIPPED: no containerd (ctr is not installed)");
            return None;
        }
        let Some(address) = socket() else {
            eprintln!("SKIPPED: no containerd (no containerd.sock found)");
            return None;
        };
        let ns = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            NS_SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let c = Ctr {
            address,
            ns,
            env: Vec::new(),
        };
        let out = c.cmd(&["version"]).output().expect("run ctr");
        if !out.status.success() {
            eprintln!(
                "SKIPPED: no containerd (ctr version failed at {}: {})",
                c.address.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(c)
    }

    /// As [`Ctr::connect`], also requiring skopeo (which pushes the
    /// test's images).
    pub fn connect_with_skopeo(prefix: &str) -> Option<Ctr> {
        if !super::have("skopeo") {
            eprintln!("SKIPPED: skopeo is not installed (tests/run.sh installs it)");
            return None;
        }
        Ctr::connect(prefix)
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(&self.address)
            .arg("--namespace")
            .arg(&self.ns)
            .args(args);
        c.env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Run ctr and log the command line, status and duration.
    pub fn output(&self, args: &[&str]) -> Output {
        let start = Instant::now();
        let out = self.cmd(args).output().expect("run ctr");
        eprintln!(
            "ctr -n {} {} -> {} ({:.1?})",
            self.ns,
            args.join(" "),
            out.status,
            start.elapsed()
        );
        out
    }

    /// Run ctr; panic with its output on failure; return stdout.
    pub fn run(&self, args: &[&str]) -> String {
        self.run_or_explain(args, &String::new)
    }

    /// As [`Ctr::run`], adding `context()` (e.g. wharf's log) to the panic.
    pub fn run_or_explain(&self, args: &[&str], context: &dyn Fn() -> String) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "ctr {args:?} failed ({}):\nstdout: {}\nstderr: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            context()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Non-empty trimmed lines of a successful run (panics on failure).
    pub fn list(&self, args: &[&str]) -> Vec<String> {
        non_empty_lines(&self.run(args))
    }

    /// Non-empty trimmed lines of stdout, empty when ctr fails (cleanup).
    fn lines_lenient(&self, args: &[&str]) -> Vec<String> {
        self.cmd(args)
            .output()
            .map(|o| non_empty_lines(&String::from_utf8_lossy(&o.stdout)))
            .unwrap_or_default()
    }

    /// Content digests in the namespace.
    pub fn content(&self) -> Vec<String> {
        self.lines_lenient(&["content", "ls", "-q"])
    }

    /// Remove every image (with synchronous garbage collection), then any
    /// snapshots, content and leases left, so the next pull starts from
    /// nothing.
    pub fn clear(&self) {
        for i in self.lines_lenient(&["images", "ls", "-q"]) {
            let _ = self.cmd(&["images", "rm", "--sync", &i]).output();
        }
        // Snapshots go top-down: parents fail while children exist.
        for _ in 0..10 {
            let snaps = self.lines_lenient(&["snapshots", "--snapshotter", SNAPSHOTTER, "ls"]);
            let keys: Vec<String> = snaps
                .iter()
                .skip(1)
                .filter_map(|l| l.split_whitespace().next().map(str::to_string))
                .collect();
            if keys.is_empty() {
                break;
            }
            for k in keys {
                let _ = self
                    .cmd(&["snapshots", "--snapshotter", SNAPSHOTTER, "rm", &k])
                    .output();
            }
        }
        for d in self.content() {
            let _ = self.cmd(&["content", "rm", &d]).output();
        }
        for l in self.lines_lenient(&["leases", "ls", "-q"]) {
            let _ = self.cmd(&["leases", "rm", &l]).output();
        }
    }
}

impl Drop for Ctr {
    fn drop(&mut self) {
        self.clear();
        let out = Command::new("ctr")
            .arg("--address")
            .arg(&self.address)
            .args(["namespaces", "rm", &self.ns])
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "warning: could not remove ctr namespace {}: {}",
                self.ns,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("warning: could not remove ctr namespace {}: {e}", self.ns),
        }
    }
}

fn non_empty_lines(s: &str) -> Vec<String> {
    s.lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// `<dir>/<registry_host>/hosts.toml`: `mirror` (wharf's base URL) serves
/// `capabilities`; `server` is the registry's own endpoint. `ca` adds a CA
/// file for an HTTPS mirror. Returns `dir` (for `--hosts-dir`).
pub fn write_hosts_toml(
    dir: &Path,
    registry_host: &str,
    server: &str,
    mirror: &str,
    capabilities: &[&str],
    ca: Option<&Path>,
) -> PathBuf {
    let d = dir.join(registry_host);
    std::fs::create_dir_all(&d).unwrap();
    let caps = capabilities
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut text =
        format!("server = \"{server}\"\n\n[host.\"{mirror}\"]\n  capabilities = [{caps}]\n");
    if let Some(ca) = ca {
        text.push_str(&format!("  ca = \"{}\"\n", ca.display()));
    }
    std::fs::write(d.join("hosts.toml"), text).unwrap();
    dir.to_path_buf()
}
