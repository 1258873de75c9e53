//! A per-remote bandwidth cap (`max_bandwidth`) shared by every download
//! from that remote: a token bucket kept as one "theoretical arrival time"
//! (GCRA). Each chunk reserves `len / rate` seconds of the link; a chunk
//! that would run ahead of the rate by more than the burst allowance waits
//! the difference. Concurrent fetches interleave their reservations, so
//! together they never exceed the rate.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How far ahead of the rate a burst may run (a quarter second of link).
const BURST: Duration = Duration::from_millis(250);

#[derive(Debug)]
pub struct Throttle {
    bytes_per_sec: u64,
    /// When the link is free again, given everything reserved so far.
    free_at: Mutex<Instant>,
}

impl Throttle {
    pub fn new(bytes_per_sec: u64) -> Throttle {
        Throttle {
            bytes_per_sec: bytes_per_sec.max(1),
            free_at: Mutex::new(Instant::now()),
        }
    }

    /// Reserve `len` bytes at `now`; how long the caller must wait before
    /// passing them on.
    fn reserve(&self, len: usize, now: Instant) -> Duration {
        let cost = Duration::from_secs_f64(len as f64 / self.bytes_per_sec as f64);
        let mut free_at = self.free_at.lock().unwrap_or_else(|p| p.into_inner());
        let start = (*free_at).max(now);
        *free_at = start + cost;
        (*free_at).saturating_duration_since(now + BURST)
    }

    /// Wait until `len` more bytes fit under the cap; how long that was.
    pub async fn admit(&self, len: usize) -> Duration {
        let wait = self.reserve(len, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let t = Throttle::new(1_000_000);
        let now = Instant::now();
        // 200 KB fit in the 250 ms burst.
        assert_eq!(t.reserve(200_000, now), Duration::ZERO);
        // The next 100 KB end at 300 ms: 50 ms past the burst.
        assert_eq!(t.reserve(100_000, now), Duration::from_millis(50));
    }

    #[test]
    fn concurrent_reservations_share_the_rate() {
        let t = Throttle::new(1_000_000);
        let now = Instant::now();
        // Ten fetches of 1 MB each, all at once: the last waits for 10 s
        // of link minus the burst, as one fetch of 10 MB would.
        let waits: Vec<Duration> = (0..10).map(|_| t.reserve(1_000_000, now)).collect();
        assert_eq!(*waits.last().unwrap(), Duration::from_millis(9_750));
    }

    #[test]
    fn an_idle_link_does_not_bank_credit() {
        let t = Throttle::new(1_000_000);
        let now = Instant::now();
        t.reserve(100_000, now);
        let later = now + Duration::from_secs(60);
        // After a minute idle only the burst is free again, not 60 s of it.
        assert_eq!(t.reserve(1_000_000, later), Duration::from_millis(750));
    }
}
