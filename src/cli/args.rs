//! The command line's shape (clap): every subcommand, flag and positional
//! argument with its help text. Parsing only; [`super::main`] runs them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use super::client::Conn;

#[derive(Parser)]
#[command(
    name = "wharf",
    version,
    about = "Pull-through caching proxy and private OCI registry"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the registry (the default when no command is given).
    Serve(ServeArgs),
    /// List, create, delete or change projects (management API).
    Projects {
        #[command(subcommand)]
        cmd: Option<ProjectCmd>,
        #[command(flatten)]
        conn: Conn,
    },
    /// List repositories, of one project (or remote) or all; cached
    /// (pull-through) repositories are marked.
    Repos {
        /// A project, or a remote's name for its cached repositories (default: all).
        project: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// List a repository's artifacts with their tags, sizes and times.
    Artifacts {
        /// Repository, e.g. team/app.
        repository: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete <repo>@<digest> (with every tag) or <repo>:<tag> (one tag).
    Delete {
        /// <repo>@<digest> or a unique prefix of it as the tables print it
        /// (e.g. team/app@sha256:3f2a9c), or <repo>:<tag>.
        reference: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Manage robot accounts.
    Robot {
        #[command(subcommand)]
        cmd: RobotCmd,
        #[command(flatten)]
        conn: Conn,
    },
    /// Set an existing project's storage quota.
    Quota {
        /// The project (it must exist: `wharf projects create` makes one).
        project: String,
        /// A size like 10GiB or 500MB, or "none" to remove the quota.
        size: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Retention rules of a project: show them, or run them now (asks the
    /// running server), e.g. `wharf retention run ci --dry-run`.
    Retention {
        #[command(subcommand)]
        cmd: RetentionCmd,
        #[command(flatten)]
        conn: Conn,
    },
    /// One-time pull credentials for nodes (asks the running server).
    PullToken {
        #[command(subcommand)]
        cmd: PullTokenCmd,
        #[command(flatten)]
        conn: Conn,
    },
    /// Collect unreferenced blobs: on the running server (default), or
    /// offline on a stopped server's data directory (`--offline`).
    Gc(GcArgs),
    /// Pull an image into the pull-through cache and pin it (asks the
    /// running server, then shows the job's progress until it ends), e.g.
    /// `wharf prefetch docker.io/library/alpine:3.20`.
    Prefetch {
        /// <remote>/<repository>[:tag|@digest], e.g. docker.io/library/alpine:3.20.
        image: String,
        /// Fetch without pinning (the image may be evicted later).
        #[arg(long)]
        no_pin: bool,
        /// Start the prefetch job and print its id instead of waiting for it
        /// (read it back with `GET /api/v1/prefetch/<id>`).
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Scan an image manifest for vulnerabilities with the configured
    /// scanner (asks the running server), e.g. `wharf scan team/app:1.0 --wait`.
    Scan {
        /// <repository>:<tag> or <repository>@<digest> (a digest prefix works).
        image: String,
        /// Wait until the scan ended and print its severity summary.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// List, pin, unpin or purge images in the pull-through cache.
    Cache {
        #[command(subcommand)]
        cmd: CacheCmd,
        #[command(flatten)]
        conn: Conn,
    },
    /// Write images (all platforms, or one with --platform) as an OCI image
    /// layout tar for a site without uplink (asks the running server), e.g.
    /// `wharf export docker.io/library/alpine:3.20 -o bundle.tar`.
    Export {
        /// <name>:<tag> or <name>@<digest>: a project image or a remote's
        /// (<remote>/<repository>), as clients pull it.
        #[arg(required = true)]
        images: Vec<String>,
        /// The tar file to write.
        #[arg(short, long)]
        output: PathBuf,
        /// Only this platform of multi-platform images (os/arch[/variant],
        /// e.g. linux/arm64).
        #[arg(long)]
        platform: Option<String>,
        /// Also the signatures, SBOMs and other artifacts referring to the
        /// images (those this wharf holds).
        #[arg(long)]
        with_referrers: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Import a bundle written by `wharf export` into a remote's cache (so
    /// <remote>/<repository> pulls offline) or a project.
    Import {
        /// The tar file to read.
        bundle: PathBuf,
        /// The remote whose cache receives the images (it must be configured;
        /// its url may be unreachable).
        #[arg(long, conflicts_with = "project", required_unless_present = "project")]
        remote: Option<String>,
        /// The project that receives the images.
        #[arg(long)]
        project: Option<String>,
        #[command(flatten)]
        conn: Conn,
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
    /// Print a shell completion script, e.g.
    /// `wharf completion bash > /etc/bash_completion.d/wharf`.
    Completion {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand, Debug)]
pub enum ProjectCmd {
    /// List projects with usage and quota (the default).
    List,
    /// Create a project (private unless --public).
    Create {
        /// Project name: one lowercase repository-name component, e.g. team.
        name: String,
        #[command(flatten)]
        limits: ProjectLimits,
        /// Anyone may pull from it without credentials.
        #[arg(long)]
        public: bool,
    },
    /// Delete an empty project created through the API.
    Delete {
        /// The project to delete (its images must be deleted first).
        name: String,
    },
    /// Change a project's visibility or limits.
    Set {
        /// The project to change.
        name: String,
        #[command(flatten)]
        limits: ProjectLimits,
        /// Anyone may pull without credentials.
        #[arg(long, conflicts_with = "private")]
        public: bool,
        /// Only accounts with a permission may pull.
        #[arg(long)]
        private: bool,
    },
}

#[derive(Args, Debug)]
pub struct ProjectLimits {
    /// Storage quota, e.g. 10GiB ("none" removes it).
    #[arg(long)]
    pub quota: Option<String>,
    /// Largest image, e.g. 2GiB ("none" removes it).
    #[arg(long)]
    pub max_image_size: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum RobotCmd {
    /// Create a robot; its token is printed once.
    Create {
        /// Robot name (a-z, 0-9, '-', '_'); it logs in as robot$<name>.
        name: String,
        /// Permission as PROJECT=ACTIONS, e.g. team=pull,push (repeatable;
        /// the project must exist).
        #[arg(long = "perm", value_name = "PROJECT=ACTIONS")]
        perms: Vec<String>,
        /// Lifetime, e.g. 30d (default: no expiry).
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// List robots.
    List,
    /// Revoke a robot (its credentials stop working at once).
    Revoke {
        /// Robot name, without the robot$ prefix.
        name: String,
    },
    /// Delete a robot (revoked or not), so its name can be used again.
    Delete {
        /// Robot name, without the robot$ prefix.
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum RetentionCmd {
    /// Print the project's retention rules.
    Show { project: String },
    /// Apply the project's rules now: list (and, without --dry-run,
    /// delete) the tags and artifacts they retire, then collect garbage.
    Run {
        project: String,
        /// Only list what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum PullTokenCmd {
    /// Issue a credential that pulls exactly IMAGE (repo:tag or
    /// repo@digest) N times within the TTL; printed once.
    Create {
        image: String,
        /// Complete pulls allowed.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// Lifetime, e.g. 30m, 1h, 7d.
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// List pull tokens with their spent uses (never a secret).
    List,
    /// Revoke a pull token at once (its id, or pull$<id>).
    Revoke { id: String },
}

#[derive(Subcommand, Debug)]
pub enum CacheCmd {
    /// List cached images with their tags, size, last pull and pin.
    List {
        /// Only repositories starting with this, e.g. docker.io/library.
        prefix: Option<String>,
    },
    /// Pin a cached image: eviction never removes it.
    Pin {
        /// <repo>:<tag> or <repo>@<digest> (a unique prefix is enough).
        image: String,
    },
    /// Unpin a cached image: eviction may remove it again.
    Unpin {
        /// <repo>:<tag> or <repo>@<digest> (a unique prefix is enough).
        image: String,
    },
    /// Remove a cached image now, or every unpinned image of a cached
    /// repository.
    Purge {
        /// <repo>:<tag>, <repo>@<digest> (unique prefix), or <repo> for all
        /// its unpinned images.
        image: String,
    },
}

#[derive(Args, Default)]
pub struct ConfigArg {
    /// Config file (TOML). Without one, the embedded defaults apply.
    #[arg(long, env = "WHARF_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Args, Default)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Listen address, e.g. 127.0.0.1:5000 (overrides server.listen).
    #[arg(long, env = "WHARF_LISTEN")]
    pub listen: Option<String>,
    /// Data directory (overrides storage.data_dir).
    #[arg(long, env = "WHARF_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct GcArgs {
    /// Work on the data directory of a stopped server instead of asking
    /// the running one (implied by --data-dir).
    #[arg(long)]
    pub offline: bool,
    #[command(flatten)]
    pub config: ConfigArg,
    /// Data directory for --offline (overrides storage.data_dir).
    #[arg(long, env = "WHARF_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Report what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Grace period (overrides storage.gc_grace), e.g. 0s or 2h.
    #[arg(long)]
    pub grace: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}
