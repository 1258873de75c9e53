//! A fake scanner adapter for tests, speaking Harbor's Pluggable Scanner
//! API v1.1: metadata, scan requests (it pulls the manifest from wharf
//! with the credential it was given, and tries the same credential on
//! another repository), and reports (first `302 Refresh-After: 1`, then a
//! canned report with 1 Critical, 2 High and 1 Medium finding, or a
//! malformed one).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::fake_upstream::{Request, Response, Server};

/// What the fake's report endpoint answers once ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reports {
    Canned,
    Malformed,
}

/// One scan request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub repository: String,
    pub digest: String,
    pub mime_type: String,
    /// The `Authorization` wharf sent the adapter.
    pub adapter_auth: Option<String>,
    /// Status of the manifest GET with the pull credential.
    pub own_status: u16,
    /// Status of the same GET on the other repository.
    pub other_status: u16,
}

struct State {
    reports: Reports,
    other_repo: String,
    polls: HashMap<String, u32>,
    seen: Vec<Seen>,
}

pub struct FakeScanner {
    server: Server,
    state: Arc<Mutex<State>>,
}

/// The canned findings, as a report for `artifact`.
fn canned(artifact: &serde_json::Value) -> serde_json::Value {
    let v = |id: &str, pkg: &str, sev: &str| json!({"id": id, "package": pkg, "version": "1.0", "fix_version": "1.1", "severity": sev, "description": "test finding", "links": [format!("https://cve.example/{id}")]});
    json!({
        "generated_at": "2026-11-29T01:00:00Z",
        "artifact": artifact,
        "scanner": {"name": "Fake", "vendor": "wharf tests", "version": "1.1"},
        "severity": "Critical",
        "vulnerabilities": [v("CVE-1", "openssl", "Critical"), v("CVE-2", "openssl", "High"), v("CVE-3", "zlib", "High"), v("CVE-4", "busybox", "Medium")]
    })
}

/// GET `<registry>/v2/<repo>/manifests/<digest>` with `auth`: the status.
fn pull_status(registry: &str, repo: &str, digest: &str, auth: &str) -> u16 {
    reqwest::blocking::Client::new()
        .get(format!("{registry}/v2/{repo}/manifests/{digest}"))
        .header("authorization", auth)
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

fn scan(state: &Mutex<State>, req: &Request) -> Response {
    let body: serde_json::Value = match serde_json::from_slice(&req.body) {
        Ok(v) => v,
        Err(e) => return Response::json(400, &json!({"error": {"message": e.to_string()}})),
    };
    let (reg, art) = (&body["registry"], &body["artifact"]);
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    let (url, auth) = (s(&reg["url"]), s(&reg["authorization"]));
    let (repo, digest) = (s(&art["repository"]), s(&art["digest"]));
    let other = state.lock().unwrap().other_repo.clone();
    let seen = Seen {
        own_status: pull_status(&url, &repo, &digest, &auth),
        other_status: pull_status(&url, &other, &digest, &auth),
        adapter_auth: req.header("authorization").map(str::to_string),
        mime_type: s(&art["mime_type"]),
        repository: repo,
        digest,
    };
    let mut st = state.lock().unwrap();
    st.seen.push(seen);
    let id = format!("scan-{}", st.seen.len());
    st.polls.insert(id.clone(), 0);
    Response::json(202, &json!({"id": id}))
}

fn report(state: &Mutex<State>, id: &str) -> Response {
    let mut st = state.lock().unwrap();
    let Some(n) = st.polls.get_mut(id) else {
        return Response::json(404, &json!({"error": {"message": "no such scan"}}));
    };
    *n += 1;
    if *n == 1 {
        return Response::new(302).header("Refresh-After", "1");
    }
    let i: usize = id.trim_start_matches("scan-").parse().unwrap_or(1);
    let seen = &st.seen[i - 1];
    let artifact = json!({"repository": seen.repository, "digest": seen.digest});
    match st.reports {
        Reports::Canned => Response::json(200, &canned(&artifact)),
        Reports::Malformed => Response::json(200, &json!({"vulnerabilities": "lots"})),
    }
}

impl FakeScanner {
    /// `other_repo`: where the fake also tries the credential it was given.
    pub fn start(reports: Reports, other_repo: &str) -> FakeScanner {
        let state = Arc::new(Mutex::new(State {
            reports,
            other_repo: other_repo.to_string(),
            polls: HashMap::new(),
            seen: Vec::new(),
        }));
        let st = state.clone();
        let server = Server::start(move |req, conn| {
            let resp = match (req.method.as_str(), req.path.as_str()) {
                ("GET", "/api/v1/metadata") => Response::json(
                    200,
                    &json!({
                        "scanner": {"name": "Fake", "vendor": "wharf tests", "version": "1.1"},
                        "capabilities": [{"consumes_mime_types": ["application/vnd.oci.image.manifest.v1+json"],
                                          "produces_mime_types": ["application/vnd.security.vulnerability.report; version=1.1"]}],
                    }),
                ),
                ("POST", "/api/v1/scan") => scan(&st, &req),
                ("GET", p) if p.starts_with("/api/v1/scan/") && p.ends_with("/report") => {
                    report(&st, &p["/api/v1/scan/".len()..p.len() - "/report".len()])
                }
                _ => Response::new(404),
            };
            let _ = resp.write(&mut conn.stream, false);
        });
        FakeScanner { server, state }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Every scan request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// A `[[scanners]]` entry for this fake (the adapter's Authorization
    /// from environment variable `SCANNER_AUTH`).
    pub fn toml(&self) -> String {
        scanner_toml(&self.url())
    }
}

/// A `[[scanners]]` entry for an adapter at `url`.
pub fn scanner_toml(url: &str) -> String {
    format!(
        "\n[[scanners]]\nname = \"fake\"\nurl = \"{url}\"\nsecret_headers = {{ Authorization = {{ backend = \"env\", token = \"SCANNER_AUTH\" }} }}\ntimeout = \"5s\"\nreport_timeout = \"60s\"\n"
    )
}
