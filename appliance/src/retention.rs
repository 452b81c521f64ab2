//! Snapshot retention: which snapshots a `forget` policy keeps.
//!
//! The rules are restic's `forget --keep-*` rules, applied to one group of
//! snapshots (the caller does the grouping, by host and paths or otherwise):
//!
//! * Snapshots are sorted newest first. Equal timestamps are ordered by id
//!   (ascending), so the result never depends on the order of the input.
//! * `last` N keeps the N newest snapshots.
//! * `hourly`, `daily`, `weekly`, `monthly` and `yearly` N each walk the
//!   snapshots newest to oldest and keep a snapshot whenever its calendar
//!   bucket (hour, day, ISO 8601 week, month, year) differs from the bucket
//!   of the snapshot that rule kept last, until the rule has kept N
//!   snapshots. So each rule keeps the newest snapshot of each of the N most
//!   recent buckets *that have snapshots*; empty hours, days, ... are not
//!   counted.
//! * If a rule still has count left when it reaches the oldest snapshot, the
//!   oldest snapshot is kept too, even if its bucket already has a kept
//!   snapshot; the reason then reads `oldest daily snapshot` (and so on).
//!   This keeps the longest history the policy allows (restic 0.17+).
//! * `within` D keeps every snapshot strictly newer than `latest - D`, where
//!   `latest` is the newest snapshot that is not in the future. Snapshots in
//!   the future are therefore always kept by `within`. Unlike restic, D is an
//!   exact length of time (`30d` is 30 × 24 hours), not a calendar span.
//! * A snapshot is kept if any rule keeps it; its reasons list every rule
//!   that did, in the order `within`, `last`, `hourly`, `daily`, `weekly`,
//!   `monthly`, `yearly`.
//! * An empty policy (see [`KeepPolicy::is_empty`]) keeps everything, with
//!   the reason `policy is empty`. Callers should refuse an empty policy
//!   rather than rely on that.
//! * A count of [`KeepPolicy::UNLIMITED`] keeps one snapshot per bucket
//!   forever (restic's `--keep-daily unlimited`).
//!
//! Calendar buckets are computed in **UTC**, not local time (restic uses the
//! time zone each snapshot was taken in), so that a policy gives the same
//! answer on every machine whatever its `TZ`. Weeks run Monday 00:00 to
//! Sunday 23:59:59 UTC and belong to their ISO week-numbering year, so
//! 2021-01-03 is in week 53 of 2020.
//!
//! Timestamps are `i64` nanoseconds since the Unix epoch (negative before
//! 1970), which covers 1677-09-21 to 2262-04-11.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jiff::civil;
use jiff::tz::TimeZone;

/// Nanoseconds in one second.
const NANOS_PER_SEC: i64 = 1_000_000_000;
/// Seconds in one day.
const SECS_PER_DAY: i64 = 86_400;

/// How many snapshots of each kind to keep; `None` or `Some(0)` means the
/// rule is off. The semantics are restic's, see the [module docs](self).
///
/// It is the `[keep]` table of the daemon's configuration file and travels
/// in control-socket requests, so it (de)serializes; `within` is not part of
/// either yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeepPolicy {
    /// Keep the N newest snapshots (`--keep-last`).
    pub last: Option<u32>,
    /// Keep the newest snapshot of each of the N newest hours that have one.
    pub hourly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest days that have one.
    pub daily: Option<u32>,
    /// Keep the newest snapshot of each of the N newest ISO weeks that have
    /// one.
    pub weekly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest months that have one.
    pub monthly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest years that have one.
    pub yearly: Option<u32>,
    /// Keep every snapshot taken less than this long before the newest
    /// snapshot that is not in the future (`--keep-within`).
    #[serde(skip)]
    pub within: Option<Duration>,
}

impl KeepPolicy {
    /// A count meaning "no limit": keep one snapshot per bucket, however many
    /// buckets there are.
    pub const UNLIMITED: u32 = u32::MAX;

    /// Whether no rule is set: every count is `None` or zero and `within` is
    /// `None` or zero. [`apply`] keeps every snapshot under such a policy.
    pub fn is_empty(&self) -> bool {
        self.counts().iter().all(|(n, _)| n.unwrap_or(0) == 0) && self.within.is_none_or(|d| d.is_zero())
    }

    /// The counted rules, in evaluation order, with their names.
    fn counts(&self) -> [(Option<u32>, Rule); 6] {
        [
            (self.last, Rule::Last),
            (self.hourly, Rule::Hourly),
            (self.daily, Rule::Daily),
            (self.weekly, Rule::Weekly),
            (self.monthly, Rule::Monthly),
            (self.yearly, Rule::Yearly),
        ]
    }
}

impl fmt::Display for KeepPolicy {
    /// Describes the policy like restic does, e.g. `keep 3 latest, 7 daily,
    /// all monthly snapshots and all snapshots within 2d of the newest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("keep all snapshots (empty policy)");
        }
        let counts: Vec<String> = self
            .counts()
            .iter()
            .filter_map(|&(n, rule)| match n {
                None | Some(0) => None,
                Some(Self::UNLIMITED) => Some(format!("all {}", rule.adjective())),
                Some(n) => Some(format!("{n} {}", rule.adjective())),
            })
            .collect();
        f.write_str("keep ")?;
        if !counts.is_empty() {
            write!(f, "{} snapshots", counts.join(", "))?;
        }
        if let Some(d) = self.within.filter(|d| !d.is_zero()) {
            if !counts.is_empty() {
                f.write_str(" and ")?;
            }
            write!(f, "all snapshots within {} of the newest", format_span(d))?;
        }
        Ok(())
    }
}

/// A snapshot as the policy sees it: its id and when it was taken.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SnapshotRef {
    /// The snapshot's id, passed through to its [`Decision`] untouched.
    pub id: String,
    /// When the snapshot was taken, in nanoseconds since the Unix epoch (UTC,
    /// negative before 1970).
    pub time_unix_nanos: i64,
}

impl SnapshotRef {
    /// A snapshot taken `time_unix_nanos` nanoseconds after the Unix epoch.
    pub fn new(id: impl Into<String>, time_unix_nanos: i64) -> Self {
        Self { id: id.into(), time_unix_nanos }
    }

    /// A snapshot taken at `time` (clamped to the representable range).
    pub fn from_system_time(id: impl Into<String>, time: SystemTime) -> Self {
        Self::new(id, system_time_to_unix_nanos(time))
    }
}

/// What the policy decided for one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The snapshot's id.
    pub id: String,
    /// The snapshot's time, copied from its [`SnapshotRef`].
    pub time_unix_nanos: i64,
    /// Whether to keep it; `false` means forget it.
    pub keep: bool,
    /// Why it is kept, e.g. `["last snapshot", "daily snapshot"]`; empty when
    /// it is not.
    pub reasons: Vec<String>,
}

/// Applies `policy` to `snapshots` and returns one decision per snapshot,
/// newest first (see the [module docs](self) for the order of ties).
///
/// `within` is measured from the newest snapshot that is not later than the
/// system clock; use [`apply_at`] to pin "now".
pub fn apply(policy: &KeepPolicy, snapshots: &[SnapshotRef]) -> Vec<Decision> {
    apply_at(policy, snapshots, system_time_to_unix_nanos(SystemTime::now()))
}

/// Like [`apply`], with the current time given as `now_unix_nanos`. Only the
/// `within` rule depends on it: snapshots later than `now` are never taken as
/// the newest snapshot that `within` is measured from.
pub fn apply_at(policy: &KeepPolicy, snapshots: &[SnapshotRef], now_unix_nanos: i64) -> Vec<Decision> {
    let mut sorted: Vec<&SnapshotRef> = snapshots.iter().collect();
    sorted.sort_by(|a, b| b.time_unix_nanos.cmp(&a.time_unix_nanos).then_with(|| a.id.cmp(&b.id)));

    if policy.is_empty() {
        return sorted.into_iter().map(|s| decision(s, vec!["policy is empty".to_string()])).collect();
    }

    // Snapshots newer than this are kept by `within`. With no snapshot in the
    // past, restic measures from the zero time, which keeps everything.
    let within = policy.within.filter(|d| !d.is_zero()).map(|d| {
        let latest = sorted.iter().map(|s| s.time_unix_nanos).find(|&t| t < now_unix_nanos);
        let threshold = latest.map_or(i64::MIN, |l| l.saturating_sub(duration_to_nanos_saturating(d)));
        (threshold, format!("within {}", format_span(d)))
    });

    let mut rules: Vec<RuleState> = policy
        .counts()
        .iter()
        .filter_map(|&(n, rule)| match n {
            None | Some(0) => None,
            Some(n) => Some(RuleState { rule, remaining: n, last_bucket: None }),
        })
        .collect();

    let oldest = sorted.len().saturating_sub(1);
    let mut out = Vec::with_capacity(sorted.len());
    for (nr, snap) in sorted.into_iter().enumerate() {
        let mut reasons = Vec::new();
        if let Some((threshold, reason)) = &within {
            if snap.time_unix_nanos > *threshold {
                reasons.push(reason.clone());
            }
        }
        let when = UtcDateTime::from_unix_nanos(snap.time_unix_nanos);
        for state in rules.iter_mut().filter(|s| s.remaining > 0) {
            let bucket = state.rule.bucket(&when, nr);
            let same_bucket = state.last_bucket == Some(bucket);
            if !same_bucket || nr == oldest {
                if same_bucket {
                    reasons.push(format!("oldest {}", state.rule.reason()));
                } else {
                    reasons.push(state.rule.reason().to_string());
                }
                state.last_bucket = Some(bucket);
                if state.remaining != KeepPolicy::UNLIMITED {
                    state.remaining -= 1;
                }
            }
        }
        out.push(decision(snap, reasons));
    }
    out
}

fn decision(snap: &SnapshotRef, reasons: Vec<String>) -> Decision {
    Decision { id: snap.id.clone(), time_unix_nanos: snap.time_unix_nanos, keep: !reasons.is_empty(), reasons }
}

/// One counted rule of a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Rule {
    /// The bucket of a snapshot: equal buckets share one kept snapshot.
    fn bucket(self, t: &UtcDateTime, nr: usize) -> i64 {
        let (y, m, d, h) = (t.year, i64::from(t.month), i64::from(t.day), i64::from(t.hour));
        match self {
            Rule::Last => nr as i64,
            Rule::Hourly => ((y * 100 + m) * 100 + d) * 100 + h,
            Rule::Daily => (y * 100 + m) * 100 + d,
            Rule::Weekly => {
                let (wy, w) = t.iso_week();
                wy * 100 + i64::from(w)
            }
            Rule::Monthly => y * 100 + m,
            Rule::Yearly => y,
        }
    }

    /// The reason given for a snapshot this rule keeps.
    fn reason(self) -> &'static str {
        match self {
            Rule::Last => "last snapshot",
            Rule::Hourly => "hourly snapshot",
            Rule::Daily => "daily snapshot",
            Rule::Weekly => "weekly snapshot",
            Rule::Monthly => "monthly snapshot",
            Rule::Yearly => "yearly snapshot",
        }
    }

    /// The word used when describing a policy.
    fn adjective(self) -> &'static str {
        match self {
            Rule::Last => "latest",
            Rule::Hourly => "hourly",
            Rule::Daily => "daily",
            Rule::Weekly => "weekly",
            Rule::Monthly => "monthly",
            Rule::Yearly => "yearly",
        }
    }
}

/// A counted rule while the snapshots are walked.
struct RuleState {
    rule: Rule,
    /// Snapshots this rule may still keep ([`KeepPolicy::UNLIMITED`]: any).
    remaining: u32,
    /// The bucket of the snapshot this rule kept last.
    last_bucket: Option<i64>,
}

/// A timestamp broken down into the proleptic Gregorian calendar, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UtcDateTime {
    /// The year, e.g. 2024.
    pub year: i64,
    /// The month, 1 to 12.
    pub month: u32,
    /// The day of the month, 1 to 31.
    pub day: u32,
    /// The hour, 0 to 23.
    pub hour: u32,
    /// The minute, 0 to 59.
    pub minute: u32,
    /// The second, 0 to 59.
    pub second: u32,
    /// Nanoseconds into the second, 0 to 999,999,999.
    pub nanos: u32,
}

impl UtcDateTime {
    /// The calendar date and time `unix_nanos` nanoseconds after the epoch.
    pub fn from_unix_nanos(unix_nanos: i64) -> Self {
        let secs = unix_nanos.div_euclid(NANOS_PER_SEC);
        let nanos = unix_nanos.rem_euclid(NANOS_PER_SEC) as u32;
        let days = secs.div_euclid(SECS_PER_DAY);
        let sod = secs.rem_euclid(SECS_PER_DAY) as u32;
        let (year, month, day) = civil_from_days(days);
        Self { year, month, day, hour: sod / 3600, minute: sod / 60 % 60, second: sod % 60, nanos }
    }

    /// Nanoseconds since the epoch, or `None` outside the `i64` range or if a
    /// field is out of its range (a day past the end of its month is allowed
    /// and rolls over into the next month).
    pub fn to_unix_nanos(&self) -> Option<i64> {
        if !(-9999..=9999).contains(&self.year)
            || !(1..=12).contains(&self.month)
            || !(1..=31).contains(&self.day)
            || self.hour > 23
            || self.minute > 59
            || self.second > 59
            || i64::from(self.nanos) >= NANOS_PER_SEC
        {
            return None;
        }
        let days = i128::from(days_from_civil(self.year, self.month, self.day));
        let secs = i128::from(self.hour * 3600 + self.minute * 60 + self.second);
        let nanos = (days * i128::from(SECS_PER_DAY) + secs) * i128::from(NANOS_PER_SEC) + i128::from(self.nanos);
        i64::try_from(nanos).ok()
    }

    /// The ISO 8601 weekday, 1 (Monday) to 7 (Sunday).
    pub fn iso_weekday(&self) -> u32 {
        weekday_from_days(days_from_civil(self.year, self.month, self.day))
    }

    /// The ISO 8601 week-numbering year and week (1 to 53). Days near New
    /// Year may belong to a week of the neighbouring year: the week is the
    /// one whose Thursday falls in the week-numbering year.
    pub fn iso_week(&self) -> (i64, u32) {
        let w = date_of_day(days_from_civil(self.year, self.month, self.day)).iso_week_date();
        (i64::from(w.year()), w.week() as u32)
    }
}

impl fmt::Display for UtcDateTime {
    /// `YYYY-MM-DD HH:MM:SS`, as restic lists snapshots (always UTC here).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (jiff's
/// calendar; every day an `i64` of nanoseconds reaches is in its range).
fn date_of_day(days: i64) -> civil::Date {
    let ts = jiff::Timestamp::from_second(days * SECS_PER_DAY).expect("a day within jiff's years -9999 to 9999");
    TimeZone::UTC.to_datetime(ts).date()
}

/// Days since 1970-01-01 of a date; a day past the end of its month rolls
/// over into the next month. Years must be within -9999 to 9999.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let first = i16::try_from(year)
        .ok()
        .and_then(|y| civil::Date::new(y, month as i8, 1).ok())
        .expect("a year within -9999 to 9999 and a month within 1 to 12");
    let ts = TimeZone::UTC.to_timestamp(first.at(0, 0, 0, 0)).expect("a representable instant");
    ts.as_second().div_euclid(SECS_PER_DAY) + i64::from(day) - 1
}

/// The proleptic Gregorian date of a day counted from 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let d = date_of_day(days);
    (i64::from(d.year()), d.month() as u32, d.day() as u32)
}

/// ISO weekday (1 = Monday ... 7 = Sunday) of a day counted from 1970-01-01.
fn weekday_from_days(days: i64) -> u32 {
    date_of_day(days).weekday().to_monday_one_offset() as u32
}

fn system_time_to_unix_nanos(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => duration_to_nanos_saturating(after),
        Err(before) => duration_to_nanos_saturating(before.duration()).saturating_neg(),
    }
}

fn duration_to_nanos_saturating(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// A compact span like restic's durations: `7d`, `1d12h`, `90m` is `1h30m`,
/// seconds only when present, e.g. `2h0m5s` is written `2h5s`.
fn format_span(d: Duration) -> String {
    let total = d.as_secs();
    if total == 0 {
        return format!("{d:?}");
    }
    let parts = [(total / 86_400, "d"), (total / 3600 % 24, "h"), (total / 60 % 60, "m"), (total % 60, "s")];
    let mut s = String::new();
    for (n, unit) in parts {
        if n > 0 {
            s.push_str(&format!("{n}{unit}"));
        }
    }
    if d.subsec_nanos() > 0 {
        s.push_str(&format!("+{:?}", Duration::from_nanos(d.subsec_nanos().into())));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3600 * NANOS_PER_SEC;
    const DAY: i64 = 24 * HOUR;

    /// Nanoseconds since the epoch of a UTC date and time.
    fn ts(year: i64, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> i64 {
        UtcDateTime { year, month, day, hour, minute, second, nanos: 0 }.to_unix_nanos().expect("valid test date")
    }

    /// `ts` for a `YYYY-MM-DD HH:MM:SS` string.
    fn at(s: &str) -> i64 {
        let n: Vec<u32> = s.split(['-', ' ', ':']).map(|p| p.parse().unwrap()).collect();
        ts(n[0].into(), n[1], n[2], n[3], n[4], n[5])
    }

    /// Snapshots named by their own timestamps, so results read easily.
    fn snaps(times: &[&str]) -> Vec<SnapshotRef> {
        times.iter().map(|t| SnapshotRef::new(*t, at(t))).collect()
    }

    fn kept(decisions: &[Decision]) -> Vec<&str> {
        decisions.iter().filter(|d| d.keep).map(|d| d.id.as_str()).collect()
    }

    fn reasons_of<'a>(decisions: &'a [Decision], id: &str) -> Vec<&'a str> {
        decisions
            .iter()
            .find(|d| d.id == id)
            .unwrap_or_else(|| panic!("no decision for {id}"))
            .reasons
            .iter()
            .map(String::as_str)
            .collect()
    }

    fn run(policy: &KeepPolicy, s: &[SnapshotRef]) -> Vec<Decision> {
        apply_at(policy, s, i64::MAX)
    }

    // ---- calendar ---------------------------------------------------------

    #[test]
    fn utc_breakdown_of_known_instants() {
        let d = UtcDateTime::from_unix_nanos(0);
        assert_eq!(d.to_string(), "1970-01-01 00:00:00");
        assert_eq!(UtcDateTime::from_unix_nanos(951_782_400 * NANOS_PER_SEC).to_string(), "2000-02-29 00:00:00");
        assert_eq!(UtcDateTime::from_unix_nanos(1_700_000_000 * NANOS_PER_SEC).to_string(), "2023-11-14 22:13:20");
        let before = UtcDateTime::from_unix_nanos(-1);
        assert_eq!(before.to_string(), "1969-12-31 23:59:59");
        assert_eq!(before.nanos, 999_999_999);
        assert_eq!(UtcDateTime::from_unix_nanos(i64::MIN).to_string(), "1677-09-21 00:12:43");
        assert_eq!(UtcDateTime::from_unix_nanos(i64::MAX).to_string(), "2262-04-11 23:47:16");
    }

    #[test]
    fn civil_days_round_trip_over_six_centuries() {
        let mut prev = civil_from_days(-150_000);
        for days in -149_999..150_000 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            // Consecutive days: next day of month, or the 1st of the next month.
            let (py, pm, pd) = prev;
            assert!(
                (y, m, d) == (py, pm, pd + 1) || (d == 1 && ((y, m) == (py, pm + 1) || (y, m, pm) == (py + 1, 1, 12))),
                "{prev:?} -> {:?}",
                (y, m, d)
            );
            prev = (y, m, d);
        }
    }

    #[test]
    fn to_unix_nanos_round_trips_and_rejects_bad_fields() {
        for t in [0, -1, 1, i64::MIN, i64::MAX, 1_234_567_890_123_456_789] {
            assert_eq!(UtcDateTime::from_unix_nanos(t).to_unix_nanos(), Some(t));
        }
        let ok = UtcDateTime::from_unix_nanos(0);
        assert_eq!(UtcDateTime { month: 13, ..ok }.to_unix_nanos(), None);
        assert_eq!(UtcDateTime { hour: 24, ..ok }.to_unix_nanos(), None);
        assert_eq!(UtcDateTime { year: 3000, ..ok }.to_unix_nanos(), None);
    }

    #[test]
    fn iso_weeks_around_new_year() {
        let cases = [
            ("2020-12-27", 2020, 52, 7),
            ("2020-12-28", 2020, 53, 1),
            ("2020-12-31", 2020, 53, 4),
            ("2021-01-01", 2020, 53, 5),
            ("2021-01-03", 2020, 53, 7),
            ("2021-01-04", 2021, 1, 1),
            ("2008-12-29", 2009, 1, 1),
            ("2005-01-01", 2004, 53, 6),
            ("2010-01-03", 2009, 53, 7),
            ("2015-12-31", 2015, 53, 4),
            ("2026-12-31", 2026, 53, 4),
            ("2027-01-01", 2026, 53, 5),
            ("1969-12-29", 1970, 1, 1),
            ("1970-01-01", 1970, 1, 4),
            ("2024-12-30", 2025, 1, 1),
        ];
        for (date, year, week, weekday) in cases {
            let t = UtcDateTime::from_unix_nanos(at(&format!("{date} 12:00:00")));
            assert_eq!(t.iso_week(), (year, week), "{date}");
            assert_eq!(t.iso_weekday(), weekday, "{date}");
        }
    }

    #[test]
    fn iso_weeks_advance_only_on_mondays() {
        let mut prev = UtcDateTime::from_unix_nanos(at("1899-12-31 00:00:00")).iso_week();
        let start = days_from_civil(1900, 1, 1);
        for days in start..start + 300 * 366 {
            let t = UtcDateTime::from_unix_nanos(days * DAY);
            let week = t.iso_week();
            assert!((1..=53).contains(&week.1));
            if t.iso_weekday() == 1 {
                assert!(week == (prev.0, prev.1 + 1) || week == (prev.0 + 1, 1), "{t}");
            } else {
                assert_eq!(week, prev, "{t}");
            }
            prev = week;
        }
    }

    // ---- policy -----------------------------------------------------------

    #[test]
    fn empty_policy_keeps_everything() {
        let zeros = KeepPolicy { last: Some(0), daily: Some(0), within: Some(Duration::ZERO), ..KeepPolicy::default() };
        for policy in [KeepPolicy::default(), zeros] {
            assert!(policy.is_empty());
            let s = snaps(&["2024-01-01 00:00:00", "2024-01-01 00:00:00"]);
            let d = run(&policy, &s);
            assert_eq!(d.len(), 2);
            assert!(d.iter().all(|d| d.keep && d.reasons == ["policy is empty"]));
        }
        assert!(!KeepPolicy { within: Some(Duration::from_secs(1)), ..KeepPolicy::default() }.is_empty());
        assert!(!KeepPolicy { yearly: Some(1), ..KeepPolicy::default() }.is_empty());
    }

    #[test]
    fn no_snapshots_no_decisions() {
        let policy = KeepPolicy { last: Some(3), ..KeepPolicy::default() };
        assert!(run(&policy, &[]).is_empty());
    }

    /// restic's documentation: a backup every Sunday for 12 weeks, and
    /// `--keep-daily 4` keeps the last four.
    #[test]
    fn restic_doc_twelve_sundays_keep_daily_4() {
        let s = snaps(&[
            "2019-09-01 11:00:00",
            "2019-09-08 11:00:00",
            "2019-09-15 11:00:00",
            "2019-09-22 11:00:00",
            "2019-09-29 11:00:00",
            "2019-10-06 11:00:00",
            "2019-10-13 11:00:00",
            "2019-10-20 11:00:00",
            "2019-10-27 11:00:00",
            "2019-11-03 11:00:00",
            "2019-11-10 11:00:00",
            "2019-11-17 11:00:00",
        ]);
        let policy = KeepPolicy { daily: Some(4), ..KeepPolicy::default() };
        let d = run(&policy, &s);
        assert_eq!(
            kept(&d),
            ["2019-11-17 11:00:00", "2019-11-10 11:00:00", "2019-11-03 11:00:00", "2019-10-27 11:00:00"]
        );
        assert!(d.iter().filter(|d| d.keep).all(|d| d.reasons == ["daily snapshot"]));
        assert_eq!(d.iter().filter(|d| !d.keep).count(), 8);
        assert!(d.iter().filter(|d| !d.keep).all(|d| d.reasons.is_empty()));
    }

    /// restic's documentation: a backup every day for 100 years and
    /// `--keep-daily 7 --keep-weekly 5 --keep-monthly 12 --keep-yearly 75`.
    /// Crosses 1970, so it also covers negative timestamps.
    #[test]
    fn restic_doc_hundred_years_of_dailies() {
        let first = days_from_civil(1925, 1, 1);
        let last = days_from_civil(2024, 12, 31) + 2; // ends on 2025-01-02, a Thursday
        let s: Vec<SnapshotRef> =
            (first..=last).map(|day| SnapshotRef::new(day.to_string(), day * DAY + 20 * HOUR)).collect();
        let policy = KeepPolicy {
            daily: Some(7),
            weekly: Some(5),
            monthly: Some(12),
            yearly: Some(75),
            ..KeepPolicy::default()
        };
        let d = run(&policy, &s);
        let with = |reason: &str| -> Vec<UtcDateTime> {
            d.iter()
                .filter(|d| d.reasons.iter().any(|r| r == reason))
                .map(|d| UtcDateTime::from_unix_nanos(d.time_unix_nanos))
                .collect()
        };
        // The seven newest days.
        let daily = with("daily snapshot");
        assert_eq!(daily.len(), 7);
        assert_eq!(daily[0].to_string(), "2025-01-02 20:00:00");
        assert_eq!(daily[6].to_string(), "2024-12-27 20:00:00");
        // The newest of this week, then four Sundays.
        let weekly = with("weekly snapshot");
        assert_eq!(weekly.len(), 5);
        assert_eq!(weekly[0].to_string(), "2025-01-02 20:00:00");
        assert!(weekly[1..].iter().all(|t| t.iso_weekday() == 7));
        assert_eq!(weekly[4].to_string(), "2024-12-08 20:00:00");
        // The newest of this month, then the last days of 11 months.
        let monthly = with("monthly snapshot");
        assert_eq!(monthly.len(), 12);
        assert!(monthly[1..].iter().all(|t| UtcDateTime::from_unix_nanos(t.to_unix_nanos().unwrap() + DAY).day == 1));
        assert_eq!(monthly[11].to_string(), "2024-02-29 20:00:00");
        // The newest of this year, then 74 New Year's Eves.
        let yearly = with("yearly snapshot");
        assert_eq!(yearly.len(), 75);
        assert!(yearly[1..].iter().all(|t| (t.month, t.day) == (12, 31)));
        assert_eq!(yearly[74].to_string(), "1951-12-31 20:00:00");
        // 7 dailies (which hold two weeklies: 2025-01-02 and 2024-12-29) + 3
        // more Sundays + 10 more month ends (2024-12-31 is a daily) + 73 more
        // year ends (2024-12-31 again).
        assert_eq!(kept(&d).len(), 7 + 3 + 10 + 73);
        assert!(d.iter().all(|d| d.keep != d.reasons.is_empty()));
    }

    #[test]
    fn keep_last_counts_snapshots_not_times() {
        let s = vec![
            SnapshotRef::new("b", at("2024-03-01 10:00:00")),
            SnapshotRef::new("a", at("2024-03-01 10:00:00")),
            SnapshotRef::new("c", at("2024-03-01 10:00:00")),
            SnapshotRef::new("old", at("2024-02-01 10:00:00")),
            SnapshotRef::new("new", at("2024-03-02 10:00:00")),
        ];
        let policy = KeepPolicy { last: Some(3), ..KeepPolicy::default() };
        let d = run(&policy, &s);
        // Newest first; the tie at 10:00 is ordered by id.
        let order: Vec<&str> = d.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(order, ["new", "a", "b", "c", "old"]);
        assert_eq!(kept(&d), ["new", "a", "b"]);
        assert!(d[..3].iter().all(|d| d.reasons == ["last snapshot"]));
    }

    #[test]
    fn keep_last_beyond_the_count_keeps_all_without_oldest_reason() {
        let s = snaps(&["2024-01-01 00:00:00", "2024-01-01 00:00:00", "2024-01-02 00:00:00"]);
        let policy = KeepPolicy { last: Some(10), ..KeepPolicy::default() };
        let d = run(&policy, &s);
        assert!(d.iter().all(|d| d.keep && d.reasons == ["last snapshot"]));
    }

    #[test]
    fn ties_do_not_depend_on_input_order() {
        let mut s =
            snaps(&["2024-05-01 08:00:00", "2024-05-01 09:00:00", "2024-05-02 09:00:00", "2024-05-03 07:00:00"]);
        s.push(SnapshotRef::new("twin", at("2024-05-02 09:00:00")));
        s.push(SnapshotRef::new("0-twin", at("2024-05-03 07:00:00")));
        let policy = KeepPolicy { last: Some(1), daily: Some(2), hourly: Some(3), ..KeepPolicy::default() };
        let expected = run(&policy, &s);
        assert_eq!(kept(&expected), ["0-twin", "2024-05-02 09:00:00", "2024-05-01 09:00:00"]);
        for rotation in 1..s.len() {
            s.rotate_left(1);
            let mut reversed = s.clone();
            reversed.reverse();
            assert_eq!(run(&policy, &s), expected, "rotation {rotation}");
            assert_eq!(run(&policy, &reversed), expected, "rotation {rotation}");
        }
    }

    #[test]
    fn hourly_keeps_newest_of_each_hour_across_midnight() {
        let s = snaps(&[
            "2023-12-31 22:05:00",
            "2023-12-31 22:55:00",
            "2023-12-31 23:00:00",
            "2023-12-31 23:59:59",
            "2024-01-01 00:00:00",
            "2024-01-01 00:30:00",
            "2024-01-01 02:10:00",
        ]);
        let policy = KeepPolicy { hourly: Some(4), ..KeepPolicy::default() };
        let d = run(&policy, &s);
        // Hours with snapshots: 02, 00, 23, 22; the empty 01 is not counted.
        assert_eq!(
            kept(&d),
            ["2024-01-01 02:10:00", "2024-01-01 00:30:00", "2023-12-31 23:59:59", "2023-12-31 22:55:00"]
        );
        // With count to spare, the oldest snapshot is kept too.
        let policy = KeepPolicy { hourly: Some(5), ..KeepPolicy::default() };
        let d = run(&policy, &s);
        assert_eq!(kept(&d).len(), 5);
        assert_eq!(reasons_of(&d, "2023-12-31 22:05:00"), ["oldest hourly snapshot"]);
    }

    #[test]
    fn daily_with_several_snapshots_a_day_over_months() {
        // Every 6 hours from 2023-11-01 to 2024-02-29 (4 a day, 121 days).
        let start = at("2023-11-01 03:00:00");
        let s: Vec<SnapshotRef> = (0..121 * 4)
            .map(|i| {
                let t = start + i * 6 * HOUR;
                SnapshotRef::new(UtcDateTime::from_unix_nanos(t).to_string(), t)
            })
            .collect();
        let policy = KeepPolicy { daily: Some(10), monthly: Some(3), ..KeepPolicy::default() };
        let d = run(&policy, &s);
        assert_eq!(d.len(), 484);
        let daily: Vec<&str> =
            d.iter().filter(|d| d.reasons.iter().any(|r| r == "daily snapshot")).map(|d| d.id.as_str()).collect();
        assert_eq!(daily.len(), 10);
        assert!(daily.iter().all(|id| id.ends_with(" 21:00:00")));
        assert_eq!(daily[0], "2024-02-29 21:00:00");
        assert_eq!(daily[9], "2024-02-20 21:00:00");
        assert_eq!(reasons_of(&d, "2024-02-29 21:00:00"), ["daily snapshot", "monthly snapshot"]);
        assert_eq!(reasons_of(&d, "2024-01-31 21:00:00"), ["monthly snapshot"]);
        assert_eq!(reasons_of(&d, "2023-12-31 21:00:00"), ["monthly snapshot"]);
        assert_eq!(kept(&d).len(), 12);
        assert!(reasons_of(&d, "2024-02-29 15:00:00").is_empty());
    }

    #[test]
    fn weekly_uses_iso_weeks_across_the_year_boundary() {
        let s = snaps(&[
            "2020-12-20 12:00:00", // 2020-W51 (Sunday)
            "2020-12-27 12:00:00", // 2020-W52 (Sunday)
            "2020-12-28 12:00:00", // 2020-W53 (Monday)
            "2021-01-03 12:00:00", // 2020-W53 (Sunday)
            "2021-01-04 12:00:00", // 2021-W01 (Monday)
        ]);
        let policy = KeepPolicy { weekly: Some(3), ..KeepPolicy::default() };
        let d = run(&policy, &s);
        // 2020-12-28 shares week 53 with 2021-01-03, though not its year.
        assert_eq!(kept(&d), ["2021-01-04 12:00:00", "2021-01-03 12:00:00", "2020-12-27 12:00:00"]);
        // Yearly, by contrast, splits week 53.
        let policy = KeepPolicy { yearly: Some(2), ..KeepPolicy::default() };
        assert_eq!(kept(&run(&policy, &s)), ["2021-01-04 12:00:00", "2020-12-28 12:00:00"]);
    }

    #[test]
    fn monthly_and_yearly_across_years() {
        let s = snaps(&[
            "2021-06-15 00:00:00",
            "2022-11-30 23:59:59",
            "2022-12-01 00:00:00",
            "2022-12-31 23:00:00",
            "2023-01-01 01:00:00",
            "2023-01-15 00:00:00",
            "2023-03-01 00:00:00",
        ]);
        let policy = KeepPolicy { monthly: Some(4), yearly: Some(2), ..KeepPolicy::default() };
        let d = run(&policy, &s);
        assert_eq!(reasons_of(&d, "2023-03-01 00:00:00"), ["monthly snapshot", "yearly snapshot"]);
        assert_eq!(reasons_of(&d, "2023-01-15 00:00:00"), ["monthly snapshot"]);
        assert!(reasons_of(&d, "2023-01-01 01:00:00").is_empty());
        assert_eq!(reasons_of(&d, "2022-12-31 23:00:00"), ["monthly snapshot", "yearly snapshot"]);
        assert!(reasons_of(&d, "2022-12-01 00:00:00").is_empty());
        assert_eq!(reasons_of(&d, "2022-11-30 23:59:59"), ["monthly snapshot"]);
        // Both rules are used up before the oldest snapshot.
        assert!(reasons_of(&d, "2021-06-15 00:00:00").is_empty());
    }

    #[test]
    fn oldest_snapshot_kept_while_counts_remain() {
        let s = snaps(&["2024-01-01 08:00:00", "2024-01-01 09:00:00", "2024-01-02 09:00:00"]);
        // Three days asked for, two exist: the oldest is kept as well.
        let policy = KeepPolicy { daily: Some(3), ..KeepPolicy::default() };
        let d = run(&policy, &s);
        assert_eq!(kept(&d).len(), 3);
        assert_eq!(reasons_of(&d, "2024-01-01 08:00:00"), ["oldest daily snapshot"]);
        // Exactly two days asked for: the count is spent, the oldest goes.
        let policy = KeepPolicy { daily: Some(2), ..KeepPolicy::default() };
        let d = run(&policy, &s);
        assert!(!d[2].keep);
        // A single snapshot that is new to its bucket is not "oldest".
        let one = snaps(&["2024-01-01 08:00:00"]);
        let d = run(&policy, &one);
        assert_eq!(d[0].reasons, ["daily snapshot"]);
    }

    #[test]
    fn unlimited_keeps_one_per_bucket_forever() {
        let s = snaps(&[
            "2001-01-01 00:00:00",
            "2001-01-01 12:00:00",
            "2010-07-04 00:00:00",
            "2010-07-04 01:00:00",
            "2024-02-29 00:00:00",
        ]);
        let policy = KeepPolicy { daily: Some(KeepPolicy::UNLIMITED), ..KeepPolicy::default() };
        let d = run(&policy, &s);
        assert_eq!(
            kept(&d),
            ["2024-02-29 00:00:00", "2010-07-04 01:00:00", "2001-01-01 12:00:00", "2001-01-01 00:00:00"]
        );
        assert_eq!(reasons_of(&d, "2001-01-01 00:00:00"), ["oldest daily snapshot"]);
    }

    #[test]
    fn buckets_before_1970() {
        let s = snaps(&["1969-12-31 23:30:00", "1970-01-01 00:30:00"]);
        let policy = KeepPolicy { daily: Some(2), yearly: Some(2), ..KeepPolicy::default() };
        let d = run(&policy, &s);
        assert!(d.iter().all(|d| d.reasons == ["daily snapshot", "yearly snapshot"]));
    }

    #[test]
    fn all_rules_report_their_reasons_in_order() {
        let s = snaps(&["2024-06-01 00:00:00", "2024-06-02 00:00:00"]);
        let policy = KeepPolicy {
            last: Some(1),
            hourly: Some(1),
            daily: Some(1),
            weekly: Some(1),
            monthly: Some(1),
            yearly: Some(1),
            within: Some(Duration::from_secs(3600)),
        };
        let d = run(&policy, &s);
        assert_eq!(
            d[0].reasons,
            [
                "within 1h",
                "last snapshot",
                "hourly snapshot",
                "daily snapshot",
                "weekly snapshot",
                "monthly snapshot",
                "yearly snapshot"
            ]
        );
        assert!(!d[1].keep);
    }

    #[test]
    fn within_is_measured_from_the_newest_snapshot() {
        let s = snaps(&[
            "2024-01-10 00:00:00",
            "2024-01-09 00:00:00",
            "2024-01-08 00:00:01",
            "2024-01-08 00:00:00",
            "2024-01-01 00:00:00",
        ]);
        let policy = KeepPolicy { within: Some(Duration::from_secs(2 * 86_400)), ..KeepPolicy::default() };
        // Long after the newest snapshot: `within` does not age with the clock.
        let d = apply_at(&policy, &s, at("2030-01-01 00:00:00"));
        // Strictly newer than newest - 2d: exactly 2 days before is forgotten.
        assert_eq!(kept(&d), ["2024-01-10 00:00:00", "2024-01-09 00:00:00", "2024-01-08 00:00:01"]);
        assert!(d[..3].iter().all(|d| d.reasons == ["within 2d"]));
    }

    #[test]
    fn within_ignores_snapshots_in_the_future() {
        let s = snaps(&["2099-01-01 00:00:00", "2024-01-10 00:00:00", "2024-01-09 12:00:00", "2024-01-08 00:00:00"]);
        let policy = KeepPolicy { within: Some(Duration::from_secs(86_400)), ..KeepPolicy::default() };
        let now = at("2024-01-11 00:00:00");
        let d = apply_at(&policy, &s, now);
        assert_eq!(kept(&d), ["2099-01-01 00:00:00", "2024-01-10 00:00:00", "2024-01-09 12:00:00"]);
        // Everything in the future: everything is within.
        let d = apply_at(&policy, &s, at("2000-01-01 00:00:00"));
        assert!(d.iter().all(|d| d.keep));
        // Via the real clock: all these are in the past.
        let d = apply(&policy, &s[1..]);
        assert_eq!(kept(&d).len(), 2);
    }

    #[test]
    fn within_combines_with_counts() {
        let s = snaps(&[
            "2024-01-10 10:00:00",
            "2024-01-10 09:00:00",
            "2024-01-09 10:00:00",
            "2024-01-05 10:00:00",
            "2024-01-04 10:00:00",
        ]);
        let policy =
            KeepPolicy { daily: Some(3), within: Some(Duration::from_secs(3 * 3600)), ..KeepPolicy::default() };
        let d = run(&policy, &s);
        assert_eq!(reasons_of(&d, "2024-01-10 10:00:00"), ["within 3h", "daily snapshot"]);
        assert_eq!(reasons_of(&d, "2024-01-10 09:00:00"), ["within 3h"]);
        assert_eq!(reasons_of(&d, "2024-01-09 10:00:00"), ["daily snapshot"]);
        assert_eq!(reasons_of(&d, "2024-01-05 10:00:00"), ["daily snapshot"]);
        assert!(!d[4].keep);
    }

    #[test]
    fn from_system_time_matches_unix_nanos() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        assert_eq!(SnapshotRef::from_system_time("x", t).time_unix_nanos, 1_700_000_000 * NANOS_PER_SEC + 5);
        let before = UNIX_EPOCH - Duration::from_secs(86_400);
        assert_eq!(SnapshotRef::from_system_time("y", before).time_unix_nanos, -DAY);
    }

    #[test]
    fn policy_descriptions() {
        assert_eq!(KeepPolicy::default().to_string(), "keep all snapshots (empty policy)");
        let p = KeepPolicy {
            last: Some(3),
            daily: Some(7),
            monthly: Some(KeepPolicy::UNLIMITED),
            within: Some(Duration::from_secs(2 * 86_400 + 3600 + 5)),
            ..KeepPolicy::default()
        };
        assert_eq!(
            p.to_string(),
            "keep 3 latest, 7 daily, all monthly snapshots and all snapshots within 2d1h5s of the newest"
        );
        let p = KeepPolicy { within: Some(Duration::from_secs(90 * 60)), ..KeepPolicy::default() };
        assert_eq!(p.to_string(), "keep all snapshots within 1h30m of the newest");
        assert_eq!(format_span(Duration::from_millis(1500)), "1s+500ms");
        assert_eq!(format_span(Duration::from_millis(20)), "20ms");
    }
}
