//! A space crisis: the free disk of the box's data fell below its floor
//! (`[serve] min_free`). Uploads below the floor are refused anyway; but
//! the box's own backups keep growing, and they come first. So the buddy
//! drops clients' data, by this policy, stated once here and in
//! `docs/CONFIG.md`:
//!
//! 1. **When.** A crisis begins when the free disk is below `min_free`, and
//!    ends once it is back at `min_free` plus a margin (a tenth of the
//!    floor): the hysteresis keeps a box hovering at its floor from
//!    dropping a client at every backup. Dropping stops as soon as the
//!    crisis ends: no client is dropped that is not needed to get back
//!    above the resume level. With no floor (`min_free = 0`) there is never
//!    a crisis.
//! 2. **Who.** Only clients' data: a drop releases one client's references
//!    ([`BuddyStorage::release`]); the box's own backups, and chunks the
//!    box's own backups share, are never touched.
//! 3. **Which first.** Among the clients holding anything here: first the
//!    *silent* ones (no session for [`SILENT_AFTER`], a day, or more),
//!    longest silent first; then the others, furthest over their quota
//!    first (bytes used minus quota; a client under quota counts as a
//!    negative overshoot, so the one closest to its quota goes first). Ties:
//!    more bytes first, then key order. [`drop_order`] is this rule.
//! 4. **How.** Each drop is a real release: the client's references,
//!    objects and root go, its epoch goes back to 0, a [`DropNotice`] is
//!    recorded for it ([`notices`](super::notices)), and the chunk store is
//!    compacted at once so that the space is back before the free disk is
//!    measured again for the next decision. Compaction rewrites the live
//!    records of a pack before deleting it, so it needs up to one pack's
//!    live bytes free (packs are at most 256 MiB): the floor is that room
//!    (the default, 1 GiB, leaves plenty). Should a compaction fail, no
//!    other client is dropped before it is retried and succeeds.
//!
//! The dropped client learns it at its next contact (`GetNotice`), forgets
//! what it shipped here and re-homes its data (`docs/PROTOCOL.md` §4.9).

use std::time::{Duration, Instant};

use pastiche_core::wire::DropNotice;
use pastiche_core::PublicKey;
use serde::Serialize;

use super::admission::unix_now;
use super::{BuddyStorage, ClientInfo, LogSink};

/// A client with no session for this long (seconds) is *silent*: it goes
/// before every client that is not.
pub const SILENT_AFTER: u64 = 86_400;
/// How often the daemon measures the free disk.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);

/// What the policy knows of one client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The client.
    pub key: PublicKey,
    /// Its last session (Unix seconds).
    pub last_seen: u64,
    /// Bytes charged to it.
    pub used_bytes: u64,
    /// Its quota.
    pub quota_bytes: u64,
}

impl Candidate {
    /// Bytes over its quota (negative: under it).
    pub fn over_quota(&self) -> i128 {
        i128::from(self.used_bytes) - i128::from(self.quota_bytes)
    }

    /// Seconds since its last session at `now`.
    pub fn silent_for(&self, now: u64) -> u64 {
        now.saturating_sub(self.last_seen)
    }
}

/// The clients in the order a crisis drops them (see the module docs):
/// those holding nothing and `own` (the box itself) are left out.
pub fn drop_order(clients: &[Candidate], own: &PublicKey, now: u64) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = clients.iter().filter(|c| c.used_bytes > 0 && c.key != *own).copied().collect();
    out.sort_by(|a, b| {
        let (sa, sb) = (a.silent_for(now) >= SILENT_AFTER, b.silent_for(now) >= SILENT_AFTER);
        // Silent ones first; among them the longest silent.
        sb.cmp(&sa)
            .then_with(|| if sa && sb { a.last_seen.cmp(&b.last_seen) } else { std::cmp::Ordering::Equal })
            .then_with(|| b.over_quota().cmp(&a.over_quota()))
            .then_with(|| b.used_bytes.cmp(&a.used_bytes))
            .then_with(|| a.key.0.cmp(&b.key.0))
    });
    out
}

/// The floor and its hysteresis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Floor {
    /// `[serve] min_free` (0: none).
    pub min_free: u64,
}

impl Floor {
    /// Free bytes at which a crisis ends: the floor plus a tenth.
    pub fn resume_at(&self) -> u64 {
        self.min_free.saturating_add(self.min_free / 10)
    }
}

/// Whether a crisis is on, across measurements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Crisis {
    active: bool,
    /// A client was released but its space not reclaimed yet (the
    /// compaction failed): reclaimed before anyone else is dropped, so a
    /// failing compaction never drops every client in turn.
    unreclaimed: bool,
}

impl Crisis {
    /// Takes a measurement of `free` bytes: whether a client must be
    /// dropped now. On below the floor, off at [`Floor::resume_at`] or above.
    pub fn must_drop(&mut self, free: u64, floor: Floor) -> bool {
        if floor.min_free == 0 {
            self.active = false;
        } else if free < floor.min_free {
            self.active = true;
        } else if free >= floor.resume_at() {
            self.active = false;
        }
        self.active
    }

    /// Whether a crisis is on.
    pub fn is_active(&self) -> bool {
        self.active
    }
}

/// One client dropped in a crisis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Dropped {
    /// The client's key (hex).
    pub client: String,
    /// Its name.
    pub name: String,
    /// Seconds it had been silent.
    pub silent_secs: u64,
    /// Bytes it was over its quota (negative: under).
    pub over_quota: i64,
    /// Bytes released.
    pub bytes: u64,
    /// The notice recorded for it.
    pub seq: u64,
}

fn candidate(c: &ClientInfo) -> Candidate {
    Candidate { key: c.key, last_seen: c.last_seen, used_bytes: c.record.used_bytes, quota_bytes: c.record.quota_bytes }
}

/// One look at the disk: while `crisis` says so, drops the next client by
/// [`drop_order`], reclaims its space (`reclaim`, which compacts the chunk
/// store and returns the bytes freed) and measures again. Every step is
/// logged through `log`.
pub fn relieve(
    storage: &BuddyStorage,
    crisis: &mut Crisis,
    floor: Floor,
    reclaim: &dyn Fn() -> anyhow::Result<u64>,
    log: &dyn Fn(&str),
) -> anyhow::Result<Vec<Dropped>> {
    if crisis.unreclaimed {
        reclaim()?;
        crisis.unreclaimed = false;
    }
    let mut free = storage.free_disk()?;
    let was_active = crisis.is_active();
    let mut dropped = Vec::new();
    if !crisis.must_drop(free, floor) {
        return Ok(dropped);
    }
    let now = unix_now();
    let clients = storage.clients()?;
    let order = drop_order(&clients.iter().map(candidate).collect::<Vec<_>>(), &storage.own_key(), now);
    if !was_active {
        log(&format!(
            "space crisis: {free} bytes free, below the floor of {}: dropping clients' data (silent clients first, longest silent first, then furthest over quota) until {} bytes are free; {} clients hold data",
            floor.min_free,
            floor.resume_at(),
            order.len()
        ));
    }
    for c in order {
        let info = clients.iter().find(|i| i.key == c.key).expect("from the list");
        let bytes = storage.release(&c.key)?;
        let notice = storage.record_notice(&c.key, bytes, DropNotice::SPACE_CRISIS, now)?;
        crisis.unreclaimed = true;
        let freed = reclaim()?;
        crisis.unreclaimed = false;
        free = storage.free_disk()?;
        let d = Dropped {
            client: c.key.to_string(),
            name: info.name.clone(),
            silent_secs: c.silent_for(now),
            over_quota: c.over_quota().clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64,
            bytes,
            seq: notice.seq,
        };
        log(&format!(
            "space crisis: dropped client {} ({}): silent {}s, {} bytes over quota; {bytes} bytes released, {freed} reclaimed, notice #{} recorded; {free} bytes free",
            d.client, d.name, d.silent_secs, d.over_quota, d.seq
        ));
        dropped.push(d);
        if !crisis.must_drop(free, floor) {
            log(&format!("space crisis over: {free} bytes free (resume level {})", floor.resume_at()));
            return Ok(dropped);
        }
    }
    log(&format!(
        "space crisis: {free} bytes free after dropping every client's data: the box's own backups fill the disk"
    ));
    Ok(dropped)
}

/// Starts the daemon's crisis watch: every [`CHECK_EVERY`], with the floor
/// `floor()` of the live configuration, until `stopped` says so.
pub fn spawn(
    storage: BuddyStorage,
    floor: impl Fn() -> Floor + Send + 'static,
    reclaim: impl Fn() -> anyhow::Result<u64> + Send + 'static,
    log: LogSink,
    stopped: impl Fn() -> bool + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("pastiche-crisis".into()).spawn(move || {
        let mut crisis = Crisis::default();
        loop {
            if let Err(e) = relieve(&storage, &mut crisis, floor(), &reclaim, &*log) {
                log(&format!("space crisis: dropping failed: {e:#}"));
            }
            let next = Instant::now() + CHECK_EVERY;
            while Instant::now() < next {
                if stopped() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;
    const DAY: u64 = 86_400;

    fn c(k: u8, silent: u64, used: u64, quota: u64) -> Candidate {
        Candidate { key: PublicKey([k; 32]), last_seen: NOW - silent, used_bytes: used, quota_bytes: quota }
    }

    fn keys(v: &[Candidate]) -> Vec<u8> {
        v.iter().map(|c| c.key.0[0]).collect()
    }

    #[test]
    fn silent_clients_go_first_longest_silent_first() {
        let list = [c(1, 2 * DAY, 10, 100), c(2, 9 * DAY, 10, 100), c(3, 60, 500, 100), c(4, 5 * DAY, 10, 100)];
        assert_eq!(keys(&drop_order(&list, &PublicKey([0; 32]), NOW)), [2, 4, 1, 3]);
    }

    #[test]
    fn active_clients_go_furthest_over_quota_first() {
        let list = [c(1, 60, 50, 100), c(2, 60, 300, 100), c(3, 3600, 150, 100), c(4, 10, 90, 100)];
        // Overshoots: -50, +200, +50, -10.
        assert_eq!(keys(&drop_order(&list, &PublicKey([0; 32]), NOW)), [2, 3, 4, 1]);
    }

    #[test]
    fn ties_go_to_more_bytes_then_key_and_the_empty_and_own_are_never_dropped() {
        let list =
            [c(5, 60, 100, 100), c(6, 60, 200, 200), c(7, 60, 200, 200), c(8, 99 * DAY, 0, 10), c(9, 99 * DAY, 5, 0)];
        assert_eq!(keys(&drop_order(&list, &PublicKey([9; 32]), NOW)), [6, 7, 5], "8 holds nothing, 9 is the box");
        // A clock behind is no silence.
        let behind = [Candidate { last_seen: NOW + DAY, ..c(1, 0, 10, 100) }, c(2, 0, 50, 100)];
        assert_eq!(keys(&drop_order(&behind, &PublicKey([0; 32]), NOW)), [2, 1]);
    }

    #[test]
    fn a_crisis_starts_below_the_floor_and_ends_a_tenth_above_it() {
        let floor = Floor { min_free: 1000 };
        assert_eq!(floor.resume_at(), 1100);
        let mut crisis = Crisis::default();
        assert!(!crisis.must_drop(1050, floor), "above the floor: nothing");
        assert!(crisis.must_drop(999, floor), "below: a crisis");
        assert!(crisis.must_drop(1050, floor), "back above the floor, not yet at the resume level");
        assert!(!crisis.must_drop(1100, floor), "at the resume level: over");
        assert!(!crisis.must_drop(1050, floor), "hovering above the floor drops nobody");
        assert!(!Crisis::default().must_drop(0, Floor { min_free: 0 }), "no floor, no crisis");
    }
}
