//! The standard `process_*` series (as Prometheus client libraries export
//! them), read from `/proc/self` at scrape time, and `wharf_build_info`.
//! Off Linux the process series are absent.

/// What `/proc/self` says about this process.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
    pub start_time_seconds: f64,
    pub threads: u64,
}

/// Clock ticks per second for `/proc/<pid>/stat` (USER_HZ; 100 on every
/// Linux architecture wharf builds for).
const TICKS_PER_SECOND: f64 = 100.0;
const PAGE_SIZE: u64 = 4096;

impl ProcessStats {
    /// Read the current process's figures; `None` off Linux or when
    /// `/proc` is not mounted.
    pub fn read() -> Option<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| boot_time(&s));
        let mut p = parse_stat(&stat, boot?)?;
        p.open_fds = std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count() as u64)
            .unwrap_or(0);
        p.max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|s| max_open_files(&s));
        Some(p)
    }
}

/// Fields of `/proc/self/stat` after the command name (which may hold
/// spaces and parentheses, so split after the last `)`).
fn parse_stat(stat: &str, boot_time: u64) -> Option<ProcessStats> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime 15, threads 20,
    // starttime 22, vsize 23, rss 24.
    let num = |i: usize| f.get(i - 3).and_then(|v| v.parse::<u64>().ok());
    let start_ticks = num(22)?;
    Some(ProcessStats {
        cpu_seconds: (num(14)? + num(15)?) as f64 / TICKS_PER_SECOND,
        threads: num(20)?,
        start_time_seconds: boot_time as f64 + start_ticks as f64 / TICKS_PER_SECOND,
        virtual_bytes: num(23)?,
        resident_bytes: num(24)? * PAGE_SIZE,
        open_fds: 0,
        max_fds: None,
    })
}

fn boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_with_a_tricky_command_name() {
        let line = "4242 (wharf (x) y) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 7 0 1000 123456789 2048 18446744073709551615";
        let p = parse_stat(line, 1_700_000_000).unwrap();
        assert_eq!(p.cpu_seconds, 3.0);
        assert_eq!(p.threads, 7);
        assert_eq!(p.virtual_bytes, 123456789);
        assert_eq!(p.resident_bytes, 2048 * 4096);
        assert_eq!(p.start_time_seconds, 1_700_000_010.0);
    }

    #[test]
    fn reads_limits_and_boot_time() {
        assert_eq!(max_open_files("Limit  Soft Limit Hard Limit Units\nMax open files            1024                 524288               files\n"), Some(1024));
        assert_eq!(
            boot_time("cpu 1 2 3\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn reads_this_process() {
        let p = ProcessStats::read().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(p.resident_bytes > 0 && p.open_fds > 0 && p.start_time_seconds <= now + 1.0);
    }
}
