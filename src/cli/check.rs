//! `wharf check-config [--probe]`: what the configuration means, checked.
//!
//! Prints the effective settings that matter (listen and TLS, mode,
//! storage, accounts, projects with quotas, remotes and their credential
//! sources), the warnings `serve` would log, and whether every secret
//! reference can be read. With `--probe` it also contacts every remote
//! (`/v2/` through the token flow, with wharf's credentials) and reports
//! ok / credentials refused / unreachable with the cause. It never prints a
//! secret, never says a credential "works" without `--probe`, and never
//! says "config OK" before a problem.

use std::process::ExitCode;

use crate::config::{format_size, Config, Mode, Remote};
use crate::oci::RepoName;
use crate::secrets::RemoteCredentials;
use crate::upstream::{Upstream, UpstreamError};

/// Run the check; exit 1 when a secret cannot be read or a probe failed.
pub fn check_config(cfg: &Config, probe: bool) -> ExitCode {
    let Some(rt) = super::local::runtime() else {
        return ExitCode::FAILURE;
    };
    print_settings(cfg);
    let mut problems = 0usize;
    println!("remotes");
    for r in &cfg.remotes {
        problems += rt.block_on(check_remote(r, probe, cfg.max_manifest_size));
    }
    let warnings = cfg.warnings();
    if !warnings.is_empty() {
        println!("warnings");
        for w in &warnings {
            println!("  - {w}");
        }
    }
    if problems > 0 {
        println!("config valid, but {problems} problem(s) above");
        return ExitCode::from(1);
    }
    let how = if probe {
        "every remote answered"
    } else {
        "not probed: run with --probe to contact the remotes"
    };
    println!("config OK ({how})");
    ExitCode::SUCCESS
}

fn print_settings(cfg: &Config) {
    let tls = match &cfg.server.tls {
        Some(t) => format!(
            "HTTPS (cert {}, key {})",
            t.cert_file.display(),
            t.key_file.display()
        ),
        None => "plain HTTP".to_string(),
    };
    println!("listen      {} ({tls})", cfg.listen);
    let mode = match cfg.server.mode {
        Mode::Registry => "registry (pull-through and pushes)",
        Mode::Mirror => "mirror (pull-through only; pushes refused)",
    };
    println!("mode        {mode}");
    match &cfg.storage {
        crate::config::StorageBackend::Filesystem => {
            println!("storage     filesystem {}", cfg.data_dir.display())
        }
        crate::config::StorageBackend::S3(s3) => println!(
            "storage     s3 {}, prefix {:?}, parts of {}, credentials {} (spool files in {})",
            s3.describe(),
            s3.prefix,
            crate::config::format_size(s3.part_size),
            s3.credentials
                .as_ref()
                .map_or("from the AWS default chain".to_string(), |r| r.describe()),
            cfg.data_dir.display()
        ),
    }
    if let crate::config::StorageBackend::S3(s3) = &cfg.storage {
        if let Some(r) = s3.describe_redirect() {
            println!("            {r}");
        }
    }
    println!("auth        {}", auth_summary(cfg));
    if cfg.projects.is_empty() {
        println!("projects    none configured (pushes create namespaces on first use)");
    }
    for p in &cfg.projects {
        let quota = p.quota.map_or("no quota".to_string(), |q| {
            format!("quota {}", format_size(q))
        });
        let max = p
            .max_image_size
            .map_or(String::new(), |m| format!(", max image {}", format_size(m)));
        let vis = if p.public { "public" } else { "private" };
        println!("project     {} ({vis}, {quota}{max})", p.name);
    }
}

fn auth_summary(cfg: &Config) -> String {
    let a = &cfg.auth;
    if a.admins.is_empty() && a.robots.is_empty() {
        return match cfg.server.mode {
            Mode::Registry => {
                "open: no accounts, anyone who reaches wharf may pull, push and delete".to_string()
            }
            Mode::Mirror => "open: no accounts, anyone who reaches wharf may pull".to_string(),
        };
    }
    let admins: Vec<&str> = a.admins.iter().map(|x| x.username.as_str()).collect();
    format!(
        "{} admin(s) [{}], {} robot(s) in the config, token lifetime {}, anonymous pulls through remotes: {}",
        admins.len(),
        admins.join(", "),
        a.robots.len(),
        humantime::format_duration(a.token_ttl),
        if a.remote_pull_anonymous { "yes" } else { "no" }
    )
}

/// Print one remote; returns how many problems it has.
async fn check_remote(r: &Remote, probe: bool, max_manifest_size: usize) -> usize {
    let default = if r.default { ", default" } else { "" };
    println!("  {} {}{default}", r.name, r.url);
    let creds = RemoteCredentials::new(r.credential_info());
    let mut problems = 0;
    if creds.is_empty() {
        println!("    credentials: none (anonymous)");
    }
    for e in creds.entries() {
        let what = format!(
            "credentials[{}] for \"{}\" from {} [{}]",
            e.index(),
            e.repository(),
            e.backend(),
            e.describe()
        );
        match e.resolve_now().await {
            Ok(c) => println!("    {what}: readable ({} credentials)", c.kind()),
            Err(err) => {
                problems += 1;
                println!("    {what}: CANNOT BE READ: {err}");
            }
        }
    }
    if probe {
        let repo = probe_repo(creds.entries().first().map(|e| e.repository()));
        match probe_remote(r, &repo, max_manifest_size).await {
            Ok(()) => println!(
                "    probe: ok ({} answered /v2/ with wharf's credentials for {repo})",
                r.name
            ),
            Err(line) => {
                problems += 1;
                println!("    probe: {line}");
            }
        }
    }
    problems
}

async fn probe_remote(r: &Remote, repo: &RepoName, max_manifest_size: usize) -> Result<(), String> {
    let up = Upstream::new(std::sync::Arc::new(r.clone()), max_manifest_size)
        .map_err(|e| format!("FAILED: {e}"))?;
    up.probe(repo).await.map_err(|e| match &e {
        UpstreamError::Unauthorized { .. } | UpstreamError::CredentialsUnavailable { .. } => {
            format!("CREDENTIALS REFUSED: {e}")
        }
        UpstreamError::Unreachable { .. } => format!("UNREACHABLE: {e}"),
        _ => format!("FAILED: {e}"),
    })
}

/// A repository name inside a credentials entry's pattern (`team/*` →
/// `team/wharf-probe`), for the token scope of the probe.
fn probe_repo(pattern: Option<&str>) -> RepoName {
    let concrete = pattern
        .unwrap_or("*")
        .replace("**", "wharf-probe")
        .replace('*', "wharf-probe");
    let name = if concrete.contains('/') {
        concrete
    } else {
        format!("{concrete}/wharf-probe")
    };
    name.parse()
        .unwrap_or_else(|_| "library/wharf-probe".parse().expect("a valid name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_repositories_fit_the_pattern() {
        assert_eq!(probe_repo(None).as_str(), "wharf-probe/wharf-probe");
        assert_eq!(probe_repo(Some("team/*")).as_str(), "team/wharf-probe");
        assert_eq!(probe_repo(Some("org/app")).as_str(), "org/app");
    }
}
