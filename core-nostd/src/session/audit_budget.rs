//! How much audit work each client may cost a buddy: a request of about
//! 1.3 KB makes the buddy read and hash up to 64 sealed chunks (about
//! 4 MiB), so without a bound one paired client could keep its disk busy.
//!
//! Each client has [`AuditBudget::reads_per_window`] chunk reads per window
//! of [`AuditBudget::window`] (in the caller's time unit, milliseconds by
//! convention), counted per fixed window from the client's first audit in
//! it. A request is charged whole, for every id it asks (the most it can
//! read), before anything is read; a request that would go past the budget
//! reads nothing and is refused with the non-fatal
//! [`RateLimited`](crate::wire::ErrorCode::RateLimited), and the session
//! goes on. So over any span of one window a client makes the buddy read at
//! most twice the budget.
//!
//! The table is shared by all the sessions of a buddy (a client
//! reconnecting keeps its spent budget) and has a fixed capacity: an entry
//! whose window ended is reused, and when every entry is in use the request
//! is refused (fail closed; the appliance sizes it above any plausible
//! number of clients auditing in one window, the firmware to its admitted
//! clients).

use heapless::Vec;

use crate::identity::PublicKey;

/// Default chunk reads per client per window: 4,096 (64 full requests, at
/// most 256 MiB of sealed chunks), far above an honest client's needs (the
/// default plan challenges about 4 chunks an hour, a full `pastiche audit`
/// about 90).
pub const DEFAULT_AUDIT_READS_PER_WINDOW: u32 = 4096;
/// Default window: one hour, in milliseconds.
pub const DEFAULT_AUDIT_WINDOW_MS: u64 = 3_600_000;

/// Answers whether a client's audit may read `reads` chunks now, and if so
/// charges it. The session asks before reading anything.
pub trait AuditMeter {
    /// Charges `reads` chunk reads to `client` at `now` and returns true,
    /// or returns false (charging nothing) when that would exceed its budget.
    fn charge(&mut self, client: &PublicKey, reads: u32, now: u64) -> bool;
}

/// One client's spending in its current window.
#[derive(Clone, Copy, Debug)]
struct Spent {
    client: PublicKey,
    window_start: u64,
    reads: u32,
}

/// Per-client audit budgets for up to `CLIENTS` clients auditing in one
/// window (see the module docs).
#[derive(Debug)]
pub struct AuditBudget<const CLIENTS: usize> {
    reads_per_window: u32,
    window: u64,
    spent: Vec<Spent, CLIENTS>,
}

impl<const CLIENTS: usize> Default for AuditBudget<CLIENTS> {
    fn default() -> Self {
        AuditBudget::new(DEFAULT_AUDIT_READS_PER_WINDOW, DEFAULT_AUDIT_WINDOW_MS)
    }
}

impl<const CLIENTS: usize> AuditBudget<CLIENTS> {
    /// A budget of `reads_per_window` chunk reads per client per `window`.
    pub const fn new(reads_per_window: u32, window: u64) -> Self {
        AuditBudget { reads_per_window, window, spent: Vec::new() }
    }

    /// Chunk reads each client may cause per window.
    pub fn reads_per_window(&self) -> u32 {
        self.reads_per_window
    }

    /// The window's length.
    pub fn window(&self) -> u64 {
        self.window
    }

    /// Reads `client` has left in its current window at `now`.
    pub fn remaining(&self, client: &PublicKey, now: u64) -> u32 {
        match self.spent.iter().find(|s| s.client == *client) {
            Some(s) if !self.ended(s, now) => self.reads_per_window.saturating_sub(s.reads),
            _ => self.reads_per_window,
        }
    }

    fn ended(&self, s: &Spent, now: u64) -> bool {
        now.saturating_sub(s.window_start) >= self.window
    }
}

impl<const CLIENTS: usize> AuditMeter for AuditBudget<CLIENTS> {
    fn charge(&mut self, client: &PublicKey, reads: u32, now: u64) -> bool {
        if reads > self.reads_per_window {
            return false;
        }
        let window = self.window;
        if let Some(s) = self.spent.iter_mut().find(|s| s.client == *client) {
            if now.saturating_sub(s.window_start) >= window {
                *s = Spent { client: *client, window_start: now, reads: 0 };
            }
            if s.reads.saturating_add(reads) > self.reads_per_window {
                return false;
            }
            s.reads += reads;
            return true;
        }
        let fresh = Spent { client: *client, window_start: now, reads };
        if let Some(slot) = self.spent.iter_mut().find(|s| now.saturating_sub(s.window_start) >= window) {
            *slot = fresh;
            return true;
        }
        self.spent.push(fresh).is_ok()
    }
}

/// No budget at all: every audit is served (for tests and tools that
/// drive a session alone, never for a buddy facing the network).
#[derive(Clone, Copy, Debug, Default)]
pub struct Unmetered;

impl AuditMeter for Unmetered {
    fn charge(&mut self, _: &PublicKey, _: u32, _: u64) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> PublicKey {
        PublicKey([n; 32])
    }

    #[test]
    fn a_client_is_held_to_its_reads_per_window_and_gets_them_back_in_the_next() {
        let mut b = AuditBudget::<4>::new(128, 1000);
        assert!(b.charge(&key(1), 64, 0));
        assert!(b.charge(&key(1), 64, 10));
        assert!(!b.charge(&key(1), 1, 20), "the window's budget is spent");
        assert_eq!(b.remaining(&key(1), 20), 0);
        // Another client has its own budget.
        assert!(b.charge(&key(2), 64, 20));
        // The window ends a full window after the client's first audit.
        assert!(!b.charge(&key(1), 64, 999));
        assert!(b.charge(&key(1), 64, 1000));
        assert_eq!(b.remaining(&key(1), 1000), 64);
    }

    #[test]
    fn a_refused_request_charges_nothing() {
        let mut b = AuditBudget::<4>::new(100, 1000);
        assert!(b.charge(&key(1), 64, 0));
        assert!(!b.charge(&key(1), 64, 1), "64 more would go past 100");
        assert!(b.charge(&key(1), 36, 2), "what is left is still there");
        assert!(!b.charge(&key(1), 200, 5000), "more than a whole window never fits");
    }

    #[test]
    fn a_full_table_reuses_ended_windows_and_otherwise_fails_closed() {
        let mut b = AuditBudget::<2>::new(64, 1000);
        assert!(b.charge(&key(1), 1, 0));
        assert!(b.charge(&key(2), 1, 500));
        assert!(!b.charge(&key(3), 1, 600), "no room, no ended window: refused");
        assert!(b.charge(&key(3), 1, 1000), "key 1's window ended: its entry is reused");
        assert!(b.charge(&key(2), 63, 1001));
        assert!(!b.charge(&key(2), 1, 1002));
    }
}
