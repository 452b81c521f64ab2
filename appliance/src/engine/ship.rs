//! Shipping the box's state to its buddies (the client side of the buddy
//! protocol lives in [`crate::sync`]; this runs it for every buddy and keeps
//! the buddy list up to date).

use anyhow::Result;
use serde::Serialize;

use crate::progress::Progress;
use crate::repo::Repo;
use crate::sync::{self, load_buddies, save_buddies, SyncReport};

/// How shipping to one buddy went.
#[derive(Debug, Serialize)]
pub struct BuddyOutcome {
    /// The buddy's address.
    pub addr: String,
    /// What was shipped, if the sync succeeded.
    pub report: Option<SyncReport>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// Shipping to every buddy.
#[derive(Debug, Default, Serialize)]
pub struct ShipReport {
    /// One outcome per buddy, in the buddy list's order.
    pub buddies: Vec<BuddyOutcome>,
}

impl ShipReport {
    /// Whether every buddy has the box's current state.
    pub fn all_ok(&self) -> bool {
        self.buddies.iter().all(|b| b.error.is_none())
    }
}

/// Ships the current state to every buddy, one after the other; a buddy that
/// fails does not stop the others. `progress` makes the progress handle of
/// each buddy's sync. The caller holds the box for writing.
pub fn ship_all(repo: &Repo, mut progress: impl FnMut(&str) -> Progress) -> Result<ShipReport> {
    let mut buddies = load_buddies(&repo.dir)?;
    let mut report = ShipReport::default();
    for i in 0..buddies.len() {
        let p = progress(&buddies[i].addr);
        let result = sync::sync_one(repo, &mut buddies[i], &p);
        p.finish();
        let addr = buddies[i].addr.clone();
        crate::http::peers::record_sync(&repo.dir, &addr, result.as_ref().err().map(|e| format!("{e:#}")).as_deref());
        report.buddies.push(match result {
            Ok(r) => BuddyOutcome { addr, report: Some(r), error: None },
            Err(e) => BuddyOutcome { addr, report: None, error: Some(format!("{e:#}")) },
        });
        // Pinned keys and epochs are kept even if another buddy failed.
        save_buddies(&repo.dir, &buddies)?;
    }
    Ok(report)
}

/// The buddies that do not hold the newest snapshot yet (shipping pending,
/// for instance after a restart).
pub fn pending(repo: &Repo) -> Result<Vec<String>> {
    let latest = repo.load_root()?.snapshots.last().map(|s| s.id_hex());
    let Some(latest) = latest else { return Ok(Vec::new()) };
    Ok(load_buddies(&repo.dir)?
        .into_iter()
        .filter(|b| b.snapshot.as_deref() != Some(latest.as_str()))
        .map(|b| b.addr)
        .collect())
}
