//! When a buddy is replaced, and what the daemon remembers about it, with
//! no I/O but two small JSON files: the policy is a pure function of the
//! facts and of `now` (Unix seconds passed in, so tests inject the clock).
//!
//! A buddy is replaced when it is
//! - **silent**: neither heard on the LAN, nor held in the network overlay,
//!   nor audited successfully for `[overlay] replace_after` (14 days);
//! - **faithless**: `[overlay] replace_after_failures` audits in a row (3)
//!   failed while it answered (it lost or damaged data; an unreachable
//!   buddy is the silence rule's business, so a box switched off for a
//!   weekend is not replaced);
//! - **dropping us**: it dropped this box's data on its own (a space
//!   crisis or a decommission: its drop notice, [`crate::sync::notice`])
//!   and does not hold the full copy again yet;
//! - **no longer covering**: its measured coverage of this box's
//!   fingerprint fell below `[overlay] min_coverage`, or below half of what
//!   it was when chosen while a candidate offers at least twice as much.
//!
//! Replacing is in three steps, each recorded in `DATA/lan/replacing.json`
//! so that a restart resumes it: `replacing` (the buddy stays in the list,
//! still used for restores, while discovery or a spare brings a new one),
//! `drop pending` (once the buddies kept hold the full copy, the old one
//! left the list and is being told to drop this box's data with a signed
//! `DropAll`, retried until it answers), `dropped`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::files;
use crate::sync::BuddyEntry;

/// A retired buddy that never answers is no longer asked to drop after
/// this long (seconds): its own decommission of silent clients reclaims
/// the space (`docs/CONFIG.md`).
pub const GIVE_UP_DROP_AFTER: u64 = 90 * 86_400;
/// Records of finished replacements are kept this long (seconds), and the
/// old buddy is not chosen again meanwhile.
pub const KEEP_DONE: u64 = 86_400;

/// The thresholds of `[overlay]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Policy {
    /// Seconds of silence.
    pub silent_after: u64,
    /// Failed audits in a row.
    pub max_failures: u32,
    /// `[overlay] min_coverage` (0 to 1).
    pub min_coverage: f64,
}

/// What is known of one buddy when deciding.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts {
    /// Unix seconds of the last sign of life (LAN, overlay, audit).
    pub last_contact: u64,
    /// Failed audits since the last that passed.
    pub failures_in_a_row: u32,
    /// Whether it answered its last audit (it lost data rather than being
    /// unreachable).
    pub answered_last_audit: bool,
    /// Coverage measured lately (0 to 1), if measured.
    pub coverage_now: Option<f64>,
    /// Coverage when it was chosen, if the daemon chose it.
    pub coverage_chosen: Option<f64>,
    /// When it dropped our data on its own (its clock), while that drop is
    /// not settled (it does not hold the full copy again).
    pub dropped_at: Option<u64>,
}

/// Why a buddy is replaced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "why", rename_all = "snake_case")]
pub enum Reason {
    /// No sign of life for this many seconds.
    Silent {
        /// Seconds since the last contact.
        seconds: u64,
    },
    /// Failed audits in a row.
    FailedAudits {
        /// How many.
        failures: u32,
    },
    /// It dropped our data on its own (a drop notice).
    DroppedUs {
        /// When (Unix seconds, its clock).
        at: u64,
    },
    /// Its coverage fell.
    Coverage {
        /// Now (0 to 1).
        now: f64,
        /// When chosen (0 to 1).
        chosen: f64,
    },
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Silent { seconds } => write!(f, "silent for {}", human_seconds(*seconds)),
            Reason::FailedAudits { failures } => write!(f, "failed {failures} audits in a row"),
            Reason::DroppedUs { at } => write!(f, "dropped our data on its own (Unix time {at})"),
            Reason::Coverage { now, chosen } => {
                write!(f, "its coverage fell to {:.0}% (was {:.0}%)", now * 100.0, chosen * 100.0)
            }
        }
    }
}

/// `90s`, `15m`, `3h` or `14d`.
pub fn human_seconds(s: u64) -> String {
    match s {
        s if s >= 2 * 86_400 => format!("{}d", s / 86_400),
        s if s >= 2 * 3600 => format!("{}h", s / 3600),
        s if s >= 120 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Whether (and why) a buddy with `facts` is replaced at `now`, given the
/// best coverage a candidate that is not a buddy offers.
pub fn why_replace(facts: &Facts, policy: &Policy, best_candidate: f64, now: u64) -> Option<Reason> {
    if let Some(at) = facts.dropped_at {
        return Some(Reason::DroppedUs { at });
    }
    let silent = now.saturating_sub(facts.last_contact);
    if silent >= policy.silent_after {
        return Some(Reason::Silent { seconds: silent });
    }
    if facts.failures_in_a_row >= policy.max_failures && facts.answered_last_audit {
        return Some(Reason::FailedAudits { failures: facts.failures_in_a_row });
    }
    if let Some(now_cov) = facts.coverage_now {
        let chosen = facts.coverage_chosen.unwrap_or(0.0);
        let below_floor = policy.min_coverage > 0.0 && now_cov < policy.min_coverage;
        // Hysteresis: a small dip, or no better box around, changes nothing.
        let fell = now_cov < chosen / 2.0 && best_candidate >= 2.0 * now_cov && best_candidate - now_cov >= 0.2;
        if below_floor || fell {
            return Some(Reason::Coverage { now: now_cov, chosen });
        }
    }
    None
}

/// Where a replacement stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Still a buddy; a new one is being found and filled.
    Replacing,
    /// Out of the buddy list; told to drop this box's data until it answers.
    DropPending,
    /// It dropped the data.
    Dropped,
    /// It never answered within [`GIVE_UP_DROP_AFTER`].
    GaveUp,
}

/// One buddy being (or having been) replaced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Replacement {
    /// Its address (`HOST:PORT`).
    pub addr: String,
    /// Its pinned key (hex), so the drop goes to that box only.
    pub key: Option<String>,
    /// Why.
    pub reason: Reason,
    /// Where it stands.
    pub stage: Stage,
    /// Unix seconds the replacement began.
    pub since: u64,
    /// Unix seconds of the last change of stage.
    pub changed: u64,
    /// Drop requests tried.
    #[serde(default)]
    pub attempts: u32,
    /// Why the last drop request failed.
    #[serde(default)]
    pub last_error: Option<String>,
    /// The epoch the drop was signed for, once it was answered.
    #[serde(default)]
    pub drop_epoch: Option<u64>,
    /// The box's newest snapshot (id hex) when the replacement began: the
    /// kept buddies must hold it or a newer one.
    #[serde(default)]
    pub latest_then: Option<String>,
}

impl Replacement {
    /// Whether this record keeps its buddy from being chosen again.
    pub fn excludes(&self, now: u64) -> bool {
        match self.stage {
            Stage::Replacing | Stage::DropPending => true,
            Stage::Dropped | Stage::GaveUp => now.saturating_sub(self.changed) < KEEP_DONE,
        }
    }
}

/// Whether the buddies kept (every one in `buddies` not being replaced)
/// hold the full copy, so that the old ones may go: at least `keep` of
/// them committed a snapshot no older than the newest one when the oldest
/// replacement began (every commit carries every retained snapshot, and the
/// box may back up again meanwhile). `snapshots` are the box's retained
/// snapshots (ids hex), oldest first.
pub fn kept_hold_full_copy(
    buddies: &[BuddyEntry],
    replacing: &[Replacement],
    snapshots: &[String],
    keep: usize,
) -> bool {
    let active: Vec<&Replacement> = replacing.iter().filter(|r| r.stage == Stage::Replacing).collect();
    let position = |id: Option<&str>| id.and_then(|id| snapshots.iter().position(|s| s == id));
    // The newest snapshot at the start of the oldest replacement (one no
    // longer retained: any retained one is newer).
    let floor = active.iter().map(|r| position(r.latest_then.as_deref()).unwrap_or(0)).min().unwrap_or(0);
    let full = |b: &&BuddyEntry| match position(b.snapshot.as_deref()) {
        Some(p) => p >= floor,
        None => snapshots.is_empty(),
    };
    let leaving = |b: &BuddyEntry| active.iter().any(|r| r.addr == b.addr);
    let kept = buddies.iter().filter(|b| !leaving(b) && b.key.is_some()).filter(full).count();
    kept >= keep.max(1)
}

/// The replacements on record.
pub fn load(data: &Path) -> Result<Vec<Replacement>> {
    files::read_file(data, "replacing.json")
}

/// Saves the replacements, forgetting finished ones older than [`KEEP_DONE`].
pub fn save(data: &Path, list: &[Replacement], now: u64) -> Result<()> {
    let kept: Vec<&Replacement> = list.iter().filter(|r| r.excludes(now)).collect();
    files::write_file(data, "replacing.json", &kept)
}

/// The last sign of life of each buddy (Unix seconds), by address.
pub fn load_contact(data: &Path) -> Result<BTreeMap<String, u64>> {
    files::read_file(data, "contact.json")
}

/// Saves the last signs of life.
pub fn save_contact(data: &Path, map: &BTreeMap<String, u64>) -> Result<()> {
    files::write_file(data, "contact.json", map)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    fn policy() -> Policy {
        Policy { silent_after: 14 * DAY, max_failures: 3, min_coverage: 0.0 }
    }

    #[test]
    fn a_buddy_silent_past_the_threshold_is_replaced_on_the_injected_clock() {
        let t0 = 1_800_000_000;
        let f = Facts { last_contact: t0, ..Facts::default() };
        // The clock is a value: thirteen days later nothing happens, fourteen later it is replaced.
        assert_eq!(why_replace(&f, &policy(), 0.0, t0 + 13 * DAY), None);
        assert_eq!(why_replace(&f, &policy(), 0.0, t0 + 14 * DAY), Some(Reason::Silent { seconds: 14 * DAY }));
        let short = Policy { silent_after: 30, ..policy() };
        assert_eq!(why_replace(&f, &short, 0.0, t0 + 29), None);
        assert!(matches!(why_replace(&f, &short, 0.0, t0 + 31), Some(Reason::Silent { seconds: 31 })));
        // A clock that went back is no silence.
        assert_eq!(why_replace(&f, &short, 0.0, t0 - 100), None);
    }

    #[test]
    fn repeated_failed_audits_replace_a_buddy_that_answers_but_not_one_that_is_switched_off() {
        let now = 1_800_000_000;
        let mut f = Facts { last_contact: now, failures_in_a_row: 2, answered_last_audit: true, ..Facts::default() };
        assert_eq!(why_replace(&f, &policy(), 0.0, now), None, "two failures are not enough");
        f.failures_in_a_row = 3;
        assert_eq!(why_replace(&f, &policy(), 0.0, now), Some(Reason::FailedAudits { failures: 3 }));
        f.answered_last_audit = false;
        assert_eq!(why_replace(&f, &policy(), 0.0, now), None, "unreachable: the silence rule decides");
    }

    #[test]
    fn a_buddy_that_dropped_us_is_replaced_until_the_drop_is_settled() {
        let now = 1_800_000_000;
        let f = Facts { last_contact: now, dropped_at: Some(now - 5), ..Facts::default() };
        assert_eq!(why_replace(&f, &policy(), 0.0, now), Some(Reason::DroppedUs { at: now - 5 }));
        let settled = Facts { dropped_at: None, ..f };
        assert_eq!(why_replace(&settled, &policy(), 0.0, now), None);
    }

    #[test]
    fn falling_coverage_replaces_only_with_a_better_candidate_or_below_the_floor() {
        let now = 1_800_000_000;
        let f = Facts { last_contact: now, coverage_now: Some(0.2), coverage_chosen: Some(0.9), ..Facts::default() };
        assert_eq!(why_replace(&f, &policy(), 0.3, now), None, "nobody much better around");
        assert_eq!(why_replace(&f, &policy(), 0.8, now), Some(Reason::Coverage { now: 0.2, chosen: 0.9 }));
        let dip = Facts { coverage_now: Some(0.6), ..f.clone() };
        assert_eq!(why_replace(&dip, &policy(), 1.0, now), None, "a dip is not a fall");
        let floor = Policy { min_coverage: 0.5, ..policy() };
        assert_eq!(why_replace(&dip, &floor, 0.0, now), None, "above the floor");
        assert!(matches!(why_replace(&f, &floor, 0.0, now), Some(Reason::Coverage { .. })));
        let unmeasured = Facts { coverage_now: None, ..f };
        assert_eq!(why_replace(&unmeasured, &floor, 1.0, now), None);
    }

    #[test]
    fn the_old_buddy_goes_only_once_the_kept_ones_hold_the_full_copy() {
        let entry = |addr: &str, snap: Option<&str>| BuddyEntry {
            addr: addr.into(),
            key: Some("k".into()),
            epoch: 1,
            snapshot: snap.map(String::from),
        };
        let leaving = Replacement {
            addr: "old:1".into(),
            key: Some("k".into()),
            reason: Reason::Silent { seconds: 99 },
            stage: Stage::Replacing,
            since: 0,
            changed: 0,
            attempts: 0,
            last_error: None,
            drop_epoch: None,
            latest_then: Some("s2".into()),
        };
        let r = std::slice::from_ref(&leaving);
        let snaps: Vec<String> = ["s1", "s2", "s3"].map(String::from).to_vec();
        let list = [entry("old:1", Some("s2")), entry("kept:1", Some("s2")), entry("new:1", Some("s1"))];
        assert!(!kept_hold_full_copy(&list, r, &snaps, 2), "the new one has an older snapshot");
        let list = [entry("old:1", Some("s2")), entry("kept:1", Some("s3")), entry("new:1", None)];
        assert!(!kept_hold_full_copy(&list, r, &snaps, 2), "the new one has nothing yet");
        let list = [entry("old:1", Some("s2")), entry("kept:1", Some("s2")), entry("new:1", Some("s3"))];
        assert!(kept_hold_full_copy(&list, r, &snaps, 2), "a backup since the start does not hold it up");
        assert!(!kept_hold_full_copy(&list[..2], r, &snaps, 2), "the old one does not count");
        assert!(
            kept_hold_full_copy(&[entry("new:1", None)], &[], &[], 1),
            "a box with no snapshot has nothing to copy"
        );
        assert!(leaving.excludes(0));
        let done = Replacement { stage: Stage::Dropped, changed: 10, ..leaving };
        assert!(done.excludes(10 + KEEP_DONE - 1) && !done.excludes(10 + KEEP_DONE));
    }
}
