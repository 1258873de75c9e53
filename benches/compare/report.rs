//! The report: rows of (measurement, wharf, reference, ratio, target,
//! result), notes, and the Markdown written to `target/bench-report.md`.

use std::fmt::Write as _;
use std::time::Duration;

use crate::sys::cmd_out;

pub const MIB: u64 = 1024 * 1024;

/// One table row. `pass` is `None` for rows that only inform.
pub struct Row {
    pub name: String,
    pub wharf: String,
    pub reference: String,
    pub ratio: String,
    pub target: String,
    pub pass: Option<bool>,
}

/// Rows and notes collected by the phases.
#[derive(Default)]
pub struct Report {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
    /// Free text printed under the table (per-run figures, fill times).
    pub details: Vec<String>,
}

impl Report {
    pub fn row(
        &mut self,
        name: &str,
        wharf: String,
        reference: String,
        ratio: String,
        target: &str,
        pass: Option<bool>,
    ) {
        self.rows.push(Row {
            name: name.into(),
            wharf,
            reference,
            ratio,
            target: target.into(),
            pass,
        });
    }

    /// A peak-RSS row: wharf's and the reference's VmHWM (bytes), passing
    /// when wharf's is known and at most `limit_mib`.
    pub fn peak_rss_row(&mut self, name: &str, wharf: u64, reference: u64, limit_mib: u64) {
        self.row(
            name,
            mib(wharf),
            mib(reference),
            ratio(wharf as f64, reference as f64),
            &format!("wharf ≤ {limit_mib} MiB"),
            Some(wharf > 0 && wharf <= limit_mib * MIB),
        );
    }

    pub fn note(&mut self, n: impl Into<String>) {
        self.notes.push(n.into());
    }

    pub fn detail(&mut self, d: impl Into<String>) {
        self.details.push(d.into());
    }

    /// The whole report: header (date, machine, method), table, details.
    pub fn markdown(&self, quick: bool, phases: &str, method: &[String]) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "## wharf benchmark{}\n",
            if quick {
                " (BENCH_QUICK: small sizes, not a result)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            md,
            "- date: {}",
            cmd_out("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
        );
        let _ = writeln!(
            md,
            "- machine: {} CPUs (`nproc`), {}, Linux {}, {} memory",
            cmd_out("nproc", &[]),
            cpu_model(),
            cmd_out("uname", &["-r"]),
            mem_total()
        );
        let _ = writeln!(
            md,
            "- references: {} (Distribution), {}, {}, {}, {}",
            cmd_out(crate::servers::REGISTRY_BIN, &["--version"]),
            cmd_out(crate::servers::NGINX_BIN, &["-v"]),
            first_line(&cmd_out("curl", &["--version"]))
                .split(" (")
                .next()
                .unwrap_or("curl"),
            cmd_out("skopeo", &["--version"]),
            first_line(&cmd_out("wrk", &["--version"]))
                .split(" [")
                .next()
                .unwrap_or("wrk"),
        );
        let _ = writeln!(
            md,
            "- command: `{}cargo bench --bench compare` (phases: {phases})",
            if quick { "BENCH_QUICK=1 " } else { "" }
        );
        for m in method {
            let _ = writeln!(md, "- {m}");
        }
        let _ = writeln!(md);
        let _ = writeln!(
            md,
            "| Measurement | wharf | reference | ratio | target | result |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---|---|");
        for r in &self.rows {
            let res = match r.pass {
                Some(true) => "PASS",
                Some(false) => "MISS",
                None => "info",
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                r.name, r.wharf, r.reference, r.ratio, r.target, res
            );
        }
        let _ = writeln!(md);
        for d in &self.details {
            let _ = writeln!(md, "{d}\n");
        }
        for n in &self.notes {
            let _ = writeln!(md, "Note: {n}\n");
        }
        md
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

fn mem_total() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let kb: f64 = m
                .lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some(format!("{:.0} GiB", kb / 1024.0 / 1024.0))
        })
        .unwrap_or_else(|| "?".into())
}

// ---------------------------------------------------------------------------
// Numbers

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

pub fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

pub fn secs(d: f64) -> String {
    format!("{d:.3} s")
}

pub fn ms(d: f64) -> String {
    if d < 0.01 {
        format!("{:.2} ms", d * 1e3)
    } else {
        format!("{:.1} ms", d * 1e3)
    }
}

pub fn gbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e9
}

pub fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / MIB as f64)
}

pub fn ratio(a: f64, b: f64) -> String {
    format!("{:.3}", a / b)
}

pub fn human(bytes: u64) -> String {
    if bytes >= 1024 * MIB {
        format!("{:.0} GiB", bytes as f64 / (1024.0 * MIB as f64))
    } else {
        format!("{} MiB", bytes / MIB)
    }
}

pub fn round(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| (x * 1000.0).round() / 1000.0).collect()
}
