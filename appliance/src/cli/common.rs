//! What every box command shares: global options, opening the box, picking
//! a snapshot, printing.

use std::path::PathBuf;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::meta::model::{RootObject, SnapshotInfo, Timestamp};
use crate::progress::{Mode, Progress};
use crate::repo::password::read_passphrase;
use crate::repo::{LockMode, Repo};

/// Options accepted by every box command.
pub struct Global {
    /// The box's data directory.
    pub data: PathBuf,
    /// JSON Lines on stdout instead of text.
    pub json: bool,
    /// No progress output.
    pub quiet: bool,
    /// Worker threads.
    pub threads: usize,
}

impl Global {
    /// Opens the box, asking for the passphrase.
    pub fn open(&self, mode: LockMode) -> Result<Repo> {
        let pass = read_passphrase(false)?;
        Repo::open(&self.data, &pass, mode)
    }

    /// Starts progress reporting for `action`.
    pub fn progress(&self, action: &'static str) -> Progress {
        Progress::start(Mode::detect(self.json, self.quiet), action)
    }

    /// Prints one JSON line.
    pub fn json_line<T: Serialize>(&self, value: &T) {
        println!("{}", serde_json::to_string(value).expect("serializable"));
    }
}

/// Finds `latest` or the one snapshot whose id starts with `spec`.
pub fn find_snapshot<'a>(root: &'a RootObject, spec: &str) -> Result<&'a SnapshotInfo> {
    if spec == "latest" {
        return root.snapshots.last().ok_or_else(|| anyhow::anyhow!("there are no snapshots yet"));
    }
    let spec = spec.to_ascii_lowercase();
    let matches: Vec<&SnapshotInfo> = root.snapshots.iter().filter(|s| s.id_hex().starts_with(&spec)).collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => bail!("no snapshot with id {spec}"),
        _ => bail!("snapshot id {spec} is ambiguous ({} snapshots match)", matches.len()),
    }
}

/// `YYYY-MM-DD HH:MM:SS` in UTC.
pub fn format_time(t: Timestamp) -> String {
    let days = t.secs.div_euclid(86_400);
    let rem = t.secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// ISO 8601 in UTC, for JSON.
pub fn iso_time(t: Timestamp) -> String {
    let s = format_time(t);
    format!("{}T{}.{:09}Z", &s[..10], &s[11..], t.nanos)
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(format_time(Timestamp { secs: 0, nanos: 0 }), "1970-01-01 00:00:00");
        assert_eq!(format_time(Timestamp { secs: 1_795_678_516, nanos: 0 }), "2026-11-26 07:35:16");
        assert_eq!(format_time(Timestamp { secs: 951_782_400, nanos: 0 }), "2000-02-29 00:00:00");
        assert_eq!(iso_time(Timestamp { secs: 0, nanos: 5 }), "1970-01-01T00:00:00.000000005Z");
    }
}
