//! Phase `s3`: wharf and Distribution (its S3 driver) storing in the same
//! Garage bucket (one node on 127.0.0.1, each registry under its own key
//! prefix), the same image: a config and one big layer.
//!
//! - push of the image with `skopeo copy --preserve-digests dir: docker://`
//!   into a fresh registry each run (fresh prefix: nothing to deduplicate);
//! - warm pull of it with skopeo;
//! - `fan` concurrent curl downloads of the big layer, aggregate;
//! - wharf's and Distribution's peak RSS during those downloads.
//!
//! Distribution streams through itself with `storage.redirect.disable`; by
//! default it answers blob GETs with a 307 to a presigned Garage URL. The
//! main rows compare wharf with the streaming Distribution (both carry
//! every byte); the `r` rows compare the two redirecting (wharf with
//! `redirect = true`), where clients read the blob from Garage directly.

use std::path::{Path, PathBuf};

use crate::content::{image_manifest, random_blob, small_blob, BlobFile, CONFIG_JSON};
use crate::report::{gbps, human, median, mib, ratio, round, secs, Report};
use crate::servers::{admin_registry_config, hash_password, Registry, S3Target, Wharf};
use crate::serving::blob_url;
use crate::support::garage::Garage;
use crate::sys::{cpu_secs, reset_hwm, sync_disks, vm_hwm, vm_rss};
use crate::tools::{fan, pull_dest, skopeo_pull_as, skopeo_push, Curl};
use crate::{Res, Settings};

const REPO: &str = "bench/s3";
const ADMIN: &str = "bench-admin";
const ADMIN_PW: &str = "bench-admin-pw";
/// wharf's multipart part size here (its default).
const PART_SIZE: &str = "16MiB";

/// The registries of a run: wharf and Distribution streaming, and a
/// second process of each on the same prefix redirecting blob GETs to
/// presigned URLs (wharf `redirect = true`, Distribution's default).
struct Sides {
    wharf: Wharf,
    dist: Registry,
    wharf_redirect: Wharf,
    dist_redirect: Registry,
}

pub fn run(s: &Settings, work: &Path, data_dir: &Path, rep: &mut Report) -> Res<()> {
    std::fs::create_dir_all(work)?;
    let Some(garage) = Garage::start(1) else {
        rep.note("phase s3 SKIPPED: no garage binary (tests/run.sh installs it)");
        return Ok(());
    };
    eprintln!("[s3] Garage up in {:.1} s", garage.startup.as_secs_f64());
    let (src, big) = image_dir(s, work, data_dir)?;
    let hash = hash_password(ADMIN_PW)?;
    let creds = format!("{ADMIN}:{ADMIN_PW}");

    let mut push_w = Vec::new();
    let mut push_d = Vec::new();
    let mut last = None;
    for i in 0..s.runs {
        eprintln!("[s3] push run {} of {}...", i + 1, s.runs);
        drop(last.take());
        let sides = start_sides(&garage, work, &hash, i)?;
        sync_disks();
        let image = |addr| format!("{addr}/{REPO}:v1");
        push_w.push(skopeo_push(work, &src, &image(sides.wharf.addr), Some(&creds))?.as_secs_f64());
        sync_disks();
        push_d.push(skopeo_push(work, &src, &image(sides.dist.addr), None)?.as_secs_f64());
        last = Some(sides);
    }
    let sides = last.ok_or("no push run (runs = 0)")?;
    push_rows(s, rep, &push_w, &push_d);
    pull_rows(s, work, &sides, &creds, rep)?;
    fan_rows(s, &sides, &big, &creds, rep)?;
    Ok(())
}

/// A skopeo `dir:` image of the config and the big layer (hard links to
/// the cached blob files), and the big layer.
fn image_dir(s: &Settings, work: &Path, data_dir: &Path) -> Res<(PathBuf, BlobFile)> {
    eprintln!("[s3] generating the image ({} layer)...", human(s.big));
    let config = small_blob(work, "s3-config.json", CONFIG_JSON)?;
    let big = random_blob(data_dir, s.big, 1)?;
    let manifest = image_manifest(&config, &[&big], None);
    let dir = work.join("s3-image");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("version"), "Directory Transport Version: 1.1\n")?;
    std::fs::write(dir.join("manifest.json"), &manifest)?;
    for b in [&config, &big] {
        let to = dir.join(b.digest.trim_start_matches("sha256:"));
        let _ = std::fs::remove_file(&to);
        if std::fs::hard_link(&b.path, &to).is_err() {
            std::fs::copy(&b.path, &to)?;
        }
    }
    Ok((dir, big))
}

/// Fresh registries on fresh prefixes of the bucket for run `i`.
fn start_sides(g: &Garage, work: &Path, hash: &str, i: usize) -> Res<Sides> {
    let opts = g.wharf_options(
        0,
        &format!("wharf-{i}/"),
        PART_SIZE,
        &admin_registry_config(ADMIN, hash),
    );
    let config = opts.config.ok_or("no wharf config")?;
    let env: Vec<(&str, &str)> = opts
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let wharf = Wharf::start_env(&work.join(format!("s3-wharf-{i}")), &config, &env)?;
    // The `[storage.s3]` table comes last in that config.
    let wharf_redirect = Wharf::start_env(
        &work.join(format!("s3-wharf-redirect-{i}")),
        &format!("{config}redirect = true\n"),
        &env,
    )?;
    let target = S3Target {
        endpoint: g.s3_url(0),
        region: g.region.clone(),
        bucket: g.bucket.clone(),
        access_key_id: g.access_key_id.clone(),
        secret_key: g.secret_key.clone(),
    };
    let root = format!("/dist-{i}");
    let dist = Registry::s3(&work.join(format!("s3-dist-{i}")), &target, &root, false)?;
    let dist_redirect = Registry::s3(
        &work.join(format!("s3-dist-redirect-{i}")),
        &target,
        &root,
        true,
    )?;
    Ok(Sides {
        wharf,
        dist,
        wharf_redirect,
        dist_redirect,
    })
}

fn push_rows(s: &Settings, rep: &mut Report, w: &[f64], d: &[f64]) {
    let (mw, md) = (median(w.to_vec()), median(d.to_vec()));
    rep.row(
        &format!(
            "O1. Push of an image with a {} layer [skopeo copy dir: → docker://], both on one Garage: wharf vs Distribution (S3 driver)",
            human(s.big)
        ),
        secs(mw),
        secs(md),
        ratio(mw, md),
        "≤ 1.0",
        Some(mw <= md),
    );
    rep.detail(format!(
        "Object-storage pushes (s): wharf {:?}, Distribution {:?}.",
        round(w),
        round(d)
    ));
}

/// Warm pulls of each side: more than the other rows' runs, since one
/// pull of the 1 GiB image varies by ±6 % here (skopeo, Garage and the
/// server share 2 CPUs).
const PULL_RUNS: usize = 5;

/// Warm pulls with skopeo from each of the three.
fn pull_rows(s: &Settings, work: &Path, sides: &Sides, creds: &str, rep: &mut Report) -> Res<()> {
    let (mut w, mut d) = (Vec::new(), Vec::new());
    let (mut wr, mut r) = (Vec::new(), Vec::new());
    // Server CPU (user + system) per streaming pull: wharf, Distribution.
    let mut cpu: (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    let dest = pull_dest(work, "s3");
    let image = |addr| format!("{addr}/{REPO}:v1");
    let runs = s.runs.max(PULL_RUNS);
    for i in 0..runs {
        eprintln!("[s3] warm pull {} of {runs}...", i + 1);
        let pull = |addr, c| -> Res<f64> {
            sync_disks();
            Ok(skopeo_pull_as(work, &image(addr), &dest, c)?
                .0
                .as_secs_f64())
        };
        let c0 = cpu_secs(sides.wharf.proc.pid());
        w.push(pull(sides.wharf.addr, Some(creds))?);
        cpu.0.push(cpu_secs(sides.wharf.proc.pid()) - c0);
        let c0 = cpu_secs(sides.dist.proc.pid());
        d.push(pull(sides.dist.addr, None)?);
        cpu.1.push(cpu_secs(sides.dist.proc.pid()) - c0);
        wr.push(pull(sides.wharf_redirect.addr, Some(creds))?);
        r.push(pull(sides.dist_redirect.addr, None)?);
    }
    let (mw, md) = (median(w.clone()), median(d.clone()));
    let (mwr, mr) = (median(wr.clone()), median(r.clone()));
    rep.row(
        "O2. Warm pull of that image [skopeo copy]: wharf vs Distribution (S3, streaming through, `redirect: disable: true`)",
        secs(mw),
        secs(md),
        ratio(mw, md),
        "≤ 1.0",
        Some(mw <= md),
    );
    rep.row(
        "O2r. … both redirecting blob GETs to presigned Garage URLs: wharf (`redirect = true`) vs Distribution (its default)",
        secs(mwr),
        secs(mr),
        ratio(mwr, mr),
        "—",
        None,
    );
    rep.detail(format!(
        "Object-storage warm pulls (s): wharf {:?}, Distribution streaming {:?}; redirecting: wharf {:?}, Distribution {:?}.",
        round(&w),
        round(&d),
        round(&wr),
        round(&r)
    ));
    rep.detail(format!(
        "Server CPU (user + system) per streaming warm pull: wharf {:?} s, Distribution {:?} s.",
        round(&cpu.0),
        round(&cpu.1)
    ));
    Ok(())
}

/// `s.fan` concurrent curl downloads of the big layer from each, and the
/// peak RSS of wharf and of the streaming Distribution meanwhile.
fn fan_rows(s: &Settings, sides: &Sides, big: &BlobFile, creds: &str, rep: &mut Report) -> Res<()> {
    let total = s.fan as u64 * s.big;
    let url = |addr| blob_url(addr, REPO, &big.digest);
    let wharf = Curl::get(&url(sides.wharf.addr)).user(creds);
    let dist = Curl::get(&url(sides.dist.addr));
    let wharf_redirect = Curl::get(&url(sides.wharf_redirect.addr))
        .user(creds)
        .follow();
    let redirect = Curl::get(&url(sides.dist_redirect.addr)).follow();
    let (wp, dp) = (sides.wharf.proc.pid(), sides.dist.proc.pid());
    let before = format!(
        "wharf before the downloads: peak RSS since start (its push and pulls) {}, RSS now {}; Distribution {}, {}.",
        mib(vm_hwm(wp).unwrap_or(0)),
        mib(vm_rss(wp).unwrap_or(0)),
        mib(vm_hwm(dp).unwrap_or(0)),
        mib(vm_rss(dp).unwrap_or(0)),
    );
    let hwm_ok = reset_hwm(wp) && reset_hwm(dp);
    let (mut w, mut d) = (Vec::new(), Vec::new());
    let (mut wr, mut r) = (Vec::new(), Vec::new());
    for i in 0..s.fan_runs {
        eprintln!(
            "[s3] {} curl downloads of {} ({} of {})...",
            s.fan,
            human(s.big),
            i + 1,
            s.fan_runs
        );
        w.push(gbps(total, fan(&wharf, s.fan, s.big)?));
        d.push(gbps(total, fan(&dist, s.fan, s.big)?));
        wr.push(gbps(total, fan(&wharf_redirect, s.fan, s.big)?));
        r.push(gbps(total, fan(&redirect, s.fan, s.big)?));
    }
    let (hw, hd) = (vm_hwm(wp).unwrap_or(0), vm_hwm(dp).unwrap_or(0));
    let after = format!(
        "wharf after the downloads: RSS {} (Distribution {}).",
        mib(vm_rss(wp).unwrap_or(0)),
        mib(vm_rss(dp).unwrap_or(0)),
    );
    let (mw, md) = (median(w.clone()), median(d.clone()));
    let (mwr, mr) = (median(wr.clone()), median(r.clone()));
    let size = human(s.big);
    rep.row(
        &format!("O3. {} concurrent downloads of the {size} layer [curl], aggregate: wharf vs Distribution (S3, streaming)", s.fan),
        format!("{mw:.2} GB/s"),
        format!("{md:.2} GB/s"),
        ratio(mw, md),
        "≥ 1.0",
        Some(mw >= md),
    );
    rep.row(
        "O3r. … both redirecting, clients follow to Garage [curl -L]: wharf (`redirect = true`) vs Distribution",
        format!("{mwr:.2} GB/s"),
        format!("{mr:.2} GB/s"),
        ratio(mwr, mr),
        "—",
        None,
    );
    rep.peak_rss_row(
        &format!("O4. Peak RSS (VmHWM) during the {}×{size} downloads: wharf vs Distribution (S3, streaming)", s.fan),
        hw,
        hd,
        64,
    );
    if !hwm_ok {
        rep.note("could not reset VmHWM (clear_refs): the O4 figures include the pushes and pulls");
    }
    rep.detail(format!("{before} {after}"));
    rep.detail(format!(
        "Object-storage downloads (GB/s): wharf {:?}, Distribution streaming {:?}; redirecting: wharf {:?}, Distribution {:?}.",
        round(&w),
        round(&d),
        round(&wr),
        round(&r)
    ));
    Ok(())
}
