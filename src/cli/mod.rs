//! Client subcommands that talk to a running wharf's management API:
//! tables for people, `--json` for scripts. [`local`] has the commands that
//! need no server.

pub mod check;
pub mod local;

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::registry::views::{
    Artifact, DeletedArtifact, DeletedTag, NewRobot, PrefetchReport, PrefetchRequest, ProjectUpdate, ProjectView, RepositoryView,
    RobotView,
};

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

    /// Send a request; returns the body of a 2xx answer, or the server's
    /// error message.
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Vec<u8>>) -> Result<String, String> {
        let url = format!("{}/api/v1/{path}", self.conn.url.trim_end_matches('/'));
        let mut r = self.http.request(method, &url);
        if let Some(u) = &self.conn.user {
            r = r.basic_auth(u, self.conn.password.as_deref());
        }
        if let Some(b) = body {
            r = r.header(reqwest::header::CONTENT_TYPE, "application/json").body(b);
        }
        let resp = r.send().await.map_err(|e| format!("cannot reach {}: {e}", self.conn.url))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!("{status}: {}", error_text(&text)));
        }
        Ok(text)
    }

    /// A JSON call answered with a `T`.
    async fn call<T: DeserializeOwned>(&self, method: reqwest::Method, path: &str, body: Option<&impl Serialize>) -> Result<T, String> {
        let body = body.map(|b| serde_json::to_vec(b)).transpose().map_err(|e| e.to_string())?;
        let text = self.send(method, path, body).await?;
        serde_json::from_str(&text).map_err(|e| format!("server sent unexpected JSON: {e}"))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        self.call(reqwest::Method::GET, path, None::<&()>).await
    }
}

/// The message of an OCI error body (`code: message`), or the body itself.
fn error_text(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<OciError>,
    }
    #[derive(serde::Deserialize)]
    struct OciError {
        code: String,
        #[serde(default)]
        message: String,
        #[serde(default)]
        detail: serde_json::Value,
    }
    match serde_json::from_str::<Errors>(body).ok().and_then(|e| e.errors.into_iter().next()) {
        Some(e) => match e.detail.as_str().filter(|d| !d.is_empty() && *d != e.message) {
            Some(d) => format!("{}: {} ({d})", e.code, e.message),
            None => format!("{}: {}", e.code, e.message),
        },
        None => body.trim().to_string(),
    }
}

use crate::config::format_size as human_size;

fn when(secs: Option<u64>) -> String {
    match secs {
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

/// Print `v` as JSON (`--json`), or as a table/line by `human`.
fn show<T: Serialize>(json: bool, v: &T, human: impl FnOnce(&T)) {
    if json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        human(v);
    }
}

async fn projects(c: &Client) -> Result<(), String> {
    let v: Vec<ProjectView> = c.get("projects").await?;
    show(c.conn.json, &v, |v| {
        let rows = v
            .iter()
            .map(|p| {
                vec![
                    p.name.clone(),
                    if p.public { "public" } else { "private" }.to_string(),
                    p.repositories.to_string(),
                    human_size(p.usage),
                    p.quota.map(human_size).unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        table(&["PROJECT", "VISIBILITY", "REPOS", "USAGE", "QUOTA"], rows);
    });
    Ok(())
}

async fn repos(c: &Client, project: Option<String>) -> Result<(), String> {
    let projects: Vec<String> = match project {
        Some(p) => vec![p],
        None => c.get::<Vec<ProjectView>>("projects").await?.into_iter().map(|p| p.name).collect(),
    };
    let mut all: Vec<RepositoryView> = Vec::new();
    for p in projects {
        all.extend(c.get::<Vec<RepositoryView>>(&format!("projects/{p}/repositories")).await?);
    }
    show(c.conn.json, &all, |all| {
        let rows = all.iter().map(|r| vec![r.name.clone(), r.artifacts.to_string(), r.tags.to_string()]).collect();
        table(&["REPOSITORY", "ARTIFACTS", "TAGS"], rows);
    });
    Ok(())
}

async fn artifacts(c: &Client, repo: &str) -> Result<(), String> {
    let v: Vec<Artifact> = c.get(&format!("repositories/{repo}/artifacts")).await?;
    show(c.conn.json, &v, |v| {
        let rows = v
            .iter()
            .map(|a| {
                vec![
                    a.digest.to_string().chars().take(19).collect(),
                    if a.tags.is_empty() { "<untagged>".into() } else { a.tags.join(",") },
                    human_size(a.size),
                    a.media_type.rsplit('.').nth(1).unwrap_or("").to_string(),
                    when(Some(a.pushed_at)),
                    when(a.last_pulled_at),
                ]
            })
            .collect();
        table(&["DIGEST", "TAGS", "SIZE", "TYPE", "PUSHED", "LAST PULLED"], rows);
    });
    Ok(())
}

async fn delete(c: &Client, reference: &str) -> Result<(), String> {
    use reqwest::Method;
    if let Some((repo, digest)) = reference.split_once('@') {
        let v: DeletedArtifact = c.call(Method::DELETE, &format!("repositories/{repo}/artifacts/{digest}"), None::<&()>).await?;
        show(c.conn.json, &v, |v| {
            let tags = if v.deleted_tags.is_empty() { "none".into() } else { v.deleted_tags.join(", ") };
            println!("deleted {reference} (tags removed: {tags})");
        });
    } else if let Some((repo, tag)) = reference.rsplit_once(':') {
        let v: DeletedTag = c.call(Method::DELETE, &format!("repositories/{repo}/tags/{tag}"), None::<&()>).await?;
        show(c.conn.json, &v, |_| println!("deleted tag {reference}"));
    } else {
        return Err("give <repo>@<digest> (artifact and all its tags) or <repo>:<tag> (one tag)".into());
    }
    Ok(())
}

async fn robot(c: &Client, cmd: RobotCmd) -> Result<(), String> {
    use reqwest::Method;
    match cmd {
        RobotCmd::Create { name, perms, expires_in } => {
            let mut permissions: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for spec in perms {
                let (project, actions) = spec
                    .split_once('=')
                    .ok_or_else(|| format!("--perm {spec:?}: use PROJECT=ACTIONS, e.g. team=pull,push"))?;
                permissions.insert(project.to_string(), actions.split(',').map(str::to_string).collect());
            }
            let body = NewRobot { name, permissions, expires_in };
            let v: RobotView = c.call(Method::POST, "robots", Some(&body)).await?;
            show(c.conn.json, &v, |v| {
                println!("robot created: {}", v.username);
                println!("token (shown once, store it now): {}", v.token.as_deref().unwrap_or(""));
            });
        }
        RobotCmd::List => {
            let v: Vec<RobotView> = c.get("robots").await?;
            show(c.conn.json, &v, |v| {
                let rows = v.iter().map(robot_row).collect();
                table(&["USERNAME", "STATE", "PERMISSIONS", "EXPIRES"], rows);
            });
        }
        RobotCmd::Revoke { name } => {
            c.send(Method::DELETE, &format!("robots/{name}"), None).await?;
            if !c.conn.json {
                println!("revoked robot${name}");
            }
        }
    }
    Ok(())
}

fn robot_row(r: &RobotView) -> Vec<String> {
    let perms: Vec<String> = r.permissions.iter().map(|(k, v)| format!("{k}={}", v.join(","))).collect();
    let state = if r.revoked {
        "revoked"
    } else if r.active {
        "active"
    } else {
        "expired"
    };
    vec![r.username.clone(), state.to_string(), perms.join(" "), when(r.expires_at)]
}

async fn prefetch(c: &Client, image: String, pin: bool) -> Result<(), String> {
    let body = PrefetchRequest { image: image.clone(), pin: Some(pin) };
    let v: PrefetchReport = c.call(reqwest::Method::POST, "prefetch", Some(&body)).await?;
    show(c.conn.json, &v, |v| {
        println!(
            "{image} -> {} {}: {} manifests, {} blobs, {}{}",
            v.repository,
            v.digest,
            v.manifests,
            v.blobs,
            human_size(v.bytes),
            if v.pinned { ", pinned" } else { "" }
        );
    });
    Ok(())
}

async fn quota(c: &Client, project: &str, size: &str) -> Result<(), String> {
    let quota = match size {
        "none" => None,
        s => Some(crate::config::parse_size(s).map_err(|e| e.to_string())?),
    };
    let body = ProjectUpdate { quota: Some(quota), ..ProjectUpdate::default() };
    let p: crate::config::Project = c.call(reqwest::Method::PUT, &format!("projects/{project}"), Some(&body)).await?;
    show(c.conn.json, &p, |p| {
        println!("project {project}: quota {}", p.quota.map(human_size).unwrap_or_else(|| "none".into()));
    });
    Ok(())
}

async fn run_call(c: &Client, call: Call) -> Result<(), String> {
    match call {
        Call::Projects => projects(c).await,
        Call::Repos(project) => repos(c, project).await,
        Call::Artifacts(repo) => artifacts(c, &repo).await,
        Call::Delete(reference) => delete(c, &reference).await,
        Call::Robot(cmd) => robot(c, cmd).await,
        Call::Prefetch { image, pin } => prefetch(c, image, pin).await,
        Call::Quota { project, size } => quota(c, &project, &size).await,
    }
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
