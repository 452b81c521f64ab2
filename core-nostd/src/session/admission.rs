//! Limits on guessing pairing codes, as a pure machine (time passed in).
//!
//! A pairing code is short enough to type (the appliance's have 50 bits;
//! the firmware's boot secret may be shorter), so a buddy bounds how many
//! guesses anyone gets at it. [`BuddySession`](super::BuddySession) asks the
//! limits before every code it checks, on the appliance and the firmware
//! alike; the caller keeps one [`PairingGuard`] for the whole buddy and
//! hands each session a view of it for the connection's source
//! ([`PairingGuard::from_source`], or a lock around it).
//!
//! - **Per source** (an IPv4 address, or an IPv6 /64: [`source_v4`],
//!   [`source_v6`]): the first [`FREE_WRONG_PER_SOURCE`] wrong codes cost
//!   nothing more than their handshakes; after that each wrong code makes
//!   the source wait, doubling from 1 s up to [`MAX_BACKOFF_MS`], before its
//!   next attempt is even checked. An attempt during the wait is refused
//!   unchecked, so a right guess made then admits no one. A right code
//!   forgives the source. Keys do not matter: fresh keys from one address
//!   share its wait.
//! - **Globally** (every source together, so many addresses do not help):
//!   wrong codes are a token bucket of [`GLOBAL_BURST`] refilled one per
//!   [`GLOBAL_REFILL_MS`]. While it is empty every attempt, from anywhere, is
//!   refused unchecked until the next token. So in `T` ms a buddy checks at
//!   most `GLOBAL_BURST + T / GLOBAL_REFILL_MS` wrong codes: 14,410 in a
//!   day, which finds a 50-bit code with a chance below 2^-36 (1.3e-11).
//!
//! An attempt is charged as wrong when it is let through ([`Gate::Check`]),
//! and refunded if the code admits the key: so attempts checked in parallel
//! (the appliance serves connections on several threads) are all counted
//! before any of their outcomes is known.
//!
//! The guard keeps at most `SOURCES` sources; when full it forgets the one
//! whose wait ended first (the global bucket still holds for it).

/// Wrong codes a source may present before it has to wait.
pub const FREE_WRONG_PER_SOURCE: u32 = 3;
/// The longest wait imposed on a source, in milliseconds.
pub const MAX_BACKOFF_MS: u64 = 60_000;
/// Wrong codes the whole buddy checks at once before the refill rate holds.
pub const GLOBAL_BURST: u32 = 10;
/// One more wrong code may be checked per this many milliseconds, globally.
pub const GLOBAL_REFILL_MS: u64 = 6_000;

/// Whether a pairing attempt may be checked now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Check the code (the attempt is charged as wrong until
    /// [`PairingLimits::end`] says it admitted the key).
    Check,
    /// Refuse without checking: this source must wait until `until`.
    SourceWait {
        /// When the source may try again (the caller's clock, ms).
        until: u64,
    },
    /// Refuse without checking: too many wrong codes from everywhere; the
    /// next one may be checked at `until`.
    Paused {
        /// When the next attempt may be checked (the caller's clock, ms).
        until: u64,
    },
}

/// The limits as one session sees them: bound to its connection's source.
pub trait PairingLimits {
    /// Asks to check one pairing code at `now` (ms).
    fn begin(&mut self, now: u64) -> Gate;
    /// The outcome of an attempt [`begin`](PairingLimits::begin) let
    /// through: `admitted` when the code admitted the key.
    fn end(&mut self, admitted: bool);
}

/// The source key of an IPv4 address: the IPv4-mapped IPv6 address.
pub fn source_v4(addr: [u8; 4]) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[10] = 0xff;
    key[11] = 0xff;
    key[12..].copy_from_slice(&addr);
    key
}

/// The source key of an IPv6 address: its /64 (one subscriber's usual
/// allocation, so cycling through its addresses gains nothing). An
/// IPv4-mapped address is its IPv4 address's key.
pub fn source_v6(addr: [u8; 16]) -> [u8; 16] {
    if addr[..10].iter().all(|&b| b == 0) && addr[10] == 0xff && addr[11] == 0xff {
        return addr;
    }
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&addr[..8]);
    key
}

#[derive(Clone, Copy, Debug)]
struct Source {
    key: [u8; 16],
    wrong: u32,
    until: u64,
}

/// The attempt limits of one buddy, for at most `SOURCES` sources at once.
#[derive(Clone, Debug)]
pub struct PairingGuard<const SOURCES: usize> {
    /// The bucket as a generic cell rate: the time at which it would be
    /// full again if nothing more were charged (ms).
    full_at: u64,
    sources: heapless::Vec<Source, SOURCES>,
}

impl<const SOURCES: usize> Default for PairingGuard<SOURCES> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const SOURCES: usize> PairingGuard<SOURCES> {
    /// No attempts seen.
    pub const fn new() -> Self {
        PairingGuard { full_at: 0, sources: heapless::Vec::new() }
    }

    /// The guard as seen from `source` (see [`source_v4`], [`source_v6`]).
    pub fn from_source(&mut self, source: [u8; 16]) -> FromSource<'_, SOURCES> {
        FromSource { guard: self, source }
    }

    /// See [`PairingLimits::begin`].
    pub fn begin(&mut self, source: &[u8; 16], now: u64) -> Gate {
        let at = self.sources.iter().position(|s| &s.key == source);
        if let Some(s) = at.map(|i| &self.sources[i]) {
            if now < s.until {
                return Gate::SourceWait { until: s.until };
            }
        }
        // The bucket holds GLOBAL_BURST tokens: a charge is allowed while
        // it would not push `full_at` more than that many refills ahead.
        let window = u64::from(GLOBAL_BURST - 1) * GLOBAL_REFILL_MS;
        let opens = self.full_at.saturating_sub(window);
        if now < opens {
            return Gate::Paused { until: opens };
        }
        self.full_at = self.full_at.max(now) + GLOBAL_REFILL_MS;
        let i = match at {
            Some(i) => i,
            None => {
                if self.sources.is_full() {
                    let oldest = (0..self.sources.len()).min_by_key(|&i| self.sources[i].until).unwrap_or(0);
                    self.sources.swap_remove(oldest);
                }
                // Cannot fail: a slot was just made if there was none.
                let _ = self.sources.push(Source { key: *source, wrong: 0, until: 0 });
                self.sources.len() - 1
            }
        };
        let s = &mut self.sources[i];
        s.wrong = s.wrong.saturating_add(1);
        s.until = now.saturating_add(backoff_ms(s.wrong));
        Gate::Check
    }

    /// See [`PairingLimits::end`].
    pub fn end(&mut self, source: &[u8; 16], admitted: bool) {
        if !admitted {
            return;
        }
        if let Some(i) = self.sources.iter().position(|s| &s.key == source) {
            self.sources.swap_remove(i);
        }
        self.full_at = self.full_at.saturating_sub(GLOBAL_REFILL_MS);
    }
}

/// A [`PairingGuard`] bound to one source: what a session is given.
#[derive(Debug)]
pub struct FromSource<'a, const SOURCES: usize> {
    guard: &'a mut PairingGuard<SOURCES>,
    source: [u8; 16],
}

impl<const SOURCES: usize> PairingLimits for FromSource<'_, SOURCES> {
    fn begin(&mut self, now: u64) -> Gate {
        self.guard.begin(&self.source, now)
    }

    fn end(&mut self, admitted: bool) {
        self.guard.end(&self.source, admitted);
    }
}

/// The wait after a source's `wrong`-th wrong code.
fn backoff_ms(wrong: u32) -> u64 {
    match wrong.checked_sub(FREE_WRONG_PER_SOURCE + 1) {
        None => 0,
        Some(doublings) => 1000u64.checked_shl(doublings).unwrap_or(u64::MAX).min(MAX_BACKOFF_MS),
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    const A: [u8; 16] = [1; 16];
    const B: [u8; 16] = [2; 16];

    /// A source gets its free attempts, then waits doubling times, refused
    /// unchecked meanwhile; a right code forgives it.
    #[test]
    fn a_source_that_keeps_guessing_waits_longer_and_longer() {
        let mut g = PairingGuard::<4>::new();
        // Spread out enough that the global bucket never runs dry.
        let mut now = 1_000_000;
        for _ in 0..FREE_WRONG_PER_SOURCE {
            assert_eq!(g.begin(&A, now), Gate::Check);
            g.end(&A, false);
        }
        let mut waits = std::vec::Vec::new();
        for _ in 0..6 {
            assert_eq!(g.begin(&A, now), Gate::Check);
            g.end(&A, false);
            let Gate::SourceWait { until } = g.begin(&A, now) else { panic!("no wait after a wrong code") };
            assert_eq!(g.begin(&A, until - 1), Gate::SourceWait { until });
            waits.push(until - now);
            now = until + GLOBAL_REFILL_MS * u64::from(GLOBAL_BURST);
        }
        assert_eq!(waits, [1000, 2000, 4000, 8000, 16_000, 32_000]);
        assert_eq!(g.begin(&B, now), Gate::Check, "other sources are not held up");
        assert_eq!(g.begin(&A, now), Gate::Check);
        g.end(&A, true);
        assert_eq!(g.begin(&A, now), Gate::Check, "a right code forgives");
        assert_eq!(backoff_ms(100), MAX_BACKOFF_MS);
    }

    /// Wrong codes from many sources together empty the bucket: then every
    /// source waits for the refill, one attempt per refill.
    #[test]
    fn wrong_codes_from_everywhere_share_one_bucket() {
        let mut g = PairingGuard::<4>::new();
        let now = 50_000;
        for i in 0..GLOBAL_BURST {
            let source = source_v4([10, 0, 0, i as u8]);
            assert_eq!(g.begin(&source, now), Gate::Check, "attempt {i} is within the burst");
            g.end(&source, false);
        }
        let fresh = source_v4([10, 0, 1, 1]);
        assert_eq!(g.begin(&fresh, now), Gate::Paused { until: now + GLOBAL_REFILL_MS });
        assert_eq!(g.begin(&fresh, now + GLOBAL_REFILL_MS), Gate::Check, "one token refilled");
        assert!(matches!(g.begin(&source_v4([10, 0, 1, 2]), now + GLOBAL_REFILL_MS), Gate::Paused { .. }));
        // A day of guessing from ever new sources checks at most the bound.
        let day = 86_400_000;
        let mut checked = 0u64;
        let mut t = now + GLOBAL_REFILL_MS;
        let mut n = 0u32;
        while t < now + day {
            n = n.wrapping_add(1);
            if g.begin(&source_v4(n.to_be_bytes()), t) == Gate::Check {
                checked += 1;
            }
            t += 500;
        }
        assert!(checked <= day / GLOBAL_REFILL_MS + u64::from(GLOBAL_BURST), "{checked} guesses in a day");
        assert!(g.sources.len() <= 4, "bounded");
    }

    /// An attacker cycling through more sources than the guard remembers
    /// (the firmware's guard holds 16) gets evicted entries forgotten, so a
    /// returning source starts its per-source count afresh: the global
    /// bucket must still hold. At every moment the codes checked so far
    /// stay within `GLOBAL_BURST` plus one per `GLOBAL_REFILL_MS`, and so in
    /// any window of time; no eviction pattern buys a faster rate.
    fn cycling_sources_never_beat_the_global_rate<const SOURCES: usize>(pool: u32, step_ms: u64) {
        let mut g = PairingGuard::<SOURCES>::new();
        let start = 1_000_000;
        let hour = 3_600_000;
        let mut checked_at = std::vec::Vec::new();
        let mut t = start;
        let mut n = 0u32;
        while t < start + hour {
            // Round robin over `pool` addresses, several tries per tick.
            for _ in 0..3 {
                let source = source_v4((0x0a00_0000 + n % pool).to_be_bytes());
                n = n.wrapping_add(1);
                if g.begin(&source, t) == Gate::Check {
                    g.end(&source, false);
                    checked_at.push(t);
                }
                assert!(g.sources.len() <= SOURCES, "bounded");
            }
            t += step_ms;
        }
        let burst = u64::from(GLOBAL_BURST);
        for (i, &at) in checked_at.iter().enumerate() {
            let since = (at - start) / GLOBAL_REFILL_MS;
            let so_far = i as u64 + 1;
            assert!(so_far <= burst + since, "{so_far} checks by {} ms (pool {pool})", at - start);
            // Any window [from, at]: the checks in it are at most one burst
            // plus its refills.
            for (j, &from) in checked_at[..i].iter().enumerate() {
                let in_window = (i - j + 1) as u64;
                assert!(
                    in_window <= burst + (at - from) / GLOBAL_REFILL_MS + 1,
                    "{in_window} checks in {} ms",
                    at - from
                );
            }
        }
        let most = burst + hour / GLOBAL_REFILL_MS;
        assert!(checked_at.len() as u64 <= most, "{} checks in an hour, at most {most}", checked_at.len());
        // The attacker does get the global rate (the bound is tight, not
        // an artefact of a stuck guard): about one per refill.
        assert!(checked_at.len() as u64 >= most - burst - 1, "{} checks in an hour", checked_at.len());
    }

    #[test]
    fn cycling_more_sources_than_the_guard_holds_gains_nothing() {
        // The firmware's guard (16 sources, `PAIRING_SOURCES` in
        // firmware/src/net.rs): 17 sources (one evicted each round), 32 and
        // 1,000; fast (every 10 ms) and at about the refill pace.
        for pool in [17, 32, 1000] {
            cycling_sources_never_beat_the_global_rate::<16>(pool, 10);
            cycling_sources_never_beat_the_global_rate::<16>(pool, 5_900);
        }
        cycling_sources_never_beat_the_global_rate::<4>(5, 10);
    }

    /// A right code gives its token back, so honest pairings do not use up
    /// the bucket.
    #[test]
    fn right_codes_cost_nothing() {
        let mut g = PairingGuard::<4>::new();
        for i in 0..100u8 {
            let mut view = g.from_source(source_v4([192, 168, 0, i]));
            assert_eq!(view.begin(7), Gate::Check);
            view.end(true);
        }
    }

    #[test]
    fn an_ipv6_source_is_its_slash_64() {
        let a = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 1, 0xaa, 0xbb, 0, 0, 0, 0, 0, 1];
        let mut b = a;
        b[15] = 99;
        assert_eq!(source_v6(a), source_v6(b));
        assert_eq!(source_v6(source_v4([1, 2, 3, 4])), source_v4([1, 2, 3, 4]));
    }
}
