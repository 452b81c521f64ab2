//! When a job runs: `hourly`, `daily HH:MM`, `weekly`, `every 15m`, or a
//! five-field cron expression (`MIN HOUR DAY MONTH WEEKDAY`, with `*`,
//! `*/N`, `A-B`, `A-B/N` and lists). Times are the box's local time; the
//! calendar arithmetic (days, months, time zones) is jiff's.

use std::fmt;
use std::time::Duration;

use jiff::{civil, ZonedDateTime as Zoned};
use serde::{Serialize, Serializer};

/// A parsed schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Never on its own (jobs run only when asked for).
    Never,
    /// A fixed interval from the previous run (or from the daemon's start).
    Every(Duration),
    /// Calendar times.
    Cron(Box<Cron>),
}

/// The fields of a cron expression, each as the set of allowed values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cron {
    text: String,
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    /// Whether both day fields were restricted (cron then matches either).
    days_or_weekdays: bool,
}

impl Serialize for Schedule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Never => f.write_str("never"),
            Schedule::Every(d) => write!(f, "every {}", format_interval(*d)),
            Schedule::Cron(c) => f.write_str(&c.text),
        }
    }
}

fn format_interval(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

impl std::str::FromStr for Schedule {
    type Err = String;

    fn from_str(text: &str) -> Result<Schedule, String> {
        let t = text.trim();
        let words: Vec<&str> = t.split_whitespace().collect();
        match words.as_slice() {
            ["never"] | ["manual"] => Ok(Schedule::Never),
            ["hourly"] => cron("0 * * * *", t),
            ["daily"] => cron("0 0 * * *", t),
            ["weekly"] => cron("0 0 * * 1", t),
            ["daily", at] => {
                let (h, m) = parse_hh_mm(at)?;
                cron(&format!("{m} {h} * * *"), t)
            }
            ["every", n] => parse_interval(n).map(Schedule::Every),
            [_, _, _, _, _] => cron(t, t),
            _ => Err(format!(
                "unknown schedule {t:?}: use hourly, daily, daily HH:MM, weekly, every 15m, never, \
                 or a cron expression like \"30 2 * * *\""
            )),
        }
    }
}

fn cron(fields: &str, text: &str) -> Result<Schedule, String> {
    let f: Vec<&str> = fields.split_whitespace().collect();
    let day_field = |s: &str| s != "*";
    Ok(Schedule::Cron(Box::new(Cron {
        text: text.to_string(),
        minutes: parse_field(f[0], 0, 59, "minute")?,
        hours: parse_field(f[1], 0, 23, "hour")? as u32,
        days: parse_field(f[2], 1, 31, "day of month")? as u32,
        months: parse_field(f[3], 1, 12, "month")? as u16,
        // 7 is Sunday as well as 0.
        weekdays: {
            let w = parse_field(f[4], 0, 7, "day of week")?;
            ((w | (w >> 7)) & 0x7f) as u8
        },
        days_or_weekdays: day_field(f[2]) && day_field(f[4]),
    })))
}

fn parse_hh_mm(at: &str) -> Result<(u32, u32), String> {
    let bad = || format!("bad time {at:?}: use HH:MM, like 02:30");
    let (h, m) = at.split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok((h, m))
}

/// `90s`, `15m`, `2h`, `1d` (at least one second).
pub fn parse_interval(n: &str) -> Result<Duration, String> {
    let bad = || format!("bad interval {n:?}: use a number and s, m, h or d, like 15m");
    let split = n.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (num, unit) = n.split_at(split);
    let num: u64 = num.parse().map_err(|_| bad())?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    match num.checked_mul(unit_secs) {
        Some(s) if s > 0 => Ok(Duration::from_secs(s)),
        _ => Err(bad()),
    }
}

/// One cron field as a bit set of the values `lo..=hi` it allows.
fn parse_field(field: &str, lo: u32, hi: u32, what: &str) -> Result<u64, String> {
    let bad = |why: &str| format!("bad {what} field {field:?} in the cron expression: {why}");
    let mut set = 0u64;
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().ok().filter(|s| *s > 0).ok_or_else(|| bad("bad step"))?),
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (a.parse().map_err(|_| bad("not a number"))?, b.parse().map_err(|_| bad("not a number"))?)
        } else {
            let v: u32 = range.parse().map_err(|_| bad("not a number"))?;
            (v, if part.contains('/') { hi } else { v })
        };
        if a < lo || b > hi || a > b {
            return Err(bad(&format!("values must be within {lo}-{hi}")));
        }
        for v in (a..=b).step_by(step as usize) {
            set |= 1 << v;
        }
    }
    Ok(set)
}

impl Cron {
    fn matches_day(&self, date: civil::Date) -> bool {
        let day = self.days & (1 << date.day()) != 0;
        let weekday = self.weekdays & (1 << date.weekday().to_sunday_zero_offset() as u32) != 0;
        let month = self.months & (1 << date.month()) != 0;
        month && if self.days_or_weekdays { day || weekday } else { day && weekday }
    }

    /// The first matching minute strictly after `after`, within about four
    /// years (a cron for February 30th never matches).
    fn next_after(&self, after: &Zoned) -> Option<Zoned> {
        let tz = after.time_zone().clone();
        let mut date = after.date();
        for _ in 0..(366 * 4) {
            if self.matches_day(date) {
                for h in 0..24u32 {
                    if self.hours & (1 << h) == 0 {
                        continue;
                    }
                    for m in 0..60u32 {
                        if self.minutes & (1 << m) == 0 {
                            continue;
                        }
                        let dt = date.at(h as i8, m as i8, 0, 0);
                        // A time skipped by a daylight-saving change runs at
                        // the next valid instant (jiff's compatible rule).
                        if let Ok(z) = dt.to_zoned_datetime(tz.clone()) {
                            if z > *after {
                                return Some(z);
                            }
                        }
                    }
                }
            }
            date = date.tomorrow().ok()?;
        }
        None
    }
}

impl Schedule {
    /// When the job runs next, given when it last ran (or the daemon
    /// started) and the time now. A run missed while the box was off runs
    /// once at once.
    pub fn next_run(&self, last: &Zoned, now: &Zoned) -> Option<Zoned> {
        match self {
            Schedule::Never => None,
            Schedule::Every(d) => {
                let next = last.checked_add(*d).ok()?;
                Some(if next < *now { now.clone() } else { next })
            }
            Schedule::Cron(c) => {
                let next = c.next_after(last)?;
                Some(if next < *now { now.clone() } else { next })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Zoned {
        format!("{s}[UTC]").parse().unwrap()
    }

    fn next(sched: &str, after: &str) -> String {
        let s: Schedule = sched.parse().unwrap();
        let z = at(after);
        s.next_run(&z, &z).unwrap().datetime().to_string()
    }

    #[test]
    fn calendar_schedules() {
        assert_eq!(next("hourly", "2026-12-01T13:40:00"), "2026-12-01T14:00:00");
        assert_eq!(next("daily 02:30", "2026-12-01T13:40:00"), "2026-12-02T02:30:00");
        assert_eq!(next("daily 02:30", "2026-12-01T01:00:00"), "2026-12-01T02:30:00");
        assert_eq!(next("daily 02:30", "2026-12-31T03:00:00"), "2027-01-01T02:30:00");
        // 2026-12-01 is a Tuesday; weekly is Monday at midnight.
        assert_eq!(next("weekly", "2026-12-01T00:00:00"), "2026-12-07T00:00:00");
        assert_eq!(next("*/15 9-17 * * 1-5", "2026-12-04T17:50:00"), "2026-12-07T09:00:00");
        assert_eq!(next("0 0 29 2 *", "2026-03-01T00:00:00"), "2028-02-29T00:00:00");
        // Sunday written as 7.
        assert_eq!(next("0 12 * * 7", "2026-12-01T00:00:00"), "2026-12-06T12:00:00");
    }

    #[test]
    fn intervals_and_missed_runs() {
        let s: Schedule = "every 15m".parse().unwrap();
        assert_eq!(s, Schedule::Every(Duration::from_secs(900)));
        let last = at("2026-12-01T10:00:00");
        assert_eq!(s.next_run(&last, &last).unwrap().datetime().to_string(), "2026-12-01T10:15:00");
        // Missed while off: runs now.
        let now = at("2026-12-01T12:00:00");
        assert_eq!(s.next_run(&last, &now).unwrap(), now);
        assert_eq!("never".parse::<Schedule>().unwrap().next_run(&last, &now), None);
    }

    #[test]
    fn bad_schedules_say_why() {
        for (text, why) in [
            ("daily 25:00", "bad time"),
            ("every 0m", "bad interval"),
            ("every 5 minutes", "unknown schedule"),
            ("61 * * * *", "values must be within 0-59"),
            ("* * * * mon", "not a number"),
            ("sometimes", "unknown schedule"),
        ] {
            let err = text.parse::<Schedule>().unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn displays_as_written() {
        for text in ["daily 02:30", "every 15m", "30 2 * * *", "never"] {
            assert_eq!(text.parse::<Schedule>().unwrap().to_string(), text);
        }
    }
}
