//! Garbage collection: offline `wharf gc --data-dir` (with `--dry-run`), its refusal
//! next to a running server, and GC racing a chunked upload.

mod support;

use support::disk::*;

use std::process::Command;

use support::*;

const CONFIG: &str = "remotes = []\n[storage]\ngc_grace = \"0s\"\n";

fn wharf_gc(w: &Wharf, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .arg("gc")
        .arg("--data-dir")
        .arg(&w.data_dir)
        .args(args)
        .env_remove("WHARF_CONFIG")
        .env_remove("WHARF_DATA_DIR")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn offline_gc_dry_run_reports_without_deleting() {
    let mut w = Wharf::start_with(Options {
        config: Some(CONFIG.into()),
        ..Options::default()
    });
    let kept = push_image(&w, "app/kept", "v1", 1);
    let orphan = push_blob(&w, "app/kept", &data(99, 5000));
    let gone = push_image(&w, "app/gone", "v1", 2);
    let r = w
        .req(
            reqwest::Method::DELETE,
            &format!("/v2/app/gone/manifests/{}", gone.digest),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);

    // A running wharf holds the data directory: point at the API instead.
    let (code, _, err) = wharf_gc(&w, &["--dry-run"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("in use") && err.contains("/api/v1/gc"),
        "{err}"
    );

    assert!(w.stop());
    let mut doomed = vec![orphan.clone(), gone.digest.clone(), gone.config.clone()];
    doomed.extend(gone.layers.iter().cloned());
    let (code, out, err) = wharf_gc(&w, &["--dry-run", "--grace", "0s"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("dry run") && out.contains("would remove 5 blobs"),
        "{out}"
    );
    for d in &doomed {
        assert!(out.contains(d.as_str()), "{d} not reported:\n{out}");
        assert!(blob_file(&w.data_dir, d).exists(), "dry run deleted {d}");
    }
    // JSON for scripts, and the grace period protects young blobs.
    let (code, out, _) = wharf_gc(&w, &["--dry-run", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["blobs_removed"], 0, "{v}");
    assert_eq!(v["blobs_in_grace"], 5, "{v}");

    let (code, out, err) = wharf_gc(&w, &["--grace", "0s"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("removed 5 blobs"), "{out}");
    for d in &doomed {
        assert!(!blob_file(&w.data_dir, d).exists(), "{d} still on disk");
    }
    for d in [&kept.digest, &kept.config, &kept.layers[0], &kept.layers[1]] {
        assert!(blob_file(&w.data_dir, d).exists(), "live {d} removed");
    }
    // The orphan's `_layers` link went with it.
    assert!(!w
        .data_dir
        .join("repos/app/kept/_layers/sha256")
        .join(&orphan[7..])
        .exists());

    w.restart();
    let r = w
        .req(
            reqwest::Method::HEAD,
            &format!("/v2/app/kept/blobs/{orphan}"),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = w
        .req(reqwest::Method::GET, "/v2/app/kept/manifests/v1")
        .header("accept", MT_OCI_MANIFEST)
        .send()
        .unwrap();
    assert_eq!(sha256(&r.bytes().unwrap()), kept.digest);
    for d in [&kept.config, &kept.layers[0], &kept.layers[1]] {
        let b = w
            .req(reqwest::Method::GET, &format!("/v2/app/kept/blobs/{d}"))
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        assert_eq!(&sha256(&b), d);
    }
}

fn gc_api(w: &Wharf, body: &str) -> serde_json::Value {
    let r = w
        .req(reqwest::Method::POST, "/api/v1/gc")
        .body(body.to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().unwrap()
}

#[test]
fn gc_racing_a_chunked_upload_keeps_it_intact() {
    // With an admin: online GC is a management call.
    let w = Wharf::start_with(Options {
        config: Some(CONFIG.into()),
        admin: true,
        ..Options::default()
    });
    // Something for GC to do meanwhile.
    let orphan = push_blob(&w, "app/x", &data(7, 4000));
    let blob = data(8, 300_000);
    let d = sha256(&blob);
    let r = w
        .req(reqwest::Method::POST, "/v2/app/x/blobs/uploads/")
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let mut loc = abs_url(&w, &header(&r, "location"));
    let mut off = 0;
    for (i, chunk) in blob[..200_000].chunks(100_000).enumerate() {
        let r = w
            .req_url(reqwest::Method::PATCH, &loc)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{off}-{}", off + chunk.len() - 1))
            .body(chunk.to_vec())
            .send()
            .unwrap();
        assert_eq!(r.status(), 202);
        loc = abs_url(&w, &header(&r, "location"));
        off += chunk.len();
        // GC between chunks, grace 0: the session must survive.
        let rep = gc_api(&w, if i == 0 { "{\"grace\": \"0s\"}" } else { "" });
        assert!(
            rep["removed"]
                .as_array()
                .unwrap()
                .iter()
                .all(|b| b["digest"] != d.as_str()),
            "{rep}"
        );
    }
    assert!(!blob_file(&w.data_dir, &orphan).exists(), "GC did run");
    let uploads: Vec<_> = std::fs::read_dir(w.data_dir.join("uploads"))
        .unwrap()
        .collect();
    assert_eq!(uploads.len(), 1, "the in-flight session is still there");
    let r = w.req_url(reqwest::Method::GET, &loc).send().unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "range"), "0-199999");
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = w
        .req_url(reqwest::Method::PUT, &format!("{loc}{sep}digest={d}"))
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("200000-{}", blob.len() - 1))
        .body(blob[200_000..].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text());
    let got = w
        .req(reqwest::Method::GET, &format!("/v2/app/x/blobs/{d}"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(got.len(), blob.len());
    assert_eq!(sha256(&got), d);
    // A dry run through the API reports it (unreferenced, grace 0) but
    // removes nothing; with the default grace (1h here: the config says 0s,
    // so ask explicitly) a young blob is kept.
    let rep = gc_api(&w, "{\"dry_run\": true}");
    assert_eq!(rep["dry_run"], true);
    assert!(
        rep["removed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["digest"] == d.as_str()),
        "{rep}"
    );
    let rep = gc_api(&w, "{\"grace\": \"1h\"}");
    assert_eq!(rep["blobs_removed"], 0, "{rep}");
    assert!(blob_file(&w.data_dir, &d).exists());
}
