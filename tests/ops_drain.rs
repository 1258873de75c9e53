//! Graceful drain (issue 6): SIGTERM closes the listener at once, a
//! download in flight completes, and wharf exits 0; past the grace period
//! it exits 0 anyway.
mod support;

use std::io::Read;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use support::fake_upstream::{BlobMode, FakeUpstream};
use support::{Options, Wharf};

fn wharf(up: &FakeUpstream, server: &str) -> Wharf {
    Wharf::start_with(Options {
        config: Some(format!(
            "[server]\n{server}\n{}",
            up.remote_toml("up", None, "")
        )),
        ..Default::default()
    })
}

fn sigterm(w: &Wharf) {
    let ok = Command::new("kill")
        .arg("-TERM")
        .arg(w.pid().unwrap().to_string())
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Poll until connecting to `w` is refused.
fn wait_refused(w: &Wharf, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&w.addr, Duration::from_millis(200)).is_err() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn download_in_flight_completes_after_sigterm() {
    let up = FakeUpstream::start();
    let img = up.add_image_sized("team/slow", "v1", 61, &[1_000_000]);
    let layer = img.layers[0].clone();
    // ~2.5 s upstream: 40 chunks of 25 kB, 60 ms apart.
    up.set_blob_mode(
        &layer,
        BlobMode::Trickle {
            chunk: 25_000,
            delay: Duration::from_millis(60),
        },
    );
    let mut w = wharf(&up, "shutdown_grace = \"20s\"");
    let url = format!("{}/v2/up/team/slow/blobs/{layer}", w.url());

    let dl = std::thread::spawn(move || {
        let mut r = support::http().get(url).send().expect("GET blob");
        assert_eq!(r.status(), 200);
        let mut body = Vec::new();
        r.read_to_end(&mut body).map(|_| body)
    });
    // Wait until the download is under way (the upstream was asked).
    let deadline = Instant::now() + Duration::from_secs(10);
    while up.blob_gets("team/slow", &layer) == 0 {
        assert!(Instant::now() < deadline, "the upstream was never asked");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    sigterm(&w);
    assert!(
        wait_refused(&w, Duration::from_secs(2)),
        "new connections still accepted after SIGTERM"
    );
    assert!(
        !dl.is_finished(),
        "download ended before the drain could be observed"
    );

    let body = dl
        .join()
        .unwrap()
        .expect("download interrupted by shutdown");
    assert_eq!(
        support::sha256(&body),
        layer,
        "drained download is not the blob"
    );
    assert!(t0.elapsed() < Duration::from_secs(15));
    assert!(
        w.stop(),
        "wharf did not exit 0 after draining:\n{}",
        w.logs()
    );
    let logs = w.logs();
    assert!(logs.contains("draining in-flight requests"), "{logs}");
    assert!(logs.contains("drained"), "{logs}");
}

#[test]
fn grace_period_bounds_the_drain() {
    let up = FakeUpstream::start();
    let img = up.add_image_sized("team/stuck", "v1", 62, &[500_000]);
    let layer = img.layers[0].clone();
    // The upstream sends a little and then nothing.
    up.set_blob_mode(&layer, BlobMode::StallAfter(10_000));
    let mut w = wharf(&up, "shutdown_grace = \"1s\"");
    let url = format!("{}/v2/up/team/stuck/blobs/{layer}", w.url());
    let dl = std::thread::spawn(move || {
        if let Ok(mut r) = support::http().get(url).send() {
            let mut sink = Vec::new();
            let _ = r.read_to_end(&mut sink);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while up.blob_gets("team/stuck", &layer) == 0 {
        assert!(Instant::now() < deadline, "the upstream was never asked");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    sigterm(&w);
    assert!(wait_refused(&w, Duration::from_secs(2)));
    // `stop` sends another SIGTERM (ignored while draining) and waits.
    assert!(
        w.stop(),
        "wharf did not exit 0 after the grace period:\n{}",
        w.logs()
    );
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "exit took {took:?} with a 1s grace"
    );
    assert!(w.logs().contains("grace period over"), "{}", w.logs());
    let _ = dl.join();
}

#[test]
fn upload_in_flight_completes_after_sigterm() {
    // A chunked upload whose body arrives slowly across the SIGTERM.
    let mut w = Wharf::start_with(Options {
        config: Some("remotes = []\n[server]\nshutdown_grace = \"20s\"\n".into()),
        ..Default::default()
    });
    let blob = support::data(63, 600_000);
    let digest = support::sha256(&blob);
    let url = format!("{}/v2/team/up/blobs/uploads/?digest={digest}", w.url());
    let started = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = started.clone();
    let body_chunks: Vec<Vec<u8>> = blob.chunks(60_000).map(|c| c.to_vec()).collect();
    let up = std::thread::spawn(move || {
        let stream = body_chunks.into_iter().enumerate().map(move |(i, c)| {
            if i == 1 {
                s2.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            std::thread::sleep(Duration::from_millis(150));
            Ok::<_, std::io::Error>(c)
        });
        let body = reqwest::blocking::Body::new(IterReader::new(stream));
        support::http()
            .post(url)
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .map(|r| r.status().as_u16())
    });
    while !started.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(10));
    }
    sigterm(&w);
    assert!(wait_refused(&w, Duration::from_secs(2)));
    assert_eq!(up.join().unwrap().expect("upload interrupted"), 201);
    assert!(w.stop(), "{}", w.logs());
    // The blob is in the store after a restart.
    w.restart();
    let r = support::http()
        .get(format!("{}/v2/team/up/blobs/{digest}", w.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(support::sha256(&r.bytes().unwrap()), digest);
}

/// A `Read` over an iterator of chunks (a slow request body).
struct IterReader<I> {
    it: I,
    cur: std::io::Cursor<Vec<u8>>,
}

impl<I> IterReader<I> {
    fn new(it: I) -> Self {
        IterReader {
            it,
            cur: std::io::Cursor::new(Vec::new()),
        }
    }
}

impl<I: Iterator<Item = std::io::Result<Vec<u8>>>> Read for IterReader<I> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.cur.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            match self.it.next() {
                Some(c) => self.cur = std::io::Cursor::new(c?),
                None => return Ok(0),
            }
        }
    }
}
