//! Is the data safe? One verdict (ok / warning / critical) with its
//! reasons, computed from facts about the box. The status page, the JSON
//! API, `/metrics` and `pastiche status` (exit 0 / 1 / 2, the monitoring
//! plugin convention) all show what [`assess`] says, so they never disagree.
//!
//! The checks fight silent staleness: a backup or a buddy that stopped weeks
//! ago and nobody noticed.
//!
//! | alert | severity |
//! | --- | --- |
//! | no successful backup for more than `backup_age_factor` × the schedule interval | critical |
//! | the last backup job failed | warning |
//! | a buddy not synced for more than `buddy_stale_hours` | warning |
//! | `sync_failures` syncs in a row failed to a buddy | warning |
//! | a buddy does not answer now | warning |
//! | no buddy at all: the data is on this box only | warning |
//! | free disk space below `disk_floor` | critical |
//! | no daemon runs for the box | critical |

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Schedule;

/// How bad things are, in increasing order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Everything is current.
    #[default]
    Ok,
    /// Something needs a look soon.
    Warning,
    /// The data is not safe now.
    Critical,
}

impl Verdict {
    /// The process exit code of `pastiche status` (Nagios: 0, 1, 2).
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Ok => 0,
            Verdict::Warning => 1,
            Verdict::Critical => 2,
        }
    }

    /// Its name in capitals, as monitoring plugins print it.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Ok => "OK",
            Verdict::Warning => "WARNING",
            Verdict::Critical => "CRITICAL",
        }
    }
}

/// One reason the verdict is not ok.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// How bad.
    pub severity: Verdict,
    /// A stable code for scripts: `backup_overdue`, `backup_failed`,
    /// `no_backup`, `buddy_stale`, `sync_failures`, `buddy_unreachable`,
    /// `no_buddies`, `disk_low`, `no_daemon`, `client_silent`, `audit_failed`,
    /// `store_damaged`.
    pub code: String,
    /// What is wrong, for people.
    pub message: String,
}

/// The verdict with its reasons.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// The worst alert's severity (ok without alerts).
    pub verdict: Verdict,
    /// Every alert, worst first.
    pub alerts: Vec<Alert>,
}

impl Health {
    /// The verdict with `more` alerts (from the buddy side, say) added.
    pub fn with_alerts(mut self, more: Vec<Alert>) -> Health {
        self.alerts.extend(more);
        self.alerts.sort_by_key(|a| std::cmp::Reverse(a.severity));
        self.verdict = self.alerts.first().map_or(Verdict::Ok, |a| a.severity);
        self
    }

    /// The one-line summary monitoring plugins print first.
    pub fn summary(&self) -> String {
        match self.alerts.first() {
            None => format!("PASTICHE {}: the backups and every buddy are current", self.verdict.label()),
            Some(a) if self.alerts.len() == 1 => format!("PASTICHE {}: {}", self.verdict.label(), a.message),
            Some(a) => format!("PASTICHE {}: {} (and {} more)", self.verdict.label(), a.message, self.alerts.len() - 1),
        }
    }
}

/// When an alert is raised (the `[alerts]` section of the configuration).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Thresholds {
    /// A backup is overdue after this many schedule intervals without one.
    pub backup_age_factor: f64,
    /// A buddy is stale after this long without a successful sync.
    pub buddy_stale: Duration,
    /// Syncs in a row that may fail before it is an alert.
    pub sync_failures: u32,
    /// Free bytes on the box's disk below which it is critical.
    pub disk_floor: u64,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            backup_age_factor: 2.0,
            buddy_stale: Duration::from_secs(3 * 24 * 3600),
            sync_failures: 3,
            disk_floor: 1 << 30,
        }
    }
}

/// What is known about one buddy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BuddyFacts {
    /// `HOST:PORT`.
    pub addr: String,
    /// Whether it answered the last probe (`None`: not probed yet).
    pub reachable: Option<bool>,
    /// Unix seconds of the last successful sync, if any.
    pub last_sync: Option<i64>,
    /// Syncs that failed since the last success.
    pub consecutive_failures: u32,
    /// Why the last failed sync or probe failed.
    pub last_error: Option<String>,
}

/// The facts the verdict is made of.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts {
    /// Unix seconds now.
    pub now: i64,
    /// Whether a daemon runs for the box (nothing is scheduled otherwise).
    pub daemon_running: bool,
    /// The backup schedule's interval (`None`: backups are not scheduled).
    pub backup_interval: Option<Duration>,
    /// Unix seconds of the newest snapshot.
    pub last_snapshot: Option<i64>,
    /// Unix seconds since which the daemon runs (a new box gets one interval
    /// and its grace before "no backup yet" is an alert).
    pub running_since: Option<i64>,
    /// The last backup job's failure message, if it failed.
    pub last_backup_error: Option<String>,
    /// The buddies.
    pub buddies: Vec<BuddyFacts>,
    /// Free bytes on the box's disk.
    pub disk_free: Option<u64>,
}

/// `secs` as "3d 4h", "2h 5m", "40s".
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// The longest gap between two runs of `schedule` over its next few runs
/// from `now` (`None` for `never`).
pub fn schedule_interval(schedule: &Schedule, now: &jiff::ZonedDateTime) -> Option<Duration> {
    if let Schedule::Every(d) = schedule {
        return Some(*d);
    }
    let mut t = schedule.next_run(now, now)?;
    let mut widest = Duration::ZERO;
    // Eight runs cover a weekday-only or a weekly schedule's long gap.
    for _ in 0..8 {
        let next = schedule.next_run(&t, &t)?;
        let gap = next.timestamp().as_second() - t.timestamp().as_second();
        widest = widest.max(Duration::from_secs(u64::try_from(gap).unwrap_or(0)));
        t = next;
    }
    Some(widest)
}

/// The verdict when no daemon runs for the box (all that is known then).
pub fn no_daemon() -> Health {
    let facts = Facts { daemon_running: false, buddies: vec![BuddyFacts::default()], ..Facts::default() };
    assess(&facts, &Thresholds::default())
}

/// Judges the facts.
pub fn assess(f: &Facts, t: &Thresholds) -> Health {
    let mut alerts = Vec::new();
    let mut alert = |severity, code: &str, message: String| {
        alerts.push(Alert { severity, code: code.to_string(), message });
    };
    if !f.daemon_running {
        alert(Verdict::Critical, "no_daemon", "no daemon runs for this box: nothing is backed up or shipped".into());
    }
    if let Some(interval) = f.backup_interval {
        let allowed = (interval.as_secs_f64() * t.backup_age_factor) as i64;
        match f.last_snapshot {
            Some(at) if f.now - at > allowed => alert(
                Verdict::Critical,
                "backup_overdue",
                format!(
                    "no successful backup for {} (the schedule allows {})",
                    human_duration(f.now - at),
                    human_duration(allowed)
                ),
            ),
            None if f.running_since.is_none_or(|since| f.now - since > allowed) => {
                alert(Verdict::Critical, "no_backup", "no backup has ever been made".into())
            }
            _ => {}
        }
    }
    if let Some(e) = &f.last_backup_error {
        alert(Verdict::Warning, "backup_failed", format!("the last backup failed: {e}"));
    }
    if f.buddies.is_empty() {
        alert(Verdict::Warning, "no_buddies", "no buddies: the data is on this box only".into());
    }
    let stale = t.buddy_stale.as_secs() as i64;
    for b in &f.buddies {
        if b.reachable == Some(false) {
            let why = b.last_error.as_deref().map_or(String::new(), |e| format!(": {e}"));
            alert(Verdict::Warning, "buddy_unreachable", format!("buddy {} does not answer{why}", b.addr));
        }
        if b.consecutive_failures >= t.sync_failures.max(1) {
            alert(
                Verdict::Warning,
                "sync_failures",
                format!("the last {} syncs to buddy {} failed", b.consecutive_failures, b.addr),
            );
        }
        // Only a box that has something to ship can be behind.
        if f.last_snapshot.is_some() {
            match b.last_sync {
                Some(at) if f.now - at > stale => alert(
                    Verdict::Warning,
                    "buddy_stale",
                    format!("buddy {} has not been synced for {}", b.addr, human_duration(f.now - at)),
                ),
                None if f.last_snapshot.is_some_and(|s| f.now - s > stale) => {
                    alert(Verdict::Warning, "buddy_stale", format!("buddy {} has never been synced", b.addr))
                }
                _ => {}
            }
        }
    }
    if let Some(free) = f.disk_free.filter(|&free| free < t.disk_floor) {
        alert(
            Verdict::Critical,
            "disk_low",
            format!(
                "only {} free on the box's disk (the floor is {})",
                crate::progress::human_bytes(free),
                crate::progress::human_bytes(t.disk_floor)
            ),
        );
    }
    alerts.sort_by_key(|a| std::cmp::Reverse(a.severity));
    let verdict = alerts.first().map_or(Verdict::Ok, |a| a.severity);
    Health { verdict, alerts }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn healthy() -> Facts {
        Facts {
            now: 100 * DAY,
            daemon_running: true,
            backup_interval: Some(Duration::from_secs(DAY as u64)),
            last_snapshot: Some(100 * DAY - 3600),
            running_since: Some(90 * DAY),
            last_backup_error: None,
            buddies: vec![BuddyFacts {
                addr: "nas2.lan:7467".into(),
                reachable: Some(true),
                last_sync: Some(100 * DAY - 3000),
                ..BuddyFacts::default()
            }],
            disk_free: Some(100 << 30),
        }
    }

    fn codes(f: &Facts) -> (Verdict, Vec<String>) {
        let h = assess(f, &Thresholds::default());
        (h.verdict, h.alerts.into_iter().map(|a| a.code).collect())
    }

    #[test]
    fn a_current_box_is_ok() {
        let h = assess(&healthy(), &Thresholds::default());
        assert_eq!(h, Health { verdict: Verdict::Ok, alerts: vec![] });
        assert_eq!(h.verdict.exit_code(), 0);
        assert!(h.summary().starts_with("PASTICHE OK"));
    }

    #[test]
    fn an_overdue_backup_is_critical_after_twice_the_interval() {
        let mut f = healthy();
        f.last_snapshot = Some(f.now - 2 * DAY + 60);
        assert_eq!(codes(&f).0, Verdict::Ok, "within twice the interval");
        f.last_snapshot = Some(f.now - 2 * DAY - 60);
        assert_eq!(codes(&f), (Verdict::Critical, vec!["backup_overdue".into()]));
        // Without a schedule nothing is overdue.
        f.backup_interval = None;
        assert_eq!(codes(&f).0, Verdict::Ok);
    }

    #[test]
    fn a_new_box_gets_its_grace_before_no_backup_is_an_alert() {
        let mut f = healthy();
        f.last_snapshot = None;
        f.running_since = Some(f.now - 3600);
        assert_eq!(codes(&f).0, Verdict::Ok);
        f.running_since = Some(f.now - 3 * DAY);
        assert_eq!(codes(&f), (Verdict::Critical, vec!["no_backup".into()]));
    }

    #[test]
    fn buddy_alerts() {
        let mut f = healthy();
        f.buddies[0].last_sync = Some(f.now - 3 * DAY - 60);
        assert_eq!(codes(&f), (Verdict::Warning, vec!["buddy_stale".into()]));
        f.buddies[0].last_sync = Some(f.now - 60);
        f.buddies[0].consecutive_failures = 2;
        assert_eq!(codes(&f).0, Verdict::Ok, "two failures are below the threshold");
        f.buddies[0].consecutive_failures = 3;
        f.buddies[0].reachable = Some(false);
        f.buddies[0].last_error = Some("connection refused".into());
        let (v, c) = codes(&f);
        assert_eq!((v, c), (Verdict::Warning, vec!["buddy_unreachable".to_string(), "sync_failures".to_string()]));
        f.buddies.clear();
        assert_eq!(codes(&f), (Verdict::Warning, vec!["no_buddies".into()]));
    }

    #[test]
    fn low_disk_and_no_daemon_are_critical_and_sorted_first() {
        let mut f = healthy();
        f.buddies.clear();
        f.disk_free = Some(10 << 20);
        f.daemon_running = false;
        let h = assess(&f, &Thresholds::default());
        assert_eq!(h.verdict, Verdict::Critical);
        assert_eq!(h.verdict.exit_code(), 2);
        let c: Vec<&str> = h.alerts.iter().map(|a| a.code.as_str()).collect();
        assert_eq!(c, ["no_daemon", "disk_low", "no_buddies"]);
        assert!(h.summary().contains("(and 2 more)"), "{}", h.summary());
    }

    #[test]
    fn schedule_intervals() {
        let now: jiff::ZonedDateTime = "2026-12-01T10:00:00[UTC]".parse().unwrap();
        let i = |s: &str| schedule_interval(&s.parse().unwrap(), &now).map(|d| d.as_secs());
        assert_eq!(i("never"), None);
        assert_eq!(i("every 90s"), Some(90));
        assert_eq!(i("hourly"), Some(3600));
        assert_eq!(i("daily 02:30"), Some(86_400));
        assert_eq!(i("weekly"), Some(7 * 86_400));
        // Weekdays only: the weekend gap counts.
        assert_eq!(i("0 9 * * 1-5"), Some(3 * 86_400));
    }
}
