//! Who may hold a connection to the buddy server: a cap per source
//! address, a pool of connections still in their handshake (when a new one
//! needs room, one is evicted: connections younger than [`GRACE`] last,
//! then those that got least far in their handshake, the oldest first; so
//! trickling attackers cannot lock honest clients out, which complete the
//! channel handshake well within the grace), and a cap on authenticated
//! sessions.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A new connection is evicted only when every other pending one is as
/// young: time enough for an honest client's channel handshake.
pub const GRACE: Duration = Duration::from_secs(1);

/// The caps; see `ServeOptions`.
#[derive(Clone, Copy, Debug)]
pub struct Caps {
    /// Authenticated sessions at once.
    pub sessions: usize,
    /// Connections still in their handshake at once.
    pub pending: usize,
    /// Connections from one source address at once.
    pub per_address: usize,
}

/// Why a connection was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Its source address already holds `per_address` connections.
    PerAddress(usize),
}

/// One connection's place; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    id: u64,
    table: Arc<Slots>,
    evicted: Arc<AtomicBool>,
}

impl Slot {
    /// Whether a newer connection took this one's place in the handshake
    /// pool: the connection must end.
    pub fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::SeqCst)
    }

    /// Records how far the connection got in its handshake (1: a first
    /// message whole, 2: the channel established): it is evicted only
    /// after those that got less far.
    pub fn progress(&self, level: u8) {
        if let Some(e) = self.table.lock().entries.iter_mut().find(|e| e.id == self.id) {
            e.progress = e.progress.max(level);
        }
    }

    /// Moves the connection from the handshake pool to the sessions; false
    /// when every session place is taken (the client is told "busy").
    pub fn authenticate(&self) -> bool {
        let mut t = self.table.lock();
        let sessions = t.entries.iter().filter(|e| e.authenticated).count();
        match t.entries.iter_mut().find(|e| e.id == self.id) {
            Some(e) if sessions < self.table.caps.sessions => {
                e.authenticated = true;
                true
            }
            _ => false,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table.lock().entries.retain(|e| e.id != self.id);
    }
}

#[derive(Debug)]
struct Entry {
    id: u64,
    address: IpAddr,
    since: Instant,
    progress: u8,
    authenticated: bool,
    evicted: Arc<AtomicBool>,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    entries: Vec<Entry>,
}

/// The table of connections.
#[derive(Debug)]
pub struct Slots {
    caps: Caps,
    table: Mutex<Table>,
}

impl Slots {
    /// An empty table with these caps.
    pub fn new(caps: Caps) -> Arc<Slots> {
        Arc::new(Slots { caps, table: Mutex::new(Table::default()) })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panicking session thread cannot leave the table inconsistent:
        // every change is one push, retain or flag.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a place for a new connection from `address`, evicting the
    /// oldest connection still in its handshake if that pool is full.
    /// Returns the place and the address evicted, if any.
    pub fn take(self: &Arc<Slots>, address: IpAddr) -> Result<(Slot, Option<IpAddr>), Refusal> {
        let address = canonical(address);
        let mut t = self.lock();
        let same = t.entries.iter().filter(|e| e.address == address).count();
        if same >= self.caps.per_address {
            return Err(Refusal::PerAddress(same));
        }
        let mut evicted = None;
        let pending = t.entries.iter().filter(|e| !e.authenticated).count();
        if pending >= self.caps.pending {
            let victim = t
                .entries
                .iter()
                .filter(|e| !e.authenticated)
                .min_by_key(|e| (e.since.elapsed() < GRACE, e.progress, e.since));
            if let Some(oldest) = victim {
                oldest.evicted.store(true, Ordering::SeqCst);
                evicted = Some((oldest.id, oldest.address));
            }
            if let Some((id, _)) = evicted {
                t.entries.retain(|e| e.id != id);
            }
        }
        t.next_id += 1;
        let id = t.next_id;
        let flag = Arc::new(AtomicBool::new(false));
        t.entries.push(Entry {
            id,
            address,
            since: Instant::now(),
            progress: 0,
            authenticated: false,
            evicted: flag.clone(),
        });
        Ok((Slot { id, table: self.clone(), evicted: flag }, evicted.map(|(_, a)| a)))
    }

    /// Connections held now.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

/// IPv4 peers seen through an IPv6 socket count as their IPv4 address.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(address),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn caps_per_address_evicts_oldest_pending_and_counts_sessions() {
        let slots = Slots::new(Caps { sessions: 1, pending: 2, per_address: 2 });
        let (a, _) = slots.take(ip(1)).unwrap();
        let (b, _) = slots.take(ip(1)).unwrap();
        assert_eq!(slots.take(ip(1)).unwrap_err(), Refusal::PerAddress(2));
        // The pool of 2 is full: a third address evicts the oldest.
        let (c, evicted) = slots.take(ip(2)).unwrap();
        assert_eq!(evicted, Some(ip(1)));
        assert!(a.is_evicted() && !b.is_evicted());
        drop(a);
        assert_eq!(slots.len(), 2);
        // One session place: the second to authenticate is refused.
        assert!(b.authenticate());
        assert!(!c.authenticate());
        // Authenticated connections are never evicted.
        let (_d, evicted) = slots.take(ip(3)).unwrap();
        assert_eq!(evicted, None, "one pending (c) of 2");
        let (_e, evicted) = slots.take(ip(4)).unwrap();
        assert_eq!(evicted, Some(ip(2)));
        assert!(!b.is_evicted());
        drop(b);
        let (_f, _) = slots.take(ip(1)).unwrap();
    }

    #[test]
    fn connections_further_in_their_handshake_are_evicted_last() {
        let slots = Slots::new(Caps { sessions: 8, pending: 2, per_address: 8 });
        let (old, _) = slots.take(ip(1)).unwrap();
        let (young, _) = slots.take(ip(2)).unwrap();
        old.progress(1);
        let (_c, evicted) = slots.take(ip(3)).unwrap();
        assert_eq!(evicted, Some(ip(2)), "the younger trickler goes before the older one that sent a message");
        assert!(young.is_evicted() && !old.is_evicted());
        old.progress(2);
        let (_d, evicted) = slots.take(ip(4)).unwrap();
        assert_eq!(evicted, Some(ip(3)));
    }
}
