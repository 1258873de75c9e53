//! Side-by-side benchmark: wharf against the programs it replaces, in one
//! run on one machine, everything on 127.0.0.1.
//!
//! ```text
//! cargo bench --bench compare             # full run (1 GiB layer), ~2-4 min
//! BENCH_QUICK=1 cargo bench --bench compare   # smoke run with small blobs
//! ```
//!
//! Cargo builds the release (`bench` profile) `wharf` binary for this target
//! and hands its path in `CARGO_BIN_EXE_wharf`; the benchmark drives that
//! binary as a separate process, exactly as an operator runs it.
//!
//! References:
//! - Debian's `docker-registry` (CNCF Distribution) as the upstream of the
//!   pull-through cache and as the registry pulled from directly;
//! - nginx (`nginx-light`, `sendfile on`) serving the very blob file wharf
//!   stored, as the physical limit for serving bytes from disk;
//! - `wrk` as the load generator for manifest GETs.
//!
//! The client is a small HTTP/1.1 client written here over `std::net`
//! (1 MiB reads, bodies discarded, byte counts checked), the same for every
//! server, so that the client's own cost is small and identical on both
//! sides. Bytes are verified separately (untimed): the cached blob files are
//! hashed and one warm pull through wharf is hashed end to end.
//!
//! Output: a Markdown table on stdout, also written to
//! `target/bench-report.md`. Every server started here is killed at the end
//! (and on panic, by the guards' `Drop`). All loops are bounded.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");
const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
const NGINX_BIN: &str = "/usr/sbin/nginx";
const REPO: &str = "bench/app";
const REMOTE: &str = "up";
const MIB: u64 = 1024 * 1024;
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
                      application/vnd.docker.distribution.manifest.v2+json, \
                      application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

// ---------------------------------------------------------------------------
// Settings

struct Settings {
    quick: bool,
    /// The big layer (and the 8-client blob).
    big: u64,
    /// The blob fetched by 32 concurrent cold clients.
    mid: u64,
    /// Repetitions of each timed pull (the median is reported).
    runs: usize,
    /// Repetitions of each 8-client run.
    fan_runs: usize,
    wrk_secs: u32,
    clients: usize,
    fan: usize,
}

impl Settings {
    fn from_env() -> Settings {
        let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        if quick {
            Settings {
                quick,
                big: 64 * MIB,
                mid: 16 * MIB,
                runs: 2,
                fan_runs: 1,
                wrk_secs: 2,
                clients: 32,
                fan: 8,
            }
        } else {
            Settings {
                quick,
                big: 1024 * MIB,
                mid: 256 * MIB,
                runs: 3,
                fan_runs: 3,
                wrk_secs: 8,
                clients: 32,
                fan: 8,
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Processes

/// A child process, killed (and reaped) on drop.
struct Proc {
    name: &'static str,
    child: Option<Child>,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command) -> Res<Proc> {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {name} ({cmd:?}): {e}"))?;
        Ok(Proc {
            name,
            child: Some(child),
        })
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Wait until `addr` accepts connections (or the process died).
    fn wait_listening(&mut self, addr: SocketAddr, log: &Path) -> Res<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if let Some(status) = c.try_wait()? {
                    self.child = None;
                    let logs = std::fs::read_to_string(log).unwrap_or_default();
                    return Err(format!("{} exited during start-up ({status}):\n{logs}", self.name).into());
                }
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        Err(format!("{} did not listen on {addr} within 30 s", self.name).into())
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, wait up to 10 s, then SIGKILL. For nginx: its master stops
    /// the workers on SIGTERM, while a SIGKILLed master leaves them running.
    fn terminate(&mut self) {
        let Some(mut c) = self.child.take() else { return };
        let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The binary to drive: cargo's release build, or `WHARF_BIN` (to compare
/// against an older build).
fn wharf_bin() -> String {
    std::env::var("WHARF_BIN").unwrap_or_else(|_| WHARF.to_string())
}

fn free_addr() -> Res<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

fn log_file(p: &Path) -> Res<(File, File)> {
    let f = File::options().create(true).append(true).open(p)?;
    Ok((f.try_clone()?, f))
}

/// Peak resident set (VmHWM) of `pid`, in bytes.
fn vm_hwm(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU time (user + system) `pid` has used, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // Fields after the command name (which may contain spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 12 and 13 here.
    let ticks: f64 = [11usize, 12].iter().filter_map(|&i| f.get(i)?.parse::<f64>().ok()).sum();
    ticks / clock_ticks()
}

fn clock_ticks() -> f64 {
    static T: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *T.get_or_init(|| cmd_out("getconf", &["CLK_TCK"]).parse().unwrap_or(100.0))
}

/// CPU seconds of `pid` and its direct children (nginx's workers).
fn cpu_tree(pid: u32) -> f64 {
    let mut total = cpu_secs(pid);
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else { continue };
            let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            if rest.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
                total += cpu_secs(child);
            }
        }
    }
    total
}

/// Reset the peak RSS of `pid` to its current RSS (`clear_refs` value 5).
fn reset_hwm(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

// ---------------------------------------------------------------------------
// A minimal HTTP/1.1 client

enum Body<'a> {
    None,
    Bytes(&'a [u8]),
    File(&'a Path, u64),
}

struct Head {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

const READ_BUF: usize = 1 << 20;

/// One request on a fresh connection (`Connection: close`); the response
/// body goes to `sink`. Returns the head and the body length.
fn exchange(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Body,
    sink: &mut dyn FnMut(&[u8]),
) -> Res<(Head, u64)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    s.set_write_timeout(Some(Duration::from_secs(120)))?;
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: wharf-bench\r\n");
    for (k, v) in headers {
        let _ = write!(req, "{k}: {v}\r\n");
    }
    match &body {
        Body::None => {}
        Body::Bytes(b) => {
            let _ = write!(req, "Content-Length: {}\r\n", b.len());
        }
        Body::File(_, n) => {
            let _ = write!(req, "Content-Length: {n}\r\n");
        }
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    match body {
        Body::None => {}
        Body::Bytes(b) => s.write_all(b)?,
        Body::File(p, n) => {
            let copied = io::copy(&mut File::open(p)?.take(n), &mut s)?;
            if copied != n {
                return Err(format!("{} is shorter than {n} bytes", p.display()).into());
            }
        }
    }
    let mut r = BufReader::with_capacity(64 * 1024, s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {line:?} from {addr}"))?;
    let mut hs = Vec::new();
    for _ in 0..200 {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err("connection closed in the response head".into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            hs.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let head = Head { status, headers: hs };
    if method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok((head, 0));
    }
    let mut buf = vec![0u8; READ_BUF];
    let mut total = 0u64;
    let chunked = head
        .get("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = u64::from_str_radix(line.trim().split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| format!("bad chunk size line {line:?}"))?;
            if size == 0 {
                // Trailers, then the empty line.
                for _ in 0..100 {
                    line.clear();
                    if r.read_line(&mut line)? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let mut left = size;
            while left > 0 {
                let want = left.min(buf.len() as u64) as usize;
                let n = r.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(format!("body ended inside a chunk after {total} bytes").into());
                }
                sink(&buf[..n]);
                total += n as u64;
                left -= n as u64;
            }
            line.clear();
            r.read_line(&mut line)?;
        }
    } else if let Some(len) = head.get("content-length").and_then(|v| v.parse::<u64>().ok()) {
        let mut left = len;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = r.read(&mut buf[..want])?;
            if n == 0 {
                return Err(format!("body ended after {total} of {len} bytes from {addr}{target}").into());
            }
            sink(&buf[..n]);
            total += n as u64;
            left -= n as u64;
        }
    } else {
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            sink(&buf[..n]);
            total += n as u64;
        }
    }
    Ok((head, total))
}

/// A request whose response body is kept.
fn http(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)], body: Body) -> Res<(Head, Vec<u8>)> {
    let mut out = Vec::new();
    let (h, _) = exchange(addr, method, target, headers, body, &mut |b| out.extend_from_slice(b))?;
    Ok((h, out))
}

/// GET `target`, discarding (or hashing) the body; checks status 200.
/// Returns the body length and, when hashing, its sha256 digest.
fn download(addr: SocketAddr, target: &str, hash: bool) -> Res<(u64, Option<String>)> {
    let mut h = Sha256::new();
    let (head, n) = exchange(addr, "GET", target, &[], Body::None, &mut |b| {
        if hash {
            h.update(b);
        }
    })?;
    if head.status != 200 {
        return Err(format!("GET {addr}{target}: status {}", head.status).into());
    }
    Ok((n, hash.then(|| format!("sha256:{}", hex::encode(h.finalize())))))
}

/// The path-and-query of a `Location` that may be absolute.
fn location_target(loc: &str) -> String {
    match loc.find("://") {
        Some(i) => {
            let rest = &loc[i + 3..];
            rest.find('/').map(|j| rest[j..].to_string()).unwrap_or_else(|| "/".into())
        }
        None => loc.to_string(),
    }
}

// ---------------------------------------------------------------------------
// Generated content

struct BlobFile {
    path: PathBuf,
    size: u64,
    digest: String,
}

/// Incompressible pseudo-random bytes (xorshift64*), cached under
/// `target/bench-data/` so repeated runs do not regenerate a GiB.
fn random_blob(dir: &Path, size: u64, seed: u64) -> Res<BlobFile> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("blob-{size}-{seed}.bin"));
    let sum = dir.join(format!("blob-{size}-{seed}.sha256"));
    if let (Ok(m), Ok(d)) = (std::fs::metadata(&path), std::fs::read_to_string(&sum)) {
        if m.len() == size && d.starts_with("sha256:") {
            return Ok(BlobFile {
                path,
                size,
                digest: d.trim().to_string(),
            });
        }
    }
    let mut f = io::BufWriter::with_capacity(4 << 20, File::create(&path)?);
    let mut h = Sha256::new();
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for c in buf.chunks_exact_mut(8) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            c.copy_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        h.update(&buf[..n]);
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    let digest = format!("sha256:{}", hex::encode(h.finalize()));
    std::fs::write(&sum, &digest)?;
    Ok(BlobFile { path, size, digest })
}

fn small_blob(dir: &Path, name: &str, bytes: &[u8]) -> Res<BlobFile> {
    let path = dir.join(name);
    std::fs::write(&path, bytes)?;
    Ok(BlobFile {
        path,
        size: bytes.len() as u64,
        digest: format!("sha256:{}", hex::encode(Sha256::digest(bytes))),
    })
}

fn sha256_file(p: &Path) -> Res<String> {
    let mut f = File::open(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

// ---------------------------------------------------------------------------
// Distribution

struct Registry {
    proc: Proc,
    addr: SocketAddr,
    access_log: PathBuf,
}

impl Registry {
    fn start(dir: &Path) -> Res<Registry> {
        let addr = free_addr()?;
        let storage = dir.join("storage");
        std::fs::create_dir_all(&storage)?;
        let config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  \
             maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: {addr}\n  secret: wharf-bench-secret\n",
            storage.display()
        );
        let cfg = dir.join("config.yml");
        std::fs::write(&cfg, config)?;
        let access_log = dir.join("access.log");
        let app_log = dir.join("registry.log");
        let out = File::create(&access_log)?;
        let err = File::create(&app_log)?;
        let mut proc = Proc::spawn(
            "docker-registry",
            Command::new(REGISTRY_BIN).arg("serve").arg(&cfg).stdout(out).stderr(err),
        )?;
        proc.wait_listening(addr, &app_log)?;
        Ok(Registry { proc, addr, access_log })
    }

    /// Wait until the access log stops growing (it is written after the
    /// response), bounded to 3 s.
    fn settle(&self) {
        let len = || std::fs::metadata(&self.access_log).map(|m| m.len()).unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut last = len();
        let mut since = Instant::now();
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(25));
            let now = len();
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= Duration::from_millis(200) {
                return;
            }
        }
    }

    /// `GET` requests to exactly `path` logged so far.
    fn gets(&self, path: &str) -> usize {
        self.settle();
        let needle = format!("\"GET {path} ");
        let needle_q = format!("\"GET {path}?");
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&needle) || l.contains(&needle_q))
            .count()
    }

    fn push_blob(&self, b: &BlobFile) -> Res<()> {
        let (h, _) = http(self.addr, "POST", &format!("/v2/{REPO}/blobs/uploads/"), &[], Body::Bytes(b""))?;
        if h.status != 202 {
            return Err(format!("upload start: status {}", h.status).into());
        }
        let loc = location_target(h.get("location").ok_or("upload start: no Location")?);
        let sep = if loc.contains('?') { '&' } else { '?' };
        let target = format!("{loc}{sep}digest={}", b.digest);
        let (h, body) = http(
            self.addr,
            "PUT",
            &target,
            &[("Content-Type", "application/octet-stream")],
            Body::File(&b.path, b.size),
        )?;
        if h.status != 201 {
            return Err(format!("upload of {}: status {}: {}", b.digest, h.status, String::from_utf8_lossy(&body)).into());
        }
        Ok(())
    }

    fn push_manifest(&self, reference: &str, bytes: &[u8]) -> Res<()> {
        let (h, body) = http(
            self.addr,
            "PUT",
            &format!("/v2/{REPO}/manifests/{reference}"),
            &[("Content-Type", OCI_MANIFEST)],
            Body::Bytes(bytes),
        )?;
        if h.status != 201 {
            return Err(format!("manifest PUT: status {}: {}", h.status, String::from_utf8_lossy(&body)).into());
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// wharf and nginx

struct Wharf {
    proc: Proc,
    addr: SocketAddr,
    data: PathBuf,
    log: PathBuf,
}

impl Wharf {
    fn start(dir: &Path, upstream: SocketAddr) -> Res<Wharf> {
        std::fs::create_dir_all(dir)?;
        let addr = free_addr()?;
        let data = dir.join("data");
        let cfg = dir.join("wharf.toml");
        std::fs::write(
            &cfg,
            format!("[log]\nlevel = \"info\"\n\n[[remotes]]\nname = \"{REMOTE}\"\nurl = \"http://{upstream}\"\n"),
        )?;
        let log = dir.join("wharf.log");
        let (out, err) = log_file(&log)?;
        let mut proc = Proc::spawn(
            "wharf",
            Command::new(wharf_bin())
                .arg("serve")
                .arg("--listen")
                .arg(addr.to_string())
                .arg("--data-dir")
                .arg(&data)
                .arg("--config")
                .arg(&cfg)
                .env_remove("WHARF_CONFIG")
                .env_remove("RUST_LOG")
                .stdout(out)
                .stderr(err),
        )?;
        proc.wait_listening(addr, &log)?;
        Ok(Wharf { proc, addr, data, log })
    }

    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.data.join("blobs").join("sha256").join(&hex[..2]).join(hex)
    }
}

struct Nginx {
    proc: Proc,
    addr: SocketAddr,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.proc.terminate();
    }
}

impl Nginx {
    /// nginx with `sendfile on`, serving `root` (no access log).
    fn start(dir: &Path, root: &Path) -> Res<Nginx> {
        std::fs::create_dir_all(dir.join("logs"))?;
        let addr = free_addr()?;
        let user = if is_root() { "user root;\n" } else { "" };
        let conf = format!(
            "{user}daemon off;\nworker_processes auto;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  default_type application/octet-stream;\n  \
             client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             server {{\n    listen {addr};\n    root {root};\n    location / {{ }}\n  }}\n}}\n",
            d = dir.display(),
            root = root.display()
        );
        let cfg = dir.join("nginx.conf");
        std::fs::write(&cfg, conf)?;
        let log = dir.join("logs/stderr.log");
        let (out, err) = log_file(&log)?;
        let mut proc = Proc::spawn(
            "nginx",
            Command::new(NGINX_BIN)
                .arg("-p")
                .arg(dir)
                .arg("-c")
                .arg(&cfg)
                .arg("-e")
                .arg(dir.join("logs/error.log"))
                .stdout(out)
                .stderr(err),
        )?;
        proc.wait_listening(addr, &log)?;
        Ok(Nginx { proc, addr })
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

// ---------------------------------------------------------------------------
// Workloads

/// Pull `repo:reference` from `addr`: the manifest, then every blob in
/// order. Returns (blobs, bytes).
fn pull(addr: SocketAddr, repo: &str, reference: &str, hash: bool) -> Res<(usize, u64)> {
    let (h, body) = http(addr, "GET", &format!("/v2/{repo}/manifests/{reference}"), &[("Accept", ACCEPT)], Body::None)?;
    if h.status != 200 {
        return Err(format!("manifest GET {addr}/v2/{repo}/manifests/{reference}: status {}", h.status).into());
    }
    let m: serde_json::Value = serde_json::from_slice(&body)?;
    let mut digests = vec![m["config"]["digest"].as_str().ok_or("manifest without config")?.to_string()];
    for l in m["layers"].as_array().ok_or("manifest without layers")? {
        digests.push(l["digest"].as_str().ok_or("layer without digest")?.to_string());
    }
    let mut bytes = body.len() as u64;
    for d in &digests {
        let (n, got) = download(addr, &format!("/v2/{repo}/blobs/{d}"), hash)?;
        if let Some(g) = got {
            if &g != d {
                return Err(format!("{addr}: blob {d} arrived with digest {g}").into());
            }
        }
        bytes += n;
    }
    Ok((digests.len(), bytes))
}

fn timed<T>(f: impl FnOnce() -> Res<T>) -> Res<(Duration, T)> {
    let t = Instant::now();
    let v = f()?;
    Ok((t.elapsed(), v))
}

/// `n` clients GET `target` at once (released together by a barrier).
/// Returns the wall time until the last one finished.
fn fan_out(addr: SocketAddr, target: &str, n: usize, want_len: u64) -> Res<Duration> {
    let barrier = Arc::new(Barrier::new(n + 1));
    let mut handles = Vec::new();
    for _ in 0..n {
        let b = barrier.clone();
        let t = target.to_string();
        handles.push(std::thread::spawn(move || -> Result<u64, String> {
            b.wait();
            download(addr, &t, false).map(|(len, _)| len).map_err(|e| e.to_string())
        }));
    }
    barrier.wait();
    let start = Instant::now();
    let mut errors = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok(len)) if len == want_len => {}
            Ok(Ok(len)) => errors.push(format!("short body: {len} of {want_len}")),
            Ok(Err(e)) => errors.push(e),
            Err(_) => errors.push("client thread panicked".into()),
        }
    }
    let took = start.elapsed();
    if !errors.is_empty() {
        return Err(format!("{} of {n} clients failed: {}", errors.len(), errors[0]).into());
    }
    Ok(took)
}

struct WrkResult {
    rps: f64,
    p99: Duration,
    errors: u64,
}

fn wrk(url: &str, secs: u32) -> Res<WrkResult> {
    let out = Command::new("wrk")
        .args(["-t2", "-c32", &format!("-d{secs}s"), "--latency", "-H", &format!("Accept: {ACCEPT}"), url])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running wrk: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        return Err(format!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or_else(|| format!("no Requests/sec in wrk output:\n{text}"))?;
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .and_then(|v| parse_wrk_duration(v.trim()))
        .ok_or_else(|| format!("no 99% latency in wrk output:\n{text}"))?;
    let mut errors = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if let Some(l) = text.lines().find(|l| l.trim().starts_with("Socket errors:")) {
        errors += l
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse::<u64>().ok())
            .sum::<u64>();
    }
    Ok(WrkResult { rps, p99, errors })
}

fn parse_wrk_duration(s: &str) -> Option<Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let v: f64 = num.trim().parse().ok()?;
    let secs = match unit.trim() {
        "us" => v / 1e6,
        "ms" => v / 1e3,
        "s" => v,
        "m" => v * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

fn sync_disks() {
    let _ = Command::new("sync").status();
}

fn cmd_out(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| {
            let s = if o.stdout.is_empty() { o.stderr } else { o.stdout };
            String::from_utf8_lossy(&s).trim().to_string()
        })
        .unwrap_or_else(|_| "?".into())
}

// ---------------------------------------------------------------------------
// The report

struct Row {
    name: String,
    wharf: String,
    reference: String,
    ratio: String,
    target: String,
    pass: Option<bool>,
}

fn row(name: &str, wharf: String, reference: String, ratio: String, target: &str, pass: Option<bool>) -> Row {
    Row {
        name: name.into(),
        wharf,
        reference,
        ratio,
        target: target.into(),
        pass,
    }
}

fn secs(d: f64) -> String {
    format!("{d:.3} s")
}

fn gbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e9
}

fn human(bytes: u64) -> String {
    if bytes >= 1024 * MIB {
        format!("{:.0} GiB", bytes as f64 / (1024.0 * MIB as f64))
    } else {
        format!("{} MiB", bytes / MIB)
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    match run() {
        Ok(()) => {}
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            std::process::exit(1);
        }
    }
}

fn run() -> Res<()> {
    let s = Settings::from_env();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let work = tempfile::Builder::new().prefix("wharf-bench-").tempdir()?;
    let w = work.path();
    let mut notes: Vec<String> = Vec::new();
    eprintln!("wharf binary: {}", wharf_bin());
    eprintln!("work dir: {}", w.display());

    // --- content -------------------------------------------------------
    eprintln!("generating blobs ({} layer, {} blob for 32 clients)...", human(s.big), human(s.mid));
    let data_dir = target_dir.join("bench-data");
    let big = random_blob(&data_dir, s.big, 1)?;
    let mid = random_blob(&data_dir, s.mid, 2)?;
    let small = random_blob(&data_dir, 3 * MIB, 3)?;
    let config = small_blob(
        w,
        "config.json",
        br#"{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#,
    )?;
    let layer = |b: &BlobFile| {
        serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": b.digest, "size": b.size})
    };
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.digest, "size": config.size},
        "layers": [layer(&small), layer(&big)],
    }))?;
    let manifest_digest = format!("sha256:{}", hex::encode(Sha256::digest(&manifest)));
    let image_bytes = config.size + small.size + big.size + manifest.len() as u64;
    let blob_count = 3usize;

    // --- upstream --------------------------------------------------------
    eprintln!("starting Distribution and pushing the image...");
    let registry = Registry::start(&w.join("registry"))?;
    for b in [&config, &small, &big, &mid] {
        registry.push_blob(b)?;
    }
    registry.push_manifest("v1", &manifest)?;
    let up = registry.addr;
    let wharf_repo = format!("{REMOTE}/{REPO}");
    let blob_path = |d: &str| format!("/v2/{REPO}/blobs/{d}");
    let count_blob_gets = || -> usize { [&config, &small, &big].iter().map(|b| registry.gets(&blob_path(&b.digest))).sum() };
    // Warm the upstream's page cache and check the image is complete.
    pull(up, REPO, "v1", true)?;

    // --- 1, 3: cold pull --------------------------------------------------
    let mut direct_times = Vec::new();
    let mut cold_times = Vec::new();
    let mut cold_gets = Vec::new();
    let mut direct_cpu = Vec::new();
    let mut cold_cpu: Vec<(f64, f64)> = Vec::new();
    let mut wharf: Option<Wharf> = None;
    for i in 0..s.runs {
        eprintln!("cold pull {} of {}...", i + 1, s.runs);
        sync_disks();
        let r0 = cpu_secs(registry.proc.pid());
        let (t, _) = timed(|| pull(up, REPO, "v1", false))?;
        direct_times.push(t.as_secs_f64());
        direct_cpu.push(cpu_secs(registry.proc.pid()) - r0);
        if let Some(mut old) = wharf.take() {
            old.proc.stop();
            let _ = std::fs::remove_dir_all(w.join(format!("wharf-{}", i - 1)));
        }
        let fresh = Wharf::start(&w.join(format!("wharf-{i}")), up)?;
        sync_disks();
        let before = count_blob_gets();
        let (w0, r0) = (cpu_secs(fresh.proc.pid()), cpu_secs(registry.proc.pid()));
        let (t, (n, bytes)) = timed(|| pull(fresh.addr, &wharf_repo, "v1", false))?;
        // The commit (fsync, rename) may still run after the last byte.
        std::thread::sleep(Duration::from_millis(300));
        cold_cpu.push((cpu_secs(fresh.proc.pid()) - w0, cpu_secs(registry.proc.pid()) - r0));
        if n != blob_count || bytes != image_bytes {
            return Err(format!("cold pull through wharf: {n} blobs, {bytes} bytes; want {blob_count}, {image_bytes}").into());
        }
        cold_times.push(t.as_secs_f64());
        cold_gets.push(count_blob_gets() - before);
        wharf = Some(fresh);
    }
    let wharf = wharf.ok_or("no wharf")?;
    // Untimed verification: the cached files and a hashed pull.
    for b in [&config, &small, &big] {
        let got = sha256_file(&wharf.blob_file(&b.digest))?;
        if got != b.digest {
            return Err(format!("wharf cached {} with digest {got}", b.digest).into());
        }
    }
    pull(wharf.addr, &wharf_repo, "v1", true)?;
    notes.push("bytes verified: wharf's cached blob files hashed, and one warm pull through wharf hashed end to end".into());

    // --- 2: warm pull -------------------------------------------------------
    let mut warm_direct = Vec::new();
    let mut warm_times = Vec::new();
    let before_warm = count_blob_gets();
    for i in 0..s.runs {
        eprintln!("warm pull {} of {}...", i + 1, s.runs);
        let (t, _) = timed(|| pull(up, REPO, "v1", false))?;
        warm_direct.push(t.as_secs_f64());
        let (t, _) = timed(|| pull(wharf.addr, &wharf_repo, "v1", false))?;
        warm_times.push(t.as_secs_f64());
    }
    let warm_upstream_gets = count_blob_gets() - before_warm - s.runs * blob_count;

    // --- 5, 7: 8 x big blob, wharf vs nginx --------------------------------
    eprintln!("{} concurrent downloads of {}: wharf vs nginx...", s.fan, human(s.big));
    let big_file = wharf.blob_file(&big.digest);
    let nginx_root = big_file.parent().ok_or("blob path")?.to_path_buf();
    let nginx = Nginx::start(&w.join("nginx"), &nginx_root)?;
    let nginx_target = format!("/{}", big.digest.trim_start_matches("sha256:"));
    let wharf_big = format!("/v2/{wharf_repo}/blobs/{}", big.digest);
    let fan_bytes = s.fan as u64 * s.big;
    let mut fan_wharf = Vec::new();
    let mut fan_nginx = Vec::new();
    let hwm_reset = reset_hwm(wharf.proc.pid());
    let (mut fan_cpu_wharf, mut fan_cpu_nginx) = (0.0, 0.0);
    for _ in 0..s.fan_runs {
        let c0 = cpu_tree(nginx.proc.pid());
        fan_nginx.push(gbps(fan_bytes, fan_out(nginx.addr, &nginx_target, s.fan, s.big)?));
        fan_cpu_nginx += cpu_tree(nginx.proc.pid()) - c0;
        let c0 = cpu_secs(wharf.proc.pid());
        fan_wharf.push(gbps(fan_bytes, fan_out(wharf.addr, &wharf_big, s.fan, s.big)?));
        fan_cpu_wharf += cpu_secs(wharf.proc.pid()) - c0;
    }
    let gib_served = (s.fan_runs as u64 * fan_bytes) as f64 / (1024.0 * MIB as f64);
    let hwm_fan = vm_hwm(wharf.proc.pid()).unwrap_or(0);
    drop(nginx);

    // --- 4, 7: 32 concurrent cold GETs of one blob --------------------------
    eprintln!("{} concurrent cold GETs of a {} blob...", s.clients, human(s.mid));
    sync_disks();
    let (direct_one, _) = timed(|| download(up, &blob_path(&mid.digest), false))?;
    let mid_before = registry.gets(&blob_path(&mid.digest));
    let hwm_reset2 = reset_hwm(wharf.proc.pid());
    let fan_cold = fan_out(wharf.addr, &format!("/v2/{wharf_repo}/blobs/{}", mid.digest), s.clients, s.mid)?;
    let hwm_32 = vm_hwm(wharf.proc.pid()).unwrap_or(0);
    let mid_gets = registry.gets(&blob_path(&mid.digest)) - mid_before;
    if sha256_file(&wharf.blob_file(&mid.digest))? != mid.digest {
        return Err("wharf cached the 32-client blob with a wrong digest".into());
    }
    if !(hwm_reset && hwm_reset2) {
        notes.push("could not reset VmHWM (clear_refs): peak RSS figures include earlier phases".into());
    }

    // --- 6: manifest GET by digest with wrk --------------------------------
    eprintln!("manifest GETs by digest with wrk ({} s each)...", s.wrk_secs);
    let wharf_url = format!("http://{}/v2/{wharf_repo}/manifests/{manifest_digest}", wharf.addr);
    let reg_url = format!("http://{up}/v2/{REPO}/manifests/{manifest_digest}");
    // Warm-up, then the measured runs.
    wrk(&wharf_url, 1)?;
    wrk(&reg_url, 1)?;
    let wrk_reg = wrk(&reg_url, s.wrk_secs)?;
    let wrk_wharf = wrk(&wharf_url, s.wrk_secs)?;
    if wrk_reg.errors + wrk_wharf.errors > 0 {
        notes.push(format!(
            "wrk reported errors or non-2xx responses: wharf {}, Distribution {}",
            wrk_wharf.errors, wrk_reg.errors
        ));
    }

    // --- stop everything ------------------------------------------------------
    let wharf_log_lines = std::fs::read_to_string(&wharf.log).map(|l| l.lines().count()).unwrap_or(0);
    let mut wharf = wharf;
    wharf.proc.stop();
    let mut registry = registry;
    registry.proc.stop();

    // --- report ------------------------------------------------------------
    let (cold, direct) = (median(cold_times.clone()), median(direct_times.clone()));
    let (warm, warm_ref) = (median(warm_times.clone()), median(warm_direct.clone()));
    let (fw, fnx) = (median(fan_wharf.clone()), median(fan_nginx.clone()));
    let total_cold_gets: usize = cold_gets.iter().sum();
    let per_pull_ok = cold_gets.iter().all(|&g| g == blob_count);
    let mib = |b: u64| b as f64 / MIB as f64;
    let img = human(s.big);
    let rows = vec![
        row(
            &format!("1. Cold pull, image with a {img} layer (pull-through vs direct)"),
            secs(cold),
            secs(direct),
            format!("{:.3}", cold / direct),
            "≤ 1.05",
            Some(cold / direct <= 1.05),
        ),
        row(
            "2. Warm pull (cached in wharf vs direct)",
            secs(warm),
            secs(warm_ref),
            format!("{:.3}", warm / warm_ref),
            "≤ 0.9",
            Some(warm / warm_ref <= 0.9),
        ),
        row(
            "3. Upstream blob GETs per cold pull",
            format!(
                "{} GETs / {} blobs ({} pulls: {:?}); warm: {warm_upstream_gets}",
                total_cold_gets as f64 / s.runs as f64,
                blob_count,
                s.runs,
                cold_gets
            ),
            format!("{blob_count} (one per blob)"),
            format!("{:.2}", total_cold_gets as f64 / (s.runs * blob_count) as f64),
            "exactly 1 per blob",
            Some(per_pull_ok && warm_upstream_gets == 0),
        ),
        row(
            &format!("4a. {} concurrent cold GETs of one {} blob: upstream GETs", s.clients, human(s.mid)),
            format!("{mid_gets}"),
            "1".into(),
            format!("{mid_gets}"),
            "1 upstream GET",
            Some(mid_gets == 1),
        ),
        row(
            &format!("4b. … wall time, all {} clients vs one direct GET", s.clients),
            secs(fan_cold.as_secs_f64()),
            secs(direct_one.as_secs_f64()),
            format!("{:.2}", fan_cold.as_secs_f64() / direct_one.as_secs_f64()),
            &format!("— ({}× the bytes)", s.clients),
            None,
        ),
        row(
            &format!("5. {} concurrent downloads of a {img} blob, aggregate (wharf vs nginx sendfile)", s.fan),
            format!("{fw:.2} GB/s"),
            format!("{fnx:.2} GB/s"),
            format!("{:.3}", fw / fnx),
            "≥ 0.95",
            Some(fw / fnx >= 0.95),
        ),
        row(
            "6a. Manifest GET by digest, wrk -t2 -c32: requests/s (vs Distribution)",
            format!("{:.0}", wrk_wharf.rps),
            format!("{:.0}", wrk_reg.rps),
            format!("{:.1}×", wrk_wharf.rps / wrk_reg.rps),
            "≥ 10×",
            Some(wrk_wharf.rps / wrk_reg.rps >= 10.0),
        ),
        row(
            "6b. … p99 latency",
            format!("{:.2} ms", wrk_wharf.p99.as_secs_f64() * 1e3),
            format!("{:.2} ms", wrk_reg.p99.as_secs_f64() * 1e3),
            format!("{:.2}", wrk_wharf.p99.as_secs_f64() / wrk_reg.p99.as_secs_f64()),
            "wharf ≤ 5 ms",
            Some(wrk_wharf.p99 <= Duration::from_millis(5)),
        ),
        row(
            &format!("7a. wharf peak RSS (VmHWM) during {}×{img}", s.fan),
            format!("{:.1} MiB", mib(hwm_fan)),
            "—".into(),
            "—".into(),
            "≤ 40 MiB",
            Some(hwm_fan > 0 && hwm_fan <= 40 * MIB),
        ),
        row(
            &format!("7b. wharf peak RSS (VmHWM) during {} cold clients", s.clients),
            format!("{:.1} MiB", mib(hwm_32)),
            "—".into(),
            "—".into(),
            "≤ 40 MiB",
            Some(hwm_32 > 0 && hwm_32 <= 40 * MIB),
        ),
    ];

    let mut md = String::new();
    let _ = writeln!(md, "## wharf benchmark{}\n", if s.quick { " (BENCH_QUICK: small sizes, not a result)" } else { "" });
    let _ = writeln!(md, "- date: {}", cmd_out("date", &["-u", "+%Y-%m-%d %H:%M UTC"]));
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_else(|| "?".into());
    let _ = writeln!(
        md,
        "- machine: {} CPUs (`nproc`), {cpu}, Linux {}",
        cmd_out("nproc", &[]),
        cmd_out("uname", &["-r"])
    );
    let _ = writeln!(
        md,
        "- references: {} (Distribution), {}, {}",
        cmd_out(REGISTRY_BIN, &["--version"]),
        cmd_out(NGINX_BIN, &["-v"]),
        cmd_out("wrk", &["--version"]).lines().next().unwrap_or("wrk").split(" [").next().unwrap_or("wrk")
    );
    let _ = writeln!(
        md,
        "- command: `{}cargo bench --bench compare`; everything on 127.0.0.1; a pull = GET manifest + every blob in order, bodies read and discarded by the same client for both sides; medians of {} runs ({} for row 5)\n",
        if s.quick { "BENCH_QUICK=1 " } else { "" },
        s.runs,
        s.fan_runs
    );
    let _ = writeln!(md, "| Measurement | wharf | reference | ratio | target | result |");
    let _ = writeln!(md, "|---|---:|---:|---:|---|---|");
    for r in &rows {
        let res = match r.pass {
            Some(true) => "PASS",
            Some(false) => "MISS",
            None => "info",
        };
        let _ = writeln!(md, "| {} | {} | {} | {} | {} | {} |", r.name, r.wharf, r.reference, r.ratio, r.target, res);
    }
    let _ = writeln!(md);
    let _ = writeln!(md, "Runs: cold wharf {:?} s, direct {:?} s; warm wharf {:?} s, direct {:?} s; {}× GB/s wharf {:?}, nginx {:?}.",
        round(&cold_times), round(&direct_times), round(&warm_times), round(&warm_direct), s.fan, round(&fan_wharf), round(&fan_nginx));
    let cold_w = median(cold_cpu.iter().map(|c| c.0).collect());
    let cold_r = median(cold_cpu.iter().map(|c| c.1).collect());
    let _ = writeln!(
        md,
        "CPU time per pull (median): cold through wharf: wharf {cold_w:.2} s + Distribution {cold_r:.2} s; direct: Distribution {:.2} s. \
         Serving {}: wharf {:.2} CPU-s/GiB, nginx {:.2} CPU-s/GiB.",
        median(direct_cpu.clone()),
        s.fan,
        fan_cpu_wharf / gib_served,
        fan_cpu_nginx / gib_served
    );
    let cpus: f64 = cmd_out("nproc", &[]).parse().unwrap_or(1.0);
    let _ = writeln!(
        md,
        "Cold-pull floor on this machine: wharf + Distribution need {:.2} CPU-s per pull (the client's reads not counted); \
         spread perfectly over {cpus} CPUs that is at least {:.2} s, i.e. a ratio of at least {:.2} against the direct pull.",
        cold_w + cold_r,
        (cold_w + cold_r) / cpus,
        (cold_w + cold_r) / cpus / direct
    );
    let _ = writeln!(md, "wharf wrote {wharf_log_lines} log lines (level info, one per request).");
    for n in &notes {
        let _ = writeln!(md, "Note: {n}.");
    }
    if std::env::var_os("BENCH_KEEP").is_some() {
        let kept = work.keep();
        eprintln!("kept work dir {} (BENCH_KEEP)", kept.display());
    }
    print!("{md}");
    let _ = std::fs::create_dir_all(&target_dir);
    let report = target_dir.join("bench-report.md");
    std::fs::write(&report, &md)?;
    eprintln!("report written to {}", report.display());
    Ok(())
}

fn round(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| (x * 1000.0).round() / 1000.0).collect()
}
