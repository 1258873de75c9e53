//! `wharf robot create|list|revoke|delete`: robot accounts from the
//! command line. A token is printed once, at creation.

use std::collections::BTreeMap;

use reqwest::Method;

use super::args::RobotCmd;
use super::client::Client;
use super::output::{show, table, when};
use crate::registry::views::{NewRobot, RobotView};

pub async fn robot(c: &Client, cmd: RobotCmd) -> Result<(), String> {
    match cmd {
        RobotCmd::Create {
            name,
            perms,
            expires_in,
        } => {
            let mut permissions: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for spec in perms {
                let (project, actions) = spec.split_once('=').ok_or_else(|| {
                    format!("--perm {spec:?}: use PROJECT=ACTIONS, e.g. team=pull,push")
                })?;
                permissions.insert(
                    project.to_string(),
                    actions.split(',').map(str::to_string).collect(),
                );
            }
            let body = NewRobot {
                name,
                permissions,
                expires_in,
            };
            let v: RobotView = c.call(Method::POST, "robots", Some(&body)).await?;
            show(c.conn.json, &v, |v| {
                println!("robot created: {}", v.username);
                println!(
                    "token (shown once, store it now): {}",
                    v.token.as_deref().unwrap_or("")
                );
            });
        }
        RobotCmd::List => {
            let v: Vec<RobotView> = c.get("robots").await?;
            show(c.conn.json, &v, |v| {
                let rows = v.iter().map(robot_row).collect();
                table(
                    &["USERNAME", "STATE", "PERMISSIONS", "CREATED", "EXPIRES"],
                    &[],
                    rows,
                );
            });
        }
        RobotCmd::Revoke { name } => {
            c.send(Method::DELETE, &format!("robots/{name}"), None)
                .await?;
            if !c.conn.json {
                println!("revoked robot${name}");
            }
        }
        RobotCmd::Delete { name } => {
            c.send(Method::DELETE, &format!("robots/{name}?purge=true"), None)
                .await?;
            if !c.conn.json {
                println!("deleted robot${name} (the name can be used again)");
            }
        }
    }
    Ok(())
}

fn robot_row(r: &RobotView) -> Vec<String> {
    let perms: Vec<String> = r
        .permissions
        .iter()
        .map(|(k, v)| format!("{k}={}", v.join(",")))
        .collect();
    let state = if r.revoked {
        "revoked"
    } else if r.active {
        "active"
    } else {
        "expired"
    };
    vec![
        r.username.clone(),
        state.to_string(),
        perms.join(" "),
        when(Some(r.created_at)),
        when(r.expires_at),
    ]
}
