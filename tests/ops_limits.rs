//! Connection limits (issue 6): slowloris clients sending headers byte by
//! byte are cut off after `header_read_timeout`; header floods are answered
//! 431; silent and stalled connections are closed after `idle_timeout`;
//! `max_connections` queues the excess; and through all of it the server
//! keeps serving everyone else.
mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use support::{Options, Wharf};

fn wharf(server: &str) -> Wharf {
    Wharf::start_with(Options {
        config: Some(format!("remotes = []\n[server]\n{server}\n")),
        ..Default::default()
    })
}

/// A normal request answers 200 quickly.
fn assert_serves(w: &Wharf) {
    let t = Instant::now();
    let r = support::http()
        .get(format!("{}/v2/", w.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "normal request took {:?}",
        t.elapsed()
    );
}

/// Read until EOF or error; returns what was read.
fn drain(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[test]
fn slowloris_connections_are_cut_off_and_others_are_served() {
    let w = wharf("header_read_timeout = \"1s\"\nidle_timeout = \"30s\"");
    let addr = w.addr;
    let start = Instant::now();
    let slow: Vec<_> = (0..16)
        .map(|i| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                let head = format!(
                    "GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow-{i}: {}\r\n",
                    "a".repeat(200)
                );
                // One byte every 50 ms: would take 10+ s to finish.
                for b in head.bytes() {
                    if s.write_all(&[b]).is_err() {
                        return Instant::now();
                    }
                    let mut buf = [0u8; 512];
                    match s.read(&mut buf) {
                        Ok(0) => return Instant::now(),
                        Ok(_) => return Instant::now(), // an error response (408)
                        Err(e)
                            if e.kind() == std::io::ErrorKind::WouldBlock
                                || e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(_) => return Instant::now(),
                    }
                }
                panic!("slow client {i} was allowed to send its whole header block");
            })
        })
        .collect();
    // Meanwhile everybody else is served.
    for _ in 0..5 {
        assert_serves(&w);
        std::thread::sleep(Duration::from_millis(100));
    }
    for t in slow {
        let cut = t.join().unwrap();
        let after = cut.duration_since(start);
        assert!(
            after < Duration::from_secs(4),
            "slow client cut off only after {after:?}"
        );
    }
    assert_serves(&w);
}

#[test]
fn header_floods_are_refused_with_431() {
    let w = wharf("max_header_size = \"16KiB\"\nmax_headers = 50");
    // Too many header fields.
    let mut req = String::from("GET /v2/ HTTP/1.1\r\nHost: x\r\n");
    for i in 0..200 {
        req.push_str(&format!("X-Flood-{i}: y\r\n"));
    }
    req.push_str("\r\n");
    let mut s = TcpStream::connect(w.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let resp = String::from_utf8_lossy(&drain(&mut s)).into_owned();
    assert!(
        resp.starts_with("HTTP/1.1 431"),
        "too many headers answered: {resp:?}"
    );

    // One huge header value (bigger than max_header_size).
    let mut s = TcpStream::connect(w.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let big = format!(
        "GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(64 << 10)
    );
    let _ = s.write_all(big.as_bytes());
    let resp = String::from_utf8_lossy(&drain(&mut s)).into_owned();
    assert!(
        resp.is_empty() || resp.starts_with("HTTP/1.1 431"),
        "huge header answered: {resp:?}"
    );

    // An endless header block never grows memory: it is cut at the limit.
    let mut s = TcpStream::connect(w.addr).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n").unwrap();
    let line = format!("X-More: {}\r\n", "c".repeat(1000));
    let mut sent = 0usize;
    let mut cut = false;
    while sent < (8 << 20) {
        if s.write_all(line.as_bytes()).is_err() {
            cut = true;
            break;
        }
        sent += line.len();
    }
    assert!(cut, "server swallowed {sent} bytes of headers");
    let _ = s.shutdown(Shutdown::Both);

    assert_serves(&w);
}

#[test]
fn idle_and_silent_connections_are_closed() {
    let w = wharf("header_read_timeout = \"30s\"\nidle_timeout = \"1s\"");
    // Connects and says nothing.
    let mut silent = TcpStream::connect(w.addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let t = Instant::now();
    let got = drain(&mut silent);
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "silent connection kept {took:?}"
    );
    assert!(
        got.is_empty() || String::from_utf8_lossy(&got).starts_with("HTTP/1.1 408"),
        "{got:?}"
    );

    // A keep-alive connection after one request, then idle.
    let mut ka = TcpStream::connect(w.addr).unwrap();
    ka.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    ka.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let t = Instant::now();
    let got = String::from_utf8_lossy(&drain(&mut ka)).into_owned();
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "idle keep-alive kept {:?}",
        t.elapsed()
    );

    // A client that stops reading a large download is dropped too.
    let blob = support::data(81, 8 << 20);
    let d = support::push_blob(&w, "team/big", &blob);
    // A small receive buffer so the server's writes block quickly (and the
    // kernel cannot buffer the whole blob).
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(32 << 10).unwrap();
    sock.connect(&w.addr.into()).unwrap();
    let mut lazy: TcpStream = sock.into();
    lazy.write_all(format!("GET /v2/team/big/blobs/{d} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    lazy.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let got = drain(&mut lazy);
    assert!(
        got.len() < blob.len(),
        "a client that stopped reading got the whole blob"
    );
    assert_serves(&w);
}

#[test]
fn max_connections_queues_the_excess() {
    let w = wharf("max_connections = 4\nheader_read_timeout = \"30s\"\nidle_timeout = \"2s\"");
    // Four connections that never send anything take every slot.
    let hogs: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(w.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // The fifth waits in the backlog until the idle timeout frees slots.
    let t = Instant::now();
    let r = support::http()
        .get(format!("{}/v2/", w.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(1000),
        "fifth connection served at once ({waited:?}): no limit"
    );
    assert!(
        waited < Duration::from_secs(6),
        "fifth connection waited {waited:?}"
    );
    drop(hogs);
    assert_serves(&w);
}

#[test]
fn max_concurrent_fetches_bounds_upstream_downloads() {
    use support::fake_upstream::{BlobMode, FakeUpstream};
    let up = FakeUpstream::start();
    let img = up.add_image_sized("team/q", "v1", 91, &[100_000, 100_000]);
    let (a, b) = (img.layers[0].clone(), img.layers[1].clone());
    // A stalls after a few bytes until the remote's read timeout ends it.
    up.set_blob_mode(&a, BlobMode::StallAfter(1000));
    let w = Wharf::start_with(Options {
        config: Some(up.remote_toml(
            "up",
            None,
            "max_concurrent_fetches = 1\nread_timeout = \"2s\"\nmax_retries = 0",
        )),
        ..Default::default()
    });
    let url_a = format!("{}/v2/up/team/q/blobs/{a}", w.url());
    let ta = std::thread::spawn(move || {
        if let Ok(mut r) = support::http().get(url_a).send() {
            let mut sink = Vec::new();
            let _ = r.read_to_end(&mut sink);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while up.blob_gets("team/q", &a) == 0 {
        assert!(Instant::now() < deadline, "A never reached the upstream");
        std::thread::sleep(Duration::from_millis(20));
    }
    let url_b = format!("{}/v2/up/team/q/blobs/{b}", w.url());
    let t = Instant::now();
    let tb = std::thread::spawn(move || {
        support::http()
            .get(url_b)
            .send()
            .unwrap()
            .bytes()
            .unwrap()
            .to_vec()
    });
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        up.blob_gets("team/q", &b),
        0,
        "B went upstream while A held the only slot"
    );
    let body = tb.join().unwrap();
    assert_eq!(support::sha256(&body), b);
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "B did not wait for the slot"
    );
    assert_eq!(up.blob_gets("team/q", &b), 1);
    let _ = ta.join();
}
