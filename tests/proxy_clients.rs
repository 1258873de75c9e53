//! Real container clients pulling *through* wharf (issue 3), from a real
//! upstream (Debian's Distribution registry, `support::upstream`):
//!
//! - containerd mirror mode: `ctr images pull --hosts-dir DIR
//!   127.0.0.1:UPSTREAM/team/app:1` with a `hosts.toml` naming wharf as the
//!   mirror of the upstream's host, so containerd sends
//!   `/v2/team/app/...?ns=127.0.0.1:UPSTREAM` to wharf. The image unpacks,
//!   each blob is fetched from the upstream once, and after removing the
//!   image from containerd and stopping the upstream it pulls again from
//!   wharf's cache.
//! - The same for a Docker Hub–style name (`docker.io/library/...`), served
//!   by a remote whose `hosts` include `docker.io` and whose URL is the
//!   local upstream. Nothing leaves 127.0.0.1: hosts.toml's `server` is a
//!   local trap, and ctr's HTTP(S)_PROXY is a second trap that would catch
//!   any attempt to reach a non-loopback host; both must record nothing.
//! - Docker Engine: `docker pull 127.0.0.1:WHARF/up/team/app:1`, image ID and
//!   digest compared with what was pushed upstream, then again from cache
//!   with the upstream stopped.
//!
//! Without ctr / a containerd socket, or without a Docker engine, the tests
//! print a loud `SKIPPED: ...` line and pass.
mod support;

use std::path::Path;
use std::time::Instant;

use support::ctr::{write_hosts_toml, Ctr, SNAPSHOTTER};
use support::docker::{docker_or_explain, engine_available, stdout, Images};
use support::fake_upstream::FakeUpstream;
use support::image::{Image, ImageSpec, LayerSpec, OciLayout};
use support::upstream::Upstream;
use support::{have, Options, Wharf};

fn wharf_with(config: &str) -> Wharf {
    Wharf::start_with(Options {
        config: Some(config.to_string()),
        ..Default::default()
    })
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Generate an image in its own OCI layout and push it to `up` as
/// `repo:tag`.
fn push(up: &Upstream, dir: &Path, repo: &str, tag: &str, spec: &ImageSpec) -> Image {
    let layout = OciLayout::create(dir);
    let img = layout.image(tag, spec);
    up.push_layout(&layout, tag, repo, tag);
    img
}

/// User agents of the upstream's access log lines (the last quoted field
/// of each Combined Log Format line).
fn upstream_user_agents(up: &Upstream) -> Vec<String> {
    up.settle();
    let text = std::fs::read_to_string(&up.access_log_path).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("] \""))
        .filter_map(|l| {
            let l = l.trim_end().strip_suffix('"')?;
            Some(l[l.rfind('"')? + 1..].to_string())
        })
        .collect()
}

// ---------------------------------------------------------------------------
// containerd

/// Pull `reference` with `--hosts-dir` and check it unpacked as `img`.
fn ctr_pull_and_check(ctr: &Ctr, hosts: &Path, reference: &str, img: &Image, w: &Wharf) {
    let hosts = hosts.to_str().unwrap();
    let ctx = || format!("wharf log (tail):\n{}", tail(&plain_logs(w), 30));
    let out = ctr.run_or_explain(
        &[
            "images",
            "pull",
            "--hosts-dir",
            hosts,
            "--snapshotter",
            SNAPSHOTTER,
            reference,
        ],
        &ctx,
    );
    assert!(
        out.contains("unpacking linux/amd64"),
        "ctr did not unpack {reference}:\n{out}"
    );
    let ls = ctr.run_or_explain(&["images", "ls"], &ctx);
    let row = ls
        .lines()
        .find(|l| l.split_whitespace().next() == Some(reference))
        .unwrap_or_else(|| panic!("{reference} not in ctr images ls:\n{ls}"));
    assert_eq!(
        row.split_whitespace().nth(2),
        Some(img.manifest.digest.as_str()),
        "{row}"
    );
    let content = ctr.content();
    for d in std::iter::once(img.manifest.digest.clone()).chain(img.blob_digests()) {
        assert!(
            content.contains(&d),
            "{d} not in containerd's content store: {content:?}"
        );
    }
    let check = ctr.run_or_explain(&["images", "check", "--snapshotter", SNAPSHOTTER], &ctx);
    let line = check
        .lines()
        .find(|l| l.starts_with(reference))
        .unwrap_or_else(|| panic!("{check}"));
    assert!(line.contains("complete"), "image not complete: {line}");
    // Unpacked: one snapshot per layer.
    let snaps = ctr.list(&["snapshots", "--snapshotter", SNAPSHOTTER, "ls"]);
    assert_eq!(
        snaps.len().saturating_sub(1),
        img.layers.len(),
        "snapshots after unpacking: {snaps:?}"
    );
}

/// Status of a plain GET of a manifest path through wharf.
fn no_ns_status(w: &Wharf, path_and_query: &str) -> u16 {
    support::http()
        .get(format!("{}{path_and_query}", w.url()))
        .header("Accept", support::MT_OCI_MANIFEST)
        .send()
        .expect("GET through wharf")
        .status()
        .as_u16()
}

/// wharf logged a `request` line for `path` (the query, e.g. `ns=`, is not
/// part of the logged path).
fn wharf_logged(w: &Wharf, path: &str) -> bool {
    plain_logs(w).lines().any(|l| {
        l.contains("request")
            && (l.contains(&format!("target={path} ")) || l.contains(&format!("target={path}?")))
    })
}

/// wharf's log without terminal colour codes.
fn plain_logs(w: &Wharf) -> String {
    support::strip_ansi(&w.logs())
}

#[test]
fn containerd_mirror_mode_via_hosts_dir_then_cached_with_upstream_stopped() {
    let Some(ctr) = Ctr::connect_with_skopeo("wharf-proxy") else {
        return;
    };
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let mut up = Upstream::anonymous();
    let img = push(
        &up,
        &tmp.path().join("src"),
        "team/app",
        "1",
        &ImageSpec::oci(
            501,
            vec![LayerSpec::gzip(200 << 10), LayerSpec::gzip(1 << 20)],
        ),
    );
    let pushed_requests = upstream_user_agents(&up).len();
    let w = wharf_with(&up.remote_toml("up", "tag_ttl = \"1s\""));
    let hosts = tmp.path().join("certs.d");
    write_hosts_toml(
        &hosts,
        &up.host(),
        &up.url(),
        &w.url(),
        &["pull", "resolve"],
        None,
    );
    let reference = format!("{}/team/app:1", up.host());

    ctr_pull_and_check(&ctr, &hosts, &reference, &img, &w);

    // Everything went through wharf: it logged the requests (containerd's
    // `?ns=` named the upstream's host, which picked remote `up`), and the
    // upstream saw only wharf (its user agent), each blob exactly once.
    for p in [
        "/v2/team/app/manifests/1".to_string(),
        format!("/v2/team/app/blobs/{}", img.layers[1].desc.digest),
    ] {
        assert!(
            wharf_logged(&w, &p),
            "wharf did not log {p}:\n{}",
            tail(&plain_logs(&w), 30)
        );
    }
    // The bare path names no remote (and there is no default remote), so
    // wharf only found the image because containerd sent `?ns=`.
    assert_eq!(no_ns_status(&w, "/v2/team/app/manifests/1"), 404);
    assert_eq!(
        no_ns_status(&w, &format!("/v2/team/app/manifests/1?ns={}", up.host())),
        200
    );
    assert!(
        plain_logs(&w).contains("remote=up"),
        "no remote=up in wharf's log:\n{}",
        tail(&plain_logs(&w), 30)
    );
    for d in img.blob_digests() {
        assert_eq!(
            up.blob_gets("team/app", &d),
            1,
            "upstream GETs of {d}: {:#?}",
            up.access_log()
        );
    }
    let agents = upstream_user_agents(&up).split_off(pushed_requests);
    assert!(
        !agents.is_empty() && agents.iter().all(|a| a.starts_with("wharf/")),
        "the upstream was contacted by something other than wharf: {agents:?}"
    );

    // Remove the image and its content from containerd, stop the upstream:
    // the pull is served from wharf's cache (past the tag TTL, so wharf also
    // tries, and fails, to revalidate the tag).
    ctr.clear();
    let left: Vec<String> = ctr
        .content()
        .into_iter()
        .filter(|d| img.blob_digests().contains(d))
        .collect();
    assert!(left.is_empty(), "containerd still holds {left:?}");
    up.stop();
    std::thread::sleep(std::time::Duration::from_millis(1200));
    ctr_pull_and_check(&ctr, &hosts, &reference, &img, &w);
    eprintln!("containerd mirror mode test: {:.1?}", t0.elapsed());
}

#[test]
fn containerd_docker_io_names_via_hosts_alias_never_leave_loopback() {
    let Some(mut ctr) = Ctr::connect_with_skopeo("wharf-proxy") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let up = Upstream::anonymous();
    let img = push(
        &up,
        &tmp.path().join("src"),
        "library/wharftest",
        "1",
        &ImageSpec::oci(502, vec![LayerSpec::gzip(64 << 10)]),
    );
    // Traps: hosts.toml's fallback server, and the proxy for any
    // non-loopback host ctr might try to reach (registry-1.docker.io).
    let server_trap = FakeUpstream::start();
    let proxy_trap = FakeUpstream::start();
    ctr.env = ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"]
        .iter()
        .map(|k| (k.to_string(), proxy_trap.url()))
        .collect();

    // A remote serving Docker Hub names from the local upstream.
    let w = wharf_with(&up.remote_toml("hub", "hosts = [\"docker.io\", \"index.docker.io\"]"));
    let hosts = tmp.path().join("certs.d");
    write_hosts_toml(
        &hosts,
        "docker.io",
        &server_trap.url(),
        &w.url(),
        &["pull", "resolve"],
        None,
    );

    let reference = "docker.io/library/wharftest:1";
    ctr_pull_and_check(&ctr, &hosts, reference, &img, &w);
    assert!(
        wharf_logged(&w, "/v2/library/wharftest/manifests/1"),
        "{}",
        tail(&plain_logs(&w), 30)
    );
    assert_eq!(no_ns_status(&w, "/v2/library/wharftest/manifests/1"), 404);
    assert_eq!(
        no_ns_status(&w, "/v2/library/wharftest/manifests/1?ns=docker.io"),
        200
    );
    for d in img.blob_digests() {
        assert_eq!(
            up.blob_gets("library/wharftest", &d),
            1,
            "upstream GETs of {d}"
        );
    }
    assert!(
        server_trap.requests().is_empty(),
        "ctr fell back to the server: {:#?}",
        server_trap.requests()
    );
    assert!(
        proxy_trap.requests().is_empty(),
        "something tried to leave 127.0.0.1: {:#?}",
        proxy_trap.requests()
    );
}

// ---------------------------------------------------------------------------
// Docker Engine

/// A Docker engine answers, and skopeo (which pushes the upstream's
/// images) is there.
fn docker_engine() -> bool {
    if !engine_available() {
        return false;
    }
    if !have("skopeo") {
        eprintln!("SKIPPED: skopeo is not installed (tests/run.sh installs it)");
        return false;
    }
    true
}

/// Run docker, panic with `context()` on failure; trimmed stdout.
fn docker_ok(args: &[&str], context: &dyn Fn() -> String) -> String {
    stdout(&docker_or_explain(args, context))
}

#[test]
fn docker_pull_through_wharf_prefix_then_from_cache() {
    if !docker_engine() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut up = Upstream::anonymous();
    // Unique content per run, so the daemon cannot already have the image.
    let seed = 600 + (std::process::id() as u64 % 1000) * 10;
    let img = push(
        &up,
        &tmp.path().join("src"),
        "team/app",
        "1",
        &ImageSpec::oci(
            seed,
            vec![LayerSpec::gzip(100 << 10), LayerSpec::gzip(300 << 10)],
        ),
    );
    let w = wharf_with(&up.remote_toml("up", ""));
    let reference = format!("{}/up/team/app:1", w.host());
    let by_digest = format!("{}/up/team/app@{}", w.host(), img.manifest.digest);
    let _cleanup = Images(vec![reference.clone(), by_digest.clone()]);
    let ctx = || format!("wharf log (tail):\n{}", tail(&plain_logs(&w), 30));

    docker_ok(&["pull", &reference], &ctx);
    // The image ID of an image pulled from a registry is its config digest.
    let id = docker_ok(
        &["image", "inspect", "--format", "{{.Id}}", &reference],
        &ctx,
    );
    assert_eq!(id, img.config.digest, "docker's image ID");
    let digests = docker_ok(
        &[
            "image",
            "inspect",
            "--format",
            "{{json .RepoDigests}}",
            &reference,
        ],
        &ctx,
    );
    assert!(
        digests.contains(&format!("{}/up/team/app@{}", w.host(), img.manifest.digest)),
        "RepoDigests {digests} do not name the pushed manifest {}",
        img.manifest.digest
    );
    for d in img.blob_digests() {
        assert_eq!(up.blob_gets("team/app", &d), 1, "upstream GETs of {d}");
    }
    assert!(
        wharf_logged(&w, "/v2/up/team/app/manifests/1"),
        "{}",
        tail(&plain_logs(&w), 30)
    );

    // Again from wharf's cache, with the upstream stopped.
    docker_ok(&["rmi", &reference], &ctx);
    up.stop();
    docker_ok(&["pull", &by_digest], &ctx);
    assert_eq!(
        docker_ok(
            &["image", "inspect", "--format", "{{.Id}}", &by_digest],
            &ctx
        ),
        img.config.digest
    );
}
