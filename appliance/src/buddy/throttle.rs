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
//!
//! Each client is also charged to a bucket of its own, filled at its share
//! of the rate: all of it while no other client has read in the last
//! [`ACTIVE`], less as others read. Another client counts for the part of
//! an equal share it used lately (its rate, averaged over about [`ACTIVE`]),
//! at most one: two clients reading without pause get half each, while one
//! that reads a chunk now and then takes almost nothing from the others'
//! share. A client alone (a box recovering from this buddy) gets the whole
//! rate; a hostile client, however hard it asks, leaves the others their
//! part, so it cannot slow honest clients' restores down to nothing, and it
//! cannot halve their rate cheaply by reading a little every second.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pastiche_core::PublicKey;

/// Work (bytes opened or sealed) all clients may cost per second, by default.
pub const DEFAULT_WORK_PER_SEC: u64 = 128 << 20;
/// The smallest rate a box may set: about one group's plaintext a second.
/// One scattered read may open a whole group, so below it a single read
/// would owe more than the longest wait.
pub const MIN_WORK_PER_SEC: u64 = 1 << 20;
/// How recently a client must have read to count as active, so that
/// others share the rate with it.
pub const ACTIVE: Duration = Duration::from_secs(2);
/// The longest one read waits: a client that asked for more than a
/// second's worth at once pays it over its next reads.
const MAX_WAIT: Duration = Duration::from_secs(1);
/// Clients' buckets kept before those of clients idle for [`ACTIVE`] are
/// forgotten.
const CLIENTS_KEPT: usize = 64;

/// Token buckets of work bytes, one for all clients and one per client:
/// each holds up to one second's worth of its rate.
#[derive(Debug)]
pub struct WorkThrottle {
    buckets: Mutex<Buckets>,
    charged: AtomicU64,
    waits: AtomicU64,
}

#[derive(Debug)]
struct Buckets {
    per_sec: u64,
    all: Bucket,
    clients: HashMap<PublicKey, Bucket>,
}

/// One token bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Bytes that may be spent now (negative: owed).
    tokens: f64,
    last: Option<Instant>,
    /// Bytes a second charged lately, as of `last`: an average decaying
    /// with time constant [`ACTIVE`].
    usage: f64,
}

impl Bucket {
    fn full(per_sec: f64) -> Bucket {
        Bucket { tokens: per_sec, last: None, usage: 0.0 }
    }

    /// The recent rate of charges, decayed to `now`.
    fn usage_at(&self, now: Instant) -> f64 {
        match self.last {
            Some(last) => {
                self.usage * (-now.saturating_duration_since(last).as_secs_f64() / ACTIVE.as_secs_f64()).exp()
            }
            None => 0.0,
        }
    }

    /// Adds a charge of `bytes` at `now` to the recent rate (before [`Bucket::take`] moves `last`).
    fn record(&mut self, bytes: u64, now: Instant) {
        self.usage = self.usage_at(now) + bytes as f64 / ACTIVE.as_secs_f64();
    }

    /// Refills for the time since the last charge at `per_sec`, up to a
    /// second's worth of it.
    fn refill(&mut self, per_sec: f64, now: Instant) {
        if let Some(last) = self.last {
            let refill = now.saturating_duration_since(last).as_secs_f64() * per_sec;
            self.tokens = (self.tokens + refill).min(per_sec);
        }
        self.last = Some(now);
    }

    /// Takes `bytes` at `now`; returns how long until the bucket is no longer overdrawn.
    fn take(&mut self, per_sec: f64, bytes: u64, now: Instant) -> Duration {
        self.refill(per_sec, now);
        self.tokens -= bytes as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / per_sec)
        }
    }
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
    /// A throttle allowing `per_sec` work bytes per second (at least
    /// [`MIN_WORK_PER_SEC`]), its buckets full.
    pub fn new(per_sec: u64) -> WorkThrottle {
        let per_sec = per_sec.max(MIN_WORK_PER_SEC);
        let buckets = Buckets { per_sec, all: Bucket::full(per_sec as f64), clients: HashMap::new() };
        WorkThrottle { buckets: Mutex::new(buckets), charged: AtomicU64::new(0), waits: AtomicU64::new(0) }
    }

    /// Changes the rate (at least [`MIN_WORK_PER_SEC`]; buckets keep what
    /// they hold, up to their new size).
    pub fn set_rate(&self, per_sec: u64) {
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        b.per_sec = per_sec.max(MIN_WORK_PER_SEC);
        let all = b.per_sec as f64;
        b.all.tokens = b.all.tokens.min(all);
        for c in b.clients.values_mut() {
            c.tokens = c.tokens.min(all);
        }
    }

    /// Charges `bytes` of work done for `client` and sleeps for as long as
    /// its bucket or the shared one is overdrawn (at most [`MAX_WAIT`]).
    /// Called where blocking is allowed (the buddy's store calls run in
    /// `block_in_place`).
    pub fn pay(&self, client: &PublicKey, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let wait = self.charge(client, bytes, Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }

    /// Charges `bytes` done for `client` at `now`; returns how long the caller must wait.
    pub fn charge(&self, client: &PublicKey, bytes: u64, now: Instant) -> Duration {
        self.charged.fetch_add(bytes, Ordering::Relaxed);
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let all = b.per_sec as f64;
        let active = |c: &Bucket| c.last.is_some_and(|last| now.saturating_duration_since(last) < ACTIVE);
        if b.clients.len() >= CLIENTS_KEPT && !b.clients.contains_key(client) {
            // Forgetting idle clients keeps the map as small as the
            // clients active lately. One that owed work pays it no more,
            // but the shared bucket still holds the debt, and it had to
            // stay idle for the whole [`ACTIVE`] to escape.
            b.clients.retain(|_, c| active(c));
        }
        // Every read of a grouped chunk passes here: no allocation, two
        // passes over at most CLIENTS_KEPT buckets.
        let others = || b.clients.iter().filter(|(k, c)| *k != client && active(c)).map(|(_, c)| c.usage_at(now));
        let share = share_of(all, others().count(), others());
        let bucket = b.clients.entry(*client).or_insert(Bucket::full(share));
        bucket.record(bytes, now);
        let own = bucket.take(share, bytes, now);
        let shared = b.all.take(all, bytes, now);
        let wait = own.max(shared);
        if wait.is_zero() {
            return wait;
        }
        self.waits.fetch_add(1, Ordering::Relaxed);
        wait.min(MAX_WAIT)
    }

    /// What was charged and made to wait so far.
    pub fn stats(&self) -> ThrottleStats {
        ThrottleStats { charged: self.charged.load(Ordering::Relaxed), waits: self.waits.load(Ordering::Relaxed) }
    }
}

/// A client's share of `rate` while `n` other active clients use `usage`
/// (bytes a second each, lately): each other client counts for the part
/// of an equal share it used, at most one.
fn share_of(rate: f64, n: usize, usage: impl Iterator<Item = f64>) -> f64 {
    let equal = rate / (1 + n) as f64;
    let counted: f64 = usage.map(|u| (u / equal).min(1.0)).sum();
    rate / (1.0 + counted)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const A: PublicKey = PublicKey([1; 32]);
    const B: PublicKey = PublicKey([2; 32]);

    #[test]
    fn a_full_bucket_lets_a_seconds_worth_through_then_makes_reads_wait() {
        let t = WorkThrottle::new(4 * MIB);
        let now = Instant::now();
        for _ in 0..4 {
            assert_eq!(t.charge(&A, MIB, now), Duration::ZERO);
        }
        // Overdrawn by 1 MiB at 4 MiB/s: a quarter of a second.
        assert_eq!(t.charge(&A, MIB, now), Duration::from_millis(250));
        assert_eq!(t.stats(), ThrottleStats { charged: 5 * MIB, waits: 1 });
    }

    #[test]
    fn the_bucket_refills_with_time_but_never_past_one_second() {
        let t = WorkThrottle::new(4 * MIB);
        let start = Instant::now();
        assert_eq!(t.charge(&A, 4 * MIB, start), Duration::ZERO);
        // Half a second later, 2 MiB are back.
        assert_eq!(t.charge(&A, 2 * MIB, start + Duration::from_millis(500)), Duration::ZERO);
        assert!(t.charge(&A, MIB, start + Duration::from_millis(500)) > Duration::ZERO);
        // An hour idle refills to 4 MiB, not more.
        let later = start + Duration::from_secs(3600);
        assert_eq!(t.charge(&A, 4 * MIB, later), Duration::ZERO);
        assert!(t.charge(&A, 1, later) > Duration::ZERO);
    }

    #[test]
    fn a_huge_charge_waits_at_most_a_second_and_is_paid_off_later() {
        let t = WorkThrottle::new(MIB);
        let now = Instant::now();
        assert_eq!(t.charge(&A, 10 * MIB, now), MAX_WAIT);
        // Still owed: the next read waits too.
        assert_eq!(t.charge(&A, 1, now + Duration::from_secs(1)), MAX_WAIT);
    }

    #[test]
    fn scattered_requests_cost_no_more_than_the_rate_allows() {
        // Every request opens a 1 MiB group: at 8 MiB/s, two clients
        // asking 100 each over a simulated clock must take at least
        // (200 - 8) / 8 seconds.
        let t = WorkThrottle::new(8 * MIB);
        let mut now = Instant::now();
        let start = now;
        for _ in 0..100 {
            for client in [A, B] {
                now += t.charge(&client, MIB, now);
            }
        }
        assert!(now - start >= Duration::from_secs_f64(192.0 / 8.0) - Duration::from_millis(1));
    }

    /// Over 20 simulated seconds at 8 MiB/s, A asks 1 MiB every 10 ms
    /// (100 MiB/s) and B 1 MiB every `b_every`. Returns the MiB A got and
    /// how long B waited in all.
    fn heavy_against_light(b_every: Duration) -> (u64, Duration) {
        let t = WorkThrottle::new(8 * MIB);
        let start = Instant::now();
        let (mut a_next, mut b_next) = (start, start);
        let (mut a_got, mut b_waited) = (0u64, Duration::ZERO);
        let end = start + Duration::from_secs(20);
        while a_next < end || b_next < end {
            if a_next <= b_next {
                a_next += t.charge(&A, MIB, a_next) + Duration::from_millis(10);
                a_got += 1;
            } else {
                let wait = t.charge(&B, MIB, b_next);
                b_waited += wait;
                b_next += wait + b_every;
            }
        }
        (a_got, b_waited)
    }

    #[test]
    fn one_client_asking_without_pause_leaves_the_others_their_part() {
        // B reads 2 MiB/s, half of an equal share: it counts for half a
        // client, so A's share is 8 / 1.5 MiB/s. A gets more than half of
        // the rate (B leaves part of its share unused) but never what B
        // reads, and B hardly waits.
        let (a_got, b_waited) = heavy_against_light(Duration::from_millis(500));
        assert!(a_got > 4 * 20 + 8, "A got {a_got} MiB in 20 s: B's unused share went to nobody");
        assert!(a_got <= 6 * 20 + 8, "A got {a_got} MiB in 20 s: more than B leaves of 8 MiB/s");
        assert!(b_waited < Duration::from_secs(2), "B waited {b_waited:?} for 40 reads");
    }

    #[test]
    fn a_client_reading_a_little_does_not_halve_the_others_share() {
        // B reads 1 MiB every 1.9 s, enough to count as active: A still
        // gets about 7 MiB/s of the 8 (with B counted as a whole client it
        // got 88 MiB in 20 s), and B hardly waits.
        let (a_got, b_waited) = heavy_against_light(Duration::from_millis(1900));
        assert!(a_got >= 130, "A got {a_got} MiB in 20 s next to a client reading 0.5 MiB/s");
        assert!(b_waited < Duration::from_secs(1), "B waited {b_waited:?} for 11 reads");
    }

    #[test]
    fn two_clients_reading_without_pause_get_half_each() {
        let t = WorkThrottle::new(8 * MIB);
        let start = Instant::now();
        let mut next = [start, start];
        let mut got = [0u64; 2];
        let end = start + Duration::from_secs(20);
        while next.iter().any(|&n| n < end) {
            let i = if next[0] <= next[1] { 0 } else { 1 };
            next[i] += t.charge(&[A, B][i], MIB, next[i]);
            got[i] += 1;
        }
        for (i, g) in got.iter().enumerate() {
            assert!((70..=100).contains(g), "client {i} got {g} MiB of 168 in 20 s: {got:?}");
        }
    }

    #[test]
    fn shares_count_each_other_client_for_what_it_used() {
        let share = |rate: f64, others: &[f64]| share_of(rate, others.len(), others.iter().copied());
        assert_eq!(share(8.0, &[]), 8.0);
        assert_eq!(share(8.0, &[4.0]), 4.0);
        assert_eq!(share(8.0, &[100.0]), 4.0);
        assert_eq!(share(8.0, &[2.0]), 8.0 / 1.5);
        assert_eq!(share(8.0, &[0.0, 0.0, 0.0]), 8.0);
        assert_eq!(share(9.0, &[9.0, 9.0]), 3.0);
    }

    #[test]
    fn a_client_alone_gets_the_whole_rate() {
        // A recovering box is the only reader: at 8 MiB/s, 1 MiB reads
        // back to back for 10 simulated seconds get about 80 MiB.
        let t = WorkThrottle::new(8 * MIB);
        let start = Instant::now();
        let mut now = start;
        let mut got = 0u64;
        while now < start + Duration::from_secs(10) {
            now += t.charge(&A, MIB, now);
            got += 1;
        }
        assert!(got >= 80, "a client alone got {got} MiB in 10 s at 8 MiB/s");
    }

    #[test]
    fn idle_clients_are_forgotten_once_many_were_seen() {
        let t = WorkThrottle::new(8 * MIB);
        let start = Instant::now();
        for i in 0..CLIENTS_KEPT as u8 {
            t.charge(&PublicKey([i; 32]), MIB, start);
        }
        t.charge(&PublicKey([200; 32]), MIB, start + ACTIVE);
        assert_eq!(t.buckets.lock().unwrap().clients.len(), 1);
    }
}
