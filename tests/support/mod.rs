//! Test support: start the real `wharf` binary on a free loopback port with
//! its own data directory, and stop it when the guard drops.
//!
//! Each integration test file does `mod support;` and uses what it needs.
#![allow(dead_code)]

pub mod accounts;
pub mod cli;
pub mod ctr;
pub mod disk;
pub mod docker;
pub mod fake_upstream;
pub mod fill;
pub mod garage;
pub mod image;
pub mod moto;
pub mod pki;
pub mod receiver;
pub mod s3;
pub mod scanner;
pub mod ui;
pub mod upstream;
pub mod webdriver;

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Path of the wharf binary cargo built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wharf"))
}

/// A free TCP port on 127.0.0.1 (bound then released; the OS will not hand
/// it out again immediately).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// Whether process `pid` holds the socket listening on 127.0.0.1:`port`
/// (its inode in `/proc/net/tcp` is one of the process's descriptors).
pub fn listens_on(pid: u32, port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let local = format!("0100007F:{port:04X}");
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() > 9 && f[1] == local && f[3] == "0A")
        .map(|f| format!("socket:[{}]", f[9]))
        .collect();
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .is_ok_and(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
    })
}

/// Poll `f` every 100 ms until it holds; panic naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// Wait up to `timeout` until `child` itself listens on 127.0.0.1:`port`,
/// not merely something: another test's server may have taken the port
/// since [`free_port`], and `child` then exits. `Err` says which happened
/// (exited, with its status, or never listened).
pub fn wait_own_port(child: &mut Child, port: u16, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited during start-up ({status})"));
        }
        if listens_on(child.id(), port) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "did not listen on 127.0.0.1:{port} within {timeout:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(30));
    }
}

/// How to start wharf.
#[derive(Default, Clone)]
pub struct Options {
    /// Config file contents (TOML); `None` runs on the embedded default.
    pub config: Option<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Use this data directory instead of a fresh temporary one (e.g. to
    /// restart on the same store).
    pub data_dir: Option<PathBuf>,
    /// Listen on this port instead of a fresh one.
    pub port: Option<u16>,
    /// Add an admin account (`admin` / `adminpw`) to the config; the
    /// request helpers of this module then send its credentials.
    pub admin: bool,
    /// The Garage this wharf stores in, when the run asked for S3
    /// (`WHARF_TEST_STORAGE=s3`, see [`garage::storage_from_env`]).
    pub s3: Option<std::sync::Arc<garage::Garage>>,
}

/// The admin account of [`Options::admin`].
pub const ADMIN: (&str, &str) = ("admin", "adminpw");

/// Config lines for the admin of [`Options::admin`] (hashed once per test
/// process by the wharf binary).
pub fn admin_config() -> String {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let hash = HASH.get_or_init(|| accounts::hash_password(ADMIN.1));
    format!(
        "\n[[auth.admins]]\nusername = \"{}\"\npassword_hash = \"{hash}\"\n",
        ADMIN.0
    )
}

/// A running wharf process; killed on drop.
pub struct Wharf {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    /// Credentials the request helpers send (see [`Options::admin`]).
    pub creds: Option<(String, String)>,
    /// Keeps the temp dir (data + log) alive as long as the guard.
    pub tmp: std::sync::Arc<tempfile::TempDir>,
    opts: Options,
}

impl Wharf {
    /// Start on the embedded default with a fresh data directory.
    pub fn start() -> Wharf {
        Wharf::start_with(Options::default())
    }

    pub fn start_with(opts: Options) -> Wharf {
        let tmp = std::sync::Arc::new(tempfile::tempdir().expect("tempdir"));
        Wharf::spawn(tmp, opts)
    }

    fn spawn(tmp: std::sync::Arc<tempfile::TempDir>, opts: Options) -> Wharf {
        let opts = garage::storage_from_env(opts);
        // A port from `free_port` can be taken by another test's server
        // (Garage, Distribution) before wharf binds it: then wharf exits
        // with "Address already in use" and it is tried on another port.
        let mut tries = if opts.port.is_some() { 1 } else { 3 };
        loop {
            tries -= 1;
            match Wharf::spawn_once(tmp.clone(), opts.clone()) {
                Ok(w) => return w,
                Err(logs) if tries > 0 && logs.contains("Address already in use") => {
                    eprintln!("wharf's port was taken meanwhile; trying another:\n{logs}");
                }
                Err(logs) => panic!("{logs}"),
            }
        }
    }

    /// Start wharf once; `Err` with what went wrong and its log when it
    /// did not come up.
    fn spawn_once(tmp: std::sync::Arc<tempfile::TempDir>, opts: Options) -> Result<Wharf, String> {
        let data_dir = opts
            .data_dir
            .clone()
            .unwrap_or_else(|| tmp.path().join("data"));
        let port = opts.port.unwrap_or_else(free_port);
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let log_path = tmp
            .path()
            .join(format!("wharf-{port}-{}.log", std::process::id()));
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("log file");
        let mut cmd = Command::new(bin());
        cmd.arg("serve")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data-dir")
            .arg(&data_dir)
            .env_remove("WHARF_CONFIG")
            .env(
                "RUST_LOG",
                std::env::var("WHARF_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let config = match (&opts.config, opts.admin) {
            (c, true) => Some(format!(
                "{}{}",
                c.clone().unwrap_or_default(),
                admin_config()
            )),
            (c, false) => c.clone(),
        };
        if let Some(c) = &config {
            let p = tmp.path().join(format!("config-{port}.toml"));
            std::fs::write(&p, c).expect("write config");
            cmd.arg("--config").arg(p);
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn wharf");
        let mut w = Wharf {
            child: Some(child),
            addr,
            data_dir,
            log_path,
            creds: opts
                .admin
                .then(|| (ADMIN.0.to_string(), ADMIN.1.to_string())),
            tmp,
            opts,
        };
        w.wait_ready()?;
        Ok(w)
    }

    /// Wait until wharf itself listens on its address; `Err` with why
    /// not and its log.
    fn wait_ready(&mut self) -> Result<(), String> {
        let child = self.child.as_mut().ok_or("wharf is not running")?;
        wait_own_port(child, self.addr.port(), Duration::from_secs(20))
            .map_err(|why| format!("wharf {why}:\n{}", self.logs()))
    }

    /// A request to `path` (e.g. `/v2/...`) carrying the guard's
    /// credentials, if any.
    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::blocking::RequestBuilder {
        self.req_url(method, &format!("{}{path}", self.url()))
    }

    /// A request to an absolute URL (e.g. an upload `Location`) carrying
    /// the guard's credentials, if any.
    pub fn req_url(&self, method: reqwest::Method, url: &str) -> reqwest::blocking::RequestBuilder {
        let r = http().request(method, url);
        match &self.creds {
            Some((u, p)) => r.basic_auth(u, Some(p)),
            None => r,
        }
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Whether this wharf stores in S3 (its data directory then holds no
    /// blob files).
    pub fn on_s3(&self) -> bool {
        self.opts.s3.is_some()
            || self
                .opts
                .config
                .as_deref()
                .is_some_and(|c| c.contains("backend = \"s3\""))
    }

    /// Whether the store holds object `key` (a key of `store::layout`,
    /// e.g. `blobs/sha256/ab/ab...`): a file of the data directory, or on
    /// the Garage of `WHARF_TEST_STORAGE=s3` an object of its bucket.
    pub fn stored(&self, key: &str) -> bool {
        match (&self.opts.s3, self.on_s3()) {
            (Some(g), _) => {
                let status = g.s3(0).head(key).status;
                assert!(
                    status == 200 || status == 404,
                    "HEAD {key} on Garage: {status}"
                );
                status == 200
            }
            (None, false) => self.data_dir.join(key).exists(),
            (None, true) => {
                panic!("stored({key}): this wharf's own S3 settings are not known here")
            }
        }
    }

    /// Everything wharf has logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Scrape `/metrics`, check it parses as Prometheus text, and return
    /// series (`name{labels}`) → value.
    pub fn metrics(&self) -> std::collections::HashMap<String, f64> {
        let r = http()
            .get(format!("{}/metrics", self.url()))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        let text = r.text().unwrap();
        wharf::metrics::check_exposition(&text)
            .unwrap_or_else(|e| panic!("not Prometheus text: {e}\n{text}"));
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                l.rsplit_once(' ')
                    .map(|(k, v)| (k.to_string(), v.parse::<f64>().unwrap()))
            })
            .collect()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL, no cleanup: simulates a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for exit; returns whether it exited with status 0.
    pub fn stop(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = c.try_wait() {
                return s.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    /// Start wharf again on the same data directory and port (after
    /// `kill` or `stop`).
    pub fn restart(&mut self) {
        self.kill();
        let mut opts = self.opts.clone();
        opts.data_dir = Some(self.data_dir.clone());
        opts.port = Some(self.addr.port());
        let w = Wharf::spawn(self.tmp.clone(), opts);
        *self = w;
    }
}

impl Drop for Wharf {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether a command exists on PATH.
/// `s` without terminal colour codes (`ESC [ ... m`).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd} >/dev/null 2>&1"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A blocking HTTP client for tests (no proxies, no redirects followed).
pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// sha256 of bytes as `sha256:<hex>`.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    use std::io::Read;
    let mut f = File::open(path).expect("open");
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

// ---------------------------------------------------------------------------
// Helpers for the HTTP conformance suite (tests/api_*.rs).

pub const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MT_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MT_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const MT_DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Deterministic pseudo-random bytes (xorshift64*), different per `seed`.
pub fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Check an OCI error response given its parts: `status`, a JSON
/// content type, and a body `{"errors":[{"code","message","detail"}]}`
/// whose first code is `code`. Returns the parsed body.
pub fn check_oci_error(
    got_status: u16,
    content_type: Option<&str>,
    body: &[u8],
    status: u16,
    code: &str,
) -> serde_json::Value {
    let text = String::from_utf8_lossy(body);
    assert_eq!(
        got_status, status,
        "status (expected {status} {code}); body: {text}"
    );
    let ct = content_type.unwrap_or("");
    assert!(
        ct.starts_with("application/json"),
        "error Content-Type is {ct:?}; body: {text}"
    );
    let v: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {text}"));
    let errs = v["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors array: {text}"));
    assert!(!errs.is_empty(), "empty errors array: {text}");
    for e in errs {
        assert!(e["code"].is_string(), "error without code: {text}");
        assert!(e["message"].is_string(), "error without message: {text}");
        assert!(e.get("detail").is_some(), "error without detail: {text}");
    }
    assert_eq!(errs[0]["code"], code, "error code; body: {text}");
    v
}

/// Assert that `resp` is an OCI error with `status` and `code`.
pub fn assert_oci_error(
    resp: reqwest::blocking::Response,
    status: u16,
    code: &str,
) -> serde_json::Value {
    let got = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.bytes().expect("read error body");
    check_oci_error(got, ct.as_deref(), &body, status, code)
}

/// A header of `resp` as a string (panics if absent).
pub fn header(resp: &reqwest::blocking::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| {
            panic!(
                "response {} has no {name} header: {:?}",
                resp.status(),
                resp.headers()
            )
        })
        .to_str()
        .expect("header is not ASCII")
        .to_string()
}

/// Resolve a `Location` (absolute or relative to the registry) to a URL.
pub fn abs_url(w: &Wharf, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else {
        format!("{}{}", w.url(), location)
    }
}

/// Push `bytes` to `repo` in one monolithic `POST ?digest=`; returns the digest.
pub fn push_blob(w: &Wharf, repo: &str, bytes: &[u8]) -> String {
    let d = sha256(bytes);
    let r = w
        .req(
            reqwest::Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
        )
        .header("content-type", "application/octet-stream")
        .body(bytes.to_vec())
        .send()
        .expect("push blob");
    assert_eq!(
        r.status(),
        201,
        "monolithic push of {d} to {repo}: {:?}",
        r.text()
    );
    d
}

/// `PUT /v2/<repo>/manifests/<reference>` with `media_type` as Content-Type.
pub fn put_manifest(
    w: &Wharf,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) -> reqwest::blocking::Response {
    w.req(
        reqwest::Method::PUT,
        &format!("/v2/{repo}/manifests/{reference}"),
    )
    .header("content-type", media_type)
    .body(body.to_vec())
    .send()
    .expect("put manifest")
}

/// A descriptor JSON value.
pub fn descriptor(media_type: &str, digest: &str, size: usize) -> serde_json::Value {
    serde_json::json!({ "mediaType": media_type, "digest": digest, "size": size })
}

/// Image manifest bytes (pretty-printed, so byte-exactness is visible).
/// `extra` is merged into the top-level object (e.g. `subject`,
/// `artifactType`, `annotations`).
pub fn image_manifest(
    media_type: &str,
    config: serde_json::Value,
    layers: Vec<serde_json::Value>,
    extra: serde_json::Value,
) -> Vec<u8> {
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": config,
        "layers": layers,
    });
    if let (Some(obj), Some(more)) = (m.as_object_mut(), extra.as_object()) {
        for (k, v) in more {
            obj.insert(k.clone(), v.clone());
        }
    }
    serde_json::to_vec_pretty(&m).unwrap()
}

/// What `push_image` pushed.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub digest: String,
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub config: String,
    pub layers: Vec<String>,
}

/// Push a config and two layers (content derived from `seed`) and an OCI
/// image manifest under `reference` (a tag or `"digest"` to push by digest).
pub fn push_image(w: &Wharf, repo: &str, reference: &str, seed: u64) -> Pushed {
    let cfg =
        format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":{seed}}}").into_bytes();
    let l1 = data(seed * 2 + 1, 1000 + seed as usize % 100);
    let l2 = data(seed * 2 + 2, 3000);
    let c = push_blob(w, repo, &cfg);
    let d1 = push_blob(w, repo, &l1);
    let d2 = push_blob(w, repo, &l2);
    let bytes = image_manifest(
        MT_OCI_MANIFEST,
        descriptor(MT_OCI_CONFIG, &c, cfg.len()),
        vec![
            descriptor(MT_OCI_LAYER, &d1, l1.len()),
            descriptor(MT_OCI_LAYER, &d2, l2.len()),
        ],
        serde_json::json!({}),
    );
    let digest = sha256(&bytes);
    let r = if reference == "digest" {
        digest.clone()
    } else {
        reference.to_string()
    };
    let resp = put_manifest(w, repo, &r, MT_OCI_MANIFEST, &bytes);
    assert_eq!(
        resp.status(),
        201,
        "push manifest {repo}:{r}: {:?}",
        resp.text()
    );
    Pushed {
        digest,
        bytes,
        media_type: MT_OCI_MANIFEST.to_string(),
        config: c,
        layers: vec![d1, d2],
    }
}

/// Push an artifact manifest with `subject` to `repo`; returns (digest, bytes).
pub fn push_referrer(
    w: &Wharf,
    repo: &str,
    subject: &Pushed,
    artifact_type: Option<&str>,
    config_mt: &str,
    note: &str,
) -> (String, Vec<u8>) {
    let cfg = b"{}".to_vec();
    let c = push_blob(w, repo, &cfg);
    let mut extra = serde_json::json!({
        "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": subject.bytes.len()},
        "annotations": {"note": note},
    });
    if let Some(t) = artifact_type {
        extra["artifactType"] = serde_json::json!(t);
    }
    let m = image_manifest(
        MT_OCI_MANIFEST,
        descriptor(config_mt, &c, cfg.len()),
        vec![],
        extra,
    );
    let d = sha256(&m);
    let r = put_manifest(w, repo, &d, MT_OCI_MANIFEST, &m);
    assert_eq!(r.status(), 201, "{:?}", r.text());
    assert_eq!(header(&r, "oci-subject"), subject.digest);
    (d, m)
}

/// Config for a pure registry: no remotes, so reads of repositories that
/// were never pushed answer locally (404) instead of going to Docker Hub.
pub const REGISTRY_ONLY_CONFIG: &str = "remotes = []\n";

impl Wharf {
    /// Start as a pure registry (no pull-through remotes).
    pub fn start_registry_only() -> Wharf {
        Wharf::start_with(Options {
            config: Some(REGISTRY_ONLY_CONFIG.to_string()),
            ..Options::default()
        })
    }
}

/// Start a prefetch job for `image` (with the wharf's credentials): the
/// answer must be `202` with a `Location` naming the job; returns the job.
pub fn start_prefetch(w: &Wharf, image: &str, pin: bool) -> serde_json::Value {
    let body = serde_json::json!({ "image": image, "pin": pin }).to_string();
    let r = w
        .req(reqwest::Method::POST, "/api/v1/prefetch")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().unwrap_or_default());
    let location = header(&r, "location");
    let job: serde_json::Value = r.json().unwrap();
    assert_eq!(
        location,
        format!("/api/v1/prefetch/{}", job["id"].as_str().unwrap())
    );
    job
}

/// Read prefetch job `id` back until it is no longer running; returns it.
pub fn wait_prefetch(w: &Wharf, id: &str) -> serde_json::Value {
    let mut job = serde_json::Value::Null;
    wait_until(
        &format!("prefetch job {id} to end"),
        Duration::from_secs(60),
        || {
            let r = w
                .req(reqwest::Method::GET, &format!("/api/v1/prefetch/{id}"))
                .send()
                .unwrap();
            assert_eq!(r.status(), 200);
            job = r.json().unwrap();
            job["state"] != "running"
        },
    );
    job
}

/// Prefetch `image` and wait for the job to end; returns the job.
pub fn prefetch(w: &Wharf, image: &str, pin: bool) -> serde_json::Value {
    let job = start_prefetch(w, image, pin);
    wait_prefetch(w, job["id"].as_str().unwrap())
}
