//! `pastiche audit`: audits the box's buddies now and reports each.

use anyhow::Result;
use pastiche_core::audit::AuditPlan;
use serde_json::json;

use super::common::Global;
use crate::audit::{audit_all, AuditOptions, BuddyAudit};
use crate::engine;
use crate::exit;
use crate::repo::SharedBox;

/// Audits every buddy (or `only`); exit 1 when one fails.
pub fn audit(g: &Global, b: &SharedBox, only: Option<&str>, samples: Option<u32>, repair: bool) -> Result<u8> {
    let repo = b.write();
    if crate::sync::load_buddies(&repo.dir)?.is_empty() {
        return Err(engine::Error::NoBuddies.into());
    }
    let mut opts = AuditOptions::now(&AuditPlan::default());
    opts.repair = repair;
    if let Some(n) = samples {
        opts.samples = n;
    }
    let report = audit_all(&repo, only, &opts)?;
    for a in &report.buddies {
        if g.json {
            g.json(&json!({"message_type": "audit", "report": a}))?;
        } else if !g.quiet || a.failed() {
            g.line(describe(a))?;
        }
    }
    Ok(if report.all_passed() { exit::OK } else { exit::FAILED })
}

/// One line per buddy.
fn describe(a: &BuddyAudit) -> String {
    if let (Some(e), false) = (&a.error, a.passed || a.proven + a.missing + a.corrupt > 0) {
        return format!("audit of {}: FAILED: {e}", a.addr);
    }
    let counts = format!(
        "{} proven, {} missing, {} corrupt of {} challenged ({} fetched whole) among {} shipped chunks",
        a.proven,
        a.missing,
        a.corrupt,
        a.proven + a.missing + a.corrupt,
        a.fetched,
        a.shipped
    );
    let mut line = if a.passed {
        format!("audit of {}: passed: {counts}", a.addr)
    } else {
        format!("audit of {}: FAILED, buddy marked suspect: {counts}", a.addr)
    };
    if let (Some(lost), Some(sent)) = (a.lost, a.reshipped) {
        line.push_str(&format!("; full re-check found {lost} lost or damaged chunks, {sent} shipped again"));
    }
    if let Some(e) = &a.error {
        line.push_str(&format!("; {e}"));
    }
    line
}
