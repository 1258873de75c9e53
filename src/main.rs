//! The `wharf` command line: parse arguments, load config, start tracing,
//! hand over to [`wharf::app`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use wharf::config::{Config, Overrides};

#[derive(Parser)]
#[command(name = "wharf", version, about = "Pull-through caching proxy and private OCI registry")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the registry (the default when no command is given).
    Serve(ServeArgs),
    /// List projects with usage and quota (management API).
    Projects {
        #[command(flatten)]
        conn: wharf::cli::Conn,
    },
    /// List repositories, of one project or all.
    Repos {
        project: Option<String>,
        #[command(flatten)]
        conn: wharf::cli::Conn,
    },
    /// List a repository's artifacts with their tags, sizes and times.
    Artifacts {
        repository: String,
        #[command(flatten)]
        conn: wharf::cli::Conn,
    },
    /// Delete <repo>@<digest> (with every tag) or <repo>:<tag> (one tag).
    Delete {
        reference: String,
        #[command(flatten)]
        conn: wharf::cli::Conn,
    },
    /// Manage robot accounts.
    Robot {
        #[command(subcommand)]
        cmd: wharf::cli::RobotCmd,
        #[command(flatten)]
        conn: wharf::cli::Conn,
    },
    /// Set a project's storage quota (e.g. 10GiB, or "none").
    Quota {
        project: String,
        size: String,
        #[command(flatten)]
        conn: wharf::cli::Conn,
    },
    /// Collect unreferenced blobs offline (wharf must be stopped; use
    /// `POST /api/v1/gc` on a running server).
    Gc(GcArgs),
    /// Pull an image into the pull-through cache and pin it (asks the
    /// running server), e.g. `wharf prefetch docker.io/library/alpine:3.20`.
    Prefetch {
        image: String,
        /// Fetch without pinning (the image may be evicted later).
        #[arg(long)]
        no_pin: bool,
        #[command(flatten)]
        conn: wharf::cli::Conn,
    },
    /// Hash a password or robot token for the config (reads one line from stdin).
    HashPassword,
    /// Validate a config file, print the effective settings and warnings,
    /// and check that every secret reference can be read.
    CheckConfig {
        #[command(flatten)]
        config: ConfigArg,
        /// Also contact every remote (`/v2/` and the token flow with wharf's
        /// credentials) and report ok, credentials refused or unreachable.
        #[arg(long)]
        probe: bool,
    },
}

#[derive(Args, Default)]
struct ConfigArg {
    /// Config file (TOML). Without one, the embedded defaults apply.
    #[arg(long, env = "WHARF_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Args, Default)]
struct ServeArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Listen address, e.g. 127.0.0.1:5000 (overrides server.listen).
    #[arg(long, env = "WHARF_LISTEN")]
    listen: Option<String>,
    /// Data directory (overrides storage.data_dir).
    #[arg(long, env = "WHARF_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Args)]
struct GcArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Data directory (overrides storage.data_dir).
    #[arg(long, env = "WHARF_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Report what would be removed; remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Grace period (overrides storage.gc_grace), e.g. 0s or 2h.
    #[arg(long)]
    grace: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn load(c: &ConfigArg, o: &Overrides) -> Result<Config, ExitCode> {
    Config::load(c.config.as_deref(), o).map_err(|e| {
        eprintln!("wharf: {e}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(a) => {
            let o = Overrides {
                listen: a.listen,
                data_dir: a.data_dir,
            };
            let cfg = match load(&a.config, &o) {
                Ok(c) => c,
                Err(code) => return code,
            };
            wharf::telemetry::init(&cfg);
            let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("wharf: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(wharf::app::run(cfg, wharf::app::shutdown_signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("wharf: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Projects { conn } => wharf::cli::run(conn, wharf::cli::Call::Projects),
        Command::Repos { project, conn } => wharf::cli::run(conn, wharf::cli::Call::Repos(project)),
        Command::Artifacts { repository, conn } => wharf::cli::run(conn, wharf::cli::Call::Artifacts(repository)),
        Command::Delete { reference, conn } => wharf::cli::run(conn, wharf::cli::Call::Delete(reference)),
        Command::Robot { cmd, conn } => wharf::cli::run(conn, wharf::cli::Call::Robot(cmd)),
        Command::Quota { project, size, conn } => wharf::cli::run(conn, wharf::cli::Call::Quota { project, size }),
        Command::Gc(a) => {
            let o = Overrides { listen: None, data_dir: a.data_dir };
            match load(&a.config, &o) {
                Ok(cfg) => wharf::cli::local::gc(&cfg, a.dry_run, a.grace.as_deref(), a.json),
                Err(code) => code,
            }
        }
        Command::Prefetch { image, no_pin, conn } => wharf::cli::run(conn, wharf::cli::Call::Prefetch { image, pin: !no_pin }),
        Command::HashPassword => wharf::cli::local::hash_password(),
        Command::CheckConfig { config, probe } => match load(&config, &Overrides::default()) {
            Ok(cfg) => wharf::cli::check::check_config(&cfg, probe),
            Err(code) => code,
        },
    }
}
