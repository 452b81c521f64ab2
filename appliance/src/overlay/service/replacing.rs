//! The overlay thread's part in replacing buddies ([`crate::overlay::replace`]
//! decides, [`crate::overlay::retire`] acts): it keeps each buddy's last sign
//! of life, measures its coverage, starts a replacement when the policy says
//! so, takes the old buddy out once the kept ones hold the full copy, and
//! asks it to drop this box's data until it answers. Spares from `[overlay]
//! spares` are tried before discovered boxes.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant};

use pastiche_core::discovery::Sweep;
use pastiche_core::identity::NodeId;
use serde::{Deserialize, Serialize};

use super::{goal, Service};
use crate::audit::record::AuditRecord;
use crate::buddy::admission::unix_now;
use crate::overlay::addr::to_socket;
use crate::overlay::files::{self, FoundBuddy};
use crate::overlay::replace::{self, why_replace, Facts, Policy, Reason, Replacement, Stage};
use crate::overlay::retire;
use crate::sync::{load_buddies, BuddyEntry};

/// How often the policy is applied.
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// How often the signs of life are saved (they matter across restarts only).
const SAVE_CONTACT_EVERY: Duration = Duration::from_secs(60);
/// A drop request that failed is tried again after this, doubling up to
/// [`DROP_RETRY_MAX`]; at once when the old buddy's beacon is heard again.
const DROP_RETRY_FIRST: Duration = Duration::from_secs(30);
/// See [`DROP_RETRY_FIRST`].
const DROP_RETRY_MAX: Duration = Duration::from_secs(3600);
/// A spare that could not be paired is not tried again for this long.
const SPARE_RETRY: Duration = Duration::from_secs(600);

/// What a take-out or drop thread reports.
pub(super) struct Retired {
    addr: String,
    outcome: Outcome,
}

enum Outcome {
    /// It was no longer in the buddy list (removed by hand).
    NotABuddy,
    /// The buddy list could not be written.
    TakeOutFailed(String),
    /// It dropped the data, for this signed epoch.
    Dropped(u64),
    /// The drop request failed (taken out of the list if it was in it).
    DropFailed(String),
}

/// The signs of life as saved: when, so that silence is counted only while
/// the daemon watched (a box switched off for two weeks does not find all
/// its buddies silent when it comes back).
#[derive(Default, Serialize, Deserialize)]
struct SavedContact {
    saved: u64,
    buddies: BTreeMap<String, u64>,
}

/// The replacement state of the overlay thread.
pub(super) struct Replacer {
    records: Vec<Replacement>,
    contact: BTreeMap<String, u64>,
    contact_saved: Instant,
    next_check: Instant,
    busy: bool,
    tx: Sender<Retired>,
    rx: Receiver<Retired>,
    next_drop_try: Instant,
    drop_wait: Duration,
    last_drop_try: Option<Instant>,
    /// Coverage of this box's fingerprint last measured at each address.
    measured: HashMap<IpAddr, f64>,
    spare_busy: bool,
    spare_tx: Sender<(String, anyhow::Result<()>)>,
    spare_rx: Receiver<(String, anyhow::Result<()>)>,
    spares_failed: HashMap<String, Instant>,
}

impl Replacer {
    /// Loads what a previous run recorded.
    pub(super) fn load(data: &std::path::Path) -> Replacer {
        let now = unix_now();
        let saved: SavedContact = files::read_file(data, "contact.json").unwrap_or_default();
        let downtime = now.saturating_sub(saved.saved);
        let contact = saved.buddies.into_iter().map(|(a, t)| (a, t.saturating_add(downtime).min(now))).collect();
        let (tx, rx) = channel();
        let (spare_tx, spare_rx) = channel();
        Replacer {
            records: replace::load(data).unwrap_or_default(),
            contact,
            contact_saved: Instant::now(),
            next_check: Instant::now(),
            busy: false,
            tx,
            rx,
            next_drop_try: Instant::now(),
            drop_wait: DROP_RETRY_FIRST,
            last_drop_try: None,
            measured: HashMap::new(),
            spare_busy: false,
            spare_tx,
            spare_rx,
            spares_failed: HashMap::new(),
        }
    }

    /// Whether `addr` is on its way out (it does not count as a buddy kept).
    pub(super) fn leaving(&self, addr: &str) -> bool {
        self.records.iter().any(|r| r.addr == addr && r.stage == Stage::Replacing)
    }

    /// Whether a box at `ip` or with `key` (hex) must not be chosen now.
    pub(super) fn excluded(&self, ip: IpAddr, key: Option<&str>) -> bool {
        let now = unix_now();
        self.records.iter().filter(|r| r.excludes(now)).any(|r| {
            r.addr.parse::<SocketAddr>().is_ok_and(|a| a.ip() == ip) || (key.is_some() && r.key.as_deref() == key)
        })
    }

    /// A coverage measurement of the box at `ip`.
    pub(super) fn measured(&mut self, ip: IpAddr, coverage: f64) {
        self.measured.insert(ip, coverage);
    }

    /// The coverage last measured of the box at `ip` (0 to 1), if any.
    pub(super) fn coverage_of(&self, ip: IpAddr) -> Option<f64> {
        self.measured.get(&ip).copied()
    }

    /// The old buddy with this key was heard again: ask it to drop now.
    pub(super) fn heard(&mut self, key: &[u8; 32]) {
        let key = hex::encode(key);
        if self.records.iter().any(|r| r.stage == Stage::DropPending && r.key.as_deref() == Some(key.as_str())) {
            self.next_drop_try = Instant::now();
        }
    }

    /// A buddy was just paired: it is alive now.
    pub(super) fn paired(&mut self, addr: &str) {
        self.contact.insert(addr.to_string(), unix_now());
    }
}

fn ip_of(addr: &str) -> Option<IpAddr> {
    addr.parse::<SocketAddr>().ok().map(|a| a.ip())
}

impl Service {
    /// One step of the replacement machinery (called every second).
    pub(super) fn replace_step(&mut self) {
        while let Ok(r) = self.rep.rx.try_recv() {
            self.on_retired(r);
        }
        while let Ok((addr, result)) = self.rep.spare_rx.try_recv() {
            self.rep.spare_busy = false;
            self.files_dirty = true;
            match result {
                Ok(()) => {
                    self.rep.paired(&addr);
                    self.board.event(format!("paired with spare buddy {addr}: shipping a full copy"));
                }
                Err(e) => {
                    self.rep.spares_failed.insert(addr.clone(), Instant::now());
                    self.board.event(format!("spare buddy {addr} could not be paired: {e:#}"));
                }
            }
        }
        if Instant::now() < self.rep.next_check {
            return;
        }
        self.rep.next_check = Instant::now() + CHECK_EVERY;
        let now = unix_now();
        let Ok(buddies) = load_buddies(&self.data) else { return };
        let audits = crate::audit::record::load(&self.data).unwrap_or_default();
        self.note_contact(&buddies, &audits, now);
        if self.config.buddies > 0 {
            self.decide(&buddies, &audits, now);
        }
        self.advance(&buddies, now);
    }

    /// Whether `b` is heard on the LAN (its key or its address) or held in
    /// the network overlay.
    fn present(&self, b: &BuddyEntry) -> bool {
        let ip = ip_of(&b.addr);
        let key = b.key.as_deref();
        self.lan
            .iter()
            .any(|n| key == Some(hex::encode(n.beacon.buddy_key).as_str()) || Some(to_socket(&n.addr).ip()) == ip)
            || self.net.state().peers().any(|p| Some(to_socket(&p.addr).ip()) == ip)
    }

    fn note_contact(&mut self, buddies: &[BuddyEntry], audits: &BTreeMap<String, AuditRecord>, now: u64) {
        for b in buddies {
            let present = self.present(b);
            // An audit it answered is a sign of life too (a buddy far away
            // is neither on the LAN nor necessarily in the overlay).
            let audited = audits.get(&b.addr).filter(|r| r.error.is_none() && r.last_audit > 0);
            let seen = self.rep.contact.entry(b.addr.clone()).or_insert(now);
            if present {
                *seen = now;
            }
            if let Some(r) = audited {
                *seen = (*seen).max((r.last_audit as u64).min(now));
            }
        }
        self.rep.contact.retain(|a, _| buddies.iter().any(|b| b.addr == *a));
        if self.rep.contact_saved.elapsed() >= SAVE_CONTACT_EVERY {
            self.rep.contact_saved = Instant::now();
            let saved = SavedContact { saved: now, buddies: self.rep.contact.clone() };
            if let Err(e) = files::write_file(&self.data, "contact.json", &saved) {
                tracing::warn!("cannot save the buddies' signs of life: {e:#}");
            }
        }
    }

    fn decide(&mut self, buddies: &[BuddyEntry], audits: &BTreeMap<String, AuditRecord>, now: u64) {
        let policy = Policy {
            silent_after: self.config.replace_after,
            max_failures: self.config.replace_after_failures,
            min_coverage: self.config.min_coverage,
        };
        let found: BTreeMap<String, FoundBuddy> = files::found(&self.data).unwrap_or_default();
        let buddy_ips: Vec<Option<IpAddr>> = buddies.iter().map(|b| ip_of(&b.addr)).collect();
        let best = self
            .candidates()
            .iter()
            .filter(|(c, _)| !buddy_ips.contains(&Some(to_socket(&c.addr).ip())))
            .map(|(c, _)| f64::from(c.coverage_ppm) / 1e6)
            .fold(0.0, f64::max);
        let dropped = match self.shared.read().meta.existing_database() {
            Ok(Some(db)) => crate::sync::notice::unsettled_by_addr(db, buddies).unwrap_or_default(),
            _ => Default::default(),
        };
        let mut changed = false;
        for b in buddies {
            let facts = Facts {
                dropped_at: dropped.get(&b.addr).map(|n| n.dropped_at),
                last_contact: self.rep.contact.get(&b.addr).copied().unwrap_or(now),
                failures_in_a_row: audits.get(&b.addr).map_or(0, |r| r.failures_in_a_row),
                answered_last_audit: audits.get(&b.addr).is_some_and(|r| r.error.is_none()),
                coverage_now: ip_of(&b.addr).and_then(|ip| self.rep.measured.get(&ip).copied()),
                coverage_chosen: found.get(&b.addr).map(|f| f.coverage),
            };
            let reason = why_replace(&facts, &policy, best, now);
            if let Some(pos) = self.rep.records.iter().position(|r| r.addr == b.addr && r.stage == Stage::Replacing) {
                // A silent buddy heard again before its replacement holds
                // the copy stays.
                if matches!(self.rep.records[pos].reason, Reason::Silent { .. }) && reason.is_none() {
                    self.board.event(format!("buddy {} is back: not replaced", b.addr));
                    self.rep.records.remove(pos);
                    changed = true;
                }
                continue;
            }
            let Some(reason) = reason else { continue };
            let latest_then = self.shared.read().load_root().ok().and_then(|r| r.snapshots.last().map(|s| s.id_hex()));
            self.board.event(format!("buddy {} {reason}: looking for a replacement", b.addr));
            self.rep.records.retain(|r| r.addr != b.addr);
            self.rep.records.push(Replacement {
                addr: b.addr.clone(),
                key: b.key.clone(),
                reason,
                stage: Stage::Replacing,
                since: now,
                changed: now,
                attempts: 0,
                last_error: None,
                drop_epoch: None,
                latest_then,
            });
            changed = true;
            if let Some(ip) = ip_of(&b.addr) {
                self.outgoing.retain(|o| o.to.ip() != ip);
            }
            // Discovery starts over at once.
            self.next_sweep = Instant::now();
            self.sweep = Sweep::new(NodeId(rand::random()), goal(&self.config));
            self.probe_tokens.clear();
        }
        if changed {
            self.save_records(now);
        }
    }

    fn save_records(&mut self, now: u64) {
        self.files_dirty = true;
        if let Err(e) = replace::save(&self.data, &self.rep.records, now) {
            tracing::warn!("cannot save the replacements: {e:#}");
        }
        self.rep.records.retain(|r| r.excludes(now));
    }

    /// Takes out an old buddy once the kept ones hold the full copy, or
    /// asks one already out to drop the data; one at a time, on a thread.
    fn advance(&mut self, buddies: &[BuddyEntry], now: u64) {
        // Removed by hand meanwhile: the owner took over.
        let before = self.rep.records.len();
        self.rep.records.retain(|r| r.stage != Stage::Replacing || buddies.iter().any(|b| b.addr == r.addr));
        if self.rep.records.len() != before {
            self.save_records(now);
        }
        if self.rep.busy {
            return;
        }
        let Ok(snapshots) =
            self.shared.read().load_root().map(|r| r.snapshots.iter().map(|s| s.id_hex()).collect::<Vec<_>>())
        else {
            return;
        };
        let full = replace::kept_hold_full_copy(buddies, &self.rep.records, &snapshots, self.config.buddies);
        // An old buddy seen again (LAN or overlay) is asked at once, whatever
        // the backoff says (an attempt that failed just before it came back
        // must not make it wait an hour).
        let recent_try = self.rep.last_drop_try.is_some_and(|t| t.elapsed() < Duration::from_secs(10));
        let back = self.rep.records.iter().position(|r| {
            let entry = BuddyEntry { addr: r.addr.clone(), key: r.key.clone(), epoch: 0, snapshot: None };
            r.stage == Stage::DropPending && !recent_try && self.present(&entry)
        });
        let next = match self.rep.records.iter().position(|r| r.stage == Stage::Replacing) {
            Some(i) if full => Some(i),
            _ if back.is_some() => back,
            _ if Instant::now() >= self.rep.next_drop_try => {
                self.rep.records.iter().position(|r| r.stage == Stage::DropPending)
            }
            _ => None,
        };
        let Some(i) = next else { return };
        let r = &mut self.rep.records[i];
        if r.stage == Stage::DropPending && now.saturating_sub(r.changed) >= replace::GIVE_UP_DROP_AFTER {
            r.stage = Stage::GaveUp;
            r.changed = now;
            self.board.event(format!("gave up asking {} to drop our data: it never answered", r.addr));
            self.save_records(now);
            return;
        }
        let (addr, key, take) = (r.addr.clone(), r.key.clone(), r.stage == Stage::Replacing);
        if take {
            self.board.event(format!(
                "the buddies kept hold the full copy: taking {addr} out and asking it to drop our data"
            ));
        }
        self.rep.busy = true;
        self.rep.last_drop_try = Some(Instant::now());
        let shared = self.shared.clone();
        let tx = self.rep.tx.clone();
        let spawned = thread::Builder::new().name("pastiche-retire".into()).spawn(move || {
            let mut entry = BuddyEntry { addr: addr.clone(), key, epoch: 0, snapshot: None };
            if take {
                match retire::take_out(&shared, &addr) {
                    Ok(Some(e)) => entry = e,
                    Ok(None) => return drop(tx.send(Retired { addr, outcome: Outcome::NotABuddy })),
                    Err(e) => {
                        return drop(tx.send(Retired { addr, outcome: Outcome::TakeOutFailed(format!("{e:#}")) }))
                    }
                }
            }
            let outcome = match retire::ask_to_drop(shared.repo(), &mut entry) {
                Ok(epoch) => Outcome::Dropped(epoch),
                Err(e) => Outcome::DropFailed(format!("{e:#}")),
            };
            let _ = tx.send(Retired { addr, outcome });
        });
        if spawned.is_err() {
            self.rep.busy = false;
        }
    }

    fn on_retired(&mut self, done: Retired) {
        self.rep.busy = false;
        let now = unix_now();
        let Some(r) = self.rep.records.iter_mut().find(|r| r.addr == done.addr && r.excludes(now)) else { return };
        match done.outcome {
            Outcome::NotABuddy => {
                let addr = r.addr.clone();
                self.rep.records.retain(|r| r.addr != addr);
            }
            Outcome::TakeOutFailed(e) => {
                self.board.event(format!("cannot take {} out of the buddy list: {e}", done.addr));
            }
            Outcome::Dropped(epoch) => {
                r.stage = Stage::Dropped;
                r.changed = now;
                r.attempts += 1;
                r.drop_epoch = Some(epoch);
                r.last_error = None;
                self.rep.drop_wait = DROP_RETRY_FIRST;
                self.board.event(format!(
                    "old buddy {} dropped our data (signed drop, epoch {epoch}); replacement done",
                    done.addr
                ));
            }
            Outcome::DropFailed(e) => {
                if r.stage == Stage::Replacing {
                    r.stage = Stage::DropPending;
                    r.changed = now;
                }
                r.attempts += 1;
                r.last_error = Some(e.clone());
                self.rep.next_drop_try = Instant::now() + self.rep.drop_wait;
                self.board.event(format!(
                    "old buddy {} is out of the buddy list; it did not take the drop request ({e}): asking again in {}s or when it is heard",
                    done.addr,
                    self.rep.drop_wait.as_secs()
                ));
                self.rep.drop_wait = (self.rep.drop_wait * 2).min(DROP_RETRY_MAX);
            }
        }
        self.save_records(now);
    }

    /// Pairs with the first configured spare that is not a buddy yet, when
    /// one is needed; returns whether it started one.
    pub(super) fn take_spare(&mut self, buddies: &[&BuddyEntry]) -> bool {
        if self.rep.spare_busy {
            return true;
        }
        self.rep.spares_failed.retain(|_, t| t.elapsed() < SPARE_RETRY);
        let pick = self.config.spares.iter().find(|s| {
            let addr = s.rsplit_once('@').map_or(s.as_str(), |(_, a)| a);
            !buddies.iter().any(|b| b.addr == addr)
                && !self.rep.spares_failed.contains_key(addr)
                && !ip_of(addr).is_some_and(|ip| self.rep.excluded(ip, None))
        });
        let Some(spare) = pick.cloned() else { return false };
        let (code, addr) = match spare.rsplit_once('@') {
            Some((c, a)) => (Some(c.to_string()), a.to_string()),
            None => (None, spare),
        };
        self.rep.spare_busy = true;
        let shared = self.shared.clone();
        let queue = self.queue.clone();
        let tx = self.rep.spare_tx.clone();
        let data = self.data.clone();
        let spawned = thread::Builder::new().name("pastiche-spare".into()).spawn(move || {
            let result = pair_spare(&shared, &data, &addr, code.as_deref());
            if result.is_ok() {
                queue.request(crate::daemon::status::JobKind::Ship);
            }
            let _ = tx.send((addr, result));
        });
        if spawned.is_err() {
            self.rep.spare_busy = false;
        }
        true
    }
}

/// Pairs with a spare through the buddy admission (its code, or an
/// admission it made before) and records it.
fn pair_spare(
    shared: &crate::repo::SharedBox,
    data: &std::path::Path,
    addr: &str,
    code: Option<&str>,
) -> anyhow::Result<()> {
    let mut entry = BuddyEntry { addr: addr.to_string(), key: None, epoch: 0, snapshot: None };
    let conn = crate::sync::connect_pairing(shared.repo(), &mut entry, code)?;
    drop(conn);
    let key = entry.key.clone().unwrap_or_default();
    let how = FoundBuddy { found: "spare".into(), coverage: 0.0, rtt_ms: None, key, paired: unix_now() };
    super::record_paired(shared, data, entry, how)
}
