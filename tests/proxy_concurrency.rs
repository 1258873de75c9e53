//! Pull-through cache under load (issue 3): 32 clients ask wharf for the
//! same uncached 200 MiB blob at once. The upstream is the real
//! Distribution registry (`support::upstream`) holding a generated image
//! whose one layer is 200 MiB (gzip with stored blocks: skopeo would
//! recompress a plain tar on push and change its digest); the registry's
//! access log counts the GETs.
//!
//! Asserted: exactly one upstream GET for the blob, 32 complete bodies with
//! the right sha256, and a bound on wharf's peak resident memory (VmHWM):
//! followers read the spool file, so memory must not grow with the blob
//! size or the number of clients. Nothing here is a timing assertion; the
//! timings are printed for the record.
mod support;

use support::disk::*;

use std::io::Read;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use sha2::Digest as _;
use support::image::{ImageSpec, LayerSpec, OciLayout};
use support::upstream::Upstream;
use support::{Options, Wharf};

const CLIENTS: usize = 32;
const LAYER_BYTES: u64 = 200 << 20;
/// Peak RSS allowed for wharf (a debug build) over the whole test.
const MAX_HWM_KIB: u64 = 200 << 10;

/// What one client saw.
#[derive(Debug)]
struct Outcome {
    status: u16,
    digest: String,
    bytes: u64,
    /// Response headers received / body finished, since the common start.
    headers_at: Duration,
    done_at: Duration,
}

/// GET `url`, hashing the body as it streams (never holding it in memory).
fn fetch_and_hash(url: &str, t0: Instant) -> Result<Outcome, String> {
    let mut r = support::http()
        .get(url)
        .send()
        .map_err(|e| format!("send: {e:?}"))?;
    let headers_at = t0.elapsed();
    let status = r.status().as_u16();
    if status != 200 {
        return Err(format!("status {status}: {}", r.text().unwrap_or_default()));
    }
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = r
            .read(&mut buf)
            .map_err(|e| format!("body after {bytes} bytes: {e:?}"))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok(Outcome {
        status,
        digest: format!("sha256:{}", hex::encode(h.finalize())),
        bytes,
        headers_at,
        done_at: t0.elapsed(),
    })
}

#[test]
fn thirty_two_cold_clients_one_upstream_get_bounded_memory() {
    let t_setup = Instant::now();
    let up = Upstream::anonymous();
    let repo = "perf/big";
    let layout_dir = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(layout_dir.path());
    let img = layout.image(
        "v1",
        &ImageSpec::oci(301, vec![LayerSpec::gzip(LAYER_BYTES)]),
    );
    up.push_layout(&layout, "v1", repo, "v1");
    let layer = img.layers[0].desc.clone();
    assert!(layer.size > LAYER_BYTES, "layer is {} bytes", layer.size);
    eprintln!(
        "generated and pushed a {} MiB layer in {:.1?}",
        layer.size >> 20,
        t_setup.elapsed()
    );
    assert_eq!(
        up.blob_gets(repo, &layer.digest),
        0,
        "the push itself GET the blob"
    );

    let w = Wharf::start_with(Options {
        // Followers send the spool with sendfile and hold no buffers.
        config: Some(up.remote_toml("up", "") + "[server]\nsendfile = true\n"),
        ..Default::default()
    });
    let pid = w.pid().unwrap();
    let hwm_idle = vm_hwm_kib(pid);

    let url = format!("{}/v2/up/{repo}/blobs/{}", w.url(), layer.digest);
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let t0 = Instant::now();
    let handles: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                fetch_and_hash(&url, t0)
            })
        })
        .collect();
    let results: Vec<Result<Outcome, String>> = handles
        .into_iter()
        .map(|h| h.join().expect("client thread"))
        .collect();
    let elapsed = t0.elapsed();
    let hwm = vm_hwm_kib(pid);
    let gets = up.blob_gets(repo, &layer.digest);

    let bad: Vec<_> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| !matches!(r, Ok(o) if o.status == 200 && o.digest == layer.digest && o.bytes == layer.size))
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {CLIENTS} clients did not get the blob ({}):\n{bad:#?}\nwharf log (tail):\n{}",
        bad.len(),
        layer.digest,
        tail(&w.logs(), 40)
    );
    assert_eq!(
        gets,
        1,
        "upstream GETs of the blob for {CLIENTS} concurrent cold clients; upstream log:\n{:#?}",
        up.access_log()
            .iter()
            .filter(|e| e.path.contains("/blobs/"))
            .collect::<Vec<_>>()
    );

    let ok: Vec<&Outcome> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    let last_headers = ok.iter().map(|o| o.headers_at).max().unwrap();
    let first_done = ok.iter().map(|o| o.done_at).min().unwrap();
    let overlapping = ok.iter().filter(|o| o.headers_at < first_done).count();
    eprintln!(
        "{CLIENTS} clients x {} MiB in {elapsed:.1?} ({:.0} MiB/s aggregate); last response headers at \
         {last_headers:.1?}, first body done at {first_done:.1?} ({overlapping} clients streaming at once); \
         wharf VmHWM {} MiB (idle {} MiB)",
        layer.size >> 20,
        (CLIENTS as f64 * layer.size as f64 / (1 << 20) as f64) / elapsed.as_secs_f64(),
        hwm >> 10,
        hwm_idle >> 10
    );
    // An ordering, not a timing: the test only exercises coalescing if the
    // clients really overlapped the one upstream fetch (200 MiB takes
    // seconds to stream to 32 clients; the requests start together).
    assert!(
        overlapping >= CLIENTS / 2,
        "only {overlapping} of {CLIENTS} clients had their response before the first one finished"
    );
    assert!(
        hwm < MAX_HWM_KIB,
        "wharf's peak RSS was {} MiB serving {CLIENTS} x {} MiB (bound {} MiB)",
        hwm >> 10,
        layer.size >> 20,
        MAX_HWM_KIB >> 10
    );

    // The blob is cached: with the upstream gone, a range of it (the last
    // MiB) still comes from wharf, byte-identical to the pushed layer.
    let mut up = up;
    up.stop();
    let start = layer.size - (1 << 20);
    let r = support::http()
        .get(&url)
        .header("Range", format!("bytes={start}-"))
        .send()
        .expect("range GET");
    assert_eq!(
        r.status(),
        206,
        "cached range with the upstream stopped; log:\n{}",
        tail(&w.logs(), 20)
    );
    let got = r.bytes().unwrap();
    let mut f = std::fs::File::open(layout.blob_path(&layer.digest)).unwrap();
    let mut want = Vec::new();
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(start)).unwrap();
    f.read_to_end(&mut want).unwrap();
    assert!(
        got.as_ref() == want.as_slice(),
        "cached range differs from the pushed layer"
    );
    let hwm_end = vm_hwm_kib(pid);
    assert!(
        hwm_end < MAX_HWM_KIB,
        "wharf's peak RSS reached {} MiB",
        hwm_end >> 10
    );
    eprintln!("total test time {:.1?}", t_setup.elapsed());
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
