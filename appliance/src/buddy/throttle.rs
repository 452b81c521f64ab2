//! What serving clients may cost the box in work beyond reading.
//!
//! The box keeps its own chunks in compressed groups ([`crate::store::group`]).
//! A client whose chunks are also the box's (the same data, deduplicated)
//! is served them sealed from those groups: each read may open a group of
//! about 1 MiB and seals the chunk. In the order a restore asks for them
//! that is cheap (each group is opened once, then cached); asked in a
//! scattered order, a request of 16 KiB could cost a 1 MiB group every
//! time. Such work is charged to one token bucket shared by every client:
//! past its burst, a client's next frame waits until the bucket refills, so
//! clients together cost the box at most [`DEFAULT_WORK_PER_SEC`] of it
//! (about a tenth of a core; `[serve] group_work_per_sec` sets it), however
//! they order their requests.
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
//!
//! The charge is made before the work, not after: a frame runs only once
//! [`WorkThrottle::reserve`] finds neither the client's bucket nor the
//! shared one overdrawn, and holds [`RESERVED`] of the client's bucket
//! until [`WorkThrottle::settle`] charges what the frame really cost. A
//! client's sessions therefore queue behind its own debt, however many it
//! opens: a client holding 32 sessions gets its share, not 32 reads a
//! second, and its debt never sits in the shared bucket beyond what it did.
//! The wait has no cap: a client owing much waits until it has paid.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pastiche_core::PublicKey;

use crate::store::group::MAX_GROUP_PLAIN;

/// Work (bytes opened or sealed) all clients may cost per second, by default.
pub const DEFAULT_WORK_PER_SEC: u64 = 128 << 20;
/// The smallest rate a box may set: about one group's plaintext a second.
/// One scattered read may open a whole group, so below it a single read
/// would owe more than a second's worth.
pub const MIN_WORK_PER_SEC: u64 = 1 << 20;
/// How recently a client must have read to count as active, so that
/// others share the rate with it.
pub const ACTIVE: Duration = Duration::from_secs(2);
/// What a frame takes from its client's bucket before it runs: the most
/// one read costs (a whole group opened, one chunk of it sealed). A client
/// whose bucket holds less than this runs one frame at a time.
pub const RESERVED: u64 = (MAX_GROUP_PLAIN + pastiche_core::MAX_CHUNK) as u64;
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
    /// Frames let run and not settled yet, [`RESERVED`] each. Kept apart
    /// from `tokens`, so that the one-second cap on refills counts only
    /// what was really spent.
    in_flight: u32,
}

impl Bucket {
    fn full(per_sec: f64) -> Bucket {
        Bucket { tokens: per_sec, last: None, usage: 0.0, in_flight: 0 }
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

    /// Brings the bucket to `now`: refills it at `per_sec` for the time
    /// since `last`, up to a second's worth, and decays the recent rate.
    fn advance(&mut self, per_sec: f64, now: Instant) {
        self.usage = self.usage_at(now);
        if let Some(last) = self.last {
            let refill = now.saturating_duration_since(last).as_secs_f64() * per_sec;
            self.tokens = (self.tokens + refill).min(per_sec);
        }
        self.last = Some(now);
    }

    /// How long until the bucket, filling at `per_sec`, is no longer
    /// overdrawn by what was spent and what frames in flight reserved.
    fn debt_wait(&self, per_sec: f64) -> Duration {
        let free = self.tokens - f64::from(self.in_flight) * RESERVED as f64;
        if free >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-free / per_sec)
        }
    }
}

/// What a throttle charged and made wait, since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThrottleStats {
    /// Work bytes charged.
    pub charged: u64,
    /// Frames that had to wait.
    pub waits: u64,
}

/// A frame's claim on its client's bucket, taken by
/// [`WorkThrottle::reserve`] before the frame runs; hand it to
/// [`WorkThrottle::settle`] with what the frame cost.
#[derive(Debug)]
#[must_use = "a reservation holds the client's bucket until it is settled"]
pub struct Reservation {
    client: PublicKey,
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
        let mut b = self.lock();
        b.per_sec = per_sec.max(MIN_WORK_PER_SEC);
        let all = b.per_sec as f64;
        b.all.tokens = b.all.tokens.min(all);
        for c in b.clients.values_mut() {
            c.tokens = c.tokens.min(all);
        }
    }

    /// Lets a frame of `client` run at `now` when neither its bucket nor
    /// the shared one is overdrawn, holding [`RESERVED`] of its bucket;
    /// otherwise says how long until they no longer are (the caller waits,
    /// then asks again: another session of the client may have gone first).
    pub fn reserve(&self, client: &PublicKey, now: Instant) -> Result<Reservation, Duration> {
        let mut guard = self.lock();
        let b = &mut *guard;
        let all = b.per_sec as f64;
        let share = b.advance(client, now);
        let own = b.clients.get_mut(client).expect("advance keeps the client's bucket");
        let wait = own.debt_wait(share).max(b.all.debt_wait(all));
        if !wait.is_zero() {
            return Err(wait);
        }
        own.in_flight += 1;
        Ok(Reservation { client: *client })
    }

    /// Ends `reservation` at `now`: the frame did `used` bytes of work,
    /// charged to its client's bucket (in place of the [`RESERVED`] it
    /// held) and to the shared one.
    pub fn settle(&self, reservation: Reservation, used: u64, now: Instant) {
        let mut guard = self.lock();
        let b = &mut *guard;
        if used == 0 {
            // Most frames (uploads, reads of the box's sealed records) do
            // no grouped work: only the hold goes, no share is worked out.
            if let Some(c) = b.clients.get_mut(&reservation.client) {
                c.in_flight = c.in_flight.saturating_sub(1);
            }
            return;
        }
        self.charged.fetch_add(used, Ordering::Relaxed);
        b.advance(&reservation.client, now);
        let c = b.clients.get_mut(&reservation.client).expect("advance keeps the client's bucket");
        c.in_flight = c.in_flight.saturating_sub(1);
        c.tokens -= used as f64;
        c.usage += used as f64 / ACTIVE.as_secs_f64();
        b.all.tokens -= used as f64;
    }

    /// Counts a frame that had to wait (once, however often it asks again).
    pub fn note_wait(&self) {
        self.waits.fetch_add(1, Ordering::Relaxed);
    }

    /// What was charged and made to wait so far.
    pub fn stats(&self) -> ThrottleStats {
        ThrottleStats { charged: self.charged.load(Ordering::Relaxed), waits: self.waits.load(Ordering::Relaxed) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets> {
        // Plain numbers: valid after any panic.
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Buckets {
    /// Brings `client`'s bucket (made full if new) and the shared one to
    /// `now`; returns the client's share of the rate.
    fn advance(&mut self, client: &PublicKey, now: Instant) -> f64 {
        let all = self.per_sec as f64;
        let active = |c: &Bucket| c.last.is_some_and(|last| now.saturating_duration_since(last) < ACTIVE);
        if self.clients.len() >= CLIENTS_KEPT && !self.clients.contains_key(client) {
            // Forgetting idle clients keeps the map as small as the
            // clients active lately. One that owed work pays it no more,
            // but it had to stay idle for the whole [`ACTIVE`] to escape;
            // one with a frame in flight is kept.
            self.clients.retain(|_, c| active(c) || c.in_flight > 0);
        }
        // Every frame passes here twice: no allocation, two passes over at
        // most CLIENTS_KEPT buckets.
        let others = || self.clients.iter().filter(|(k, c)| *k != client && active(c)).map(|(_, c)| c.usage_at(now));
        let share = share_of(all, others().count(), others());
        self.clients.entry(*client).or_insert(Bucket::full(share)).advance(share, now);
        self.all.advance(all, now);
        share
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

    /// One read costing `bytes`, asked by `client` at `at` on a simulated
    /// clock: waits until the throttle lets it run, then runs it in no
    /// time. Returns when it ran.
    fn read(t: &WorkThrottle, client: &PublicKey, bytes: u64, mut at: Instant) -> Instant {
        loop {
            match t.reserve(client, at) {
                Ok(r) => {
                    t.settle(r, bytes, at);
                    return at;
                }
                Err(wait) => at += wait,
            }
        }
    }

    #[test]
    fn a_full_bucket_lets_a_seconds_worth_through_then_makes_reads_wait() {
        let t = WorkThrottle::new(4 * MIB);
        let now = Instant::now();
        // Four reads empty the bucket; the fifth still runs (its cost is
        // known only after it) and leaves the client 1 MiB in debt.
        for _ in 0..5 {
            let r = t.reserve(&A, now).expect("the bucket is not overdrawn");
            t.settle(r, MIB, now);
        }
        // Overdrawn by 1 MiB at 4 MiB/s: a quarter of a second.
        assert_eq!(t.reserve(&A, now).unwrap_err(), Duration::from_millis(250));
        assert_eq!(t.stats().charged, 5 * MIB);
        assert!(t.reserve(&A, now + Duration::from_millis(250)).is_ok());
    }

    #[test]
    fn the_bucket_refills_with_time_but_never_past_one_second() {
        let t = WorkThrottle::new(4 * MIB);
        let start = Instant::now();
        assert_eq!(read(&t, &A, 5 * MIB, start), start);
        // Half a second later 2 MiB are back: 1 MiB of credit.
        let half = start + Duration::from_millis(500);
        assert_eq!(read(&t, &A, 2 * MIB, half), half);
        assert_eq!(t.reserve(&A, half).unwrap_err(), Duration::from_millis(250));
        // An hour idle refills to 4 MiB, not more.
        let later = start + Duration::from_secs(3600);
        assert_eq!(read(&t, &A, 5 * MIB, later), later);
        assert_eq!(t.reserve(&A, later).unwrap_err(), Duration::from_millis(250));
    }

    #[test]
    fn a_huge_charge_is_paid_in_full_before_the_next_frame() {
        let t = WorkThrottle::new(MIB);
        let now = Instant::now();
        assert_eq!(read(&t, &A, 10 * MIB, now), now);
        // 9 MiB owed at 1 MiB/s: no cap on the wait.
        assert_eq!(t.reserve(&A, now).unwrap_err(), Duration::from_secs(9));
        assert_eq!(read(&t, &A, 1, now), now + Duration::from_secs(9));
    }

    #[test]
    fn a_client_running_a_frame_holds_its_bucket_until_the_frame_settles() {
        // The bucket (1 MiB) holds less than one reservation: a second
        // frame of the same client (another session) waits while the first
        // runs; another client's does not.
        let t = WorkThrottle::new(MIB);
        let now = Instant::now();
        let first = t.reserve(&A, now).unwrap();
        assert!(t.reserve(&A, now).is_err(), "A's second session ran beside its first");
        let other = t.reserve(&B, now).expect("B waits for A's frame");
        // The first frame cost nothing: the reservation comes back whole.
        t.settle(first, 0, now);
        t.settle(other, 0, now);
        assert!(t.reserve(&A, now).is_ok());
        assert_eq!(t.stats().charged, 0);
    }

    #[test]
    fn scattered_requests_cost_no_more_than_the_rate_allows() {
        // Every request opens a 1 MiB group: at 8 MiB/s, two clients
        // asking 100 each over a simulated clock must take at least
        // (200 - 8 - 2) / 8 seconds (a full bucket, and one read each
        // past it).
        let t = WorkThrottle::new(8 * MIB);
        let mut now = Instant::now();
        let start = now;
        for _ in 0..100 {
            for client in [A, B] {
                now = read(&t, &client, MIB, now);
            }
        }
        assert!(now - start >= Duration::from_secs_f64(190.0 / 8.0) - Duration::from_millis(1));
    }

    /// Over 20 simulated seconds at 8 MiB/s, A runs `sessions` sessions,
    /// each asking for a 1 MiB read as soon as its last one is done (each
    /// read takes 5 ms), while B asks 1 MiB every `b_every`. Returns the
    /// MiB A got and how long B waited in all.
    fn heavy_against_light(sessions: usize, b_every: Duration) -> (u64, Duration) {
        const WORK: Duration = Duration::from_millis(5);
        let t = WorkThrottle::new(8 * MIB);
        let start = Instant::now();
        let end = start + Duration::from_secs(20);
        // Per session of A: when it next acts, and its read in progress.
        let mut a: Vec<(Instant, Option<Reservation>)> = (0..sessions).map(|_| (start, None)).collect();
        let mut b_next = start;
        let (mut a_got, mut b_waited) = (0u64, Duration::ZERO);
        loop {
            let (i, at) = a.iter().enumerate().map(|(i, s)| (i, s.0)).min_by_key(|&(_, at)| at).unwrap();
            if at >= end && b_next >= end {
                return (a_got, b_waited);
            }
            if at <= b_next {
                let session = &mut a[i];
                match session.1.take() {
                    Some(r) => {
                        t.settle(r, MIB, at);
                        a_got += 1;
                    }
                    None => match t.reserve(&A, at) {
                        Ok(r) => {
                            session.1 = Some(r);
                            session.0 += WORK;
                        }
                        Err(wait) => session.0 += wait,
                    },
                }
            } else {
                let ran = read(&t, &B, MIB, b_next);
                b_waited += ran - b_next;
                b_next = ran + b_every;
            }
        }
    }

    #[test]
    fn one_client_asking_without_pause_leaves_the_others_their_part() {
        // B reads 2 MiB/s, half of an equal share: it counts for half a
        // client, so A's share is 8 / 1.5 MiB/s. A gets more than half of
        // the rate (B leaves part of its share unused) but never what B
        // reads, and B hardly waits.
        let (a_got, b_waited) = heavy_against_light(1, Duration::from_millis(500));
        assert!(a_got > 4 * 20 + 8, "A got {a_got} MiB in 20 s: B's unused share went to nobody");
        assert!(a_got <= 6 * 20 + 8, "A got {a_got} MiB in 20 s: more than B leaves of 8 MiB/s");
        assert!(b_waited < Duration::from_secs(2), "B waited {b_waited:?} for 40 reads");
    }

    #[test]
    fn a_client_with_many_sessions_gets_its_share_not_a_read_per_session() {
        // A opens 32 sessions under one key. Its debt queues them behind
        // each other: it gets what one session would, and B, reading
        // 2 MiB/s, waits no longer than beside one session. (When each
        // wait was capped at a second, every session read once a second:
        // A got 32 MiB/s of the 8, and B waited seconds per read.)
        let (a_got, b_waited) = heavy_against_light(32, Duration::from_millis(500));
        assert!(a_got <= 6 * 20 + 8 + 32, "A got {a_got} MiB in 20 s with 32 sessions at 8 MiB/s");
        assert!(b_waited < Duration::from_secs(2), "B waited {b_waited:?} for 40 reads");
    }

    #[test]
    fn a_client_reading_a_little_does_not_halve_the_others_share() {
        // B reads 1 MiB every 1.9 s, enough to count as active: A still
        // gets about 7 MiB/s of the 8 (with B counted as a whole client it
        // got 88 MiB in 20 s), and B hardly waits.
        let (a_got, b_waited) = heavy_against_light(1, Duration::from_millis(1900));
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
            next[i] = read(&t, &[A, B][i], MIB, next[i]);
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
            now = read(&t, &A, MIB, now);
            got += 1;
        }
        assert!(got >= 80, "a client alone got {got} MiB in 10 s at 8 MiB/s");
    }

    #[test]
    fn idle_clients_are_forgotten_once_many_were_seen() {
        let t = WorkThrottle::new(8 * MIB);
        let start = Instant::now();
        for i in 0..CLIENTS_KEPT as u8 {
            assert_eq!(read(&t, &PublicKey([i; 32]), 1, start), start);
        }
        read(&t, &PublicKey([200; 32]), 1, start + ACTIVE);
        assert_eq!(t.buckets.lock().unwrap().clients.len(), 1);
    }
}
