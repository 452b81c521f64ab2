//! The daemon's own audits, per `[audit]` ([`AuditConfig`]): every
//! `interval_seconds` it audits each buddy with `samples` challenges,
//! fetching whole chunks at the monthly budget (or `fetches`), and repairs
//! what a failing buddy lost; the records go on the status board. One
//! thread, asleep between audits; it ends when the daemon stops.

use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::run::{audit_all, AuditOptions};
use crate::config::audit::AuditConfig;
use crate::daemon::status::StatusBoard;
use crate::repo::SharedBox;

/// Mean sealed chunk size assumed for the fetch budget (SPEC §1: about
/// 16 KiB past the 2 KiB minimum).
const MEAN_CHUNK_BYTES: u64 = 18 << 10;

/// Starts the auditing thread of a daemon.
pub fn spawn(shared: Arc<SharedBox>, board: Arc<StatusBoard>, config: AuditConfig) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new().name("pastiche-audit".into()).spawn(move || run(&shared, &board, &config))
}

/// Puts the audit records on the status board.
fn show(shared: &SharedBox, board: &StatusBoard) {
    if let Ok(records) = super::record::load(&shared.repo().dir) {
        board.update(|r| r.audits = records);
    }
}

fn run(shared: &SharedBox, board: &StatusBoard, config: &AuditConfig) {
    show(shared, board);
    if !config.enabled {
        return;
    }
    let plan = config.plan();
    let interval = Duration::from_secs(config.interval_seconds.max(1));
    let mut next = Instant::now() + interval;
    let mut n = 0u64;
    loop {
        if !board.sleep_until(next) {
            return;
        }
        next = Instant::now() + interval;
        let repo = shared.write();
        let stored = crate::engine::stats::stats(&repo).map(|s| s.stored_bytes).unwrap_or(0);
        let opts = AuditOptions {
            samples: config.samples,
            fetches: config
                .fetches
                .unwrap_or_else(|| plan.fetches_per_audit(stored, MEAN_CHUNK_BYTES).for_audit(n) as u32),
            repair: true,
        };
        n += 1;
        match audit_all(&repo, None, &opts) {
            Ok(report) => {
                for b in report.buddies.iter().filter(|b| b.failed()) {
                    board.event(format!(
                        "audit of {}: FAILED ({} missing, {} corrupt{}); buddy marked suspect{}",
                        b.addr,
                        b.missing,
                        b.corrupt,
                        b.error.as_deref().map(|e| format!("; {e}")).unwrap_or_default(),
                        b.reshipped.map(|r| format!(", {r} chunks shipped again")).unwrap_or_default()
                    ));
                }
            }
            Err(e) => board.event(format!("audits failed: {e:#}")),
        }
        show(shared, board);
    }
}
