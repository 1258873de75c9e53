//! glibc malloc settings for serving, applied once before the runtime
//! starts.
//!
//! By default glibc hands freed memory back to the kernel as soon as an
//! arena's free top passes a threshold it tunes itself, and serves
//! allocations above another (also self-tuned, starting at 128 KiB) with a
//! fresh `mmap` each. A pull-through fetch allocates and frees a few MiB
//! of receive buffers every few milliseconds (hyper's reads, held by the
//! fetch's memory window and the spool batch, then dropped), so the same
//! memory went back and forth: a cold 200 MiB GET took about 19,000 page
//! faults, each one zeroing a fresh page, and the `madvise` calls that gave
//! them back. With fixed thresholds the arenas keep up to
//! [`TRIM_THRESHOLD`] of free memory and reuse it: about 2,500 faults, and
//! 9 % less CPU per cold 200 MiB GET, 12 % per cold skopeo pull (see the
//! README's benchmark notes).
//!
//! Memory stays bounded: at most [`TRIM_THRESHOLD`] of free memory per
//! arena (glibc keeps at most 8 arenas per CPU), and what is in use is
//! bounded as before by the per-fetch window and the chunk pools.
//!
//! An operator's own `MALLOC_TRIM_THRESHOLD_`, `MALLOC_MMAP_THRESHOLD_` or
//! `GLIBC_TUNABLES` wins: wharf then leaves that setting alone. Other C
//! libraries (musl) have no such knobs, and nothing is done there.

/// Free memory an arena keeps at its top instead of trimming it.
pub const TRIM_THRESHOLD: usize = 16 * 1024 * 1024;
/// Allocations at least this large get a mapping of their own.
pub const MMAP_THRESHOLD: usize = 4 * 1024 * 1024;

/// The two settings.
enum Knob {
    Trim,
    Mmap,
}

/// Apply the settings (call before any thread is started).
pub fn tune() {
    if std::env::var_os("GLIBC_TUNABLES").is_some() {
        return;
    }
    imp::set_unless_env("MALLOC_TRIM_THRESHOLD_", Knob::Trim, TRIM_THRESHOLD);
    imp::set_unless_env("MALLOC_MMAP_THRESHOLD_", Knob::Mmap, MMAP_THRESHOLD);
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    use super::Knob;

    pub fn set_unless_env(var: &str, knob: Knob, value: usize) {
        if std::env::var_os(var).is_some() {
            return;
        }
        let param = match knob {
            Knob::Trim => libc::M_TRIM_THRESHOLD,
            Knob::Mmap => libc::M_MMAP_THRESHOLD,
        };
        let value = libc::c_int::try_from(value).unwrap_or(libc::c_int::MAX);
        // SAFETY: `mallopt` only changes malloc's tuning parameters; it takes
        // plain integers, touches no memory of ours, and glibc serialises it
        // with the arenas' own locks. It is called before the runtime starts
        // its threads. A refused value (return 0) leaves the default.
        #[allow(unsafe_code)]
        let _ = unsafe { libc::mallopt(param, value) };
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    use super::Knob;

    pub fn set_unless_env(_var: &str, _knob: Knob, _value: usize) {}
}
