//! Phase `store`: the cost of listing and writing as the store grows.
//!
//! wharf (a pure registry with one admin account) and a standalone
//! Distribution are filled with the same content: one small image pushed
//! once, then many repositories made of cross-repository blob mounts plus a
//! manifest PUT each, in `NAMESPACES` namespaces, by a pool of HTTP clients.
//! One repository has `tags` tags (distinct manifests), one has 100. At each
//! stage (by default 1,000 and 5,000 generated repositories) every listing is
//! timed with curl (`%{time_total}`, one warm-up, then the median of 3), and
//! manifest PUTs are timed while an online GC runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::content::{image_manifest, small_blob, BlobFile, CONFIG_JSON, OCI_MANIFEST};
use crate::http::Endpoint;
use crate::report::{max, median, ms, ratio, round, secs, Report};
use crate::servers::{hash_password, Registry, Wharf};
use crate::tools::{check, Curl, CurlOut};
use crate::{Res, Settings};

const NAMESPACES: usize = 20;
const ADMIN: &str = "admin";
const ADMIN_PW: &str = "bench-admin-password";
const SEED: &str = "ns00/seed";
const TAGS_REPO: &str = "ns00/tags";
const SMALL_TAGS_REPO: &str = "ns01/tags100";
const GC_REPO: &str = "ns02/gcput";
/// Page size of every paginated request.
const PAGE: usize = 100;
/// Most manifest PUTs timed during one GC, and most GC rounds.
const MAX_PUTS_PER_GC: usize = 2000;
const MAX_GC_ROUNDS: usize = 3;

/// The two registries of this phase and how to reach them.
struct Pair {
    wharf: Wharf,
    dist: Registry,
    we: Endpoint,
    de: Endpoint,
}

/// The seed image every generated repository is made of.
struct Seed {
    config: BlobFile,
    layer: BlobFile,
    manifest: Vec<u8>,
}

pub fn run(s: &Settings, work: &Path, rep: &mut Report) -> Res<()> {
    eprintln!("[store] starting wharf (admin account) and Distribution...");
    let hash = hash_password(ADMIN_PW)?;
    let wharf = Wharf::registry_with_admin(&work.join("store-wharf"), ADMIN, &hash)?;
    let dist = Registry::start(&work.join("store-dist"), None)?;
    let pair = Pair {
        we: Endpoint::basic(wharf.addr, ADMIN, ADMIN_PW),
        de: dist.endpoint(),
        wharf,
        dist,
    };
    let seed = push_seed(work, &pair)?;
    let t = fill_tags(s, &pair, &seed, TAGS_REPO, s.tags)?;
    rep.detail(format!(
        "Store fill: {} tags in {TAGS_REPO} (distinct manifests, {} clients): wharf {}, Distribution {}.",
        s.tags,
        s.fill_threads,
        secs(t.0),
        secs(t.1)
    ));
    fill_tags(s, &pair, &seed, SMALL_TAGS_REPO, PAGE)?;
    for e in [&pair.we, &pair.de] {
        e.mount_blob(GC_REPO, &seed.config.digest, SEED)?;
        e.mount_blob(GC_REPO, &seed.layer.digest, SEED)?;
    }

    let mut filled = 0;
    let mut catalog: Vec<(usize, f64, f64)> = Vec::new();
    let mut per_stage: Vec<Report> = Vec::new();
    for &stage in &s.stages {
        eprintln!("[store] filling to {stage} repositories...");
        let (tw, td) = fill_repos(s, &pair, &seed, filled, stage)?;
        rep.detail(format!(
            "Store fill: repositories {filled}..{stage} ({} new, 2 mounts + 1 manifest PUT each, {} clients): wharf {} ({:.0}/s), Distribution {} ({:.0}/s).",
            stage - filled,
            s.fill_threads,
            secs(tw),
            (stage - filled) as f64 / tw,
            secs(td),
            (stage - filled) as f64 / td
        ));
        filled = stage;
        eprintln!("[store] measuring at {stage} repositories...");
        let label = stage_label(stage);
        let mut sr = Report::default();
        let (cw, cd) = catalog_row(s, work, &pair, &label, &mut sr)?;
        catalog.push((stage, cw, cd));
        mgmt_rows(s, work, &pair, &label, &mut sr)?;
        tags_rows(s, work, &pair, &label, &mut sr)?;
        artifacts_row(s, work, &pair, &label, &mut sr)?;
        gc_rows(s, work, &pair, &seed, &label, &mut sr)?;
        per_stage.push(sr);
    }
    merge_stages(per_stage, &catalog, rep);
    rep.note(format!(
        "store phase: each stage counts the generated repositories (spread over {NAMESPACES} namespaces); 4 more exist \
         ({SEED}, {TAGS_REPO}, {SMALL_TAGS_REPO}, {GC_REPO}); wharf runs with one admin account, so every wharf request \
         carries Basic credentials (wharf caches their verification); Distribution has no auth"
    ));
    Ok(())
}

fn stage_label(n: usize) -> String {
    if n.is_multiple_of(1000) {
        format!("{}k repos", n / 1000)
    } else {
        format!("{n} repos")
    }
}

// ---------------------------------------------------------------------------
// Filling

/// Push the seed image (config + one small layer) to both registries.
fn push_seed(work: &Path, pair: &Pair) -> Res<Seed> {
    let config = small_blob(work, "seed-config.json", CONFIG_JSON)?;
    let bytes: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let layer = small_blob(work, "seed-layer.bin", &bytes)?;
    let manifest = image_manifest(&config, &[&layer], None);
    for e in [&pair.we, &pair.de] {
        e.push_blob(SEED, &config)?;
        e.push_blob(SEED, &layer)?;
        e.put_manifest(SEED, "v1", &manifest)?;
    }
    Ok(Seed {
        config,
        layer,
        manifest,
    })
}

/// Run `f(i)` for every `i` in `range` on `threads` threads; stops at the
/// first error. Returns the wall time.
fn pool(
    threads: usize,
    range: std::ops::Range<usize>,
    f: impl Fn(usize) -> Res<()> + Sync,
) -> Res<f64> {
    let next = AtomicUsize::new(range.start);
    let failed = AtomicBool::new(false);
    let first_err: Mutex<Option<String>> = Mutex::new(None);
    let start = Instant::now();
    std::thread::scope(|sc| {
        for _ in 0..threads.max(1) {
            sc.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= range.end || failed.load(Ordering::Relaxed) {
                    return;
                }
                if let Err(e) = f(i) {
                    failed.store(true, Ordering::Relaxed);
                    first_err.lock().unwrap().get_or_insert(e.to_string());
                    return;
                }
            });
        }
    });
    let took = start.elapsed().as_secs_f64();
    match first_err.into_inner().unwrap() {
        Some(e) => Err(e.into()),
        None => Ok(took),
    }
}

fn repo_name(i: usize) -> String {
    format!("ns{:02}/repo{i:05}", i % NAMESPACES)
}

/// Create repositories `from..to` in both registries (wharf first, then
/// Distribution, each timed). Returns (wharf s, Distribution s).
fn fill_repos(s: &Settings, pair: &Pair, seed: &Seed, from: usize, to: usize) -> Res<(f64, f64)> {
    let one = |e: &Endpoint, i: usize| -> Res<()> {
        let repo = repo_name(i);
        e.mount_blob(&repo, &seed.config.digest, SEED)?;
        e.mount_blob(&repo, &seed.layer.digest, SEED)?;
        e.put_manifest(&repo, "v1", &seed.manifest)
    };
    let tw = pool(s.fill_threads, from..to, |i| one(&pair.we, i))?;
    let td = pool(s.fill_threads, from..to, |i| one(&pair.de, i))?;
    Ok((tw, td))
}

fn tag_name(i: usize) -> String {
    format!("t{i:05}")
}

/// A manifest of the seed image made distinct by an annotation.
fn tagged_manifest(seed: &Seed, label: &str) -> Vec<u8> {
    image_manifest(&seed.config, &[&seed.layer], Some(label))
}

/// `repo` with `n` tags, each on its own manifest. Returns (wharf s,
/// Distribution s).
fn fill_tags(s: &Settings, pair: &Pair, seed: &Seed, repo: &str, n: usize) -> Res<(f64, f64)> {
    eprintln!("[store] {n} tags in {repo}...");
    let mut times = Vec::new();
    for e in [&pair.we, &pair.de] {
        e.mount_blob(repo, &seed.config.digest, SEED)?;
        e.mount_blob(repo, &seed.layer.digest, SEED)?;
        times.push(pool(s.fill_threads, 0..n, |i| {
            let m = tagged_manifest(seed, &format!("{repo}:{}", tag_name(i)));
            e.put_manifest(repo, &tag_name(i), &m)
        })?);
    }
    Ok((times[0], times[1]))
}

// ---------------------------------------------------------------------------
// Timed requests (curl)

/// Where one JSON request's answer went.
struct Page {
    out: CurlOut,
    body: serde_json::Value,
    /// The target of the `Link: <...>; rel="next"` header, if any.
    next: Option<String>,
}

/// GET `url` with curl (Basic credentials when `user` is given), keeping
/// the body and headers in `work`; requires 200 and a JSON body.
fn get_json(work: &Path, url: &str, user: Option<&str>) -> Res<Page> {
    let (body_p, head_p) = (work.join("curl-body.json"), work.join("curl-head.txt"));
    let mut c = Curl::get(url).body_to(&body_p).headers_to(&head_p);
    if let Some(u) = user {
        c = c.user(u);
    }
    let out = c.run()?;
    check(&out, 200, None, url)?;
    let body: serde_json::Value = serde_json::from_slice(&std::fs::read(&body_p)?)
        .map_err(|e| format!("{url}: body is not JSON: {e}"))?;
    let heads = std::fs::read_to_string(&head_p)?;
    let next = heads.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if !k.trim().eq_ignore_ascii_case("link") || !v.contains("rel=\"next\"") {
            return None;
        }
        let v = v.trim();
        Some(v[v.find('<')? + 1..v.find('>')?].to_string())
    });
    Ok(Page { out, body, next })
}

/// One warm-up, then the median of `runs` timed GETs of `url` (curl's
/// `time_total`, seconds). Also returns the last page for checks.
fn timed_json(s: &Settings, work: &Path, url: &str, user: Option<&str>) -> Res<(f64, Page)> {
    get_json(work, url, user)?;
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..s.runs {
        let p = get_json(work, url, user)?;
        times.push(p.out.time_total.as_secs_f64());
        last = Some(p);
    }
    Ok((median(times), last.ok_or("runs = 0")?))
}

fn admin_user() -> String {
    format!("{ADMIN}:{ADMIN_PW}")
}

fn base(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

fn count(v: &serde_json::Value, key: &str) -> usize {
    v[key].as_array().map(|a| a.len()).unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Rows

/// `_catalog?n=100`, first page, both registries. Returns the medians.
fn catalog_row(
    s: &Settings,
    work: &Path,
    pair: &Pair,
    label: &str,
    rep: &mut Report,
) -> Res<(f64, f64)> {
    let user = admin_user();
    let path = format!("/v2/_catalog?n={PAGE}");
    let (w, wp) = timed_json(
        s,
        work,
        &format!("{}{path}", base(pair.wharf.addr)),
        Some(&user),
    )?;
    let (d, dp) = timed_json(s, work, &format!("{}{path}", base(pair.dist.addr)), None)?;
    for (who, p) in [("wharf", &wp), ("Distribution", &dp)] {
        if count(&p.body, "repositories") != PAGE || p.next.is_none() {
            return Err(format!(
                "{who}: _catalog?n={PAGE} gave {} entries, next {:?}",
                count(&p.body, "repositories"),
                p.next
            )
            .into());
        }
    }
    rep.row(
        &format!("B1. `/v2/_catalog?n={PAGE}` first page, {label} [curl]: wharf vs Distribution"),
        ms(w),
        ms(d),
        ratio(w, d),
        "≤ 5 ms",
        Some(w <= 0.005),
    );
    Ok((w, d))
}

/// Put each stage's rows next to the same measurement of the other stages
/// (every stage emits the same rows in the same order), the catalog
/// flatness row after the catalog rows; carry details and notes over.
fn merge_stages(per_stage: Vec<Report>, catalog: &[(usize, f64, f64)], rep: &mut Report) {
    let n = per_stage.iter().map(|r| r.rows.len()).max().unwrap_or(0);
    let mut stages: Vec<_> = per_stage
        .into_iter()
        .map(|r| (r.rows.into_iter(), r.details, r.notes))
        .collect();
    for i in 0..n {
        for (rows, _, _) in stages.iter_mut() {
            if let Some(r) = rows.next() {
                rep.rows.push(r);
            }
        }
        if i == 0 {
            flatness_row(catalog, rep);
        }
    }
    for (_, details, notes) in stages {
        rep.details.extend(details);
        rep.notes.extend(notes);
    }
}

/// Whether the catalog stayed flat from the first stage to the last.
fn flatness_row(catalog: &[(usize, f64, f64)], rep: &mut Report) {
    let (Some(first), Some(last)) = (catalog.first(), catalog.last()) else {
        return;
    };
    if first.0 == last.0 {
        return;
    }
    let (fw, fd) = (last.1 / first.1, last.2 / first.2);
    rep.row(
        &format!(
            "B1f. … flat: first page at {} / at {} (wharf vs Distribution)",
            stage_label(last.0),
            stage_label(first.0)
        ),
        format!("{fw:.2}×"),
        format!("{fd:.2}×"),
        "—".into(),
        "≤ 1.5× (flat)",
        Some(fw <= 1.5),
    );
}

/// wharf's management listings: projects and one project's repositories.
fn mgmt_rows(s: &Settings, work: &Path, pair: &Pair, label: &str, rep: &mut Report) -> Res<()> {
    let user = admin_user();
    let b = base(pair.wharf.addr);
    let (t, p) = timed_json(s, work, &format!("{b}/api/v1/projects"), Some(&user))?;
    let n = p.body.as_array().map(|a| a.len()).unwrap_or(0);
    rep.row(
        &format!("B2. `GET /api/v1/projects` ({n} projects), {label} [curl] (wharf only)"),
        ms(t),
        "—".into(),
        "—".into(),
        "≤ 50 ms",
        Some(t <= 0.050),
    );
    let (t, p) = timed_json(
        s,
        work,
        &format!("{b}/api/v1/projects/ns03/repositories"),
        Some(&user),
    )?;
    let n = p.body.as_array().map(|a| a.len()).unwrap_or(0);
    rep.row(
        &format!("B3. `GET /api/v1/projects/ns03/repositories` ({n} repositories), {label} [curl] (wharf only)"),
        ms(t),
        "—".into(),
        "—".into(),
        "— (no target; whole list, no pagination)",
        None,
    );
    Ok(())
}

/// The artifacts of the many-tag repository (wharf only; the whole list:
/// the API has no pagination yet).
fn artifacts_row(s: &Settings, work: &Path, pair: &Pair, label: &str, rep: &mut Report) -> Res<()> {
    let user = admin_user();
    let b = base(pair.wharf.addr);
    let (t, p) = timed_json(
        s,
        work,
        &format!("{b}/api/v1/repositories/{TAGS_REPO}/artifacts"),
        Some(&user),
    )?;
    let n = p.body.as_array().map(|a| a.len()).unwrap_or(0);
    rep.row(
        &format!("B6. `GET /api/v1/repositories/{TAGS_REPO}/artifacts`, whole call (no pagination yet; {n} artifacts), {label} [curl] (wharf only)"),
        ms(t),
        "—".into(),
        "—".into(),
        "≤ 50 ms (a page)",
        Some(t <= 0.050),
    );
    Ok(())
}

/// Follow `Link: rel="next"` from `first` until the last page (bounded).
/// Returns (sum of curl's time_total, pages, tags seen).
fn walk(
    work: &Path,
    addr: SocketAddr,
    first: &str,
    user: Option<&str>,
    max_pages: usize,
) -> Res<(f64, usize, usize)> {
    let mut target = first.to_string();
    let (mut total, mut pages, mut tags) = (0.0, 0, 0);
    loop {
        let p = get_json(work, &format!("{}{target}", base(addr)), user)?;
        total += p.out.time_total.as_secs_f64();
        pages += 1;
        tags += count(&p.body, "tags");
        match p.next {
            Some(n) if pages < max_pages => target = n,
            Some(_) => return Err(format!("more than {max_pages} pages from {first}").into()),
            None => return Ok((total, pages, tags)),
        }
    }
}

/// `tags/list?n=100` on the many-tag repository: the first page, the same
/// page from the 100-tag repository (O(n) check), and a walk of all pages.
fn tags_rows(s: &Settings, work: &Path, pair: &Pair, label: &str, rep: &mut Report) -> Res<()> {
    let user = admin_user();
    let first = format!("/v2/{TAGS_REPO}/tags/list?n={PAGE}");
    let small = format!("/v2/{SMALL_TAGS_REPO}/tags/list?n={PAGE}");
    let (w, wp) = timed_json(
        s,
        work,
        &format!("{}{first}", base(pair.wharf.addr)),
        Some(&user),
    )?;
    let (d, dp) = timed_json(s, work, &format!("{}{first}", base(pair.dist.addr)), None)?;
    let (ws, _) = timed_json(
        s,
        work,
        &format!("{}{small}", base(pair.wharf.addr)),
        Some(&user),
    )?;
    let (dn, wn) = (count(&dp.body, "tags"), count(&wp.body, "tags"));
    if wn != PAGE {
        return Err(format!("wharf: tags/list?n={PAGE} gave {wn} tags").into());
    }
    let ignores = dn == s.tags && dp.next.is_none();
    let dist_note = if ignores {
        format!("Distribution ignores n: all {dn} tags in one answer")
    } else {
        format!("Distribution: {dn} tags in the first page")
    };
    rep.row(
        &format!("B4. `tags/list?n={PAGE}` first page, {}-tag repo, {label} [curl]: wharf vs Distribution ({dist_note})", s.tags),
        ms(w),
        ms(d),
        ratio(w, d),
        "—",
        None,
    );
    rep.row(
        &format!("B4n. … O(n): that page from the {}-tag repo vs from a {PAGE}-tag repo (wharf vs wharf)", s.tags),
        ms(w),
        ms(ws),
        ratio(w, ws),
        "≤ 2.0 (page cost independent of repo size)",
        Some(w / ws <= 2.0),
    );
    let max_pages = s.tags / PAGE + 5;
    let mut ww = Vec::new();
    let mut dw = Vec::new();
    let (mut wpages, mut dpages) = (0, 0);
    walk(work, pair.wharf.addr, &first, Some(&user), max_pages)?;
    for _ in 0..s.runs {
        let (t, pages, tags) = walk(work, pair.wharf.addr, &first, Some(&user), max_pages)?;
        if tags != s.tags {
            return Err(format!(
                "wharf: walking tags/list gave {tags} tags in {pages} pages, want {}",
                s.tags
            )
            .into());
        }
        ww.push(t);
        wpages = pages;
        let (t, pages, _) = walk(work, pair.dist.addr, &first, None, max_pages)?;
        dw.push(t);
        dpages = pages;
    }
    let (mw, md) = (median(ww), median(dw));
    rep.row(
        &format!("B5. … walk all pages following `Link` ({wpages} pages on wharf, {dpages} on Distribution), sum of request times"),
        ms(mw),
        ms(md),
        ratio(mw, md),
        "— (O(total) if pages are O(n))",
        None,
    );
    Ok(())
}

/// Write manifest `k` for the GC-time PUTs to a file for curl.
fn gc_manifest(work: &Path, seed: &Seed, k: usize) -> Res<PathBuf> {
    let p = work.join("gc-manifest.json");
    std::fs::write(&p, tagged_manifest(seed, &format!("gc-{k}")))?;
    Ok(p)
}

/// One manifest PUT with curl (a new tag, a new manifest); seconds.
fn put_once(work: &Path, addr: SocketAddr, user: Option<&str>, seed: &Seed, k: usize) -> Res<f64> {
    let file = gc_manifest(work, seed, k)?;
    let url = format!("{}/v2/{GC_REPO}/manifests/g{k:05}", base(addr));
    let mut c = Curl::get(&url)
        .method("PUT")
        .header(&format!("Content-Type: {OCI_MANIFEST}"))
        .data_file(&file);
    if let Some(u) = user {
        c = c.user(u);
    }
    Ok(c.expect(201, None)?.time_total.as_secs_f64())
}

/// Manifest PUT latency: idle on both, then on wharf while `POST
/// /api/v1/gc` runs (PUTs one after another until the GC answers).
fn gc_rows(
    s: &Settings,
    work: &Path,
    pair: &Pair,
    seed: &Seed,
    label: &str,
    rep: &mut Report,
) -> Res<()> {
    let user = admin_user();
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let k = || NEXT.fetch_add(1, Ordering::Relaxed);
    put_once(work, pair.wharf.addr, Some(&user), seed, k())?;
    put_once(work, pair.dist.addr, None, seed, k())?;
    let mut idle_w = Vec::new();
    let mut idle_d = Vec::new();
    for _ in 0..s.runs {
        idle_w.push(put_once(work, pair.wharf.addr, Some(&user), seed, k())?);
        idle_d.push(put_once(work, pair.dist.addr, None, seed, k())?);
    }
    let (iw, id) = (median(idle_w), median(idle_d));

    let gc_url = format!("{}/api/v1/gc", base(pair.wharf.addr));
    let body = work.join("gc-request.json");
    std::fs::write(&body, r#"{"grace": "0s"}"#)?;
    let mut during = Vec::new();
    let mut gc_times = Vec::new();
    let mut gc_report = String::new();
    for _ in 0..MAX_GC_ROUNDS {
        let gc_out = work.join("gc-answer.json");
        let gc = Curl::get(&gc_url)
            .method("POST")
            .user(&user)
            .header("Content-Type: application/json")
            .data_file(&body)
            .body_to(&gc_out)
            .spawn()?;
        let mut gc = Some(gc);
        // Let the GC request reach wharf before the first PUT.
        std::thread::sleep(std::time::Duration::from_millis(10));
        let mut puts = 0;
        while puts < MAX_PUTS_PER_GC {
            if gc.as_mut().is_some_and(|g| g.done()) {
                break;
            }
            during.push(put_once(work, pair.wharf.addr, Some(&user), seed, k())?);
            puts += 1;
        }
        let out = gc.take().ok_or("gc")?.finish()?;
        check(&out, 200, None, &gc_url)?;
        gc_times.push(out.time_total.as_secs_f64());
        gc_report = std::fs::read_to_string(&gc_out).unwrap_or_default();
        if during.len() >= 3 {
            break;
        }
    }
    let med = median(during.clone());
    let worst = max(&during);
    rep.row(
        &format!("B7. Manifest PUT [curl] while `POST /api/v1/gc` runs, {label}: wharf during GC vs wharf idle"),
        format!("median {} / max {} ({} PUTs)", ms(med), ms(worst), during.len()),
        ms(iw),
        ratio(med, iw),
        "max ≤ 100 ms",
        Some(!during.is_empty() && worst <= 0.100),
    );
    rep.row(
        &format!("B7i. … manifest PUT, idle, {label}: wharf vs Distribution (Distribution has no online GC)"),
        ms(iw),
        ms(id),
        ratio(iw, id),
        "—",
        None,
    );
    rep.detail(format!(
        "GC at {label}: {} round(s), GC calls took {:?} s; {} PUTs during GC, first ones (ms): {:?}; last GC answer: {}",
        gc_times.len(),
        round(&gc_times),
        during.len(),
        during.iter().take(12).map(|t| (t * 1e4).round() / 10.0).collect::<Vec<_>>(),
        serde_json::from_str::<serde_json::Value>(&gc_report).map(|v| v.to_string()).unwrap_or(gc_report)
    ));
    if during.is_empty() {
        rep.note(format!("at {label} every GC finished before a PUT could start: no PUT latency during GC measured"));
    }
    Ok(())
}
