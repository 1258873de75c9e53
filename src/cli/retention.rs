//! `wharf retention show|run` and `wharf pull-token create`: the fleet and
//! CI-cleanup features from the command line.

use reqwest::Method;

use super::args::{PullTokenCmd, RetentionCmd};
use super::client::Client;
use super::manage::short;
use super::output::{human_size, show, table, when};
use crate::registry::views::{
    IssuedPullToken, NewPullToken, PullTokenView, RetentionReport, RetentionRules,
};

pub async fn retention(c: &Client, cmd: RetentionCmd) -> Result<(), String> {
    match cmd {
        RetentionCmd::Show { project } => {
            let v: RetentionRules = c.get(&format!("projects/{project}/retention")).await?;
            show(c.conn.json, &v, |v| {
                if v.rules.is_empty() {
                    println!("project {project} has no retention rules");
                }
                for r in &v.rules {
                    match (r.keep_latest, &r.untagged_older_than) {
                        (Some(n), _) => println!(
                            "keep the {n} most recently pushed tags matching {}",
                            r.tags.as_deref().unwrap_or("*")
                        ),
                        (_, Some(age)) => println!("delete untagged artifacts older than {age}"),
                        _ => {}
                    }
                }
            });
        }
        RetentionCmd::Run { project, dry_run } => {
            let path = format!("projects/{project}/retention/run?dry_run={dry_run}");
            let v: RetentionReport = c.call(Method::POST, &path, None::<&()>).await?;
            show(c.conn.json, &v, print_report);
        }
    }
    Ok(())
}

fn print_report(r: &RetentionReport) {
    let verb = if r.dry_run { "would delete" } else { "deleted" };
    let mut rows: Vec<Vec<String>> = r
        .tags
        .iter()
        .map(|t| {
            vec![
                format!("{}:{}", t.repository, t.tag),
                short(&t.digest),
                "tag".into(),
                String::new(),
            ]
        })
        .collect();
    rows.extend(r.artifacts.iter().map(|a| {
        vec![
            a.repository.clone(),
            short(&a.digest),
            "artifact".into(),
            a.reason.clone(),
        ]
    }));
    if !rows.is_empty() {
        table(&["REFERENCE", "DIGEST", "KIND", "REASON"], &[], rows);
    }
    println!(
        "{}project {}: {verb} {} tags and {} artifacts; {} tags kept",
        if r.dry_run { "dry run: " } else { "" },
        r.project,
        r.tags.len(),
        r.artifacts.len(),
        r.tags_kept
    );
    if let Some(g) = &r.gc {
        println!(
            "garbage collection freed {} in {} blobs",
            human_size(g.bytes_freed),
            g.blobs_removed
        );
    }
}

pub async fn pull_token(c: &Client, cmd: PullTokenCmd) -> Result<(), String> {
    match cmd {
        PullTokenCmd::Create { image, uses, ttl } => {
            let body = NewPullToken { image, uses, ttl };
            let v: IssuedPullToken = c.call(Method::POST, "pull-tokens", Some(&body)).await?;
            show(c.conn.json, &v, |v| {
                println!(
                    "pull token for {}@{} ({} uses, expires {})",
                    v.image,
                    v.digest,
                    v.uses,
                    when(Some(v.expires_at))
                );
                println!("username: {}", v.username);
                println!("password (shown once, store it now): {}", v.password);
                println!(
                    "e.g. docker login <this registry> -u '{}' --password-stdin",
                    v.username
                );
            });
        }
        PullTokenCmd::List => {
            let v: Vec<PullTokenView> = c.get("pull-tokens").await?;
            show(c.conn.json, &v, |v| {
                let rows = v.iter().map(token_row).collect();
                table(&["USERNAME", "IMAGE", "USED", "EXPIRES", "BY"], &[], rows);
            });
        }
        PullTokenCmd::Revoke { id } => {
            let id = id.trim_start_matches("pull$");
            c.send(Method::DELETE, &format!("pull-tokens/{id}"), None)
                .await?;
            if !c.conn.json {
                println!("revoked pull${id}");
            }
        }
    }
    Ok(())
}

fn token_row(t: &PullTokenView) -> Vec<String> {
    let image = format!("{}@{}", t.repository, short(&t.digest));
    let used = format!("{}/{}", t.used, t.uses);
    vec![
        t.username.clone(),
        image,
        used,
        when(Some(t.expires_at)),
        t.created_by.clone(),
    ]
}
