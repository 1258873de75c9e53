//! Serving over TLS (issue 6): a test CA and server certificate made here
//! with rcgen; curl negotiates HTTP/2 (and HTTP/1.1) by ALPN; skopeo and
//! containerd pull over HTTPS trusting the test CA; the certificate is
//! rotated while serving; bad certificates are refused at start-up (naming
//! the key) and on reload (the old one stays).
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::ctr::{write_hosts_toml, Ctr};
use support::pki::{pki, Pki};
use support::{wait_until, Options, Wharf};

/// Files for one test: `tls/{tls.crt,tls.key}`, `ca-<name>/ca.crt`.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tls")).unwrap();
        Files { dir }
    }
    fn cert(&self) -> PathBuf {
        self.dir.path().join("tls/tls.crt")
    }
    fn key(&self) -> PathBuf {
        self.dir.path().join("tls/tls.key")
    }
    /// Install `p` as the served pair (key first, then cert, each by
    /// atomic rename as tools like cert-manager do).
    fn install(&self, p: &Pki) {
        let tmp = self.dir.path().join("tls/.new");
        std::fs::write(&tmp, &p.key_pem).unwrap();
        std::fs::rename(&tmp, self.key()).unwrap();
        std::fs::write(&tmp, &p.cert_pem).unwrap();
        std::fs::rename(&tmp, self.cert()).unwrap();
    }
    /// A directory holding `ca.crt` (skopeo `--*-cert-dir`, curl `--cacert`).
    fn ca_dir(&self, name: &str, p: &Pki) -> PathBuf {
        let d = self.dir.path().join(format!("ca-{name}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("ca.crt"), &p.ca_pem).unwrap();
        d
    }
    fn config(&self, extra: &str) -> String {
        format!(
            "remotes = []\n[server]\n{extra}\n[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\nreload_interval = \"200ms\"\n",
            self.cert().display(),
            self.key().display()
        )
    }
}

fn https(w: &Wharf) -> String {
    format!("https://{}", w.addr)
}

fn start_tls(files: &Files) -> Wharf {
    Wharf::start_with(Options {
        config: Some(files.config("")),
        ..Default::default()
    })
}

/// A blocking client trusting only `ca_pem`.
fn client(ca_pem: &str) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "--noproxy", "*", "-o", "/dev/null", "-v"])
        .args(args)
        .output()
        .expect("run curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn http2_and_http11_by_alpn_on_one_port() {
    if !support::have("curl") {
        eprintln!("SKIPPED: curl is not installed");
        return;
    }
    let f = Files::new();
    let p = pki("a");
    f.install(&p);
    let ca = f.ca_dir("a", &p).join("ca.crt");
    let w = start_tls(&f);
    let url = format!("{}/v2/", https(&w));
    let (ok, err) = curl(&["--http2", "--cacert", ca.to_str().unwrap(), &url]);
    assert!(ok, "curl --http2 failed:\n{err}\n{}", w.logs());
    assert!(
        err.contains("< HTTP/2 200"),
        "HTTP/2 was not negotiated:\n{err}"
    );
    assert!(err.contains("ALPN") && err.contains("h2"), "{err}");
    let (ok, err) = curl(&["--http1.1", "--cacert", ca.to_str().unwrap(), &url]);
    assert!(ok, "curl --http1.1 failed:\n{err}");
    assert!(err.contains("< HTTP/1.1 200"), "{err}");
    // Plain HTTP on the TLS port is not served.
    let (ok, _) = curl(&["--max-time", "5", &format!("http://{}/v2/", w.addr)]);
    assert!(!ok, "plain HTTP answered on the TLS port");
    // Health endpoints over TLS too.
    let c = client(&p.ca_pem);
    assert_eq!(
        c.get(format!("{}/healthz", https(&w)))
            .send()
            .unwrap()
            .status(),
        200
    );
}

/// Push an image over HTTPS with reqwest; returns (manifest digest, blobs).
fn push_https(
    c: &reqwest::blocking::Client,
    base: &str,
    repo: &str,
    tag: &str,
    seed: u64,
) -> (String, Vec<String>) {
    let cfg = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[]}},\"seed\":{seed}}}")
        .into_bytes();
    let layer = support::data(seed, 200_000);
    let mut digests = Vec::new();
    for b in [&cfg, &layer] {
        let d = support::sha256(b);
        let r = c
            .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
            .header("content-type", "application/octet-stream")
            .body(b.to_vec())
            .send()
            .unwrap();
        assert_eq!(r.status(), 201, "push blob over https: {:?}", r.text());
        digests.push(d);
    }
    let m = support::image_manifest(
        support::MT_OCI_MANIFEST,
        support::descriptor(support::MT_OCI_CONFIG, &digests[0], cfg.len()),
        vec![support::descriptor(
            support::MT_OCI_LAYER,
            &digests[1],
            layer.len(),
        )],
        serde_json::json!({}),
    );
    let r = c
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("content-type", support::MT_OCI_MANIFEST)
        .body(m.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "push manifest over https: {:?}", r.text());
    (support::sha256(&m), digests)
}

#[test]
fn skopeo_pulls_over_https_with_the_test_ca() {
    if !support::have("skopeo") {
        eprintln!("SKIPPED: skopeo is not installed");
        return;
    }
    let f = Files::new();
    let p = pki("a");
    f.install(&p);
    let ca_dir = f.ca_dir("a", &p);
    let w = start_tls(&f);
    let (digest, blobs) = push_https(&client(&p.ca_pem), &https(&w), "team/tls", "v1", 7);

    let out_dir = f.dir.path().join("pulled");
    let out = Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "--preserve-digests",
            "--src-no-creds",
        ])
        .arg(format!("--src-cert-dir={}", ca_dir.display()))
        .arg(format!("docker://{}/team/tls:v1", w.host()))
        .arg(format!("oci:{}:v1", out_dir.display()))
        .env("NO_PROXY", "*")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo pull over https: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        w.logs()
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());
    for d in blobs {
        let hex = d.trim_start_matches("sha256:");
        let got = std::fs::read(out_dir.join("blobs/sha256").join(hex)).unwrap();
        assert_eq!(support::sha256(&got), d);
    }

    // Without the CA, skopeo refuses the certificate.
    let out = Command::new("skopeo")
        .args(["--insecure-policy", "inspect", "--raw", "--no-creds"])
        .arg(format!(
            "--cert-dir={}",
            f.dir.path().join("empty").display()
        ))
        .arg(format!("docker://{}/team/tls:v1", w.host()))
        .output()
        .unwrap();
    assert!(!out.status.success(), "skopeo trusted an unknown CA");
}

#[test]
fn containerd_pulls_over_https_with_ca_in_hosts_toml() {
    let Some(ctr) = Ctr::connect("wharf-ops-tls") else {
        return;
    };
    let f = Files::new();
    let p = pki("a");
    f.install(&p);
    let ca = f.ca_dir("a", &p).join("ca.crt");
    let w = start_tls(&f);
    let (digest, blobs) = push_https(&client(&p.ca_pem), &https(&w), "team/ctr", "v1", 8);

    // hosts.toml naming wharf over HTTPS with the test CA.
    let hosts = f.dir.path().join("certs.d");
    write_hosts_toml(
        &hosts,
        &w.host(),
        &https(&w),
        &https(&w),
        &["pull", "resolve"],
        Some(&ca),
    );
    let reference = format!("{}/team/ctr:v1", w.host());
    ctr.run_or_explain(
        &[
            "content",
            "fetch",
            "--hosts-dir",
            hosts.to_str().unwrap(),
            &reference,
        ],
        &|| w.logs(),
    );
    let listed = ctr.content();
    for d in std::iter::once(&digest).chain(&blobs) {
        assert!(
            listed.contains(d),
            "{d} not fetched by containerd: {listed:?}"
        );
    }
}

#[test]
fn certificate_rotation_while_serving() {
    let f = Files::new();
    let a = pki("a");
    let b = pki("b");
    f.install(&a);
    let w = start_tls(&f);
    let url = format!("{}/v2/", https(&w));

    // A client with a kept-alive connection made under certificate A.
    let old = client(&a.ca_pem);
    assert_eq!(old.get(&url).send().unwrap().status(), 200);
    assert!(
        client(&b.ca_pem).get(&url).send().is_err(),
        "B's CA trusted A's certificate?"
    );

    f.install(&b);
    wait_until(
        "the new certificate to be served",
        Duration::from_secs(10),
        || {
            client(&b.ca_pem)
                .get(&url)
                .send()
                .is_ok_and(|r| r.status() == 200)
        },
    );
    // New connections get B: A's CA no longer verifies them.
    assert!(
        client(&a.ca_pem).get(&url).send().is_err(),
        "still serving the old certificate"
    );
    // The connection established under A still works.
    for _ in 0..3 {
        assert_eq!(old.get(&url).send().unwrap().status(), 200);
    }

    // A broken replacement is refused; B stays in use.
    let failures = || w.logs().matches("TLS certificate reload failed").count();
    let before = failures();
    std::fs::write(
        f.cert(),
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    wait_until(
        "the reload failure to be logged",
        Duration::from_secs(10),
        || failures() > before,
    );
    assert_eq!(client(&b.ca_pem).get(&url).send().unwrap().status(), 200);

    // SIGHUP reloads at once (after the files are good again).
    let c = pki("c");
    f.install(&c);
    let _ = Command::new("kill")
        .arg("-HUP")
        .arg(w.pid().unwrap().to_string())
        .status();
    wait_until("SIGHUP reload", Duration::from_secs(10), || {
        client(&c.ca_pem)
            .get(&url)
            .send()
            .is_ok_and(|r| r.status() == 200)
    });
    let m = client(&c.ca_pem)
        .get(format!("{}/metrics", https(&w)))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(m.contains("wharf_tls_reloads_total{result=\"ok\"}"), "{m}");
    // At least the broken file (a poll between the key's and the
    // certificate's rename may add one more).
    let errors = m
        .lines()
        .find_map(|l| l.strip_prefix("wharf_tls_reloads_total{result=\"error\"} "))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(errors.is_some_and(|n| n >= 1), "{m}");
}

/// Run `wharf serve` expecting it to fail at start-up; returns stderr.
fn start_fails(config: &str, dir: &Path) -> String {
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, config).unwrap();
    let out = Command::new(support::bin())
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{}", support::free_port()),
        ])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--config")
        .arg(&cfg)
        .env_remove("WHARF_CONFIG")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "wharf started with a bad certificate"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_certificate_at_start_up_names_the_key() {
    let f = Files::new();
    let a = pki("a");
    // Missing files.
    let err = start_fails(&f.config(""), f.dir.path());
    assert!(err.contains("server.tls.cert_file"), "{err}");
    // Garbage certificate.
    std::fs::write(f.cert(), "hello").unwrap();
    std::fs::write(f.key(), &a.key_pem).unwrap();
    let err = start_fails(&f.config(""), f.dir.path());
    assert!(err.contains("server.tls.cert_file"), "{err}");
    // A key that does not belong to the certificate.
    let b = pki("b");
    std::fs::write(f.cert(), &a.cert_pem).unwrap();
    std::fs::write(f.key(), &b.key_pem).unwrap();
    let err = start_fails(&f.config(""), f.dir.path());
    assert!(err.contains("server.tls.key_file"), "{err}");
    // Half a [server.tls] table.
    let err = start_fails(
        &format!("[server.tls]\ncert_file = \"{}\"\n", f.cert().display()),
        f.dir.path(),
    );
    assert!(err.contains("server.tls.key_file"), "{err}");
}
