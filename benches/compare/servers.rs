//! The servers a run starts, each on a free port of 127.0.0.1 and stopped
//! when its guard is dropped (at the end of a phase, or on an early return
//! or panic): wharf, Debian's `docker-registry` (CNCF Distribution), nginx.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::http::Endpoint;
use crate::sys::{free_addr, is_root, log_file, Proc};
use crate::Res;

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
pub const NGINX_BIN: &str = "/usr/sbin/nginx";

/// The binary to drive: cargo's release build, or `WHARF_BIN` (to compare
/// against an older build).
pub fn wharf_bin() -> String {
    std::env::var("WHARF_BIN").unwrap_or_else(|_| WHARF.to_string())
}

// ---------------------------------------------------------------------------
// Distribution

/// A Distribution registry: a plain registry, or a pull-through proxy of
/// `remote` (Distribution's `proxy: remoteurl:`).
pub struct Registry {
    pub proc: Proc,
    pub addr: SocketAddr,
    access_log: PathBuf,
}

/// Distribution's S3 driver settings (`storage: s3:`) for one bucket.
pub struct S3Target {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_key: String,
}

impl Registry {
    pub fn start(dir: &Path, proxy_of: Option<SocketAddr>) -> Res<Registry> {
        let storage = dir.join("storage");
        std::fs::create_dir_all(&storage)?;
        let proxy = proxy_of
            .map(|r| format!("proxy:\n  remoteurl: http://{r}\n"))
            .unwrap_or_default();
        let block = format!(
            "storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  \
             maintenance:\n    uploadpurging:\n      enabled: false\n{proxy}",
            storage.display()
        );
        Registry::launch(dir, &block)
    }

    /// Distribution on `s3` with its objects under `root` (a key prefix
    /// starting with `/`). `redirect`: blob GETs answer 307 to a presigned
    /// URL (Distribution's default) instead of streaming through.
    pub fn s3(dir: &Path, s3: &S3Target, root: &str, redirect: bool) -> Res<Registry> {
        let block = format!(
            "storage:\n  s3:\n    accesskey: {}\n    secretkey: {}\n    region: {}\n    regionendpoint: {}\n    \
             bucket: {}\n    secure: false\n    v4auth: true\n    rootdirectory: {root}\n  \
             redirect:\n    disable: {}\n  delete:\n    enabled: true\n  \
             maintenance:\n    uploadpurging:\n      enabled: false\n",
            s3.access_key_id, s3.secret_key, s3.region, s3.endpoint, s3.bucket, !redirect
        );
        Registry::launch(dir, &block)
    }

    /// Start `docker-registry serve` with `storage` (YAML, top level) in
    /// `dir`. `AWS_CA_BUNDLE` is removed from its environment: with it set,
    /// Distribution's AWS SDK refuses to start ("unable to load custom CA
    /// bundle").
    fn launch(dir: &Path, storage: &str) -> Res<Registry> {
        std::fs::create_dir_all(dir)?;
        let addr = free_addr()?;
        let config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n\
             {storage}\
             http:\n  addr: {addr}\n  secret: wharf-bench-secret\n"
        );
        let cfg = dir.join("config.yml");
        std::fs::write(&cfg, config)?;
        let access_log = dir.join("access.log");
        let app_log = dir.join("registry.log");
        let out = File::create(&access_log)?;
        let err = File::create(&app_log)?;
        let mut proc = Proc::spawn(
            "docker-registry",
            Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&cfg)
                .env_remove("AWS_CA_BUNDLE")
                .stdout(out)
                .stderr(err),
        )?;
        proc.wait_listening(addr, &app_log)?;
        Ok(Registry {
            proc,
            addr,
            access_log,
        })
    }

    pub fn endpoint(&self) -> Endpoint {
        Endpoint::open(self.addr)
    }

    /// Wait until the access log stops growing (it is written after the
    /// response), bounded to 3 s.
    fn settle(&self) {
        let len = || {
            std::fs::metadata(&self.access_log)
                .map(|m| m.len())
                .unwrap_or(0)
        };
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
    pub fn gets(&self, path: &str) -> usize {
        self.settle();
        let needle = format!("\"GET {path} ");
        let needle_q = format!("\"GET {path}?");
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&needle) || l.contains(&needle_q))
            .count()
    }
}

// ---------------------------------------------------------------------------
// wharf

pub struct Wharf {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub data: PathBuf,
    pub log: PathBuf,
}

/// The name of the remote wharf's pull-through cache is configured with.
pub const REMOTE: &str = "up";

impl Wharf {
    /// wharf with one remote, `up`, pointing at `upstream`.
    pub fn pull_through(dir: &Path, upstream: SocketAddr) -> Res<Wharf> {
        Wharf::start(
            dir,
            &format!("[log]\nlevel = \"info\"\n\n[[remotes]]\nname = \"{REMOTE}\"\nurl = \"http://{upstream}\"\n"),
        )
    }

    /// wharf as a pure registry (no remotes) with one admin account whose
    /// argon2 hash is `password_hash`.
    pub fn registry_with_admin(dir: &Path, user: &str, password_hash: &str) -> Res<Wharf> {
        Wharf::start(dir, &admin_registry_config(user, password_hash))
    }

    /// Start the binary with `config` (TOML) in `dir`, data in `dir/data`.
    pub fn start(dir: &Path, config: &str) -> Res<Wharf> {
        Wharf::start_env(dir, config, &[])
    }

    /// [`Wharf::start`] with extra environment variables.
    pub fn start_env(dir: &Path, config: &str, env: &[(&str, &str)]) -> Res<Wharf> {
        std::fs::create_dir_all(dir)?;
        let addr = free_addr()?;
        let data = dir.join("data");
        let cfg = dir.join("wharf.toml");
        std::fs::write(&cfg, config)?;
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
                .envs(env.iter().copied())
                .stdout(out)
                .stderr(err),
        )?;
        proc.wait_listening(addr, &log)?;
        Ok(Wharf {
            proc,
            addr,
            data,
            log,
        })
    }

    /// Where wharf keeps a blob (the file nginx serves for comparison).
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.data
            .join("blobs")
            .join("sha256")
            .join(&hex[..2])
            .join(hex)
    }
}

/// The config of a pure registry (no remotes) with one admin account whose
/// argon2 hash is `password_hash`; other tables may be appended.
pub fn admin_registry_config(user: &str, password_hash: &str) -> String {
    format!(
        "remotes = []\n\n[log]\nlevel = \"info\"\n\n[auth]\n[[auth.admins]]\nusername = \"{user}\"\npassword_hash = \"{password_hash}\"\n"
    )
}

/// `wharf hash-password` for `secret` (argon2id PHC string).
pub fn hash_password(secret: &str) -> Res<String> {
    use std::io::Write as _;
    let mut c = Command::new(wharf_bin())
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    writeln!(c.stdin.take().ok_or("no stdin")?, "{secret}")?;
    let out = c.wait_with_output()?;
    if !out.status.success() {
        return Err(format!("wharf hash-password failed: {}", out.status).into());
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

// ---------------------------------------------------------------------------
// nginx

/// nginx serving a directory (with `sendfile on`, or as a static registry);
/// its master is sent SIGTERM on drop so that it stops its workers.
pub struct Nginx {
    pub proc: Proc,
    pub addr: SocketAddr,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.proc.terminate();
    }
}

impl Nginx {
    /// nginx with `sendfile on`, serving `root` (no access log).
    pub fn start(dir: &Path, root: &Path) -> Res<Nginx> {
        Nginx::start_with(
            dir,
            root,
            "sendfile on;\n  tcp_nopush on;",
            "location / { }",
        )
    }

    /// nginx serving `root` as a static, read-only registry: `/v2/`, the
    /// files under `v2/<name>/manifests/` as OCI manifests with the
    /// `Docker-Content-Digest` of `manifest_digest`, and the files under
    /// `v2/<name>/blobs/` with their name as digest. With `sendfile` off,
    /// nginx reads into two 256 KiB buffers and writes from them.
    pub fn registry(dir: &Path, root: &Path, manifest_digest: &str, sendfile: bool) -> Res<Nginx> {
        let io = if sendfile {
            "sendfile on;\n  tcp_nopush on;"
        } else {
            "sendfile off;\n  output_buffers 2 256k;"
        };
        let locations = format!(
            "location = /v2/ {{ default_type application/json; \
             add_header Docker-Distribution-API-Version registry/2.0; try_files /v2/index.json =404; }}\n    \
             location ~ ^/v2/.+/manifests/ {{ default_type application/vnd.oci.image.manifest.v1+json; \
             add_header Docker-Content-Digest {manifest_digest}; }}\n    \
             location ~ ^/v2/.+/blobs/(sha256:[0-9a-f]+)$ {{ default_type application/octet-stream; \
             add_header Docker-Content-Digest $1; }}"
        );
        Nginx::start_with(dir, root, io, &locations)
    }

    /// nginx serving `root` with the `io` directives and `locations`.
    fn start_with(dir: &Path, root: &Path, io: &str, locations: &str) -> Res<Nginx> {
        std::fs::create_dir_all(dir.join("logs"))?;
        let addr = free_addr()?;
        let user = if is_root() { "user root;\n" } else { "" };
        let conf = format!(
            "{user}daemon off;\nworker_processes auto;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  {io}\n  default_type application/octet-stream;\n  \
             client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             server {{\n    listen {addr};\n    root {root};\n    {locations}\n  }}\n}}\n",
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
