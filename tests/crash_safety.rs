//! Crash safety and flat memory, against the real binary:
//!
//! - `kill -9` in the middle of a 1 GiB streamed push: after a restart on the
//!   same data directory the half-written blob is invisible, the push can be
//!   retried (from scratch, or resumed) and succeeds, and every file under
//!   `blobs/sha256/*/*` hashes to its own name.
//! - `kill -9` at arbitrary moments during a stream of pushes: the store
//!   always starts, every acknowledged blob is there, nothing is corrupt.
//! - Pushing and pulling a 1 GiB blob (streamed, generated on the fly)
//!   keeps wharf's peak RSS (`VmHWM`) under a fixed bound.
//!
//! Sizes can be changed with `WHARF_TEST_BIG_BYTES` (default 1 GiB).
mod support;

use support::disk::*;

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::image::{fast_noise_digest, fast_sha256, fast_sha256_file, Noise};
use support::*;

const MIB: u64 = 1 << 20;

/// Peak RSS allowed for wharf while moving a GiB.
const MAX_HWM_KIB: u64 = 150 * 1024;

fn big_size() -> u64 {
    std::env::var("WHARF_TEST_BIG_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 30)
}

/// A client for long streamed requests (no overall timeout to trip on a
/// slow machine; the test bounds its own waits).
fn long_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(1800))
        .build()
        .unwrap()
}

/// Counts the bytes read through it.
struct Counting<R> {
    inner: R,
    n: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n.fetch_add(k as u64, Ordering::Relaxed);
        Ok(k)
    }
}

/// `POST /v2/<repo>/blobs/uploads/` → absolute upload URL.
fn start_upload(w: &Wharf, repo: &str) -> String {
    let r = http()
        .post(format!("{}/v2/{repo}/blobs/uploads/", w.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "start upload: {:?}", r.text());
    abs_url(w, &header(&r, "location"))
}

fn upload_id(url: &str) -> String {
    url.split('?')
        .next()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string()
}

fn with_query(url: &str, kv: &str) -> String {
    if url.contains('?') {
        format!("{url}&{kv}")
    } else {
        format!("{url}?{kv}")
    }
}

/// Stream `body` as one chunked `PATCH`; returns the next upload URL.
fn patch_stream(
    url: &str,
    body: impl Read + Send + 'static,
    content_range: Option<(u64, u64)>,
) -> reqwest::Result<reqwest::blocking::Response> {
    let mut req = long_client()
        .patch(url)
        .header("content-type", "application/octet-stream");
    let body = match content_range {
        Some((start, len)) => {
            req = req.header("content-range", format!("{start}-{}", start + len - 1));
            reqwest::blocking::Body::sized(body, len)
        }
        None => reqwest::blocking::Body::new(body),
    };
    req.body(body).send()
}

/// `PUT <url>?digest=` with an empty body → the response.
fn finish_upload(w: &Wharf, url: &str, digest: &str) -> reqwest::blocking::Response {
    long_client()
        .put(with_query(url, &format!("digest={digest}")))
        .header("content-length", "0")
        .send()
        .unwrap_or_else(|e| panic!("PUT ?digest= failed: {e}\nwharf log tail:\n{}", log_tail(w)))
}

/// The end of wharf's log (to explain a connection refused).
fn log_tail(w: &Wharf) -> String {
    let logs = w.logs();
    let lines: Vec<&str> = logs.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Push `len` bytes of `Noise(seed)` as POST + one streamed PATCH + PUT.
fn push_streamed(w: &Wharf, repo: &str, seed: u64, len: u64, digest: &str) {
    let url = start_upload(w, repo);
    let r = patch_stream(&url, Noise::new(seed, len), None).expect("PATCH");
    assert_eq!(r.status(), 202, "PATCH: {:?}", r.text());
    let next = abs_url(w, &header(&r, "location"));
    assert_eq!(header(&r, "range"), format!("0-{}", len - 1));
    let r = finish_upload(w, &next, digest);
    assert_eq!(r.status(), 201, "PUT ?digest=: {:?}", r.text());
    assert_eq!(header(&r, "docker-content-digest"), digest);
}

fn blob_status(w: &Wharf, repo: &str, digest: &str) -> (u16, Option<u64>) {
    let r = http()
        .head(format!("{}/v2/{repo}/blobs/{digest}", w.url()))
        .send()
        .unwrap();
    let len = r
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (r.status().as_u16(), len)
}

/// Every file under `<data>/blobs/sha256/*/*` hashes to its own name;
/// returns how many there are.
fn assert_store_consistent(data: &Path) -> usize {
    let files = files_under(&data.join("blobs/sha256"));
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let parent = f
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        assert!(
            name.len() == 64
                && name.starts_with(&parent)
                && name.bytes().all(|b| b.is_ascii_hexdigit()),
            "unexpected file in the blob store: {}",
            f.display()
        );
        assert_eq!(
            fast_sha256_file(f),
            format!("sha256:{name}"),
            "blob file {} does not match its name",
            f.display()
        );
    }
    files.len()
}

/// Wait until `cond` holds (polling a file size; not a timing assertion).
fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Kill wharf (SIGKILL) once it has written at least `at` bytes of the
/// upload at `url`, while a thread streams `len` bytes of `Noise(seed)` to
/// it. Returns how many bytes the client had sent.
fn kill_mid_patch(w: &mut Wharf, url: &str, seed: u64, len: u64, at: u64) -> u64 {
    let data_file = w.data_dir.join("uploads").join(upload_id(url)).join("data");
    let sent = Arc::new(AtomicU64::new(0));
    let body = Counting {
        inner: Noise::new(seed, len),
        n: sent.clone(),
    };
    let u = url.to_string();
    let pusher =
        std::thread::spawn(move || patch_stream(&u, body, None).map(|r| r.status().as_u16()));
    wait_until(
        "the upload to reach the kill point",
        Duration::from_secs(600),
        || {
            assert!(
                !pusher.is_finished(),
                "the push ended before the kill point"
            );
            file_len(&data_file) >= at
        },
    );
    let on_disk = file_len(&data_file);
    w.kill();
    let res = pusher.join().unwrap();
    let sent = sent.load(Ordering::Relaxed);
    eprintln!(
        "killed wharf with {on_disk} bytes of the upload on disk, {sent} sent; client saw {res:?}"
    );
    assert!(
        !matches!(res, Ok(s) if (200..300).contains(&s)),
        "the interrupted PATCH reported success"
    );
    assert!(sent < len, "everything was sent before the kill");
    sent
}

#[test]
fn kill_9_mid_push_then_retry() {
    let t0 = Instant::now();
    let size = big_size();
    let seed = 0xC0FFEE;
    // Hash the content in the background while it is pushed.
    let digest_job = std::thread::spawn(move || fast_noise_digest(seed, size));
    let mut w = Wharf::start();
    // Something else in the store, which must survive intact.
    let small = push_blob(&w, "team/big", &data(1, 3 * MIB as usize));

    let url = start_upload(&w, "team/big");
    let sent = kill_mid_patch(&mut w, &url, seed, size, (size * 3 / 10).min(300 * MIB));
    w.restart();
    let digest = digest_job.join().unwrap();
    eprintln!("crashed mid-push after {:.1?}", t0.elapsed());

    // The half-written blob is nowhere.
    assert_eq!(
        blob_status(&w, "team/big", &digest).0,
        404,
        "half-written blob visible after restart"
    );
    assert_eq!(blob_status(&w, "other/repo", &digest).0, 404);
    let r = http()
        .get(format!("{}/v2/team/big/blobs/{digest}", w.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(
        !blob_file(&w.data_dir, &digest).exists(),
        "half-written blob in the blob store"
    );
    let tmp_files = files_under(&w.data_dir.join("tmp"));
    assert!(
        tmp_files.is_empty(),
        "temp files survived the restart: {tmp_files:?}"
    );
    assert_eq!(blob_status(&w, "team/big", &small), (200, Some(3 * MIB)));
    assert_store_consistent(&w.data_dir);

    // The interrupted session holds at most what was sent; cancel it.
    let r = http().get(&url).send().unwrap();
    match r.status().as_u16() {
        204 => {
            let range = header(&r, "range");
            let end: u64 = range.rsplit('-').next().unwrap().parse().unwrap();
            assert!(
                end < sent,
                "session claims {range} but only {sent} bytes were sent"
            );
            let r = http().delete(&url).send().unwrap();
            assert_eq!(r.status(), 204, "cancel the interrupted upload");
        }
        404 => {}
        s => panic!("GET interrupted upload: unexpected status {s}"),
    }

    // Retry from scratch, as docker and skopeo do.
    let t1 = Instant::now();
    push_streamed(&w, "team/big", seed, size, &digest);
    eprintln!("retried push of {size} bytes in {:.1?}", t1.elapsed());
    assert_eq!(blob_status(&w, "team/big", &digest), (200, Some(size)));

    // Durable across another crash, and the store is consistent.
    w.kill();
    w.restart();
    assert_eq!(blob_status(&w, "team/big", &digest), (200, Some(size)));
    assert_eq!(blob_status(&w, "team/big", &small), (200, Some(3 * MIB)));
    assert_eq!(assert_store_consistent(&w.data_dir), 2);
    eprintln!("kill_9_mid_push_then_retry: {:.1?}", t0.elapsed());
}

#[test]
fn kill_9_mid_push_then_resume_session() {
    let size = (big_size() / 4).max(16 * MIB);
    let seed = 0xBEEF;
    let digest_job = std::thread::spawn(move || fast_noise_digest(seed, size));
    let mut w = Wharf::start();
    let url = start_upload(&w, "team/resume");
    let sent = kill_mid_patch(&mut w, &url, seed, size, size / 4);
    w.restart();
    let digest = digest_job.join().unwrap();
    assert_eq!(blob_status(&w, "team/resume", &digest).0, 404);

    // The session survived; resume at the offset wharf reports.
    let r = http().get(&url).send().unwrap();
    assert_eq!(r.status(), 204, "upload session lost in the crash");
    let range = header(&r, "range");
    let offset: u64 = range.rsplit('-').next().unwrap().parse::<u64>().unwrap() + 1;
    assert!(
        offset <= sent,
        "session claims {range} but only {sent} bytes were sent"
    );
    let next = abs_url(&w, &header(&r, "location"));
    let mut rest = Noise::new(seed, size);
    std::io::copy(&mut (&mut rest).take(offset), &mut std::io::sink()).unwrap();
    let r = patch_stream(&next, rest, Some((offset, size - offset))).unwrap();
    assert_eq!(
        r.status(),
        202,
        "resume PATCH from {offset}: {:?}",
        r.text()
    );
    let next = abs_url(&w, &header(&r, "location"));
    let r = finish_upload(&w, &next, &digest);
    assert_eq!(r.status(), 201, "finish resumed upload: {:?}", r.text());
    assert_eq!(blob_status(&w, "team/resume", &digest), (200, Some(size)));
    assert_eq!(assert_store_consistent(&w.data_dir), 1);
}

#[test]
fn kill_9_at_arbitrary_moments_store_stays_consistent() {
    let mut w = Wharf::start();
    let mut acknowledged: Vec<(String, u64)> = Vec::new();
    let mut seed = 100u64;
    for round in 0..6u64 {
        // A pusher that keeps pushing blobs (monolithic and chunked) until
        // wharf dies under it.
        let base = w.url();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let first_seed = seed;
        let pusher = std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut s = first_seed;
            let c = http();
            while !stop2.load(Ordering::Relaxed) {
                s += 1;
                let len = (2 + s % 5) * MIB + s;
                let bytes = data(s, len as usize);
                let d = sha256(&bytes);
                let ok = if s.is_multiple_of(2) {
                    c.post(format!("{base}/v2/team/crash/blobs/uploads/?digest={d}"))
                        .body(bytes)
                        .send()
                        .map(|r| r.status() == 201)
                        .unwrap_or(false)
                } else {
                    (|| -> Option<bool> {
                        let r = c
                            .post(format!("{base}/v2/team/crash/blobs/uploads/"))
                            .send()
                            .ok()?;
                        let loc = r.headers().get("location")?.to_str().ok()?.to_string();
                        let loc = if loc.starts_with("http") {
                            loc
                        } else {
                            format!("{base}{loc}")
                        };
                        let half = bytes.len() / 2;
                        let r = c
                            .patch(&loc)
                            .header("content-range", format!("0-{}", half - 1))
                            .body(bytes[..half].to_vec())
                            .send()
                            .ok()?;
                        let loc = r.headers().get("location")?.to_str().ok()?.to_string();
                        let loc = if loc.starts_with("http") {
                            loc
                        } else {
                            format!("{base}{loc}")
                        };
                        let r = c
                            .put(with_query(&loc, &format!("digest={d}")))
                            .body(bytes[half..].to_vec())
                            .send()
                            .ok()?;
                        Some(r.status() == 201)
                    })()
                    .unwrap_or(false)
                };
                if ok {
                    acked.push((d, len));
                } else {
                    break;
                }
            }
            (acked, s)
        });
        // Let it run a varying while, then crash it mid-whatever.
        std::thread::sleep(Duration::from_millis(150 + round * 230));
        w.kill();
        stop.store(true, Ordering::Relaxed);
        let (acked, last_seed) = pusher.join().unwrap();
        seed = last_seed + 1;
        acknowledged.extend(acked);
        w.restart();
        for (d, len) in &acknowledged {
            assert_eq!(
                blob_status(&w, "team/crash", d),
                (200, Some(*len)),
                "acknowledged blob {d} lost (round {round})"
            );
        }
        let n = assert_store_consistent(&w.data_dir);
        eprintln!(
            "round {round}: {} acknowledged, {n} blob files, all consistent",
            acknowledged.len()
        );
    }
    assert!(!acknowledged.is_empty(), "no push ever completed");
}

#[test]
fn memory_stays_flat_pushing_and_pulling_1gib() {
    if !Path::new("/proc/self/status").exists() {
        eprintln!("SKIPPED: no /proc (cannot read VmHWM)");
        return;
    }
    let t0 = Instant::now();
    let size = big_size();
    let seed = 0xF1A7;
    let digest_job = std::thread::spawn(move || fast_noise_digest(seed, size));
    let w = Wharf::start();
    let pid = w.pid().unwrap();
    let start_hwm = vm_hwm_kib(pid);

    // Push: one streamed, chunked-encoded PATCH; the digest comes at the end.
    let url = start_upload(&w, "team/mem");
    let r = patch_stream(&url, Noise::new(seed, size), None).expect("PATCH");
    assert_eq!(r.status(), 202, "PATCH: {:?}", r.text());
    let next = abs_url(&w, &header(&r, "location"));
    let digest = digest_job.join().unwrap();
    let r = finish_upload(&w, &next, &digest);
    assert_eq!(r.status(), 201, "PUT ?digest=: {:?}", r.text());
    let push_hwm = vm_hwm_kib(pid);
    eprintln!("pushed {size} bytes in {:.1?}; VmHWM {start_hwm} KiB at start, {push_hwm} KiB after the push", t0.elapsed());
    assert!(
        push_hwm < MAX_HWM_KIB,
        "wharf peaked at {push_hwm} KiB pushing {size} bytes (bound {MAX_HWM_KIB} KiB)"
    );

    // Pull: one client hashes everything, three more read concurrently.
    let t1 = Instant::now();
    let blob_url = format!("{}/v2/team/mem/blobs/{digest}", w.url());
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let u = blob_url.clone();
            std::thread::spawn(move || {
                let mut r = long_client().get(&u).send().unwrap();
                assert_eq!(r.status(), 200);
                std::io::copy(&mut r, &mut std::io::sink()).unwrap()
            })
        })
        .collect();
    let r = long_client().get(&blob_url).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length"), size.to_string());
    let got = fast_sha256(r);
    assert_eq!(got, digest, "pulled bytes differ");
    for t in readers {
        assert_eq!(t.join().unwrap(), size);
    }
    // And a range from the end.
    let r = http()
        .get(&blob_url)
        .header("range", format!("bytes={}-", size - MIB))
        .send()
        .unwrap_or_else(|e| panic!("range GET failed: {e}\nwharf log tail:\n{}", log_tail(&w)));
    assert_eq!(r.status(), 206);
    let tail = r.bytes().unwrap();
    let mut expect = Vec::new();
    let mut n = Noise::new(seed, size);
    std::io::copy(&mut (&mut n).take(size - MIB), &mut std::io::sink()).unwrap();
    n.read_to_end(&mut expect).unwrap();
    assert!(
        tail.as_ref() == expect.as_slice(),
        "range of the last MiB differs"
    );

    let pull_hwm = vm_hwm_kib(pid);
    eprintln!(
        "pulled 4 x {size} bytes in {:.1?}; VmHWM {pull_hwm} KiB",
        t1.elapsed()
    );
    assert!(pull_hwm < MAX_HWM_KIB, "wharf peaked at {pull_hwm} KiB serving {size} bytes to 4 clients (bound {MAX_HWM_KIB} KiB)");
    eprintln!(
        "memory_stays_flat_pushing_and_pulling_1gib: {:.1?}",
        t0.elapsed()
    );
}
