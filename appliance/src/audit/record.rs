//! Audit results, kept in `DATA/audits.json` per buddy address: the last
//! audit's counts and time, failures in a row, and whether the buddy is
//! suspect (its last audit failed). The CLI (`pastiche audit`, `buddy
//! list`), the status page's API and `/metrics` read it.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::run::BuddyAudit;
use crate::repo::write_atomically;

/// The file's name in the data directory.
pub const AUDITS_FILE: &str = "audits.json";

/// What is known of one buddy's audits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Unix seconds of the last audit.
    pub last_audit: i64,
    /// Whether the last audit passed.
    pub passed: bool,
    /// Its last audit failed (lost or damaged data, or no answer).
    pub suspect: bool,
    /// Failed audits since the last one that passed.
    pub failures_in_a_row: u32,
    /// Audits run in all.
    pub audits: u64,
    /// Audits failed in all.
    pub failures: u64,
    /// The last audit's counts: proven, missing, corrupt.
    pub proven: u32,
    /// See `proven`.
    pub missing: u32,
    /// See `proven`.
    pub corrupt: u32,
    /// Chunks shipped again after failures, in all.
    pub reshipped: u64,
    /// Why the last audit could not be run, if it could not.
    pub error: Option<String>,
}

/// Every buddy's record, by address.
pub fn load(dir: &Path) -> Result<BTreeMap<String, AuditRecord>> {
    match std::fs::read_to_string(dir.join(AUDITS_FILE)) {
        Ok(text) => serde_json::from_str(&text).with_context(|| format!("{} is damaged", AUDITS_FILE)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e).context("cannot read the audit records"),
    }
}

/// Adds one audit's outcome to its buddy's record.
pub fn record(dir: &Path, audit: &BuddyAudit) -> Result<()> {
    let mut all = load(dir)?;
    let r = all.entry(audit.addr.clone()).or_default();
    let failed = audit.failed();
    r.last_audit = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    r.passed = !failed;
    r.suspect = failed;
    r.failures_in_a_row = if failed { r.failures_in_a_row + 1 } else { 0 };
    r.audits += 1;
    r.failures += u64::from(failed);
    (r.proven, r.missing, r.corrupt) = (audit.proven, audit.missing, audit.corrupt);
    r.reshipped += audit.reshipped.unwrap_or(0);
    r.error = audit.error.clone();
    write_atomically(&dir.join(AUDITS_FILE), serde_json::to_string_pretty(&all)?.as_bytes())
}

/// A few words for `pastiche buddy list`.
pub fn summary(record: Option<&AuditRecord>) -> String {
    match record {
        None => "never audited".into(),
        Some(r) if r.suspect => format!(
            "SUSPECT: last audit failed ({} missing, {} corrupt; {} failures in a row)",
            r.missing, r.corrupt, r.failures_in_a_row
        ),
        Some(r) => format!("audit passed ({} proven)", r.proven),
    }
}

/// Health alerts from the audit records: a warning for each buddy whose
/// last audit failed (`audit_failed`).
pub fn alerts(records: &BTreeMap<String, AuditRecord>) -> Vec<crate::health::Alert> {
    records
        .iter()
        .filter(|(_, r)| r.suspect)
        .map(|(addr, r)| crate::health::Alert {
            severity: crate::health::Verdict::Warning,
            code: "audit_failed".into(),
            message: match &r.error {
                Some(e) => format!("buddy {addr} could not be audited: {e}"),
                None => format!(
                    "buddy {addr} failed its audit ({} missing, {} corrupt; {} failures in a row)",
                    r.missing, r.corrupt, r.failures_in_a_row
                ),
            },
        })
        .collect()
}
