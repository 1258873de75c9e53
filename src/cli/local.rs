//! Subcommands that work on this machine without a server: offline
//! garbage collection, password hashing (config checks: [`super::check`]).

use std::process::ExitCode;

use crate::config::Config;
use crate::store::gc::GcReport;

/// A current-thread runtime for one command.
pub(crate) fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("wharf: cannot start the async runtime: {e}");
            None
        }
    }
}

/// `wharf hash-password`: read one line from stdin, print its argon2 hash.
pub fn hash_password() -> ExitCode {
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err()
        || line.trim_end_matches(['\r', '\n']).is_empty()
    {
        eprintln!("wharf: give the password on standard input");
        return ExitCode::from(2);
    }
    match crate::auth::password::hash(line.trim_end_matches(['\r', '\n'])) {
        Ok(h) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wharf: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `wharf gc --offline`: mark and sweep on a stopped server's data directory.
pub fn gc(cfg: &Config, dry_run: bool, grace: Option<&str>, json: bool) -> ExitCode {
    let grace = match grace.map(crate::config::parse_duration).transpose() {
        Ok(g) => g.unwrap_or(cfg.gc_grace),
        Err(e) => {
            eprintln!("wharf: --grace: {e}");
            return ExitCode::from(2);
        }
    };
    if let crate::config::StorageBackend::S3(s3) = &cfg.storage {
        eprintln!(
            "wharf: offline gc works on a data directory; this config stores in S3 ({}): collect garbage through the running wharf:\n  WHARF_URL=http://{} WHARF_USER=ADMIN WHARF_PASSWORD=... wharf gc",
            s3.describe(),
            cfg.listen
        );
        return ExitCode::from(2);
    }
    if !cfg.data_dir.is_dir() {
        eprintln!(
            "wharf: data directory {} does not exist",
            cfg.data_dir.display()
        );
        return ExitCode::from(2);
    }
    let store = match crate::store::Store::open(&cfg.data_dir) {
        Ok(s) => s,
        Err(e @ crate::store::StoreError::Locked(_)) => {
            eprintln!(
                "wharf: {e}\nwharf: a running wharf holds this data directory; collect garbage through it instead:\n  WHARF_URL=http://{} WHARF_USER=ADMIN WHARF_PASSWORD=... wharf gc{}\n  (or POST /api/v1/gc)",
                cfg.listen,
                if dry_run { " --dry-run" } else { "" }
            );
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!(
                "wharf: cannot open data directory {}: {e}",
                cfg.data_dir.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    let opts = crate::store::gc::GcOptions {
        dry_run,
        grace,
        trigger: "offline",
    };
    let report = match rt.block_on(store.gc(&opts)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("wharf: garbage collection failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    super::output::show(json, &report, print_gc);
    ExitCode::SUCCESS
}

/// A GC report for people (offline or from the server).
pub fn print_gc(report: &GcReport) {
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for b in &report.removed {
        println!("{verb} {} ({} bytes)", b.digest, b.size);
    }
    println!(
        "{}{} {} blobs, {} bytes; {} of {} blobs referenced, {} kept in the grace period; {} repositories, {} manifests scanned",
        if report.dry_run { "dry run: " } else { "" },
        verb,
        report.blobs_removed,
        report.bytes_freed,
        report.blobs_marked,
        report.blobs_total,
        report.blobs_in_grace,
        report.repositories,
        report.manifests
    );
}
