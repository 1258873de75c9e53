//! The `wharf` command line. [`args`] is its shape (clap); [`main`] runs
//! it: `serve`, the commands that need no server ([`local`], [`check`]),
//! and the client commands that talk to a running wharf's management API
//! ([`manage`], [`robots`], [`cache`]) over [`client`], printing tables for
//! people and `--json` for scripts ([`output`]).

pub mod args;
pub mod check;
pub mod local;

mod bundle;
mod cache;
mod client;
mod manage;
mod output;
mod retention;
mod robots;
mod scan;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::config::{Config, Overrides};
use args::{Cli, Command, ConfigArg, GcArgs, ServeArgs};
pub use client::Conn;

/// Parse the command line and run it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(a) => serve(a),
        Command::Projects { cmd, conn } => run(conn, |c| Box::pin(manage::projects(c, cmd))),
        Command::Repos { project, conn } => run(conn, |c| Box::pin(manage::repos(c, project))),
        Command::Artifacts { repository, conn } => run(conn, |c| {
            Box::pin(async move { manage::artifacts(c, &repository).await })
        }),
        Command::Delete { reference, conn } => run(conn, |c| {
            Box::pin(async move { manage::delete(c, &reference).await })
        }),
        Command::Robot { cmd, conn } => run(conn, |c| Box::pin(robots::robot(c, cmd))),
        Command::Quota {
            project,
            size,
            conn,
        } => run(conn, |c| {
            Box::pin(async move { manage::quota(c, &project, &size).await })
        }),
        Command::Retention { cmd, conn } => run(conn, |c| Box::pin(retention::retention(c, cmd))),
        Command::PullToken { cmd, conn } => run(conn, |c| Box::pin(retention::pull_token(c, cmd))),
        Command::Gc(a) => gc(a),
        Command::Prefetch {
            image,
            no_pin,
            no_wait,
            conn,
        } => run(conn, |c| {
            Box::pin(cache::prefetch(c, image, !no_pin, !no_wait))
        }),
        Command::Scan { image, wait, conn } => run(conn, |c| Box::pin(scan::scan(c, image, wait))),
        Command::Cache { cmd, conn } => run(conn, |c| Box::pin(cache::cache(c, cmd))),
        Command::Export {
            images,
            output,
            platform,
            with_referrers,
            conn,
        } => {
            let what = bundle::Selection {
                images,
                platform,
                with_referrers,
            };
            run(conn, |c| Box::pin(bundle::export(c, what, output)))
        }
        Command::Import {
            bundle: file,
            remote,
            project,
            conn,
        } => run(conn, |c| Box::pin(bundle::import(c, file, remote, project))),
        Command::HashPassword => local::hash_password(),
        Command::CheckConfig { config, probe } => match load(&config, &Overrides::default()) {
            Ok(cfg) => check::check_config(&cfg, probe),
            Err(code) => code,
        },
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "wharf", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
    }
}

fn load(c: &ConfigArg, o: &Overrides) -> Result<Config, ExitCode> {
    Config::load(c.config.as_deref(), o).map_err(|e| {
        eprintln!("wharf: {e}");
        ExitCode::from(2)
    })
}

fn serve(a: ServeArgs) -> ExitCode {
    let o = Overrides {
        listen: a.listen,
        data_dir: a.data_dir,
    };
    let cfg = match load(&a.config, &o) {
        Ok(c) => c,
        Err(code) => return code,
    };
    crate::telemetry::init(&cfg);
    crate::app::alloc::tune();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wharf: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(crate::app::run(cfg, crate::app::shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("wharf: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `wharf gc`: through the running server, or `--offline` on its data.
fn gc(a: GcArgs) -> ExitCode {
    if !a.offline && a.data_dir.is_none() {
        let (dry_run, grace) = (a.dry_run, a.grace);
        return run(a.conn, move |c| Box::pin(cache::gc(c, dry_run, grace)));
    }
    let o = Overrides {
        listen: None,
        data_dir: a.data_dir,
    };
    match load(&a.config, &o) {
        Ok(cfg) => local::gc(&cfg, a.dry_run, a.grace.as_deref(), a.conn.json),
        Err(code) => code,
    }
}

type CallFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + 'a>>;

/// Run a client call and turn failures into a message + exit code 1.
fn run(conn: Conn, call: impl for<'a> FnOnce(&'a client::Client) -> CallFuture<'a>) -> ExitCode {
    let Some(rt) = local::runtime() else {
        return ExitCode::FAILURE;
    };
    let res = rt.block_on(async {
        let c = client::Client::new(conn)?;
        call(&c).await
    });
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wharf: {e}");
            ExitCode::FAILURE
        }
    }
}
