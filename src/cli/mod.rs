//! Client subcommands that talk to a running wharf's management API:
//! tables for people, `--json` for scripts. [`local`] has the commands that
//! need no server.

pub mod local;

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::Value;

/// Where the server is and who we are.
#[derive(Args, Clone, Debug)]
pub struct Conn {
    /// Base URL of the wharf server.
    #[arg(long, env = "WHARF_URL", default_value = "http://127.0.0.1:5000", global = true)]
    pub url: String,
    /// Username (an admin, or robot$<name>).
    #[arg(long, env = "WHARF_USER", global = true)]
    pub user: Option<String>,
    /// Password or robot token (prefer the environment variable).
    #[arg(long, env = "WHARF_PASSWORD", hide_env_values = true, global = true)]
    pub password: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// Extra CA certificate (PEM) for an HTTPS server.
    #[arg(long, global = true)]
    pub ca_file: Option<std::path::PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum RobotCmd {
    /// Create a robot; its token is printed once.
    Create {
        name: String,
        /// Permission as PROJECT=ACTIONS, e.g. team=pull,push (repeatable).
        #[arg(long = "perm", value_name = "PROJECT=ACTIONS")]
        perms: Vec<String>,
        /// Lifetime, e.g. 30d (default: no expiry).
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// List robots.
    List,
    /// Revoke a robot (its credentials stop working at once).
    Revoke { name: String },
}

/// One client call, ready to run.
pub enum Call {
    Projects,
    Repos(Option<String>),
    Artifacts(String),
    Delete(String),
    Robot(RobotCmd),
    Quota { project: String, size: String },
    Prefetch { image: String, pin: bool },
}

struct Client {
    http: reqwest::Client,
    conn: Conn,
}

impl Client {
    fn new(conn: Conn) -> Result<Client, String> {
        let mut b = reqwest::Client::builder().no_proxy();
        if let Some(ca) = &conn.ca_file {
            let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| format!("{}: {e}", ca.display()))?;
            b = b.add_root_certificate(cert);
        }
        Ok(Client {
            http: b.build().map_err(|e| e.to_string())?,
            conn,
        })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}/api/v1/{path}", self.conn.url.trim_end_matches('/'));
        let mut r = self.http.request(method, &url);
        if let Some(u) = &self.conn.user {
            r = r.basic_auth(u, self.conn.password.as_deref());
        }
        if let Some(b) = body {
            r = r.header(reqwest::header::CONTENT_TYPE, "application/json").body(b.to_string());
        }
        let resp = r.send().await.map_err(|e| format!("cannot reach {}: {e}", self.conn.url))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let detail = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| {
                    let e = &v["errors"][0];
                    Some(format!("{}: {}", e["code"].as_str()?, e["detail"].as_str().unwrap_or("")))
                })
                .unwrap_or(text);
            return Err(format!("{status}: {detail}"));
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| format!("server sent invalid JSON: {e}"))
    }
}

fn human_size(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

fn when(v: &Value) -> String {
    match v.as_u64() {
        None | Some(0) => "-".into(),
        Some(s) => humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(s)).to_string(),
    }
}

/// Print rows as aligned columns.
fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells.iter().enumerate().map(|(i, c)| format!("{c:<width$}", width = w[i])).collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(header.iter().map(|s| s.to_string()).collect());
    for r in rows {
        line(r);
    }
}

async fn run_call(c: &Client, call: Call) -> Result<(), String> {
    use reqwest::Method;
    let json = c.conn.json;
    let print_json = |v: &Value| println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    match call {
        Call::Projects => {
            let v = c.call(Method::GET, "projects", None).await?;
            if json {
                print_json(&v);
            } else {
                let rows = v.as_array().cloned().unwrap_or_default().iter().map(|p| {
                    vec![
                        p["name"].as_str().unwrap_or("").to_string(),
                        if p["public"].as_bool() == Some(true) { "public" } else { "private" }.to_string(),
                        p["repositories"].to_string(),
                        human_size(p["usage"].as_u64().unwrap_or(0)),
                        p["quota"].as_u64().map(human_size).unwrap_or_else(|| "-".into()),
                    ]
                }).collect();
                table(&["PROJECT", "VISIBILITY", "REPOS", "USAGE", "QUOTA"], rows);
            }
        }
        Call::Repos(project) => {
            let projects: Vec<String> = match project {
                Some(p) => vec![p],
                None => c
                    .call(Method::GET, "projects", None)
                    .await?
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|p| p["name"].as_str().map(str::to_string))
                    .collect(),
            };
            let mut all = Vec::new();
            for p in projects {
                let v = c.call(Method::GET, &format!("projects/{p}/repositories"), None).await?;
                all.extend(v.as_array().cloned().unwrap_or_default());
            }
            if json {
                print_json(&Value::Array(all));
            } else {
                let rows = all
                    .iter()
                    .map(|r| vec![r["name"].as_str().unwrap_or("").to_string(), r["artifacts"].to_string(), r["tags"].to_string()])
                    .collect();
                table(&["REPOSITORY", "ARTIFACTS", "TAGS"], rows);
            }
        }
        Call::Artifacts(repo) => {
            let v = c.call(Method::GET, &format!("repositories/{repo}/artifacts"), None).await?;
            if json {
                print_json(&v);
            } else {
                let rows = v.as_array().cloned().unwrap_or_default().iter().map(|a| {
                    let tags: Vec<&str> = a["tags"].as_array().map(|t| t.iter().filter_map(|x| x.as_str()).collect()).unwrap_or_default();
                    let d = a["digest"].as_str().unwrap_or("");
                    vec![
                        d.chars().take(19).collect(),
                        if tags.is_empty() { "<untagged>".into() } else { tags.join(",") },
                        human_size(a["size"].as_u64().unwrap_or(0)),
                        a["media_type"].as_str().unwrap_or("").rsplit('.').nth(1).unwrap_or("").to_string(),
                        when(&a["pushed_at"]),
                        when(&a["last_pulled_at"]),
                    ]
                }).collect();
                table(&["DIGEST", "TAGS", "SIZE", "TYPE", "PUSHED", "LAST PULLED"], rows);
            }
        }
        Call::Delete(reference) => {
            let v = if let Some((repo, digest)) = reference.split_once('@') {
                c.call(Method::DELETE, &format!("repositories/{repo}/artifacts/{digest}"), None).await?
            } else if let Some((repo, tag)) = reference.rsplit_once(':') {
                c.call(Method::DELETE, &format!("repositories/{repo}/tags/{tag}"), None).await?
            } else {
                return Err("give <repo>@<digest> (artifact and all its tags) or <repo>:<tag> (one tag)".into());
            };
            if json {
                print_json(&v);
            } else if let Some(tags) = v["deleted_tags"].as_array() {
                let t: Vec<&str> = tags.iter().filter_map(|x| x.as_str()).collect();
                println!("deleted {} (tags removed: {})", reference, if t.is_empty() { "none".into() } else { t.join(", ") });
            } else {
                println!("deleted tag {reference}");
            }
        }
        Call::Robot(RobotCmd::Create { name, perms, expires_in }) => {
            let mut p: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for spec in perms {
                let (project, actions) = spec
                    .split_once('=')
                    .ok_or_else(|| format!("--perm {spec:?}: use PROJECT=ACTIONS, e.g. team=pull,push"))?;
                p.insert(project.to_string(), actions.split(',').map(str::to_string).collect());
            }
            let body = serde_json::json!({ "name": name, "permissions": p, "expires_in": expires_in });
            let v = c.call(Method::POST, "robots", Some(body)).await?;
            if json {
                print_json(&v);
            } else {
                println!("robot created: {}", v["username"].as_str().unwrap_or(""));
                println!("token (shown once, store it now): {}", v["token"].as_str().unwrap_or(""));
            }
        }
        Call::Robot(RobotCmd::List) => {
            let v = c.call(Method::GET, "robots", None).await?;
            if json {
                print_json(&v);
            } else {
                let rows = v.as_array().cloned().unwrap_or_default().iter().map(|r| {
                    let perms = r["permissions"]
                        .as_object()
                        .map(|o| {
                            o.iter()
                                .map(|(k, v)| {
                                    let a: Vec<&str> = v.as_array().map(|x| x.iter().filter_map(|y| y.as_str()).collect()).unwrap_or_default();
                                    format!("{k}={}", a.join(","))
                                })
                                .collect::<Vec<_>>()
                                .join(" ")
                        })
                        .unwrap_or_default();
                    let state = if r["revoked"].as_bool() == Some(true) {
                        "revoked"
                    } else if r["active"].as_bool() == Some(true) {
                        "active"
                    } else {
                        "expired"
                    };
                    vec![r["username"].as_str().unwrap_or("").to_string(), state.to_string(), perms, when(&r["expires_at"])]
                }).collect();
                table(&["USERNAME", "STATE", "PERMISSIONS", "EXPIRES"], rows);
            }
        }
        Call::Robot(RobotCmd::Revoke { name }) => {
            c.call(Method::DELETE, &format!("robots/{name}"), None).await?;
            if !json {
                println!("revoked robot${name}");
            }
        }
        Call::Prefetch { image, pin } => {
            let v = c
                .call(Method::POST, "prefetch", Some(serde_json::json!({ "image": image, "pin": pin })))
                .await?;
            if json {
                print_json(&v);
            } else {
                println!(
                    "{} -> {} {}: {} manifests, {} blobs, {}{}",
                    image,
                    v["repository"].as_str().unwrap_or(""),
                    v["digest"].as_str().unwrap_or(""),
                    v["manifests"],
                    v["blobs"],
                    human_size(v["bytes"].as_u64().unwrap_or(0)),
                    if v["pinned"] == true { ", pinned" } else { "" }
                );
            }
        }
        Call::Quota { project, size } => {
            let quota = if size == "none" { Value::Null } else { Value::String(size) };
            let v = c.call(Method::PUT, &format!("projects/{project}"), Some(serde_json::json!({ "quota": quota }))).await?;
            if json {
                print_json(&v);
            } else {
                println!("project {project}: quota {}", v["quota"].as_u64().map(human_size).unwrap_or_else(|| "none".into()));
            }
        }
    }
    Ok(())
}

/// Run a client call and turn failures into a message + exit code 1.
pub fn run(conn: Conn, call: Call) -> ExitCode {
    let Some(rt) = local::runtime() else { return ExitCode::FAILURE };
    let res = rt.block_on(async {
        let c = Client::new(conn)?;
        run_call(&c, call).await
    });
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wharf: {e}");
            ExitCode::FAILURE
        }
    }
}
