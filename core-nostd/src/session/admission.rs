//! Limits on guessing pairing codes, as a pure machine (time passed in).
//!
//! A pairing code is short enough to type (the appliance's have 50 bits),
//! so a buddy must bound how many guesses anyone gets at it:
//!
//! - **Per source** (an address, or an IPv6 /64: the caller chooses the
//!   16-byte key): the first [`FREE_WRONG_PER_SOURCE`] wrong codes cost
//!   nothing more than their handshakes; after that each wrong code makes
//!   the source wait, doubling from 1 s up to [`MAX_BACKOFF_MS`], before
//!   its next attempt is even checked. An attempt during the wait is refused
//!   unchecked, so a right guess made then does not admit anyone. A right
//!   code forgives the source.
//! - **Globally** (every source together): after [`WRONG_CODES_BEFORE_BURN`]
//!   wrong codes the buddy burns every code it has outstanding, so no code
//!   ever faces more than that many guesses however many addresses an
//!   attacker has (the chance a 50-bit code falls is below 2^-46). The owner
//!   hands out a fresh code; a client already admitted is not affected.
//!
//! The guard keeps at most `SOURCES` sources; when full it forgets the one
//! whose wait ended first (the global limit still holds for it).

/// Wrong codes, from anywhere, after which every outstanding code is burned.
pub const WRONG_CODES_BEFORE_BURN: u32 = 10;
/// Wrong codes a source may present before it has to wait.
pub const FREE_WRONG_PER_SOURCE: u32 = 2;
/// The longest wait imposed on a source, in milliseconds.
pub const MAX_BACKOFF_MS: u64 = 60_000;

/// Whether a pairing attempt may be checked now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Check the code.
    Check,
    /// Refuse without checking: the source must wait until this time.
    Wait {
        /// When the source may try again (the caller's clock).
        until: u64,
    },
}

/// What the caller must do after a checked attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterAttempt {
    /// Nothing more.
    Done,
    /// Burn every outstanding pairing code now.
    BurnCodes,
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
    /// Wrong codes since the codes were last burned.
    wrong: u32,
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
        PairingGuard { wrong: 0, sources: heapless::Vec::new() }
    }

    /// Whether an attempt from `source` at `now` (milliseconds) may be
    /// checked. Call before looking at the code.
    pub fn gate(&self, source: &[u8; 16], now: u64) -> Gate {
        match self.sources.iter().find(|s| &s.key == source) {
            Some(s) if now < s.until => Gate::Wait { until: s.until },
            _ => Gate::Check,
        }
    }

    /// Records a checked attempt from `source` at `now`: `admitted` when the
    /// code admitted the key (or the key was admitted already).
    pub fn record(&mut self, source: &[u8; 16], now: u64, admitted: bool) -> AfterAttempt {
        let at = self.sources.iter().position(|s| &s.key == source);
        if admitted {
            if let Some(i) = at {
                self.sources.swap_remove(i);
            }
            return AfterAttempt::Done;
        }
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
        self.wrong += 1;
        if self.wrong >= WRONG_CODES_BEFORE_BURN {
            self.wrong = 0;
            AfterAttempt::BurnCodes
        } else {
            AfterAttempt::Done
        }
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
        let mut now = 0;
        for _ in 0..FREE_WRONG_PER_SOURCE {
            assert_eq!(g.gate(&A, now), Gate::Check);
            g.record(&A, now, false);
        }
        let mut waits = std::vec::Vec::new();
        for _ in 0..6 {
            assert_eq!(g.gate(&A, now), Gate::Check);
            g.record(&A, now, false);
            let Gate::Wait { until } = g.gate(&A, now) else { panic!("no wait after a wrong code") };
            assert_eq!(g.gate(&A, until - 1), Gate::Wait { until });
            assert_eq!(g.gate(&B, now), Gate::Check, "other sources are not held up");
            waits.push(until - now);
            now = until;
        }
        assert_eq!(waits, [1000, 2000, 4000, 8000, 16_000, 32_000]);
        g.record(&A, now, true);
        assert_eq!(g.gate(&A, now), Gate::Check);
        assert_eq!(backoff_ms(100), MAX_BACKOFF_MS);
    }

    /// Wrong codes from many sources together burn the codes at the limit,
    /// and the count starts again.
    #[test]
    fn wrong_codes_from_everywhere_burn_the_codes() {
        let mut g = PairingGuard::<4>::new();
        for i in 0..WRONG_CODES_BEFORE_BURN - 1 {
            let source = [i as u8; 16];
            assert_eq!(g.gate(&source, 0), Gate::Check, "a fresh source is checked");
            assert_eq!(g.record(&source, 0, false), AfterAttempt::Done);
        }
        assert_eq!(g.record(&[99; 16], 0, false), AfterAttempt::BurnCodes);
        assert_eq!(g.record(&[98; 16], 0, false), AfterAttempt::Done, "counting starts again");
        assert!(g.sources.len() <= 4, "bounded");
    }
}
