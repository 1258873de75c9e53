//! Faults, against the real binary (issue "Hardening", "Then prove it"):
//! kill -9 at random moments of pushes and pull-through fetches, a disk
//! that fills up, and remotes that hang, reset or trickle.
mod support;

use support::disk::*;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Method;
use support::fake_upstream::{BlobMode, FakeUpstream, Fault};
use support::image::fast_sha256_file;
use support::*;

/// A tiny deterministic generator (xorshift64*), so a failing run can be
/// repeated with the seed it prints.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Every blob file holds exactly the bytes its name says; nothing is left
/// in `tmp/` by the start-up.
fn assert_store_consistent(data: &Path) {
    for f in files_under(&data.join("blobs")) {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        assert_eq!(
            fast_sha256_file(&f),
            format!("sha256:{name}"),
            "blob file {} does not match its name",
            f.display()
        );
    }
    assert!(
        files_under(&data.join("tmp")).is_empty(),
        "temp files survived a restart"
    );
}

/// Push `bytes` to `repo` in one streamed request; the status, or `None`
/// when the connection broke.
fn push(w_url: &str, repo: &str, bytes: Vec<u8>, chunked: bool) -> Option<u16> {
    let d = sha256(&bytes);
    let c = http();
    if chunked {
        let r = c
            .post(format!("{w_url}/v2/{repo}/blobs/uploads/"))
            .send()
            .ok()?;
        let loc = r.headers().get("location")?.to_str().ok()?.to_string();
        let loc = if loc.starts_with("http") {
            loc
        } else {
            format!("{w_url}{loc}")
        };
        let sep = if loc.contains('?') { '&' } else { '?' };
        let r = c
            .put(format!("{loc}{sep}digest={d}"))
            .body(bytes)
            .send()
            .ok()?;
        return Some(r.status().as_u16());
    }
    c.post(format!("{w_url}/v2/{repo}/blobs/uploads/?digest={d}"))
        .body(bytes)
        .send()
        .ok()
        .map(|r| r.status().as_u16())
}

/// GET a blob whole; its digest, or `None` when the body broke.
fn pull(w_url: &str, path: &str) -> Option<(u16, String)> {
    let r = http().get(format!("{w_url}{path}")).send().ok()?;
    let status = r.status().as_u16();
    let body = r.bytes().ok()?;
    Some((status, sha256(&body)))
}

/// 50 cycles of a push (monolithic or chunked) or a cold pull-through,
/// each interrupted by kill -9 at a random moment; after every restart the
/// store is consistent and the interrupted operation succeeds on retry.
#[test]
fn kill_9_at_random_moments_of_pushes_and_pull_throughs() {
    let seed = std::env::var("FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_F00D_u64);
    eprintln!("FAULT_SEED={seed}");
    let mut rng = Rng(seed | 1);
    let up = FakeUpstream::start();
    let mut w = Wharf::start_with(Options {
        config: Some(format!(
            "[storage]\ngc_grace = \"0s\"\n{}",
            up.remote_toml("up", None, "")
        )),
        ..Options::default()
    });
    let mut kinds = [0usize; 3];
    for cycle in 0..50u64 {
        let len = (512 << 10) + rng.below(3 << 20) as usize;
        let bytes = data(seed ^ (cycle * 7919), len);
        let d = sha256(&bytes);
        let kind = rng.below(3) as usize;
        kinds[kind] += 1;
        let url = w.url();
        let b2 = bytes.clone();
        let pull_path = format!("/v2/up/lib/c{cycle}/blobs/{d}");
        let p2 = pull_path.clone();
        if kind == 2 {
            up.add_blob(bytes.clone());
            up.set_blob_mode(
                &d,
                BlobMode::Trickle {
                    chunk: 256 << 10,
                    delay: Duration::from_millis(20),
                },
            );
        }
        let op = std::thread::spawn(move || match kind {
            0 => push(&url, "team/crash", b2, false).map(|s| s.to_string()),
            1 => push(&url, "team/crash", b2, true).map(|s| s.to_string()),
            _ => pull(&url, &p2).map(|(s, h)| format!("{s} {h}")),
        });
        std::thread::sleep(Duration::from_millis(rng.below(250)));
        w.kill();
        let _ = op.join();
        w.restart();
        assert_store_consistent(&w.data_dir);
        // The interrupted operation succeeds on retry.
        match kind {
            0 | 1 => assert_eq!(
                push(&w.url(), "team/crash", bytes, kind == 1),
                Some(201),
                "cycle {cycle}: retry of the push"
            ),
            _ => assert_eq!(
                pull(&w.url(), &pull_path),
                Some((200, d.clone())),
                "cycle {cycle}: retry of the pull-through"
            ),
        }
        let r = http()
            .get(format!(
                "{}/v2/{}/blobs/{d}",
                w.url(),
                if kind == 2 {
                    "up/lib/c".to_string() + &cycle.to_string()
                } else {
                    "team/crash".into()
                }
            ))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            sha256(&r.bytes().unwrap()),
            d,
            "cycle {cycle}: a blob served wrong bytes"
        );
    }
    assert_store_consistent(&w.data_dir);
    eprintln!("cycles by kind (monolithic, chunked, pull-through): {kinds:?}");
}

/// A tmpfs of its own, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// `None` (after a loud SKIPPED line) where mounting is not allowed.
    fn mount(size_mib: u64) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(SmallDisk { dir }),
            Ok(o) => {
                eprintln!(
                    "SKIPPED: cannot mount a small tmpfs (needs root): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fill the disk until `leave` bytes are free; returns the filler file.
    fn fill(&self, leave: u64) -> PathBuf {
        let filler = self.path().join("filler");
        let free = fs_free(self.path());
        let len = free.saturating_sub(leave);
        std::fs::write(&filler, vec![0u8; len as usize]).unwrap();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Free bytes on the filesystem holding `p`.
fn fs_free(p: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(p)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A full disk during a push and during a pull-through: the client's error
/// says the disk is full, nothing partial becomes visible, reads keep
/// working, and writes work again once there is space.
#[test]
fn a_full_disk_is_reported_and_survived() {
    let Some(disk) = SmallDisk::mount(48) else {
        return;
    };
    let up = FakeUpstream::start();
    let big_remote = data(77, 16 << 20);
    let remote_d = up.add_blob(big_remote.clone());
    let mut w = Wharf::start_with(Options {
        config: Some(up.remote_toml("up", None, "")),
        data_dir: Some(disk.path().join("data")),
        ..Options::default()
    });
    let small = push_image(&w, "team/app", "v1", 1);
    let filler = disk.fill(4 << 20);

    let big = data(78, 16 << 20);
    let d = sha256(&big);
    let r = http()
        .post(format!("{}/v2/team/app/blobs/uploads/?digest={d}", w.url()))
        .body(big.clone())
        .send()
        .unwrap();
    let v = assert_oci_error(r, 507, "UNAVAILABLE");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("storage is full"),
        "{v}"
    );
    assert_eq!(
        http()
            .head(format!("{}/v2/team/app/blobs/{d}", w.url()))
            .send()
            .unwrap()
            .status(),
        404
    );

    let r = http()
        .get(format!("{}/v2/up/lib/big/blobs/{remote_d}", w.url()))
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap_or_default();
    assert_eq!(status, 507, "pull-through on a full disk: {text}");
    assert!(text.contains("storage is full"), "{text}");
    assert!(
        files_under(&w.data_dir.join("tmp")).is_empty(),
        "a failed write left temp files"
    );

    // Reads keep working.
    let r = http()
        .get(format!("{}/v2/team/app/manifests/v1", w.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(sha256(&r.bytes().unwrap()), small.digest);

    // Space again: the same writes succeed.
    std::fs::remove_file(filler).unwrap();
    let r = http()
        .post(format!("{}/v2/team/app/blobs/uploads/?digest={d}", w.url()))
        .body(big)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text());
    assert_eq!(
        pull(&w.url(), &format!("/v2/up/lib/big/blobs/{remote_d}")),
        Some((200, remote_d.clone()))
    );
    w.restart();
    assert_store_consistent(&w.data_dir);
}

/// Remotes that hang after the headers, reset mid-body, or trickle a byte
/// at a time: the client gets an answer within the configured bounds.
#[test]
fn hanging_resetting_and_trickling_remotes_are_bounded() {
    let up = FakeUpstream::start();
    let stall = up.add_blob(data(1, 200_000));
    let reset = up.add_blob(data(2, 200_000));
    let trickle = up.add_blob(data(3, 200_000));
    up.set_blob_mode(&stall, BlobMode::StallAfter(1000));
    up.set_blob_mode(&reset, BlobMode::ResetAfter(5000));
    up.set_blob_mode(
        &trickle,
        BlobMode::Trickle {
            chunk: 1,
            delay: Duration::from_millis(500),
        },
    );
    up.fail_where(Some("/manifests/hang"), None, Fault::Hang);
    let extra = "read_timeout = \"1s\"\nrequest_timeout = \"2s\"\nmax_retries = 0\nmin_speed = \"100B/s\"\nmin_speed_window = \"2s\"";
    let w = Wharf::start_with(Options {
        config: Some(up.remote_toml("up", None, extra)),
        ..Options::default()
    });

    let t = Instant::now();
    let r = w
        .req(Method::GET, "/v2/up/lib/app/manifests/hang")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 424, "{}", r.status());
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "a hanging manifest took {:?}",
        t.elapsed()
    );
    for (what, d) in [("stall", &stall), ("reset", &reset), ("trickle", &trickle)] {
        let t = Instant::now();
        let got = pull(&w.url(), &format!("/v2/up/lib/app/blobs/{d}"));
        assert_ne!(
            got.as_ref().map(|g| g.1.as_str()),
            Some(d.as_str()),
            "{what}: the blob arrived whole?"
        );
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "{what}: the client waited {:?}",
            t.elapsed()
        );
        assert!(
            !w.data_dir
                .join(format!("blobs/sha256/{}/{}", &d[7..9], &d[7..]))
                .exists(),
            "{what}: cached"
        );
        eprintln!("{what}: answered in {:?} ({got:?})", t.elapsed());
    }
}
