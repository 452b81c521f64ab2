//! What serving clients may cost the box in work beyond reading.
//!
//! The box keeps its own chunks in compressed groups ([`crate::store::group`]).
//! A client whose chunks are also the box's (the same data, deduplicated)
//! is served them sealed from those groups: each read may open a group of
//! about 1 MiB and seals the chunk. In the order a restore asks for them
//! that is cheap (each group is opened once, then cached); asked in a
//! scattered order, a request of 16 KiB could cost a 1 MiB group every
//! time. Such work is charged to one token bucket shared by every client:
//! past its burst, a read waits until the bucket refills, so clients
//! together cost the box at most [`DEFAULT_WORK_PER_SEC`] of it (about a
//! tenth of a core; `[serve] group_work_per_sec` sets it), however they
//! order their requests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Work (bytes opened or sealed) all clients may cost per second, by default.
pub const DEFAULT_WORK_PER_SEC: u64 = 128 << 20;
/// The longest one read waits: a client that asked for more than a
/// second's worth at once pays it over its next reads.
const MAX_WAIT: Duration = Duration::from_secs(1);

/// A token bucket of work bytes: holds up to one second's worth.
#[derive(Debug)]
pub struct WorkThrottle {
    bucket: Mutex<Bucket>,
    charged: AtomicU64,
    waits: AtomicU64,
}

#[derive(Debug)]
struct Bucket {
    per_sec: u64,
    /// Bytes that may be spent now (negative: owed).
    tokens: f64,
    last: Option<Instant>,
}

/// What a throttle charged and made wait, since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThrottleStats {
    /// Work bytes charged.
    pub charged: u64,
    /// Reads that had to wait.
    pub waits: u64,
}

impl Default for WorkThrottle {
    fn default() -> WorkThrottle {
        WorkThrottle::new(DEFAULT_WORK_PER_SEC)
    }
}

impl WorkThrottle {
    /// A throttle allowing `per_sec` work bytes per second, its bucket full.
    pub fn new(per_sec: u64) -> WorkThrottle {
        let bucket = Bucket { per_sec: per_sec.max(1), tokens: per_sec.max(1) as f64, last: None };
        WorkThrottle { bucket: Mutex::new(bucket), charged: AtomicU64::new(0), waits: AtomicU64::new(0) }
    }

    /// Changes the rate (the bucket keeps what it holds, up to the new size).
    pub fn set_rate(&self, per_sec: u64) {
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        b.per_sec = per_sec.max(1);
        b.tokens = b.tokens.min(b.per_sec as f64);
    }

    /// Charges `bytes` of work and sleeps for as long as the bucket is
    /// overdrawn (at most [`MAX_WAIT`]). Called where blocking is allowed
    /// (the buddy's store calls run in `block_in_place`).
    pub fn pay(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let wait = self.charge(bytes, Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }

    /// Charges `bytes` at `now`; returns how long the caller must wait.
    pub fn charge(&self, bytes: u64, now: Instant) -> Duration {
        self.charged.fetch_add(bytes, Ordering::Relaxed);
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let per_sec = b.per_sec as f64;
        if let Some(last) = b.last {
            let refill = now.saturating_duration_since(last).as_secs_f64() * per_sec;
            b.tokens = (b.tokens + refill).min(per_sec);
        }
        b.last = Some(now);
        b.tokens -= bytes as f64;
        if b.tokens >= 0.0 {
            return Duration::ZERO;
        }
        self.waits.fetch_add(1, Ordering::Relaxed);
        Duration::from_secs_f64(-b.tokens / per_sec).min(MAX_WAIT)
    }

    /// What was charged and made to wait so far.
    pub fn stats(&self) -> ThrottleStats {
        ThrottleStats { charged: self.charged.load(Ordering::Relaxed), waits: self.waits.load(Ordering::Relaxed) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_full_bucket_lets_a_seconds_worth_through_then_makes_reads_wait() {
        let t = WorkThrottle::new(4 * MIB);
        let now = Instant::now();
        for _ in 0..4 {
            assert_eq!(t.charge(MIB, now), Duration::ZERO);
        }
        // Overdrawn by 1 MiB at 4 MiB/s: a quarter of a second.
        assert_eq!(t.charge(MIB, now), Duration::from_millis(250));
        assert_eq!(t.stats(), ThrottleStats { charged: 5 * MIB, waits: 1 });
    }

    #[test]
    fn the_bucket_refills_with_time_but_never_past_one_second() {
        let t = WorkThrottle::new(4 * MIB);
        let start = Instant::now();
        assert_eq!(t.charge(4 * MIB, start), Duration::ZERO);
        // Half a second later, 2 MiB are back.
        assert_eq!(t.charge(2 * MIB, start + Duration::from_millis(500)), Duration::ZERO);
        assert!(t.charge(MIB, start + Duration::from_millis(500)) > Duration::ZERO);
        // An hour idle refills to 4 MiB, not more.
        let later = start + Duration::from_secs(3600);
        assert_eq!(t.charge(4 * MIB, later), Duration::ZERO);
        assert!(t.charge(1, later) > Duration::ZERO);
    }

    #[test]
    fn a_huge_charge_waits_at_most_a_second_and_is_paid_off_later() {
        let t = WorkThrottle::new(MIB);
        let now = Instant::now();
        assert_eq!(t.charge(10 * MIB, now), MAX_WAIT);
        // Still owed 9 MiB: the next read waits too.
        assert_eq!(t.charge(1, now + Duration::from_secs(1)), MAX_WAIT);
    }

    #[test]
    fn scattered_requests_cost_no_more_than_the_rate_allows() {
        // Every request opens a 1 MiB group: at 8 MiB/s, 100 of them over
        // a simulated clock must take at least (100 - 8) / 8 seconds.
        let t = WorkThrottle::new(8 * MIB);
        let mut now = Instant::now();
        let start = now;
        for _ in 0..100 {
            now += t.charge(MIB, now);
        }
        assert!(now - start >= Duration::from_secs_f64(92.0 / 8.0) - Duration::from_millis(1));
    }
}
