//! Everything the status page shows, gathered in one serializable
//! [`Overview`] (the page, `GET /api/overview` and `/metrics` render it),
//! and the monitor thread that keeps it current: it rebuilds the overview
//! every [`REFRESH`] (at once when a job ends), probes the buddies every
//! `[alerts] probe_seconds`, and puts the health verdict on the daemon's
//! status board for `pastiche status`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::peers::{self, BuddyContact, ClientUsage};
use crate::buddy::BuddyStorage;
use crate::config::LiveConfig;
use crate::daemon::status::{JobKind, StatusBoard, StatusReport};
use crate::engine::stats::{stats, StatsReport};
use crate::health::{self, BuddyFacts, Facts, Health};
use crate::repo::SharedBox;

/// How often the overview is rebuilt.
pub const REFRESH: Duration = Duration::from_secs(2);

/// The box itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BoxInfo {
    /// Fully-qualified machine name.
    pub name: String,
    /// Overlay nodeId (hex).
    pub node_id: String,
    /// Public key (hex).
    pub public_key: String,
    /// The key in short, to compare by eye.
    pub fingerprint: String,
    /// This program's version.
    pub version: String,
    /// The data directory.
    pub data_dir: String,
    /// Bytes the chunk store's packs take.
    pub disk_used: u64,
    /// Free bytes on the data directory's file system.
    pub disk_free: Option<u64>,
    /// Size of that file system.
    pub disk_total: Option<u64>,
}

/// The schedule and what runs next.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScheduleView {
    /// The backup schedule, as configured.
    pub backup: String,
    /// The prune schedule.
    pub prune: String,
    /// The longest gap between two scheduled backups, in seconds.
    pub backup_interval_seconds: Option<u64>,
    /// When the next backup runs (RFC 3339).
    pub next_backup: Option<String>,
}

/// One buddy, as the page shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BuddyView {
    /// `HOST:PORT`.
    pub addr: String,
    /// Its pinned public key (hex).
    pub key: Option<String>,
    /// The key in short.
    pub fingerprint: Option<String>,
    /// `current`, `behind`, `unreachable`, `failing` or `new`.
    pub state: String,
    /// The last epoch committed there.
    pub epoch: u64,
    /// The snapshot it holds (id hex).
    pub snapshot: Option<String>,
    /// What the contact ledger knows.
    pub contact: BuddyContact,
    /// Its audits (`pastiche audit`), if it was ever audited.
    #[serde(default)]
    pub audit: Option<crate::audit::record::AuditRecord>,
}

/// Everything on the status page.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    /// The verdict and its reasons.
    pub health: Health,
    /// The box.
    #[serde(rename = "box")]
    pub box_info: BoxInfo,
    /// What the daemon is doing (as `pastiche status --json`).
    pub status: StatusReport,
    /// The schedule.
    pub schedule: ScheduleView,
    /// Seconds since the newest snapshot was taken.
    pub last_backup_age_seconds: Option<i64>,
    /// Every snapshot, oldest first, as `pastiche snapshots --json` prints
    /// them.
    pub snapshots: Vec<serde_json::Value>,
    /// Sizes and counts, as `pastiche stats --json`.
    pub stats: StatsReport,
    /// The buddies.
    pub buddies: Vec<BuddyView>,
    /// Boxes that store their data here.
    pub clients: Vec<ClientUsage>,
    /// Pairing requests waiting for the owner's answer (`pastiche buddy
    /// accept ID`), each as `ID NAME from ADDR, confirmation 123 456`.
    pub pairing_requests: Vec<String>,
    /// When this overview was made (RFC 3339).
    pub made: String,
}

/// A key in short: its first 16 hex digits in groups of four.
pub fn fingerprint(key_hex: &str) -> String {
    let head: Vec<&str> = key_hex.as_bytes().chunks(4).take(4).map(|c| std::str::from_utf8(c).unwrap_or("?")).collect();
    head.join(" ")
}

/// Free and total bytes of the file system holding `dir`.
pub fn disk_space(dir: &Path) -> Option<(u64, u64)> {
    let s = rustix::fs::statvfs(dir).ok()?;
    Some((s.f_bavail.saturating_mul(s.f_frsize), s.f_blocks.saturating_mul(s.f_frsize)))
}

/// What the overview is made from.
pub struct Sources {
    /// The box.
    pub shared: Arc<SharedBox>,
    /// The daemon's status.
    pub board: Arc<StatusBoard>,
    /// The configuration, as reloaded.
    pub config: Arc<LiveConfig>,
    /// The buddy store (clients stored here).
    pub storage: Option<BuddyStorage>,
    /// Unix seconds the daemon started.
    pub started: i64,
}

impl Sources {
    /// Builds the overview now.
    pub fn build(&self) -> Result<Overview> {
        let repo = self.shared.read();
        let now = jiff::ZonedDateTime::now();
        let unix = now.timestamp().as_second();
        let root = repo.load_root()?;
        let st = stats(&repo)?;
        let ledger = peers::load_ledger(&repo.dir).unwrap_or_default();
        let audits = crate::audit::record::load(&repo.dir).unwrap_or_default();
        let latest = root.snapshots.last();
        let disk = disk_space(&repo.dir);
        let box_info = BoxInfo {
            name: repo.config.name.clone(),
            node_id: repo.config.node_id.clone(),
            public_key: repo.config.public_key.clone(),
            fingerprint: fingerprint(&repo.config.public_key),
            version: env!("CARGO_PKG_VERSION").to_string(),
            data_dir: repo.dir.display().to_string(),
            disk_used: st.stored_bytes,
            disk_free: disk.map(|d| d.0),
            disk_total: disk.map(|d| d.1),
        };
        let latest_id = latest.map(|s| s.id_hex());
        let buddies: Vec<BuddyView> = peers::buddy_list(&repo.dir)?
            .into_iter()
            .map(|b| {
                let contact = ledger.buddies.get(&b.addr).cloned().unwrap_or_default();
                let audit = audits.get(&b.addr).cloned();
                let state = if contact.reachable == Some(false) {
                    "unreachable"
                } else if contact.consecutive_failures > 0 {
                    "failing"
                } else if b.snapshot.is_some() && b.snapshot == latest_id {
                    "current"
                } else if b.snapshot.is_none() && latest_id.is_some() {
                    "new"
                } else if latest_id.is_none() {
                    "current"
                } else {
                    "behind"
                };
                BuddyView {
                    fingerprint: b.key.as_deref().map(fingerprint),
                    key: b.key,
                    addr: b.addr,
                    state: state.to_string(),
                    epoch: b.epoch,
                    snapshot: b.snapshot,
                    audit,
                    contact,
                }
            })
            .collect();
        let clients = match &self.storage {
            Some(s) => peers::clients(s)?,
            None => Vec::new(),
        };
        let status = self.board.report();
        let config = self.config.get();
        let interval = health::schedule_interval(&config.backup.schedule, &now);
        let last_snapshot = latest.map(|s| s.time.secs);
        let facts = Facts {
            now: unix,
            daemon_running: true,
            backup_interval: interval,
            last_snapshot,
            running_since: Some(self.started),
            last_backup_error: status.last_result.get(&JobKind::Backup).filter(|r| !r.ok).map(|r| r.message.clone()),
            buddies: buddies
                .iter()
                .map(|b| BuddyFacts {
                    addr: b.addr.clone(),
                    reachable: b.contact.reachable,
                    last_sync: b.contact.last_sync,
                    consecutive_failures: b.contact.consecutive_failures,
                    last_error: b.contact.last_error.clone(),
                })
                .collect(),
            disk_free: box_info.disk_free,
        };
        let health = health::assess(&facts, &config.alerts.thresholds())
            .with_alerts(match &self.storage {
                Some(s) => crate::buddy::lifecycle::alerts(
                    &s.clients()?,
                    crate::buddy::lifecycle::Grace::days(config.serve.client_grace_days),
                    crate::buddy::admission::unix_now(),
                ),
                None => Vec::new(),
            })
            .with_alerts(crate::audit::record::alerts(&crate::audit::record::load(&repo.dir).unwrap_or_default()))
            .with_alerts(crate::repair::record::alerts(crate::repair::record::load(&repo.dir).ok().flatten().as_ref()));
        Ok(Overview {
            health,
            box_info,
            schedule: ScheduleView {
                backup: config.backup.schedule.to_string(),
                prune: config.prune.schedule.to_string(),
                backup_interval_seconds: interval.map(|d| d.as_secs()),
                next_backup: status.next_run.get(&JobKind::Backup).cloned(),
            },
            status,
            last_backup_age_seconds: last_snapshot.map(|t| unix - t),
            snapshots: root.snapshots.iter().map(crate::cli::boxcmd::snapshot_json).collect(),
            stats: st,
            buddies,
            clients,
            pairing_requests: crate::overlay::files::pending_summaries(&repo.dir),
            made: now.timestamp().to_string(),
        })
    }
}

/// The newest overview, shared by the monitor and the HTTP handlers.
pub type Cache = Arc<RwLock<Option<Overview>>>;

/// Runs until `stop`: rebuilds the overview, probes buddies, and puts the
/// health on the board.
pub fn monitor(src: Sources, cache: Cache, stop: Arc<AtomicBool>) {
    let mut last_probe: Option<Instant> = None;
    let mut last_built = Instant::now() - REFRESH;
    let mut finished_seen = String::new();
    while !stop.load(Ordering::SeqCst) {
        let probe_every = Duration::from_secs(src.config.get().alerts.probe_seconds);
        if last_probe.is_none_or(|t| t.elapsed() >= probe_every) {
            if let Err(e) = peers::probe(src.shared.repo()) {
                tracing::warn!("cannot probe the buddies: {e:#}");
            }
            last_probe = Some(Instant::now());
            last_built = Instant::now() - REFRESH;
        }
        // A job that just ended changes snapshots and buddies: show it now.
        let finished: String =
            src.board.report().last_result.values().map(|r| r.finished.as_str()).collect::<Vec<_>>().join(",");
        if finished != finished_seen || last_built.elapsed() >= REFRESH {
            finished_seen = finished;
            match src.build() {
                Ok(o) => {
                    src.board.update(|r| r.health = Some(o.health.clone()));
                    *cache.write().unwrap_or_else(|e| e.into_inner()) = Some(o);
                }
                Err(e) => tracing::warn!("cannot gather the status: {e:#}"),
            }
            last_built = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_the_key_head_in_groups() {
        assert_eq!(fingerprint(&"0123456789abcdef".repeat(4)), "0123 4567 89ab cdef");
        assert_eq!(fingerprint("ab"), "ab");
    }

    #[test]
    fn disk_space_of_a_real_directory() {
        let (free, total) = disk_space(Path::new("/")).expect("statvfs /");
        assert!(total > 0 && free <= total);
    }
}
