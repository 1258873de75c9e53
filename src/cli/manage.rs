//! Projects, repositories, artifacts, deletion and quotas from the command
//! line. Digests may be given as the unique prefix the tables print.

use reqwest::Method;

use super::args::{ProjectCmd, ProjectLimits};
use super::client::Client;
use super::output::{human_size, show, table, when};
use crate::config::Project;
use crate::registry::scan::ArtifactView;
use crate::registry::views::{
    Artifact, DeletedArtifact, DeletedTag, NewProject, ProjectUpdate, ProjectView, RepositoryView,
};

/// How many characters of a digest the tables print (`sha256:` + 12 hex).
pub const SHORT_DIGEST: usize = 19;

/// A digest as the tables print it.
pub fn short(d: &str) -> String {
    d.chars().take(SHORT_DIGEST).collect()
}

/// The one digest of `candidates` that starts with `prefix` (with or
/// without `sha256:`); none or several is an error naming them.
pub fn resolve_prefix(
    what: &str,
    prefix: &str,
    candidates: impl IntoIterator<Item = String>,
) -> Result<String, String> {
    if prefix
        .split_once(':')
        .map_or(prefix, |(_, hex)| hex)
        .is_empty()
    {
        return Err(format!("give a digest (or a prefix of one) after {what}@"));
    }
    let matches = |d: &str| {
        d.starts_with(prefix)
            || d.split_once(':')
                .is_some_and(|(_, hex)| hex.starts_with(prefix))
    };
    let mut found: Vec<String> = candidates.into_iter().filter(|d| matches(d)).collect();
    found.sort();
    found.dedup();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(format!(
            "no artifact of {what} has a digest starting with {prefix}"
        )),
        _ => Err(format!(
            "{prefix} is ambiguous in {what}: it starts {}; give more characters",
            found.join(", ")
        )),
    }
}

/// A size argument: bytes as a size like 10GiB, or `None` for "none".
fn size_arg(s: &str) -> Result<Option<u64>, String> {
    match s {
        "none" => Ok(None),
        s => crate::config::parse_size(s)
            .map(Some)
            .map_err(|e| format!("size {s:?}: {e}")),
    }
}

/// The limits given as flags, as a change (visibility untouched).
fn limits(l: &ProjectLimits) -> Result<ProjectUpdate, String> {
    Ok(ProjectUpdate {
        public: None,
        quota: l.quota.as_deref().map(size_arg).transpose()?,
        max_image_size: l.max_image_size.as_deref().map(size_arg).transpose()?,
    })
}

fn print_project(json: bool, verb: &str, p: &Project) {
    show(json, p, |p| {
        let or_none = |v: Option<u64>| v.map(human_size).unwrap_or_else(|| "none".into());
        let vis = if p.public { "public" } else { "private" };
        println!(
            "project {} {verb}: {vis}, quota {}, max image size {}",
            p.name,
            or_none(p.quota),
            or_none(p.max_image_size)
        );
    });
}

pub async fn projects(c: &Client, cmd: Option<ProjectCmd>) -> Result<(), String> {
    match cmd.unwrap_or(ProjectCmd::List) {
        ProjectCmd::List => list_projects(c).await,
        ProjectCmd::Create {
            name,
            limits: l,
            public,
        } => {
            let u = limits(&l)?;
            let body = NewProject {
                name,
                public,
                quota: u.quota,
                max_image_size: u.max_image_size,
            };
            let p: Project = c.call(Method::POST, "projects", Some(&body)).await?;
            print_project(c.conn.json, "created", &p);
            Ok(())
        }
        ProjectCmd::Delete { name } => {
            c.send(Method::DELETE, &format!("projects/{name}"), None)
                .await?;
            if !c.conn.json {
                println!("project {name} deleted");
            }
            Ok(())
        }
        ProjectCmd::Set {
            name,
            limits: l,
            public,
            private,
        } => {
            let body = ProjectUpdate {
                public: (public || private).then_some(public),
                ..limits(&l)?
            };
            if body.public.is_none() && body.quota.is_none() && body.max_image_size.is_none() {
                return Err(
                    "nothing to change: give --public, --private, --quota or --max-image-size"
                        .into(),
                );
            }
            let p: Project = c
                .call(Method::PUT, &format!("projects/{name}"), Some(&body))
                .await?;
            print_project(c.conn.json, "changed", &p);
            Ok(())
        }
    }
}

async fn list_projects(c: &Client) -> Result<(), String> {
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
        table(
            &["PROJECT", "VISIBILITY", "REPOS", "USAGE", "QUOTA"],
            &["REPOS", "USAGE", "QUOTA"],
            rows,
        );
    });
    Ok(())
}

pub async fn repos(c: &Client, project: Option<String>) -> Result<(), String> {
    let path = match &project {
        Some(p) => format!("projects/{p}/repositories"),
        None => "repositories".into(),
    };
    let all: Vec<RepositoryView> = c.get_all(&path).await?;
    show(c.conn.json, &all, |all| {
        let rows = all
            .iter()
            .map(|r| {
                vec![
                    r.name.clone(),
                    if r.cached { "cached" } else { "pushed" }.into(),
                    r.artifacts.to_string(),
                    r.tags.to_string(),
                ]
            })
            .collect();
        table(
            &["REPOSITORY", "KIND", "ARTIFACTS", "TAGS"],
            &["ARTIFACTS", "TAGS"],
            rows,
        );
    });
    Ok(())
}

pub async fn artifacts(c: &Client, repo: &str) -> Result<(), String> {
    let v: Vec<ArtifactView> = c.get_all(&format!("repositories/{repo}/artifacts")).await?;
    show(c.conn.json, &v, |v| {
        let rows = v
            .iter()
            .map(|ArtifactView { artifact: a, scan }| {
                vec![
                    short(&a.digest.to_string()),
                    if a.tags.is_empty() {
                        "<untagged>".into()
                    } else {
                        a.tags.join(",")
                    },
                    human_size(a.size),
                    a.media_type.rsplit('.').nth(1).unwrap_or("").to_string(),
                    when(Some(a.pushed_at)),
                    when(a.last_pulled_at),
                    super::scan::column(scan.as_ref()),
                ]
            })
            .collect();
        table(
            &[
                "DIGEST",
                "TAGS",
                "SIZE",
                "TYPE",
                "PUSHED",
                "LAST PULLED",
                "SCAN",
            ],
            &["SIZE"],
            rows,
        );
    });
    Ok(())
}

/// The full digest `prefix` names among `repo`'s artifacts.
pub(super) async fn full_digest(c: &Client, repo: &str, prefix: &str) -> Result<String, String> {
    if prefix.parse::<crate::oci::Digest>().is_ok() {
        return Ok(prefix.to_string());
    }
    let arts: Vec<Artifact> = c.get_all(&format!("repositories/{repo}/artifacts")).await?;
    resolve_prefix(repo, prefix, arts.into_iter().map(|a| a.digest.to_string()))
}

pub async fn delete(c: &Client, reference: &str) -> Result<(), String> {
    if let Some((repo, prefix)) = reference.split_once('@') {
        let digest = full_digest(c, repo, prefix).await?;
        let v: DeletedArtifact = c
            .call(
                Method::DELETE,
                &format!("repositories/{repo}/artifacts/{digest}"),
                None::<&()>,
            )
            .await?;
        show(c.conn.json, &v, |v| {
            let tags = if v.deleted_tags.is_empty() {
                "none".into()
            } else {
                v.deleted_tags.join(", ")
            };
            println!("deleted {repo}@{digest} (tags removed: {tags})");
        });
    } else if let Some((repo, tag)) = reference
        .rsplit_once(':')
        .filter(|(r, t)| !r.is_empty() && !t.contains('/'))
    {
        let v: DeletedTag = c
            .call(
                Method::DELETE,
                &format!("repositories/{repo}/tags/{tag}"),
                None::<&()>,
            )
            .await?;
        show(c.conn.json, &v, |_| println!("deleted tag {reference}"));
    } else {
        return Err("give <repo>@<digest> (artifact and all its tags; a unique digest prefix is enough) or <repo>:<tag> (one tag)".into());
    }
    Ok(())
}

pub async fn quota(c: &Client, project: &str, size: &str) -> Result<(), String> {
    let body = ProjectUpdate {
        quota: Some(size_arg(size)?),
        ..ProjectUpdate::default()
    };
    let p: Project = c
        .call(Method::PUT, &format!("projects/{project}"), Some(&body))
        .await?;
    show(c.conn.json, &p, |p| {
        println!(
            "project {project}: quota {}",
            p.quota.map(human_size).unwrap_or_else(|| "none".into())
        );
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::resolve_prefix;

    fn ds() -> Vec<String> {
        vec![
            "sha256:aa11".into(),
            "sha256:aa22".into(),
            "sha256:bb33".into(),
        ]
    }

    #[test]
    fn unique_prefixes_resolve_with_or_without_the_algorithm() {
        assert_eq!(
            resolve_prefix("r", "sha256:bb", ds()).unwrap(),
            "sha256:bb33"
        );
        assert_eq!(resolve_prefix("r", "aa2", ds()).unwrap(), "sha256:aa22");
    }

    #[test]
    fn ambiguous_and_unknown_prefixes_are_errors_naming_the_candidates() {
        let e = resolve_prefix("r", "sha256:aa", ds()).unwrap_err();
        assert!(
            e.contains("ambiguous") && e.contains("sha256:aa11") && e.contains("sha256:aa22"),
            "{e}"
        );
        assert!(resolve_prefix("r", "cc", ds())
            .unwrap_err()
            .contains("no artifact of r"));
        assert!(
            resolve_prefix("r", "sha256:", vec!["sha256:aa11".into()]).is_err(),
            "an empty prefix names nothing"
        );
    }
}
