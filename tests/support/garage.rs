//! Garage, the S3-compatible distributed object store, for tests: one node
//! or a cluster of N nodes on 127.0.0.1, each on free ports with its own
//! temporary metadata and data directories, a bucket and a key ready to use.
//!
//! ```ignore
//! let Some(g) = Garage::start(3) else { return }; // prints SKIPPED without garage
//! let s3 = g.s3(0);                               // support::s3::S3 on node 0
//! assert_eq!(s3.put("k", b"v").status, 200);
//! g.stop_node(2);                                 // SIGKILL: a node going away
//! assert_eq!(g.s3(1).get("k").body, b"v");        // quorum 2 of 3 still answers
//! g.restart_node(2);                              // same ports, same data
//! ```
//!
//! Start-up, in order (each wait is bounded and panics with every node's
//! log on failure):
//! 1. write one config per node (`db_engine = "sqlite"`, the cluster's
//!    `replication_factor`, one shared random `rpc_secret`, S3 and admin
//!    API on free ports) and spawn `garage -c <config> server`;
//! 2. wait for each admin API port, read each node's id from
//!    `<metadata_dir>/node_key.pub` (written before the node listens);
//! 3. `garage node connect <id>@<rpc addr>` between every pair of nodes;
//! 4. `garage layout assign -z dc1 -c 1G <ids...>`, `garage layout apply
//!    --version 1`, then wait until every node's admin API reports the
//!    cluster `healthy` with all partitions OK;
//! 5. `garage bucket create`, `garage key create`, `garage bucket allow
//!    --read --write --owner`, then wait until every node lists the
//!    bucket with that key.
//!
//! Every process is killed (and reaped) on drop.
//!
//! The binary is `$GARAGE_BIN`, else `garage` on PATH, else
//! `~/.cargo/bin/garage` (where tests/run.sh installs it). The metadata
//! engine is sqlite unless `GARAGE_TEST_DB_ENGINE` names another (`lmdb`).
//! Set `GARAGE_TEST_LOG` (a `RUST_LOG` filter) for more server logging.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::free_port;
use super::s3::S3;

/// What a test prints (to stderr) when it cannot run for lack of Garage.
pub const SKIP_MESSAGE: &str = "SKIPPED: no garage binary (tests/run.sh installs it)";

/// Region every test cluster announces (`[s3_api] s3_region`).
pub const REGION: &str = "garage";

/// Bucket created at start-up.
pub const BUCKET: &str = "wharf-test";

/// How long one start-up step (a node listening, the cluster becoming
/// healthy) may take before the harness gives up.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the Garage binary is, if anywhere: `$GARAGE_BIN`, `garage` on
/// PATH, or `~/.cargo/bin/garage`.
pub fn garage_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GARAGE_BIN") {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("garage");
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    let p = home.join(".cargo/bin/garage");
    p.is_file().then_some(p)
}

/// Random lowercase hex string of `bytes` random bytes.
fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut b = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// One Garage server process and its files.
pub struct GarageNode {
    child: Option<Child>,
    /// This node's directory: `config.toml`, `meta/`, `data/`, `garage.log`.
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    pub rpc_addr: SocketAddr,
    pub s3_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// Full node id (64 hex chars, the node's public key).
    pub id: String,
}

impl GarageNode {
    /// `http://127.0.0.1:PORT` of this node's S3 API.
    pub fn s3_url(&self) -> String {
        format!("http://{}", self.s3_addr)
    }

    /// `http://127.0.0.1:PORT` of this node's admin API.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin_addr)
    }

    /// Whether the server process is (still) running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Everything the node has logged (stdout and stderr, all its runs).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The server process's id, if it was started and not killed.
    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Resident memory of the server process in KiB (from /proc), if running.
    pub fn rss_kib(&self) -> Option<u64> {
        let pid = self.pid()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    }

    fn spawn(&mut self, bin: &Path) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("garage log file");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&self.config_path)
            .arg("server")
            .env(
                "RUST_LOG",
                std::env::var("GARAGE_TEST_LOG").unwrap_or_else(|_| "garage=info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        self.child = Some(child);
    }

    /// SIGKILL and reap.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for GarageNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running Garage cluster (1 or more nodes) with one bucket and one key
/// allowed to read, write and own it. Killed on drop.
pub struct Garage {
    /// Behind a mutex so `stop_node` / `restart_node` work through `&self`
    /// (tests share the cluster with helper threads).
    nodes: Mutex<Vec<GarageNode>>,
    /// Cached per node (they never change, even across restarts).
    s3_urls: Vec<String>,
    pub replication_factor: usize,
    pub region: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_key: String,
    /// Bearer token of every node's admin API.
    pub admin_token: String,
    /// Wall-clock time `start` took, from spawning to bucket and key ready.
    pub startup: Duration,
    /// `startup` split into its steps (name, time since the previous step).
    pub startup_steps: Vec<(&'static str, Duration)>,
    bin: PathBuf,
    /// Keeps every node's directory alive as long as the cluster.
    _tmp: tempfile::TempDir,
}

impl Garage {
    /// Start `n` nodes with `replication_factor = n` (1 node: factor 1;
    /// 3 nodes: factor 3, so reads and writes need 2 of the 3). `None`, after
    /// printing [`SKIP_MESSAGE`], when there is no garage binary.
    pub fn start(n: usize) -> Option<Garage> {
        Garage::start_with(n, n)
    }

    /// Start `n` nodes with the given replication factor (1, 2, 3... ≤ n).
    pub fn start_with(n: usize, replication_factor: usize) -> Option<Garage> {
        assert!(
            n >= 1 && (1..=n).contains(&replication_factor),
            "{n} nodes, replication {replication_factor}"
        );
        let Some(bin) = garage_bin() else {
            eprintln!("{SKIP_MESSAGE}");
            return None;
        };
        let t0 = Instant::now();
        let tmp = tempfile::Builder::new()
            .prefix("wharf-garage-")
            .tempdir()
            .expect("tempdir");
        let rpc_secret = random_hex(32);
        let admin_token = random_hex(32);
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let dir = tmp.path().join(format!("node{i}"));
            std::fs::create_dir_all(&dir).expect("node dir");
            let addr = |p: u16| -> SocketAddr { format!("127.0.0.1:{p}").parse().unwrap() };
            let node = GarageNode {
                child: None,
                config_path: dir.join("config.toml"),
                log_path: dir.join("garage.log"),
                rpc_addr: addr(free_port()),
                s3_addr: addr(free_port()),
                admin_addr: addr(free_port()),
                id: String::new(),
                dir,
            };
            std::fs::write(
                &node.config_path,
                node_config(&node, replication_factor, &rpc_secret, &admin_token),
            )
            .expect("write garage config");
            nodes.push(node);
        }
        for node in &mut nodes {
            node.spawn(&bin);
        }
        let mut g = Garage {
            s3_urls: nodes.iter().map(GarageNode::s3_url).collect(),
            nodes: Mutex::new(nodes),
            replication_factor,
            region: REGION.to_string(),
            bucket: BUCKET.to_string(),
            access_key_id: String::new(),
            secret_key: String::new(),
            admin_token,
            startup: Duration::ZERO,
            startup_steps: Vec::new(),
            bin,
            _tmp: tmp,
        };
        let mut mark = t0;
        let mut step = |g: &mut Garage, name: &'static str| {
            g.startup_steps.push((name, mark.elapsed()));
            mark = Instant::now();
        };
        step(&mut g, "write configs, spawn");
        for i in 0..n {
            g.wait_listening(i);
            let id = g.read_node_id(i);
            g.nodes.lock().unwrap()[i].id = id;
        }
        step(&mut g, "nodes listening");
        let ids: Vec<String> = g
            .nodes
            .lock()
            .unwrap()
            .iter()
            .map(|n| n.id.clone())
            .collect();
        // Every pair directly (not just node 0 to the others): waiting for
        // the nodes to find each other by gossip costs seconds.
        for i in 0..n {
            for (j, id) in ids.iter().enumerate().skip(i + 1) {
                let peer = format!("{}@{}", id, g.nodes.lock().unwrap()[j].rpc_addr);
                g.cli(i, &["node", "connect", &peer]);
            }
        }
        step(&mut g, "node connect");
        let mut assign = vec!["layout", "assign", "-z", "dc1", "-c", "1G"];
        assign.extend(ids.iter().map(String::as_str));
        g.cli(0, &assign);
        g.cli(0, &["layout", "apply", "--version", "1"]);
        step(&mut g, "layout assign + apply");
        g.wait_healthy();
        step(&mut g, "healthy on every node");

        g.cli(0, &["bucket", "create", BUCKET]);
        let out = g.cli(0, &["key", "create", "wharf-test-key"]);
        g.access_key_id = cli_field(&out, "Key ID:");
        g.secret_key = cli_field(&out, "Secret key:");
        g.cli(
            0,
            &[
                "bucket",
                "allow",
                "--read",
                "--write",
                "--owner",
                BUCKET,
                "--key",
                &g.access_key_id,
            ],
        );
        // The bucket and key are made through node 0 and reach the other
        // nodes a moment later (a wharf started on node 1 at once was
        // refused with 400).
        g.wait_until("the bucket and key on every node", || {
            (0..g.len()).all(|i| g.s3(i).list(&[("max-keys", "1")]).status == 200)
        });
        step(&mut g, "bucket + key");
        g.startup = t0.elapsed();
        Some(g)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.s3_urls.len()
    }

    /// `http://127.0.0.1:PORT` of node `i`'s S3 API.
    pub fn s3_url(&self, i: usize) -> String {
        self.s3_urls[i].clone()
    }

    /// The S3 endpoints of all nodes, in node order.
    pub fn s3_urls(&self) -> Vec<String> {
        self.s3_urls.clone()
    }

    /// A signed S3 client for the test bucket on node `i`.
    pub fn s3(&self, i: usize) -> S3 {
        S3::new(
            &self.s3_urls[i],
            &self.region,
            &self.bucket,
            &self.access_key_id,
            &self.secret_key,
        )
    }

    /// Options for a wharf that stores in this cluster's bucket through
    /// node `i` (`[storage] backend = "s3"`, keys from environment
    /// variables, key prefix `prefix`, multipart parts of `part_size`).
    /// `config` may have its own `[storage]` table.
    pub fn wharf_options(
        &self,
        i: usize,
        prefix: &str,
        part_size: &str,
        config: &str,
    ) -> super::Options {
        let table = format!(
            "[storage.s3]\nbucket = \"{}\"\nprefix = \"{prefix}\"\nregion = \"{}\"\nendpoint = \"{}\"\npart_size = \"{part_size}\"\n\
             credentials = {{ backend = \"env\", username = \"WHARF_TEST_S3_KEY_ID\", password = \"WHARF_TEST_S3_SECRET\" }}\n",
            self.bucket,
            self.region,
            self.s3_url(i)
        );
        super::Options {
            config: Some(with_s3_storage(config, &table)),
            env: vec![
                ("WHARF_TEST_S3_KEY_ID".into(), self.access_key_id.clone()),
                ("WHARF_TEST_S3_SECRET".into(), self.secret_key.clone()),
            ],
            ..Default::default()
        }
    }

    /// Node `i`'s id (64 hex chars).
    pub fn node_id(&self, i: usize) -> String {
        self.nodes.lock().unwrap()[i].id.clone()
    }

    /// Node `i`'s directory (config, metadata, data, log).
    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.nodes.lock().unwrap()[i].dir.clone()
    }

    /// Whether node `i`'s process is running.
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes.lock().unwrap()[i].is_running()
    }

    /// Resident memory of node `i` in KiB, if it is running.
    pub fn rss_kib(&self, i: usize) -> Option<u64> {
        self.nodes.lock().unwrap()[i].rss_kib()
    }

    /// Node `i`'s log.
    pub fn logs(&self, i: usize) -> String {
        self.nodes.lock().unwrap()[i].logs()
    }

    /// Every node's log, each under a header line.
    pub fn all_logs(&self) -> String {
        let nodes = self.nodes.lock().unwrap();
        nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                format!(
                    "----- garage node {i} ({}) -----\n{}",
                    n.log_path.display(),
                    n.logs()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Run `garage -c <node i's config> <args>` (the CLI talks to node `i`
    /// over RPC); returns stdout, panics with stderr and the logs on failure.
    pub fn cli(&self, i: usize, args: &[&str]) -> String {
        let out = self.try_cli(i, args);
        if !out.status.success() {
            panic!(
                "garage {} failed ({}):\nstdout: {}\nstderr: {}\n{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.all_logs()
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Like [`Garage::cli`] but returns the output whatever the status.
    pub fn try_cli(&self, i: usize, args: &[&str]) -> Output {
        let config = self.nodes.lock().unwrap()[i].config_path.clone();
        Command::new(&self.bin)
            .arg("-c")
            .arg(config)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .expect("run garage CLI")
    }

    /// Node `i`'s view of the cluster (`GET /v2/GetClusterHealth` on its
    /// admin API): `status` (`healthy`/`degraded`/`unavailable`),
    /// `connectedNodes`, `storageNodesUp`, `partitionsQuorum`,
    /// `partitionsAllOk`... `None` if the node does not answer.
    pub fn health(&self, i: usize) -> Option<serde_json::Value> {
        let url = format!(
            "{}/v2/GetClusterHealth",
            self.nodes.lock().unwrap()[i].admin_url()
        );
        let r = admin_client()
            .get(url)
            .bearer_auth(&self.admin_token)
            .send()
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().ok()
    }

    /// Wait (bounded) until every running node sees the cluster `healthy`:
    /// connected to all storage nodes, every partition fully available.
    pub fn wait_healthy(&self) {
        let running: Vec<usize> = (0..self.len()).filter(|&i| self.is_running(i)).collect();
        self.wait_until("the cluster to be healthy on every node", || {
            running.iter().all(|&i| {
                self.health(i).is_some_and(|h| {
                    h["status"] == "healthy"
                        && h["partitionsAllOk"] == h["partitions"]
                        && h["partitions"] != 0
                })
            })
        });
    }

    /// SIGKILL node `i` and reap it: a node crashing or vanishing mid-operation.
    /// Its files and ports stay reserved for [`Garage::restart_node`].
    ///
    /// Expect the first request on a surviving node that needs the dead one
    /// to take several seconds (~8.5 s observed): the survivor notices the
    /// broken connection only when it writes to it.
    pub fn stop_node(&self, i: usize) {
        self.nodes.lock().unwrap()[i].kill();
    }

    /// Start node `i` again on the same config, ports and data (after
    /// [`Garage::stop_node`]), reconnect it with every running node (both
    /// ways), and wait until the whole cluster is healthy again.
    ///
    /// (Left alone, the others reconnect to it only after their connection
    /// retry back-off: the cluster stayed `degraded` for 30 s in tests.)
    pub fn restart_node(&self, i: usize) {
        {
            let mut nodes = self.nodes.lock().unwrap();
            nodes[i].kill();
            nodes[i].spawn(&self.bin);
        }
        self.wait_listening(i);
        let peer = |k: usize| {
            let n = &self.nodes.lock().unwrap()[k];
            format!("{}@{}", n.id, n.rpc_addr)
        };
        for j in (0..self.len()).filter(|&j| j != i && self.is_running(j)) {
            self.cli(i, &["node", "connect", &peer(j)]);
            self.cli(j, &["node", "connect", &peer(i)]);
        }
        self.wait_healthy();
    }

    /// Wait until node `i` itself listens on its S3 and admin ports (not
    /// merely something on them: a port can be taken by another test's
    /// server between `free_port` and the node's bind, and the node then
    /// exits); panics with the logs if it exits or the time runs out.
    fn wait_listening(&self, i: usize) {
        let (pid, s3, admin) = {
            let n = &self.nodes.lock().unwrap()[i];
            (n.pid(), n.s3_addr, n.admin_addr)
        };
        let pid = pid.expect("wait_listening on a node that was not started");
        self.wait_until(
            &format!("garage node {i} to listen on {s3} and {admin}"),
            || super::listens_on(pid, s3.port()) && super::listens_on(pid, admin.port()),
        );
    }

    /// Node `i`'s id, from the `node_key.pub` the server writes at start.
    fn read_node_id(&self, i: usize) -> String {
        let path = self.nodes.lock().unwrap()[i].dir.join("meta/node_key.pub");
        let key = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", path.display(), self.all_logs()));
        assert_eq!(
            key.len(),
            32,
            "{} is not a 32-byte public key",
            path.display()
        );
        hex::encode(key)
    }

    /// Poll `f` every 50 ms for up to [`STEP_TIMEOUT`]; panic with every
    /// node's log if it never holds or a node process exits meanwhile
    /// (nodes already stopped by the test are not expected to run).
    fn wait_until(&self, what: &str, mut f: impl FnMut() -> bool) {
        let expected: Vec<bool> = (0..self.len()).map(|i| self.is_running(i)).collect();
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            if f() {
                return;
            }
            for (i, was) in expected.iter().enumerate() {
                if *was && !self.is_running(i) {
                    panic!(
                        "garage node {i} exited while waiting for {what}:\n{}",
                        self.all_logs()
                    );
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {STEP_TIMEOUT:?} waiting for {what}:\n{}",
                    self.all_logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let nodes = self.nodes.get_mut().unwrap_or_else(|e| e.into_inner());
        for n in nodes.iter_mut() {
            n.kill();
        }
    }
}

/// `config` with `backend = "s3"` in its `[storage]` table (added if
/// absent) and the `[storage.s3]` `table` appended.
pub fn with_s3_storage(config: &str, table: &str) -> String {
    let mut out = String::new();
    let mut found = false;
    for line in config.lines() {
        out.push_str(line);
        out.push('\n');
        if line.trim() == "[storage]" {
            out.push_str("backend = \"s3\"\n");
            found = true;
        }
    }
    if !found {
        out.push_str("\n[storage]\nbackend = \"s3\"\n");
    }
    out.push('\n');
    out.push_str(table);
    out
}

/// With `WHARF_TEST_STORAGE=s3`, run a wharf of any test on S3: start a
/// single-node Garage for it (kept in the options, so a restart keeps the
/// bucket) and add the storage settings to its config. Panics when that
/// is asked for without a garage binary.
pub fn storage_from_env(opts: super::Options) -> super::Options {
    let on_s3 = opts.s3.is_some()
        || opts
            .config
            .as_deref()
            .is_some_and(|c| c.contains("backend = \"s3\""));
    if on_s3 || std::env::var("WHARF_TEST_STORAGE").as_deref() != Ok("s3") {
        return opts;
    }
    let g = Garage::start(1)
        .expect("WHARF_TEST_STORAGE=s3 needs a garage binary (tests/run.sh installs it)");
    let mut s3 = g.wharf_options(0, "", "5MiB", opts.config.as_deref().unwrap_or_default());
    s3.env.extend(opts.env);
    super::Options {
        config: s3.config,
        env: s3.env,
        s3: Some(std::sync::Arc::new(g)),
        ..opts
    }
}

/// A short-timeout HTTP client for the admin API.
fn admin_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

/// The value after `label` on its line of CLI output (`Key ID:\tGK...`).
fn cli_field(out: &str, label: &str) -> String {
    out.lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {label:?} in garage output:\n{out}"))
}

/// The TOML configuration of one node.
fn node_config(
    node: &GarageNode,
    replication_factor: usize,
    rpc_secret: &str,
    admin_token: &str,
) -> String {
    format!(
        r#"# generated by wharf's tests/support/garage.rs
metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "{db_engine}"
replication_factor = {replication_factor}

rpc_bind_addr = "{rpc}"
rpc_public_addr = "{rpc}"
rpc_secret = "{rpc_secret}"

[s3_api]
api_bind_addr = "{s3}"
s3_region = "{REGION}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "{admin}"
admin_token = "{admin_token}"
"#,
        db_engine = std::env::var("GARAGE_TEST_DB_ENGINE").unwrap_or_else(|_| "sqlite".into()),
        meta = node.dir.join("meta").display(),
        data = node.dir.join("data").display(),
        rpc = node.rpc_addr,
        s3 = node.s3_addr,
        admin = node.admin_addr,
    )
}
