//! Test support: start the real `wharf` binary on a free loopback port with
//! its own data directory, and stop it when the guard drops.
//!
//! Each integration test file does `mod support;` and uses what it needs.
#![allow(dead_code)]

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
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

/// Wait until something accepts connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
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
}

/// A running wharf process; killed on drop.
pub struct Wharf {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
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
        let data_dir = opts.data_dir.clone().unwrap_or_else(|| tmp.path().join("data"));
        let port = opts.port.unwrap_or_else(free_port);
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let log_path = tmp.path().join(format!("wharf-{port}-{}.log", std::process::id()));
        let log = File::options().create(true).append(true).open(&log_path).expect("log file");
        let mut cmd = Command::new(bin());
        cmd.arg("serve")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data-dir")
            .arg(&data_dir)
            .env_remove("WHARF_CONFIG")
            .env("RUST_LOG", std::env::var("WHARF_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(c) = &opts.config {
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
            tmp,
            opts,
        };
        w.wait_ready();
        w
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("wharf exited during start-up ({status}):\n{}", self.logs());
                }
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        panic!("wharf did not start listening on {}:\n{}", self.addr, self.logs());
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything wharf has logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
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
        let Some(mut c) = self.child.take() else { return false };
        let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
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
