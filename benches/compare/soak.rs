//! Phase `soak`: many concurrent clients for a fixed time against the
//! release binary, mixing warm pulls, cold pull-through and pushes, while
//! wharf's resident memory and open file descriptors are sampled from
//! `/proc` every second.
//!
//! - warm pullers: manifest + every blob (digest checked) of images pushed
//!   to wharf and of images already pulled through it;
//! - cold pullers: push a fresh image (a new random layer) to the upstream
//!   Distribution, then pull it through wharf (`up/...`): every pull is a
//!   cache miss;
//! - pushers: push a fresh image to wharf (upload session, monolithic PUT,
//!   manifest PUT).
//!
//! Clients are tokio tasks sharing one reqwest client (one connection per
//! request in flight). Any unexpected status, transport error or digest
//! mismatch is an error; the target is none. Afterwards every connection is
//! closed and the file descriptor count must return to its idle value.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::content::{digest_of, image_manifest, BlobFile, Noise, CONFIG_JSON, OCI_MANIFEST};
use crate::report::{human, Report, MIB};
use crate::servers::{Registry, Wharf, REMOTE};
use crate::sys::{fd_count, vm_hwm, vm_rss};
use crate::{Res, ACCEPT};

/// Images pushed to wharf (and to the upstream, pulled through) before the
/// run, read by the warm pullers.
const WARM_IMAGES: usize = 20;

/// Seconds per window of the RSS series.
const WINDOW: u64 = 10;

/// Counters shared by all clients.
#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    upstream_requests: AtomicU64,
    errors: AtomicU64,
    bytes: AtomicU64,
    warm: AtomicU64,
    cold: AtomicU64,
    pushes: AtomicU64,
    first_errors: Mutex<Vec<String>>,
}

impl Stats {
    fn error(&self, e: String) {
        self.errors.fetch_add(1, Relaxed);
        let mut first = self.first_errors.lock().unwrap_or_else(|p| p.into_inner());
        if first.len() < 10 {
            first.push(e);
        }
    }
}

/// What every client needs.
struct Ctx {
    http: reqwest::Client,
    /// `http://<wharf>`
    wharf: String,
    /// `http://<upstream Distribution>`
    upstream: String,
    stats: Stats,
    deadline: Instant,
}

type Fallible<T> = Result<T, String>;

impl Ctx {
    /// One request to `base`; counts it against wharf or the upstream.
    async fn send(
        &self,
        rb: reqwest::RequestBuilder,
        want: u16,
        what: &str,
    ) -> Fallible<reqwest::Response> {
        let counter = if what.starts_with("upstream") {
            &self.stats.upstream_requests
        } else {
            &self.stats.requests
        };
        counter.fetch_add(1, Relaxed);
        let r = rb.send().await.map_err(|e| format!("{what}: {e}"))?;
        if r.status().as_u16() != want {
            let status = r.status();
            let body: String = r
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect();
            return Err(format!("{what}: status {status} (wanted {want}): {body}"));
        }
        Ok(r)
    }

    /// GET a body whole, checking its digest when given.
    async fn fetch(
        &self,
        url: &str,
        accept: Option<&str>,
        digest: Option<&str>,
        what: &str,
    ) -> Fallible<bytes::Bytes> {
        let mut rb = self.http.get(url);
        if let Some(a) = accept {
            rb = rb.header("accept", a);
        }
        let body = self
            .send(rb, 200, what)
            .await?
            .bytes()
            .await
            .map_err(|e| format!("{what}: body: {e}"))?;
        self.stats.bytes.fetch_add(body.len() as u64, Relaxed);
        if let Some(d) = digest {
            let got = digest_of(&body);
            if got != d {
                return Err(format!("{what}: body is {got}, wanted {d}"));
            }
        }
        Ok(body)
    }

    /// Pull `repo:tag` from wharf: the manifest, then each blob, verified.
    async fn pull(&self, repo: &str, tag: &str) -> Fallible<()> {
        let url = format!("{}/v2/{repo}/manifests/{tag}", self.wharf);
        let m = self
            .fetch(&url, Some(ACCEPT), None, &format!("manifest {repo}:{tag}"))
            .await?;
        let m: serde_json::Value =
            serde_json::from_slice(&m).map_err(|e| format!("manifest {repo}:{tag}: {e}"))?;
        let layers = m["layers"].as_array().cloned().unwrap_or_default();
        for d in std::iter::once(&m["config"]).chain(layers.iter()) {
            let digest = d["digest"]
                .as_str()
                .ok_or_else(|| format!("manifest {repo}:{tag}: a descriptor without digest"))?;
            let url = format!("{}/v2/{repo}/blobs/{digest}", self.wharf);
            self.fetch(&url, None, Some(digest), &format!("blob {repo}@{digest}"))
                .await?;
        }
        Ok(())
    }

    /// Push one blob to `base` (POST a session, then a monolithic PUT).
    async fn push_blob(&self, base: &str, repo: &str, bytes: &[u8], what: &str) -> Fallible<()> {
        let start = self.http.post(format!("{base}/v2/{repo}/blobs/uploads/"));
        let r = self
            .send(start, 202, &format!("{what} upload start"))
            .await?;
        let loc = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| format!("{what}: upload start without Location"))?;
        let mut url = reqwest::Url::parse(base)
            .and_then(|b| b.join(loc))
            .map_err(|e| format!("{what}: Location {loc:?}: {e}"))?;
        url.query_pairs_mut()
            .append_pair("digest", &digest_of(bytes));
        let put = self
            .http
            .put(url)
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec());
        self.send(put, 201, &format!("{what} upload"))
            .await
            .map(drop)
    }

    /// Push an image (config, one layer, manifest) as `repo:tag` to `base`.
    async fn push_image(
        &self,
        base: &str,
        repo: &str,
        tag: &str,
        layer: &[u8],
        what: &str,
    ) -> Fallible<()> {
        self.push_blob(base, repo, CONFIG_JSON, what).await?;
        self.push_blob(base, repo, layer, what).await?;
        let blob = |b: &[u8]| BlobFile {
            path: Default::default(),
            size: b.len() as u64,
            digest: digest_of(b),
        };
        let manifest = image_manifest(&blob(CONFIG_JSON), &[&blob(layer)], None);
        let put = self
            .http
            .put(format!("{base}/v2/{repo}/manifests/{tag}"))
            .header("content-type", OCI_MANIFEST)
            .body(manifest);
        self.send(put, 201, &format!("{what} manifest"))
            .await
            .map(drop)
    }
}

/// The clients of each kind.
struct Mix {
    warm: usize,
    cold: usize,
    push: usize,
}

impl Mix {
    /// 80 % warm pullers, 12 % cold pullers, the rest pushers (8 %: under
    /// the default 50 upload sessions per client address, since every
    /// client here is 127.0.0.1).
    fn of(clients: usize) -> Mix {
        let cold = clients * 12 / 100;
        let push = (clients * 8 / 100).min(45);
        Mix {
            warm: clients - cold - push,
            cold,
            push,
        }
    }
}

/// The warm images: `soak/warm<j>` on wharf and `up/soak/warm<j>` (pulled
/// through once during set-up), layers from 4 KiB to 1 MiB.
fn warm_image(j: usize) -> (String, Vec<u8>) {
    (
        format!("soak/warm{j}"),
        Noise::bytes(1000 + j as u64, 4096 << (j % 9)),
    )
}

async fn warm_client(ctx: Arc<Ctx>, i: usize) {
    let mut k = i;
    while Instant::now() < ctx.deadline {
        let (repo, _) = warm_image(k % WARM_IMAGES);
        let repo = if k.is_multiple_of(2) {
            repo
        } else {
            format!("{REMOTE}/{repo}")
        };
        k += 1;
        tally(&ctx, &ctx.stats.warm, ctx.pull(&repo, "v1").await).await;
    }
}

async fn cold_client(ctx: Arc<Ctx>, i: usize) {
    let repo = format!("soak/cold{i}");
    let mut k = 0u64;
    while Instant::now() < ctx.deadline {
        let layer = Noise::bytes(((i as u64) << 32) | k, 32 * 1024);
        let tag = format!("t{k}");
        k += 1;
        let r = async {
            ctx.push_image(&ctx.upstream, &repo, &tag, &layer, "upstream push")
                .await?;
            ctx.pull(&format!("{REMOTE}/{repo}"), &tag).await
        };
        tally(&ctx, &ctx.stats.cold, r.await).await;
    }
}

async fn push_client(ctx: Arc<Ctx>, i: usize) {
    let repo = format!("soak/push{i}");
    let mut k = 0u64;
    while Instant::now() < ctx.deadline {
        let layer = Noise::bytes(((i as u64 + 1_000_000) << 32) | k, 64 * 1024);
        let r = ctx
            .push_image(&ctx.wharf, &repo, &format!("t{k}"), &layer, "push")
            .await;
        k += 1;
        tally(&ctx, &ctx.stats.pushes, r).await;
    }
}

/// Count a completed operation in `done`, or record the error and back off
/// a little (no hot error loop).
async fn tally(ctx: &Ctx, done: &AtomicU64, r: Fallible<()>) {
    match r {
        Ok(()) => {
            done.fetch_add(1, Relaxed);
        }
        Err(e) => {
            ctx.stats.error(e);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// One sample of wharf's process.
#[derive(Clone, Copy)]
struct Sample {
    at: f64,
    rss: u64,
    fds: usize,
}

/// Sample `pid` every second until `stop`.
fn sampler(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Sample>> {
    std::thread::spawn(move || {
        let t0 = Instant::now();
        let mut out = Vec::new();
        while !stop.load(Relaxed) {
            out.push(Sample {
                at: t0.elapsed().as_secs_f64(),
                rss: vm_rss(pid).unwrap_or(0),
                fds: fd_count(pid).0,
            });
            std::thread::sleep(Duration::from_secs(1));
        }
        out
    })
}

/// Wait (up to `limit`) until wharf's descriptors are back to `idle`.
fn settle_fds(pid: u32, idle: usize, limit: Duration) -> (usize, f64) {
    let t = Instant::now();
    loop {
        let n = fd_count(pid).0;
        if n <= idle || t.elapsed() >= limit {
            return (n, t.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Set-up: the warm images on wharf and on the upstream, the latter pulled
/// through once.
async fn seed(ctx: &Ctx) -> Fallible<()> {
    for j in 0..WARM_IMAGES {
        let (repo, layer) = warm_image(j);
        ctx.push_image(&ctx.wharf, &repo, "v1", &layer, "seed push")
            .await?;
        ctx.push_image(&ctx.upstream, &repo, "v1", &layer, "upstream seed push")
            .await?;
        ctx.pull(&format!("{REMOTE}/{repo}"), "v1").await?;
    }
    Ok(())
}

pub fn run(s: &crate::Settings, work: &Path, rep: &mut Report) -> Res<()> {
    let (clients, secs) = (s.soak_clients, s.soak_secs);
    let mix = Mix::of(clients);
    eprintln!("[soak] starting Distribution (upstream) and wharf (release build)...");
    let up = Registry::start(&work.join("upstream"), None)?;
    let wharf = Wharf::pull_through(&work.join("wharf"), up.addr)?;
    let pid = wharf.proc.pid();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let mut ctx = Ctx {
        http,
        wharf: format!("http://{}", wharf.addr),
        upstream: format!("http://{}", up.addr),
        stats: Stats::default(),
        deadline: Instant::now(),
    };
    rt.block_on(seed(&ctx))
        .map_err(|e| format!("soak set-up: {e}"))?;
    // Idle: set-up connections closed, nothing in flight, counters reset.
    ctx.http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    ctx.stats = Stats::default();
    std::thread::sleep(Duration::from_secs(2));
    let (fds_idle, sockets_idle) = fd_count(pid);
    let rss_idle = vm_rss(pid).unwrap_or(0);
    eprintln!(
        "[soak] {clients} clients ({} warm, {} cold, {} pushing) for {secs} s; wharf idle: {} RSS, {fds_idle} fds",
        mix.warm,
        mix.cold,
        mix.push,
        human(rss_idle)
    );
    let load_before = crate::loadavg();
    let stop = Arc::new(AtomicBool::new(false));
    let samples = sampler(pid, stop.clone());
    ctx.deadline = Instant::now() + Duration::from_secs(secs);
    let ctx = Arc::new(ctx);
    let t0 = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..mix.warm {
            tasks.push(tokio::spawn(warm_client(ctx.clone(), i)));
        }
        for i in 0..mix.cold {
            tasks.push(tokio::spawn(cold_client(ctx.clone(), i)));
        }
        for i in 0..mix.push {
            tasks.push(tokio::spawn(push_client(ctx.clone(), i)));
        }
        for t in tasks {
            if let Err(e) = t.await {
                ctx.stats.error(format!("client task: {e}"));
            }
        }
    });
    let elapsed = t0.elapsed().as_secs_f64();
    let load_after = crate::loadavg();
    let ctx = Arc::into_inner(ctx).ok_or("a client still holds the context")?;
    drop(ctx.http);
    drop(rt);
    let (fds_after, settle_secs) = settle_fds(pid, fds_idle, Duration::from_secs(150));
    stop.store(true, Relaxed);
    let samples = samples.join().map_err(|_| "sampler panicked")?;
    let figures = Figures {
        clients,
        mix,
        elapsed,
        stats: ctx.stats,
        samples,
        rss_idle,
        rss_after: vm_rss(pid).unwrap_or(0),
        hwm: vm_hwm(pid).unwrap_or(0),
        fds_idle,
        sockets_idle,
        fds_after,
        settle_secs,
        load: (load_before, load_after),
    };
    figures.report(rep);
    drop(wharf);
    drop(up);
    Ok(())
}

/// Everything the run measured.
struct Figures {
    clients: usize,
    mix: Mix,
    elapsed: f64,
    stats: Stats,
    samples: Vec<Sample>,
    rss_idle: u64,
    rss_after: u64,
    hwm: u64,
    fds_idle: usize,
    sockets_idle: usize,
    fds_after: usize,
    settle_secs: f64,
    load: (String, String),
}

impl Figures {
    /// Peak RSS per [`WINDOW`] seconds of the run (the settling after it
    /// excluded).
    fn windows(&self) -> Vec<u64> {
        let n = (self.elapsed / WINDOW as f64).ceil() as usize;
        (0..n)
            .map(|w| {
                let (a, b) = ((w as u64 * WINDOW) as f64, ((w as u64 + 1) * WINDOW) as f64);
                self.samples
                    .iter()
                    .filter(|s| s.at >= a && s.at < b)
                    .map(|s| s.rss)
                    .max()
                    .unwrap_or(0)
            })
            .collect()
    }

    fn report(&self, rep: &mut Report) {
        let st = &self.stats;
        let (req, errors) = (st.requests.load(Relaxed), st.errors.load(Relaxed));
        let windows = self.windows();
        let peak_fds = self
            .samples
            .iter()
            .take_while(|s| s.at <= self.elapsed)
            .map(|s| s.fds)
            .max()
            .unwrap_or(0);
        // Flat: no window after the first 20 s above the early peak by more
        // than a quarter (and 16 MiB of slack for small figures).
        let early = windows.iter().take(2).copied().max().unwrap_or(0);
        let late = windows.iter().skip(2).copied().max().unwrap_or(0);
        let flat = late <= early + early / 4 + 16 * MIB;
        let series: Vec<String> = windows.iter().map(|&b| human(b)).collect();
        let name = format!(
            "S1. Soak: {} clients × {:.0} s (warm pulls, cold pull-through, pushes)",
            self.clients, self.elapsed
        );
        rep.row(
            &name,
            format!("{req} requests, {errors} errors"),
            "—".into(),
            format!("{:.0} req/s", req as f64 / self.elapsed),
            "0 errors",
            Some(errors == 0),
        );
        rep.row(
            "S2. … wharf RSS, peak per 10 s window",
            series.join(", "),
            format!("idle {}", human(self.rss_idle)),
            format!("VmHWM {}", human(self.hwm)),
            "flat",
            Some(flat),
        );
        rep.row(
            "S3. … wharf open file descriptors: idle / peak during / after",
            format!("{} / {peak_fds} / {}", self.fds_idle, self.fds_after),
            format!("{} sockets idle", self.sockets_idle),
            format!("back in {:.1} s", self.settle_secs),
            "after ≤ idle",
            Some(self.fds_after <= self.fds_idle),
        );
        rep.detail(format!(
            "Soak: {} warm, {} cold, {} pushing clients; completed {} warm pulls, {} cold pull-throughs (each a fresh image \
             pushed to the upstream first: {} upstream requests), {} pushes; {} received; wharf RSS idle {}, after {}; \
             load average before {}, after {}.",
            self.mix.warm,
            self.mix.cold,
            self.mix.push,
            st.warm.load(Relaxed),
            st.cold.load(Relaxed),
            st.upstream_requests.load(Relaxed),
            st.pushes.load(Relaxed),
            human(st.bytes.load(Relaxed)),
            human(self.rss_idle),
            human(self.rss_after),
            self.load.0,
            self.load.1
        ));
        let first = st.first_errors.lock().unwrap_or_else(|p| p.into_inner());
        for e in first.iter() {
            rep.detail(format!("Soak error: {e}"));
        }
    }
}
