//! The last local check and repair, kept in `DATA/local-check.json` so
//! that `pastiche status` (and the status page's API) can show them after
//! the daemon restarts.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::RepairOutcome;
use crate::repo::write_atomically;

/// The file's name in the data directory.
pub const LOCAL_CHECK_FILE: &str = "local-check.json";

/// At most this many affected files are kept in the record (the full list
/// is one `pastiche check` away).
const MAX_FILES_KEPT: usize = 20;

/// What the daemon's last local check and repair found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalCheckRecord {
    /// Unix seconds of the last check.
    pub last_check: i64,
    /// Whether it found nothing wrong.
    pub passed: bool,
    /// Problems it found.
    pub problems: u64,
    /// The last repair (after this check or an earlier one), if one ran.
    pub repair: Option<RepairRecord>,
    /// Chunks repaired by every repair so far.
    #[serde(default)]
    pub repaired_total: u64,
}

/// The outcome of one repair.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairRecord {
    /// Unix seconds when it ended.
    pub at: i64,
    /// Whether the store is whole again.
    pub whole: bool,
    /// Chunks replaced by verified copies from buddies.
    pub repaired: u64,
    /// Chunks that could not be repaired.
    pub unrepaired: u64,
    /// Problems left after it, in all.
    pub problems_left: u64,
    /// Files still affected (the first few).
    pub files_affected: Vec<String>,
    /// Why it could not run, if it could not.
    pub error: Option<String>,
}

impl RepairRecord {
    /// The record of a repair's outcome.
    pub fn of(outcome: &RepairOutcome) -> RepairRecord {
        RepairRecord {
            at: now(),
            whole: outcome.is_whole(),
            repaired: outcome.chunks_repaired,
            unrepaired: outcome.unrepaired.len() as u64,
            problems_left: outcome.after.problems.len() as u64,
            files_affected: outcome.after.affected_files.iter().take(MAX_FILES_KEPT).cloned().collect(),
            error: None,
        }
    }

    /// A repair that could not run.
    pub fn failed(error: String) -> RepairRecord {
        RepairRecord { at: now(), error: Some(error), ..RepairRecord::default() }
    }

    /// One line for `pastiche status`.
    pub fn summary(&self) -> String {
        match (&self.error, self.whole) {
            (Some(e), _) => format!("repair failed: {e}"),
            (None, true) => format!("repaired {} chunks from buddies; the store is whole", self.repaired),
            (None, false) => format!(
                "repaired {} chunks, {} could not be; {} problems left, {} files affected",
                self.repaired,
                self.unrepaired,
                self.problems_left,
                self.files_affected.len()
            ),
        }
    }
}

impl LocalCheckRecord {
    /// The record of a check that found `problems`, following `previous`
    /// (whose repair is kept until another one runs).
    pub fn after(previous: Option<LocalCheckRecord>, problems: u64) -> LocalCheckRecord {
        let previous = previous.unwrap_or_default();
        LocalCheckRecord { last_check: now(), passed: problems == 0, problems, ..previous }
    }

    /// The same record with the repair that followed its check.
    pub fn with_repair(mut self, repair: RepairRecord) -> LocalCheckRecord {
        self.repaired_total += repair.repaired;
        self.repair = Some(repair);
        self
    }

    /// One line for `pastiche status`.
    pub fn summary(&self) -> String {
        let check = if self.passed {
            "last check passed".to_string()
        } else {
            format!("last check FAILED ({} problems)", self.problems)
        };
        match &self.repair {
            Some(r) => format!("{check}; last repair: {}", r.summary()),
            None => check,
        }
    }
}

impl LocalCheckRecord {
    /// Whether the store is known damaged now: the last check failed and
    /// no repair after it made the store whole.
    pub fn damaged(&self) -> bool {
        !self.passed && !self.repair.as_ref().is_some_and(|r| r.whole && r.at >= self.last_check)
    }
}

/// Health alerts from the record: critical `store_damaged` while the box's
/// own store is known damaged (the backups in it may not restore).
pub fn alerts(record: Option<&LocalCheckRecord>) -> Vec<crate::health::Alert> {
    record
        .filter(|r| r.damaged())
        .map(|r| crate::health::Alert {
            severity: crate::health::Verdict::Critical,
            code: "store_damaged".into(),
            message: format!(
                "the local check found {} problems in this box's store{}; run pastiche check --repair",
                r.problems,
                r.repair.as_ref().map(|rep| format!(" ({})", rep.summary())).unwrap_or_default()
            ),
        })
        .into_iter()
        .collect()
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// The last record, if any.
pub fn load(dir: &Path) -> Result<Option<LocalCheckRecord>> {
    match std::fs::read_to_string(dir.join(LOCAL_CHECK_FILE)) {
        Ok(text) => serde_json::from_str(&text).with_context(|| format!("{LOCAL_CHECK_FILE} is damaged")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).context("cannot read the local check record"),
    }
}

/// Replaces the record.
pub fn save(dir: &Path, record: &LocalCheckRecord) -> Result<()> {
    write_atomically(&dir.join(LOCAL_CHECK_FILE), serde_json::to_string_pretty(record)?.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_check_is_critical_until_a_repair_after_it_makes_the_store_whole() {
        let failed = LocalCheckRecord::after(None, 3);
        assert_eq!(alerts(Some(&failed)).len(), 1);
        assert_eq!(alerts(Some(&failed))[0].code, "store_damaged");
        let partial = failed.clone().with_repair(RepairRecord {
            whole: false,
            repaired: 2,
            ..RepairRecord::failed(String::new())
        });
        assert_eq!(alerts(Some(&partial)).len(), 1, "still damaged after a partial repair");
        let mut whole = RepairRecord::failed(String::new());
        (whole.error, whole.whole, whole.repaired) = (None, true, 3);
        let repaired = failed.with_repair(whole);
        assert!(alerts(Some(&repaired)).is_empty());
        assert_eq!(repaired.repaired_total, 3);
        // A later passing check keeps the last repair on record, and the total.
        let later = LocalCheckRecord::after(Some(repaired), 0);
        assert!(later.passed && later.repair.is_some() && later.repaired_total == 3);
        assert!(alerts(Some(&later)).is_empty() && alerts(None).is_empty());
    }
}
