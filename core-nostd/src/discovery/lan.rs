//! The table of LAN neighbours a box keeps from the beacons it hears
//! ([`crate::wire::beacon`]): where each neighbour's overlay socket is, its
//! role, buddy port and key. Sans-IO: datagrams and `now` (microseconds)
//! in, a bounded table out.
//!
//! Every datagram is hostile. The table holds at most `N` neighbours; a
//! burst of beacons beyond [`LanLimits::max_per_window`] per window is
//! refused unread; a source heard again sooner than
//! [`LanLimits::min_gap_us`] changes nothing; neighbours silent for
//! [`LanLimits::expiry_us`] are forgotten. When the table is full a
//! newcomer may only push out another newcomer (a neighbour heard fewer than
//! [`ESTABLISHED`] times), so a flood of forged beacons from made-up
//! addresses cannot evict the boxes already known.

use heapless::Vec;

use crate::wire::beacon::{Beacon, BeaconError, BEACON_INTERVAL_MS};

/// Sightings after which a neighbour is no longer pushed out by newcomers.
pub const ESTABLISHED: u32 = 3;
/// Neighbours a box keeps unless configured otherwise.
pub const DEFAULT_NEIGHBOURS: usize = 64;

/// One neighbour heard on the LAN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbour<A> {
    /// The beacon's source: the neighbour's overlay endpoint.
    pub addr: A,
    /// What it last announced.
    pub beacon: Beacon,
    /// When it was first heard.
    pub first_seen: u64,
    /// When it was last heard.
    pub last_seen: u64,
    /// Beacons taken from it (at most one per [`LanLimits::min_gap_us`]).
    pub sightings: u32,
}

/// The table's bounds; times in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LanLimits {
    /// A neighbour silent this long is forgotten.
    pub expiry_us: u64,
    /// Beacons from one source closer together than this are ignored.
    pub min_gap_us: u64,
    /// Beacons read per window, from all sources together.
    pub max_per_window: u32,
    /// The window of `max_per_window`.
    pub window_us: u64,
}

impl Default for LanLimits {
    /// Forgotten after 4 missed beacons; one beacon per source per half
    /// interval; 200 beacons a second in all.
    fn default() -> Self {
        let interval = BEACON_INTERVAL_MS * 1000;
        LanLimits { expiry_us: 4 * interval, min_gap_us: interval / 2, max_per_window: 200, window_us: 1_000_000 }
    }
}

/// What a datagram did to the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heard {
    /// A neighbour not known before.
    New,
    /// A known neighbour heard again.
    Again,
    /// A known source that now announces another key, port or role: it
    /// starts over as a newcomer.
    Changed,
}

/// Why a datagram changed nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// Too many beacons this window: not even read.
    RateLimited,
    /// Not a beacon.
    Malformed(BeaconError),
    /// This box's own beacon, come back.
    Own,
    /// The source was heard too recently.
    TooSoon,
    /// The table is full of established neighbours.
    Full,
}

/// The LAN neighbours of a box, at most `N`.
#[derive(Clone, Debug)]
pub struct LanNeighbours<A, const N: usize> {
    own_key: [u8; 32],
    limits: LanLimits,
    entries: Vec<Neighbour<A>, N>,
    window_start: u64,
    window_count: u32,
}

impl<A: Copy + Eq, const N: usize> LanNeighbours<A, N> {
    /// An empty table for the box whose buddy key is `own_key` (its own
    /// beacons, heard back, are ignored).
    pub fn new(own_key: [u8; 32], limits: LanLimits) -> Self {
        LanNeighbours { own_key, limits, entries: Vec::new(), window_start: 0, window_count: 0 }
    }

    /// Takes one datagram received from `from` at `now`.
    pub fn offer(&mut self, from: A, datagram: &[u8], now: u64) -> Result<Heard, Ignored> {
        if now.saturating_sub(self.window_start) >= self.limits.window_us {
            self.window_start = now;
            self.window_count = 0;
        }
        if self.window_count >= self.limits.max_per_window {
            return Err(Ignored::RateLimited);
        }
        self.window_count += 1;
        let beacon = Beacon::decode(datagram).map_err(Ignored::Malformed)?;
        if beacon.buddy_key == self.own_key {
            return Err(Ignored::Own);
        }
        self.expire(now);
        if let Some(n) = self.entries.iter_mut().find(|n| n.addr == from) {
            if now.saturating_sub(n.last_seen) < self.limits.min_gap_us {
                return Err(Ignored::TooSoon);
            }
            n.last_seen = now;
            if n.beacon != beacon {
                n.beacon = beacon;
                n.first_seen = now;
                n.sightings = 1;
                return Ok(Heard::Changed);
            }
            n.sightings = n.sightings.saturating_add(1);
            return Ok(Heard::Again);
        }
        let fresh = Neighbour { addr: from, beacon, first_seen: now, last_seen: now, sightings: 1 };
        if self.entries.push(fresh).is_ok() {
            return Ok(Heard::New);
        }
        // Full: push out the least-heard newcomer, oldest first.
        let victim = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, n)| n.sightings < ESTABLISHED)
            .min_by_key(|(_, n)| (n.sightings, n.last_seen))
            .map(|(i, _)| i);
        match victim {
            Some(i) => {
                self.entries[i] = fresh;
                Ok(Heard::New)
            }
            None => Err(Ignored::Full),
        }
    }

    /// Forgets neighbours silent for longer than the expiry.
    pub fn expire(&mut self, now: u64) {
        let expiry = self.limits.expiry_us;
        self.entries.retain(|n| now.saturating_sub(n.last_seen) <= expiry);
    }

    /// The neighbours known, in the order first heard.
    pub fn iter(&self) -> impl Iterator<Item = &Neighbour<A>> {
        self.entries.iter()
    }

    /// The neighbour whose beacon came from `addr`.
    pub fn get(&self, addr: &A) -> Option<&Neighbour<A>> {
        self.entries.iter().find(|n| n.addr == *addr)
    }

    /// Neighbours known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when none is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::beacon::Role;

    const S: u64 = 1_000_000;

    fn beacon(key: u8) -> [u8; 40] {
        Beacon { role: Role::Appliance, tcp_port: 7467, buddy_key: [key; 32] }.encode()
    }

    #[test]
    fn neighbours_are_learned_refreshed_and_forgotten() {
        let mut t: LanNeighbours<u32, 4> = LanNeighbours::new([9; 32], LanLimits::default());
        assert_eq!(t.offer(1, &beacon(1), 0), Ok(Heard::New));
        assert_eq!(t.offer(1, &beacon(1), S), Err(Ignored::TooSoon));
        assert_eq!(t.offer(1, &beacon(1), 5 * S), Ok(Heard::Again));
        assert_eq!(t.get(&1).unwrap().sightings, 2);
        assert_eq!(t.offer(2, &beacon(9), 5 * S), Err(Ignored::Own));
        assert_eq!(t.offer(2, b"PSTB", 5 * S), Err(Ignored::Malformed(BeaconError::NotABeacon)));
        assert_eq!(t.offer(1, &beacon(3), 10 * S), Ok(Heard::Changed));
        assert_eq!(t.get(&1).unwrap().beacon.buddy_key, [3; 32]);
        assert_eq!(t.get(&1).unwrap().sightings, 1);
        t.expire(31 * S);
        assert!(t.is_empty());
    }

    /// The attack: a flood of forged beacons from ever new addresses. The
    /// established neighbours stay, the burst is cut by the rate limit and
    /// the table never grows beyond its capacity.
    #[test]
    fn a_flood_of_forged_beacons_evicts_no_established_neighbour() {
        let mut t: LanNeighbours<u32, 8> = LanNeighbours::new([0; 32], LanLimits::default());
        for round in 0..3u64 {
            for n in 1..=4u32 {
                assert!(t.offer(n, &beacon(n as u8), round * 5 * S).is_ok());
            }
        }
        let mut rate_limited = 0;
        let mut now = 15 * S;
        for forged in 1000..101_000u32 {
            now += 100; // 10 000 datagrams a second
            match t.offer(forged, &beacon((forged % 251) as u8 + 1), now) {
                Err(Ignored::RateLimited) => rate_limited += 1,
                Ok(_) | Err(Ignored::Full) => {}
                other => panic!("{other:?}"),
            }
            assert!(t.len() <= 8);
        }
        assert!(rate_limited > 90_000, "{rate_limited}");
        for n in 1..=4u32 {
            assert_eq!(t.get(&n).map(|x| x.sightings), Some(3), "neighbour {n} was pushed out");
        }
        // Real neighbours keep refreshing through the flood's aftermath.
        assert_eq!(t.offer(1, &beacon(1), now + 2 * S), Ok(Heard::Again));
    }
}
