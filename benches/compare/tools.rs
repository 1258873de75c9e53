//! The clients users run, as separate processes: `curl` (bodies to
//! `/dev/null` or a file), `skopeo copy` and `wrk`. Each is bounded by a
//! time limit so that no run can hang.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Res;

/// Longest any single client process may run.
const CLIENT_LIMIT_SECS: u32 = 600;

/// What curl reports with `-w`.
#[derive(Debug, Clone)]
pub struct CurlOut {
    pub status: u16,
    /// Body bytes received (`%{size_download}`).
    pub bytes: u64,
    /// curl's own `%{time_total}`: from the start of the transfer to its end,
    /// without the process start-up.
    pub time_total: Duration,
}

/// A curl command line being built.
pub struct Curl {
    args: Vec<String>,
}

/// A started curl process.
pub struct Running {
    child: Child,
    what: String,
}

impl Curl {
    /// `curl -s` GET of `url`, body to `/dev/null`, no proxy from the
    /// environment, bounded by [`CLIENT_LIMIT_SECS`].
    pub fn get(url: &str) -> Curl {
        let args = [
            "-s",
            "--noproxy",
            "*",
            "--max-time",
            &CLIENT_LIMIT_SECS.to_string(),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download} %{time_total}\\n",
            url,
        ];
        Curl {
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Add arguments before the URL (the URL stays last).
    fn with(mut self, extra: &[&str]) -> Curl {
        let url = self.args.pop().expect("url");
        self.args.extend(extra.iter().map(|s| s.to_string()));
        self.args.push(url);
        self
    }

    pub fn method(self, m: &str) -> Curl {
        self.with(&["-X", m])
    }

    pub fn header(self, h: &str) -> Curl {
        self.with(&["-H", h])
    }

    /// Basic credentials (`-u user:password`).
    pub fn user(self, user_password: &str) -> Curl {
        self.with(&["-u", user_password])
    }

    /// Follow redirects (`-L`), as registry clients do.
    pub fn follow(self) -> Curl {
        self.with(&["-L"])
    }

    /// Send the file as the request body.
    pub fn data_file(self, p: &Path) -> Curl {
        let arg = format!("@{}", p.display());
        self.with(&["--data-binary", &arg])
    }

    /// Write the body to `p` instead of `/dev/null`.
    pub fn body_to(mut self, p: &Path) -> Curl {
        if let Some(i) = self.args.iter().position(|a| a == "/dev/null") {
            self.args[i] = p.display().to_string();
        }
        self
    }

    /// Write the response headers to `p`.
    pub fn headers_to(self, p: &Path) -> Curl {
        let arg = p.display().to_string();
        self.with(&["-D", &arg])
    }

    pub fn spawn(&self) -> Res<Running> {
        let child = Command::new("curl")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting curl: {e}"))?;
        Ok(Running {
            child,
            what: self.args.last().cloned().unwrap_or_default(),
        })
    }

    /// Run to completion.
    pub fn run(&self) -> Res<CurlOut> {
        self.spawn()?.finish()
    }

    /// Run, and require `status` and (when given) the body length.
    pub fn expect(&self, status: u16, bytes: Option<u64>) -> Res<CurlOut> {
        let out = self.run()?;
        check(
            &out,
            status,
            bytes,
            self.args.last().map(String::as_str).unwrap_or(""),
        )?;
        Ok(out)
    }
}

/// Fail unless the transfer had `status` and, when given, `bytes`.
pub fn check(out: &CurlOut, status: u16, bytes: Option<u64>, what: &str) -> Res<()> {
    if out.status != status {
        return Err(format!("curl {what}: status {} (want {status})", out.status).into());
    }
    if let Some(b) = bytes {
        if out.bytes != b {
            return Err(format!("curl {what}: {} body bytes (want {b})", out.bytes).into());
        }
    }
    Ok(())
}

impl Running {
    /// Whether the process has exited (does not block).
    pub fn done(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Wait for the process and parse its `-w` line.
    pub fn finish(self) -> Res<CurlOut> {
        let out = self.child.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().last().unwrap_or("");
        let f: Vec<&str> = line.split_whitespace().collect();
        let parsed = (|| {
            Some(CurlOut {
                status: f.first()?.parse().ok()?,
                bytes: f.get(1)?.parse::<f64>().ok()? as u64,
                time_total: Duration::from_secs_f64(f.get(2)?.parse().ok()?),
            })
        })();
        parsed.ok_or_else(|| {
            format!(
                "curl {} ({}): no -w line in {text:?}; stderr {}",
                self.what,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
            .into()
        })
    }
}

/// `n` curl processes GET `url` at once (all spawned, then all awaited).
/// Returns the wall time from the first spawn to the last exit; each must
/// answer 200 with `want` body bytes.
pub fn curl_fan(url: &str, n: usize, want: u64) -> Res<Duration> {
    fan(&Curl::get(url), n, want)
}

/// `n` copies of the curl command `c` at once (all spawned, then all
/// awaited); the wall time from the first spawn to the last exit. Each must
/// answer 200 with `want` body bytes.
pub fn fan(c: &Curl, n: usize, want: u64) -> Res<Duration> {
    let url = c.args.last().cloned().unwrap_or_default();
    let url = url.as_str();
    let start = Instant::now();
    let mut running = Vec::with_capacity(n);
    for _ in 0..n {
        running.push(c.spawn()?);
    }
    let mut first_err = None;
    for r in running {
        match r.finish() {
            Ok(o) => {
                if let Err(e) = check(&o, 200, Some(want), url) {
                    first_err.get_or_insert(e);
                }
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    let took = start.elapsed();
    match first_err {
        Some(e) => Err(e),
        None => Ok(took),
    }
}

// ---------------------------------------------------------------------------
// skopeo

/// `skopeo copy --src-tls-verify=false docker://<image> dir:<dest>` with an
/// accept-anything policy and an empty auth file kept in `work`. `dest` is
/// removed before and after. Returns the wall time of the process.
pub fn skopeo_pull(work: &Path, image: &str, dest: &Path) -> Res<Duration> {
    Ok(skopeo_pull_cpu(work, image, dest)?.0)
}

/// As [`skopeo_pull`]; also returns the CPU seconds (user + system) skopeo
/// itself used.
pub fn skopeo_pull_cpu(work: &Path, image: &str, dest: &Path) -> Res<(Duration, f64)> {
    skopeo_pull_as(work, image, dest, None)
}

/// [`skopeo_pull_cpu`] with `--src-creds user:password` when given.
pub fn skopeo_pull_as(
    work: &Path,
    image: &str,
    dest: &Path,
    creds: Option<&str>,
) -> Res<(Duration, f64)> {
    let _ = std::fs::remove_dir_all(dest);
    let mut args = vec!["--src-tls-verify=false".to_string()];
    if let Some(c) = creds {
        args.push(format!("--src-creds={c}"));
    }
    args.push(format!("docker://{image}"));
    args.push(format!("dir:{}", dest.display()));
    let took = skopeo_copy(work, &args);
    let _ = std::fs::remove_dir_all(dest);
    took
}

/// `skopeo copy --preserve-digests dir:<src> docker://<image>` (layers go
/// as they are: without `--preserve-digests` skopeo would gzip them on the
/// way), with `--dest-creds user:password` when given. Returns the wall
/// time of the process.
pub fn skopeo_push(work: &Path, src: &Path, image: &str, creds: Option<&str>) -> Res<Duration> {
    let mut args = vec![
        "--dest-tls-verify=false".to_string(),
        "--preserve-digests".to_string(),
    ];
    if let Some(c) = creds {
        args.push(format!("--dest-creds={c}"));
    }
    args.push(format!("dir:{}", src.display()));
    args.push(format!("docker://{image}"));
    Ok(skopeo_copy(work, &args)?.0)
}

/// One `skopeo copy <args>` with the policy and auth file kept in `work`,
/// bounded by [`CLIENT_LIMIT_SECS`]: its wall time and the CPU seconds
/// skopeo used.
fn skopeo_copy(work: &Path, args: &[String]) -> Res<(Duration, f64)> {
    let policy = work.join("skopeo-policy.json");
    if !policy.exists() {
        std::fs::write(
            &policy,
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )?;
    }
    let authfile = work.join("skopeo-auth.json");
    if !authfile.exists() {
        std::fs::write(&authfile, r#"{"auths":{}}"#)?;
    }
    let cpu0 = crate::sys::children_cpu_secs();
    let start = Instant::now();
    let out = Command::new("timeout")
        .arg(CLIENT_LIMIT_SECS.to_string())
        .arg("skopeo")
        .arg("--policy")
        .arg(&policy)
        .arg("copy")
        .args(args)
        .env("REGISTRY_AUTH_FILE", &authfile)
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running skopeo: {e}"))?;
    let took = start.elapsed();
    let cpu = crate::sys::children_cpu_secs() - cpu0;
    if !out.status.success() {
        return Err(format!(
            "skopeo copy {}: {}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok((took, cpu))
}

/// A fresh destination directory name under `work` for one pull.
pub fn pull_dest(work: &Path, label: &str) -> PathBuf {
    work.join(format!("pulled-{label}"))
}

// ---------------------------------------------------------------------------
// wrk

pub struct WrkResult {
    pub rps: f64,
    pub p99: Duration,
    pub errors: u64,
}

/// `wrk -t<threads> -c<conns> -d<secs>s --latency` with an `Accept` header.
pub fn wrk(url: &str, threads: u32, conns: u32, secs: u32, accept: &str) -> Res<WrkResult> {
    let out = Command::new("wrk")
        .args([
            &format!("-t{threads}"),
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--latency",
            "-H",
            &format!("Accept: {accept}"),
            url,
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running wrk: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        return Err(format!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr)).into());
    }
    parse_wrk(&text)
}

fn parse_wrk(text: &str) -> Res<WrkResult> {
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or_else(|| format!("no Requests/sec in wrk output:\n{text}"))?;
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .and_then(|v| parse_wrk_duration(v.trim()))
        .ok_or_else(|| format!("no 99% latency in wrk output:\n{text}"))?;
    let mut errors = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if let Some(l) = text
        .lines()
        .find(|l| l.trim().starts_with("Socket errors:"))
    {
        errors += l
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse::<u64>().ok())
            .sum::<u64>();
    }
    Ok(WrkResult { rps, p99, errors })
}

fn parse_wrk_duration(s: &str) -> Option<Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let v: f64 = num.trim().parse().ok()?;
    let secs = match unit.trim() {
        "us" => v / 1e6,
        "ms" => v / 1e3,
        "s" => v,
        "m" => v * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}
