//! Phase `serving`: bytes and manifests the way users fetch them, with
//! separate client processes (skopeo, curl, wrk), side by side with
//! references started in the same run:
//!
//! - U: Distribution holding the image (the upstream, and "direct");
//! - P: Distribution as a pull-through proxy of U (`proxy: remoteurl:`);
//! - W: wharf with remote `up` = U;
//! - nginx (`sendfile on`) serving wharf's own blob file.
//!
//! Cold measurements use a fresh W and a fresh P (new data directories) for
//! every run; warm ones reuse the last of them.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::content::{image_manifest, random_blob, sha256_file, small_blob, BlobFile, CONFIG_JSON};
use crate::http::download;
use crate::report::{gbps, human, median, ratio, round, secs, Report, MIB};
use crate::servers::{Nginx, Registry, Wharf, REMOTE};
use crate::sys::{cpu_secs, cpu_tree, reset_hwm, sync_disks, vm_hwm};
use crate::tools::{curl_fan, pull_dest, skopeo_pull, skopeo_pull_cpu, wrk, Curl};
use crate::{Res, Settings, ACCEPT};

/// The repository on U (and P); on W it is `up/bench/app`.
const REPO: &str = "bench/app";

/// The image and the extra blob, as pushed to U.
struct Image {
    config: BlobFile,
    layers: Vec<BlobFile>,
    manifest: Vec<u8>,
    manifest_digest: String,
    /// The blob fetched cold alone and by 32 clients at once (not a layer).
    mid: BlobFile,
}

impl Image {
    fn big(&self) -> &BlobFile {
        self.layers.last().expect("layers")
    }

    fn blobs(&self) -> impl Iterator<Item = &BlobFile> {
        std::iter::once(&self.config).chain(self.layers.iter())
    }
}

/// The servers of this phase.
struct Sides {
    up: Registry,
    wharf: Wharf,
    proxy: Registry,
}

fn wharf_repo() -> String {
    format!("{REMOTE}/{REPO}")
}

pub fn blob_url(addr: SocketAddr, repo: &str, digest: &str) -> String {
    format!("http://{addr}/v2/{repo}/blobs/{digest}")
}

pub fn run(s: &Settings, work: &Path, data_dir: &Path, rep: &mut Report) -> Res<()> {
    std::fs::create_dir_all(work)?;
    let img = prepare(s, work, data_dir)?;
    eprintln!("[serving] starting Distribution (upstream) and pushing the image...");
    let up = Registry::start(&work.join("upstream"), None)?;
    let ep = up.endpoint();
    for b in img.blobs().chain(std::iter::once(&img.mid)) {
        ep.push_blob(REPO, b)?;
    }
    ep.put_manifest(REPO, "v1", &img.manifest)?;
    // Warm U's page cache and check that skopeo can pull the image.
    skopeo_pull(
        work,
        &format!("{}/{REPO}:v1", up.addr),
        &pull_dest(work, "check"),
    )?;

    let (mut sides, cold) = cold_runs(s, work, up, &img)?;
    cold_rows(s, rep, &img, &cold);
    verify_cache(&sides.wharf, &img)?;
    rep.note("bytes verified: skopeo checks every blob digest; wharf's cached files were hashed after the cold pulls");
    warm_runs(s, work, &sides, &img, rep)?;
    streams(s, work, &sides, &img, rep)?;
    cold_fan(s, work, &sides.up, &img, rep)?;
    manifest_wrk(s, &sides, &img, rep)?;
    let lines = std::fs::read_to_string(&sides.wharf.log)
        .map(|l| l.lines().count())
        .unwrap_or(0);
    rep.detail(format!(
        "wharf (serving phase, last instance) wrote {lines} log lines at level info."
    ));
    sides.wharf.proc.stop();
    sides.proxy.proc.stop();
    sides.up.proc.stop();
    Ok(())
}

/// Generate (or reuse) the blobs: config, 10 MiB, 50 MiB and the big layer,
/// plus the mid-sized blob for the cold GET rows.
fn prepare(s: &Settings, work: &Path, data_dir: &Path) -> Res<Image> {
    eprintln!(
        "[serving] generating blobs (10 MiB + 50 MiB + {} layers, {} blob)...",
        human(s.big),
        human(s.mid)
    );
    let config = small_blob(work, "config.json", CONFIG_JSON)?;
    let layers = vec![
        random_blob(data_dir, 10 * MIB, 10)?,
        random_blob(data_dir, 50 * MIB, 11)?,
        random_blob(data_dir, s.big, 1)?,
    ];
    let mid = random_blob(data_dir, s.mid, 2)?;
    let refs: Vec<&BlobFile> = layers.iter().collect();
    let manifest = image_manifest(&config, &refs, None);
    let manifest_digest = crate::content::digest_of(&manifest);
    Ok(Image {
        config,
        layers,
        manifest,
        manifest_digest,
        mid,
    })
}

// ---------------------------------------------------------------------------
// Cold: fresh wharf and fresh Distribution proxy per run

/// Per-run figures of the cold phase, in seconds.
#[derive(Default)]
struct Cold {
    pull_direct: Vec<f64>,
    pull_wharf: Vec<f64>,
    pull_proxy: Vec<f64>,
    get_direct: Vec<f64>,
    get_wharf: Vec<f64>,
    get_proxy: Vec<f64>,
    /// Upstream GETs of the image's blobs caused by each cold wharf pull.
    upstream_gets: Vec<usize>,
    cpu_wharf: Vec<f64>,
    cpu_up: Vec<f64>,
    /// skopeo's own CPU seconds per cold pull: direct, through wharf.
    cpu_skopeo_direct: Vec<f64>,
    cpu_skopeo_wharf: Vec<f64>,
}

/// `s.runs` cold pulls (skopeo) and cold single-blob GETs (curl) through a
/// fresh wharf and a fresh Distribution proxy each, next to the same from U.
/// Returns the last wharf and proxy (cache filled) for the warm rows.
fn cold_runs(s: &Settings, work: &Path, up: Registry, img: &Image) -> Res<(Sides, Cold)> {
    let mut c = Cold::default();
    let mut last: Option<(Wharf, Registry)> = None;
    let image_gets = |up: &Registry| -> usize {
        img.blobs()
            .map(|b| up.gets(&format!("/v2/{REPO}/blobs/{}", b.digest)))
            .sum()
    };
    let mid_get = Curl::get(&blob_url(up.addr, REPO, &img.mid.digest));
    for i in 0..s.runs {
        eprintln!("[serving] cold run {} of {}...", i + 1, s.runs);
        drop(last.take());
        let _ = std::fs::remove_dir_all(work.join(format!("wharf-cold-{}", i.wrapping_sub(1))));
        let _ = std::fs::remove_dir_all(work.join(format!("proxy-cold-{}", i.wrapping_sub(1))));
        let w = Wharf::pull_through(&work.join(format!("wharf-cold-{i}")), up.addr)?;
        let p = Registry::start(&work.join(format!("proxy-cold-{i}")), Some(up.addr))?;

        sync_disks();
        let (t, cpu) = skopeo_pull_cpu(
            work,
            &format!("{}/{REPO}:v1", up.addr),
            &pull_dest(work, "direct"),
        )?;
        c.pull_direct.push(t.as_secs_f64());
        c.cpu_skopeo_direct.push(cpu);

        sync_disks();
        let before = image_gets(&up);
        let (w0, u0) = (cpu_secs(w.proc.pid()), cpu_secs(up.proc.pid()));
        let (t, cpu) = skopeo_pull_cpu(
            work,
            &format!("{}/{}:v1", w.addr, wharf_repo()),
            &pull_dest(work, "wharf"),
        )?;
        c.pull_wharf.push(t.as_secs_f64());
        c.cpu_skopeo_wharf.push(cpu);
        // The commit (fsync, rename) may still run after the last byte.
        std::thread::sleep(Duration::from_millis(300));
        c.cpu_wharf.push(cpu_secs(w.proc.pid()) - w0);
        c.cpu_up.push(cpu_secs(up.proc.pid()) - u0);
        c.upstream_gets.push(image_gets(&up) - before);

        sync_disks();
        c.pull_proxy.push(
            skopeo_pull(
                work,
                &format!("{}/{REPO}:v1", p.addr),
                &pull_dest(work, "proxy"),
            )?
            .as_secs_f64(),
        );

        sync_disks();
        c.get_direct.push(
            mid_get
                .expect(200, Some(img.mid.size))?
                .time_total
                .as_secs_f64(),
        );
        let wget = Curl::get(&blob_url(w.addr, &wharf_repo(), &img.mid.digest));
        c.get_wharf.push(
            wget.expect(200, Some(img.mid.size))?
                .time_total
                .as_secs_f64(),
        );
        let pget = Curl::get(&blob_url(p.addr, REPO, &img.mid.digest));
        c.get_proxy.push(
            pget.expect(200, Some(img.mid.size))?
                .time_total
                .as_secs_f64(),
        );
        last = Some((w, p));
    }
    let (wharf, proxy) = last.ok_or("no cold run (runs = 0)")?;
    Ok((Sides { up, wharf, proxy }, c))
}

fn cold_rows(s: &Settings, rep: &mut Report, img: &Image, c: &Cold) {
    let (w, d, p) = (
        median(c.pull_wharf.clone()),
        median(c.pull_direct.clone()),
        median(c.pull_proxy.clone()),
    );
    let layers = format!("10 MiB + 50 MiB + {}", human(s.big));
    rep.row(
        &format!("A1. Cold pull [skopeo copy], {layers} layers: wharf pull-through vs direct from upstream"),
        secs(w),
        secs(d),
        ratio(w, d),
        "≤ 1.05",
        Some(w / d <= 1.05),
    );
    rep.row(
        "A1r. … reference: Distribution pull-through proxy vs direct (wharf column: wharf/proxy)",
        format!("{:.3}× proxy", w / p),
        secs(p),
        ratio(p, d),
        "—",
        None,
    );
    let n = img.blobs().count();
    let ok = c.upstream_gets.iter().all(|&g| g == n);
    rep.row(
        "A1c. Upstream blob GETs per cold wharf pull (access log of the upstream)",
        format!("{:?}", c.upstream_gets),
        format!("{n} per pull"),
        "—".into(),
        "exactly 1 per blob",
        Some(ok),
    );
    let (gw, gd, gp) = (
        median(c.get_wharf.clone()),
        median(c.get_direct.clone()),
        median(c.get_proxy.clone()),
    );
    rep.row(
        &format!(
            "A2. One cold {} blob GET [curl]: wharf vs direct from upstream",
            human(s.mid)
        ),
        secs(gw),
        secs(gd),
        ratio(gw, gd),
        "≤ 2.0",
        Some(gw / gd <= 2.0),
    );
    rep.row(
        "A2r. … reference: Distribution pull-through proxy vs direct (wharf column: wharf/proxy)",
        format!("{:.3}× proxy", gw / gp),
        secs(gp),
        ratio(gp, gd),
        "—",
        None,
    );
    rep.detail(format!(
        "Cold runs (s): skopeo pull wharf {:?}, direct {:?}, Distribution proxy {:?}; {} GET wharf {:?}, direct {:?}, proxy {:?}.",
        round(&c.pull_wharf),
        round(&c.pull_direct),
        round(&c.pull_proxy),
        human(s.mid),
        round(&c.get_wharf),
        round(&c.get_direct),
        round(&c.get_proxy)
    ));
    let (cw, cu) = (median(c.cpu_wharf.clone()), median(c.cpu_up.clone()));
    let (sd, sw) = (
        median(c.cpu_skopeo_direct.clone()),
        median(c.cpu_skopeo_wharf.clone()),
    );
    rep.detail(format!(
        "CPU time per cold pull through wharf (median): wharf {cw:.2} s + upstream Distribution {cu:.2} s; skopeo's own {sw:.2} s through wharf, {sd:.2} s direct."
    ));
}

/// The image as files nginx serves as a static registry (see
/// [`Nginx::registry`]): the manifest under its tag and digest, the blobs
/// as symbolic links to the generated files.
fn static_layout(work: &Path, img: &Image) -> Res<std::path::PathBuf> {
    let root = work.join("static");
    let repo = root.join("v2").join(REPO);
    std::fs::create_dir_all(repo.join("manifests"))?;
    std::fs::create_dir_all(repo.join("blobs"))?;
    std::fs::write(root.join("v2/index.json"), "{}")?;
    std::fs::write(repo.join("manifests/v1"), &img.manifest)?;
    std::fs::write(
        repo.join("manifests").join(&img.manifest_digest),
        &img.manifest,
    )?;
    for b in img.blobs() {
        let link = repo.join("blobs").join(&b.digest);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(std::fs::canonicalize(&b.path)?, link)?;
    }
    Ok(root)
}

/// Hash the blob files wharf cached (untimed).
fn verify_cache(w: &Wharf, img: &Image) -> Res<()> {
    for b in img.blobs().chain(std::iter::once(&img.mid)) {
        let got = sha256_file(&w.blob_file(&b.digest))?;
        if got != b.digest {
            return Err(format!("wharf cached {} with digest {got}", b.digest).into());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Warm pulls

fn warm_runs(s: &Settings, work: &Path, sides: &Sides, img: &Image, rep: &mut Report) -> Res<()> {
    let (mut d, mut w, mut p) = (Vec::new(), Vec::new(), Vec::new());
    // The floor: skopeo pulling the same files from nginx, serving them as
    // a static registry with read/write (f) and with sendfile (fs).
    let root = static_layout(work, img)?;
    let ngx = Nginx::registry(&work.join("nginx-rw"), &root, &img.manifest_digest, false)?;
    let ngx_sf = Nginx::registry(&work.join("nginx-sf"), &root, &img.manifest_digest, true)?;
    let (mut f, mut fs) = (Vec::new(), Vec::new());
    // skopeo's own CPU seconds per pull: direct, wharf, floor.
    let (mut cd, mut cw, mut cf) = (Vec::new(), Vec::new(), Vec::new());
    let image_gets = || -> usize {
        img.blobs()
            .map(|b| sides.up.gets(&format!("/v2/{REPO}/blobs/{}", b.digest)))
            .sum()
    };
    let pull = |addr: SocketAddr, repo: &str, label: &str| {
        skopeo_pull_cpu(work, &format!("{addr}/{repo}:v1"), &pull_dest(work, label))
            .map(|(t, cpu)| (t.as_secs_f64(), cpu))
    };
    let mut wharf_upstream_gets = 0;
    for i in 0..s.runs {
        eprintln!("[serving] warm pull {} of {}...", i + 1, s.runs);
        let (t, c) = pull(sides.up.addr, REPO, "direct")?;
        d.push(t);
        cd.push(c);
        let before = image_gets();
        let (t, c) = pull(sides.wharf.addr, &wharf_repo(), "wharf")?;
        w.push(t);
        cw.push(c);
        wharf_upstream_gets += image_gets() - before;
        p.push(pull(sides.proxy.addr, REPO, "proxy")?.0);
        let (t, c) = pull(ngx.addr, REPO, "floor")?;
        f.push(t);
        cf.push(c);
        fs.push(pull(ngx_sf.addr, REPO, "floor-sendfile")?.0);
    }
    drop((ngx, ngx_sf));
    let (mw, md, mp) = (median(w.clone()), median(d.clone()), median(p.clone()));
    rep.row(
        "A3. Warm pull [skopeo copy]: wharf (cached) vs direct from upstream",
        secs(mw),
        secs(md),
        ratio(mw, md),
        "≤ 0.9",
        Some(mw / md <= 0.9),
    );
    rep.row(
        "A3r. … reference: Distribution proxy (cached) vs direct (wharf column: wharf/proxy)",
        format!("{:.3}× proxy", mw / mp),
        secs(mp),
        ratio(mp, md),
        "—",
        None,
    );
    let (mf, mfs) = (median(f.clone()), median(fs.clone()));
    rep.row(
        "A3f. … floor: skopeo from nginx serving the same files as a static registry (read/write, 256 KiB buffers) vs direct (wharf column: wharf/floor)",
        format!("{:.3}× floor", mw / mf),
        secs(mf),
        ratio(mf, md),
        "—",
        None,
    );
    rep.row(
        "A3fs. … the same nginx with `sendfile on` vs direct (wharf column: wharf/this)",
        format!("{:.3}×", mw / mfs),
        secs(mfs),
        ratio(mfs, md),
        "—",
        None,
    );
    rep.detail(format!(
        "Warm runs (s): wharf {:?}, direct {:?}, Distribution proxy {:?}, static nginx read/write {:?}, static nginx sendfile {:?}; upstream blob GETs caused by warm wharf pulls: {wharf_upstream_gets}.",
        round(&w),
        round(&d),
        round(&p),
        round(&f),
        round(&fs)
    ));
    rep.detail(format!(
        "skopeo's own CPU (user + system) per warm pull, median: from wharf {:.2} s, direct {:.2} s, static nginx {:.2} s (2 CPUs: a pull cannot take less wall time than skopeo's CPU / 2).",
        median(cw),
        median(cd),
        median(cf)
    ));
    if wharf_upstream_gets != 0 {
        rep.note(format!(
            "warm pulls through wharf caused {wharf_upstream_gets} upstream blob GETs (expected 0)"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// 1 and 8 streams of the big blob, wharf vs nginx

fn streams(s: &Settings, work: &Path, sides: &Sides, img: &Image, rep: &mut Report) -> Res<()> {
    let big = img.big();
    let file = sides.wharf.blob_file(&big.digest);
    let nginx = Nginx::start(&work.join("nginx"), file.parent().ok_or("blob path")?)?;
    let nginx_url = format!(
        "http://{}/{}",
        nginx.addr,
        big.digest.trim_start_matches("sha256:")
    );
    let wharf_url = blob_url(sides.wharf.addr, &wharf_repo(), &big.digest);
    let size = human(s.big);

    eprintln!("[serving] 1 curl stream of {size}: wharf vs nginx...");
    let (mut one_w, mut one_n) = (Vec::new(), Vec::new());
    for _ in 0..s.runs {
        one_n.push(gbps(
            s.big,
            Curl::get(&nginx_url).expect(200, Some(s.big))?.time_total,
        ));
        one_w.push(gbps(
            s.big,
            Curl::get(&wharf_url).expect(200, Some(s.big))?.time_total,
        ));
    }
    let (w1, n1) = (median(one_w.clone()), median(one_n.clone()));
    rep.row(
        &format!("A4. {size} blob, 1 stream [curl -o /dev/null], warm: wharf vs nginx sendfile, same file"),
        format!("{w1:.2} GB/s"),
        format!("{n1:.2} GB/s"),
        ratio(w1, n1),
        "≥ 0.95",
        Some(w1 / n1 >= 0.95),
    );

    eprintln!(
        "[serving] {} curl processes × {size}: wharf vs nginx...",
        s.fan
    );
    let total = s.fan as u64 * s.big;
    let (mut fan_w, mut fan_n) = (Vec::new(), Vec::new());
    let hwm_ok = reset_hwm(sides.wharf.proc.pid());
    let (mut cpu_w, mut cpu_n) = (0.0, 0.0);
    for _ in 0..s.fan_runs {
        let c0 = cpu_tree(nginx.proc.pid());
        fan_n.push(gbps(total, curl_fan(&nginx_url, s.fan, s.big)?));
        cpu_n += cpu_tree(nginx.proc.pid()) - c0;
        let c0 = cpu_secs(sides.wharf.proc.pid());
        fan_w.push(gbps(total, curl_fan(&wharf_url, s.fan, s.big)?));
        cpu_w += cpu_secs(sides.wharf.proc.pid()) - c0;
    }
    let hwm_fan = vm_hwm(sides.wharf.proc.pid()).unwrap_or(0);
    let (wf, nf) = (median(fan_w.clone()), median(fan_n.clone()));
    rep.row(
        &format!(
            "A5. {size} blob, {} concurrent curl processes, aggregate: wharf vs nginx sendfile",
            s.fan
        ),
        format!("{wf:.2} GB/s"),
        format!("{nf:.2} GB/s"),
        ratio(wf, nf),
        "≥ 0.95",
        Some(wf / nf >= 0.95),
    );

    eprintln!(
        "[serving] {} in-process client threads × {size} (old method)...",
        s.fan
    );
    let (mut old_w, mut old_n) = (Vec::new(), Vec::new());
    let nginx_target = format!("/{}", big.digest.trim_start_matches("sha256:"));
    let wharf_target = format!("/v2/{}/blobs/{}", wharf_repo(), big.digest);
    for _ in 0..s.fan_runs {
        old_n.push(gbps(
            total,
            fan_out(nginx.addr, &nginx_target, s.fan, s.big)?,
        ));
        old_w.push(gbps(
            total,
            fan_out(sides.wharf.addr, &wharf_target, s.fan, s.big)?,
        ));
    }
    drop(nginx);
    let (wo, no) = (median(old_w.clone()), median(old_n.clone()));
    rep.row(
        &format!("A5old. … same, {} threads of the bench's own std::net client (1 MiB reads; the previous method)", s.fan),
        format!("{wo:.2} GB/s"),
        format!("{no:.2} GB/s"),
        ratio(wo, no),
        "— (not how users read)",
        None,
    );

    eprintln!(
        "[serving] {} curl processes × {size} from Distribution (RSS reference)...",
        s.fan
    );
    let up_url = blob_url(sides.up.addr, REPO, &big.digest);
    let up_hwm_ok = reset_hwm(sides.up.proc.pid());
    let up_t = curl_fan(&up_url, s.fan, s.big)?;
    let hwm_up = vm_hwm(sides.up.proc.pid()).unwrap_or(0);
    rep.peak_rss_row(
        &format!("A6. Peak RSS (VmHWM) while serving {}×{size} [curl]: wharf vs Distribution (direct, its own store)", s.fan),
        hwm_fan,
        hwm_up,
        40,
    );
    if !(hwm_ok && up_hwm_ok) {
        rep.note("could not reset VmHWM (clear_refs): a peak RSS figure includes earlier phases");
    }
    let gib = (s.fan_runs as u64 * total) as f64 / (1024.0 * MIB as f64);
    rep.detail(format!(
        "Streams (GB/s): 1 stream wharf {:?}, nginx {:?}; {} curl wharf {:?}, nginx {:?}; {} threads wharf {:?}, nginx {:?}; \
         Distribution {} curl {:.2} GB/s. CPU-s per GiB served by {} curl: wharf {:.2}, nginx {:.2}.",
        round(&one_w),
        round(&one_n),
        s.fan,
        round(&fan_w),
        round(&fan_n),
        s.fan,
        round(&old_w),
        round(&old_n),
        s.fan,
        gbps(total, up_t),
        s.fan,
        cpu_w / gib,
        cpu_n / gib
    ));
    Ok(())
}

/// `n` in-process clients GET `target` at once (released together by a
/// barrier); the previous method, kept for comparison. Returns the wall
/// time until the last one finished.
fn fan_out(addr: SocketAddr, target: &str, n: usize, want_len: u64) -> Res<Duration> {
    let barrier = Arc::new(Barrier::new(n + 1));
    let mut handles = Vec::new();
    for _ in 0..n {
        let b = barrier.clone();
        let t = target.to_string();
        handles.push(std::thread::spawn(move || -> Result<u64, String> {
            b.wait();
            download(addr, &t, false)
                .map(|(len, _)| len)
                .map_err(|e| e.to_string())
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

// ---------------------------------------------------------------------------
// 32 concurrent cold GETs of one blob: a fresh wharf and a fresh proxy

fn cold_fan(s: &Settings, work: &Path, up: &Registry, img: &Image, rep: &mut Report) -> Res<()> {
    let n = s.clients;
    let size = human(s.mid);
    eprintln!("[serving] {n} concurrent cold curl GETs of a {size} blob: wharf, then Distribution proxy...");
    let path = format!("/v2/{REPO}/blobs/{}", img.mid.digest);
    let mut w = Wharf::pull_through(&work.join("wharf-fan"), up.addr)?;
    sync_disks();
    let before = up.gets(&path);
    let hwm_ok = reset_hwm(w.proc.pid());
    let tw = curl_fan(&blob_url(w.addr, &wharf_repo(), &img.mid.digest), n, s.mid)?;
    let hwm_w = vm_hwm(w.proc.pid()).unwrap_or(0);
    let gets_w = up.gets(&path) - before;
    std::thread::sleep(Duration::from_millis(300));
    if sha256_file(&w.blob_file(&img.mid.digest))? != img.mid.digest {
        return Err("wharf cached the 32-client blob with a wrong digest".into());
    }
    w.proc.stop();

    let mut p = Registry::start(&work.join("proxy-fan"), Some(up.addr))?;
    sync_disks();
    let before = up.gets(&path);
    let hwm_ok = hwm_ok & reset_hwm(p.proc.pid());
    let tp = curl_fan(&blob_url(p.addr, REPO, &img.mid.digest), n, s.mid)?;
    let hwm_p = vm_hwm(p.proc.pid()).unwrap_or(0);
    let gets_p = up.gets(&path) - before;
    p.proc.stop();

    rep.peak_rss_row(
        &format!("A7. Peak RSS (VmHWM) during {n} concurrent cold GETs of a {size} blob [curl]: wharf vs Distribution proxy"),
        hwm_w,
        hwm_p,
        40,
    );
    rep.row(
        &format!("A7b. … upstream GETs for the {n} cold clients (wharf vs Distribution proxy)"),
        format!("{gets_w}"),
        format!("{gets_p}"),
        "—".into(),
        "wharf: 1",
        Some(gets_w == 1),
    );
    rep.row(
        &format!(
            "A7c. … wall time until all {n} have the whole blob (wharf vs Distribution proxy)"
        ),
        secs(tw.as_secs_f64()),
        secs(tp.as_secs_f64()),
        ratio(tw.as_secs_f64(), tp.as_secs_f64()),
        "—",
        None,
    );
    if !hwm_ok {
        rep.note("could not reset VmHWM before the cold fan-out: the figure includes start-up");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Manifest GETs with wrk

fn manifest_wrk(s: &Settings, sides: &Sides, img: &Image, rep: &mut Report) -> Res<()> {
    eprintln!(
        "[serving] manifest GETs by digest with wrk -t2 -c16 ({} s each)...",
        s.wrk_secs
    );
    let wharf_url = format!(
        "http://{}/v2/{}/manifests/{}",
        sides.wharf.addr,
        wharf_repo(),
        img.manifest_digest
    );
    let up_url = format!(
        "http://{}/v2/{REPO}/manifests/{}",
        sides.up.addr, img.manifest_digest
    );
    // Warm-up, then the measured runs.
    wrk(&wharf_url, 2, 16, 1, ACCEPT)?;
    wrk(&up_url, 2, 16, 1, ACCEPT)?;
    let r = wrk(&up_url, 2, 16, s.wrk_secs, ACCEPT)?;
    let w = wrk(&wharf_url, 2, 16, s.wrk_secs, ACCEPT)?;
    rep.row(
        "A8a. Manifest GET by digest [wrk -t2 -c16]: requests/s, wharf (cached) vs Distribution",
        format!("{:.0}", w.rps),
        format!("{:.0}", r.rps),
        format!("{:.1}×", w.rps / r.rps),
        "≥ 40k req/s",
        Some(w.rps >= 40_000.0),
    );
    let (wp, rp) = (w.p99.as_secs_f64(), r.p99.as_secs_f64());
    rep.row(
        "A8b. … p99 latency (wrk --latency)",
        format!("{:.2} ms", wp * 1e3),
        format!("{:.2} ms", rp * 1e3),
        ratio(wp, rp),
        "≤ 2 ms",
        Some(w.p99 <= Duration::from_millis(2)),
    );
    if w.errors + r.errors > 0 {
        rep.note(format!(
            "wrk reported errors or non-2xx responses: wharf {}, Distribution {}",
            w.errors, r.errors
        ));
    }
    Ok(())
}
