//! Processes and the kernel's view of them: child processes killed on drop,
//! free ports, peak RSS and CPU time from `/proc`, small command helpers.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Res;

/// A child process, killed (and reaped) on drop.
pub struct Proc {
    name: &'static str,
    pub child: Option<Child>,
}

impl Proc {
    pub fn spawn(name: &'static str, cmd: &mut Command) -> Res<Proc> {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {name} ({cmd:?}): {e}"))?;
        Ok(Proc {
            name,
            child: Some(child),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Wait until `addr` accepts connections (or the process died).
    pub fn wait_listening(&mut self, addr: SocketAddr, log: &Path) -> Res<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if let Some(status) = c.try_wait()? {
                    self.child = None;
                    let logs = std::fs::read_to_string(log).unwrap_or_default();
                    return Err(format!(
                        "{} exited during start-up ({status}):\n{logs}",
                        self.name
                    )
                    .into());
                }
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        Err(format!("{} did not listen on {addr} within 30 s", self.name).into())
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, wait up to 10 s, then SIGKILL. For nginx: its master stops
    /// the workers on SIGTERM, while a SIGKILLed master leaves them running.
    pub fn terminate(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn free_addr() -> Res<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

pub fn log_file(p: &Path) -> Res<(File, File)> {
    let f = File::options().create(true).append(true).open(p)?;
    Ok((f.try_clone()?, f))
}

/// A `kB` field of `/proc/<pid>/status` (`VmHWM:`, `VmRSS:`), in bytes.
fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Peak resident set (VmHWM) of `pid`, in bytes.
pub fn vm_hwm(pid: u32) -> Option<u64> {
    status_bytes(pid, "VmHWM:")
}

/// Current resident set (VmRSS) of `pid`, in bytes.
pub fn vm_rss(pid: u32) -> Option<u64> {
    status_bytes(pid, "VmRSS:")
}

/// Open file descriptors of `pid`: (all, of them sockets).
pub fn fd_count(pid: u32) -> (usize, usize) {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return (0, 0);
    };
    let (mut all, mut sockets) = (0, 0);
    for e in rd.flatten() {
        all += 1;
        if std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:")) {
            sockets += 1;
        }
    }
    (all, sockets)
}

/// CPU time (user + system) `pid` has used, in seconds.
pub fn cpu_secs(pid: u32) -> f64 {
    // utime and stime: fields 14 and 15 of the line.
    stat_secs(&format!("/proc/{pid}/stat"), [14, 15])
}

/// CPU time (user + system) of this process's children that were waited
/// for (the clients it ran), in seconds.
pub fn children_cpu_secs() -> f64 {
    // cutime and cstime: fields 16 and 17 of the line.
    stat_secs("/proc/self/stat", [16, 17])
}

/// The sum of two clock-tick fields (numbered from 1) of a `stat` file, in
/// seconds; 0 when it cannot be read.
fn stat_secs(path: &str, fields: [usize; 2]) -> f64 {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // Fields after the command name (field 2, which may contain spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields
        .iter()
        .filter_map(|&i| f.get(i - 3)?.parse::<f64>().ok())
        .sum();
    ticks / clock_ticks()
}

fn clock_ticks() -> f64 {
    static T: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *T.get_or_init(|| cmd_out("getconf", &["CLK_TCK"]).parse().unwrap_or(100.0))
}

/// CPU seconds of `pid` and its direct children (nginx's workers).
pub fn cpu_tree(pid: u32) -> f64 {
    let mut total = cpu_secs(pid);
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
                continue;
            };
            let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            if rest
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u32>().ok())
                == Some(pid)
            {
                total += cpu_secs(child);
            }
        }
    }
    total
}

/// Reset the peak RSS of `pid` to its current RSS (`clear_refs` value 5).
pub fn reset_hwm(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// Whether this process runs as root (nginx then needs `user root;`).
pub fn is_root() -> bool {
    cmd_out("id", &["-u"]) == "0"
}

/// Flush dirty pages so that one run's writeback does not land in the next.
pub fn sync_disks() {
    let _ = Command::new("sync").status();
}

/// The trimmed stdout (or, when empty, stderr) of a command; "?" when it
/// cannot run.
pub fn cmd_out(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map(|o| {
            let s = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&s).trim().to_string()
        })
        .unwrap_or_else(|_| "?".into())
}
