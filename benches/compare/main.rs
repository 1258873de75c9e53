//! Side-by-side benchmark: wharf against the programs it replaces, in one
//! run on one machine, everything on 127.0.0.1, measured the way users see
//! it: separate client processes (skopeo, curl, wrk) reading full bodies,
//! next to a reference started in the same run, reported as ratios.
//!
//! ```text
//! cargo bench --bench compare                       # both phases, full sizes
//! BENCH_QUICK=1 cargo bench --bench compare         # smoke run, small sizes
//! BENCH_PHASES=serving cargo bench --bench compare  # one phase (serving | store | s3)
//! BENCH_STORE_STAGES=1000 cargo bench --bench compare   # store phase at 1k only
//! BENCH_PHASES=soak cargo bench --bench compare     # soak: 500 clients × 60 s
//! BENCH_SOAK_CLIENTS=200 BENCH_SOAK_SECS=30 ...     # a smaller soak
//! ```
//!
//! Cargo builds the release (`bench` profile) `wharf` binary for this target
//! and hands its path in `CARGO_BIN_EXE_wharf` (`WHARF_BIN` overrides it);
//! the benchmark drives that binary as a separate process, exactly as an
//! operator runs it.
//!
//! Phases:
//! - `serving` (`serving.rs`): cold and warm pulls with skopeo through wharf,
//!   directly from the upstream Distribution and through Distribution as a
//!   pull-through proxy; blob GETs with curl against nginx (`sendfile on`) on
//!   the same file; peak RSS; manifest GETs with wrk.
//! - `store` (`scale.rs`): wharf and a standalone Distribution filled with
//!   the same thousands of repositories and a 10,000-tag repository;
//!   listing latencies at each size and manifest PUTs during an online GC.
//! - `s3` (`s3.rs`): wharf and Distribution's S3 driver on one Garage:
//!   push and warm pull of an image with a big layer (skopeo), concurrent
//!   curl downloads of that layer, peak RSS.
//! - `soak` (`soak.rs`, only when asked for): concurrent async clients
//!   mixing warm pulls, cold pull-through and pushes for a fixed time;
//!   errors, wharf's RSS over time and its file descriptors before, during
//!   and after.
//!
//! Output: a Markdown table on stdout, also written to
//! `target/bench-report.md`. Every server started here listens on a free
//! port of 127.0.0.1 and is killed at the end of its phase (and on panic, by
//! the guards' `Drop`). Every loop and every client process is bounded.

mod content;
mod http;
mod report;
mod s3;
mod scale;
mod servers;
mod serving;
mod soak;
// The integration tests' harness: Garage for the `s3` phase.
#[path = "../../tests/support/mod.rs"]
mod support;
mod sys;
mod tools;

use std::path::PathBuf;

use report::{human, MIB};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const ACCEPT: &str =
    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
                      application/vnd.docker.distribution.manifest.v2+json, \
                      application/vnd.docker.distribution.manifest.list.v2+json";

/// Sizes and repetitions, from the environment.
pub struct Settings {
    quick: bool,
    /// Run the serving phase.
    serving: bool,
    /// Run the store phase.
    store: bool,
    /// Run the S3 phase.
    s3: bool,
    /// Run the soak phase.
    soak: bool,
    /// Soak: concurrent clients and seconds.
    soak_clients: usize,
    soak_secs: u64,
    /// The big layer (and the blob streamed 1 and 8 times).
    big: u64,
    /// The blob fetched cold alone and by `clients` at once.
    mid: u64,
    /// Repetitions of each timed measurement (the median is reported).
    runs: usize,
    /// Repetitions of each concurrent-streams run.
    fan_runs: usize,
    wrk_secs: u32,
    /// Concurrent cold clients.
    clients: usize,
    /// Concurrent streams of the big blob.
    fan: usize,
    /// Store phase: generated repositories at each measuring stage.
    stages: Vec<usize>,
    /// Store phase: tags of the many-tag repository.
    tags: usize,
    /// Store phase: HTTP clients filling the registries.
    fill_threads: usize,
}

impl Settings {
    fn from_env() -> Res<Settings> {
        let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let phases = std::env::var("BENCH_PHASES").unwrap_or_else(|_| "serving,store,s3".into());
        let phase = |p: &str| phases.split(',').any(|x| x.trim() == p);
        let stages = match std::env::var("BENCH_STORE_STAGES") {
            Ok(v) => v
                .split(',')
                .map(|n| {
                    n.trim()
                        .parse::<usize>()
                        .map_err(|e| format!("BENCH_STORE_STAGES {v:?}: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?,
            Err(_) if quick => vec![100, 500],
            Err(_) => vec![1000, 5000],
        };
        if stages.windows(2).any(|w| w[0] >= w[1]) || stages.is_empty() {
            return Err(format!("BENCH_STORE_STAGES must be increasing, got {stages:?}").into());
        }
        let s = Settings {
            quick,
            serving: phase("serving"),
            store: phase("store"),
            s3: phase("s3"),
            soak: phase("soak"),
            soak_clients: env_num("BENCH_SOAK_CLIENTS", if quick { 100 } else { 500 })?,
            soak_secs: env_num("BENCH_SOAK_SECS", if quick { 10 } else { 60 })?,
            big: if quick { 128 * MIB } else { 1024 * MIB },
            mid: if quick { 32 * MIB } else { 200 * MIB },
            runs: 3,
            fan_runs: if quick { 1 } else { 3 },
            wrk_secs: if quick { 2 } else { 8 },
            clients: 32,
            fan: 8,
            stages,
            tags: if quick { 1000 } else { 10_000 },
            fill_threads: 8,
        };
        if !(s.serving || s.store || s.s3 || s.soak) {
            return Err(format!(
                "BENCH_PHASES={phases:?} names no phase (serving, store, s3, soak)"
            )
            .into());
        }
        Ok(s)
    }

    fn phases(&self) -> String {
        let mut p = Vec::new();
        if self.serving {
            p.push("serving".to_string());
        }
        if self.store {
            p.push(format!("store at {:?} repositories", self.stages));
        }
        if self.s3 {
            p.push("s3 (one Garage node)".to_string());
        }
        if self.soak {
            p.push(format!(
                "soak: {} clients × {} s",
                self.soak_clients, self.soak_secs
            ));
        }
        p.join(", ")
    }

    /// The method lines at the top of the report.
    fn method(&self) -> Vec<String> {
        vec![
            "everything on 127.0.0.1; every client is a separate process reading whole bodies: \
             `skopeo copy --src-tls-verify=false docker://… dir:…` for pulls, `curl -s -o /dev/null` for blobs and \
             listings, `wrk --latency` for manifest GETs; one row keeps the previous in-process client for comparison"
                .into(),
            format!(
                "times: skopeo = process wall time; one curl = curl's own `time_total`; N concurrent curls = wall time \
                 from the first spawn to the last exit; medians of {} runs ({} for the {}-stream rows); store-phase \
                 requests get one untimed warm-up first",
                self.runs, self.fan_runs, self.fan
            ),
            format!(
                "references started in the same run: Distribution as upstream (\"direct\"), Distribution as a \
                 pull-through proxy (`proxy: remoteurl:`), a standalone Distribution for the store phase, nginx \
                 `sendfile on` serving wharf's own blob file; big blob {}, cold-GET blob {}",
                human(self.big),
                human(self.mid)
            ),
            "s3 phase: one Garage 2.5 node (sqlite metadata) on loopback; wharf (`[storage.s3]`, 16 MiB parts) and \
             Distribution (`storage: s3:` with `regionendpoint`, its defaults) each under their own key prefix of one \
             bucket, a fresh prefix per push; warm pulls: medians of 5; Distribution runs twice on the same prefix, streaming \
             (`redirect: disable: true`) and redirecting to presigned URLs (its default)"
                .into(),
        ]
    }
}

/// A number from the environment variable `key`, else `default`.
fn env_num<T: std::str::FromStr>(key: &str, default: T) -> Res<T>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(key) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|e| format!("{key}={v:?}: {e}").into()),
        Err(_) => Ok(default),
    }
}

/// The 1, 5 and 15 minute load averages.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    if let Err(e) = run() {
        eprintln!("benchmark failed: {e}");
        std::process::exit(1);
    }
}

fn run() -> Res<()> {
    let s = Settings::from_env()?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let work = tempfile::Builder::new().prefix("wharf-bench-").tempdir()?;
    let w = work.path();
    eprintln!("wharf binary: {}", servers::wharf_bin());
    eprintln!("work dir: {}", w.display());
    let mut rep = report::Report::default();
    let started = std::time::Instant::now();
    let load_start = loadavg();
    if s.serving {
        let t = std::time::Instant::now();
        serving::run(
            &s,
            &w.join("serving"),
            &target_dir.join("bench-data"),
            &mut rep,
        )?;
        rep.detail(format!(
            "Serving phase took {:.0} s.",
            t.elapsed().as_secs_f64()
        ));
        let _ = std::fs::remove_dir_all(w.join("serving"));
    }
    if s.store {
        let t = std::time::Instant::now();
        std::fs::create_dir_all(w.join("store"))?;
        scale::run(&s, &w.join("store"), &mut rep)?;
        rep.detail(format!(
            "Store phase took {:.0} s.",
            t.elapsed().as_secs_f64()
        ));
    }
    if s.s3 {
        let t = std::time::Instant::now();
        s3::run(&s, &w.join("s3"), &target_dir.join("bench-data"), &mut rep)?;
        rep.detail(format!("S3 phase took {:.0} s.", t.elapsed().as_secs_f64()));
        let _ = std::fs::remove_dir_all(w.join("s3"));
    }
    if s.soak {
        let t = std::time::Instant::now();
        std::fs::create_dir_all(w.join("soak"))?;
        soak::run(&s, &w.join("soak"), &mut rep)?;
        rep.detail(format!(
            "Soak phase took {:.0} s.",
            t.elapsed().as_secs_f64()
        ));
    }
    rep.detail(format!(
        "Whole run: {:.0} s.",
        started.elapsed().as_secs_f64()
    ));
    let mut method = s.method();
    method.push(format!(
        "machine load (`/proc/loadavg`, 1/5/15 min) at start: {load_start}; at end: {}; the CPUs are shared with other work",
        loadavg()
    ));
    let md = rep.markdown(s.quick, &s.phases(), &method);
    if std::env::var_os("BENCH_KEEP").is_some() {
        let kept = work.keep();
        eprintln!("kept work dir {} (BENCH_KEEP)", kept.display());
    }
    print!("{md}");
    std::fs::create_dir_all(&target_dir)?;
    let report = target_dir.join("bench-report.md");
    std::fs::write(&report, &md)?;
    eprintln!("report written to {}", report.display());
    Ok(())
}
