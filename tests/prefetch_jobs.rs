//! Issue 11: prefetch is a job. `POST /api/v1/prefetch` answers `202` at
//! once with the job and its `Location`; `GET /api/v1/prefetch/{id}`
//! reports its state, blobs and bytes done of their totals while it runs,
//! the exact totals when done and the error when it failed. At most
//! `limits.max_prefetch_jobs` run at once.
mod support;

use std::time::Duration;

use serde_json::Value;
use support::disk::blob_file;
use support::fake_upstream::{BlobMode, FakeImage, FakeUpstream};
use support::{assert_oci_error, prefetch, start_prefetch, wait_prefetch, Options, Wharf};

fn start(up: &FakeUpstream, limits: &str) -> Wharf {
    Wharf::start_with(Options {
        config: Some(format!(
            "{limits}\n[[projects]]\nname = \"team\"\n{}",
            up.remote_toml("up", None, "")
        )),
        admin: true,
        ..Options::default()
    })
}

/// Manifest plus config plus layers, as the upstream holds them.
fn image_bytes(up: &FakeUpstream, img: &FakeImage) -> u64 {
    img.manifest.len() as u64
        + img
            .blobs()
            .iter()
            .map(|d| up.blob(d).unwrap().len() as u64)
            .sum::<u64>()
}

fn job(w: &Wharf, id: &str) -> Value {
    w.req(reqwest::Method::GET, &format!("/api/v1/prefetch/{id}"))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

#[test]
fn progress_is_reported_until_done_with_exact_totals() {
    let up = FakeUpstream::start();
    let img = up.add_image_sized("lib/big", "1", 7, &[1500, 300_000, 200_000]);
    // Slow layers, so the job is seen half-way.
    for d in &img.layers {
        up.set_blob_mode(
            d,
            BlobMode::Trickle {
                chunk: 16 * 1024,
                delay: Duration::from_millis(40),
            },
        );
    }
    let w = start(&up, "");
    let started = start_prefetch(&w, "up/lib/big:1", true);
    assert_eq!(started["state"], "running", "{started}");
    let id = started["id"].as_str().unwrap().to_string();
    let total = image_bytes(&up, &img);

    let (mut last_done, mut seen_midway) = (0u64, false);
    let done = loop {
        let j = job(&w, &id);
        let bytes_done = j["bytes_done"].as_u64().unwrap();
        assert!(bytes_done >= last_done, "progress went backwards: {j}");
        last_done = bytes_done;
        if j["state"] != "running" {
            break j;
        }
        if j["resolved"] == true {
            assert_eq!(j["bytes_total"].as_u64(), Some(total), "{j}");
            assert_eq!(j["blobs_total"], 4, "{j}");
            seen_midway |= bytes_done > 0 && bytes_done < total;
        }
        std::thread::sleep(Duration::from_millis(30));
    };
    assert!(seen_midway, "never saw the job half-way");
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(
        (done["bytes_done"].as_u64(), done["bytes_total"].as_u64()),
        (Some(total), Some(total)),
        "{done}"
    );
    assert_eq!(
        (
            done["blobs_done"].as_u64(),
            done["blobs_total"].as_u64(),
            done["manifests"].as_u64()
        ),
        (Some(4), Some(4), Some(1))
    );
    assert_eq!(
        (done["digest"].as_str(), done["repository"].as_str()),
        (Some(img.digest.as_str()), Some("up/lib/big"))
    );
    assert!(
        done["finished_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
            && done["error"].is_null(),
        "{done}"
    );
    for d in img.blobs() {
        assert!(blob_file(&w.data_dir, &d).exists(), "{d} not cached");
    }
    // Listed, newest first.
    let list: Value = w
        .req(reqwest::Method::GET, "/api/v1/prefetch")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(list[0]["id"].as_str(), Some(id.as_str()));
    // An image already cached is done at once with the same totals.
    let again = prefetch(&w, "up/lib/big:1", false);
    assert_eq!(
        (again["state"].as_str(), again["bytes_total"].as_u64()),
        (Some("done"), Some(total)),
        "{again}"
    );
}

#[test]
fn failures_are_reported_with_their_reason() {
    let up = FakeUpstream::start();
    let img = up.add_image("lib/bad", "1", 3);
    up.set_blob_mode(&img.layers[1], BlobMode::WrongBytes);
    let w = start(&up, "");
    // The remote has no such image: the job fails and says so.
    let missing = prefetch(&w, "up/lib/nosuch:1", true);
    assert_eq!(missing["state"], "failed", "{missing}");
    let e = missing["error"].as_str().unwrap();
    assert!(e.contains("not found") && e.contains("lib/nosuch"), "{e}");
    // Wrong bytes for a layer: failed, naming the digest check.
    let bad = prefetch(&w, "up/lib/bad:1", true);
    assert_eq!(bad["state"], "failed", "{bad}");
    assert!(bad["error"].as_str().unwrap().contains("digest"), "{bad}");
    assert!(
        bad["bytes_done"].as_u64() < bad["bytes_total"].as_u64(),
        "{bad}"
    );
    // Refused before any job: not a remote, a bad name, an unknown job.
    let r = w
        .req(reqwest::Method::POST, "/api/v1/prefetch")
        .body(r#"{"image": "team/app:1"}"#)
        .send()
        .unwrap();
    assert_oci_error(r, 400, "UNSUPPORTED");
    let r = w
        .req(reqwest::Method::POST, "/api/v1/prefetch")
        .body(r#"{"image": "up/Bad Name"}"#)
        .send()
        .unwrap();
    assert_oci_error(r, 400, "UNSUPPORTED");
    let r = w
        .req(reqwest::Method::GET, "/api/v1/prefetch/nosuch")
        .send()
        .unwrap();
    let v = assert_oci_error(r, 404, "NAME_UNKNOWN");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no prefetch job nosuch"),
        "{v}"
    );
}

#[test]
fn running_jobs_are_limited() {
    let up = FakeUpstream::start();
    let slow = up.add_image("lib/slow", "1", 5);
    up.add_image("lib/other", "1", 6);
    // The slow image's big layer never finishes while the test runs.
    up.set_blob_mode(&slow.layers[1], BlobMode::StallAfter(100));
    let w = start(&up, "[limits]\nmax_prefetch_jobs = 1\n");
    let first = start_prefetch(&w, "up/lib/slow:1", true);
    let r = w
        .req(reqwest::Method::POST, "/api/v1/prefetch")
        .body(r#"{"image": "up/lib/other:1"}"#)
        .send()
        .unwrap();
    let v = assert_oci_error(r, 429, "TOOMANYREQUESTS");
    let m = v["errors"][0]["message"].as_str().unwrap();
    assert!(
        m.contains("limits.max_prefetch_jobs") && m.contains("1 prefetch jobs are running"),
        "{m}"
    );
    assert_eq!(job(&w, first["id"].as_str().unwrap())["state"], "running");
    // A job that ended frees its slot.
    drop(up);
    let ended = wait_prefetch(&w, first["id"].as_str().unwrap());
    assert_eq!(ended["state"], "failed", "{ended}");
}
